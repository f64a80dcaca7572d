//! The node: one instance's real-time wiring. It starts the broker (how events
//! arrive), the hub (who is subscribed, and the fan-out) and presence, keeps the
//! registry of open streams, and runs the dispatcher, which hands each decoded
//! notification to the hub without ever waiting for the database (reads of the log
//! run in the hub's per-room tasks), and wakes the webhook worker when deliveries
//! were queued. It also keeps the database told who is connected here
//! (`sync_connections`), for webhooks to users who are not.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::{Database, DatabaseError, UserRef};
use crate::realtime::{
    RealtimeSettings,
    broker::{self, BrokerHandle, Command, Notice, RoomNotification},
    cluster,
    hub::{Departures, Hub},
    presence::{Change, Presence, Signal},
    protocol::ServerFrame,
    registry::{Control, Registration, Registry},
    room_channel,
    tenant_users::TenantUsers,
};

/// The instance's real-time node.
#[derive(Clone)]
pub struct Node {
    /// Shared by the dispatcher, the presence heartbeat and every connection.
    inner: Arc<Inner>,
}

struct Inner {
    /// For the checks subscriptions make and for publishing presence.
    db: Database,
    /// How delivery behaves.
    settings: RealtimeSettings,
    /// Rooms with local subscribers.
    hub: Hub,
    /// The LISTEN connection's task.
    broker: BrokerHandle,
    /// Open WebSockets and event streams.
    registry: Arc<Registry>,
    /// The next subscriber id.
    next_id: AtomicU64,
    /// Who is where.
    presence: Presence,
    /// Whose feeds are open here, for presence changes in feeds.
    feeds: TenantUsers,
    /// Who has a subscription here, which the connection sync writes to the
    /// database (`hark.user_connections`).
    connected: TenantUsers,
    /// Wakes the connection sync when `connected` changed or a stream was admitted
    /// (the registry wakes it when one ends).
    connections_changed: Notify,
    /// Users who came or went here since the last connection sync, which records
    /// them as seen (a visit shorter than the sync's pause included).
    seen: Mutex<HashSet<(Uuid, Uuid)>>,
    /// Wakes the webhook delivery worker when deliveries were queued, and after the
    /// LISTEN connection came back (wake-ups may have been missed meanwhile).
    webhooks: Arc<Notify>,
}

