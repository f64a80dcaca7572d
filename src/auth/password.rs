//! Password hashing with argon2id. Hashing is slow and memory-hard on purpose, so it
//! runs on the blocking thread pool, never on the threads that serve sockets, and at
//! most `concurrency` hashes run at once: each takes `memory_kib` of memory, and
//! anyone on the internet can ask for one (registration, login). A hash that cannot
//! start within `queue_wait` is refused with 503 `busy` and `Retry-After`.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use poem::http::StatusCode;
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
}

/// The shortest and longest password accepted, in characters.
pub const PASSWORD_LENGTH: std::ops::RangeInclusive<usize> = 8..=256;

impl PasswordHasher {
    /// A hasher with the given cost.
    pub fn new(settings: PasswordSettings) -> anyhow::Result<Self> {
        let params = Params::new(settings.memory_kib, settings.iterations, 1, None)
            .map_err(|error| anyhow::anyhow!("invalid password hash settings: {error}"))?;
        let hasher = Self {
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
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
        })
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
        let matches = tokio::task::spawn_blocking(move || {
            Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .map_err(|error| ApiError::internal("password verification task failed", &error))?;
        Ok(known && matches)
    }
}
