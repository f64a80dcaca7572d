//! The hub: who on this instance is subscribed to which room, and the fan-out of a
//! room's events to them.
//!
//! Rooms are spread over shards, each behind its own lock, so that unrelated rooms
//! never wait for each other; the lock is held only to push into subscribers' queues
//! (`try_send`, never an await). Its guarantee: events reach each subscriber's queue
//! in seq order, each once per room (the room's `delivered` seq drops repeats). A
//! gap (an event missing before the one that arrived, a notification too big to
//! carry its events, a LISTEN connection that came back) is filled by reading the
//! log in a task of that room alone, off the dispatch loop, retried until it
//! succeeds or the room has no subscribers left: one room's catch-up never delays
//! another room's live events.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::sync::{mpsc, mpsc::error::TrySendError};
use uuid::Uuid;

use crate::db::{Database, EventType, RoomEvent};
use crate::metrics::METRICS;
use crate::realtime::broker::Command;
use crate::realtime::log;
use crate::realtime::protocol::{CLOSE_TOO_SLOW, EventFrame};
use crate::realtime::registry::Control;
use crate::realtime::room_channel;

/// Shards of rooms, each behind its own lock.
const SHARDS: usize = 16;
/// The first and the longest wait before a failed read of the log is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_LONGEST: Duration = Duration::from_secs(2);
/// A catch-up with no end seq reads up to the room's newest event.
const TO_THE_END: i64 = i64::MAX;

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
    Subscribed(Box<crate::realtime::subscription::Subscribed>),
    /// The room's events stop.
    Unsubscribed(Uuid),
    /// Close the connection after the frames queued before this one.
    Close(u16, String),
    /// The subscriber left the room or was removed: its events stop here.
    Revoked(Uuid),
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
struct Room {
    /// The room's tenant, for reading its log.
    tenant_id: Uuid,
    /// The seq of the newest event fanned out here; `None` before the first.
    delivered: Option<i64>,
    /// Subscribers by id.
    subscribers: HashMap<u64, Subscriber>,
    /// While a task reads the log for this room: how far it must read. Events arriving
    /// meanwhile only raise it, so that the room's order stays the log's.
    catching_up: Option<CatchUp>,
    /// Whether the LISTEN connection came back while the room had no baseline yet (its
    /// first subscriber between LISTEN and reading the room's seq): notifications of
    /// events after that seq may have been lost with the connection, so the baseline,
    /// once set, is read to the log's end.
    missed: bool,
}

/// How far a room's catch-up task must read, and what arrived meanwhile.
#[derive(Debug)]
struct CatchUp {
    /// The seq to read up to ([`TO_THE_END`]: the newest).
    upto: i64,
    /// Events that arrived with their notifications during the read, in seq order
    /// (at most a page): fanned out after it when they follow on, so that a busy
    /// room leaves catch-up without reading its log for ever.
    held: Vec<Arc<EventFrame>>,
    /// Whether the read must be made again whatever it finds: a wake-up or a
    /// reconnection came during it, announcing events it may not have seen.
    reread: bool,
}

/// Members whose subscriptions a `member.left` event ended, as (room, user): the
/// node takes them out of presence.
pub type Departures = Vec<(Uuid, Uuid)>;

/// The hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    /// Rooms by shard.
    shards: Vec<Mutex<HashMap<Uuid, Room>>>,
    /// For reading rooms' logs.
    db: Database,
    /// How many events a catch-up reads at most: beyond, it is left to the
    /// subscribers' cursors, which tell their clients to reset.
    replay_window: i64,
    /// Where departures go (the node's dispatcher), from catch-up tasks.
    departures: mpsc::UnboundedSender<Departures>,
    /// The broker's commands: a room left without subscribers is UNLISTENed, under
    /// its shard's lock, so that a later subscriber's LISTEN always comes after.
    broker: mpsc::UnboundedSender<Command>,
}

