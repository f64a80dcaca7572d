//! Minting a session: the record the database stores, the refresh secret, and the
//! access token signed once the database has opened the session. Every way of
//! obtaining tokens (registration, login, refresh, tenant creation, API-key minting,
//! `hark tenant create`) goes through it.

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use uuid::Uuid;

use crate::auth::{Caller, RefreshSecret, TokenIssuer};
use crate::db::{NewSession, User};
use crate::error::ApiError;

/// Tokens for one session, with the user they belong to.
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct AuthSession {
    /// The user's tenant.
    pub tenant_id: Uuid,
    /// The user.
    pub user: User,
    /// The JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    /// Exchange it at `POST /v1/auth/refresh` for new tokens; it works once.
    pub refresh_token: String,
    /// When the refresh token expires unless used.
    pub refresh_expires_at: DateTime<Utc>,
}

/// A session about to be opened: its record for the database and its refresh token.
pub struct PendingSession {
    /// What the database stores.
    pub record: NewSession,
    /// The refresh secret handed to the client.
    refresh: RefreshSecret,
}

impl PendingSession {
    /// A new session.
    pub fn new(tokens: &TokenIssuer) -> Result<Self, ApiError> {
        Self::for_session(tokens, Uuid::now_v7())
    }

    /// The next refresh secret of an existing session.
    pub fn for_session(tokens: &TokenIssuer, session_id: Uuid) -> Result<Self, ApiError> {
        let refresh = RefreshSecret::generate(session_id);
        let ttl = chrono::Duration::from_std(tokens.refresh_ttl())
            .map_err(|error| ApiError::internal("refresh lifetime out of range", &error))?;
        Ok(Self {
            record: NewSession {
                session_id,
                refresh_hash: refresh.hash(),
                expires_at: Utc::now() + ttl,
            },
            refresh,
        })
    }

    /// Signs the access token once the database has opened the session for `user`.
    pub fn finish(
        self,
        tokens: &TokenIssuer,
        tenant_id: Uuid,
        user: User,
    ) -> Result<AuthSession, ApiError> {
        let access = tokens.issue(&Caller {
            tenant_id,
            user_id: user.id,
            session_id: self.record.session_id,
            role: user.role,
            expires_at: tokens.expiry_from_now()?,
        })?;
        Ok(AuthSession {
            tenant_id,
            user,
            access_token: access.token,
            token_type: "Bearer".to_owned(),
            expires_in: tokens.access_ttl().as_secs(),
            expires_at: access.expires_at,
            refresh_token: self.refresh.token(tenant_id),
            refresh_expires_at: self.record.expires_at,
        })
    }
}
