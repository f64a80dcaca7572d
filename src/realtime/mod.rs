//! Real-time delivery: every event of a room reaches every subscriber on every
//! instance, in order, once.
//!
//! The way of an event: a writer's SQL function appends it to the room's log and
//! NOTIFYs the room's channel in the same transaction (`hark_api.append_events`). On
//! every instance, the [`broker`] (the one LISTEN connection; on a Citus cluster one
//! per node, [`cluster`]) decodes the notification; the [`node`]'s dispatcher hands it to the [`hub`], which serialises
//! each event once and pushes it into the bounded queue of every local subscriber of
//! the room, reading the log in a task of that room alone when something is missing.
//! Each subscriber hands events out through its [`cursor::RoomCursor`], which drops
//! what was already sent and reads from the log whatever is missing: NOTIFY is only a
//! wake-up, the log is the one copy. A [`subscription::Subscription`] is set up in one
//! place for WebSockets ([`socket`]) and event streams ([`sse`]) alike, and ends when
//! dropped; the [`registry`] holds the open streams that shutdown and revocations
//! reach; [`presence`] tracks who is where.

pub mod broker;
pub mod cluster;
pub mod cursor;
pub mod hub;
pub mod log;
pub mod node;
pub mod presence;
pub mod protocol;
pub mod registry;
pub mod socket;
pub mod sse;
pub mod subscription;
pub mod tenant_users;

use std::time::Duration;

use uuid::Uuid;

pub use node::Node;

/// How real-time delivery behaves.
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    /// The URL of the LISTEN connection (a session, not a transaction pooler).
    pub listen_url: String,
    /// Root certificates for TLS to Postgres, when not in the URL.
    pub ca_file: Option<String>,
    /// How many events a resuming client may be behind before it is told to reset.
    pub replay_window: i64,
    /// Frames queued per subscriber before it is closed as too slow.
    pub send_queue: usize,
    /// The largest client frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// How often idle connections are pinged; silent for three periods, they are dropped.
    pub ping_interval: Duration,
    /// How often a connection's token is checked again for revocation.
    pub token_recheck: Duration,
    /// How long a typing signal lasts on clients.
    pub typing_ttl: Duration,
    /// How often presence heartbeats go out.
    pub presence_heartbeat: Duration,
    /// How long a user's leave waits before it is announced (a new subscription
    /// meanwhile cancels it).
    pub presence_debounce: Duration,
    /// How long a subscribe waits for the LISTEN to be active.
    pub listen_timeout: Duration,
    /// Rooms one WebSocket may be subscribed to at once.
    pub max_subscriptions: usize,
}

/// The channel of a room, as `hark_api.room_channel` names it.
pub fn room_channel(room_id: Uuid) -> String {
    format!("hark_room_{}", room_id.simple())
}