impl Node {
    /// Starts the broker, the dispatcher and the presence heartbeat.
    pub fn start(db: Database, settings: RealtimeSettings, webhooks: Arc<Notify>) -> Self {
        let (notices_tx, notices_rx) = mpsc::unbounded_channel();
        let (departures_tx, departures_rx) = mpsc::unbounded_channel();
        let broker = if db.is_citus() {
            cluster::spawn(
                settings.listen_url.clone(),
                settings.ca_file.clone(),
                notices_tx,
            )
        } else {
            broker::spawn(
                settings.listen_url.clone(),
                settings.ca_file.clone(),
                None,
                std::collections::HashSet::new(),
                notices_tx,
            )
        };
        let inner = Arc::new(Inner {
            hub: Hub::new(
                db.clone(),
                settings.replay_window,
                departures_tx,
                broker.commands.clone(),
            ),
            db,
            presence: Presence::new(settings.presence_heartbeat, settings.presence_debounce),
            feeds: TenantUsers::default(),
            connected: TenantUsers::default(),
            connections_changed: Notify::new(),
            seen: Mutex::new(HashSet::new()),
            settings,
            broker,
            registry: Arc::new(Registry::default()),
            next_id: AtomicU64::new(1),
            webhooks,
        });
        tokio::spawn(dispatch(Arc::downgrade(&inner), notices_rx, departures_rx));
        let heartbeat_period = inner.settings.presence_heartbeat;
        tokio::spawn(periodically(
            Arc::downgrade(&inner),
            heartbeat_period,
            heartbeat,
        ));
        tokio::spawn(sync_connections(Arc::downgrade(&inner)));
        // Leaves are checked a few times per debounce, so one is late by a quarter at most.
        let leaves_period = (inner.presence.debounce() / 4).max(Duration::from_millis(20));
        tokio::spawn(periodically(
            Arc::downgrade(&inner),
            leaves_period,
            announce_leaves,
        ));
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

    pub(crate) fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Whether the LISTEN connection is up.
    pub fn is_ready(&self) -> bool {
        *self.inner.broker.up.borrow()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a WebSocket or event stream (with its owner when already known), so
    /// that shutdown and revocations reach it, until the registration is dropped.
    pub fn register(&self, control: Arc<Control>, owner: Option<&Caller>) -> Registration {
        self.inner.registry.register(control, owner)
    }

    /// Admits one more WebSocket or event stream of the caller's tenant, within its
    /// connections quota as the fleet last recorded its connections
    /// (`hark_api.connection_admit`); called before the stream is identified, so that
    /// it does not count itself.
    pub async fn admit(&self, caller: &Caller) -> Result<(), DatabaseError> {
        let here = self.inner.registry.tenant_count(caller.tenant_id);
        self.inner
            .db
            .connection_admit(caller.tenant_id, self.inner.presence.instance_id, here)
            .await?;
        // The other instances learn of it at the next sync, which this one brings on.
        self.inner.connections_changed.notify_one();
        Ok(())
    }

    /// Tells every connection to close with 1012 (server restarting).
    pub fn shutdown(&self) {
        self.inner.registry.shutdown();
    }

    /// The users present in a room, across instances.
    pub fn online(&self, room_id: Uuid) -> Vec<Uuid> {
        self.inner.presence.online(room_id)
    }

    /// The users of a tenant with a subscription (to a room or their feed) on any
    /// instance: presence keeps them under the tenant's id, which names no room, so
    /// that no subscriber receives its presence frames.
    pub fn online_in_tenant(&self, tenant_id: Uuid) -> Vec<Uuid> {
        self.inner.presence.online(tenant_id)
    }

    /// A subscription to the user's own feed began here.
    pub(crate) fn feed_opened(&self, tenant_id: Uuid, user_id: Uuid) {
        self.inner.feeds.opened(tenant_id, user_id);
    }

    /// A subscription to the user's own feed ended here.
    pub(crate) fn feed_closed(&self, tenant_id: Uuid, user_id: Uuid) {
        self.inner.feeds.closed(tenant_id, user_id);
    }

    /// A subscription of the user began here: they join the tenant's presence, and
    /// the database learns they are connected when it is their first here.
    pub(crate) fn joined_tenant(&self, tenant_id: Uuid, user: &UserRef) {
        self.joined(tenant_id, user);
        if self.inner.connected.opened(tenant_id, user.id) {
            self.inner.connection_changed(tenant_id, user.id);
        }
    }

    /// A subscription of the user ended: they leave the tenant's presence here when it
    /// was their last (after the debounce, or at once), and the database learns they
    /// went (which moves their `last_seen_at`).
    pub(crate) fn left_tenant(&self, tenant_id: Uuid, user_id: Uuid, at_once: bool) {
        if let Some(signal) = self.inner.presence.local_leave(tenant_id, user_id, at_once) {
            publish(self.inner.db.clone(), signal);
        }
        if self.inner.connected.closed(tenant_id, user_id) {
            self.inner.connection_changed(tenant_id, user_id);
        }
    }

    /// Asks the broker to LISTEN on the room and waits until it does (or the wait
    /// times out: false).
    pub(crate) async fn listen(&self, room_id: Uuid) -> bool {
        let (done_tx, done_rx) = oneshot::channel();
        self.inner
            .broker
            .commands
            .send(Command::Listen {
                channel: room_channel(room_id),
                done: done_tx,
            })
            .is_ok()
            && matches!(
                tokio::time::timeout(self.inner.settings.listen_timeout, done_rx).await,
                Ok(Ok(()))
            )
    }

    /// The user joined the room's presence here.
    pub(crate) fn joined(&self, room_id: Uuid, user: &UserRef) {
        if let Some(signal) = self.inner.presence.local_join(room_id, user) {
            publish(self.inner.db.clone(), signal);
        }
    }

    /// Ends a subscription (see `Subscription`'s drop).
    pub(crate) fn unsubscribe(&self, id: u64, room_id: Uuid, present: Option<Uuid>, at_once: bool) {
        // A subscription the fan-out already ended (the member left) has left
        // presence with it.
        if self.inner.hub.remove(room_id, id)
            && let Some(user_id) = present
            && let Some(signal) = self.inner.presence.local_leave(room_id, user_id, at_once)
        {
            publish(self.inner.db.clone(), signal);
        }
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

/// The dispatcher: hands each notification to the hub, in the order they arrive.
/// Nothing here waits for the database.
async fn dispatch(
    node: Weak<Inner>,
    mut notices: mpsc::UnboundedReceiver<Notice>,
    mut departures: mpsc::UnboundedReceiver<Departures>,
) {
    loop {
        let notice = tokio::select! {
            notice = notices.recv() => notice,
            Some(left) = departures.recv() => {
                let Some(inner) = node.upgrade() else { return };
                leave(&inner, left);
                continue;
            }
        };
        let Some(notice) = notice else { return };
        let Some(inner) = node.upgrade() else { return };
        match notice {
            Notice::Reconnected => {
                inner.hub.catch_up_all();
                inner.webhooks.notify_one();
            }
            Notice::Webhooks => inner.webhooks.notify_one(),
            Notice::Revocation(revocation) => inner.registry.revoke(&revocation),
            Notice::Presence(signal) => {
                let changes = inner.presence.apply(signal);
                announce_presence(&inner, changes);
            }
            Notice::Room(notification) => {
                let channel = room_channel(notification.room_id());
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
                span.in_scope(|| receive(&inner, notification));
            }
        }
    }
}

/// Delivers one room notification: events, a wake-up to read the log, or a signal.
fn receive(inner: &Inner, notification: RoomNotification) {
    match notification {
        RoomNotification::Events {
            room_id, events, ..
        } => {
            let left = inner.hub.deliver(room_id, events);
            leave(inner, left);
        }
        RoomNotification::Wake { room_id, seq, .. } => inner.hub.wake(room_id, seq),
        RoomNotification::Typing { room_id, user } => {
            let frame = ServerFrame::Typing {
                room_id,
                user: &user,
                expires_in_ms: inner.settings.typing_ttl.as_millis() as u64,
            };
            inner.hub.signal(room_id, &frame.text().into());
        }
        RoomNotification::Read { room_id, user, seq } => {
            let frame = ServerFrame::Read {
                room_id,
                user: &user,
                seq,
            };
            inner.hub.signal(room_id, &frame.text().into());
        }
    }
}

/// Members whose subscriptions a `member.left` event ended leave the room's presence.
fn leave(inner: &Inner, left: Departures) {
    for (room_id, user_id) in left {
        if let Some(signal) = inner.presence.local_leave_all(room_id, user_id) {
            publish(inner.db.clone(), signal);
        }
    }
}

fn announce_presence(inner: &Inner, changes: Vec<Change>) {
    for change in changes {
        let status = if change.online { "online" } else { "offline" };
        let frame = ServerFrame::Presence {
            room_id: change.room_id,
            user: &change.user,
            status,
        };
        inner.hub.signal(change.room_id, &frame.text().into());
        // A change of the tenant's presence (keyed by the tenant's id) reaches the open
        // feeds of the users who share a room with the user.
        let feeds = inner.feeds.in_tenant(change.room_id);
        if !feeds.is_empty() {
            tokio::spawn(announce_in_feeds(
                inner.db.clone(),
                inner.hub.clone(),
                change,
                feeds,
                status,
            ));
        }
    }
}

/// Sends a tenant presence change to the feeds, among `feeds`, of users who share a
/// room with its user. Like every presence frame it is a signal, not in the log.
async fn announce_in_feeds(
    db: Database,
    hub: Hub,
    change: Change,
    feeds: Vec<Uuid>,
    status: &'static str,
) {
    let sharing = match db
        .users_sharing_a_room(change.room_id, change.user.id, &feeds)
        .await
    {
        Ok(sharing) => sharing,
        Err(error) => {
            tracing::warn!(%error, "could not find the feeds a presence change reaches");
            return;
        }
    };
    for feed in sharing {
        let frame = ServerFrame::Presence {
            room_id: feed,
            user: &change.user,
            status,
        };
        hub.signal(feed, &frame.text().into());
    }
}

impl Inner {
    /// The user came or went here: the connection sync records it.
    fn connection_changed(&self, tenant_id: Uuid, user_id: Uuid) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((tenant_id, user_id));
        self.connections_changed.notify_one();
    }
}

/// How long the connection sync waits after a change for others to join it.
const CONNECTIONS_SETTLE: Duration = Duration::from_millis(20);

/// Keeps `hark.user_connections` and `hark.tenant_connections` true for this instance:
/// after each change (a user's first subscription here or their last ending, a stream
/// admitted or ended), and at every presence heartbeat, it writes the whole set of
/// users connected here and the streams of each tenant, so that a write that failed or came
/// late is corrected by the next. Rows of an instance that stops syncing expire after
/// three heartbeats.
async fn sync_connections(node: Weak<Inner>) {
    loop {
        let Some(inner) = node.upgrade() else { return };
        let period = inner.settings.presence_heartbeat;
        let changed = async {
            tokio::select! {
                () = inner.connections_changed.notified() => {}
                () = inner.registry.ended.notified() => {}
            }
        };
        if tokio::time::timeout(period, changed).await.is_ok() {
            tokio::time::sleep(CONNECTIONS_SETTLE).await;
        }
        let connected = inner.connected.all();
        let seen: Vec<(Uuid, Uuid)> =
            std::mem::take(&mut *inner.seen.lock().unwrap_or_else(PoisonError::into_inner))
                .into_iter()
                .collect();
        let ttl = period * 3;
        if let Err(error) = inner
            .db
            .connections_sync(
                inner.presence.instance_id,
                ttl,
                &connected,
                &seen,
                &inner.registry.tenant_counts(),
            )
            .await
        {
            tracing::warn!(%error, "could not record who is connected here");
            // Seen is kept for the next sync; who is connected is taken afresh.
            inner
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(seen);
        }
    }
}

/// Runs `tick` on the node every `period` until the node is gone.
async fn periodically(node: Weak<Inner>, period: Duration, tick: fn(&Inner)) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = node.upgrade() else {
            return;
        };
        tick(&inner);
    }
}

/// Publishes the leaves whose debounce has passed.
fn announce_leaves(inner: &Inner) {
    for signal in inner.presence.due_leaves() {
        publish(inner.db.clone(), signal);
    }
}

/// Publishes this instance's presence and expires what others stopped confirming.
fn heartbeat(inner: &Inner) {
    for signal in inner.presence.heartbeats() {
        publish(inner.db.clone(), signal);
    }
    let changes = inner.presence.expire();
    announce_presence(inner, changes);
}
