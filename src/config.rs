//! Configuration, from environment variables (a `.env` file is read first when
//! present) or the equivalent command-line flags. Every setting has a default that
//! works on a development machine; the defaults that are unsafe in production say so
//! at start-up.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::auth::{PasswordSettings, TokenSettings, tokens_development_secret};
use crate::db::DatabaseSettings;

/// The database a development machine has: the local server, database `hark`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/hark";

/// Who may create tenants over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TenantCreation {
    /// Anyone may create a tenant.
    Open,
    /// Only callers presenting `X-Operator-Key` equal to `HARK_OPERATOR_KEY`.
    Operator,
}

/// The format of log lines on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object a line, for log collectors.
    Json,
    /// Human-readable lines, for a terminal.
    Text,
}

/// Every setting of the server.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL URL the server's pool connects with. Without it, the local server
    /// (`postgres://postgres@127.0.0.1:5432/hark`), or a private cluster under `.hark/`
    /// when none answers there.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Whether this is the zero-configuration development run: `DATABASE_URL` was not
    /// set when the process started (`resolve_database` fills it in later). Set from
    /// that, never by a flag.
    #[arg(skip)]
    pub development: bool,

    /// PostgreSQL URL for schema changes, when they need a more privileged role than
    /// the pool's (defaults to DATABASE_URL).
    #[arg(long, env = "HARK_MIGRATION_DATABASE_URL")]
    pub migration_database_url: Option<String>,

    /// PostgreSQL URL of the LISTEN connection: a direct session, not a pooler in
    /// transaction mode (defaults to DATABASE_URL).
    #[arg(long, env = "HARK_LISTEN_DATABASE_URL")]
    pub listen_database_url: Option<String>,

    /// A PEM file of root certificates for TLS to Postgres (else `sslrootcert` in the
    /// URL, else the Mozilla roots built in). `sslmode` in the URLs says whether to
    /// verify: disable, prefer (the default), require, verify-ca, verify-full.
    #[arg(long, env = "HARK_DATABASE_CA_FILE")]
    pub database_ca_file: Option<String>,

    /// The most pooled connections this instance holds.
    #[arg(long, env = "HARK_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,

    /// How long one SQL statement may run before it is cancelled (503
    /// `statement_timeout`), in milliseconds.
    #[arg(long, env = "HARK_STATEMENT_TIMEOUT_MS", default_value_t = 5_000)]
    pub statement_timeout_ms: u64,

    /// How long one message search may run before it is cancelled (503
    /// `statement_timeout`), in milliseconds; the statement timeout holds too when it is
    /// shorter. Searches cost what their words match, so they get a bound of their own.
    #[arg(long, env = "HARK_SEARCH_TIMEOUT_MS", default_value_t = 2_000)]
    pub search_timeout_ms: u64,

    /// How long a request waits for a pooled connection, in milliseconds.
    #[arg(long, env = "HARK_DB_POOL_TIMEOUT_MS", default_value_t = 5_000)]
    pub db_pool_timeout_ms: u64,

    /// Address and port to listen on.
    #[arg(long, env = "HARK_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// A tenant that anyone may register in, for the demo page at `/demo`, created at
    /// start-up when missing. `off` for none. Unset: `demo` when no `DATABASE_URL` is
    /// configured (a development machine), none otherwise.
    #[arg(long, env = "HARK_DEMO_TENANT")]
    pub demo_tenant: Option<String>,

    /// The HMAC secret that signs access tokens (at least 32 bytes). Required, except
    /// in the zero-configuration development run (no `DATABASE_URL`), which signs
    /// with a development secret and says so.
    #[arg(long, env = "HARK_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// The key id (`kid`) written into the header of tokens signed with
    /// `HARK_JWT_SECRET`. Default: derived from the secret.
    #[arg(long, env = "HARK_JWT_KEY_ID")]
    pub jwt_key_id: Option<String>,

    /// Earlier signing keys still accepted, as `kid:secret` pairs separated by commas:
    /// after a rotation, tokens signed with them hold until they expire or the key is
    /// removed from this list.
    #[arg(
        long,
        env = "HARK_JWT_PREVIOUS_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub jwt_previous_keys: Vec<String>,

    /// The issuer written into and required of access tokens.
    #[arg(long, env = "HARK_JWT_ISSUER", default_value = "hark")]
    pub jwt_issuer: String,

    /// The audience written into and required of access tokens.
    #[arg(long, env = "HARK_JWT_AUDIENCE", default_value = "hark")]
    pub jwt_audience: String,

    /// Lifetime of an access token, in seconds.
    #[arg(long, env = "HARK_ACCESS_TOKEN_TTL_SECONDS", default_value_t = 900)]
    pub access_token_ttl_seconds: u64,

    /// Lifetime of a refresh token since the last refresh, in seconds.
    #[arg(long, env = "HARK_REFRESH_TOKEN_TTL_SECONDS", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl_seconds: u64,

    /// Who may create tenants over HTTP.
    #[arg(long, env = "HARK_TENANT_CREATION", value_enum, default_value_t = TenantCreation::Operator)]
    pub tenant_creation: TenantCreation,

    /// The key that `X-Operator-Key` must carry to create tenants in operator mode and
    /// to call the operator API (`/v1/operator/…`). Without it, tenants are created and
    /// operated only with `hark tenant …`.
    #[arg(long, env = "HARK_OPERATOR_KEY", hide_env_values = true)]
    pub operator_key: Option<String>,

    /// Users a tenant may have, unless the operator gave it a quota of its own (none
    /// when unset).
    #[arg(long, env = "HARK_QUOTA_USERS", value_parser = clap::value_parser!(i64).range(0..))]
    pub quota_users: Option<i64>,

    /// Rooms a tenant may have, direct ones included (none when unset).
    #[arg(long, env = "HARK_QUOTA_ROOMS", value_parser = clap::value_parser!(i64).range(0..))]
    pub quota_rooms: Option<i64>,

    /// Members one room may have (none when unset).
    #[arg(long, env = "HARK_QUOTA_MEMBERS_PER_ROOM", value_parser = clap::value_parser!(i64).range(0..))]
    pub quota_members_per_room: Option<i64>,

    /// Messages a tenant may write per UTC day (none when unset): one more is refused
    /// with 429 `quota_exceeded`.
    #[arg(long, env = "HARK_QUOTA_MESSAGES_PER_DAY", value_parser = clap::value_parser!(i64).range(0..))]
    pub quota_messages_per_day: Option<i64>,

    /// Bytes of attachment metadata (each attachment's JSON text) a tenant may write
    /// per UTC day (none when unset).
    #[arg(long, env = "HARK_QUOTA_ATTACHMENT_BYTES_PER_DAY", value_parser = clap::value_parser!(i64).range(0..))]
    pub quota_attachment_bytes_per_day: Option<i64>,

    /// WebSocket and event-stream connections a tenant's users may hold at once across
    /// the fleet (none when unset).
    #[arg(long, env = "HARK_QUOTA_CONNECTIONS", value_parser = clap::value_parser!(i64).range(0..))]
    pub quota_connections: Option<i64>,

    /// Tenants labelled in `/metrics` (`hark_tenant_*{tenant="<slug>"}`): the ones
    /// with the most messages today, at most this many, so that the label set stays
    /// bounded however many tenants there are (0, the default: none).
    #[arg(long, env = "HARK_METRICS_TENANTS", default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=1000))]
    pub metrics_tenants: i32,

    /// How often each instance rolls up the tenants' usage figures (one instance at a
    /// time does the work).
    #[arg(long, env = "HARK_USAGE_ROLLUP_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub usage_rollup_seconds: u64,

    /// Webhook endpoints a tenant may have.
    #[arg(long, env = "HARK_QUOTA_WEBHOOK_ENDPOINTS", default_value_t = 20, value_parser = clap::value_parser!(i64).range(0..))]
    pub quota_webhook_endpoints: i64,

    /// Origins allowed by CORS, comma-separated (none by default; `*` allows any).
    #[arg(long, env = "HARK_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// The largest request body accepted, in bytes.
    #[arg(long, env = "HARK_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// The most bytes of JSON one page of history or of the event log carries: a page
    /// ends before the item that would pass it (it always holds at least one), and
    /// the client pages on from there.
    #[arg(long, env = "HARK_MAX_PAGE_BYTES", default_value_t = 1024 * 1024)]
    pub max_page_bytes: i32,

    /// The largest message body accepted, in bytes (UTF-8).
    #[arg(long, env = "HARK_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024)]
    pub max_message_bytes: i32,

    /// Message batches in flight at once per instance (rooms are sharded over them).
    /// Notifying commits serialise on Postgres's notification lock, so one batch at a
    /// time, as large as the waiting sends make it, gives the most throughput.
    #[arg(long, env = "HARK_WRITE_WORKERS", default_value_t = 1)]
    pub write_workers: usize,

    /// The most messages in one write batch.
    #[arg(long, env = "HARK_WRITE_BATCH_MAX", default_value_t = 200)]
    pub write_batch_max: usize,

    /// How many events a resuming client may be behind before it is told to reset.
    #[arg(long, env = "HARK_REPLAY_WINDOW", default_value_t = 1000)]
    pub replay_window: i64,

    /// Frames queued per WebSocket or SSE subscriber before it is closed as too slow (4009).
    #[arg(long, env = "HARK_WS_SEND_QUEUE", default_value_t = 1024)]
    pub ws_send_queue: usize,

    /// The largest WebSocket frame a client may send, in bytes.
    #[arg(long, env = "HARK_WS_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub ws_max_frame_bytes: usize,

    /// Keep the rate limits for the whole fleet, in PostgreSQL (leased a second of the
    /// rate at a time), instead of per instance, where N instances admit N times the
    /// rate. Set it to false only for a single instance that wants no lease calls.
    #[arg(
        long,
        env = "HARK_FLEET_RATE_LIMITS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub fleet_rate_limits: bool,

    /// Messages a user may send at once (REST and WebSocket together), for the fleet.
    #[arg(long, env = "HARK_SEND_BURST", default_value_t = 50)]
    pub send_burst: u32,

    /// Messages per second a user may send in the long run, for the fleet.
    #[arg(long, env = "HARK_SEND_RATE_PER_SECOND", default_value_t = 10.0)]
    pub send_rate_per_second: f64,

    /// WebSocket ops other than `send`, `auth` and `ping` (subscribe, unsubscribe,
    /// edit, delete, react, read, typing) one user may make at once, across their
    /// sockets on one instance; refused ones count too.
    #[arg(long, env = "HARK_WS_OPS_BURST", default_value_t = 40)]
    pub ws_ops_burst: u32,

    /// Those ops per second per user, sustained.
    #[arg(long, env = "HARK_WS_OPS_PER_SECOND", default_value_t = 20.0)]
    pub ws_ops_per_second: f64,

    /// Failed logins allowed per account (tenant and login) before 429.
    #[arg(long, env = "HARK_LOGIN_FAILURES_PER_ACCOUNT", default_value_t = 5)]
    pub login_failures_per_account: u32,

    /// Failed logins allowed per client address before 429.
    #[arg(long, env = "HARK_LOGIN_FAILURES_PER_ADDRESS", default_value_t = 50)]
    pub login_failures_per_address: u32,

    /// Take the client's address from the last entry of `X-Forwarded-For` (the one
    /// the load balancer in front of Hark appended) instead of the TCP peer, for the
    /// per-address login limit. Only behind a proxy that sets the header.
    #[arg(long, env = "HARK_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Seconds in which the allowed failed logins come back in full.
    #[arg(long, env = "HARK_LOGIN_LOCKOUT_SECONDS", default_value_t = 300)]
    pub login_lockout_seconds: u64,

    /// WebSocket and event-stream connections one user may hold, per instance.
    #[arg(long, env = "HARK_MAX_STREAMS_PER_USER", default_value_t = 32)]
    pub max_streams_per_user: usize,

    /// Failed joins by invite code allowed per user before 429 `too_many_attempts`.
    #[arg(long, env = "HARK_JOIN_CODE_FAILURES_PER_USER", default_value_t = 10)]
    pub join_code_failures_per_user: u32,

    /// Failed joins by invite code allowed per client address before 429.
    #[arg(
        long,
        env = "HARK_JOIN_CODE_FAILURES_PER_ADDRESS",
        default_value_t = 50
    )]
    pub join_code_failures_per_address: u32,

    /// Seconds in which the allowed failed joins by code come back in full.
    #[arg(long, env = "HARK_JOIN_CODE_LOCKOUT_SECONDS", default_value_t = 600)]
    pub join_code_lockout_seconds: u64,

    /// Group rooms one user may create per hour (429 `too_many_rooms`).
    #[arg(long, env = "HARK_ROOMS_PER_USER_PER_HOUR", default_value_t = 120)]
    pub rooms_per_user_per_hour: u32,

    /// Rooms one WebSocket may be subscribed to at once (`too_many_subscriptions`).
    #[arg(
        long,
        env = "HARK_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value_t = 200
    )]
    pub max_subscriptions_per_connection: usize,

    /// WebSockets one client address may hold open before they authenticate (429
    /// `too_many_connections` on the upgrade).
    #[arg(
        long,
        env = "HARK_MAX_UNAUTHENTICATED_SOCKETS_PER_ADDRESS",
        default_value_t = 16
    )]
    pub max_unauthenticated_sockets_per_address: usize,

    /// Rows of a deleted room's history deleted per transaction.
    #[arg(long, env = "HARK_PURGE_BATCH", default_value_t = 1000)]
    pub purge_batch: i32,

    /// Pause between two batches of a deleted room's history, in milliseconds.
    #[arg(long, env = "HARK_PURGE_PAUSE_MS", default_value_t = 20)]
    pub purge_pause_ms: u64,

    /// Whether webhook URLs may be `http` and reach private, loopback and link-local
    /// addresses. Off: only `https` to public addresses, checked on every attempt.
    #[arg(long, env = "HARK_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// The most a webhook attempt may take, answer included, in milliseconds.
    #[arg(long, env = "HARK_WEBHOOK_TIMEOUT_MS", default_value_t = 5000)]
    pub webhook_timeout_ms: u64,

    /// The delay before a failed webhook delivery's first retry, in milliseconds;
    /// doubled for each later one (with jitter), up to an hour.
    #[arg(long, env = "HARK_WEBHOOK_RETRY_BASE_MS", default_value_t = 5000)]
    pub webhook_retry_base_ms: i32,

    /// How long after its event a webhook delivery is retried before it is given up,
    /// in seconds.
    #[arg(long, env = "HARK_WEBHOOK_RETRY_FOR_SECONDS", default_value_t = 86_400)]
    pub webhook_retry_for_seconds: i32,

    /// How long an endpoint may fail every attempt before it is disabled, in seconds.
    #[arg(
        long,
        env = "HARK_WEBHOOK_DISABLE_AFTER_SECONDS",
        default_value_t = 432_000
    )]
    pub webhook_disable_after_seconds: i32,

    /// Runs of webhook deliveries this instance attempts at once; 0: it delivers
    /// none, and other instances do (a fleet may keep delivery apart from the API).
    #[arg(long, env = "HARK_WEBHOOK_CONCURRENCY", default_value_t = 32)]
    pub webhook_concurrency: usize,

    /// Runs of deliveries (so requests) out at once per endpoint from one instance.
    #[arg(long, env = "HARK_WEBHOOK_ENDPOINT_CONCURRENCY", default_value_t = 16)]
    pub webhook_endpoint_concurrency: i32,

    /// Deliveries of one endpoint and room claimed together and attempted in order.
    #[arg(long, env = "HARK_WEBHOOK_RUN_LENGTH", default_value_t = 50)]
    pub webhook_run_length: i32,

    /// How long a claimed run belongs to the instance that claimed it, in seconds:
    /// deliveries of an instance that died are attempted again after this.
    #[arg(long, env = "HARK_WEBHOOK_LEASE_SECONDS", default_value_t = 30)]
    pub webhook_lease_seconds: u64,

    /// How long finished webhook deliveries are kept, for the list and replays, in
    /// seconds.
    #[arg(long, env = "HARK_WEBHOOK_KEEP_SECONDS", default_value_t = 604_800)]
    pub webhook_keep_seconds: i32,

    /// How long a webhook secret replaced by a rotation still signs, in seconds.
    #[arg(
        long,
        env = "HARK_WEBHOOK_SECRET_GRACE_SECONDS",
        default_value_t = 86_400
    )]
    pub webhook_secret_grace_seconds: i32,

    /// Requests one user may make at once, by bearer token, for the fleet (429
    /// `rate_limited`); streams' frames are counted apart.
    #[arg(long, env = "HARK_REQUESTS_BURST", default_value_t = 100)]
    pub requests_burst: u32,

    /// Requests one user may make per second, sustained, for the fleet.
    #[arg(long, env = "HARK_REQUESTS_PER_SECOND", default_value_t = 50.0)]
    pub requests_per_second: f64,

    /// Requests of one tenant's users running at once on an instance; more wait for
    /// a turn (up to `HARK_DB_POOL_TIMEOUT_MS`, then 503 `busy`), so that one tenant
    /// cannot take the whole database pool.
    #[arg(
        long,
        env = "HARK_MAX_REQUESTS_IN_FLIGHT_PER_TENANT",
        default_value_t = 8
    )]
    pub max_requests_in_flight_per_tenant: usize,

    /// Requests one user may have in flight at once on an instance (429
    /// `too_many_requests`); streams are counted apart.
    #[arg(
        long,
        env = "HARK_MAX_REQUESTS_IN_FLIGHT_PER_USER",
        default_value_t = 8
    )]
    pub max_requests_in_flight_per_user: usize,

    /// Distinct reactions one user may put on one message (422 `too_many_reactions`).
    #[arg(
        long,
        env = "HARK_MAX_REACTIONS_PER_USER_PER_MESSAGE",
        default_value_t = 20
    )]
    pub max_reactions_per_user_per_message: i32,

    /// Edits one message may have, each kept in its history (422 `too_many_edits`).
    #[arg(long, env = "HARK_MAX_EDITS_PER_MESSAGE", default_value_t = 100)]
    pub max_edits_per_message: i32,

    /// How often idle WebSockets are pinged, in seconds; silent for three periods, they are dropped.
    #[arg(long, env = "HARK_WS_PING_SECONDS", default_value_t = 20)]
    pub ws_ping_seconds: u64,

    /// How often an open WebSocket's token is checked for revocation, in seconds.
    #[arg(long, env = "HARK_TOKEN_RECHECK_SECONDS", default_value_t = 30)]
    pub token_recheck_seconds: u64,

    /// How often presence heartbeats go out, in seconds; a crashed instance's users
    /// drop out after three.
    #[arg(long, env = "HARK_PRESENCE_HEARTBEAT_SECONDS", default_value_t = 10)]
    pub presence_heartbeat_seconds: u64,

    /// How long a user whose last subscription to a room ended stays present before
    /// others are told, in milliseconds; subscribing again meanwhile cancels it.
    #[arg(long, env = "HARK_PRESENCE_DEBOUNCE_MS", default_value_t = 2_000)]
    pub presence_debounce_ms: u64,

    /// Memory of one argon2id password hash, in KiB.
    #[arg(long, env = "HARK_PASSWORD_HASH_MEMORY_KIB", default_value_t = 19_456)]
    pub password_hash_memory_kib: u32,

    /// Passes of one argon2id password hash.
    #[arg(long, env = "HARK_PASSWORD_HASH_ITERATIONS", default_value_t = 2)]
    pub password_hash_iterations: u32,

    /// Password hashes (registrations, logins) running at once at most; each takes
    /// `HARK_PASSWORD_HASH_MEMORY_KIB` of memory.
    #[arg(long, env = "HARK_PASSWORD_HASH_CONCURRENCY", default_value_t = 4)]
    pub password_hash_concurrency: usize,

    /// How long a password hash waits for its turn before 503 `busy`, in milliseconds.
    #[arg(long, env = "HARK_PASSWORD_HASH_QUEUE_MS", default_value_t = 2_000)]
    pub password_hash_queue_ms: u64,

    /// Registrations and tenant creations allowed per client address per hour (429
    /// `too_many_signups`).
    #[arg(long, env = "HARK_SIGNUPS_PER_ADDRESS_PER_HOUR", default_value_t = 20)]
    pub signups_per_address_per_hour: u32,

    /// Connections (HTTP, WebSocket, SSE) one instance holds open at once; one more is
    /// answered 503 `too_many_connections` and closed.
    #[arg(long, env = "HARK_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,

    /// How long a new connection may take to send its first request head, in
    /// milliseconds; then it is closed.
    #[arg(long, env = "HARK_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,

    /// The largest first request head of a connection (request line and headers), in
    /// bytes; a larger one closes the connection.
    #[arg(long, env = "HARK_MAX_HEADER_BYTES", default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,

    /// How long a connection may stay without reading or writing anything, in seconds
    /// (WebSockets are pinged and SSE streams kept alive more often than that).
    #[arg(long, env = "HARK_IDLE_TIMEOUT_SECONDS", default_value_t = 120)]
    pub idle_timeout_seconds: u64,

    /// How long in-flight requests may take to finish after SIGTERM, in seconds.
    #[arg(long, env = "HARK_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,

    /// Log format on standard error.
    #[arg(long, env = "HARK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

