//! Rate limits: token buckets by key. Sends are limited per user (REST and WebSocket
//! draw from the same bucket), failed logins per account and per client address,
//! requests per user; open streams (WebSockets and SSE) and requests in flight are
//! counted per user on each instance.
//!
//! A rate limit holds for the fleet (`HARK_FLEET_RATE_LIMITS`, the default): each
//! key's bucket lives in PostgreSQL, and an instance leases a second's worth of its
//! rate at a time ([`LEASE_SPAN`], at most a quarter of the burst) and spends the
//! lease from memory, so that a request costs a database call once per lease, not per
//! request, and a key that was refused is refused from memory until a token is back.
//! Tokens are taken from the bucket before they are spent, and an instance holds at
//! most one lease of a key, so over any stretch of `t` seconds N instances admit at
//! most `burst + rate × t + N × lease` of a key, against `burst + rate × t` for one
//! bucket. The other error is on the strict side: a key whose requests move to
//! another instance may be refused there while the first still holds part of a
//! lease, at most `(N - 1) × lease` tokens, and an instance that tracks more than
//! 100,000 keys drops the unspent leases of idle ones. When the database cannot be
//! reached, each instance counts alone (as with the setting off), and then N
//! instances admit up to N times the rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::db::{Database, RateBucket, RateLease};

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
    /// The limits a configuration asks for; the rate limits are kept in `db` for the
    /// fleet when the configuration says so (`HARK_FLEET_RATE_LIMITS`).
    pub fn from_config(config: &crate::config::Config, db: &Database) -> Self {
        let fleet = config.fleet_rate_limits.then_some(db);
        let limit = |name, burst, per_second| RateLimiter::new(name, burst, per_second, fleet);
        let lockout = config.login_lockout_seconds.max(1) as f64;
        let join_lockout = config.join_code_lockout_seconds.max(1) as f64;
        Self {
            sends: limit("sends", config.send_burst, config.send_rate_per_second),
            ws_ops: limit("ws_ops", config.ws_ops_burst, config.ws_ops_per_second),
            login_accounts: RateLimiter::new(
                "login_accounts",
                config.login_failures_per_account,
                f64::from(config.login_failures_per_account) / lockout,
                fleet,
            ),
            login_addresses: RateLimiter::new(
                "login_addresses",
                config.login_failures_per_address,
                f64::from(config.login_failures_per_address) / lockout,
                fleet,
            ),
            operator_key_failures: RateLimiter::new(
                "operator_key_failures",
                config.login_failures_per_address,
                f64::from(config.login_failures_per_address) / lockout,
                fleet,
            ),
            streams: Arc::new(Concurrency::new(
                config.max_streams_per_user,
                "WebSocket and event-stream connections per user",
                "too_many_connections",
            )),
            request_rate: limit(
                "requests",
                config.requests_burst,
                config.requests_per_second,
            ),
            tenant_turns: Arc::new(Turns::new(config.max_requests_in_flight_per_tenant)),
            requests: Arc::new(Concurrency::new(
                config.max_requests_in_flight_per_user,
                "requests in flight per user",
                "too_many_requests",
            )),
            join_code_users: RateLimiter::new(
                "join_code_users",
                config.join_code_failures_per_user,
                f64::from(config.join_code_failures_per_user) / join_lockout,
                fleet,
            ),
            join_code_addresses: RateLimiter::new(
                "join_code_addresses",
                config.join_code_failures_per_address,
                f64::from(config.join_code_failures_per_address) / join_lockout,
                fleet,
            ),
            signups: RateLimiter::new(
                "signups",
                config.signups_per_address_per_hour,
                f64::from(config.signups_per_address_per_hour) / 3600.0,
                fleet,
            ),
            room_creations: RateLimiter::new(
                "room_creations",
                config.rooms_per_user_per_hour,
                f64::from(config.rooms_per_user_per_hour) / 3600.0,
                fleet,
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

/// Buckets (or leases) kept at most before the full (or spent) ones are forgotten.
const MAX_TRACKED_KEYS: usize = 100_000;

/// How much of the rate one lease of the fleet's bucket asks for: a key used at its
/// full rate asks the database about once per span.
pub const LEASE_SPAN: Duration = Duration::from_secs(1);

/// A key of a limit as bytes, as the fleet's buckets store it.
pub trait LimitKey: Hash + Eq + Clone + Send + Sync {
    /// The key's bytes, the same on every instance.
    fn bytes(&self) -> Vec<u8>;
}

impl LimitKey for uuid::Uuid {
    fn bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl LimitKey for std::net::IpAddr {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::V4(address) => address.octets().to_vec(),
            Self::V6(address) => address.octets().to_vec(),
        }
    }
}

impl LimitKey for AccountKey {
    fn bytes(&self) -> Vec<u8> {
        self.to_vec()
    }
}

/// A token bucket per key: `burst` tokens, refilled at `per_second`; kept for the
/// fleet in PostgreSQL (and leased from there), or in this instance's memory.
pub struct RateLimiter<K> {
    /// The limit's name, which keeps its keys apart from other limits' in the fleet's
    /// buckets.
    name: &'static str,
    /// Tokens a key starts with and never exceeds.
    burst: f64,
    /// Tokens added per second.
    per_second: f64,
    /// This instance's own buckets that are not full, by key: the limit when it is not
    /// the fleet's, and the fallback while the database cannot be reached.
    buckets: Mutex<HashMap<K, Bucket>>,
    /// The fleet's buckets, when the limit is the fleet's.
    fleet: Option<Fleet<K>>,
}

/// One key's bucket.
#[derive(Clone, Copy)]
struct Bucket {
    /// Tokens left at `updated`.
    tokens: f64,
    /// When `tokens` was computed.
    updated: Instant,
}

/// The leases an instance holds of the fleet's buckets.
struct Fleet<K> {
    /// Where the buckets are.
    db: Database,
    /// Tokens one lease asks for: a [`LEASE_SPAN`] of the rate, at least one, at most
    /// a quarter of the burst, so that an instance's lease leaves the others some.
    lease: i32,
    /// What this instance holds of each key's bucket.
    leases: Mutex<HashMap<K, Lease>>,
}

/// What an instance holds of one key's fleet bucket.
struct Lease {
    /// Held while this instance asks the database for a lease of the key.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Leased tokens not spent yet. They do not expire: the fleet's bound counts one
    /// unspent lease per instance.
    tokens: u32,
    /// While the bucket had nothing to lease: when a token is back, before which the
    /// key is refused without asking the database again.
    refused_until: Option<Instant>,
    /// The bucket's whole tokens left at the last lease.
    remaining: u32,
    /// When the bucket is full again, as of the last lease.
    full_at: Instant,
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

impl<K: LimitKey> RateLimiter<K> {
    /// A limiter named `name` of `burst` requests at once and `per_second` sustained,
    /// kept for the fleet in `fleet` when given.
    pub fn new(name: &'static str, burst: u32, per_second: f64, fleet: Option<&Database>) -> Self {
        let burst = f64::from(burst.max(1));
        let per_second = per_second.max(f64::MIN_POSITIVE);
        Self {
            name,
            burst,
            per_second,
            buckets: Mutex::new(HashMap::new()),
            fleet: fleet.map(|db| Fleet {
                db: db.clone(),
                lease: (per_second * LEASE_SPAN.as_secs_f64())
                    .ceil()
                    .clamp(1.0, (burst / 4.0).floor().max(1.0)) as i32,
                leases: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Takes a token for `key` if one is left.
    pub async fn acquire(&self, key: &K) -> Allowance {
        let Some(fleet) = &self.fleet else {
            return self.update(key);
        };
        if let Some(allowance) = fleet.spend(key, self.burst) {
            return allowance;
        }
        // One lease per key at a time on an instance: requests that arrive while it is
        // asked for wait for it and spend its tokens, instead of each leasing (and a
        // later one finding the bucket emptied by an earlier one's lease).
        let gate = fleet.gate(key);
        let _leasing = gate.lock().await;
        if let Some(allowance) = fleet.spend(key, self.burst) {
            return allowance;
        }
        let bytes = key.bytes();
        match fleet.db.rate_take(&self.bucket(&bytes), fleet.lease).await {
            Ok(lease) => fleet.hold(key, lease, self.burst),
            Err(error) => {
                tracing::warn!(%error, limit = self.name, "the fleet's rate limits cannot be reached; counting on this instance alone");
                self.update(key)
            }
        }
    }

    /// Gives back a token taken for an attempt that turned out to succeed: attempts
    /// are counted before their outcome is known, so that concurrent ones cannot all
    /// get past the limit, and only failures stay counted.
    pub async fn refund(&self, key: &K) {
        let Some(fleet) = &self.fleet else {
            let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(bucket) = buckets.get_mut(key) {
                bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
            }
            return;
        };
        let bytes = key.bytes();
        if let Err(error) = fleet.db.rate_take(&self.bucket(&bytes), -1).await {
            tracing::warn!(%error, limit = self.name, "could not give a token back to the fleet's bucket");
        }
    }

    /// The fleet's bucket of the key whose bytes are `key`.
    fn bucket<'a>(&self, key: &'a [u8]) -> RateBucket<'a> {
        RateBucket {
            limit: self.name,
            key,
            burst: self.burst,
            per_second: self.per_second,
        }
    }

    /// Takes a token of the key's bucket in this instance's memory, if one is left.
    fn update(&self, key: &K) -> Allowance {
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
        if allowed {
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

impl<K: LimitKey> Fleet<K> {
    /// The gate held while the key's lease is asked for.
    fn gate(&self, key: &K) -> Arc<tokio::sync::Mutex<()>> {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        if leases.len() >= MAX_TRACKED_KEYS {
            leases.retain(|_, lease| lease.matters(now));
        }
        Arc::clone(
            &leases
                .entry(key.clone())
                .or_insert_with(|| Lease::none(now))
                .gate,
        )
    }

    /// Spends a token of the key's lease, or refuses the key while its bucket is known
    /// to be empty; `None` when the database must be asked for a lease.
    fn spend(&self, key: &K, burst: f64) -> Option<Allowance> {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let lease = leases.get_mut(key)?;
        if let Some(until) = lease.refused_until.filter(|until| *until > now) {
            return Some(lease.allowance(burst, now, Some(until - now)));
        }
        if lease.tokens == 0 {
            return None;
        }
        lease.tokens -= 1;
        Some(lease.allowance(burst, now, None))
    }

    /// Keeps what a lease got and spends its first token, or refuses the key until a
    /// token is back when it got none.
    fn hold(&self, key: &K, got: RateLease, burst: f64) -> Allowance {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let lease = leases
            .entry(key.clone())
            .or_insert_with(|| Lease::none(now));
        // A lease is asked for only when the last one is spent (under the key's gate),
        // so what it got is all the key holds here.
        lease.remaining = u32::try_from(got.remaining).unwrap_or(0);
        lease.full_at = now + Duration::from_millis(got.reset_after_ms);
        let Some(tokens) = u32::try_from(got.granted)
            .ok()
            .and_then(|granted| granted.checked_sub(1))
        else {
            let wait = Duration::from_millis(got.retry_after_ms.unwrap_or(1000));
            lease.refused_until = Some(now + wait);
            lease.tokens = 0;
            return lease.allowance(burst, now, Some(wait));
        };
        lease.refused_until = None;
        lease.tokens = tokens;
        lease.allowance(burst, now, None)
    }
}

impl Lease {
    /// Nothing held yet.
    fn none(now: Instant) -> Self {
        Self {
            gate: Arc::new(tokio::sync::Mutex::new(())),
            tokens: 0,
            refused_until: None,
            remaining: 0,
            full_at: now,
        }
    }

    /// Whether it must be kept when the instance tracks too many keys: it refuses its
    /// key, or a lease of it is being asked for. Unspent tokens are dropped then, which
    /// errs on the strict side (they were taken from the bucket and are not spent).
    fn matters(&self, now: Instant) -> bool {
        self.refused_until.is_some_and(|until| until > now) || Arc::strong_count(&self.gate) > 1
    }

    /// What the limit says to a request now: refused with `retry_after`, or admitted
    /// with the lease's tokens and the bucket's as what is left.
    fn allowance(&self, burst: f64, now: Instant, retry_after: Option<Duration>) -> Allowance {
        Allowance {
            limit: burst as u32,
            remaining: if retry_after.is_some() {
                0
            } else {
                self.tokens + self.remaining
            },
            retry_after,
            reset_after: self.full_at.saturating_duration_since(now),
        }
    }
}

/// One attempt at something that may fail (a login, a join by invite code), counted
/// against the limits of its subject (an account, a user) and of its client address
/// before its outcome is known, so that concurrent attempts cannot all get past a
/// limit while the first ones are still being checked. Only failures stay counted:
/// [`Attempt::succeeded`] gives the tokens back.
pub struct Attempt<'a, K: LimitKey> {
    /// The subject's limit and key.
    subject: (&'a RateLimiter<K>, K),
    /// The address's limit and key, when the address is known.
    address: Option<(&'a RateLimiter<std::net::IpAddr>, std::net::IpAddr)>,
}

impl<'a, K: LimitKey> Attempt<'a, K> {
    /// Counts an attempt by `subject` and, when it is known, from `address`, each
    /// against its own limit; answers the refusal of the first limit that refuses,
    /// having given back what the others took (the attempt never happens).
    pub async fn by(
        subjects: &'a RateLimiter<K>,
        subject: K,
        addresses: &'a RateLimiter<std::net::IpAddr>,
        address: Option<std::net::IpAddr>,
    ) -> Result<Self, Allowance> {
        let allowance = subjects.acquire(&subject).await;
        if allowance.retry_after.is_some() {
            return Err(allowance);
        }
        let mut attempt = Self {
            subject: (subjects, subject),
            address: None,
        };
        if let Some(address) = address {
            let allowance = addresses.acquire(&address).await;
            if allowance.retry_after.is_some() {
                attempt.succeeded().await;
                return Err(allowance);
            }
            attempt.address = Some((addresses, address));
        }
        Ok(attempt)
    }

    /// The attempt succeeded: it does not count against any limit.
    pub async fn succeeded(self) {
        let (subjects, subject) = self.subject;
        subjects.refund(&subject).await;
        if let Some((addresses, address)) = self.address {
            addresses.refund(&address).await;
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
