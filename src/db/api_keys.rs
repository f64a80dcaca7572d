//! Typed calls of the API key functions (`sql/functions/0002_tenants_and_sessions.sql`).

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{ApiKeySecret, Caller};
use crate::db::{Database, DatabaseError, Role};

/// A tenant API key as listed; the secret itself is shown once, at creation.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct ApiKey {
    /// The key's id.
    pub id: Uuid,
    /// What the key is for.
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    /// The admin who created it.
    pub created_by: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last used (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked key is refused.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key about to be stored.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The key's id.
    pub key_id: Uuid,
    /// What the key is for.
    pub name: String,
    /// Its first characters.
    pub prefix: String,
    /// SHA-256 of the whole key.
    pub secret_hash: Vec<u8>,
}

impl Database {
    /// Stores a new key of the caller's tenant (owners and admins).
    pub async fn api_key_create(
        &self,
        caller: &Caller,
        key: &NewApiKey,
    ) -> Result<ApiKey, DatabaseError> {
        self.call(
            "api_key_create",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &key.key_id,
                &key.name,
                &key.prefix,
                &key.secret_hash,
            ],
        )
        .await
    }

    /// Every key of the caller's tenant, newest first (owners and admins).
    pub async fn api_key_list(&self, caller: &Caller) -> Result<Vec<ApiKey>, DatabaseError> {
        self.call(
            "api_key_list",
            &[&caller.tenant_id, &caller.user_id, &caller.session_id],
        )
        .await
    }

    /// Revokes a key (owners and admins).
    pub async fn api_key_revoke(&self, caller: &Caller, key_id: Uuid) -> Result<(), DatabaseError> {
        self.call(
            "api_key_revoke",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &key_id,
            ],
        )
        .await
    }

    /// The session through which an API key acts as one of the tenant's users, opened
    /// on first use; SQL checks the key, the user and their roles.
    pub async fn key_acting_session(
        &self,
        key: &ApiKeySecret,
        user_id: Uuid,
    ) -> Result<ActingSession, DatabaseError> {
        self.call(
            "key_acting_session",
            &[&key.tenant_id, &key.hash(), &user_id],
        )
        .await
    }
}

/// The session of an API key acting as a user.
#[derive(Debug, Clone, Deserialize)]
pub struct ActingSession {
    /// The session's id, which every call made for the user carries.
    pub session_id: Uuid,
    /// The user's role now.
    pub role: Role,
}