impl Config {
    /// The URL of the database.
    pub fn database_url(&self) -> &str {
        self.database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL)
    }

    /// How webhooks are delivered.
    pub fn webhooks(&self) -> crate::webhooks::WebhookSettings {
        crate::webhooks::WebhookSettings {
            allow_private: self.webhook_allow_private,
            timeout: Duration::from_millis(self.webhook_timeout_ms.max(1)),
            retry: crate::db::RetryPolicy {
                base_ms: self.webhook_retry_base_ms.max(1),
                give_up_after_seconds: self.webhook_retry_for_seconds.max(0),
                disable_after_seconds: self.webhook_disable_after_seconds.max(0),
            },
            concurrency: self.webhook_concurrency,
            endpoint_concurrency: self.webhook_endpoint_concurrency.max(1),
            run_length: self.webhook_run_length.max(1),
            lease: Duration::from_secs(self.webhook_lease_seconds.max(1)),
            keep_seconds: self.webhook_keep_seconds.max(0),
            secret_grace_seconds: self.webhook_secret_grace_seconds.max(0),
        }
    }

    /// The quotas of tenants without their own, as configured. Every instance writes
    /// them as it starts, so instances should be configured alike.
    pub fn quotas(&self) -> crate::db::Quotas {
        crate::db::Quotas {
            users: self.quota_users,
            rooms: self.quota_rooms,
            members_per_room: self.quota_members_per_room,
            webhook_endpoints: Some(self.quota_webhook_endpoints),
            messages_per_day: self.quota_messages_per_day,
            attachment_bytes_per_day: self.quota_attachment_bytes_per_day,
            connections: self.quota_connections,
        }
    }

    /// How deleted rooms and tenants are purged and retention applied.
    pub fn purge(&self) -> crate::purge::PurgeSettings {
        crate::purge::PurgeSettings {
            batch: self.purge_batch,
            pause: Duration::from_millis(self.purge_pause_ms),
            replay_window: self.replay_window,
        }
    }

    /// The pool's settings.
    pub fn database(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: self.database_url().to_owned(),
            pool_size: self.db_pool_size,
            pool_timeout: Duration::from_millis(self.db_pool_timeout_ms),
            ca_file: self.database_ca_file.clone(),
            max_reactions_per_user: self.max_reactions_per_user_per_message,
            max_edits_per_message: self.max_edits_per_message,
            max_page_bytes: self.max_page_bytes,
            statement_timeout: Duration::from_millis(self.statement_timeout_ms.max(1)),
            search_timeout: Duration::from_millis(self.search_timeout_ms.max(1)),
            // Known once the schema is (`AppState::start`, from the migration).
            citus: false,
        }
    }

    /// The URL schema changes run with.
    pub fn migration_url(&self) -> &str {
        self.migration_database_url
            .as_deref()
            .unwrap_or(self.database_url())
    }

    /// Batched message writes.
    pub fn batches(&self) -> crate::db::BatchSettings {
        crate::db::BatchSettings {
            workers: self.write_workers,
            max_batch: self.write_batch_max.max(1),
            max_body_bytes: self.max_message_bytes,
        }
    }

    /// Real-time delivery settings.
    pub fn realtime(&self) -> crate::realtime::RealtimeSettings {
        crate::realtime::RealtimeSettings {
            listen_url: self
                .listen_database_url
                .clone()
                .unwrap_or_else(|| self.database_url().to_owned()),
            ca_file: self.database_ca_file.clone(),
            replay_window: self.replay_window,
            send_queue: self.ws_send_queue,
            max_frame_bytes: self.ws_max_frame_bytes,
            ping_interval: Duration::from_secs(self.ws_ping_seconds.max(1)),
            token_recheck: Duration::from_secs(self.token_recheck_seconds.max(1)),
            typing_ttl: Duration::from_secs(5),
            presence_heartbeat: Duration::from_secs(self.presence_heartbeat_seconds.max(1)),
            presence_debounce: Duration::from_millis(self.presence_debounce_ms),
            listen_timeout: Duration::from_secs(10),
            max_subscriptions: self.max_subscriptions_per_connection,
        }
    }

    /// Token settings. Without a secret, only the zero-configuration development run
    /// (no `DATABASE_URL`) starts, signing with the development secret; anything else
    /// refuses to start, since a publicly known secret lets anyone forge tokens.
    pub fn tokens(&self) -> anyhow::Result<TokenSettings> {
        let secret = match &self.jwt_secret {
            Some(secret) => secret.clone(),
            None if self.development => {
                tracing::warn!(
                    "HARK_JWT_SECRET is not set: this development run signs tokens with a publicly known secret"
                );
                tokens_development_secret().to_owned()
            }
            None => anyhow::bail!(
                "HARK_JWT_SECRET is not set: set it to a random secret of at least 32 bytes \
                 (for example `openssl rand -base64 48`), the same on every instance"
            ),
        };
        let previous_keys = self
            .jwt_previous_keys
            .iter()
            .filter_map(|pair| pair.trim().split_once(':'))
            .map(|(key_id, secret)| (key_id.to_owned(), secret.to_owned()))
            .collect();
        Ok(TokenSettings {
            key_id: self
                .jwt_key_id
                .clone()
                .unwrap_or_else(|| crate::auth::default_key_id(&secret)),
            secret,
            previous_keys,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            access_ttl: Duration::from_secs(self.access_token_ttl_seconds),
            refresh_ttl: Duration::from_secs(self.refresh_token_ttl_seconds),
        })
    }

    /// Password hashing cost.
    pub fn passwords(&self) -> PasswordSettings {
        PasswordSettings {
            memory_kib: self.password_hash_memory_kib,
            iterations: self.password_hash_iterations,
            concurrency: self.password_hash_concurrency,
            queue_wait: Duration::from_millis(self.password_hash_queue_ms),
        }
    }
}

