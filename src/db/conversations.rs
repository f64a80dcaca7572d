//! Typed calls of the conversation functions (`sql/functions/0012_conversations.sql`):
//! threads and their read positions, the caller's mentions, pins, and message search.

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::{Database, DatabaseError, Message, MessageKind, RoomKind};

/// A page of a thread's replies.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct ReplyPage {
    /// The thread's first message, with its `reply_count`, `last_reply_at` and
    /// `thread_participants`.
    pub parent: Message,
    /// Replies in seq order after the cursor.
    pub items: Vec<Message>,
    /// Whether later replies follow: pass the last `seq` as `after`.
    pub has_more: bool,
}

/// A thread of a room, as listed.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct ThreadSummary {
    /// The thread's first message, with its `reply_count`, `last_reply_at` and
    /// `thread_participants`.
    pub message: Message,
    /// Whether the caller takes part: started it, replied in it, or marked it read.
    pub participating: bool,
    /// For a thread the caller takes part in: the seq of the last reply they read.
    pub last_read_seq: Option<i64>,
    /// For a thread the caller takes part in: replies of others after their read
    /// position, counted up to 100.
    pub unread_count: Option<i64>,
}

/// A page of a room's threads, newest activity first.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct ThreadPage {
    /// Threads by their newest reply, newest first.
    pub items: Vec<ThreadSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The caller's read position in a thread after a change.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct ThreadReadMarker {
    /// The thread's first message.
    pub parent_id: Uuid,
    /// Every reply up to this seq is read.
    pub last_read_seq: i64,
    /// Replies of others after it, counted up to 100.
    pub unread_count: i64,
}

/// A page of the messages that mention the caller.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct MentionPage {
    /// Newest first.
    pub items: Vec<Message>,
    /// Whether older ones follow: pass the last message's `id` as `before`.
    pub has_more: bool,
}

/// The pinned messages of a room.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct PinList {
    /// The most recently pinned first; 50 at most.
    pub items: Vec<Message>,
}

/// The room a search hit is in.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct SearchRoom {
    /// The room's id.
    pub id: Uuid,
    /// Its name (none for direct rooms).
    pub name: Option<String>,
    /// Its kind.
    pub kind: RoomKind,
}

/// A run of a snippet's text.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct SnippetRun {
    /// The text, as written.
    pub text: String,
    /// Whether it matched the query.
    pub highlight: bool,
}

/// A message found by a search.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct SearchHit {
    /// The message (its `seq` is its place in the room).
    pub message: Message,
    /// Its room.
    pub room: SearchRoom,
    /// The part of the body around the first match, as runs of text marked where they
    /// matched: render the runs in order, emphasising the highlighted ones, without
    /// parsing markup out of what users wrote.
    pub snippet: Vec<SnippetRun>,
    /// How well it matched: higher is better (0 for a match inside a word only).
    pub rank: f64,
}

/// A page of search hits.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct SearchPage {
    /// Best first; among equally good, newest first.
    pub items: Vec<SearchHit>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// What a search looks for.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// The words.
    pub text: String,
    /// Only in this room.
    pub room_id: Option<Uuid>,
    /// Only by this user.
    pub sender_id: Option<Uuid>,
    /// Only sent after this time.
    pub after: Option<DateTime<Utc>>,
    /// Only sent before this time.
    pub before: Option<DateTime<Utc>>,
    /// Only messages with (true) or without (false) an attachment.
    pub has_attachment: Option<bool>,
    /// Only messages of this kind.
    pub kind: Option<MessageKind>,
    /// The page after this cursor.
    pub cursor: Option<String>,
    /// Hits per page.
    pub limit: i32,
}

impl Database {
    /// A page of a thread's replies after seq `after`.
    pub async fn reply_list(
        &self,
        caller: &Caller,
        room_id: Uuid,
        parent_id: Uuid,
        after: i64,
        limit: i32,
    ) -> Result<ReplyPage, DatabaseError> {
        self.call(
            "reply_list",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &parent_id,
                &after,
                &limit,
                &self.max_page_bytes,
            ],
        )
        .await
    }

    /// A page of a room's threads.
    pub async fn thread_list(
        &self,
        caller: &Caller,
        room_id: Uuid,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<ThreadPage, DatabaseError> {
        self.call(
            "thread_list",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &cursor,
                &limit,
            ],
        )
        .await
    }

    /// Moves the caller's read position in a thread forward.
    pub async fn thread_mark_read(
        &self,
        caller: &Caller,
        room_id: Uuid,
        parent_id: Uuid,
        seq: i64,
    ) -> Result<ThreadReadMarker, DatabaseError> {
        self.call(
            "thread_mark_read",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &parent_id,
                &seq,
            ],
        )
        .await
    }

    /// A page of the messages that mention the caller.
    pub async fn mention_list(
        &self,
        caller: &Caller,
        before: Option<Uuid>,
        limit: i32,
    ) -> Result<MentionPage, DatabaseError> {
        self.call(
            "mention_list",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &before,
                &limit,
            ],
        )
        .await
    }

    /// Pins (`pin`) or unpins a message.
    pub async fn message_pin(
        &self,
        caller: &Caller,
        room_id: Uuid,
        message_id: Uuid,
        pin: bool,
    ) -> Result<Message, DatabaseError> {
        self.call(
            "message_pin",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &message_id,
                &pin,
            ],
        )
        .await
    }

    /// The pinned messages of a room.
    pub async fn pin_list(&self, caller: &Caller, room_id: Uuid) -> Result<PinList, DatabaseError> {
        self.call(
            "pin_list",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
            ],
        )
        .await
    }

    /// Searches the messages the caller may read, within `HARK_SEARCH_TIMEOUT_MS`.
    pub async fn message_search(
        &self,
        caller: &Caller,
        query: &SearchQuery,
    ) -> Result<SearchPage, DatabaseError> {
        let kind = query.kind.map(MessageKind::as_str);
        self.with_statement_timeout(self.search_timeout)
            .call(
                "message_search",
                &[
                    &caller.tenant_id,
                    &caller.user_id,
                    &caller.session_id,
                    &query.text,
                    &query.room_id,
                    &query.sender_id,
                    &query.after,
                    &query.before,
                    &query.has_attachment,
                    &kind,
                    &query.cursor,
                    &query.limit,
                ],
            )
            .await
    }
}
