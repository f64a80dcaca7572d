//! Rooms: group and direct rooms, their settings, invite codes, joining and leaving.

use poem::{Request, web::Data};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::BearerAuth;
use crate::db::{
    NewRoom, Room, RoomFilter, RoomKind, RoomPage, RoomPatch, RoomSort, TenantRoomPage, Visibility,
};
use crate::error::ApiError;
use crate::limits::Attempt;
use crate::state::AppState;

/// The page size when none is asked for.
const DEFAULT_PAGE_SIZE: i32 = 50;

/// A group room to create.
#[derive(Debug, Object)]
#[oai(example)]
pub struct CreateRoomRequest {
    /// 1 to 100 characters.
    #[oai(validator(min_length = 1, max_length = 100))]
    pub name: String,
    /// At most 1000 characters.
    #[oai(validator(max_length = 1000))]
    pub topic: Option<String>,
    /// `private` (the default) or `public`.
    pub visibility: Option<Visibility>,
    /// Other users of the tenant who join as members at once (at most 100); each
    /// joins with its own `member.joined` event.
    #[oai(validator(max_items = 100))]
    pub member_ids: Option<Vec<Uuid>>,
}

impl Example for CreateRoomRequest {
    fn example() -> Self {
        Self {
            name: "general".to_owned(),
            topic: Some("Everything and nothing".to_owned()),
            visibility: Some(Visibility::Public),
            member_ids: None,
        }
    }
}

/// The other user of a direct room.
#[derive(Debug, Object)]
#[oai(example)]
pub struct DirectRoomRequest {
    /// The user to talk to.
    pub user_id: Uuid,
}

impl Example for DirectRoomRequest {
    fn example() -> Self {
        Self {
            user_id: Uuid::nil(),
        }
    }
}

/// An invite code to join with.
#[derive(Debug, Object)]
#[oai(example)]
pub struct JoinByCodeRequest {
    /// The room's 6-character invite code (case-insensitive).
    #[oai(validator(max_length = 64))]
    pub code: String,
}

impl Example for JoinByCodeRequest {
    fn example() -> Self {
        Self {
            code: "K7QM4X".to_owned(),
        }
    }
}

/// The answer to a room creation.
#[derive(ApiResponse)]
pub enum RoomCreated {
    /// The room exists, with the caller as its owner.
    #[oai(status = 201)]
    Created(Json<Room>),
}

/// No content.
#[derive(ApiResponse)]
pub enum RoomGone {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// Rooms.
#[derive(Default)]
pub struct RoomsApi;

#[OpenApi(tag = "ApiTags::Rooms")]
impl RoomsApi {
    /// Create a group room
    ///
    /// The caller becomes its owner.
    #[oai(path = "/v1/rooms", method = "post", operation_id = "createRoom")]
    async fn create_room(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<CreateRoomRequest>,
    ) -> Result<RoomCreated, ApiError> {
        let creations = &state.limits.room_creations;
        let allowance = creations.acquire(&auth.0.user_id).await;
        if allowance.retry_after.is_some() {
            return Err(ApiError::too_many(
                &allowance,
                "too_many_rooms",
                "Too many rooms created in the last hour; retry after the Retry-After seconds",
            ));
        }
        let room = NewRoom {
            room_id: Uuid::now_v7(),
            name: body.0.name,
            topic: body.0.topic,
            visibility: body.0.visibility.unwrap_or(Visibility::Private),
            member_ids: body.0.member_ids.unwrap_or_default(),
        };
        let created = state.db.room_create(&auth.0, &room).await;
        if created.is_err() {
            // Only rooms that exist count against the hourly limit.
            creations.refund(&auth.0.user_id).await;
        }
        Ok(RoomCreated::Created(Json(created?)))
    }

