//! Typed calls of the message, reaction, read-marker and event-log functions
//! (`sql/functions/0005_messages.sql`).

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::auth::{ApiKeySecret, Caller};
use crate::db::{Database, DatabaseError, UserRef};

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum MessageKind {
    /// Text in `body`.
    Text,
    /// A picture in `attachment`, with an optional caption in `body`.
    Image,
    /// A file in `attachment`, with an optional caption in `body`.
    File,
    /// A notice from the room's owners, admins or the tenant's backend.
    System,
}

impl MessageKind {
    /// The name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::File => "file",
            Self::System => "system",
        }
    }
}

/// Metadata of a file stored elsewhere; Hark keeps the link, not the file.
#[derive(Debug, Clone, Deserialize, Serialize, Object)]
pub struct Attachment {
    /// Where the file is: an http(s) URL of at most 2048 characters.
    #[oai(validator(max_length = 2048, pattern = r"^https?://[!-~]+$"))]
    pub url: String,
    /// Its MIME type, such as `image/png`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(max_length = 255))]
    pub mime_type: Option<String>,
    /// Its size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(minimum(value = "0")))]
    pub size: Option<i64>,
    /// Its file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(max_length = 255))]
    pub name: Option<String>,
}

/// How many users reacted to a message with one emoji.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct ReactionCount {
    /// The emoji.
    pub emoji: String,
    /// How many users reacted with it.
    pub count: i64,
    /// Whether the caller is one of them (absent in events, which all viewers share).
    pub me: Option<bool>,
}

/// A message; a deleted one is a tombstone with an empty body.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct Message {
    /// The message's id.
    pub id: Uuid,
    /// Its room.
    pub room_id: Uuid,
    /// Its place in the room: the seq of its `message.created` event.
    pub seq: i64,
    /// Who sent it.
    pub sender: Option<UserRef>,
    /// What it is.
    pub kind: MessageKind,
    /// The text (empty for a tombstone).
    pub body: String,
    /// The attached file's metadata.
    pub attachment: Option<Attachment>,
    /// The message this one answers.
    pub reply_to_id: Option<Uuid>,
    /// The sender's idempotency key.
    pub client_id: Option<String>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// When it was last edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// Whether it has been deleted.
    pub deleted: bool,
    /// When it was deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Reaction counts, in the order the emoji were first used.
    pub reactions: Vec<ReactionCount>,
    /// In the history of a user who blocked its sender: true, and the body and
    /// attachment are withheld. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<bool>,
    /// For a reply in a thread: the thread's first message. This and the fields
    /// below are absent from events when they do not apply.
    #[serde(default)]
    pub parent_id: Option<Uuid>,
    /// For a reply in a thread: whether it is in the room's main timeline too.
    #[serde(default)]
    pub show_in_room: Option<bool>,
    /// For the first message of a thread: how many replies it has.
    #[serde(default)]
    pub reply_count: Option<i32>,
    /// For the first message of a thread: when the newest reply was sent.
    #[serde(default)]
    pub last_reply_at: Option<DateTime<Utc>>,
    /// For the first message of a thread: the first five users who replied.
    #[serde(default)]
    pub thread_participants: Option<Vec<Uuid>>,
    /// The users it mentions.
    #[serde(default)]
    pub mentions: Option<Vec<Uuid>>,
    /// Whether it mentions everyone in the room.
    #[serde(default)]
    pub mention_room: Option<bool>,
    /// When it was pinned in the room.
    #[serde(default)]
    pub pinned_at: Option<DateTime<Utc>>,
    /// Who pinned it.
    #[serde(default)]
    pub pinned_by: Option<Uuid>,
}

/// The answer to a send.
#[derive(Debug, Clone, Deserialize)]
pub struct SentMessage {
    /// False when the client id named a message sent before: nothing new was written.
    pub created: bool,
    /// The message.
    pub message: Message,
}

/// One page of a room's history.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct MessagePage {
    /// Messages in seq order, tombstones included.
    pub items: Vec<Message>,
    /// Whether older messages exist.
    pub has_more_before: bool,
    /// Whether newer messages exist.
    pub has_more_after: bool,
}

