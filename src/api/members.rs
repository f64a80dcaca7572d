//! The members of a room: listing, adding, removing, roles and the access check.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::BearerAuth;
use crate::db::{Member, MemberPage, RoomAccess, RoomRole};
use crate::error::ApiError;
use crate::state::AppState;

/// The page size when none is asked for.
const DEFAULT_PAGE_SIZE: i32 = 50;

/// A user to add.
#[derive(Debug, Object)]
#[oai(example)]
pub struct AddMemberRequest {
    /// The user's id.
    pub user_id: Uuid,
}

impl Example for AddMemberRequest {
    fn example() -> Self {
        Self {
            user_id: Uuid::nil(),
        }
    }
}

/// A new role.
#[derive(Debug, Object)]
#[oai(example)]
pub struct SetRoleRequest {
    /// `owner`, `admin` or `member`.
    pub role: RoomRole,
}

impl Example for SetRoleRequest {
    fn example() -> Self {
        Self {
            role: RoomRole::Admin,
        }
    }
}

/// No content.
#[derive(ApiResponse)]
pub enum MemberRemoved {
    /// The user is no longer a member.
    #[oai(status = 204)]
    Removed,
}

/// Room members.
#[derive(Default)]
pub struct MembersApi;

#[OpenApi(tag = "ApiTags::Members")]
impl MembersApi {
    /// List a room's members (members)
    #[oai(
        path = "/v1/rooms/:room_id/members",
        method = "get",
        operation_id = "listMembers"
    )]
    async fn list_members(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<Uuid>>,
        /// Members per page, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<MemberPage>, ApiError> {
        let limit = limit.0.unwrap_or(DEFAULT_PAGE_SIZE);
        Ok(Json(
            state
                .db
                .member_list(&auth.0, room_id.0, cursor.0, limit)
                .await?,
        ))
    }

    /// Add a member (room owners and admins)
    ///
    /// Adding a member again changes nothing.
    #[oai(
        path = "/v1/rooms/:room_id/members",
        method = "post",
        operation_id = "addMember"
    )]
    async fn add_member(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        body: Json<AddMemberRequest>,
    ) -> Result<Json<Member>, ApiError> {
        Ok(Json(
            state
                .db
                .member_add(&auth.0, room_id.0, body.0.user_id)
                .await?,
        ))
    }

    /// Remove a member
    ///
    /// Room owners and admins remove members; only owners remove owners and admins;
    /// anyone removes themselves. The last owner stays (409 `last_owner`).
    #[oai(
        path = "/v1/rooms/:room_id/members/:user_id",
        method = "delete",
        operation_id = "removeMember"
    )]
    async fn remove_member(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The member's user id.
        user_id: Path<Uuid>,
    ) -> Result<MemberRemoved, ApiError> {
        state
            .db
            .member_remove(&auth.0, room_id.0, user_id.0)
            .await?;
        Ok(MemberRemoved::Removed)
    }

    /// Change a member's role (room owners)
    ///
    /// The room always keeps an owner (409 `last_owner`).
    #[oai(
        path = "/v1/rooms/:room_id/members/:user_id",
        method = "patch",
        operation_id = "setMemberRole"
    )]
    async fn set_member_role(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The member's user id.
        user_id: Path<Uuid>,
        body: Json<SetRoleRequest>,
    ) -> Result<Json<Member>, ApiError> {
        Ok(Json(
            state
                .db
                .member_set_role(&auth.0, room_id.0, user_id.0, body.0.role)
                .await?,
        ))
    }

    /// May a user read a room?
    ///
    /// Asked by a member of the room or by an owner or admin of the tenant.
    #[oai(
        path = "/v1/rooms/:room_id/access/:user_id",
        method = "get",
        operation_id = "checkRoomAccess"
    )]
    async fn check_access(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The user asked about.
        user_id: Path<Uuid>,
    ) -> Result<Json<RoomAccess>, ApiError> {
        Ok(Json(
            state.db.room_access(&auth.0, room_id.0, user_id.0).await?,
        ))
    }
}