/// The configuration alone, as a command line would give it.
#[derive(clap::Parser)]
struct Only {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// How the listener guards connections.
    pub fn connection_limits(&self) -> crate::acceptor::ConnectionLimits {
        crate::acceptor::ConnectionLimits {
            max_connections: self.max_connections.max(1),
            header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
            max_header_bytes: self.max_header_bytes.max(1024),
        }
    }

    /// How long a connection may stay silent.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds.max(1))
    }

    /// The configuration from the environment alone, for `hark` with no subcommand.
    pub fn default_from_env() -> anyhow::Result<Self> {
        Self::from_settings(&[])
    }

    /// The configuration from settings named by their environment variables
    /// (`("HARK_SEND_BURST", "100")`), over the environment: the same names whether
    /// the settings go to a `hark serve` process or to an instance built here.
    pub fn from_settings(settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        let command = <Only as clap::CommandFactory>::command();
        let mut args = vec!["hark".to_owned()];
        for (name, value) in settings {
            let flag = command
                .get_arguments()
                .find(|arg| arg.get_env().is_some_and(|env| env == *name))
                .and_then(clap::Arg::get_long)
                .ok_or_else(|| anyhow::anyhow!("no setting is read from {name}"))?;
            args.push(format!("--{flag}={value}"));
        }
        let only = <Only as clap::Parser>::try_parse_from(args)?;
        Ok(only.config)
    }
}
