//! Password hashing with argon2id. Hashing is slow on purpose, so it runs on the
//! blocking thread pool, never on the threads that serve sockets.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::OnceCell;

use crate::error::ApiError;

/// The cost of a password hash.
#[derive(Debug, Clone, Copy)]
pub struct PasswordSettings {
    /// Memory per hash, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
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

    async fn hash_unchecked(&self, password: String) -> Result<String, ApiError> {
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
