//! Password hashing with argon2id. Hashing is slow and memory-hard on purpose, so it
//! runs on the blocking thread pool, never on the threads that serve sockets, and at
//! most `concurrency` hashes run at once: each takes `memory_kib` of memory, and
//! anyone on the internet can ask for one (registration, login). A hash that cannot
//! start within `queue_wait` is refused with 503 `busy` and `Retry-After`. The hashes
//! work in memory kept for them and reused ([`Arena`]): allocated and freed per hash,
//! argon2's blocks stayed with the allocator's per-thread arenas, so that a burst of
//! registrations left the instance hundreds of MiB larger for good.

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicU64, Ordering},
};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use poem::http::StatusCode;
use rand::RngCore;
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};

use crate::error::ApiError;
use crate::metrics::METRICS;

/// The cost of a password hash and how many may run at once.
#[derive(Debug, Clone, Copy)]
pub struct PasswordSettings {
    /// Memory per hash, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Hashes (and verifications) running at once at most.
    pub concurrency: usize,
    /// How long a hash waits for its turn before the request is refused.
    pub queue_wait: Duration,
}

/// Hashes and verifies passwords with the configured cost.
#[derive(Clone)]
pub struct PasswordHasher {
    /// The argon2id parameters new hashes use; verification reads each hash's own.
    params: Params,
    /// A hash of a random password, verified against when a login names nobody, so
    /// that an unknown account takes as long to refuse as a wrong password. It is made
    /// in the background at start, so that start-up does not wait for it.
    dummy_hash: Arc<OnceCell<String>>,
    /// Turns to hash: the bound on the memory that hashing can take.
    turns: Arc<Semaphore>,
    /// How long a hash waits for a turn.
    queue_wait: Duration,
    /// Hashes and verifications computed by this hasher.
    computed: Arc<AtomicU64>,
    /// The memory the hashes work in.
    arena: Arena,
}

/// Memory for argon2's blocks, kept between hashes: at most one buffer per turn, of
/// the configured cost's size. A hash with other parameters (one made before the cost
/// changed) gets memory of its own.
#[derive(Clone)]
struct Arena {
    /// The blocks of one hash.
    blocks: usize,
    /// Buffers not in use.
    free: Arc<Mutex<Vec<Vec<Block>>>>,
}

impl Arena {
    /// Runs `work` with memory of `blocks` blocks.
    fn with<T>(&self, blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        if blocks != self.blocks {
            return work(&mut vec![Block::default(); blocks]);
        }
        let taken = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut buffer = taken.unwrap_or_else(|| vec![Block::default(); blocks]);
        let answer = work(&mut buffer);
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
        answer
    }
}

/// Computes an argon2 hash of `password` into `out`, in memory from `arena`.
fn compute(
    arena: &Arena,
    algorithm: Algorithm,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let argon2 = Argon2::new(algorithm, Version::V0x13, params.clone());
    arena.with(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password, salt, out, blocks)
    })
}

/// A new argon2id hash of `password`, in PHC string form.
fn hash_phc(arena: &Arena, params: &Params, password: &[u8]) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; 32];
    compute(
        arena,
        Algorithm::Argon2id,
        params,
        password,
        &salt,
        &mut out,
    )
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|error| anyhow::anyhow!("{error}"))?,
        salt: Some(Salt::new(&salt).map_err(|error| anyhow::anyhow!("{error}"))?),
        hash: Some(Output::new(&out).map_err(|error| anyhow::anyhow!("{error}"))?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches a PHC string made by [`hash_phc`] (with any cost);
/// the comparison takes constant time.
fn matches_phc(arena: &Arena, password: &[u8], hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm.as_str()),
        Params::try_from(&parsed),
        parsed.salt.as_ref(),
        parsed.hash.as_ref(),
    ) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    compute(arena, algorithm, &params, password, salt, &mut out).is_ok()
        && Output::new(&out).is_ok_and(|computed| computed == *expected)
}

/// The shortest and longest password accepted, in characters.
pub const PASSWORD_LENGTH: std::ops::RangeInclusive<usize> = 8..=256;

impl PasswordHasher {
    /// A hasher with the given cost.
    pub fn new(settings: PasswordSettings) -> anyhow::Result<Self> {
        let params = Params::new(settings.memory_kib, settings.iterations, 1, None)
            .map_err(|error| anyhow::anyhow!("invalid password hash settings: {error}"))?;
        let hasher = Self {
            arena: Arena {
                blocks: params.block_count(),
                free: Arc::new(Mutex::new(Vec::new())),
            },
            params,
            dummy_hash: Arc::new(OnceCell::new()),
            turns: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            queue_wait: settings.queue_wait,
            computed: Arc::new(AtomicU64::new(0)),
        };
        let warm = hasher.clone();
        tokio::spawn(async move {
            if let Err(error) = warm.dummy_hash().await {
                tracing::error!(message = %error.message, "the password hasher does not work");
            }
        });
        Ok(hasher)
    }

    async fn dummy_hash(&self) -> Result<&str, ApiError> {
        self.dummy_hash
            .get_or_try_init(|| self.hash_unchecked(uuid::Uuid::new_v4().to_string()))
            .await
            .map(String::as_str)
    }

    /// Checks a new password's length and hashes it.
    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let length = password.chars().count();
        if !PASSWORD_LENGTH.contains(&length) {
            return Err(ApiError::invalid(
                "password",
                "invalid_password",
                format!(
                    "The password must be {} to {} characters",
                    PASSWORD_LENGTH.start(),
                    PASSWORD_LENGTH.end()
                ),
            ));
        }
        self.hash_unchecked(password.to_owned()).await
    }

    /// Hashes and verifications this hasher has computed.
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// Waits for a turn to hash, or refuses the request when none comes in time.
    async fn turn(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        match tokio::time::timeout(self.queue_wait, self.turns.acquire()).await {
            Ok(Ok(permit)) => {
                self.computed.fetch_add(1, Ordering::Relaxed);
                METRICS.password_hashes.inc();
                Ok(permit)
            }
            _ => {
                METRICS.password_hashes_refused.inc();
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "Too many passwords are being checked right now; retry in a moment",
                )
                .with_headers(vec![("retry-after", "1".to_owned())]))
            }
        }
    }

    async fn hash_unchecked(&self, password: String) -> Result<String, ApiError> {
        let _turn = self.turn().await?;
        let (params, arena) = (self.params.clone(), self.arena.clone());
        tokio::task::spawn_blocking(move || hash_phc(&arena, &params, password.as_bytes()))
            .await
            .map_err(|error| ApiError::internal("password hashing task failed", &error))?
            .map_err(|error| ApiError::internal("password hashing failed", &error))
    }

    /// Whether `password` matches `hash`; with no hash, spends the same time and says no.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, ApiError> {
        let known = hash.is_some();
        let hash = match hash {
            Some(hash) => hash.to_owned(),
            None => self.dummy_hash().await?.to_owned(),
        };
        let password = password.to_owned();
        let _turn = self.turn().await?;
        let arena = self.arena.clone();
        let matches =
            tokio::task::spawn_blocking(move || matches_phc(&arena, password.as_bytes(), &hash))
                .await
                .map_err(|error| ApiError::internal("password verification task failed", &error))?;
        Ok(known && matches)
    }
}