/// An earlier version of an edited message.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct MessageVersion {
    /// 1 for the original, counting up.
    pub version: i32,
    /// The body as it was.
    pub body: String,
    /// The attachment as it was.
    pub attachment: Option<Attachment>,
    /// When this version was written.
    pub created_at: DateTime<Utc>,
    /// When an edit replaced it.
    pub replaced_at: DateTime<Utc>,
}

/// The edit history of a message.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct MessageVersions {
    /// The message.
    pub message_id: Uuid,
    /// Its earlier versions after the cursor, oldest first: `limit` at most, and as
    /// many as fit the page's byte bound (at least one).
    pub items: Vec<MessageVersion>,
    /// Whether later versions follow: pass the last `version` as `after`.
    pub has_more: bool,
}

/// A read marker after a change.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct ReadMarker {
    /// The room.
    pub room_id: Uuid,
    /// Everything up to this seq is read.
    pub last_read_seq: i64,
    /// Messages of others after it, counted up to 100 (show "99+").
    pub unread_count: i64,
    /// Mentions of the caller after it, counted up to 100.
    pub mention_count: i64,
}

/// Unread messages of one room.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct RoomUnread {
    /// The room.
    pub room_id: Uuid,
    /// Messages of others after the caller's read marker, counted up to 100 (show
    /// "99+"). Replies in threads count in their thread, unless sent to the room too.
    pub unread_count: i64,
    /// Messages after the read marker that mention the caller (by name, or the whole
    /// room), counted up to 100; shown apart from `unread_count`, as a badge of its own.
    pub mention_count: i64,
}

/// Unread messages of the caller.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct UnreadSummary {
    /// Across all rooms (the sum of the rooms' counts, each at most 100).
    pub total: i64,
    /// Mentions across all rooms (the sum of the rooms' mention counts).
    pub mention_total: i64,
    /// Per room, rooms without unread messages left out.
    pub rooms: Vec<RoomUnread>,
}

