//! Rate limits kept in the instance's memory: token buckets by key. Sends are limited
//! per user (REST and WebSocket draw from the same bucket), failed logins per account
//! and per client address, requests per user; open streams (WebSockets and SSE) and
//! requests in flight are counted per user.
//!
//! The buckets are per instance: behind a load balancer spreading one user's
//! requests over N instances, a user gets at most N times the configured rate. That
//! bound is what protects the database; an exact global count would cost a database
//! round trip on every send.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Every limit of one instance.
pub struct Limits {
    /// Message sends, by user.
    pub sends: RateLimiter<uuid::Uuid>,
    /// Every other WebSocket op but `auth` and `ping`, by user.
    pub ws_ops: RateLimiter<uuid::Uuid>,
    /// Failed logins, by tenant slug and login (as typed, lowercased), kept as their
    /// SHA-256 digest ([`account_key`]) so that a key's size never depends on input.
    pub login_accounts: RateLimiter<AccountKey>,
    /// Failed logins, by client address.
    pub login_addresses: RateLimiter<std::net::IpAddr>,
    /// Wrong operator keys, by client address (as many as failed logins).
    pub operator_key_failures: RateLimiter<std::net::IpAddr>,
    /// Open WebSockets and event streams, by user.
    pub streams: Arc<Concurrency<uuid::Uuid>>,
    /// Requests in flight, by authenticated user.
    pub requests: Arc<Concurrency<uuid::Uuid>>,
    /// Requests made, by authenticated user.
    pub request_rate: RateLimiter<uuid::Uuid>,
    /// Requests running, by the authenticated user's tenant.
    pub tenant_turns: Arc<Turns<uuid::Uuid>>,
    /// Failed joins by invite code, by user.
    pub join_code_users: RateLimiter<uuid::Uuid>,
    /// Failed joins by invite code, by client address.
    pub join_code_addresses: RateLimiter<std::net::IpAddr>,
    /// Group rooms created, by user.
    pub room_creations: RateLimiter<uuid::Uuid>,
    /// Registrations and tenant creations, by client address.
    pub signups: RateLimiter<std::net::IpAddr>,
    /// WebSockets not yet authenticated, by client address.
    pub unauthenticated_sockets: Arc<Concurrency<std::net::IpAddr>>,
}

impl Limits {
    /// The limits a configuration asks for.
    pub fn from_config(config: &crate::config::Config) -> Self {
        let lockout = config.login_lockout_seconds.max(1) as f64;
        let join_lockout = config.join_code_lockout_seconds.max(1) as f64;
        Self {
            sends: RateLimiter::new(config.send_burst, config.send_rate_per_second),
            ws_ops: RateLimiter::new(config.ws_ops_burst, config.ws_ops_per_second),
            login_accounts: RateLimiter::new(
                config.login_failures_per_account,
                f64::from(config.login_failures_per_account) / lockout,
            ),
            login_addresses: RateLimiter::new(
                config.login_failures_per_address,
                f64::from(config.login_failures_per_address) / lockout,
            ),
            operator_key_failures: RateLimiter::new(
                config.login_failures_per_address,
                f64::from(config.login_failures_per_address) / lockout,
            ),
            streams: Arc::new(Concurrency::new(
                config.max_streams_per_user,
                "WebSocket and event-stream connections per user",
                "too_many_connections",
            )),
            request_rate: RateLimiter::new(config.requests_burst, config.requests_per_second),
            tenant_turns: Arc::new(Turns::new(config.max_requests_in_flight_per_tenant)),
            requests: Arc::new(Concurrency::new(
                config.max_requests_in_flight_per_user,
                "requests in flight per user",
                "too_many_requests",
            )),
            join_code_users: RateLimiter::new(
                config.join_code_failures_per_user,
                f64::from(config.join_code_failures_per_user) / join_lockout,
            ),
            join_code_addresses: RateLimiter::new(
                config.join_code_failures_per_address,
                f64::from(config.join_code_failures_per_address) / join_lockout,
            ),
            signups: RateLimiter::new(
                config.signups_per_address_per_hour,
                f64::from(config.signups_per_address_per_hour) / 3600.0,
            ),
            room_creations: RateLimiter::new(
                config.rooms_per_user_per_hour,
                f64::from(config.rooms_per_user_per_hour) / 3600.0,
            ),
            unauthenticated_sockets: Arc::new(Concurrency::new(
                config.max_unauthenticated_sockets_per_address,
                "WebSockets that have not authenticated yet per client address",
                "too_many_connections",
            )),
        }
    }
}

