//! Building exports of users' data in the background: each instance's task builds the
//! pending exports one at a time (`hark_api.export_build`, which skips one another
//! instance is building), woken by a request on this instance and every minute for
//! requests made elsewhere or left unbuilt by a stopped instance.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::db::Database;

/// How often exports asked for on other instances are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How long to wait after a failed build before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The instance's export task; waking it after a request starts the work at once.
#[derive(Clone)]
pub struct Exporter {
    /// Wakes the task.
    wake: Arc<Notify>,
}

impl Exporter {
    /// Starts the task.
    pub fn start(db: Database) -> Self {
        let wake = Arc::new(Notify::new());
        tokio::spawn(build(db, wake.clone()));
        Self { wake }
    }

    /// Has the task build now (an export was just asked for).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

async fn build(db: Database, wake: Arc<Notify>) {
    loop {
        loop {
            match db.export_build().await {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(%error, "could not build an export of a user's data; trying again");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}
