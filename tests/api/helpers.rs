//! The test harness: a real PostgreSQL (the local server, or a private cluster started
//! on demand), one migrated template database cloned per test, and the application
//! spawned on port 0 and called over real HTTP.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hark::{
    config::{Config, TenantCreation},
    startup::{AppState, serve},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;
use uuid::Uuid;

/// The secret tests sign tokens with; tests forge tokens with it too.
pub const TEST_JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256!";
/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";
/// Port of the private cluster started when no server answers: below the ephemeral
/// range (32768 and up), so that no client socket can be holding it.
const PRIVATE_CLUSTER_PORT: u16 = 25_432;

/// The admin URL of the server tests run against, once it is known to answer.
static SERVER: OnceCell<String> = OnceCell::const_new();
/// The name of the migrated template database.
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

fn admin_url() -> String {
    std::env::var("HARK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A URL like `base` with another database name.
pub fn with_database(base: &str, database: &str) -> String {
    let (prefix, rest) = base.rsplit_once('/').expect("the URL names a database");
    let query = rest.split_once('?').map(|(_, query)| format!("?{query}"));
    format!("{prefix}/{database}{}", query.unwrap_or_default())
}

async fn answers(url: &str) -> bool {
    tokio_postgres::connect(url, NoTls).await.is_ok()
}

/// The admin URL of a server that answers: the configured one, or a private cluster
/// started under target/ when nothing answers there.
async fn server() -> &'static str {
    SERVER
        .get_or_init(|| async {
            let url = admin_url();
            if answers(&url).await {
                return url;
            }
            let private = format!("postgres://postgres@127.0.0.1:{PRIVATE_CLUSTER_PORT}/postgres");
            if !answers(&private).await {
                start_private_cluster();
            }
            for _ in 0..100 {
                if answers(&private).await {
                    return private;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!("PostgreSQL answers neither at {url} nor in the private cluster at {private}");
        })
        .await
}

fn postgres_bin_dir() -> PathBuf {
    hark::local_postgres::bin_dir().expect("PostgreSQL server binaries are installed")
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (initdb refuses root).
fn run_postgres_tool(tool: &Path, args: &[&str]) -> std::process::Output {
    hark::local_postgres::run_tool(tool, args).expect("could not run a PostgreSQL tool")
}

fn start_private_cluster() {
    let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hark-test-postgres");
    hark::local_postgres::start(
        &data,
        PRIVATE_CLUSTER_PORT,
        "-c max_connections=300 -c fsync=off",
    )
    .expect("a private cluster starts");
}

fn sql_checksum() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let mut files: Vec<PathBuf> = ["migrations", "functions"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).expect("sql/ is readable"))
        .map(|entry| entry.expect("sql/ is readable").path())
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(std::fs::read(&file).expect("sql/ is readable"));
    }
    hex::encode(&hasher.finalize()[..6])
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The migrated template, built once per schema version under an advisory lock so
/// that concurrent test processes share it; stale test databases are dropped then.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let server = server().await;
            let name = format!("hark_test_template_{}", sql_checksum());
            let (admin, connection) = tokio_postgres::connect(server, NoTls)
                .await
                .expect("admin connection");
            tokio::spawn(connection);
            admin
                .execute("select pg_advisory_lock(4711)", &[])
                .await
                .expect("template lock");
            let exists = admin
                .query_opt("select 1 from pg_database where datname = $1", &[&name])
                .await
                .expect("list databases")
                .is_some();
            if !exists {
                let building = format!("{name}_building");
                for statement in [
                    format!("drop database if exists {building}"),
                    format!("create database {building}"),
                ] {
                    admin
                        .batch_execute(&statement)
                        .await
                        .expect("create the template");
                }
                hark::db::migrate(&with_database(server, &building), None)
                    .await
                    .expect("migrate the template");
                let mut renamed = false;
                for _ in 0..50 {
                    if admin
                        .batch_execute(&format!("alter database {building} rename to {name}"))
                        .await
                        .is_ok()
                    {
                        renamed = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                assert!(renamed, "could not rename the template");
            }
            drop_stale_databases(&admin).await;
            admin
                .execute("select pg_advisory_unlock(4711)", &[])
                .await
                .expect("template unlock");
            name
        })
        .await
}

/// Drops the test databases of runs that ended more than an hour ago.
async fn drop_stale_databases(admin: &tokio_postgres::Client) {
    let rows = admin
        .query(
            "select datname from pg_database where datname like 'hark_t\\_%'",
            &[],
        )
        .await
        .expect("list databases");
    let cutoff = now_seconds().saturating_sub(3600);
    for row in rows {
        let name: String = row.get(0);
        let created = name
            .split('_')
            .nth(2)
            .and_then(|part| part.parse::<u64>().ok());
        if created.is_some_and(|created| created < cutoff) {
            let _ = admin
                .batch_execute(&format!("drop database if exists {name} with (force)"))
                .await;
        }
    }
}

/// A fresh database cloned from the template; answers its URL.
pub async fn fresh_database() -> String {
    let template = template().await;
    let server = server().await;
    let name = format!("hark_t_{}_{}", now_seconds(), Uuid::new_v4().simple());
    let (admin, connection) = tokio_postgres::connect(server, NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(connection);
    let mut last_error = None;
    for _ in 0..20 {
        match admin
            .batch_execute(&format!("create database {name} template {template}"))
            .await
        {
            Ok(()) => return with_database(server, &name),
            Err(error) => {
                last_error = Some(error);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("could not clone the template: {last_error:?}");
}

/// The configuration of a test server: fast password hashing, open tenant creation.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::default_from_env().expect("default configuration");
    config.database_url = Some(database_url.to_owned());
    config.migration_database_url = None;
    config.db_pool_size = 8;
    config.jwt_secret = Some(TEST_JWT_SECRET.to_owned());
    config.jwt_issuer = "hark".to_owned();
    config.jwt_audience = "hark".to_owned();
    config.tenant_creation = TenantCreation::Open;
    config.operator_key = None;
    config.cors_origins = Vec::new();
    config.max_body_bytes = 64 * 1024;
    config.password_hash_memory_kib = 1024;
    config.password_hash_iterations = 1;
    // Tests that are not about limits send and connect far faster than a person;
    // the limit tests set their own.
    config.send_burst = 1_000_000;
    config.send_rate_per_second = 1_000_000.0;
    config.ws_ops_burst = 1_000_000;
    config.ws_ops_per_second = 1_000_000.0;
    config.login_failures_per_account = 1_000;
    config.login_failures_per_address = 1_000_000;
    config.max_streams_per_user = 100_000;
    config.join_code_failures_per_user = 1_000_000;
    config.join_code_failures_per_address = 1_000_000;
    config.rooms_per_user_per_hour = 1_000_000;
    config.max_unauthenticated_sockets_per_address = 100_000;
    config.signups_per_address_per_hour = 1_000_000;
    config
}

/// A running server and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The URL of this test's own database (as the admin role).
    pub database_url: String,
    /// An HTTP client.
    pub client: reqwest::Client,
    /// The running instance's state, for looking inside (batch counts); `None` for an
    /// instance running as its own process.
    pub state: Option<AppState>,
}

/// A `hark serve` process on its own port and database, configured by environment
/// variables as a deployment would be; its standard error is piped to the test.
pub async fn spawn_process(
    database_url: &str,
    env: &[(&str, String)],
) -> (tokio::process::Child, TestApp) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    spawn_process_on(port, database_url, env).await
}

/// Like [`spawn_process`], on a given port (to restart an instance where it was).
pub async fn spawn_process_on(
    port: u16,
    database_url: &str,
    env: &[(&str, String)],
) -> (tokio::process::Child, TestApp) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hark"));
    command
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("HARK_BIND", format!("127.0.0.1:{port}"))
        .env("HARK_JWT_SECRET", TEST_JWT_SECRET)
        .env("HARK_TENANT_CREATION", "open")
        .env("HARK_PASSWORD_HASH_MEMORY_KIB", "1024")
        .env("HARK_PASSWORD_HASH_ITERATIONS", "1")
        .env("HARK_SEND_BURST", "1000000")
        .env("HARK_SEND_RATE_PER_SECOND", "1000000")
        .env("HARK_WS_OPS_BURST", "1000000")
        .env("HARK_WS_OPS_PER_SECOND", "1000000")
        .env("HARK_MAX_STREAMS_PER_USER", "100000")
        .env("HARK_ROOMS_PER_USER_PER_HOUR", "1000000")
        .env("HARK_MAX_UNAUTHENTICATED_SOCKETS_PER_ADDRESS", "100000")
        .env("HARK_SIGNUPS_PER_ADDRESS_PER_HOUR", "1000000")
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let server = command.spawn().unwrap();
    let app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        database_url: database_url.to_owned(),
        client: reqwest::Client::new(),
        state: None,
    };
    for _ in 0..200 {
        if reqwest::get(format!("{}/readyz", app.address))
            .await
            .is_ok_and(|response| response.status() == 200)
        {
            return (server, app);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the hark process did not become ready");
}

/// Sends SIGTERM to a process and answers its exit status and standard error.
pub async fn terminate(server: tokio::process::Child) -> (std::process::ExitStatus, String) {
    let pid = server.id().unwrap().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let output = tokio::time::timeout(Duration::from_secs(30), server.wait_with_output())
        .await
        .expect("the process exits within 30 s of SIGTERM")
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A user with a session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The tenant.
    pub tenant_id: String,
    /// The user.
    pub user_id: String,
    /// The access token.
    pub token: String,
    /// The refresh token.
    pub refresh_token: String,
}

impl Session {
    fn from_auth(body: &Value) -> Self {
        Self {
            tenant_id: body["tenant_id"].as_str().expect("tenant_id").to_owned(),
            user_id: body["user"]["id"].as_str().expect("user id").to_owned(),
            token: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            refresh_token: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        }
    }
}

/// A tenant with its owner.
#[derive(Debug, Clone)]
pub struct TenantFixture {
    /// The slug.
    pub slug: String,
    /// The owner's session.
    pub owner: Session,
}

/// An HTTP answer: status, headers and JSON body (null when empty).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON.
    pub body: Value,
}

impl Answer {
    /// Asserts the status and answers the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.body
        );
        self.body
    }

    /// Asserts an error answer with its status and code, and the error body's shape.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.body
        );
        assert_eq!(self.body["code"], code, "unexpected error: {}", self.body);
        assert!(
            self.body["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty())
        );
        let request_id = self
            .headers
            .get("x-request-id")
            .expect("a request id header");
        assert_eq!(self.body["request_id"], request_id.to_str().expect("ASCII"));
        self.body
    }
}

