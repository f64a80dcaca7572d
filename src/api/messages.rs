//! Messages: sending, history, edits, deletion, reactions and read markers.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::{Example, MaybeUndefined},
};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::BearerAuth;
use crate::db::{
    Attachment, Draft, HistoryCursor, Message, MessageEdit, MessageKind, MessagePage,
    MessageVersions, NewMessage, ReadMarker, UnreadSummary,
};
use crate::error::ApiError;
use crate::state::AppState;

/// The page size when none is asked for.
const DEFAULT_PAGE_SIZE: i32 = 50;

/// A message to send.
#[derive(Debug, Object)]
#[oai(example)]
pub struct SendMessageRequest {
    /// `text` (the default), `image`, `file`, or `system` (room owners and admins).
    pub kind: Option<MessageKind>,
    /// The text; required for text and system messages. At most 16 KiB by default.
    pub body: Option<String>,
    /// Required for image and file messages.
    pub attachment: Option<Attachment>,
    /// The message this one answers (in the same room).
    pub reply_to_id: Option<Uuid>,
    /// An idempotency key (1 to 100 characters): sending again with it answers the
    /// first message instead of writing a copy.
    #[oai(validator(min_length = 1, max_length = 100))]
    pub client_id: Option<String>,
    /// Reply in the thread of this message of the room (threads are one level: it
    /// cannot be a reply itself).
    pub parent_id: Option<Uuid>,
    /// For a reply in a thread: show it in the room's main timeline too (default
    /// false).
    pub show_in_room: Option<bool>,
    /// Users of the room this message mentions (at most 50, each once).
    #[oai(validator(max_items = 50))]
    pub mentions: Option<Vec<Uuid>>,
    /// Mention everyone in the room (`@room`): the room's owners and admins, or every
    /// member when the room allows it.
    pub mention_room: Option<bool>,
}

impl Example for SendMessageRequest {
    fn example() -> Self {
        Self {
            kind: Some(MessageKind::Text),
            body: Some("Hello, world".to_owned()),
            attachment: None,
            reply_to_id: None,
            client_id: Some("0b7c6a52-client-1".to_owned()),
            parent_id: None,
            show_in_room: None,
            mentions: None,
            mention_room: None,
        }
    }
}

impl SendMessageRequest {
    /// The message to write, with a new id.
    pub fn into_message(self) -> NewMessage {
        Draft {
            kind: self.kind,
            body: self.body,
            attachment: self.attachment,
            reply_to_id: self.reply_to_id,
            client_id: self.client_id,
            parent_id: self.parent_id,
            show_in_room: self.show_in_room,
            mentions: self.mentions,
            mention_room: self.mention_room,
        }
        .into_message()
    }
}

/// A message's new content.
#[derive(Debug, Object)]
#[oai(example)]
pub struct EditMessageRequest {
    /// The new text.
    pub body: String,
    /// A new attachment, or null to remove it; absent keeps the current one.
    pub attachment: MaybeUndefined<Attachment>,
    /// The users it mentions now (members of the room, at most 50); absent keeps the
    /// mentions. A user taken out no longer counts it among their mentions.
    #[oai(validator(max_items = 50))]
    pub mentions: Option<Vec<Uuid>>,
    /// Whether it mentions everyone in the room now; absent keeps that.
    pub mention_room: Option<bool>,
}

impl Example for EditMessageRequest {
    fn example() -> Self {
        Self {
            body: "Hello, world (edited)".to_owned(),
            attachment: MaybeUndefined::Undefined,
            mentions: None,
            mention_room: None,
        }
    }
}

/// A reaction.
#[derive(Debug, Object)]
#[oai(example)]
pub struct ReactionRequest {
    /// The emoji (1 to 32 characters, no spaces or control characters). The same
    /// pattern bounds the emoji of `removeReaction`'s path; the explicit class means
    /// the same in every regex dialect (clients', fuzzers', the server's).
    #[oai(validator(
        pattern = r"^[^\u0000-\u0020\u007f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]{1,32}$"
    ))]
    pub emoji: String,
}

impl Example for ReactionRequest {
    fn example() -> Self {
        Self {
            emoji: "👍".to_owned(),
        }
    }
}

