//! Citus clusters for the tests: a coordinator and two workers, each a private
//! PostgreSQL cluster with the citus library preloaded. With `HARK_TEST_CITUS=1` every
//! test database lives on the shared one (`database.rs` asks `enabled`); the tests of
//! `citus.rs` start clusters of their own, whose workers they restart.
//!
//! A Citus database is a database of the same name on every node, with the extension
//! in each and the workers registered on the coordinator. Copies of one (the migrated
//! template) are made node by node, once Citus's own connections to it are closed.

use std::time::Duration;

use tokio_postgres::NoTls;

use super::cluster::OwnCluster;

/// The options every node starts with: Citus preloaded, room for its connections and
/// two-phase commits, and logical decoding, by which shards move while written to.
pub const NODE_OPTIONS: &str = "-c shared_preload_libraries=citus -c max_connections=1000 \
     -c max_prepared_transactions=300 -c max_worker_processes=256 -c wal_level=logical -c fsync=off";

/// Whether the tests run against the shared Citus cluster.
pub fn enabled() -> bool {
    std::env::var("HARK_TEST_CITUS").is_ok_and(|value| value == "1" || value == "true")
}

/// The URL of a database on the node at `port`. Citus makes each node's TLS
/// certificate itself; the tests connect in the clear.
pub fn url(port: u16, database: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{database}?sslmode=disable")
}

async fn admin(port: u16, database: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(port, database), NoTls)
        .await
        .unwrap_or_else(|error| panic!("connect to the node at {port}: {error}"));
    tokio::spawn(connection);
    client
}

/// Runs the statements, one by one, on every node's `postgres` database.
async fn on_every_node(ports: &[u16], statements: &[String]) -> Result<(), tokio_postgres::Error> {
    for port in ports {
        let client = admin(*port, "postgres").await;
        for statement in statements {
            client.batch_execute(statement).await?;
        }
    }
    Ok(())
}

/// Creates `database` on every node with the extension, and registers the workers
/// (`ports[1..]`) with the coordinator (`ports[0]`).
pub async fn create_database(ports: &[u16], database: &str) {
    on_every_node(
        ports,
        &[
            format!("drop database if exists {database} with (force)"),
            format!("create database {database}"),
        ],
    )
    .await
    .expect("create the database on every node");
    for port in ports {
        admin(*port, database)
            .await
            .batch_execute("create extension citus")
            .await
            .expect("create the citus extension");
    }
    let coordinator = admin(ports[0], database).await;
    coordinator
        .execute(
            "select citus_set_coordinator_host('127.0.0.1', $1)",
            &[&i32::from(ports[0])],
        )
        .await
        .expect("register the coordinator");
    for worker in &ports[1..] {
        coordinator
            .execute(
                "select citus_add_node('127.0.0.1', $1)",
                &[&i32::from(*worker)],
            )
            .await
            .expect("register a worker");
    }
}

/// Closes `database` to new connections on every node and ends the ones it has
/// (Citus's maintenance daemon and its connections between nodes stay otherwise),
/// so that it can be renamed and copied.
pub async fn seal(ports: &[u16], database: &str) {
    on_every_node(
        ports,
        &[
            format!("alter database {database} allow_connections false"),
            format!(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = '{database}'"
            ),
        ],
    )
    .await
    .expect("seal the database");
}

/// Renames a sealed database on every node.
pub async fn rename(ports: &[u16], from: &str, to: &str) {
    for _ in 0..50 {
        if on_every_node(ports, &[format!("alter database {from} rename to {to}")])
            .await
            .is_ok()
        {
            return;
        }
        // A terminated backend may take a moment to go.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not rename {from} on every node");
}

/// Copies a sealed database as `name` on every node.
pub async fn clone_database(
    ports: &[u16],
    template: &str,
    name: &str,
) -> Result<(), tokio_postgres::Error> {
    on_every_node(
        ports,
        &[format!("create database {name} template {template}")],
    )
    .await
}

/// Drops `name` on every node.
pub async fn drop_database(ports: &[u16], name: &str) {
    let _ = on_every_node(
        ports,
        &[format!("drop database if exists {name} with (force)")],
    )
    .await;
}

/// A Citus cluster of a test's own: the coordinator at `base_port`, two workers on
/// the next ports, and one database, `hark`; stopped when dropped.
pub struct OwnCitus {
    /// The coordinator, then the workers.
    pub nodes: Vec<OwnCluster>,
}

impl OwnCitus {
    /// Starts fresh nodes and makes the Citus database.
    pub async fn start(base_port: u16) -> Self {
        let nodes: Vec<OwnCluster> = (0..3)
            .map(|index| OwnCluster::start_with(base_port + index, NODE_OPTIONS))
            .collect();
        let ports: Vec<u16> = nodes.iter().map(|node| node.port).collect();
        create_database(&ports, "hark").await;
        Self { nodes }
    }

    /// The coordinator's URL, which the application is given.
    pub fn coordinator_url(&self) -> String {
        url(self.nodes[0].port, "hark")
    }

    /// A SQL client on the coordinator.
    pub async fn coordinator(&self) -> tokio_postgres::Client {
        admin(self.nodes[0].port, "hark").await
    }

    /// The notifications on `channel` that the node at `index` of `nodes` sends, as
    /// they arrive, while the returned client (the listening session) is kept.
    pub async fn listen(
        &self,
        index: usize,
        channel: &str,
    ) -> (
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        let (client, mut connection) =
            tokio_postgres::connect(&url(self.nodes[index].port, "hark"), NoTls)
                .await
                .expect("connect to the node");
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages =
                futures_util::stream::poll_fn(|context| connection.poll_message(context));
            while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
                if let tokio_postgres::AsyncMessage::Notification(notification) = message {
                    let _ = sender.send(notification.payload().to_owned());
                }
            }
        });
        client
            .batch_execute(&format!("listen {channel}"))
            .await
            .expect("listen");
        (client, receiver)
    }

    /// The shard of `tenant_id`'s rows (of every colocated table) and the index in
    /// `nodes` of the worker that holds it.
    pub async fn placement_of(&self, tenant_id: &str) -> (i64, usize) {
        let tenant: uuid::Uuid = tenant_id.parse().expect("a tenant id");
        let row = self
            .coordinator()
            .await
            .query_one(
                "select s.shardid, s.nodeport from citus_shards s
                 where s.table_name = 'hark.rooms'::regclass
                   and s.shardid = get_shard_id_for_distribution_column('hark.rooms', $1::uuid)",
                &[&tenant],
            )
            .await
            .expect("the tenant's shard");
        let port: i32 = row.get(1);
        let index = self
            .nodes
            .iter()
            .position(|node| i32::from(node.port) == port)
            .expect("a node of this cluster");
        (row.get(0), index)
    }
}
