//! Typed calls of the tenant functions (`sql/functions/0002_tenants_and_sessions.sql`).

use chrono::{DateTime, Utc};
use poem_openapi::{Object, types::Example};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::{Database, DatabaseError, ErasureMode, NewSession, User};

/// A tenant: one customer of Hark, with its own users and rooms.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct Tenant {
    /// The tenant's id.
    pub id: Uuid,
    /// The unique, URL-safe name users give at login.
    pub slug: String,
    /// The display name.
    pub name: String,
    /// Whether anyone may register as a member with the tenant's slug.
    pub registration_open: bool,
    /// What erasing a user does to their messages.
    pub erasure_mode: ErasureMode,
    /// How many days messages are kept before they become tombstones; absent: for
    /// ever.
    pub retention_days: Option<i32>,
    /// When the tenant was created.
    pub created_at: DateTime<Utc>,
    /// When the tenant was last changed.
    pub updated_at: DateTime<Utc>,
}

/// A new tenant together with its first owner.
#[derive(Debug, Clone, Deserialize)]
pub struct TenantWithOwner {
    /// The tenant.
    pub tenant: Tenant,
    /// Its owner.
    pub user: User,
}

/// The changes to a tenant; absent fields stay as they are.
#[derive(Debug, Clone, Serialize, Object)]
#[oai(example)]
pub struct TenantPatch {
    /// A new display name (1 to 100 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(min_length = 1, max_length = 100))]
    pub name: Option<String>,
    /// Opens or closes self-registration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_open: Option<bool>,
    /// What erasing a user does to their messages from now on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erasure_mode: Option<ErasureMode>,
    /// Days messages are kept (1 to 36500); 0 keeps them for ever. Older messages
    /// become tombstones in the background, and the event log loses what is both
    /// older and beyond the replay window.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(minimum(value = "0"), maximum(value = "36500")))]
    pub retention_days: Option<i32>,
}

impl Example for TenantPatch {
    fn example() -> Self {
        Self {
            name: Some("Acme Inc".to_owned()),
            registration_open: Some(false),
            erasure_mode: None,
            retention_days: None,
        }
    }
}

/// The tenant and owner fields `tenant_create` takes.
#[derive(Debug, Clone)]
pub struct NewTenant {
    /// The id of the tenant to create.
    pub tenant_id: Uuid,
    /// Its slug.
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// The id of its owner.
    pub owner_id: Uuid,
    /// The owner's username.
    pub username: String,
    /// The owner's email, if given.
    pub email: Option<String>,
    /// The owner's display name, if given.
    pub display_name: Option<String>,
    /// The argon2id hash of the owner's password.
    pub password_hash: String,
    /// Whether anyone may register in it.
    pub registration_open: bool,
}

impl Database {
    /// The cheap check of a tenant creation, before the owner's password is hashed:
    /// the slug is free.
    pub async fn tenant_slug_check(&self, slug: &str) -> Result<(), DatabaseError> {
        self.call("tenant_slug_check", &[&slug]).await
    }

    /// Creates a tenant with its owner and opens the owner's first session.
    pub async fn tenant_create(
        &self,
        tenant: &NewTenant,
        session: &NewSession,
    ) -> Result<TenantWithOwner, DatabaseError> {
        self.call(
            "tenant_create",
            &[
                &tenant.tenant_id,
                &tenant.slug,
                &tenant.name,
                &tenant.owner_id,
                &tenant.username,
                &tenant.email,
                &tenant.display_name,
                &tenant.password_hash,
                &session.session_id,
                &session.refresh_hash,
                &session.expires_at,
                &tenant.registration_open,
            ],
        )
        .await
    }

    /// The caller's tenant.
    pub async fn tenant_get(&self, caller: &Caller) -> Result<Tenant, DatabaseError> {
        self.call(
            "tenant_get",
            &[&caller.tenant_id, &caller.user_id, &caller.session_id],
        )
        .await
    }

    /// Changes the caller's tenant (owners and admins).
    pub async fn tenant_update(
        &self,
        caller: &Caller,
        patch: &TenantPatch,
    ) -> Result<Tenant, DatabaseError> {
        let patch = tokio_postgres::types::Json(patch);
        self.call(
            "tenant_update",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &patch,
            ],
        )
        .await
    }

    /// Deletes the caller's tenant (owners).
    pub async fn tenant_delete(&self, caller: &Caller) -> Result<(), DatabaseError> {
        self.call(
            "tenant_delete",
            &[&caller.tenant_id, &caller.user_id, &caller.session_id],
        )
        .await
    }
}
