//! The WebSocket protocol's frames: what clients send, and how the server's frames
//! are written. Event frames are serialised once per instance ([`EventFrame`]) and
//! shared by every local subscriber.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::{Attachment, MessageKind, RoomEvent, UserRef};
use crate::error::ApiError;

/// A frame from a client. Every frame may carry a `ref`, which the answer echoes.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Authenticate, when the upgrade request carried no token.
    Auth {
        /// Echoed by the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// An access token.
        token: String,
    },
    /// Receive a room's events: those after `since` first, then live ones.
    Subscribe {
        /// Echoed by the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// The room.
        room_id: Uuid,
        /// The last seq the client has; absent for live events only.
        since: Option<i64>,
    },
    /// Stop receiving a room's events.
    Unsubscribe {
        /// Echoed by the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// The room.
        room_id: Uuid,
    },
    /// Send a message.
    Send {
        /// Echoed by the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// The room.
        room_id: Uuid,
        /// `text` by default.
        kind: Option<MessageKind>,
        /// The text.
        body: Option<String>,
        /// File metadata.
        attachment: Option<Attachment>,
        /// The message answered.
        reply_to_id: Option<Uuid>,
        /// The idempotency key.
        client_id: Option<String>,
        /// The thread replied in.
        parent_id: Option<Uuid>,
        /// A reply shown in the room's main timeline too.
        show_in_room: Option<bool>,
        /// The users mentioned.
        mentions: Option<Vec<Uuid>>,
        /// Whether everyone in the room is mentioned.
        mention_room: Option<bool>,
    },
    /// Edit one's message.
    Edit {
        /// Echoed by the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// The room.
        room_id: Uuid,
        /// The message.
        message_id: Uuid,
        /// The new text.
        body: String,
        /// The users mentioned now; absent keeps them.
        mentions: Option<Vec<Uuid>>,
        /// Whether everyone in the room is mentioned now; absent keeps that.
        mention_room: Option<bool>,
    },
    /// Delete a message.
    Delete {
        /// Echoed by the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// The room.
        room_id: Uuid,
        /// The message.
        message_id: Uuid,
    },
    /// Add (or with `remove: true`, take back) a reaction.
    React {
        /// Echoed by the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// The room.
        room_id: Uuid,
        /// The message.
        message_id: Uuid,
        /// The emoji.
        emoji: String,
        /// Take the reaction back instead.
        #[serde(default)]
        remove: bool,
    },
    /// Mark a room read up to a seq.
    Read {
        /// Echoed by the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// The room.
        room_id: Uuid,
        /// The seq.
        seq: i64,
    },
    /// Tell the room the client is typing.
    Typing {
        /// Echoed by the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// The room.
        room_id: Uuid,
    },
    /// Check the connection.
    Ping {
        /// Echoed by the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
}

/// The ops a client may send, for the `unknown_op` error.
pub const CLIENT_OPS: &[&str] = &[
    "auth",
    "subscribe",
    "unsubscribe",
    "send",
    "edit",
    "delete",
    "react",
    "read",
    "typing",
    "ping",
];

/// A room event, serialised once as the WebSocket frame
/// `{"op":"event","room_id",…,"seq",…,"type",…,"at",…,"data",…}`.
#[derive(Debug)]
pub struct EventFrame {
    /// The room.
    pub room_id: Uuid,
    /// The event's seq.
    pub seq: i64,
    /// The event.
    pub event: RoomEvent,
    /// The frame's text, shared by every subscriber.
    pub text: Arc<str>,
}

#[derive(Serialize)]
struct EventFrameBody<'a> {
    op: &'static str,
    #[serde(flatten)]
    event: &'a RoomEvent,
}

impl EventFrame {
    /// Serialises an event's frame.
    pub fn new(event: RoomEvent) -> Arc<Self> {
        let text = serde_json::to_string(&EventFrameBody {
            op: "event",
            event: &event,
        })
        .unwrap_or_default();
        Arc::new(Self {
            room_id: event.room_id,
            seq: event.seq,
            event,
            text: text.into(),
        })
    }
}

