//! Real-time delivery: every event of a room reaches every subscriber on every
//! instance, in order, once.
//!
//! The pieces: a trigger NOTIFYs the room's channel (`sql/functions/0006_realtime.sql`);
//! the instance's one [`listener`] connection LISTENs on the channels of rooms with
//! local subscribers; the dispatcher task turns notifications into event frames,
//! serialised once, and pushes them into each subscriber's bounded queue; each
//! subscriber hands them out through a [`cursor::RoomCursor`], which drops what was
//! already sent and reads from the log whatever is missing. NOTIFY is only a wake-up:
//! the log is the one copy, read for big events, gaps and reconnections.

pub mod cursor;
pub mod listener;
pub mod presence;
pub mod protocol;
pub mod socket;
pub mod sse;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use poem::http::StatusCode;
use tokio::sync::{Notify, mpsc, mpsc::error::TrySendError, oneshot};
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::{Database, RoomEvent, UserRef};
use crate::error::ApiError;
use crate::metrics::METRICS;
use crate::realtime::cursor::RoomCursor;
use crate::realtime::listener::{
    Command, ListenerHandle, Notice, PRESENCE_CHANNEL, REVOCATION_CHANNEL,
};
use crate::realtime::presence::{Presence, Signal};
use crate::realtime::protocol::EventFrame;

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
    /// How long a subscribe waits for the LISTEN to be active.
    pub listen_timeout: Duration,
    /// Rooms one WebSocket may be subscribed to at once.
    pub max_subscriptions: usize,
}

/// What a subscriber's writer receives, in order.
#[derive(Debug)]
pub enum Outbound {
    /// A frame to send as it is (ack, error, pong, typing, presence).
    Frame(Arc<str>),
    /// A room event from the fan-out.
    Event(Arc<EventFrame>),
    /// A subscription is being set up: hold this room's events until `Subscribed`.
    Pending(Uuid),
    /// The subscription is acknowledged.
    Subscribed(Box<Subscribed>),
    /// The room's events stop.
    Unsubscribed(Uuid),
    /// Close the connection after the frames queued before this one.
    Close(u16, String),
    /// The subscriber left the room or was removed: its events stop here.
    Revoked(Uuid),
}

/// A subscription just acknowledged: send `ack`, hand out events after the cursor's
/// position up to `catch_up_to` from the log, then the held and live ones. (Boxed in
/// [`Outbound`] to keep every queue slot small.)
#[derive(Debug)]
pub struct Subscribed {
    /// Where the subscriber is.
    pub cursor: RoomCursor,
    /// The ack frame.
    pub ack: String,
    /// The room's seq at the ack.
    pub catch_up_to: i64,
}

/// How to stop a connection from elsewhere (the fan-out, shutdown).
#[derive(Debug, Default)]
pub struct Control {
    /// The close code and reason, once decided.
    close: Mutex<Option<(u16, String)>>,
    /// Wakes the writer.
    notify: Notify,
}

impl Control {
    /// Asks the connection to close with a code; the first request wins. Everyone
    /// waiting in `closed` wakes up (the reader and the writer both do).
    pub fn close(&self, code: u16, reason: &str) {
        let mut close = self.close.lock().unwrap_or_else(PoisonError::into_inner);
        if close.is_none() {
            *close = Some((code, reason.to_owned()));
        }
        drop(close);
        self.notify.notify_waiters();
    }

    /// The close requested, if any.
    pub fn requested(&self) -> Option<(u16, String)> {
        self.close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits for a close request.
    pub async fn closed(&self) -> (u16, String) {
        loop {
            // Registered before the check, so that a request in between is not missed.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(close) = self.requested() {
                return close;
            }
            notified.await;
        }
    }
}

/// A local subscriber: where its frames go, and how to stop it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The subscribed user: a `member.left` event about them ends the subscription.
    pub user_id: Uuid,
    /// Its bounded queue.
    pub queue: mpsc::Sender<Outbound>,
    /// Its control.
    pub control: Arc<Control>,
}

