//! Typed calls of the session functions: registration, login, refresh, logout and
//! sessions opened with an API key (`sql/functions/0002_tenants_and_sessions.sql`).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::{Database, DatabaseError, User};

/// A session about to be opened: its id and the digest of its refresh secret.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The session id that access tokens will carry.
    pub session_id: Uuid,
    /// SHA-256 of the refresh token.
    pub refresh_hash: Vec<u8>,
    /// When the refresh token stops working.
    pub expires_at: DateTime<Utc>,
}

/// The result of a registration.
#[derive(Debug, Clone, Deserialize)]
pub struct Registered {
    /// The tenant the user joined.
    pub tenant_id: Uuid,
    /// The new user.
    pub user: User,
}

/// What the server needs to check a login's password.
#[derive(Debug, Clone, Deserialize)]
pub struct LoginCandidate {
    /// The tenant of the user.
    pub tenant_id: Uuid,
    /// The user whose password is to be checked.
    pub user_id: Uuid,
    /// The stored argon2id hash.
    pub password_hash: String,
}

/// The fields of a self-registration.
#[derive(Debug, Clone)]
pub struct NewRegistration {
    /// The slug of the tenant to join.
    pub tenant_slug: String,
    /// The id of the new user.
    pub user_id: Uuid,
    /// The username.
    pub username: String,
    /// The email, if given.
    pub email: Option<String>,
    /// The display name, if given.
    pub display_name: Option<String>,
    /// The argon2id hash of the password.
    pub password_hash: String,
}

impl Database {
    /// Registers a member of the tenant with the given slug and opens a session.
    pub async fn register(
        &self,
        registration: &NewRegistration,
        session: &NewSession,
    ) -> Result<Registered, DatabaseError> {
        self.call(
            "register",
            &[
                &registration.tenant_slug,
                &registration.user_id,
                &registration.username,
                &registration.email,
                &registration.display_name,
                &registration.password_hash,
                &session.session_id,
                &session.refresh_hash,
                &session.expires_at,
            ],
        )
        .await
    }

    /// The cheap checks of a registration, before its password is hashed: the tenant
    /// exists and is open, the username is free.
    pub async fn registration_check(
        &self,
        tenant_slug: &str,
        username: &str,
    ) -> Result<(), DatabaseError> {
        self.call("registration_check", &[&tenant_slug, &username])
            .await
    }

    /// The user a login names, with their password hash, if there is one.
    pub async fn login_lookup(
        &self,
        tenant_slug: &str,
        login: &str,
    ) -> Result<Option<LoginCandidate>, DatabaseError> {
        self.call("login_lookup", &[&tenant_slug, &login]).await
    }

    /// Opens a session once the password has been verified.
    pub async fn login_complete(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        session: &NewSession,
    ) -> Result<User, DatabaseError> {
        self.call(
            "login_complete",
            &[
                &tenant_id,
                &user_id,
                &session.session_id,
                &session.refresh_hash,
                &session.expires_at,
            ],
        )
        .await
    }

    /// Swaps a session's refresh secret for a new one; `next.session_id` must be the
    /// session being refreshed. A spent secret presented again ends the session.
    pub async fn session_refresh(
        &self,
        tenant_id: Uuid,
        refresh_hash: &[u8],
        next: &NewSession,
    ) -> Result<Refreshed, DatabaseError> {
        self.call(
            "session_refresh",
            &[
                &tenant_id,
                &next.session_id,
                &refresh_hash,
                &next.refresh_hash,
                &next.expires_at,
            ],
        )
        .await
    }

    /// Revokes the caller's session.
    pub async fn logout(&self, caller: &Caller) -> Result<(), DatabaseError> {
        self.call(
            "logout",
            &[&caller.tenant_id, &caller.user_id, &caller.session_id],
        )
        .await
    }

    /// With an API key: ends every session of a user of the key's tenant.
    pub async fn backend_sessions_revoke(
        &self,
        tenant_id: Uuid,
        key_hash: &[u8],
        user_id: Uuid,
    ) -> Result<(), DatabaseError> {
        self.call(
            "backend_sessions_revoke",
            &[&tenant_id, &key_hash, &user_id],
        )
        .await
    }

    /// With an API key: opens a session for a user of the key's tenant.
    pub async fn backend_session_open(
        &self,
        tenant_id: Uuid,
        key_hash: &[u8],
        user_id: Uuid,
        session: &NewSession,
    ) -> Result<User, DatabaseError> {
        self.call(
            "backend_session_open",
            &[
                &tenant_id,
                &key_hash,
                &user_id,
                &session.session_id,
                &session.refresh_hash,
                &session.expires_at,
            ],
        )
        .await
    }
}

/// What a refresh did.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Refreshed {
    /// The session goes on with the next secret.
    Rotated {
        /// The session's user.
        user: Box<User>,
    },
    /// The secret had been spent before: someone holds a copy, so the session was
    /// ended.
    Reused,
}