/// Spawns the application on its own fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the application with a changed configuration.
pub async fn spawn_app_with(change: impl FnOnce(&mut Config)) -> TestApp {
    spawn_on(fresh_database().await, change).await
}

impl TestApp {
    /// Sends a request with an optional bearer token and JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::answer(request.send().await.expect("the request is answered")).await
    }

    /// Turns a response into an [`Answer`].
    pub async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// GET with a token.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.request(Method::GET, path, Some(token), None).await
    }

    /// POST JSON with an optional token.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.request(Method::POST, path, token, Some(body)).await
    }

    /// PATCH JSON with a token.
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// DELETE with a token.
    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.request(Method::DELETE, path, Some(token), None).await
    }

    /// Creates a tenant with an owner called `owner`.
    pub async fn create_tenant(&self, slug: &str) -> TenantFixture {
        let body = self
            .post(
                "/v1/tenants",
                None,
                json!({"slug": slug, "name": format!("Tenant {slug}"), "registration_open": true, "owner": {"username": "owner", "password": PASSWORD, "email": format!("owner@{slug}.example")}}),
            )
            .await
            .expect(201);
        TenantFixture {
            slug: slug.to_owned(),
            owner: Session::from_auth(&body["session"]),
        }
    }

    /// Registers a member of a tenant.
    pub async fn register(&self, slug: &str, username: &str) -> Session {
        let body = self
            .post(
                "/v1/auth/register",
                None,
                json!({"tenant": slug, "username": username, "password": PASSWORD, "email": format!("{username}@{slug}.example")}),
            )
            .await
            .expect(201);
        Session::from_auth(&body)
    }

    /// Registers a user and makes them an admin (by the tenant's owner).
    pub async fn admin(&self, tenant: &TenantFixture, username: &str) -> Session {
        let session = self.register(&tenant.slug, username).await;
        self.patch(
            &format!("/v1/users/{}", session.user_id),
            &tenant.owner.token,
            json!({"role": "admin"}),
        )
        .await
        .expect(200);
        session
    }

    /// Opens a room's Server-Sent Events stream (`query` is `""` or `"?since=…"`).
    pub async fn open_events(&self, token: &str, room_id: &str, query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/v1/rooms/{room_id}/events{query}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("the stream is answered")
    }

    /// Counts rows of a table across all tenants, as the admin role (bypassing RLS).
    pub async fn count_rows(&self, table: &str) -> i64 {
        let (client, connection) = tokio_postgres::connect(&self.database_url, NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
            .query_one(&format!("select count(*) from hark.{table}"), &[])
            .await
            .expect("count")
            .get(0)
    }
}

