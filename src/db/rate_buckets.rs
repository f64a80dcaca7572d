//! Typed calls of the fleet's rate-limit buckets (`sql/functions/0019_fleet_limits.sql`):
//! leasing tokens of a key's bucket, giving them back, and forgetting full buckets.

use serde::Deserialize;

use crate::db::{Database, DatabaseError};

/// What a lease of a fleet bucket's tokens got.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RateLease {
    /// Tokens leased (negative when tokens were given back).
    pub granted: i32,
    /// Whole tokens left in the fleet's bucket after the lease.
    pub remaining: i32,
    /// When nothing was granted: milliseconds until one token is back.
    pub retry_after_ms: Option<u64>,
    /// Milliseconds until the bucket is full again.
    pub reset_after_ms: u64,
}

/// One bucket of the fleet: a limit's name, its key as bytes, its size and refill.
pub struct RateBucket<'a> {
    /// The limit's name, which keeps the keys of different limits apart.
    pub limit: &'static str,
    /// The key (a user id, a client address, a login's digest) as bytes.
    pub key: &'a [u8],
    /// The most tokens the bucket holds.
    pub burst: f64,
    /// Tokens added per second.
    pub per_second: f64,
}

impl Database {
    /// Leases up to `want` tokens of the fleet's `bucket`; a negative `want` gives
    /// tokens back (never beyond the burst).
    pub async fn rate_take(
        &self,
        bucket: &RateBucket<'_>,
        want: i32,
    ) -> Result<RateLease, DatabaseError> {
        self.call(
            "rate_take",
            &[
                &bucket.limit,
                &bucket.key,
                &bucket.burst,
                &bucket.per_second,
                &want,
            ],
        )
        .await
    }

    /// Forgets up to `batch` buckets that are full again; answers how many.
    pub async fn rate_forget(&self, batch: i32) -> Result<i32, DatabaseError> {
        self.call("rate_forget", &[&batch]).await
    }
}