/// A room with local subscribers.
struct RoomEntry {
    /// The room's tenant, for reading its log.
    tenant_id: Uuid,
    /// The seq of the newest event fanned out here; `None` before the first.
    delivered_seq: Option<i64>,
    /// Subscribers by id.
    subscribers: HashMap<u64, Subscriber>,
}

/// The instance's real-time state: rooms with local subscribers, the listener, and
/// presence.
#[derive(Clone)]
pub struct Hub {
    /// Shared by the dispatcher, the presence tasks and every connection.
    inner: Arc<HubInner>,
}

struct HubInner {
    /// For reading rooms' logs and publishing presence.
    db: Database,
    /// How delivery behaves.
    settings: RealtimeSettings,
    /// Rooms with local subscribers.
    rooms: Mutex<HashMap<Uuid, RoomEntry>>,
    /// The LISTEN connection's task.
    listener: ListenerHandle,
    /// Open WebSockets and event streams: closed with 1012 at shutdown, and with 4001
    /// when their session, user or tenant is revoked on any instance.
    connections: Mutex<HashMap<u64, Stream>>,
    /// The next connection or subscriber id.
    next_id: AtomicU64,
    /// Who is where.
    presence: Presence,
}

/// One open WebSocket or event stream, as the hub knows it.
struct Stream {
    /// How to close it.
    control: Arc<Control>,
    /// Whose it is, once authenticated: the tenant, user and session a revocation
    /// is matched against.
    owner: Option<Caller>,
}

/// A revocation announced by `hark_api.announce_revocation` on the revocation
/// channel: a session, every session of a user, or a whole tenant.
#[derive(Debug, serde::Deserialize)]
struct Revocation {
    /// The tenant.
    tenant_id: Uuid,
    /// The user, unless the whole tenant is revoked.
    user_id: Option<Uuid>,
    /// The session, unless every session of the user (or tenant) is.
    session_id: Option<Uuid>,
}

impl Revocation {
    fn covers(&self, owner: &Caller) -> bool {
        owner.tenant_id == self.tenant_id
            && self.user_id.is_none_or(|user_id| user_id == owner.user_id)
            && self
                .session_id
                .is_none_or(|session_id| session_id == owner.session_id)
    }
}

/// A stream's place in the hub's registry; dropping it forgets the stream.
pub struct Registration {
    /// The hub.
    hub: Hub,
    /// The stream's id.
    id: u64,
}