/// The key of an account's failed logins: a digest of the tenant and login as typed.
pub type AccountKey = [u8; 32];

/// The key of the failed logins of `login` at `tenant`, whatever their length.
pub fn account_key(tenant: &str, login: &str) -> AccountKey {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(tenant.to_lowercase().as_bytes());
    hasher.update([0]);
    hasher.update(login.to_lowercase().as_bytes());
    hasher.finalize().into()
}

/// Buckets kept at most before the full ones are forgotten.
const MAX_TRACKED_KEYS: usize = 100_000;

/// A token bucket per key: `burst` tokens, refilled at `per_second`.
pub struct RateLimiter<K> {
    /// Tokens a key starts with and never exceeds.
    burst: f64,
    /// Tokens added per second.
    per_second: f64,
    /// The buckets that are not full, by key.
    buckets: Mutex<HashMap<K, Bucket>>,
}

/// One key's bucket.
#[derive(Clone, Copy)]
struct Bucket {
    /// Tokens left at `updated`.
    tokens: f64,
    /// When `tokens` was computed.
    updated: Instant,
}

/// What a limit says about one more request.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    /// The bucket's size.
    pub limit: u32,
    /// Whole tokens left after this request (0 when refused).
    pub remaining: u32,
    /// When refused: how long until one token is back.
    pub retry_after: Option<Duration>,
    /// How long until the bucket is full again.
    pub reset_after: Duration,
}

impl Allowance {
    /// The `X-RateLimit-*` (and, when refused, `Retry-After`) headers.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", self.remaining.to_string()),
            (
                "x-ratelimit-reset",
                whole_seconds(self.reset_after).to_string(),
            ),
        ];
        if let Some(retry_after) = self.retry_after {
            headers.push(("retry-after", whole_seconds(retry_after).to_string()));
        }
        headers
    }
}