/// What happened in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Enum)]
pub enum EventType {
    /// `data` is the message.
    #[serde(rename = "message.created")]
    #[oai(rename = "message.created")]
    MessageCreated,
    /// `data` is the message as edited.
    #[serde(rename = "message.edited")]
    #[oai(rename = "message.edited")]
    MessageEdited,
    /// `data`: `message_id`, `message_seq`, `deleted_by`.
    #[serde(rename = "message.deleted")]
    #[oai(rename = "message.deleted")]
    MessageDeleted,
    /// A message was pinned. `data`: `message_id`, `message_seq`, `by`, `pinned_at`.
    #[serde(rename = "message.pinned")]
    #[oai(rename = "message.pinned")]
    MessagePinned,
    /// A message was unpinned. `data`: `message_id`, `message_seq`, `by`.
    #[serde(rename = "message.unpinned")]
    #[oai(rename = "message.unpinned")]
    MessageUnpinned,
    /// `data`: `message_id`, `message_seq`, `emoji`, `user`, `count`.
    #[serde(rename = "reaction.added")]
    #[oai(rename = "reaction.added")]
    ReactionAdded,
    /// `data`: `message_id`, `message_seq`, `emoji`, `user`, `count`.
    #[serde(rename = "reaction.removed")]
    #[oai(rename = "reaction.removed")]
    ReactionRemoved,
    /// `data` is the membership: `user`, `role`, `joined_at`.
    #[serde(rename = "member.joined")]
    #[oai(rename = "member.joined")]
    MemberJoined,
    /// `data`: `user`, `reason` (`left`, `removed`, `banned`), and `removed_by` when
    /// someone else removed them.
    #[serde(rename = "member.left")]
    #[oai(rename = "member.left")]
    MemberLeft,
    /// `data` is the membership with its new `role` and `previous_role`.
    #[serde(rename = "member.role_changed")]
    #[oai(rename = "member.role_changed")]
    MemberRoleChanged,
    /// A member may read but not write (send, edit, react) until `expires_at` (null:
    /// until unmuted). `data`: `user`, `reason`, `expires_at`.
    #[serde(rename = "member.muted")]
    #[oai(rename = "member.muted")]
    MemberMuted,
    /// A mute was lifted. `data`: `user`.
    #[serde(rename = "member.unmuted")]
    #[oai(rename = "member.unmuted")]
    MemberUnmuted,
    /// A user may not join until `expires_at` (null: until unbanned); a member was
    /// removed first (`member.left` with reason `banned`). `data`: `user`, `reason`,
    /// `expires_at`.
    #[serde(rename = "member.banned")]
    #[oai(rename = "member.banned")]
    MemberBanned,
    /// A ban was lifted. `data`: `user`.
    #[serde(rename = "member.unbanned")]
    #[oai(rename = "member.unbanned")]
    MemberUnbanned,
    /// `data`: the room's `name`, `topic`, `visibility`, `slow_mode_seconds`, and which
    /// of them `changed`.
    #[serde(rename = "room.updated")]
    #[oai(rename = "room.updated")]
    RoomUpdated,
    /// `data`: `archived`.
    #[serde(rename = "room.archived")]
    #[oai(rename = "room.archived")]
    RoomArchived,
    /// In a user's feed: the user joined or was added to a room, a direct room with
    /// them was opened, or they created a room. `data`: `room_id`, `kind`, `name`,
    /// `visibility`, `role`.
    #[serde(rename = "feed.room_added")]
    #[oai(rename = "feed.room_added")]
    FeedRoomAdded,
    /// In a user's feed: the user left a room, was removed, or the room was deleted.
    /// `data`: `room_id`, `kind`, `name`, `visibility`, `reason` (`left`, `removed`,
    /// `deleted`).
    #[serde(rename = "feed.room_removed")]
    #[oai(rename = "feed.room_removed")]
    FeedRoomRemoved,
    /// In a user's feed: a room of theirs was archived. `data`: `room_id`, `kind`,
    /// `name`, `visibility`.
    #[serde(rename = "feed.room_archived")]
    #[oai(rename = "feed.room_archived")]
    FeedRoomArchived,
    /// In a user's feed: messages of others arrived in a room where they had read
    /// everything (its unread count left zero). `data`: `room_id`, `kind`, `name`,
    /// `visibility`, `seq` (the first new message's).
    #[serde(rename = "feed.unread")]
    #[oai(rename = "feed.unread")]
    FeedUnread,
    /// In a user's feed: their read marker in a room moved (on any device). `data`:
    /// `room_id`, `kind`, `name`, `visibility`, `seq`, `unread_count`.
    #[serde(rename = "feed.read")]
    #[oai(rename = "feed.read")]
    FeedRead,
    /// In a user's feed: they blocked or unblocked a user (on any device), so that
    /// every device hides that user's messages in live events alike. `data`:
    /// `user_id`, `blocked`.
    #[serde(rename = "feed.blocks_changed")]
    #[oai(rename = "feed.blocks_changed")]
    FeedBlocksChanged,
    /// In a user's feed: a message mentions them (by name, or the whole room when
    /// `mention_room`), sent or edited to. `data`: `room_id`, `kind`, `name`,
    /// `visibility`, `message_id`, `seq`, `parent_id`, `sender`, `mention_room`.
    #[serde(rename = "feed.mention")]
    #[oai(rename = "feed.mention")]
    FeedMention,
}

/// An entry of a room's event log.
#[derive(Debug, Clone, Deserialize, Serialize, Object)]
pub struct RoomEvent {
    /// The room.
    pub room_id: Uuid,
    /// Gapless, increasing per room from 1.
    pub seq: i64,
    /// What happened.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Who did it.
    pub actor_id: Option<Uuid>,
    /// When.
    pub at: DateTime<Utc>,
    /// What a client needs to update its view; its shape depends on `type`.
    pub data: serde_json::Value,
}