impl Registration {
    /// Records whose stream it is, once authenticated, so that revoking that session
    /// (or user, or tenant) anywhere closes it.
    pub fn identify(&self, owner: &Caller) {
        if let Some(stream) = self
            .hub
            .inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&self.id)
        {
            stream.owner = Some(owner.clone());
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub
            .inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// The channel of a room, as `hark_api.room_channel` names it.
pub fn room_channel(room_id: Uuid) -> String {
    format!("hark_room_{}", room_id.simple())
}

impl Hub {
    /// Starts the listener, the dispatcher and the presence heartbeat.
    pub fn start(db: Database, settings: RealtimeSettings) -> Self {
        let (notices_tx, notices_rx) = mpsc::unbounded_channel();
        let listener = listener::spawn(
            settings.listen_url.clone(),
            settings.ca_file.clone(),
            notices_tx,
        );
        let inner = Arc::new(HubInner {
            db,
            presence: Presence::new(settings.presence_heartbeat),
            settings,
            rooms: Mutex::new(HashMap::new()),
            listener,
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(dispatch(Arc::downgrade(&inner), notices_rx));
        tokio::spawn(heartbeat(Arc::downgrade(&inner)));
        Self { inner }
    }

    /// The settings.
    pub fn settings(&self) -> &RealtimeSettings {
        &self.inner.settings
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    /// Whether the LISTEN connection is up.
    pub fn is_ready(&self) -> bool {
        *self.inner.listener.up.borrow()
    }

    /// A new id for a connection or subscriber.
    pub fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a WebSocket or event stream (with its owner when already known), so
    /// that shutdown and revocations reach it, until the registration is dropped.
    pub fn register(&self, control: Arc<Control>, owner: Option<&Caller>) -> Registration {
        let id = self.next_id();
        self.inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                Stream {
                    control,
                    owner: owner.cloned(),
                },
            );
        Registration {
            hub: self.clone(),
            id,
        }
    }

    /// Tells every connection to close with 1012 (server restarting).
    pub fn shutdown(&self) {
        let connections = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for stream in connections.values() {
            stream
                .control
                .close(CLOSE_RESTARTING, "server restarting; reconnect");
        }
    }

    /// Adds a subscriber to a room and returns once the instance LISTENs on it, so
    /// that every event committed from then on reaches the subscriber.
    pub async fn subscribe(
        &self,
        id: u64,
        subscriber: Subscriber,
        tenant_id: Uuid,
        room_id: Uuid,
        user: &UserRef,
    ) -> Result<(), ApiError> {
        {
            let mut rooms = self
                .inner
                .rooms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            rooms
                .entry(room_id)
                .or_insert_with(|| RoomEntry {
                    tenant_id,
                    delivered_seq: None,
                    subscribers: HashMap::new(),
                })
                .subscribers
                .insert(id, subscriber);
        }
        // Counted from here: every way out (`unsubscribe`, a revocation) uncounts it.
        METRICS.subscriptions.inc();
        let (done_tx, done_rx) = oneshot::channel();
        let listening = self
            .inner
            .listener
            .commands
            .send(Command::Listen {
                channel: room_channel(room_id),
                done: done_tx,
            })
            .is_ok()
            && matches!(
                tokio::time::timeout(self.inner.settings.listen_timeout, done_rx).await,
                Ok(Ok(()))
            );
        if !listening {
            self.unsubscribe(id, room_id, None);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Real-time delivery is not available right now; retry shortly",
            ));
        }
        if let Some(signal) = self.inner.presence.local_join(room_id, user) {
            self.publish_presence(signal);
        }
        Ok(())
    }

    /// Records that everything up to `seq` is known to subscribers of the room (their
    /// cursors start there), so that the fan-out fills gaps from there on.
    pub fn delivered_at_least(&self, room_id: Uuid, seq: i64) {
        let mut rooms = self
            .inner
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = rooms.get_mut(&room_id) {
            entry.delivered_seq = Some(
                entry
                    .delivered_seq
                    .map_or(seq, |delivered| delivered.max(seq)),
            );
        }
    }

    /// Removes a subscriber; the last one out UNLISTENs.
    pub fn unsubscribe(&self, id: u64, room_id: Uuid, user_id: Option<Uuid>) {
        let mut rooms = self
            .inner
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = rooms.get_mut(&room_id) else {
            return;
        };
        if entry.subscribers.remove(&id).is_none() {
            return;
        }
        METRICS.subscriptions.dec();
        if entry.subscribers.is_empty() {
            rooms.remove(&room_id);
            drop(self.inner.listener.commands.send(Command::Unlisten {
                channel: room_channel(room_id),
            }));
        }
        drop(rooms);
        if let Some(user_id) = user_id
            && let Some(signal) = self.inner.presence.local_leave(room_id, user_id)
        {
            self.publish_presence(signal);
        }
    }

    /// The users present in a room, across instances.
    pub fn online(&self, room_id: Uuid) -> Vec<Uuid> {
        self.inner.presence.online(room_id)
    }

    fn publish_presence(&self, signal: Signal) {
        publish(self.inner.db.clone(), signal);
    }
}

fn publish(db: Database, signal: Signal) {
    let Ok(payload) = serde_json::to_string(&signal) else {
        return;
    };
    tokio::spawn(async move {
        if let Err(error) = db.presence_publish(&payload).await {
            tracing::warn!(%error, "could not publish a presence signal");
        }
    });
}

/// Closes every local stream the revocation covers with 4001: their subscriptions end
/// with them, and their users leave presence at once.
fn revoke(inner: &HubInner, revocation: &Revocation) {
    let connections = inner
        .connections
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for stream in connections.values() {
        if stream
            .owner
            .as_ref()
            .is_some_and(|owner| revocation.covers(owner))
        {
            stream
                .control
                .close(CLOSE_UNAUTHORIZED, "session revoked; log in again");
        }
    }
}

/// Pushes a frame to every local subscriber of a room; a full queue closes its
/// subscriber with 4009 instead of waiting or growing.
fn fan_out(entry: &RoomEntry, outbound: impl Fn() -> Outbound) {
    for subscriber in entry.subscribers.values() {
        if let Err(TrySendError::Full(_)) = subscriber.queue.try_send(outbound()) {
            subscriber
                .control
                .close(CLOSE_TOO_SLOW, "too slow to keep up; reconnect and resume");
        }
    }
}

/// A room channel's notification, as `hark_api.publish_events` and
/// `hark_api.publish_signal` write it: the kind says which.
#[derive(serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum RoomNotification {
    /// Events just appended to the room's log, in seq order.
    Events {
        /// The room's tenant.
        tenant_id: Uuid,
        /// The room.
        room_id: Uuid,
        /// The events.
        events: Vec<RoomEvent>,
        /// The W3C trace context of the write, when it was traced.
        traceparent: Option<String>,
    },
    /// Events too big for the payload: read the log up to `seq`.
    Wake {
        /// The room's tenant.
        tenant_id: Uuid,
        /// The room.
        room_id: Uuid,
        /// The newest seq written.
        seq: i64,
        /// The W3C trace context of the write, when it was traced.
        traceparent: Option<String>,
    },
    /// A member is typing.
    Typing {
        /// The room.
        room_id: Uuid,
        /// Who is typing.
        user: serde_json::Value,
    },
    /// A member's read marker moved.
    Read {
        /// The room.
        room_id: Uuid,
        /// Who read.
        user: serde_json::Value,
        /// Up to which seq.
        seq: i64,
    },
}

impl RoomNotification {
    fn traceparent(&self) -> Option<&str> {
        match self {
            Self::Events { traceparent, .. } | Self::Wake { traceparent, .. } => {
                traceparent.as_deref()
            }
            Self::Typing { .. } | Self::Read { .. } => None,
        }
    }
}

/// The dispatcher: turns notifications into fan-out, in order per room.
async fn dispatch(hub: std::sync::Weak<HubInner>, mut notices: mpsc::UnboundedReceiver<Notice>) {
    while let Some(notice) = notices.recv().await {
        let Some(inner) = hub.upgrade() else {
            return;
        };
        match notice {
            Notice::Reconnected => {
                let rooms: Vec<(Uuid, Uuid, Option<i64>)> = inner
                    .rooms
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .map(|(room_id, entry)| (*room_id, entry.tenant_id, entry.delivered_seq))
                    .collect();
                for (room_id, tenant_id, delivered) in rooms {
                    if let Some(delivered) = delivered {
                        deliver_from_log(&inner, tenant_id, room_id, delivered, None).await;
                    }
                }
            }
            Notice::Notification { channel, payload } if channel == REVOCATION_CHANNEL => {
                match serde_json::from_str::<Revocation>(&payload) {
                    Ok(revocation) => revoke(&inner, &revocation),
                    Err(error) => tracing::warn!(%error, "unreadable revocation"),
                }
            }
            Notice::Notification { channel, payload } if channel == PRESENCE_CHANNEL => {
                match serde_json::from_str::<Signal>(&payload) {
                    Ok(signal) => {
                        let changes = inner.presence.apply(signal);
                        announce_presence(&inner, changes);
                    }
                    Err(error) => tracing::warn!(%error, "unreadable presence signal"),
                }
            }
            Notice::Notification { channel, payload } => {
                let notification = match serde_json::from_str::<RoomNotification>(&payload) {
                    Ok(notification) => notification,
                    Err(error) => {
                        tracing::warn!(%error, "unreadable room notification");
                        continue;
                    }
                };
                let span = tracing::debug_span!(
                    "notification",
                    otel.name = %format_args!("receive {channel}"),
                    otel.kind = "consumer",
                    messaging.system = "postgresql",
                    messaging.operation.type = "receive",
                    messaging.destination.name = %channel,
                );
                if let Some(traceparent) = notification.traceparent() {
                    crate::telemetry::parent_from_traceparent(&span, traceparent);
                }
                receive_room_notification(&inner, notification)
                    .instrument(span)
                    .await;
            }
        }
    }
}

/// Delivers what one room notification says: a typing signal, a read marker, events,
/// or where to read them in the log.
async fn receive_room_notification(inner: &HubInner, notification: RoomNotification) {
    match notification {
        RoomNotification::Typing { room_id, user } => {
            let frame: Arc<str> =
                protocol::typing(room_id, &user, inner.settings.typing_ttl.as_millis() as u64)
                    .into();
            let rooms = inner.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = rooms.get(&room_id) {
                fan_out(entry, || Outbound::Frame(frame.clone()));
            }
        }
        RoomNotification::Read { room_id, user, seq } => {
            let frame: Arc<str> = protocol::read(room_id, &user, seq).into();
            let rooms = inner.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = rooms.get(&room_id) {
                fan_out(entry, || Outbound::Frame(frame.clone()));
            }
        }
        RoomNotification::Events {
            tenant_id,
            room_id,
            events,
            ..
        } => {
            if current_delivered(inner, room_id).is_none() {
                return;
            }
            for event in events {
                deliver_event(inner, tenant_id, event).await;
            }
        }
        RoomNotification::Wake {
            tenant_id,
            room_id,
            seq,
            ..
        } => {
            // A room nobody here subscribes to any more (the notification was in
            // flight at UNLISTEN) is skipped.
            if let Some(delivered) = current_delivered(inner, room_id) {
                let delivered = delivered.unwrap_or(seq - 1);
                deliver_from_log(inner, tenant_id, room_id, delivered, Some(seq)).await;
            }
        }
    }
}

/// The room's delivered seq: `None` when nobody here subscribes to it.
fn current_delivered(inner: &HubInner, room_id: Uuid) -> Option<Option<i64>> {
    inner
        .rooms
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&room_id)
        .map(|entry| entry.delivered_seq)
}