    /// Get or create the direct room with a user
    ///
    /// Both users calling it, even at once, get the same room.
    #[oai(
        path = "/v1/rooms/direct",
        method = "post",
        operation_id = "getOrCreateDirectRoom"
    )]
    async fn direct_room(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<DirectRoomRequest>,
    ) -> Result<Json<Room>, ApiError> {
        Ok(Json(
            state
                .db
                .room_direct(&auth.0, Uuid::now_v7(), body.0.user_id)
                .await?,
        ))
    }

    /// List my rooms
    ///
    /// Newest activity first (or `sort=name`), each with its unread count and last
    /// message; only those of a `kind`, a `visibility`, `archived` or not, with a
    /// metadata key and value, or with unread messages (`has_unread`).
    #[oai(path = "/v1/rooms", method = "get", operation_id = "listRooms")]
    #[allow(clippy::too_many_arguments)]
    async fn list_rooms(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Only rooms of this kind.
        kind: Query<Option<RoomKind>>,
        /// Only rooms of this visibility.
        visibility: Query<Option<Visibility>>,
        /// Only archived rooms (true) or rooms not archived (false).
        archived: Query<Option<bool>>,
        /// With `metadata_value`: only rooms whose metadata has this key.
        #[oai(validator(min_length = 1, max_length = 100))]
        metadata_key: Query<Option<String>>,
        /// The string value `metadata_key` must have.
        #[oai(validator(max_length = 1000))]
        metadata_value: Query<Option<String>>,
        /// Only rooms with (true) or without (false) unread messages.
        has_unread: Query<Option<bool>>,
        /// `activity` (newest first, the default) or `name`.
        sort: Query<Option<RoomSort>>,
        /// The `next_cursor` of the previous page (of the same order).
        cursor: Query<Option<String>>,
        /// Rooms per page, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<RoomPage>, ApiError> {
        let limit = limit.0.unwrap_or(DEFAULT_PAGE_SIZE);
        let filter = RoomFilter {
            kind: kind.0,
            visibility: visibility.0,
            archived: archived.0,
            metadata: crate::api::metadata_filter(metadata_key.0, metadata_value.0)?,
            has_unread: has_unread.0,
            sort: sort.0.unwrap_or_default(),
        };
        Ok(Json(
            state
                .db
                .room_list(&auth.0, &filter, cursor.0.as_deref(), limit)
                .await?,
        ))
    }

    /// Find public rooms to join
    ///
    /// The tenant's public rooms that are not archived and that the caller is not
    /// banned from, by a part of their name (`q`, case-insensitive); each says the
    /// caller's role where they are a member. In order of creation, `limit` at a time
    /// (1 to 200, default 50). Owners, admins and API keys list every room of the
    /// tenant with `backendListRooms`.
    #[oai(
        path = "/v1/rooms/public",
        method = "get",
        operation_id = "listPublicRooms"
    )]
    async fn list_public_rooms(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// A part of the name (at most 100 characters).
        #[oai(validator(max_length = 100))]
        q: Query<Option<String>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<Uuid>>,
        /// Rooms per page, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<TenantRoomPage>, ApiError> {
        Ok(Json(
            state
                .db
                .room_public_list(
                    &auth.0,
                    q.0.as_deref(),
                    cursor.0,
                    limit.0.unwrap_or(DEFAULT_PAGE_SIZE),
                )
                .await?,
        ))
    }

    /// Join a room by invite code
    #[oai(
        path = "/v1/rooms/join",
        method = "post",
        operation_id = "joinRoomByCode"
    )]
    async fn join_by_code(
        &self,
        state: Data<&AppState>,
        request: &Request,
        auth: BearerAuth,
        body: Json<JoinByCodeRequest>,
    ) -> Result<Json<Room>, ApiError> {
        // Codes are short: failed guesses are counted per user and per address before
        // the lookup, so that concurrent guesses cannot get past the limit either.
        let limits = &state.limits;
        let address = crate::api::client_address(request, state.config.trust_forwarded_for);
        let attempt = Attempt::by(
            &limits.join_code_users,
            auth.0.user_id,
            &limits.join_code_addresses,
            address,
        )
        .await
        .map_err(|allowance| {
            ApiError::too_many(
                &allowance,
                "too_many_attempts",
                "Too many failed joins by invite code; retry after the Retry-After seconds",
            )
        })?;
        let room = state.db.room_join_by_code(&auth.0, &body.0.code).await?;
        attempt.succeeded().await;
        Ok(Json(room))
    }

    /// Get a room
    ///
    /// Members see any room; others see public rooms only.
    #[oai(path = "/v1/rooms/:room_id", method = "get", operation_id = "getRoom")]
    async fn get_room(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
    ) -> Result<Json<Room>, ApiError> {
        Ok(Json(state.db.room_get(&auth.0, room_id.0).await?))
    }

    /// Update a room (room owners and admins)
    #[oai(
        path = "/v1/rooms/:room_id",
        method = "patch",
        operation_id = "updateRoom"
    )]
    async fn update_room(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        body: Json<RoomPatch>,
    ) -> Result<Json<Room>, ApiError> {
        let room = state.db.room_update(&auth.0, room_id.0, &body.0).await?;
        // A retention of the room's own starts its sweep now rather than at the next.
        if body.0.retention_days.is_some() {
            state.purger.wake();
        }
        Ok(Json(room))
    }

    /// Delete a room with its history (room owners)
    #[oai(
        path = "/v1/rooms/:room_id",
        method = "delete",
        operation_id = "deleteRoom"
    )]
    async fn delete_room(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
    ) -> Result<RoomGone, ApiError> {
        state.db.room_delete(&auth.0, room_id.0).await?;
        state.purger.wake();
        Ok(RoomGone::Done)
    }

    /// Archive a room (room owners and admins)
    ///
    /// The history stays readable; sends, edits, reactions and joins are refused with
    /// 409 `room_archived`.
    #[oai(
        path = "/v1/rooms/:room_id/archive",
        method = "post",
        operation_id = "archiveRoom"
    )]
    async fn archive_room(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
    ) -> Result<Json<Room>, ApiError> {
        Ok(Json(state.db.room_archive(&auth.0, room_id.0).await?))
    }

    /// Draw a new invite code (room owners and admins)
    #[oai(
        path = "/v1/rooms/:room_id/invite-code",
        method = "post",
        operation_id = "rotateInviteCode"
    )]
    async fn rotate_invite_code(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
    ) -> Result<Json<Room>, ApiError> {
        Ok(Json(state.db.room_rotate_invite(&auth.0, room_id.0).await?))
    }

    /// Join a public room
    #[oai(
        path = "/v1/rooms/:room_id/join",
        method = "post",
        operation_id = "joinRoom"
    )]
    async fn join_room(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
    ) -> Result<Json<Room>, ApiError> {
        Ok(Json(state.db.room_join(&auth.0, room_id.0).await?))
    }

    /// Leave a room
    ///
    /// The last owner cannot leave (409 `last_owner`): hand ownership over first.
    #[oai(
        path = "/v1/rooms/:room_id/leave",
        method = "post",
        operation_id = "leaveRoom"
    )]
    async fn leave_room(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
    ) -> Result<RoomGone, ApiError> {
        state.db.room_leave(&auth.0, room_id.0).await?;
        Ok(RoomGone::Done)
    }
}