/// A stretch of a room's event log.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct EventPage {
    /// Events in seq order.
    pub items: Vec<RoomEvent>,
    /// The room's newest seq.
    pub last_seq: i64,
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Its id.
    pub message_id: Uuid,
    /// What it is.
    pub kind: MessageKind,
    /// Its text.
    pub body: String,
    /// Its attachment.
    pub attachment: Option<Attachment>,
    /// The message it answers.
    pub reply_to_id: Option<Uuid>,
    /// The sender's idempotency key.
    pub client_id: Option<String>,
    /// The thread it replies in.
    pub parent_id: Option<Uuid>,
    /// For a reply in a thread: whether it goes to the room's main timeline too.
    pub show_in_room: bool,
    /// The users it mentions.
    pub mentions: Vec<Uuid>,
    /// Whether it mentions everyone in the room.
    pub mention_room: bool,
}

/// A message as a client asks to send it, over REST or the WebSocket: what it leaves
/// out takes its default here, once for both.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// `text` when absent.
    pub kind: Option<MessageKind>,
    /// Empty when absent.
    pub body: Option<String>,
    /// The attachment.
    pub attachment: Option<Attachment>,
    /// The message it answers.
    pub reply_to_id: Option<Uuid>,
    /// The sender's idempotency key.
    pub client_id: Option<String>,
    /// The thread it replies in.
    pub parent_id: Option<Uuid>,
    /// For a reply: shown in the main timeline too; false when absent.
    pub show_in_room: Option<bool>,
    /// The users it mentions; none when absent.
    pub mentions: Option<Vec<Uuid>>,
    /// Whether it mentions everyone in the room; false when absent.
    pub mention_room: Option<bool>,
}

impl Draft {
    /// The message to write, with a new id.
    pub fn into_message(self) -> NewMessage {
        NewMessage {
            message_id: Uuid::now_v7(),
            kind: self.kind.unwrap_or(MessageKind::Text),
            body: self.body.unwrap_or_default(),
            attachment: self.attachment,
            reply_to_id: self.reply_to_id,
            client_id: self.client_id,
            parent_id: self.parent_id,
            show_in_room: self.show_in_room.unwrap_or(false),
            mentions: self.mentions.unwrap_or_default(),
            mention_room: self.mention_room.unwrap_or(false),
        }
    }
}

/// An edit of a message.
#[derive(Debug, Clone, Copy)]
pub struct MessageEdit<'a> {
    /// The new text.
    pub body: &'a str,
    /// `None` keeps the attachment; `Some(None)` removes it.
    pub attachment: Option<Option<&'a Attachment>>,
    /// The users it mentions now; `None` keeps the mentions.
    pub mentions: Option<&'a [Uuid]>,
    /// Whether it mentions the whole room now; `None` keeps that.
    pub mention_room: Option<bool>,
}

/// Which page of history to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryCursor {
    /// Messages before this seq.
    pub before: Option<i64>,
    /// Messages after this seq.
    pub after: Option<i64>,
    /// Messages around this seq.
    pub around: Option<i64>,
}

