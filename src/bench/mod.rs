//! `hark bench`: a load generator for any Hark deployment, which also runs a
//! self-contained local setup (two instances on a fresh database). It measures what
//! users feel (messages accepted and events delivered per second, send-to-delivery
//! latency, lost, duplicated and reordered events) and puts it next to pgbench
//! figures of the same database measured in the same run, since figures from a
//! shared, noisy machine only compare within one run.

mod baseline;
mod fixtures;
mod load;
mod local;
mod memory;
mod neighbours;
mod pgcpu;
mod purge;
mod search;
mod webhooks;

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::config::DEFAULT_DATABASE_URL;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 100 rooms with 10 subscribers each, 50 senders as fast as they can.
    Chat,
    /// One room with 2,000 subscribers.
    Fanout,
    /// The chat scenario at a fixed 500 messages per second.
    Latency,
    /// 10,000 idle WebSockets; resident memory per connection.
    Connections,
    /// Time from process start to a ready `/readyz`, and idle resident memory.
    ColdStart,
    /// A victim tenant's latencies, errors and the instances' memory, quiet and while
    /// another tenant runs each known abuse; local instances with the default limits,
    /// `--duration` seconds per phase.
    Neighbours,
    /// The chat scenario without webhook endpoints and with two (the outbox's cost to
    /// the write path), the backlog's delivery, the chat scenario while delivering,
    /// and event-to-delivery latency at a fixed rate; local instances.
    Webhooks,
    /// Message search on a tenant of 1,000,000 messages in 1,000 rooms, for a caller
    /// in 100 of them: latency percentiles per kind of query and the index size per
    /// message; local instances.
    Search,
    /// The chat scenario quietly, then while the instances purge a deleted tenant of
    /// 500,000 messages; the purge's pace; local instances.
    Purge,
}

/// The bench's options.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Base URLs of running instances (comma-separated); without, two local
    /// instances are started on a fresh database of DATABASE_URL's server.
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<String>,
    /// The operator key for creating the bench's tenant on a running deployment.
    #[arg(long, env = "HARK_OPERATOR_KEY", hide_env_values = true)]
    pub operator_key: Option<String>,
    /// The server the local instances and pgbench use (a fresh database on it; on a
    /// Citus coordinator, this database itself).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Rooms (default per scenario).
    #[arg(long)]
    pub rooms: Option<usize>,
    /// Subscribers per room (default per scenario).
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Senders (default per scenario).
    #[arg(long)]
    pub senders: Option<usize>,
    /// Total messages per second; as fast as possible without.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Send over REST instead of WebSocket.
    #[arg(long)]
    pub rest: bool,
    /// Sends in flight per sender.
    #[arg(long, default_value_t = 8)]
    pub inflight: usize,
    /// WebSocket connections to hold (connections scenario).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Skip the pgbench baseline.
    #[arg(long)]
    pub no_baseline: bool,
}

/// The shape of a load scenario.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Rooms.
    pub rooms: usize,
    /// Subscribers per room.
    pub subscribers: usize,
    /// Senders.
    pub senders: usize,
    /// Total messages per second, or as fast as possible.
    pub rate: Option<f64>,
}

impl BenchArgs {
    fn shape(&self) -> Shape {
        let (rooms, subscribers, senders, rate) = match self.scenario {
            Scenario::Fanout => (1, 2_000, 4, None),
            Scenario::Latency => (100, 10, 50, Some(500.0)),
            _ => (100, 10, 50, None),
        };
        Shape {
            rooms: self.rooms.unwrap_or(rooms),
            subscribers: self.subscribers.unwrap_or(subscribers),
            senders: self.senders.unwrap_or(senders),
            rate: self.rate.or(rate),
        }
    }
}

/// Runs the bench and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    // The neighbours scenario measures the limits, so its instances keep them.
    let limits = if args.scenario == Scenario::Neighbours {
        local::InstanceLimits::Default
    } else {
        local::InstanceLimits::Lifted
    };
    // The webhooks scenario's instances deliver nothing: it starts a delivering
    // instance of its own when it wants deliveries.
    let settings = if args.scenario == Scenario::Webhooks {
        vec![("HARK_WEBHOOK_CONCURRENCY", "0".to_owned())]
    } else {
        Vec::new()
    };
    let local = if args.target.is_empty() {
        Some(local::Local::start(&args.database_url, 2, limits, settings).await?)
    } else {
        None
    };
    let targets: Vec<String> = match &local {
        Some(local) => local.urls(),
        None => args.target.clone(),
    };
    println!(
        "hark bench {:?}: {} instance(s) {}",
        args.scenario,
        targets.len(),
        targets.join(", ")
    );
    let outcome = match args.scenario {
        Scenario::Chat | Scenario::Fanout | Scenario::Latency => {
            let shape = args.shape();
            let baseline = if args.no_baseline || matches!(args.scenario, Scenario::Latency) {
                None
            } else {
                let url = local.as_ref().map_or(args.database_url.clone(), |local| {
                    local.database_url.clone()
                });
                Some(baseline::measure(&url, Duration::from_secs(args.duration)).await?)
            };
            let fixture =
                fixtures::prepare(&targets, args.operator_key.as_deref(), shape, true).await?;
            // The database's CPU time is known only for the local instances' server.
            let cluster = match &local {
                Some(local) => pgcpu::Cluster::find(&local.database_url).await,
                None => None,
            };
            let before = cluster.as_ref().map(pgcpu::Cluster::cpu);
            let mut report = load::run(&targets, &fixture, shape, &args).await?;
            report.postgres_cpu = cluster
                .zip(before)
                .map(|(cluster, before)| cluster.cpu().saturating_sub(before));
            report.print(baseline.as_ref());
            Ok(())
        }
        Scenario::Webhooks => match &local {
            Some(local) => webhooks::run(local, &args, args.shape()).await,
            None => Err(anyhow::anyhow!(
                "webhooks starts its own instances, one of them delivering: run it without --target"
            )),
        },
        Scenario::Purge => match &local {
            Some(local) => purge::run(local, &args, args.shape()).await,
            None => Err(anyhow::anyhow!(
                "purge loads its doomed tenant into its own database: run it without --target"
            )),
        },
        Scenario::Search => match &local {
            Some(local) => search::run(local, &args).await,
            None => Err(anyhow::anyhow!(
                "search loads its messages into its own database: run it without --target"
            )),
        },
        Scenario::Connections => memory::connections(&targets, local.as_ref(), &args).await,
        Scenario::ColdStart => match &local {
            Some(local) => memory::cold_start(local).await,
            None => Err(anyhow::anyhow!(
                "cold-start starts its own instances: run it without --target"
            )),
        },
        Scenario::Neighbours => match &local {
            Some(local) => neighbours::run(local, args.duration).await,
            None => Err(anyhow::anyhow!(
                "neighbours starts its own instances with the default limits: run it without --target"
            )),
        },
    };
    if let Some(local) = local {
        local.stop().await;
    }
    outcome
}
