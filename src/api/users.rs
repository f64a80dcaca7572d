//! The users of the caller's tenant.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::{AdminAuth, BearerAuth};
use crate::db::{Erasure, Role, User, UserExport, UserFilter, UserPage, UserPatch};
use crate::error::ApiError;
use crate::state::AppState;

/// The page size when none is asked for.
const DEFAULT_PAGE_SIZE: i32 = 50;

/// No content.
#[derive(ApiResponse)]
pub enum UserDeleted {
    /// The user is deleted and their sessions closed.
    #[oai(status = 204)]
    Deleted,
}

/// The answer to an export request.
#[derive(ApiResponse)]
pub enum ExportAccepted {
    /// The export is being built (or, asked for again, the one being built).
    #[oai(status = 202)]
    Accepted(Json<UserExport>),
}

/// Users.
#[derive(Default)]
pub struct UsersApi;

#[OpenApi(tag = "ApiTags::Users")]
impl UsersApi {
    /// Get the caller
    #[oai(path = "/v1/users/me", method = "get", operation_id = "getMe")]
    async fn get_me(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<Json<User>, ApiError> {
        Ok(Json(state.db.user_me(&auth.0).await?))
    }

    /// List the tenant's users
    ///
    /// In order of creation, `limit` at a time (1 to 200, default 50); pass the
    /// answer's `next_cursor` as `cursor` for the next page. `online=true` lists the
    /// users connected now, on any instance; `metadata_key` and `metadata_value` the
    /// users with a role or group of the product's own.
    #[oai(path = "/v1/users", method = "get", operation_id = "listUsers")]
    #[allow(clippy::too_many_arguments)]
    async fn list_users(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Only users of this role.
        role: Query<Option<Role>>,
        /// Only users connected now (`true`: a WebSocket or event stream of theirs is
        /// subscribed on any instance) or not connected (`false`).
        online: Query<Option<bool>>,
        /// With `metadata_value`: only users whose metadata has this key (owners and
        /// admins, and API keys acting for them; the index makes it a lookup).
        #[oai(validator(min_length = 1, max_length = 100))]
        metadata_key: Query<Option<String>>,
        /// The string value `metadata_key` must have, such as a product's own role
        /// (`buyer`, `broker`).
        #[oai(validator(max_length = 1000))]
        metadata_value: Query<Option<String>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<Uuid>>,
        /// Users per page, 1 to 200.
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<UserPage>, ApiError> {
        let limit = limit.0.unwrap_or(DEFAULT_PAGE_SIZE);
        let filter = UserFilter {
            metadata: crate::api::metadata_filter(metadata_key.0, metadata_value.0)?,
            role: role.0,
            online: online.0,
            online_ids: match online.0 {
                Some(_) => state.realtime.online_in_tenant(auth.0.tenant_id),
                None => Vec::new(),
            },
        };
        Ok(Json(
            state
                .db
                .user_list(&auth.0, &filter, cursor.0, limit)
                .await?,
        ))
    }

    /// Get a user by username
    #[oai(
        path = "/v1/users/by-username/:username",
        method = "get",
        operation_id = "getUserByUsername"
    )]
    async fn get_user_by_username(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The username (case-insensitive).
        username: Path<String>,
    ) -> Result<Json<User>, ApiError> {
        Ok(Json(
            state.db.user_get_by_username(&auth.0, &username.0).await?,
        ))
    }

    /// Get a user
    #[oai(path = "/v1/users/:user_id", method = "get", operation_id = "getUser")]
    async fn get_user(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The user's id.
        user_id: Path<Uuid>,
    ) -> Result<Json<User>, ApiError> {
        Ok(Json(state.db.user_get(&auth.0, user_id.0).await?))
    }

