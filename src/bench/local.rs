//! The bench's self-contained setup: instances of this very binary, started as child
//! processes on a fresh database, and removed afterwards.

use std::{process::Stdio, time::Duration};

use anyhow::Context as _;
use rand::RngCore;
use tokio::process::{Child, Command};
use tokio_postgres::NoTls;

/// Whether local instances keep the per-user and per-address limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceLimits {
    /// Lifted: the load scenarios send and connect as fast as they can, and the
    /// limits would measure themselves instead of the server.
    Lifted,
    /// The defaults, as a deployment runs: what the neighbours scenario measures.
    Default,
}

/// The settings that lift the limits: the load generator sends and connects as fast
/// as it can, hashes the bench owners' passwords cheaply, and receives webhooks here.
const LIFTED_LIMITS: [(&str, &str); 15] = [
    ("HARK_PASSWORD_HASH_MEMORY_KIB", "1024"),
    ("HARK_PASSWORD_HASH_ITERATIONS", "1"),
    ("HARK_SEND_BURST", "1000000"),
    ("HARK_SEND_RATE_PER_SECOND", "1000000"),
    ("HARK_WS_OPS_BURST", "1000000"),
    ("HARK_WS_OPS_PER_SECOND", "1000000"),
    ("HARK_MAX_STREAMS_PER_USER", "1000000"),
    ("HARK_MAX_REQUESTS_IN_FLIGHT_PER_USER", "1000000"),
    ("HARK_REQUESTS_BURST", "1000000"),
    ("HARK_MAX_REQUESTS_IN_FLIGHT_PER_TENANT", "1000000"),
    ("HARK_REQUESTS_PER_SECOND", "1000000"),
    ("HARK_ROOMS_PER_USER_PER_HOUR", "1000000"),
    ("HARK_MAX_UNAUTHENTICATED_SOCKETS_PER_ADDRESS", "1000000"),
    ("HARK_SIGNUPS_PER_ADDRESS_PER_HOUR", "1000000"),
    // The webhooks scenario's receiver runs on this machine.
    ("HARK_WEBHOOK_ALLOW_PRIVATE", "true"),
];

/// Local instances and their database.
pub struct Local {
    /// The database the instances use.
    pub database_url: String,
    /// The admin URL of the server, for dropping the database.
    admin_url: String,
    /// The database's name, when the bench made it (and drops it at the end); `None`
    /// when the instances use the given database as it is.
    database: Option<String>,
    /// The JWT secret the instances share.
    secret: String,
    /// The instances and their ports.
    instances: Vec<(Child, u16)>,
    /// Whether the instances keep their limits.
    limits: InstanceLimits,
    /// Settings every instance gets beyond the limits.
    settings: Vec<(&'static str, String)>,
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn with_database(url: &str, database: &str) -> String {
    match url.rsplit_once('/') {
        Some((prefix, rest)) => {
            let query = rest
                .split_once('?')
                .map(|(_, query)| format!("?{query}"))
                .unwrap_or_default();
            format!("{prefix}/{database}{query}")
        }
        None => url.to_owned(),
    }
}

impl Local {
    /// Creates a fresh database (on a Citus coordinator, takes the given one) and starts
    /// `count` instances on it.
    pub async fn start(
        server_url: &str,
        count: usize,
        limits: InstanceLimits,
        settings: Vec<(&'static str, String)>,
    ) -> anyhow::Result<Self> {
        let admin_url = with_database(server_url, "postgres");
        // A Citus coordinator's database is used as it is: a fresh one would need the
        // extension and the workers registered in it on every node. Any other names
        // only the server (its database need not exist).
        let citus = match tokio_postgres::connect(server_url, NoTls).await {
            Ok((given, connection)) => {
                tokio::spawn(connection);
                crate::db::is_citus(&given).await?
            }
            Err(_) => false,
        };
        let database = if citus {
            None
        } else {
            let (admin, connection) = tokio_postgres::connect(&admin_url, NoTls)
                .await
                .context("the bench needs a PostgreSQL server (DATABASE_URL)")?;
            tokio::spawn(connection);
            let database = format!("hark_bench_{}", chrono::Utc::now().timestamp());
            admin
                .batch_execute(&format!("create database {database}"))
                .await?;
            Some(database)
        };
        let mut secret_bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut secret_bytes);
        let mut local = Self {
            database_url: database.as_ref().map_or_else(
                || server_url.to_owned(),
                |database| with_database(server_url, database),
            ),
            admin_url,
            database,
            secret: hex::encode(secret_bytes),
            instances: Vec::new(),
            limits,
            settings,
        };
        for _ in 0..count {
            let (child, port) = local.spawn_instance().await?;
            local.instances.push((child, port));
        }
        for (_, port) in &local.instances {
            wait_ready(*port, Duration::from_secs(30)).await?;
        }
        Ok(local)
    }

    /// Starts one more instance (not waited for).
    pub async fn spawn_instance(&self) -> anyhow::Result<(Child, u16)> {
        self.spawn_instance_with(&[]).await
    }

    /// Starts one more instance with settings of its own over the others' (not
    /// waited for).
    pub async fn spawn_instance_with(
        &self,
        own: &[(&str, String)],
    ) -> anyhow::Result<(Child, u16)> {
        let port = free_port()?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("serve")
            .env("DATABASE_URL", &self.database_url)
            .env("HARK_BIND", format!("127.0.0.1:{port}"))
            .env("HARK_TENANT_CREATION", "open")
            .env("HARK_JWT_SECRET", &self.secret)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if self.limits == InstanceLimits::Lifted {
            for (name, value) in LIFTED_LIMITS {
                command.env(name, value);
            }
        }
        for (name, value) in self
            .settings
            .iter()
            .map(|(name, value)| (*name, value))
            .chain(own.iter().map(|(name, value)| (*name, value)))
        {
            command.env(name, value);
        }
        let child = command.spawn().context("could not start an instance")?;
        Ok((child, port))
    }

    /// The instances' base URLs.
    pub fn urls(&self) -> Vec<String> {
        self.instances
            .iter()
            .map(|(_, port)| format!("http://127.0.0.1:{port}"))
            .collect()
    }

    /// The process ids of the instances.
    pub fn pids(&self) -> Vec<u32> {
        self.instances
            .iter()
            .filter_map(|(child, _)| child.id())
            .collect()
    }

    /// The process id of the first instance.
    pub fn first_pid(&self) -> Option<u32> {
        self.instances.first().and_then(|(child, _)| child.id())
    }

    /// Stops the instances and drops the database.
    pub async fn stop(mut self) {
        for (child, _) in &mut self.instances {
            let _ = child.kill().await;
        }
        let Some(database) = &self.database else {
            return;
        };
        if let Ok((admin, connection)) = tokio_postgres::connect(&self.admin_url, NoTls).await {
            tokio::spawn(connection);
            let _ = admin
                .batch_execute(&format!("drop database if exists {database} with (force)"))
                .await;
        }
    }
}

/// Waits until an instance answers `/readyz` with 200.
pub async fn wait_ready(port: u16, limit: Duration) -> anyhow::Result<Duration> {
    let client = reqwest::Client::new();
    let started = tokio::time::Instant::now();
    loop {
        let ready = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        if ready {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            anyhow::bail!("the instance on port {port} was not ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
