//! The PostgreSQL the tests run against: the local server, or a private cluster started
//! on demand; one migrated template database, built once per schema version and
//! cloned for every test.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;
use uuid::Uuid;

use super::citus;

/// Port of the private cluster started when no server answers: below the ephemeral
/// range (32768 and up), so that no client socket can be holding it.
const PRIVATE_CLUSTER_PORT: u16 = 25_432;

/// Ports of the shared Citus cluster's nodes, the coordinator first (`HARK_TEST_CITUS=1`).
const CITUS_PORTS: [u16; 3] = [25_442, 25_443, 25_444];

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
            if citus::enabled() {
                return start_citus().await;
            }
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

pub fn postgres_bin_dir() -> PathBuf {
    hark::local_postgres::bin_dir().expect("PostgreSQL server binaries are installed")
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (initdb refuses root).
pub fn run_postgres_tool(tool: &Path, args: &[&str]) -> std::process::Output {
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

/// Starts the shared Citus cluster's nodes under target/ (those not running yet), and
/// answers the coordinator's admin URL.
async fn start_citus() -> String {
    for port in CITUS_PORTS {
        let data =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("hark-test-citus-{port}"));
        hark::local_postgres::start(&data, port, citus::NODE_OPTIONS)
            .expect("a node of the Citus cluster starts");
    }
    let coordinator = citus::url(CITUS_PORTS[0], "postgres");
    for port in CITUS_PORTS {
        let url = citus::url(port, "postgres");
        let mut answered = false;
        for _ in 0..100 {
            if answers(&url).await {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(answered, "the Citus node at {port} does not answer");
    }
    coordinator
}

fn sql_checksum() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let mut files: Vec<PathBuf> = ["migrations", "functions", "citus"]
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

pub fn now_seconds() -> u64 {
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
            if !exists && citus::enabled() {
                let building = format!("{name}_building");
                citus::create_database(&CITUS_PORTS, &building).await;
                hark::db::migrate(&with_database(server, &building), None)
                    .await
                    .expect("migrate the template");
                citus::seal(&CITUS_PORTS, &building).await;
                citus::rename(&CITUS_PORTS, &building, &name).await;
            } else if !exists {
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
        if created.is_some_and(|created| created < cutoff) && citus::enabled() {
            citus::drop_database(&CITUS_PORTS, &name).await;
        } else if created.is_some_and(|created| created < cutoff) {
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
        let cloned = if citus::enabled() {
            citus::clone_database(&CITUS_PORTS, template, &name).await
        } else {
            admin
                .batch_execute(&format!("create database {name} template {template}"))
                .await
        };
        match cloned {
            Ok(()) => return with_database(server, &name),
            Err(error) => {
                last_error = Some(error);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("could not clone the template: {last_error:?}");
}

/// A row locked `FOR UPDATE` by a transaction of the test's own, as a long statement
/// or a change in progress would hold it, until released.
pub struct RowLock {
    /// The connection whose transaction holds the lock.
    client: tokio_postgres::Client,
}

impl RowLock {
    /// Locks the row of `hark.<table>` with id `id`.
    pub async fn hold(database_url: &str, table: &str, id: &str) -> Self {
        let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client.batch_execute("begin").await.expect("begin");
        let id: uuid::Uuid = id.parse().expect("a uuid");
        // By the tenant's key too: Citus locks rows only where it can route to one shard.
        // The tenants table's own key is it.
        let tenant_key = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let tenant: uuid::Uuid = client
            .query_one(
                &format!("select {tenant_key} from hark.{table} where id = $1"),
                &[&id],
            )
            .await
            .expect("find the row")
            .get(0);
        client
            .execute(
                &format!(
                    "select 1 from hark.{table} where {tenant_key} = $1 and id = $2 for update"
                ),
                &[&tenant, &id],
            )
            .await
            .expect("lock the row");
        Self { client }
    }

    /// Ends the transaction, and the lock with it.
    pub async fn release(self) {
        self.client
            .batch_execute("rollback")
            .await
            .expect("release the lock");
    }
}