/// Close code: the server is restarting; reconnect (elsewhere).
pub const CLOSE_RESTARTING: u16 = 1012;
/// Close code: the token is missing, invalid, expired or revoked.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code: forbidden.
pub const CLOSE_FORBIDDEN: u16 = 4003;
/// Close code: rate limit exceeded.
pub const CLOSE_RATE_LIMITED: u16 = 4008;
/// Close code: too slow to keep up; reconnect and resume.
pub const CLOSE_TOO_SLOW: u16 = 4009;
/// Close code: malformed frames.
pub const CLOSE_MALFORMED: u16 = 4400;

/// Every frame the server writes, but events (serialised once per instance as an
/// [`EventFrame`]): one type, so that the AsyncAPI document can be held to its
/// variants ([`SERVER_OPS`]). Each serialises as a JSON object whose `op` names it.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// The answer to an op that succeeded: `{"op":"ack","ref":…,"result":…}`.
    Ack {
        /// The op's `ref`, echoed.
        #[serde(rename = "ref")]
        reference: Option<&'a str>,
        /// What the op answers.
        result: serde_json::Value,
    },
    /// The answer to an op that failed, with `field` for input errors.
    Error {
        /// The op's `ref`, echoed.
        #[serde(rename = "ref")]
        reference: Option<&'a str>,
        /// The stable error code.
        code: &'a str,
        /// A sentence for people.
        message: &'a str,
        /// The input field at fault.
        #[serde(skip_serializing_if = "Option::is_none")]
        field: Option<&'a str>,
    },
    /// The answer to `ping`.
    Pong {
        /// The ping's `ref`, echoed.
        #[serde(rename = "ref")]
        reference: Option<&'a str>,
    },
    /// The client is further behind than the replay window: it reloads history over
    /// REST and continues after `seq`.
    Reset {
        /// The room.
        room_id: Uuid,
        /// The seq to continue after.
        seq: i64,
    },
    /// A member is typing, for `expires_in_ms`.
    Typing {
        /// The room.
        room_id: Uuid,
        /// Who.
        user: &'a serde_json::Value,
        /// How long the signal lasts on clients.
        expires_in_ms: u64,
    },
    /// A member's read marker moved.
    Read {
        /// The room.
        room_id: Uuid,
        /// Who.
        user: &'a serde_json::Value,
        /// Up to which seq.
        seq: i64,
    },
    /// A member came online in the room or went offline.
    Presence {
        /// The room.
        room_id: Uuid,
        /// Who.
        user: &'a UserRef,
        /// `online` or `offline`.
        status: &'static str,
    },
    /// The subscription ended from the server's side (the member left or was removed).
    Unsubscribed {
        /// The room.
        room_id: Uuid,
        /// Why: `not_a_member`.
        reason: &'static str,
    },
}

/// The ops of the server's frames: those of [`ServerFrame`] and `event`.
pub const SERVER_OPS: &[&str] = &[
    "ack",
    "error",
    "pong",
    "reset",
    "typing",
    "read",
    "presence",
    "unsubscribed",
    "event",
];

impl ServerFrame<'_> {
    /// The frame's `op`.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Ack { .. } => "ack",
            Self::Error { .. } => "error",
            Self::Pong { .. } => "pong",
            Self::Reset { .. } => "reset",
            Self::Typing { .. } => "typing",
            Self::Read { .. } => "read",
            Self::Presence { .. } => "presence",
            Self::Unsubscribed { .. } => "unsubscribed",
        }
    }

    /// The frame's text.
    pub fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `{"op":"ack","ref":…,"result":…}`.
pub fn ack(reference: Option<&str>, result: &impl Serialize) -> String {
    ServerFrame::Ack {
        reference,
        result: serde_json::to_value(result).unwrap_or_default(),
    }
    .text()
}

/// `{"op":"error","ref":…,"code":…,"message":…}`, with `field` for input errors.
pub fn error(reference: Option<&str>, error: &ApiError) -> String {
    ServerFrame::Error {
        reference,
        code: &error.code,
        message: &error.message,
        field: error.field.as_deref(),
    }
    .text()
}
