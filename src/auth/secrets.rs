//! Opaque secrets: refresh tokens and API keys. Both name their tenant in clear text
//! (so that the lookup can run under the tenant's row-level security) and are stored
//! only as SHA-256 digests: they are long random strings, so a fast hash is enough.

use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;

const REFRESH_PREFIX: &str = "hark_rt_";
const API_KEY_PREFIX: &str = "hark_sk_";
/// Random bytes per secret: 256 bits.
const SECRET_BYTES: usize = 32;

fn random_hex() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn digest(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// A session's refresh token: `hark_rt_<tenant>_<session>_<secret>`. Only the
/// secret is hashed, so a session's refresh hash can be stored before the tenant is
/// known (a registration learns it from the database).
#[derive(Debug, Clone)]
pub struct RefreshSecret {
    /// The session the token refreshes.
    pub session_id: Uuid,
    /// The random part, in hex.
    secret: String,
}

impl RefreshSecret {
    /// A new random refresh secret for a session.
    pub fn generate(session_id: Uuid) -> Self {
        Self {
            session_id,
            secret: random_hex(),
        }
    }

    /// Reads a refresh token given by a client: its tenant and its secret.
    pub fn parse(token: &str) -> Result<(Uuid, Self), ApiError> {
        let invalid = || {
            ApiError::unauthorized(
                "invalid_refresh_token",
                "The refresh token is unknown, used, expired or revoked",
            )
        };
        let rest = token.strip_prefix(REFRESH_PREFIX).ok_or_else(invalid)?;
        let mut parts = rest.split('_');
        let (Some(tenant), Some(session), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        if secret.len() != SECRET_BYTES * 2 || !secret.bytes().all(|byte| byte.is_ascii_hexdigit())
        {
            return Err(invalid());
        }
        let tenant_id = Uuid::try_parse(tenant).map_err(|_| invalid())?;
        let session_id = Uuid::try_parse(session).map_err(|_| invalid())?;
        Ok((
            tenant_id,
            Self {
                session_id,
                secret: secret.to_owned(),
            },
        ))
    }

    /// The digest stored in the session.
    pub fn hash(&self) -> Vec<u8> {
        digest(&self.secret)
    }

    /// The token handed to the client.
    pub fn token(&self, tenant_id: Uuid) -> String {
        format!(
            "{REFRESH_PREFIX}{}_{}_{}",
            tenant_id.simple(),
            self.session_id.simple(),
            self.secret
        )
    }
}

/// A tenant API key: `hark_sk_<tenant>_<secret>`.
#[derive(Debug, Clone)]
pub struct ApiKeySecret {
    /// The tenant the key belongs to.
    pub tenant_id: Uuid,
    /// The whole key, as given to the client.
    pub key: String,
}

impl ApiKeySecret {
    /// A new random key for a tenant.
    pub fn generate(tenant_id: Uuid) -> Self {
        let key = format!("{API_KEY_PREFIX}{}_{}", tenant_id.simple(), random_hex());
        Self { tenant_id, key }
    }

    /// Whether a token is meant as an API key (it may still be malformed).
    pub fn looks_like(token: &str) -> bool {
        token.starts_with(API_KEY_PREFIX)
    }

    /// Reads a key given by a client.
    pub fn parse(key: &str) -> Result<Self, ApiError> {
        let invalid =
            || ApiError::unauthorized("invalid_api_key", "The API key is unknown or revoked");
        let rest = key.strip_prefix(API_KEY_PREFIX).ok_or_else(invalid)?;
        let (tenant, secret) = rest.split_once('_').ok_or_else(invalid)?;
        if secret.len() != SECRET_BYTES * 2 || !secret.bytes().all(|byte| byte.is_ascii_hexdigit())
        {
            return Err(invalid());
        }
        Ok(Self {
            tenant_id: Uuid::try_parse(tenant).map_err(|_| invalid())?,
            key: key.to_owned(),
        })
    }

    /// The digest stored for the key.
    pub fn hash(&self) -> Vec<u8> {
        digest(&self.key)
    }

    /// The first characters of the key's secret, for listings.
    pub fn display_prefix(&self) -> String {
        let secret_start = API_KEY_PREFIX.len() + 33;
        format!(
            "{API_KEY_PREFIX}…{}",
            &self.key[secret_start..secret_start + 8]
        )
    }
}