/// Seconds, rounded up, and at least 1 when anything is left to wait.
fn whole_seconds(duration: Duration) -> u64 {
    let seconds = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        seconds + 1
    } else {
        seconds
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter of `burst` requests at once and `per_second` sustained.
    pub fn new(burst: u32, per_second: f64) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_second: per_second.max(f64::MIN_POSITIVE),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key` if one is left.
    pub fn acquire(&self, key: &K) -> Allowance {
        self.update(key, true)
    }

    /// Gives back a token taken for an attempt that turned out to succeed: attempts
    /// are counted before their outcome is known, so that concurrent ones cannot all
    /// get past the limit, and only failures stay counted.
    pub fn refund(&self, key: &K) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(bucket) = buckets.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
    }

    fn update(&self, key: &K, take: bool) -> Allowance {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_KEYS {
            self.forget_full(&mut buckets, now);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed && take {
            bucket.tokens -= 1.0;
        }
        let tokens = bucket.tokens;
        let missing = (1.0 - tokens).max(0.0);
        Allowance {
            limit: self.burst as u32,
            remaining: tokens.floor() as u32,
            retry_after: (!allowed).then(|| Duration::from_secs_f64(missing / self.per_second)),
            reset_after: Duration::from_secs_f64((self.burst - tokens) / self.per_second),
        }
    }

    /// Drops the buckets that have refilled: a missing bucket is a full one.
    fn forget_full(&self, buckets: &mut HashMap<K, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| {
            let elapsed = now.duration_since(bucket.updated).as_secs_f64();
            bucket.tokens + elapsed * self.per_second < self.burst
        });
    }
}

/// One attempt at something that may fail (a login, a join by invite code), counted
/// against several limits before its outcome is known, so that concurrent attempts
/// cannot all get past a limit while the first ones are still being checked. Only
/// failures stay counted: [`Attempt::succeeded`] gives the tokens back.
#[derive(Default)]
pub struct Attempt<'a> {
    /// Gives back each token taken so far.
    refunds: Vec<Box<dyn FnOnce() + Send + 'a>>,
}

impl<'a> Attempt<'a> {
    /// Counts an attempt by `subject` (an account, a user) and, when it is known, from
    /// `address`, each against its own limit; answers the refusal of the first limit
    /// that refuses.
    pub fn by<K: Hash + Eq + Clone + Send + 'a>(
        subjects: &'a RateLimiter<K>,
        subject: K,
        addresses: &'a RateLimiter<std::net::IpAddr>,
        address: Option<std::net::IpAddr>,
    ) -> Result<Self, Allowance> {
        let mut attempt = Self::default();
        attempt.count(subjects, subject)?;
        if let Some(address) = address {
            attempt.count(addresses, address)?;
        }
        Ok(attempt)
    }

    /// Counts the attempt against `limiter` under `key`. When the limit refuses it,
    /// the tokens taken from other limits are given back (the attempt never happens)
    /// and the refusal is answered.
    fn count<K: Hash + Eq + Clone + Send + 'a>(
        &mut self,
        limiter: &'a RateLimiter<K>,
        key: K,
    ) -> Result<(), Allowance> {
        let allowance = limiter.acquire(&key);
        if allowance.retry_after.is_some() {
            self.give_back();
            return Err(allowance);
        }
        self.refunds.push(Box::new(move || limiter.refund(&key)));
        Ok(())
    }

    /// The attempt succeeded: it does not count against any limit.
    pub fn succeeded(mut self) {
        self.give_back();
    }

    fn give_back(&mut self) {
        for refund in self.refunds.drain(..) {
            refund();
        }
    }
}

/// One more refused because its key holds as many as it may.
#[derive(Debug, thiserror::Error)]
#[error("at most {limit} {counted} are allowed at once on each instance")]
pub struct AtCapacity {
    /// The most one key may hold.
    pub limit: usize,
    /// What is counted.
    pub counted: &'static str,
    /// The refusal's stable error code.
    pub code: &'static str,
}

/// What is open or running at once on this instance, by key: WebSockets and SSE per
/// user, WebSockets that have not authenticated yet per client address, requests in
/// flight per user.
pub struct Concurrency<K> {
    /// The most one key may hold at once.
    limit: usize,
    /// What is counted, for the refusal's message ("WebSocket and event-stream
    /// connections per user").
    counted: &'static str,
    /// The refusal's stable error code.
    code: &'static str,
    /// What each key holds now.
    open: Mutex<HashMap<K, usize>>,
}

/// One counted stream or request; dropping it uncounts it.
pub struct Slot<K: Hash + Eq = uuid::Uuid> {
    /// The counter it belongs to.
    counter: Arc<Concurrency<K>>,
    /// Whose stream it is.
    key: K,
}

impl<K: Hash + Eq + Clone> Concurrency<K> {
    /// A counter allowing `limit` at once per key, refusing more with `code`.
    pub fn new(limit: usize, counted: &'static str, code: &'static str) -> Self {
        Self {
            limit,
            counted,
            code,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more of `key`, or refuses it.
    pub fn open(self: &Arc<Self>, key: K) -> Result<Slot<K>, AtCapacity> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key.clone()).or_insert(0);
        if *count >= self.limit {
            return Err(AtCapacity {
                limit: self.limit,
                counted: self.counted,
                code: self.code,
            });
        }
        *count += 1;
        Ok(Slot {
            counter: Arc::clone(self),
            key,
        })
    }
}

impl<K: Hash + Eq> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut open = self
            .counter
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Turns of work per key, waited for in order: each tenant may have at most `limit`
/// requests running at once on an instance, and its further requests queue for a
/// turn instead of taking the database pool's connections from other tenants.
pub struct Turns<K> {
    /// Requests of one key running at once.
    limit: usize,
    /// The keys with requests running or waiting, and their turns.
    keys: Mutex<HashMap<K, Arc<tokio::sync::Semaphore>>>,
}

/// A turn taken; dropping it gives it back (and forgets the key when it was its last).
pub struct Turn<K: Hash + Eq + Clone> {
    /// The turns it belongs to.
    turns: Arc<Turns<K>>,
    /// Whose turn it is.
    key: K,
    /// The permit; dropped before the key is looked at.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<K: Hash + Eq + Clone> Turns<K> {
    /// Turns allowing `limit` requests of one key at once.
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a turn of `key`, at most `wait`; `None` when none came in time.
    pub async fn take(self: &Arc<Self>, key: K, wait: Duration) -> Option<Turn<K>> {
        let semaphore = self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.limit)))
            .clone();
        let permit = tokio::time::timeout(wait, semaphore.acquire_owned()).await;
        // A key whose last waiter gave up is forgotten as when its last turn ends.
        let turn = Turn {
            turns: Arc::clone(self),
            key,
            permit: permit.ok().and_then(Result::ok),
        };
        turn.permit.is_some().then_some(turn)
    }
}

impl<K: Hash + Eq + Clone> Drop for Turn<K> {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut keys = self
            .turns
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only this map and the turns hold the semaphore: one reference left means no
        // turn of the key is running or waited for.
        if keys
            .get(&self.key)
            .is_some_and(|semaphore| Arc::strong_count(semaphore) == 1)
        {
            keys.remove(&self.key);
        }
    }
}
