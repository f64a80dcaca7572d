//! Deleting deleted rooms' history and deleted tenants' rows, and applying tenants'
//! retention (`hark_api.retention_batch`), in the background. A room's deletion only
//! hides it (`hark_api.room_delete`), a tenant's only refuses it
//! (`hark_api.tenant_mark_deleted`); their rows, which can be millions, go here, as do
//! the messages and events older than a tenant keeps, and the fleet's rate-limit
//! buckets that are full again (a missing bucket is a full one), in batches of
//! `HARK_PURGE_BATCH` rows, one short transaction each with a pause between them, so
//! that no delete holds locks, a pooled connection or the database's attention for
//! long, and other tenants are not stalled. Woken by a deletion or a retention set on
//! this instance, and every minute for the rest and for work left unfinished by a
//! stopped instance; instances working at once take different rooms and tenants.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::db::{Database, DatabaseError};

/// How often rooms deleted on other instances are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How long to wait after a failed batch before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How the purge goes.
#[derive(Debug, Clone, Copy)]
pub struct PurgeSettings {
    /// Rows deleted per transaction.
    pub batch: i32,
    /// The pause between two batches.
    pub pause: Duration,
    /// Events a subscriber may be behind and still be replayed: retention leaves the
    /// event log at least this long.
    pub replay_window: i64,
}

/// The instance's purge task; waking it after a deletion starts the work at once.
#[derive(Clone)]
pub struct Purger {
    /// Wakes the task.
    wake: Arc<Notify>,
}

impl Purger {
    /// Starts the task.
    pub fn start(db: Database, settings: PurgeSettings) -> Self {
        let wake = Arc::new(Notify::new());
        tokio::spawn(purge(db, settings, wake.clone()));
        Self { wake }
    }

    /// Has the task purge now (a room was just deleted).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

async fn purge(db: Database, settings: PurgeSettings, wake: Arc<Notify>) {
    let batch = settings.batch.max(1);
    loop {
        drain(&settings, "purge a deleted room's history", || {
            db.purge_rooms(batch)
        })
        .await;
        drain(&settings, "purge a deleted tenant's rows", || {
            db.purge_tenants(batch)
        })
        .await;
        drain(&settings, "apply a tenant's retention", || {
            db.retention_batch(batch, settings.replay_window)
        })
        .await;
        drain(&settings, "forget the full rate-limit buckets", || {
            db.rate_forget(batch)
        })
        .await;
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}

/// Runs batches of one kind of work until one answers that nothing was left (0),
/// pausing between batches; a failed batch is tried again after a longer pause.
async fn drain<F, Fut>(settings: &PurgeSettings, what: &str, mut batch: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<i32, DatabaseError>>,
{
    loop {
        match batch().await {
            Ok(0) => return,
            Ok(_) => tokio::time::sleep(settings.pause).await,
            Err(error) => {
                tracing::warn!(%error, "could not {what}; trying again");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}
