//! Access tokens: HS256 JWTs naming the user, tenant, role and session, with issuer,
//! audience, issue, not-before and expiry times and a unique token id.

use std::time::Duration;

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
    /// The HMAC secret (at least 32 bytes).
    pub secret: String,
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
    /// The key that verifies.
    decoding_key: DecodingKey,
    /// What a token must satisfy: HS256 only, issuer, audience, times.
    validation: Validation,
}

impl TokenIssuer {
    /// An issuer with the given settings.
    pub fn new(settings: TokenSettings) -> anyhow::Result<Self> {
        if settings.secret.len() < 32 {
            anyhow::bail!("HARK_JWT_SECRET must be at least 32 bytes long");
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Ok(Self {
            encoding_key: EncodingKey::from_secret(settings.secret.as_bytes()),
            decoding_key: DecodingKey::from_secret(settings.secret.as_bytes()),
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

    /// Signs an access token for a user of a session.
    pub fn issue(&self, caller: &Caller) -> Result<AccessToken, ApiError> {
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.settings.access_ttl)
            .map_err(|error| ApiError::internal("token lifetime out of range", &error))?;
        let expires_at = now + ttl;
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
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding_key)
                .map_err(|error| ApiError::internal("could not sign a token", &error))?;
        Ok(AccessToken { token, expires_at })
    }

    /// Verifies a token's signature, algorithm, issuer, audience and times.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        self.verify_with_expiry(token).map(|(caller, _)| caller)
    }

    /// Like `verify`, also answering when the token expires.
    pub fn verify_with_expiry(&self, token: &str) -> Result<(Caller, DateTime<Utc>), ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding_key, &self.validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => ApiError::unauthorized(
                    "token_expired",
                    "The access token has expired; refresh it",
                ),
                ErrorKind::ImmatureSignature => ApiError::unauthorized(
                    "token_not_yet_valid",
                    "The access token is not valid yet",
                ),
                _ => ApiError::unauthorized("invalid_token", "The access token is invalid"),
            })?;
        let claims = data.claims;
        let expires_at = DateTime::from_timestamp(claims.exp, 0).unwrap_or_default();
        let caller = Caller {
            tenant_id: claims.tid,
            user_id: claims.sub,
            session_id: claims.sid,
            role: claims.role,
        };
        Ok((caller, expires_at))
    }
}
