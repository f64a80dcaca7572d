//! The baseline of the same run: pgbench on the same database, a plain single-row
//! INSERT and an INSERT that also notifies, at 16 clients each.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use tokio_postgres::NoTls;

/// pgbench's figures.
pub struct Baseline {
    /// Plain INSERT transactions per second.
    pub insert_tps: f64,
    /// INSERT + pg_notify transactions per second.
    pub notify_tps: f64,
    /// PostgreSQL's CPU time per row of the plain INSERT run, when the database runs
    /// on this machine.
    pub insert_cpu_per_row: Option<Duration>,
}

const PLAIN: &str = "\\set room random(1, 100)\n\
INSERT INTO hark_bench_baseline (room, body) VALUES (:room, 'hello from pgbench');\n";

const NOTIFY: &str = "\\set room random(1, 100)\n\
WITH inserted AS (INSERT INTO hark_bench_baseline (room, body) VALUES (:room, 'hello from pgbench') RETURNING id) \
SELECT pg_notify('hark_bench_baseline', id::text) FROM inserted;\n";

fn pgbench() -> anyhow::Result<PathBuf> {
    if let Ok(output) = std::process::Command::new("which").arg("pgbench").output()
        && output.status.success()
    {
        return Ok(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim(),
        ));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin/pgbench"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|path| path.exists())
        .context("pgbench not found: install PostgreSQL's server package, or pass --no-baseline")
}

async fn run_script(url: &str, script: &str, duration: Duration) -> anyhow::Result<f64> {
    let path =
        std::env::temp_dir().join(format!("hark-bench-{}.sql", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, script)?;
    let output = tokio::process::Command::new(pgbench()?)
        .args([
            "-n",
            "-c",
            "16",
            "-j",
            "2",
            "-T",
            &duration.as_secs().max(1).to_string(),
            "-f",
        ])
        .arg(&path)
        .arg(url)
        .output()
        .await
        .context("could not run pgbench")?;
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .with_context(|| {
            format!(
                "pgbench printed no tps: {text} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// Runs both baselines on the database at `url`.
pub async fn measure(url: &str, duration: Duration) -> anyhow::Result<Baseline> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(
            "create table if not exists hark_bench_baseline (
                 id bigserial primary key, room integer not null, body text not null,
                 created_at timestamptz not null default now())",
        )
        .await?;
    eprintln!(
        "pgbench: plain INSERT, 16 clients, {} s",
        duration.as_secs()
    );
    let cluster = crate::bench::pgcpu::Cluster::find(url).await;
    let before = cluster.as_ref().map(crate::bench::pgcpu::Cluster::cpu);
    let insert_tps = run_script(url, PLAIN, duration).await?;
    let insert_cpu_per_row = cluster.as_ref().zip(before).map(|(cluster, before)| {
        (cluster.cpu().saturating_sub(before))
            .div_f64((insert_tps * duration.as_secs_f64()).max(1.0))
    });
    eprintln!(
        "pgbench: INSERT + NOTIFY, 16 clients, {} s",
        duration.as_secs()
    );
    let notify_tps = run_script(url, NOTIFY, duration).await?;
    client
        .batch_execute("drop table if exists hark_bench_baseline")
        .await?;
    println!(
        "pgbench baseline: plain INSERT {insert_tps:.0} /s, INSERT + NOTIFY {notify_tps:.0} /s (16 clients)"
    );
    Ok(Baseline {
        insert_tps,
        notify_tps,
        insert_cpu_per_row,
    })
}