/// A JWT signed with `secret`, with the given header algorithm and claims.
pub fn forge_token(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// The claims of a token (unverified), to forge variations of it.
pub fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Seconds since 1970.
pub fn unix_now() -> i64 {
    i64::try_from(now_seconds()).expect("in range")
}

impl TestApp {
    /// Creates a group room and answers it.
    pub async fn create_room(&self, token: &str, name: &str, visibility: &str) -> Value {
        self.post(
            "/v1/rooms",
            Some(token),
            json!({"name": name, "visibility": visibility}),
        )
        .await
        .expect(201)
    }

    /// Adds a user to a room (as a room admin).
    pub async fn add_member(&self, admin_token: &str, room_id: &str, user_id: &str) {
        self.post(
            &format!("/v1/rooms/{room_id}/members"),
            Some(admin_token),
            json!({"user_id": user_id}),
        )
        .await
        .expect(200);
    }

    /// Sends a text message and answers it.
    pub async fn send(&self, token: &str, room_id: &str, body: &str) -> Value {
        self.post(
            &format!("/v1/rooms/{room_id}/messages"),
            Some(token),
            json!({"body": body}),
        )
        .await
        .expect(201)
    }

    /// Counts the rows of several tables, to show that a refused request changed nothing.
    pub async fn snapshot(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for table in [
            "rooms",
            "room_members",
            "room_events",
            "messages",
            "message_edits",
            "reactions",
        ] {
            counts.push(self.count_rows(table).await);
        }
        counts
    }
}

/// A room's id as a string.
pub fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

impl TestApp {
    /// Starts a second instance on this instance's database.
    pub async fn spawn_peer(&self) -> TestApp {
        self.spawn_peer_with(|_| {}).await
    }

    /// Starts a second instance on this instance's database with a changed configuration.
    pub async fn spawn_peer_with(&self, change: impl FnOnce(&mut Config)) -> TestApp {
        spawn_on(self.database_url.clone(), change).await
    }
}

/// Starts an instance on an existing database.
pub async fn spawn_on(database_url: String, change: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(&database_url);
    if crate::pgbouncer::requested() {
        crate::pgbouncer::behind_pgbouncer(&database_url).await(&mut config);
    }
    change(&mut config);
    let state = AppState::start(config)
        .await
        .expect("the application starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let address = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(serve(listener, state.clone(), std::future::pending()));
    TestApp {
        address,
        database_url,
        client: reqwest::Client::new(),
        state: Some(state),
    }
}

/// A PostgreSQL cluster of a test's own, which the test may restart.
pub struct OwnCluster {
    /// The data directory.
    data: PathBuf,
    /// The port.
    pub port: u16,
}

impl OwnCluster {
    /// Initialises and starts a cluster on `port` (best below 32768, the ephemeral
    /// range) under target/.
    pub fn start(port: u16) -> Self {
        let data =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("hark-own-postgres-{port}"));
        let data_str = data.to_str().expect("a UTF-8 path").to_owned();
        let _ = run_postgres_tool(
            &postgres_bin_dir().join("pg_ctl"),
            &["-D", &data_str, "-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&data);
        hark::local_postgres::start(&data, port, "-c fsync=off")
            .expect("a cluster of the test's own starts");
        Self { data, port }
    }

    /// Initialises a cluster on `port` that accepts TCP connections only over TLS, with a
    /// server certificate for `localhost` signed by a CA made here; answers the cluster
    /// and the CA certificate's path.
    pub fn start_with_tls(port: u16) -> (Self, PathBuf) {
        let cluster = Self::start(port);
        cluster.pg_ctl("stop");
        let data = cluster.data.to_str().expect("a UTF-8 path").to_owned();
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&cluster.data)
                .output()
                .expect("openssl runs");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=hark test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            cluster.data.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("write");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        let conf = cluster.data.join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf).expect("postgresql.conf");
        settings
            .push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, settings).expect("write postgresql.conf");
        let hba = cluster.data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        std::fs::write(
            &hba,
            format!(
                "hostnossl all all 0.0.0.0/0 reject\nhostssl all all 127.0.0.1/32 trust\n{rules}"
            ),
        )
        .expect("write pg_hba.conf");
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres", &data])
            .status();
        let _ = Command::new("chmod")
            .args(["600", &format!("{data}/server.key")])
            .status();
        cluster.pg_ctl("start");
        let ca = cluster.data.join("ca.crt");
        (cluster, ca)
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        let data = self.data.to_str().expect("a UTF-8 path");
        let log = self.data.join("server.log");
        let output = run_postgres_tool(
            &postgres_bin_dir().join("pg_ctl"),
            &[
                "-D",
                data,
                "-o",
                &options,
                "-l",
                log.to_str().expect("a UTF-8 path"),
                "-m",
                "fast",
                "-w",
                action,
            ],
        );
        assert!(
            output.status.success(),
            "pg_ctl {action} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Restarts the server (fast shutdown: every connection is cut).
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// A URL of a database on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap_or_default().to_owned();
        let _ = run_postgres_tool(
            &postgres_bin_dir().join("pg_ctl"),
            &["-D", &data, "-m", "immediate", "stop"],
        );
    }
}

/// A tenant `acme` with its owner and a member `bob` in one private room; answers
/// (owner, bob, room id).
pub async fn room_with_bob(app: &TestApp) -> (Session, Session, String) {
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "lobby", "private")
            .await,
    );
    app.add_member(&tenant.owner.token, &room_id, &bob.user_id)
        .await;
    (tenant.owner, bob, room_id)
}
