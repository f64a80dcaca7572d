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

/// `{"op":"ack","ref":…,"result":…}`.
pub fn ack(reference: Option<&str>, result: &impl Serialize) -> String {
    serde_json::json!({"op": "ack", "ref": reference, "result": result}).to_string()
}

/// `{"op":"error","ref":…,"code":…,"message":…}`, with `field` for input errors.
pub fn error(reference: Option<&str>, error: &ApiError) -> String {
    let mut frame = serde_json::json!({
        "op": "error",
        "ref": reference,
        "code": error.code,
        "message": error.message,
    });
    if let Some(field) = &error.field {
        frame["field"] = serde_json::Value::from(field.as_str());
    }
    frame.to_string()
}

/// `{"op":"pong","ref":…}`.
pub fn pong(reference: Option<&str>) -> String {
    serde_json::json!({"op": "pong", "ref": reference}).to_string()
}

/// `{"op":"reset","room_id":…,"seq":…}`: the client is further behind than the replay
/// window; it reloads history over REST and continues after `seq`.
pub fn reset(room_id: Uuid, seq: i64) -> String {
    serde_json::json!({"op": "reset", "room_id": room_id, "seq": seq}).to_string()
}

/// `{"op":"typing","room_id":…,"user":…,"expires_in_ms":…}`.
pub fn typing(room_id: Uuid, user: &serde_json::Value, expires_in_ms: u64) -> String {
    serde_json::json!({"op": "typing", "room_id": room_id, "user": user, "expires_in_ms": expires_in_ms})
        .to_string()
}

/// `{"op":"read","room_id":…,"user":…,"seq":…}`: a member's read marker moved.
pub fn read(room_id: Uuid, user: &serde_json::Value, seq: i64) -> String {
    serde_json::json!({"op": "read", "room_id": room_id, "user": user, "seq": seq}).to_string()
}

/// `{"op":"presence","room_id":…,"user":…,"status":"online"|"offline"}`.
pub fn presence(room_id: Uuid, user: &UserRef, online: bool) -> String {
    serde_json::json!({
        "op": "presence",
        "room_id": room_id,
        "user": {"id": user.id, "username": user.username, "display_name": user.display_name, "avatar_url": user.avatar_url},
        "status": if online { "online" } else { "offline" },
    })
    .to_string()
}
