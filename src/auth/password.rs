//! Password hashing with argon2id. Hashing is slow on purpose, so it runs on the
//! blocking thread pool, never on the threads that serve sockets.

use anyhow::Context as _;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};

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
    /// that an unknown account takes as long to refuse as a wrong password.
    dummy_hash: String,
}

/// The shortest and longest password accepted, in characters.
pub const PASSWORD_LENGTH: std::ops::RangeInclusive<usize> = 8..=256;

impl PasswordHasher {
    /// A hasher with the given cost.
    pub fn new(settings: PasswordSettings) -> anyhow::Result<Self> {
        let params = Params::new(settings.memory_kib, settings.iterations, 1, None)
            .map_err(|error| anyhow::anyhow!("invalid password hash settings: {error}"))?;
        let dummy_hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password(uuid::Uuid::new_v4().to_string().as_bytes())
            .map_err(|error| anyhow::anyhow!("could not hash: {error}"))
            .context("the password hasher does not work")?
            .to_string();
        Ok(Self { params, dummy_hash })
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
        let params = self.params.clone();
        let password = password.to_owned();
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
        let hash = hash.unwrap_or(&self.dummy_hash).to_owned();
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