/// Fans out one event, reading the log first when events are missing before it.
async fn deliver_event(inner: &HubInner, tenant_id: Uuid, event: RoomEvent) {
    let room_id = event.room_id;
    let Some(delivered) = current_delivered(inner, room_id) else {
        return;
    };
    match delivered {
        Some(delivered) if event.seq <= delivered => {}
        Some(delivered) if event.seq > delivered + 1 => {
            deliver_from_log(inner, tenant_id, room_id, delivered, Some(event.seq)).await;
        }
        _ => fan_out_frames(inner, room_id, vec![EventFrame::new(event)]),
    }
}

/// Reads a room's events after `after` (up to `upto`) from the log and fans them out.
async fn deliver_from_log(
    inner: &HubInner,
    tenant_id: Uuid,
    room_id: Uuid,
    after: i64,
    upto: Option<i64>,
) {
    let mut after = after;
    // A stretch longer than the replay window is left to the subscribers' cursors,
    // which tell their clients to reset.
    if let Some(upto) = upto {
        after = after.max(upto - inner.settings.replay_window);
    }
    loop {
        let stretch = match inner
            .db
            .room_events_after(tenant_id, room_id, after, upto, 500)
            .await
        {
            Ok(stretch) => stretch,
            Err(error) => {
                tracing::warn!(%error, %room_id, "could not read the log; subscribers will catch up on the next event");
                return;
            }
        };
        let Some(last) = stretch.items.last().map(|event| event.seq) else {
            return;
        };
        let frames = stretch.items.into_iter().map(EventFrame::new).collect();
        fan_out_frames(inner, room_id, frames);
        after = last;
        if upto.is_some_and(|upto| after >= upto)
            || stretch.last_seq.is_some_and(|newest| after >= newest)
        {
            return;
        }
    }
}

