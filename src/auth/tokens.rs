//! Access tokens: HS256 JWTs naming the user, tenant, role and session, with issuer,
//! audience, issue, not-before and expiry times and a unique token id. The header's
//! `kid` names the signing key, so that keys rotate without logging anyone out: the
//! new key signs, earlier keys listed in `HARK_JWT_PREVIOUS_KEYS` still verify.

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::error::ApiError;

/// The secret used when none is configured; the server warns loudly when it does so.
pub const DEVELOPMENT_SECRET: &str = "hark-development-secret-do-not-use-in-production";

/// How tokens are signed and for how long they hold.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The HMAC secret that signs (at least 32 bytes).
    pub secret: String,
    /// The signing key's id, written as the header's `kid`.
    pub key_id: String,
    /// Earlier keys that still verify: `(kid, secret)`.
    pub previous_keys: Vec<(String, String)>,
    /// The `iss` claim written and required.
    pub issuer: String,
    /// The `aud` claim written and required.
    pub audience: String,
    /// How long an access token holds.
    pub access_ttl: Duration,
    /// How long a session can go unrefreshed before its refresh token stops working.
    pub refresh_ttl: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: Uuid,
    tid: Uuid,
    sid: Uuid,
    role: Role,
    jti: Uuid,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// A signed access token and when it expires.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The JWT.
    pub token: String,
    /// Its expiry.
    pub expires_at: DateTime<Utc>,
}

/// Signs and verifies access tokens.
pub struct TokenIssuer {
    /// The signing and verification settings.
    settings: TokenSettings,
    /// The key that signs.
    encoding_key: EncodingKey,
    /// The keys that verify, by `kid`: the signing key and the earlier ones.
    decoding_keys: HashMap<String, DecodingKey>,
    /// The signing key, for tokens without a `kid` (signed before keys had ids).
    current_decoding_key: DecodingKey,
    /// What a token must satisfy: HS256 only, issuer, audience, times.
    validation: Validation,
}

impl TokenIssuer {
    /// An issuer with the given settings.
    pub fn new(settings: TokenSettings) -> anyhow::Result<Self> {
        if settings.secret.len() < 32 {
            anyhow::bail!("HARK_JWT_SECRET must be at least 32 bytes long");
        }
        if let Some((key_id, _)) = settings
            .previous_keys
            .iter()
            .find(|(_, secret)| secret.len() < 32)
        {
            anyhow::bail!("the previous key `{key_id}` must be at least 32 bytes long");
        }
        let mut decoding_keys: HashMap<String, DecodingKey> = settings
            .previous_keys
            .iter()
            .map(|(key_id, secret)| (key_id.clone(), DecodingKey::from_secret(secret.as_bytes())))
            .collect();
        decoding_keys.insert(
            settings.key_id.clone(),
            DecodingKey::from_secret(settings.secret.as_bytes()),
        );
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Ok(Self {
            encoding_key: EncodingKey::from_secret(settings.secret.as_bytes()),
            decoding_keys,
            current_decoding_key: DecodingKey::from_secret(settings.secret.as_bytes()),
            validation,
            settings,
        })
    }

    /// How long a session's refresh token holds.
    pub fn refresh_ttl(&self) -> Duration {
        self.settings.refresh_ttl
    }

    /// How long an access token holds.
    pub fn access_ttl(&self) -> Duration {
        self.settings.access_ttl
    }

    /// When a token issued now expires.
    pub fn expiry_from_now(&self) -> Result<DateTime<Utc>, ApiError> {
        let ttl = chrono::Duration::from_std(self.settings.access_ttl)
            .map_err(|error| ApiError::internal("token lifetime out of range", &error))?;
        Ok(Utc::now() + ttl)
    }

    /// Signs an access token for a user of a session, expiring at `caller.expires_at`.
    pub fn issue(&self, caller: &Caller) -> Result<AccessToken, ApiError> {
        let now = Utc::now();
        let expires_at = caller.expires_at;
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: caller.user_id,
            tid: caller.tenant_id,
            sid: caller.session_id,
            role: caller.role,
            jti: Uuid::new_v4(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.settings.key_id.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding_key)
            .map_err(|error| ApiError::internal("could not sign a token", &error))?;
        Ok(AccessToken { token, expires_at })
    }

    /// Verifies a token's signature, algorithm, issuer, audience and times.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let invalid = || ApiError::unauthorized("invalid_token", "The access token is invalid");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let key = match &header.kid {
            Some(key_id) => self.decoding_keys.get(key_id).ok_or_else(invalid)?,
            None => &self.current_decoding_key,
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|error| {
                match error.kind() {
                    ErrorKind::ExpiredSignature => ApiError::unauthorized(
                        "token_expired",
                        "The access token has expired; refresh it",
                    ),
                    ErrorKind::ImmatureSignature => ApiError::unauthorized(
                        "token_not_yet_valid",
                        "The access token is not valid yet",
                    ),
                    _ => invalid(),
                }
            })?;
        let claims = data.claims;
        Ok(Caller {
            tenant_id: claims.tid,
            user_id: claims.sub,
            session_id: claims.sid,
            role: claims.role,
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
        })
    }
}

/// The key id of a secret when none is configured: the first 8 hex digits of its
/// SHA-256, so that every instance with the same secret writes the same `kid` and the
/// secret itself cannot be recovered from it.
pub fn default_key_id(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    hex::encode(&digest[..4])
}
