//! Typed calls of the user functions (`sql/functions/0003_users.sql`), and the user
//! types the API serves.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object, types::Example, types::MaybeUndefined};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Caller, Principal};
use crate::db::{Database, DatabaseError, MetadataFilter};

/// A user's role in their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum Role {
    /// Full control of the tenant, its keys and its users; a tenant always has one.
    Owner,
    /// Manages users and API keys.
    Admin,
    /// Moderates every room of the tenant: the moderation queue, deleting messages,
    /// muting and banning in rooms, banning members from the tenant.
    Moderator,
    /// An ordinary user.
    Member,
}

impl Role {
    /// The name used in SQL and in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Moderator => "moderator",
            Self::Member => "member",
        }
    }
}

/// A user of a tenant.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct User {
    /// The user's id.
    pub id: Uuid,
    /// Unique in the tenant (case-insensitively).
    pub username: String,
    /// The name shown to others.
    pub display_name: Option<String>,
    /// Only shown to the user and to the tenant's owners and admins.
    pub email: Option<String>,
    /// A picture of the user.
    pub avatar_url: Option<String>,
    /// A few words about the user.
    pub bio: Option<String>,
    /// The user's role in the tenant.
    pub role: Role,
    /// The id of this user in the tenant's own system, when created with an API key.
    /// Only shown to the user, to the tenant's owners and admins, and to API keys.
    pub external_id: Option<String>,
    /// Free-form JSON object for the tenant's own use. Only shown to the user, to the
    /// tenant's owners and admins, and to API keys (absent for others).
    pub metadata: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// When the user was deactivated: they cannot log in, be minted a session or be
    /// acted for until reactivated. Absent for active users.
    pub deactivated_at: Option<DateTime<Utc>>,
    /// When the user was banned from the tenant: they cannot log in, be minted a
    /// session or be acted for until the ban is lifted or ends. Absent otherwise.
    pub banned_at: Option<DateTime<Utc>>,
    /// When the ban ends by itself; absent for a ban until lifted.
    pub ban_expires_at: Option<DateTime<Utc>>,
    /// Why the user was banned. Only shown to the user, to the tenant's owners and
    /// admins, and to API keys.
    pub ban_reason: Option<String>,
    /// When the user last connected or went, on any instance (recorded by the
    /// instance within a moment); whether they are connected now is
    /// `GET /v1/users?online=true`.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
    /// When the user was last changed.
    pub updated_at: DateTime<Utc>,
}

/// Which of the tenant's users to list.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Only users of this role.
    pub role: Option<Role>,
    /// Only users connected now (true) or not (false).
    pub online: Option<bool>,
    /// The users connected now, across instances.
    pub online_ids: Vec<Uuid>,
    /// Only users whose metadata holds this key with this (string) value: the
    /// product's own roles and groups.
    pub metadata: Option<MetadataFilter>,
}

/// One page of users.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct UserPage {
    /// The users of this page, oldest first.
    pub items: Vec<User>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// The changes to a user; absent fields stay as they are, `null` clears a field.
#[derive(Debug, Clone, Default, Serialize, Object)]
#[oai(example)]
pub struct UserPatch {
    /// The name shown to others (1 to 100 characters), or null to clear it.
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    #[oai(validator(min_length = 1, max_length = 100))]
    pub display_name: MaybeUndefined<String>,
    /// The email address, or null to clear it.
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    #[oai(validator(max_length = 254))]
    pub email: MaybeUndefined<String>,
    /// A picture URL (at most 2048 characters), or null to clear it.
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    #[oai(validator(max_length = 2048, pattern = r"^https?://[!-~]+$"))]
    pub avatar_url: MaybeUndefined<String>,
    /// A few words (at most 1000 characters), or null to clear them.
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    #[oai(validator(max_length = 1000))]
    pub bio: MaybeUndefined<String>,
    /// Replaces the metadata, a JSON object of at most 8 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// A new role (owners and admins only; only owners make or unmake owners).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

impl Example for UserPatch {
    fn example() -> Self {
        Self {
            display_name: MaybeUndefined::Value("Bobby".to_owned()),
            bio: MaybeUndefined::Null,
            ..Self::default()
        }
    }
}

/// A user created by a tenant's backend with an API key.
#[derive(Debug, Clone)]
pub struct NewBackendUser {
    /// The id of the new user.
    pub user_id: Uuid,
    /// The username.
    pub username: String,
    /// The email, if given.
    pub email: Option<String>,
    /// The display name, if given.
    pub display_name: Option<String>,
    /// The backend's own id for this user.
    pub external_id: Option<String>,
    /// Member or admin.
    pub role: Role,
}

impl Database {
    /// The caller's own user.
    pub async fn user_me(&self, caller: &Caller) -> Result<User, DatabaseError> {
        self.call(
            "user_me",
            &[&caller.tenant_id, &caller.user_id, &caller.session_id],
        )
        .await
    }

    /// A user of the caller's tenant by id.
    pub async fn user_get(&self, caller: &Caller, user_id: Uuid) -> Result<User, DatabaseError> {
        self.call(
            "user_get",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &user_id,
            ],
        )
        .await
    }

    /// A user of the caller's tenant by username (case-insensitive).
    pub async fn user_get_by_username(
        &self,
        caller: &Caller,
        username: &str,
    ) -> Result<User, DatabaseError> {
        self.call(
            "user_get_by_username",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &username,
            ],
        )
        .await
    }

    /// One page of the tenant's users; with `online`, only those who are (or are
    /// not) among `online_ids`.
    pub async fn user_list(
        &self,
        caller: &Caller,
        filter: &UserFilter,
        after: Option<Uuid>,
        limit: i32,
    ) -> Result<UserPage, DatabaseError> {
        let role = filter.role.map(Role::as_str);
        let metadata = filter.metadata.as_ref().map(MetadataFilter::as_json);
        self.call(
            "user_list",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &role,
                &after,
                &limit,
                &filter.online,
                &filter.online_ids,
                &metadata,
            ],
        )
        .await
    }

    /// Changes a user's profile or role.
    pub async fn user_update(
        &self,
        caller: &Caller,
        user_id: Uuid,
        patch: &UserPatch,
    ) -> Result<User, DatabaseError> {
        let patch = tokio_postgres::types::Json(patch);
        self.call(
            "user_update",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &user_id,
                &patch,
            ],
        )
        .await
    }

    /// Deletes a user.
    pub async fn user_delete(&self, caller: &Caller, user_id: Uuid) -> Result<(), DatabaseError> {
        self.call(
            "user_delete",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &user_id,
            ],
        )
        .await
    }

    /// With an API key: creates a user of the key's tenant.
    pub async fn backend_user_create(
        &self,
        tenant_id: Uuid,
        key_hash: &[u8],
        user: &NewBackendUser,
    ) -> Result<User, DatabaseError> {
        self.call(
            "backend_user_create",
            &[
                &tenant_id,
                &key_hash,
                &user.user_id,
                &user.username,
                &user.email,
                &user.display_name,
                &user.external_id,
                &user.role.as_str(),
            ],
        )
        .await
    }

    /// Deactivates (`active` false) or reactivates a user, as an owner, admin or API key.
    pub async fn user_set_active(
        &self,
        principal: &Principal,
        user_id: Uuid,
        active: bool,
    ) -> Result<User, DatabaseError> {
        self.call_as("user_set_active", principal, &[&user_id, &active])
            .await
    }
}
