//! Rolling up tenants' usage figures in the background: each instance's task calls
//! `hark_api.usage_rollup` every `HARK_USAGE_ROLLUP_SECONDS`; the roll-up takes an
//! advisory lock, so that one instance at a time does the work and the others skip.

use std::time::Duration;

use crate::db::Database;

/// Starts the instance's roll-up task.
pub fn start(db: Database, every: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = db.usage_rollup().await {
                tracing::warn!(%error, "could not roll up the tenants' usage");
            }
        }
    });
}