/// A read marker.
#[derive(Debug, Object)]
#[oai(example)]
pub struct MarkReadRequest {
    /// Everything up to this seq is read; the marker never moves back.
    #[oai(validator(minimum(value = "0")))]
    pub seq: i64,
}

impl Example for MarkReadRequest {
    fn example() -> Self {
        Self { seq: 42 }
    }
}

/// The answer to a send.
#[derive(ApiResponse)]
pub enum MessageSent {
    /// The message was sent.
    #[oai(status = 201)]
    Created(
        Json<Message>,
        /// Messages the user may send at once.
        #[oai(header = "X-RateLimit-Limit")]
        u32,
        /// Messages the user may still send right now.
        #[oai(header = "X-RateLimit-Remaining")]
        u32,
        /// Seconds until the allowance is full again.
        #[oai(header = "X-RateLimit-Reset")]
        u64,
    ),
    /// A message with this client id was sent before; this is it, and nothing new was written.
    #[oai(status = 200)]
    Replayed(
        Json<Message>,
        /// Messages the user may send at once.
        #[oai(header = "X-RateLimit-Limit")]
        u32,
        /// Messages the user may still send right now.
        #[oai(header = "X-RateLimit-Remaining")]
        u32,
        /// Seconds until the allowance is full again.
        #[oai(header = "X-RateLimit-Reset")]
        u64,
    ),
}

/// No content.
#[derive(ApiResponse)]
pub enum MessageDeleted {
    /// The message is a tombstone now.
    #[oai(status = 204)]
    Deleted,
}

/// Messages.
#[derive(Default)]
pub struct MessagesApi;