    /// Update a user
    ///
    /// Users change their own profile; owners and admins change anyone's profile and
    /// role, except that only owners change owners or make them, and the tenant
    /// always keeps an owner (409 `last_owner`). `null` clears a field.
    #[oai(
        path = "/v1/users/:user_id",
        method = "patch",
        operation_id = "updateUser"
    )]
    async fn update_user(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The user's id.
        user_id: Path<Uuid>,
        body: Json<UserPatch>,
    ) -> Result<Json<User>, ApiError> {
        Ok(Json(
            state.db.user_update(&auth.0, user_id.0, &body.0).await?,
        ))
    }

    /// Delete a user
    ///
    /// Users delete themselves; owners and admins delete others (owners only by
    /// owners). The last owner cannot be deleted.
    #[oai(
        path = "/v1/users/:user_id",
        method = "delete",
        operation_id = "deleteUser"
    )]
    async fn delete_user(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The user's id.
        user_id: Path<Uuid>,
    ) -> Result<UserDeleted, ApiError> {
        state.db.user_delete(&auth.0, user_id.0).await?;
        Ok(UserDeleted::Deleted)
    }

    /// Erase a user's personal data (the user, owners, admins, API keys)
    ///
    /// The right to erasure: the profile keeps only its id (name, email, avatar, bio,
    /// external id and metadata gone), sessions, memberships, reactions, mentions,
    /// read markers, the feed, blocks either way, restrictions, reports they filed and
    /// every copy of their name and email elsewhere (the event log, feeds, webhook
    /// payloads, the audit log) are removed, and their streams end. Their messages are
    /// anonymised, or become tombstones (body, attachment and earlier versions gone,
    /// seq kept) when the tenant's `erasure_mode` is `delete`. Owners are erased only
    /// by owners, and not the last one. Recorded in the audit log without the name.
    /// Others' messages that name the user in their own words stay theirs.
    #[oai(
        path = "/v1/users/:user_id/erase",
        method = "post",
        operation_id = "eraseUser"
    )]
    async fn erase_user(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The user's id.
        user_id: Path<Uuid>,
    ) -> Result<Json<Erasure>, ApiError> {
        Ok(Json(
            state.db.user_erase(&auth.principal(), user_id.0).await?,
        ))
    }

    /// Ask for an export of a user's data (the user, owners, admins, API keys)
    ///
    /// The right of access: a JSON document of the profile, memberships with read
    /// markers, every message and reaction the user wrote, thread read markers and the
    /// reports they filed, built in the background; fetch it with `GET` on the same
    /// path once `state` is `ready`. Asking while one is being built answers that one.
    #[oai(
        path = "/v1/users/:user_id/export",
        method = "post",
        operation_id = "exportUser"
    )]
    async fn export_user(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The user's id.
        user_id: Path<Uuid>,
    ) -> Result<ExportAccepted, ApiError> {
        let export = state
            .db
            .user_export_request(&auth.principal(), user_id.0)
            .await?;
        state.exporter.wake();
        Ok(ExportAccepted::Accepted(Json(export)))
    }

    /// Get the latest export of a user's data (the user, owners, admins, API keys)
    ///
    /// 404 `export_not_found` when none was asked for.
    #[oai(
        path = "/v1/users/:user_id/export",
        method = "get",
        operation_id = "getUserExport"
    )]
    async fn get_user_export(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The user's id.
        user_id: Path<Uuid>,
    ) -> Result<Json<UserExport>, ApiError> {
        Ok(Json(
            state
                .db
                .user_export_get(&auth.principal(), user_id.0)
                .await?,
        ))
    }

    /// Deactivate a user (owners, admins, API key)
    ///
    /// The user keeps their rooms and history but cannot log in, be minted a session
    /// or be acted for; every session ends and their streams end (4001) on every
    /// instance within a second. Only owners deactivate owners; nobody deactivates
    /// themselves, and the tenant keeps an active owner. Deactivating twice changes
    /// nothing.
    #[oai(
        path = "/v1/users/:user_id/deactivate",
        method = "post",
        operation_id = "deactivateUser"
    )]
    async fn deactivate_user(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The user's id.
        user_id: Path<Uuid>,
    ) -> Result<Json<User>, ApiError> {
        let user = state
            .db
            .user_set_active(&auth.principal(), user_id.0, false)
            .await?;
        Ok(Json(user))
    }

    /// Reactivate a user (owners, admins, API key)
    ///
    /// The user may log in and be minted sessions again.
    #[oai(
        path = "/v1/users/:user_id/reactivate",
        method = "post",
        operation_id = "reactivateUser"
    )]
    async fn reactivate_user(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The user's id.
        user_id: Path<Uuid>,
    ) -> Result<Json<User>, ApiError> {
        let user = state
            .db
            .user_set_active(&auth.principal(), user_id.0, true)
            .await?;
        Ok(Json(user))
    }
}
