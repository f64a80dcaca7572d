//! Presence: who in a room is connected right now, across every instance, without
//! touching tables. A user is present in a room while one of their sockets (on any
//! instance) is subscribed to it. Instances announce joins and leaves on the presence
//! channel and repeat what they hold in a heartbeat; an entry not repeated within
//! three heartbeats expires, so a crashed instance's users drop out in bounded time.
//! A user whose last local subscription ends is announced as gone only after the
//! debounce (`HARK_PRESENCE_DEBOUNCE_MS`), and not at all if they subscribe again
//! meanwhile: a client churning subscriptions costs the room's subscribers nothing.
//! A revoked session, or a member who left the room, leaves at once.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::UserRef;

/// The most bytes a presence signal takes on the wire: NOTIFY refuses payloads of
/// 8,000 bytes and more. Heartbeats are cut by bytes to stay under it.
pub const MAX_SIGNAL_BYTES: usize = 7_000;

/// The most bytes of JSON a user takes in a signal: a profile bigger than this (only
/// rows written before profile URLs were bounded by bytes can be) travels without its
/// profile fields, so that a join, a leave or a heartbeat entry always fits.
const MAX_USER_BYTES: usize = 3_000;

/// A presence signal on the presence channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    /// A user's first local subscription to a room.
    Join {
        /// The announcing instance.
        instance: Uuid,
        /// The room.
        room_id: Uuid,
        /// The user.
        user: UserRef,
    },
    /// A user's last local subscription to a room ended.
    Leave {
        /// The announcing instance.
        instance: Uuid,
        /// The room.
        room_id: Uuid,
        /// The user.
        user: UserRef,
    },
    /// Everything an instance holds (one part of it).
    Heartbeat {
        /// The announcing instance.
        instance: Uuid,
        /// Rooms and users.
        entries: Vec<Entry>,
    },
}

/// One user present in one room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The room.
    pub room_id: Uuid,
    /// The user.
    pub user: UserRef,
}

/// The length of a value's JSON.
fn json_length(value: &impl Serialize) -> usize {
    serde_json::to_string(value).map_or(0, |json| json.len())
}

/// `user` as it fits in [`MAX_USER_BYTES`] of JSON: whole, or without the profile
/// fields when they would not fit (an id and a username always do).
fn bounded(user: &UserRef) -> UserRef {
    if json_length(user) <= MAX_USER_BYTES {
        return user.clone();
    }
    UserRef {
        display_name: None,
        avatar_url: None,
        ..user.clone()
    }
}

/// A change of a user's presence in a room, to tell that room's subscribers.
#[derive(Debug, Clone)]
pub struct Change {
    /// The room.
    pub room_id: Uuid,
    /// The user.
    pub user: UserRef,
    /// Online now, or offline now.
    pub online: bool,
}

/// The users present in one room: each with the instances that confirmed them and when.
type RoomPresence = HashMap<Uuid, (UserRef, HashMap<Uuid, Instant>)>;

/// A user's local subscriptions to one room.
struct Local {
    /// The user as announced.
    user: UserRef,
    /// Local sockets subscribed.
    sockets: usize,
    /// When the last one ended, while its leave waits for the debounce.
    leaving_since: Option<Instant>,
}

/// Who is where, as far as this instance knows.
pub struct Presence {
    /// This instance's id in signals.
    pub instance_id: Uuid,
    /// How often heartbeats go out; entries expire after three.
    heartbeat: Duration,
    /// How long a leave waits before it is announced.
    debounce: Duration,
    /// Local subscriptions per (room, user).
    local: Mutex<HashMap<(Uuid, Uuid), Local>>,
    /// Every instance's users per room, with when each instance last confirmed them.
    seen: Mutex<HashMap<Uuid, RoomPresence>>,
}