#[OpenApi(tag = "ApiTags::Messages")]
impl MessagesApi {
    /// Send a message (members)
    #[oai(
        path = "/v1/rooms/:room_id/messages",
        method = "post",
        operation_id = "sendMessage"
    )]
    async fn send_message(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        body: Json<SendMessageRequest>,
    ) -> Result<MessageSent, ApiError> {
        let body = body.0;
        // REST and WebSocket sends of a user draw from one allowance.
        let allowance = state.limits.sends.acquire(&auth.0.user_id).await;
        if allowance.retry_after.is_some() {
            return Err(ApiError::too_many(
                &allowance,
                "rate_limited",
                "Too many messages; retry after the Retry-After seconds",
            ));
        }
        let sent = state
            .writer
            .send(&auth.0, room_id.0, body.into_message())
            .await?;
        let (limit, remaining, reset) = (
            allowance.limit,
            allowance.remaining,
            allowance.reset_after.as_secs_f64().ceil() as u64,
        );
        Ok(if sent.created {
            MessageSent::Created(Json(sent.message), limit, remaining, reset)
        } else {
            MessageSent::Replayed(Json(sent.message), limit, remaining, reset)
        })
    }

    /// Read a room's history (members)
    ///
    /// In seq order, tombstones included: the newest page, or the page `before`,
    /// `after` or `around` a seq (give at most one), `limit` messages (1 to 200,
    /// default 50).
    #[oai(
        path = "/v1/rooms/:room_id/messages",
        method = "get",
        operation_id = "listMessages"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list_messages(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// Messages with a smaller seq.
        #[oai(validator(minimum(value = "0")))]
        before: Query<Option<i64>>,
        /// Messages with a greater seq.
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
        /// Messages around this seq (it included).
        #[oai(validator(minimum(value = "0")))]
        around: Query<Option<i64>>,
        /// Messages per page, 1 to 200.
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<MessagePage>, ApiError> {
        let cursor = HistoryCursor {
            before: before.0,
            after: after.0,
            around: around.0,
        };
        let limit = limit.0.unwrap_or(DEFAULT_PAGE_SIZE);
        Ok(Json(
            state
                .db
                .message_list(&auth.0, room_id.0, cursor, limit)
                .await?,
        ))
    }

    /// Get a message (members)
    #[oai(
        path = "/v1/rooms/:room_id/messages/:message_id",
        method = "get",
        operation_id = "getMessage"
    )]
    async fn get_message(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The message's id.
        message_id: Path<Uuid>,
    ) -> Result<Json<Message>, ApiError> {
        Ok(Json(
            state
                .db
                .message_get(&auth.0, room_id.0, message_id.0)
                .await?,
        ))
    }

    /// Edit a message (its author)
    ///
    /// The version it replaces stays in the message's history.
    #[oai(
        path = "/v1/rooms/:room_id/messages/:message_id",
        method = "patch",
        operation_id = "editMessage"
    )]
    async fn edit_message(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The message's id.
        message_id: Path<Uuid>,
        body: Json<EditMessageRequest>,
    ) -> Result<Json<Message>, ApiError> {
        let attachment = match &body.0.attachment {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(attachment) => Some(Some(attachment)),
        };
        let edit = MessageEdit {
            body: &body.0.body,
            attachment,
            mentions: body.0.mentions.as_deref(),
            mention_room: body.0.mention_room,
        };
        let message = state
            .db
            .message_edit(
                &auth.0,
                room_id.0,
                message_id.0,
                edit,
                state.config.max_message_bytes,
            )
            .await?;
        Ok(Json(message))
    }

    /// Delete a message (its author, or a room owner or admin)
    ///
    /// The message becomes a tombstone: history keeps its seq with an empty body.
    #[oai(
        path = "/v1/rooms/:room_id/messages/:message_id",
        method = "delete",
        operation_id = "deleteMessage"
    )]
    async fn delete_message(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The message's id.
        message_id: Path<Uuid>,
    ) -> Result<MessageDeleted, ApiError> {
        state
            .db
            .message_delete(&auth.0, room_id.0, message_id.0)
            .await?;
        Ok(MessageDeleted::Deleted)
    }

    /// List a message's earlier versions (members)
    ///
    /// Oldest first, `limit` at a time (1 to 100, default 50) and at most the page
    /// byte bound. Pass the last `version` received as `after` to continue while
    /// `has_more` is true.
    #[oai(
        path = "/v1/rooms/:room_id/messages/:message_id/versions",
        method = "get",
        operation_id = "listMessageVersions"
    )]
    async fn list_versions(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The message's id.
        message_id: Path<Uuid>,
        /// Versions after this one (default 0: from the first).
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i32>>,
        /// Versions per page, 1 to 100.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<MessageVersions>, ApiError> {
        Ok(Json(
            state
                .db
                .message_versions(
                    &auth.0,
                    room_id.0,
                    message_id.0,
                    after.0.unwrap_or(0),
                    limit.0.unwrap_or(DEFAULT_PAGE_SIZE),
                )
                .await?,
        ))
    }

    /// React to a message (members)
    ///
    /// One of each emoji per user: reacting twice changes nothing.
    #[oai(
        path = "/v1/rooms/:room_id/messages/:message_id/reactions",
        method = "post",
        operation_id = "addReaction"
    )]
    async fn add_reaction(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The message's id.
        message_id: Path<Uuid>,
        body: Json<ReactionRequest>,
    ) -> Result<Json<Message>, ApiError> {
        let message = state
            .db
            .reaction_set(&auth.0, room_id.0, message_id.0, &body.0.emoji, true)
            .await?;
        Ok(Json(message))
    }

    /// Take a reaction back (members)
    #[oai(
        path = "/v1/rooms/:room_id/messages/:message_id/reactions/:emoji",
        method = "delete",
        operation_id = "removeReaction"
    )]
    async fn remove_reaction(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The message's id.
        message_id: Path<Uuid>,
        /// The emoji, URL-encoded.
        #[oai(validator(
            pattern = r"^[^\u0000-\u0020\u007f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]{1,32}$"
        ))]
        emoji: Path<String>,
    ) -> Result<Json<Message>, ApiError> {
        let message = state
            .db
            .reaction_set(&auth.0, room_id.0, message_id.0, &emoji.0, false)
            .await?;
        Ok(Json(message))
    }

    /// Mark a room read up to a seq (members)
    #[oai(
        path = "/v1/rooms/:room_id/read",
        method = "post",
        operation_id = "markRead"
    )]
    async fn mark_read(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        body: Json<MarkReadRequest>,
    ) -> Result<Json<ReadMarker>, ApiError> {
        Ok(Json(
            state.db.mark_read(&auth.0, room_id.0, body.0.seq).await?,
        ))
    }

    /// My unread counts, per room and in total
    #[oai(
        path = "/v1/users/me/unread",
        method = "get",
        operation_id = "getUnreadCounts"
    )]
    async fn unread(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<Json<UnreadSummary>, ApiError> {
        Ok(Json(state.db.unread_summary(&auth.0).await?))
    }
}