fn fan_out_frames(inner: &HubInner, room_id: Uuid, frames: Vec<Arc<EventFrame>>) {
    let span = tracing::debug_span!(
        "fan-out",
        otel.name = "fan-out",
        room_id = %room_id,
        events = frames.len() as i64,
        subscribers = tracing::field::Empty,
    );
    let _entered = span.enter();
    let mut rooms = inner.rooms.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(entry) = rooms.get_mut(&room_id) else {
        return;
    };
    span.record("subscribers", entry.subscribers.len() as i64);
    let mut departed = Vec::new();
    for frame in frames {
        if entry
            .delivered_seq
            .is_some_and(|delivered| frame.seq <= delivered)
        {
            continue;
        }
        entry.delivered_seq = Some(frame.seq);
        METRICS.events_received.inc();
        let lag = chrono::Utc::now() - frame.event.at;
        METRICS
            .delivery_lag
            .observe(lag.to_std().unwrap_or_default().as_secs_f64());
        fan_out(entry, || Outbound::Event(frame.clone()));
        METRICS
            .events_delivered
            .inc_by(entry.subscribers.len() as u64);
        if let Some(user_id) = departed_member(&frame) {
            // A member who left or was removed stops receiving the room right after
            // the event that says so.
            entry.subscribers.retain(|_, subscriber| {
                let stays = subscriber.user_id != user_id;
                if !stays {
                    drop(subscriber.queue.try_send(Outbound::Revoked(room_id)));
                    METRICS.subscriptions.dec();
                }
                stays
            });
            departed.push(user_id);
        }
    }
    if entry.subscribers.is_empty() {
        rooms.remove(&room_id);
        drop(inner.listener.commands.send(Command::Unlisten {
            channel: room_channel(room_id),
        }));
    }
    drop(rooms);
    for user_id in departed {
        if let Some(signal) = inner.presence.local_leave_all(room_id, user_id) {
            publish(inner.db.clone(), signal);
        }
    }
}