impl Database {
    /// Sends a message, or answers the earlier one with the same client id. Without
    /// `wait`, a room another transaction holds fails at once with
    /// [`DatabaseError::is_room_busy`] instead of waiting for it.
    pub async fn message_send(
        &self,
        caller: &Caller,
        room_id: Uuid,
        message: &NewMessage,
        max_body_bytes: i32,
        traceparent: Option<&str>,
        wait: bool,
    ) -> Result<SentMessage, DatabaseError> {
        let attachment = message.attachment.as_ref().map(Json);
        self.call(
            "message_send",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &message.message_id,
                &message.kind.as_str(),
                &message.body,
                &attachment,
                &message.reply_to_id,
                &message.client_id,
                &max_body_bytes,
                &traceparent,
                &wait,
                &message.parent_id,
                &message.show_in_room,
                &message.mentions,
                &message.mention_room,
            ],
        )
        .await
    }

    /// Sends a system message with no sender, with an API key.
    pub async fn system_message_send(
        &self,
        key: &ApiKeySecret,
        room_id: Uuid,
        message_id: Uuid,
        body: &str,
        max_body_bytes: i32,
        traceparent: Option<&str>,
    ) -> Result<SentMessage, DatabaseError> {
        self.call(
            "system_message_send",
            &[
                &key.tenant_id,
                &key.hash(),
                &room_id,
                &message_id,
                &body,
                &max_body_bytes,
                &traceparent,
            ],
        )
        .await
    }

    /// A page of a room's history.
    pub async fn message_list(
        &self,
        caller: &Caller,
        room_id: Uuid,
        cursor: HistoryCursor,
        limit: i32,
    ) -> Result<MessagePage, DatabaseError> {
        self.call(
            "message_list",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &cursor.before,
                &cursor.after,
                &cursor.around,
                &limit,
                &self.max_page_bytes,
            ],
        )
        .await
    }

    /// One message.
    pub async fn message_get(
        &self,
        caller: &Caller,
        room_id: Uuid,
        message_id: Uuid,
    ) -> Result<Message, DatabaseError> {
        self.call(
            "message_get",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &message_id,
            ],
        )
        .await
    }

    /// Edits a message. `attachment` is `None` to keep the current one, `Some(None)`
    /// to remove it.
    pub async fn message_edit(
        &self,
        caller: &Caller,
        room_id: Uuid,
        message_id: Uuid,
        edit: MessageEdit<'_>,
        max_body_bytes: i32,
    ) -> Result<Message, DatabaseError> {
        let keep_attachment = edit.attachment.is_none();
        let attachment = edit.attachment.flatten().map(Json);
        self.call(
            "message_edit",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &message_id,
                &edit.body,
                &attachment,
                &keep_attachment,
                &max_body_bytes,
                &self.max_edits_per_message,
                &edit.mentions,
                &edit.mention_room,
            ],
        )
        .await
    }

    /// The earlier versions of a message after version `after`, `limit` at most.
    pub async fn message_versions(
        &self,
        caller: &Caller,
        room_id: Uuid,
        message_id: Uuid,
        after: i32,
        limit: i32,
    ) -> Result<MessageVersions, DatabaseError> {
        self.call(
            "message_versions",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &message_id,
                &after,
                &limit,
                &self.max_page_bytes,
            ],
        )
        .await
    }

    /// Deletes a message, leaving a tombstone.
    pub async fn message_delete(
        &self,
        caller: &Caller,
        room_id: Uuid,
        message_id: Uuid,
    ) -> Result<(), DatabaseError> {
        self.call(
            "message_delete",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &message_id,
            ],
        )
        .await
    }

    /// Adds or removes the caller's reaction.
    pub async fn reaction_set(
        &self,
        caller: &Caller,
        room_id: Uuid,
        message_id: Uuid,
        emoji: &str,
        add: bool,
    ) -> Result<Message, DatabaseError> {
        self.call(
            "reaction_set",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &message_id,
                &emoji,
                &add,
                &self.max_reactions_per_user,
            ],
        )
        .await
    }

    /// Moves the caller's read marker.
    pub async fn mark_read(
        &self,
        caller: &Caller,
        room_id: Uuid,
        seq: i64,
    ) -> Result<ReadMarker, DatabaseError> {
        self.call(
            "mark_read",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &seq,
            ],
        )
        .await
    }

    /// The caller's unread counts.
    pub async fn unread_summary(&self, caller: &Caller) -> Result<UnreadSummary, DatabaseError> {
        self.call(
            "unread_summary",
            &[&caller.tenant_id, &caller.user_id, &caller.session_id],
        )
        .await
    }

    /// A room's events after a seq.
    pub async fn event_list(
        &self,
        caller: &Caller,
        room_id: Uuid,
        after_seq: i64,
        limit: i32,
    ) -> Result<EventPage, DatabaseError> {
        self.call(
            "event_list",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &after_seq,
                &limit,
                &self.max_page_bytes,
            ],
        )
        .await
    }

    /// Reads the caller's own feed after a seq.
    pub async fn feed_list(
        &self,
        caller: &Caller,
        after_seq: i64,
        limit: i32,
    ) -> Result<EventPage, DatabaseError> {
        self.call(
            "feed_list",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &after_seq,
                &limit,
                &self.max_page_bytes,
            ],
        )
        .await
    }
}
