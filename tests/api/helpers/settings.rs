//! The settings of every test server, written once: by their environment variables,
//! given as they are to `hark serve` processes and through the same names to the
//! instances built in-process (`Config::from_settings`).

use hark::config::Config;

/// The secret tests sign tokens with; tests forge tokens with it too.
pub const TEST_JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256!";
/// The operator key of every test server.
pub const TEST_OPERATOR_KEY: &str = "test-operator-key";
/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// Fast password hashing, open tenant creation, a small pool, and limits far above
/// what any test does unless it is about them (those set their own).
pub const TEST_SETTINGS: &[(&str, &str)] = &[
    ("HARK_JWT_SECRET", TEST_JWT_SECRET),
    ("HARK_JWT_ISSUER", "hark"),
    ("HARK_JWT_AUDIENCE", "hark"),
    ("HARK_TENANT_CREATION", "open"),
    ("HARK_OPERATOR_KEY", TEST_OPERATOR_KEY),
    ("HARK_DB_POOL_SIZE", "8"),
    ("HARK_MAX_BODY_BYTES", "65536"),
    ("HARK_PASSWORD_HASH_MEMORY_KIB", "1024"),
    ("HARK_PASSWORD_HASH_ITERATIONS", "1"),
    ("HARK_SEND_BURST", "1000000"),
    ("HARK_SEND_RATE_PER_SECOND", "1000000"),
    ("HARK_WS_OPS_BURST", "1000000"),
    ("HARK_WS_OPS_PER_SECOND", "1000000"),
    ("HARK_LOGIN_FAILURES_PER_ACCOUNT", "1000"),
    ("HARK_LOGIN_FAILURES_PER_ADDRESS", "1000000"),
    ("HARK_MAX_STREAMS_PER_USER", "100000"),
    ("HARK_MAX_REQUESTS_IN_FLIGHT_PER_USER", "100000"),
    ("HARK_REQUESTS_BURST", "1000000"),
    ("HARK_MAX_REQUESTS_IN_FLIGHT_PER_TENANT", "100000"),
    ("HARK_REQUESTS_PER_SECOND", "1000000"),
    ("HARK_JOIN_CODE_FAILURES_PER_USER", "1000000"),
    ("HARK_JOIN_CODE_FAILURES_PER_ADDRESS", "1000000"),
    ("HARK_ROOMS_PER_USER_PER_HOUR", "1000000"),
    ("HARK_MAX_UNAUTHENTICATED_SOCKETS_PER_ADDRESS", "100000"),
    ("HARK_SIGNUPS_PER_ADDRESS_PER_HOUR", "1000000"),
    // Leaves are announced soon after the last subscription ends; the test of the
    // debounce sets its own.
    ("HARK_PRESENCE_DEBOUNCE_MS", "200"),
    // Receivers are local (http, loopback), and retries come quickly.
    ("HARK_WEBHOOK_ALLOW_PRIVATE", "true"),
    ("HARK_WEBHOOK_RETRY_BASE_MS", "100"),
];

/// The configuration of an in-process test server on `database_url`.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::from_settings(TEST_SETTINGS).expect("the test settings parse");
    config.database_url = Some(database_url.to_owned());
    // Whatever the environment of the test run says, the tests' own database is used
    // for migrations too, and nothing outside the settings above applies.
    config.migration_database_url = None;
    config.operator_key = Some(TEST_OPERATOR_KEY.to_owned());
    config.cors_origins = Vec::new();
    config
}