/// The user a `member.left` event is about.
fn departed_member(frame: &EventFrame) -> Option<Uuid> {
    if frame.event.event_type != crate::db::EventType::MemberLeft {
        return None;
    }
    frame
        .event
        .data
        .get("user")?
        .get("id")?
        .as_str()?
        .parse()
        .ok()
}

fn announce_presence(inner: &HubInner, changes: Vec<presence::Change>) {
    if changes.is_empty() {
        return;
    }
    let rooms = inner.rooms.lock().unwrap_or_else(PoisonError::into_inner);
    for change in changes {
        if let Some(entry) = rooms.get(&change.room_id) {
            let frame: Arc<str> =
                protocol::presence(change.room_id, &change.user, change.online).into();
            fan_out(entry, || Outbound::Frame(frame.clone()));
        }
    }
}

/// Publishes this instance's presence every period and expires what others stopped
/// confirming.
async fn heartbeat(hub: std::sync::Weak<HubInner>) {
    let period = match hub.upgrade() {
        Some(inner) => inner.settings.presence_heartbeat,
        None => return,
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = hub.upgrade() else {
            return;
        };
        for signal in inner.presence.heartbeats() {
            publish(inner.db.clone(), signal);
        }
        let changes = inner.presence.expire();
        announce_presence(&inner, changes);
    }
}
