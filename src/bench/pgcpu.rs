//! PostgreSQL's CPU time, read from `/proc` when the database runs on this machine:
//! the postmaster's own and its reaped children's time, plus that of its live
//! children (backends, autovacuum, the WAL writer). The difference of two readings
//! is what the whole cluster spent in between, whoever connected.

use std::time::Duration;

use tokio_postgres::NoTls;

/// The cluster's postmaster, found through a backend of ours.
pub struct Cluster {
    /// The postmaster's process id.
    postmaster: u32,
}

/// Clock ticks per second of `/proc`'s CPU times (`sysconf(_SC_CLK_TCK)`, 100 on
/// Linux).
const TICKS_PER_SECOND: u64 = 100;

impl Cluster {
    /// The cluster behind `url`, when its processes are visible here.
    pub async fn find(url: &str) -> Option<Self> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.ok()?;
        tokio::spawn(connection);
        let backend: i32 = client
            .query_one("select pg_backend_pid()", &[])
            .await
            .ok()?
            .get(0);
        let postmaster = stat(u32::try_from(backend).ok()?)?.parent;
        // A backend's parent is the postmaster, whose name says so.
        let comm = std::fs::read_to_string(format!("/proc/{postmaster}/comm")).ok()?;
        (comm.trim() == "postgres").then_some(Self { postmaster })
    }

    /// The cluster's CPU time so far.
    pub fn cpu(&self) -> Duration {
        let mut ticks = stat(self.postmaster).map_or(0, |own| own.ticks + own.children_ticks);
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| name.parse().ok())
                else {
                    continue;
                };
                if let Some(process) = stat(pid)
                    && process.parent == self.postmaster
                {
                    ticks += process.ticks;
                }
            }
        }
        Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
    }
}

/// What `/proc/<pid>/stat` says of a process.
struct Stat {
    /// The parent's process id.
    parent: u32,
    /// User and system time.
    ticks: u64,
    /// User and system time of its children that exited and were waited for.
    children_ticks: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces: the fields follow the last ')'.
    let fields: Vec<&str> = text.get(text.rfind(')')? + 2..)?.split(' ').collect();
    let field = |index: usize| fields.get(index)?.parse::<u64>().ok();
    // Fields 4 (ppid), 14 to 17 (utime, stime, cutime, cstime), counted from 1 with
    // the pid and name as 1 and 2.
    Some(Stat {
        parent: u32::try_from(field(1)?).ok()?,
        ticks: field(11)? + field(12)?,
        children_ticks: field(13)? + field(14)?,
    })
}