impl Presence {
    /// An empty view.
    pub fn new(heartbeat: Duration, debounce: Duration) -> Self {
        Self {
            instance_id: Uuid::new_v4(),
            heartbeat,
            debounce,
            local: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a local subscription; answers the signal to publish when it is the
    /// user's first in the room (not when a leave was still waiting: for the others
    /// they never left).
    pub fn local_join(&self, room_id: Uuid, user: &UserRef) -> Option<Signal> {
        let mut local = self
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = local.entry((room_id, user.id)).or_insert_with(|| Local {
            user: bounded(user),
            sockets: 0,
            leaving_since: None,
        });
        entry.sockets += 1;
        let returning = entry.leaving_since.take().is_some();
        (entry.sockets == 1 && !returning).then(|| Signal::Join {
            instance: self.instance_id,
            room_id,
            user: entry.user.clone(),
        })
    }

    /// Uncounts a local subscription. When it was the user's last in the room, the
    /// leave waits for the debounce ([`Presence::due_leaves`]), or is answered at once
    /// when `at_once` (a revoked session).
    pub fn local_leave(&self, room_id: Uuid, user_id: Uuid, at_once: bool) -> Option<Signal> {
        let mut local = self
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = local.get_mut(&(room_id, user_id))?;
        entry.sockets = entry.sockets.saturating_sub(1);
        if entry.sockets > 0 {
            return None;
        }
        if at_once || self.debounce.is_zero() {
            return self.forget(&mut local, room_id, user_id);
        }
        entry.leaving_since.get_or_insert_with(Instant::now);
        None
    }

    /// The leaves whose debounce has passed, to publish now.
    pub fn due_leaves(&self) -> Vec<Signal> {
        let mut local = self
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due: Vec<(Uuid, Uuid)> = local
            .iter()
            .filter(|(_, entry)| {
                entry
                    .leaving_since
                    .is_some_and(|since| since.elapsed() >= self.debounce)
            })
            .map(|(key, _)| *key)
            .collect();
        due.into_iter()
            .filter_map(|(room_id, user_id)| self.forget(&mut local, room_id, user_id))
            .collect()
    }

    /// How long a leave waits before it is announced.
    pub fn debounce(&self) -> Duration {
        self.debounce
    }

    /// Forgets every local subscription of a user to a room (they left it); answers
    /// the signal to publish.
    pub fn local_leave_all(&self, room_id: Uuid, user_id: Uuid) -> Option<Signal> {
        let mut local = self
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.forget(&mut local, room_id, user_id)
    }

    fn forget(
        &self,
        local: &mut HashMap<(Uuid, Uuid), Local>,
        room_id: Uuid,
        user_id: Uuid,
    ) -> Option<Signal> {
        let Local { user, .. } = local.remove(&(room_id, user_id))?;
        Some(Signal::Leave {
            instance: self.instance_id,
            room_id,
            user,
        })
    }

    /// This instance's heartbeat, in parts of at most [`MAX_SIGNAL_BYTES`] each, so
    /// that no user's profile can make a part too big for NOTIFY.
    pub fn heartbeats(&self) -> Vec<Signal> {
        let local = self
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let empty = Signal::Heartbeat {
            instance: self.instance_id,
            entries: Vec::new(),
        };
        let envelope = json_length(&empty);
        let mut parts = Vec::new();
        let mut entries = Vec::new();
        let mut bytes = envelope;
        // Users whose leave waits for the debounce are still present.
        for ((room_id, _), Local { user, .. }) in local.iter() {
            let entry = Entry {
                room_id: *room_id,
                user: user.clone(),
            };
            // One more byte for the comma between entries.
            let length = json_length(&entry) + 1;
            if bytes + length > MAX_SIGNAL_BYTES && !entries.is_empty() {
                parts.push(std::mem::take(&mut entries));
                bytes = envelope;
            }
            bytes += length;
            entries.push(entry);
        }
        if !entries.is_empty() {
            parts.push(entries);
        }
        parts
            .into_iter()
            .map(|entries| Signal::Heartbeat {
                instance: self.instance_id,
                entries,
            })
            .collect()
    }

    /// Applies a signal from any instance (this one included); answers the changes.
    pub fn apply(&self, signal: Signal) -> Vec<Change> {
        let now = Instant::now();
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut changes = Vec::new();
        let mut confirm = |room_id: Uuid, user: UserRef, instance: Uuid| {
            let users = seen.entry(room_id).or_default();
            let (_, instances) = users
                .entry(user.id)
                .or_insert_with(|| (user.clone(), HashMap::new()));
            if instances.is_empty() {
                changes.push(Change {
                    room_id,
                    user: user.clone(),
                    online: true,
                });
            }
            instances.insert(instance, now);
        };
        match signal {
            Signal::Join {
                instance,
                room_id,
                user,
            } => confirm(room_id, user, instance),
            Signal::Heartbeat { instance, entries } => {
                for entry in entries {
                    confirm(entry.room_id, entry.user, instance);
                }
            }
            Signal::Leave {
                instance,
                room_id,
                user,
            } => {
                if let Some(users) = seen.get_mut(&room_id)
                    && let Some((_, instances)) = users.get_mut(&user.id)
                {
                    instances.remove(&instance);
                    if instances.is_empty() {
                        users.remove(&user.id);
                        changes.push(Change {
                            room_id,
                            user,
                            online: false,
                        });
                    }
                }
            }
        }
        changes
    }

    /// Forgets what no heartbeat confirmed within three periods; answers the changes.
    pub fn expire(&self) -> Vec<Change> {
        let cutoff = self.heartbeat * 3;
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut changes = Vec::new();
        for (room_id, users) in seen.iter_mut() {
            users.retain(|_, (user, instances)| {
                instances.retain(|_, confirmed| confirmed.elapsed() < cutoff);
                if instances.is_empty() {
                    changes.push(Change {
                        room_id: *room_id,
                        user: user.clone(),
                        online: false,
                    });
                }
                !instances.is_empty()
            });
        }
        seen.retain(|_, users| !users.is_empty());
        changes
    }

    /// The users present in a room.
    pub fn online(&self, room_id: Uuid) -> Vec<Uuid> {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.get(&room_id)
            .map(|users| users.keys().copied().collect())
            .unwrap_or_default()
    }
}
