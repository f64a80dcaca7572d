//! Conversations inside rooms: threads and their read positions, the caller's
//! mentions, and pinned messages. Replies and mentions are sent like any message
//! (`sendMessage` with `parent_id`, `mentions`, `mention_room`); these are the reads and
//! the marks around them.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::messages::MarkReadRequest;
use crate::api::security::BearerAuth;
use crate::db::{MentionPage, Message, PinList, ReplyPage, ThreadPage, ThreadReadMarker};
use crate::error::ApiError;
use crate::state::AppState;

/// The page size when none is asked for.
const DEFAULT_PAGE_SIZE: i32 = 50;

/// The answer to a pin or unpin.
#[derive(ApiResponse)]
pub enum PinChanged {
    /// The message as it is now (pinning a pinned message, or unpinning one that is
    /// not, changes nothing).
    #[oai(status = 200)]
    Ok(Json<Message>),
}

/// Threads, mentions and pins.
#[derive(Default)]
pub struct ConversationsApi;

#[OpenApi(tag = "ApiTags::Conversations")]
impl ConversationsApi {
    /// List a thread's replies (members)
    ///
    /// In seq order after `after` (default 0), `limit` at a time (1 to 200, default
    /// 50), with the thread's first message. Replies are sent with `sendMessage` and a
    /// `parent_id`; their `message.created` events carry it.
    #[oai(
        path = "/v1/rooms/:room_id/messages/:message_id/replies",
        method = "get",
        operation_id = "listReplies"
    )]
    async fn list_replies(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The id of the thread's first message.
        message_id: Path<Uuid>,
        /// Replies with a greater seq.
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
        /// Replies per page, 1 to 200.
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<ReplyPage>, ApiError> {
        Ok(Json(
            state
                .db
                .reply_list(
                    &auth.0,
                    room_id.0,
                    message_id.0,
                    after.0.unwrap_or(0),
                    limit.0.unwrap_or(DEFAULT_PAGE_SIZE),
                )
                .await?,
        ))
    }

    /// List a room's threads (members)
    ///
    /// Newest activity first, each with the caller's read position and unread replies
    /// where they take part; `limit` at a time (1 to 100, default 50).
    #[oai(
        path = "/v1/rooms/:room_id/threads",
        method = "get",
        operation_id = "listThreads"
    )]
    async fn list_threads(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The `next_cursor` of the page before.
        #[oai(validator(max_length = 100))]
        cursor: Query<Option<String>>,
        /// Threads per page, 1 to 100.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<ThreadPage>, ApiError> {
        Ok(Json(
            state
                .db
                .thread_list(
                    &auth.0,
                    room_id.0,
                    cursor.0.as_deref(),
                    limit.0.unwrap_or(DEFAULT_PAGE_SIZE),
                )
                .await?,
        ))
    }

    /// Mark a thread read up to a seq (members)
    ///
    /// The position never moves back; marking a thread read makes the caller take part
    /// in it.
    #[oai(
        path = "/v1/rooms/:room_id/threads/:message_id/read",
        method = "post",
        operation_id = "markThreadRead"
    )]
    async fn mark_thread_read(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The id of the thread's first message.
        message_id: Path<Uuid>,
        body: Json<MarkReadRequest>,
    ) -> Result<Json<ThreadReadMarker>, ApiError> {
        Ok(Json(
            state
                .db
                .thread_mark_read(&auth.0, room_id.0, message_id.0, body.0.seq)
                .await?,
        ))
    }

    /// List the messages that mention me
    ///
    /// Newest first, in the rooms the caller is in, deleted messages left out; `limit`
    /// at a time (1 to 100, default 50). Counts per room are in `getUnreadCounts`.
    #[oai(
        path = "/v1/users/me/mentions",
        method = "get",
        operation_id = "listMentions"
    )]
    async fn list_mentions(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Mentions in messages older than this one (its id).
        before: Query<Option<Uuid>>,
        /// Mentions per page, 1 to 100.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<MentionPage>, ApiError> {
        Ok(Json(
            state
                .db
                .mention_list(&auth.0, before.0, limit.0.unwrap_or(DEFAULT_PAGE_SIZE))
                .await?,
        ))
    }

    /// Pin a message (room owners and admins, or members where the room allows it)
    ///
    /// At most 50 per room (422 `too_many_pins`); `message.pinned` in the room's log.
    #[oai(
        path = "/v1/rooms/:room_id/messages/:message_id/pin",
        method = "put",
        operation_id = "pinMessage"
    )]
    async fn pin_message(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The message's id.
        message_id: Path<Uuid>,
    ) -> Result<PinChanged, ApiError> {
        let message = state
            .db
            .message_pin(&auth.0, room_id.0, message_id.0, true)
            .await?;
        Ok(PinChanged::Ok(Json(message)))
    }

    /// Unpin a message (room owners and admins, or members where the room allows it)
    #[oai(
        path = "/v1/rooms/:room_id/messages/:message_id/pin",
        method = "delete",
        operation_id = "unpinMessage"
    )]
    async fn unpin_message(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The message's id.
        message_id: Path<Uuid>,
    ) -> Result<PinChanged, ApiError> {
        let message = state
            .db
            .message_pin(&auth.0, room_id.0, message_id.0, false)
            .await?;
        Ok(PinChanged::Ok(Json(message)))
    }

    /// List a room's pinned messages (members)
    #[oai(
        path = "/v1/rooms/:room_id/pins",
        method = "get",
        operation_id = "listPins"
    )]
    async fn list_pins(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
    ) -> Result<Json<PinList>, ApiError> {
        Ok(Json(state.db.pin_list(&auth.0, room_id.0).await?))
    }
}