impl Hub {
    /// A hub reading logs through `db`, reporting departures found by its catch-up
    /// tasks to `departures`.
    pub fn new(
        db: Database,
        replay_window: i64,
        departures: mpsc::UnboundedSender<Departures>,
        broker: mpsc::UnboundedSender<Command>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                db,
                replay_window,
                departures,
                broker,
            }),
        }
    }

    fn shard(&self, room_id: Uuid) -> MutexGuard<'_, HashMap<Uuid, Room>> {
        let index = (room_id.as_u128() % SHARDS as u128) as usize;
        self.inner.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a subscriber to a room.
    pub fn add(&self, room_id: Uuid, tenant_id: Uuid, id: u64, subscriber: Subscriber) {
        self.shard(room_id)
            .entry(room_id)
            .or_insert_with(|| Room {
                tenant_id,
                delivered: None,
                subscribers: HashMap::new(),
                catching_up: None,
                missed: false,
            })
            .subscribers
            .insert(id, subscriber);
        METRICS.subscriptions.inc();
    }

    /// Removes a subscriber (the last one out UNLISTENs); answers whether it was
    /// there.
    pub fn remove(&self, room_id: Uuid, id: u64) -> bool {
        let mut shard = self.shard(room_id);
        let Some(room) = shard.get_mut(&room_id) else {
            return false;
        };
        if room.subscribers.remove(&id).is_none() {
            return false;
        }
        METRICS.subscriptions.dec();
        self.settle(&mut shard, room_id);
        true
    }

    /// Removes a room left without subscribers, and UNLISTENs its channel.
    fn settle(&self, shard: &mut HashMap<Uuid, Room>, room_id: Uuid) {
        if shard
            .get(&room_id)
            .is_some_and(|room| room.subscribers.is_empty())
        {
            shard.remove(&room_id);
            drop(self.inner.broker.send(Command::Unlisten {
                channel: room_channel(room_id),
            }));
        }
    }

    /// Gives a room its first subscriber's starting seq as the fan-out's baseline, so
    /// that gaps are noticed from there on. A room that has one keeps it: the
    /// subscribers already there have been handed events only up to it, and a newer
    /// subscriber's seq may count events whose notifications are still on their way,
    /// which the fan-out must not take for delivered (the fault soak lost a room's
    /// last event so, for every subscriber that was there before).
    pub fn set_baseline(&self, room_id: Uuid, seq: i64) {
        let mut shard = self.shard(room_id);
        let Some(room) = shard.get_mut(&room_id) else {
            return;
        };
        if room.delivered.is_none() {
            room.delivered = Some(seq);
            if std::mem::take(&mut room.missed) {
                self.catch_up(room_id, room, TO_THE_END);
            }
        }
    }

    /// Whether anyone here subscribes to the room.
    pub fn has(&self, room_id: Uuid) -> bool {
        self.shard(room_id).contains_key(&room_id)
    }

    /// Pushes a frame (typing, read, presence) to every subscriber of a room.
    pub fn signal(&self, room_id: Uuid, frame: &Arc<str>) {
        if let Some(room) = self.shard(room_id).get(&room_id) {
            push(room, || Outbound::Frame(frame.clone()));
        }
    }

    /// Fans out a room's new events, in seq order; a gap before them is filled from
    /// the log first, by the room's catch-up task.
    pub fn deliver(&self, room_id: Uuid, events: Vec<RoomEvent>) -> Departures {
        if !self.has(room_id) {
            return Departures::default();
        }
        // Serialised before the lock is taken: once per instance, shared by everyone.
        let frames: Vec<Arc<EventFrame>> = events.into_iter().map(EventFrame::new).collect();
        let mut departures = Departures::default();
        let mut shard = self.shard(room_id);
        let Some(room) = shard.get_mut(&room_id) else {
            return departures;
        };
        let newest = frames.last().map_or(0, |frame| frame.seq);
        let in_order = match (&room.catching_up, room.delivered, frames.first()) {
            (Some(_), _, _) => false,
            (None, Some(delivered), Some(first)) => first.seq <= delivered + 1,
            (None, _, _) => true,
        };
        if in_order {
            fan_out(room_id, room, frames, &mut departures);
        } else {
            self.catch_up(room_id, room, newest);
            if let Some(running) = &mut room.catching_up {
                if running.held.len() + frames.len() <= log::PAGE as usize {
                    running.held.extend(frames);
                } else {
                    running.reread = true;
                }
            }
        }
        self.settle(&mut shard, room_id);
        departures
    }

    /// Reads a room's log up to `seq` (a notification whose events were too big to
    /// carry) and fans out what is new.
    pub fn wake(&self, room_id: Uuid, seq: i64) {
        let mut shard = self.shard(room_id);
        if let Some(room) = shard.get_mut(&room_id) {
            // Without a baseline yet, only the events announced are new here.
            let delivered = *room.delivered.get_or_insert(seq - 1);
            if delivered < seq {
                self.catch_up(room_id, room, seq);
                if let Some(running) = &mut room.catching_up {
                    running.reread = true;
                }
            }
        }
    }

    /// Reads every room's log from where delivery stopped to its end: the LISTEN
    /// connection came back, and anything may have been missed meanwhile.
    pub fn catch_up_all(&self) {
        for index in 0..SHARDS {
            let mut shard = self.inner.shards[index]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (room_id, room) in shard.iter_mut() {
                if room.delivered.is_some() {
                    self.catch_up(*room_id, room, TO_THE_END);
                    if let Some(running) = &mut room.catching_up {
                        running.reread = true;
                    }
                } else {
                    room.missed = true;
                }
            }
        }
    }

    /// Makes sure the room's catch-up task reads up to `upto`, starting it if none
    /// runs. Called under the room's shard lock.
    fn catch_up(&self, room_id: Uuid, room: &mut Room, upto: i64) {
        if let Some(running) = &mut room.catching_up {
            running.upto = running.upto.max(upto);
            return;
        }
        room.catching_up = Some(CatchUp {
            upto,
            held: Vec::new(),
            reread: false,
        });
        tokio::spawn(self.clone().read_log(room_id));
    }

    /// The room's catch-up task: reads the log from the delivered seq up to the
    /// target (raised meanwhile by newer events) and fans it out, until the target is
    /// reached or nobody subscribes any more. A failed read is tried again after a
    /// pause: giving up would leave subscribers a gap until the room's next event.
    async fn read_log(self, room_id: Uuid) {
        let mut retry = RETRY_FIRST;
        loop {
            let Some((tenant_id, after, upto)) = self.next_read(room_id) else {
                return;
            };
            let read = log::read(
                &self.inner.db,
                tenant_id,
                room_id,
                after,
                (upto != TO_THE_END).then_some(upto),
            )
            .await;
            let page = match read {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, %room_id, retry_in_ms = retry.as_millis() as u64, "could not read a room's log for its subscribers");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_LONGEST);
                    continue;
                }
            };
            retry = RETRY_FIRST;
            let (frames, read_to) = (page.frames, page.read_to);
            // The room's newest seq when read (a room deleted since: nothing more).
            let newest = page.newest.unwrap_or(read_to);
            let mut departures = Departures::default();
            let mut shard = self.shard(room_id);
            let Some(room) = shard.get_mut(&room_id) else {
                return;
            };
            fan_out(room_id, room, frames, &mut departures);
            let Some(running) = room.catching_up.as_mut() else {
                return;
            };
            let held = std::mem::take(&mut running.held);
            let (upto, reread) = (running.upto, running.reread);
            let newest = held.last().map_or(newest, |frame| frame.seq.max(newest));
            let delivered = room.delivered.unwrap_or(read_to);
            // Held events that follow on from the read go out now; beyond a gap, the
            // next read brings them from the log.
            if held
                .iter()
                .find(|frame| frame.seq > delivered)
                .is_some_and(|first| first.seq == delivered + 1)
            {
                fan_out(room_id, room, held, &mut departures);
            }
            // Done when the target (or the newest event known) is delivered, or when
            // the log had nothing more to give: reading again would find nothing either.
            let done = !reread
                && (room.delivered.unwrap_or(read_to) >= upto.min(newest) || read_to == after);
            if done {
                room.catching_up = None;
            }
            self.settle(&mut shard, room_id);
            drop(shard);
            if !departures.is_empty() {
                drop(self.inner.departures.send(departures));
            }
            if done {
                return;
            }
        }
    }

    /// Where the room's catch-up reads next: (tenant, after, up to), or `None` when the
    /// room has no subscribers or nothing to catch up.
    fn next_read(&self, room_id: Uuid) -> Option<(Uuid, i64, i64)> {
        let mut shard = self.shard(room_id);
        let room = shard.get_mut(&room_id)?;
        let running = room.catching_up.as_mut()?;
        running.reread = false;
        let upto = running.upto;
        let mut after = room.delivered.unwrap_or(0);
        if upto != TO_THE_END {
            // A stretch longer than the replay window is left to the subscribers'
            // cursors, which tell their clients to reset.
            after = after.max(upto - self.inner.replay_window);
        }
        if after >= upto {
            room.catching_up = None;
            return None;
        }
        Some((room.tenant_id, after, upto))
    }
}

