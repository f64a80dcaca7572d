//! A private PostgreSQL cluster, for machines where none answers: `hark serve` without
//! `DATABASE_URL` starts one under `.hark/postgres`, and the tests under `target/`.
//! It is made from the installed server binaries, run as the `postgres` user when we
//! are root (initdb refuses root).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context as _, bail};

/// The directory of the newest installed PostgreSQL server binaries, if any.
pub fn bin_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|dir| dir.join("initdb").exists())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root.
pub fn run_tool(tool: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(tool);
        command
    } else {
        Command::new(tool)
    };
    command
        .args(args)
        .output()
        .with_context(|| format!("could not run {}", tool.display()))
}

/// Initialises (once) and starts the cluster in `data` on `port`, listening on
/// 127.0.0.1 with trust authentication for the `postgres` user. Starting a cluster
/// that already runs is not an error.
pub fn start(data: &Path, port: u16, extra_options: &str) -> anyhow::Result<()> {
    let Some(bin) = bin_dir() else {
        bail!(
            "no PostgreSQL server binaries under /usr/lib/postgresql: install the `postgresql` package"
        );
    };
    let data_str = data
        .to_str()
        .context("the cluster directory is not UTF-8")?;
    if !data.join("PG_VERSION").exists() {
        std::fs::create_dir_all(data).with_context(|| format!("could not create {data_str}"))?;
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres", data_str])
                .status();
        }
        let output = run_tool(
            &bin.join("initdb"),
            &["-D", data_str, "-U", "postgres", "--auth=trust"],
        )?;
        // Someone else may have initialised it at the same moment.
        if !output.status.success() && !data.join("PG_VERSION").exists() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
    let options = format!("-p {port} -k /tmp -c listen_addresses=127.0.0.1 {extra_options}");
    let log = data.join("server.log");
    let log = log.to_str().context("the log path is not UTF-8")?;
    // A failure here usually means the cluster is already running; callers check
    // that it answers.
    let _ = run_tool(
        &bin.join("pg_ctl"),
        &["-D", data_str, "-o", &options, "-l", log, "-w", "start"],
    )?;
    Ok(())
}