/// Pushes new frames (seq above the delivered one) to every subscriber of the room,
/// in order; a `member.left` event ends that member's subscriptions right after it.
fn fan_out(
    room_id: Uuid,
    room: &mut Room,
    frames: Vec<Arc<EventFrame>>,
    departures: &mut Departures,
) {
    let span = tracing::debug_span!(
        "fan-out",
        otel.name = "fan-out",
        room_id = %room_id,
        events = frames.len() as i64,
        subscribers = room.subscribers.len() as i64,
    );
    let _entered = span.enter();
    for frame in frames {
        if room
            .delivered
            .is_some_and(|delivered| frame.seq <= delivered)
        {
            continue;
        }
        room.delivered = Some(frame.seq);
        METRICS.events_received.inc();
        let lag = chrono::Utc::now() - frame.event.at;
        METRICS
            .delivery_lag
            .observe(lag.to_std().unwrap_or_default().as_secs_f64());
        push(room, || Outbound::Event(frame.clone()));
        METRICS
            .events_delivered
            .inc_by(room.subscribers.len() as u64);
        if let Some(user_id) = departed_member(&frame) {
            room.subscribers.retain(|_, subscriber| {
                let stays = subscriber.user_id != user_id;
                if !stays {
                    drop(subscriber.queue.try_send(Outbound::Revoked(room_id)));
                    METRICS.subscriptions.dec();
                }
                stays
            });
            departures.push((room_id, user_id));
        }
    }
}

/// Pushes a frame to every subscriber of a room; a full queue closes its subscriber
/// with 4009 instead of waiting or growing.
fn push(room: &Room, outbound: impl Fn() -> Outbound) {
    for subscriber in room.subscribers.values() {
        if let Err(TrySendError::Full(_)) = subscriber.queue.try_send(outbound()) {
            subscriber
                .control
                .close(CLOSE_TOO_SLOW, "too slow to keep up; reconnect and resume");
        }
    }
}

/// The user a `member.left` event is about.
fn departed_member(frame: &EventFrame) -> Option<Uuid> {
    if frame.event.event_type != EventType::MemberLeft {
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
