//! The open WebSockets and event streams of this instance, with their owners: what
//! shutdown (1012) and revocations announced on any instance (4001) reach. A stream
//! is in the registry for as long as its [`Registration`] lives.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::auth::Caller;
use crate::realtime::protocol::{CLOSE_RESTARTING, CLOSE_UNAUTHORIZED};

/// How to stop a connection from elsewhere (the fan-out, shutdown, a revocation).
#[derive(Debug, Default)]
pub struct Control {
    /// The close code and reason, once decided; the first request wins.
    close: Mutex<Option<(u16, String)>>,
    /// Wakes everyone waiting in `closed` (the reader and the writer both do).
    notify: Notify,
}

impl Control {
    /// Asks the connection to close with a code; the first request wins.
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

/// A revocation announced by `hark_api.announce_revocation` on the revocation
/// channel: a session, every session of a user, or a whole tenant.
#[derive(Debug, serde::Deserialize)]
pub struct Revocation {
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

/// One open WebSocket or event stream, as the registry knows it.
struct Stream {
    /// How to close it.
    control: Arc<Control>,
    /// Whose it is, once authenticated: the tenant, user and session a revocation
    /// is matched against.
    owner: Option<Caller>,
}

/// The registry of open streams.
#[derive(Default)]
pub struct Registry {
    /// Streams by id.
    streams: Mutex<HashMap<u64, Stream>>,
    /// The next stream's id.
    next_id: AtomicU64,
    /// Notified when an identified stream ends, so that the fleet's count of the
    /// tenant's connections follows at the next sync.
    pub ended: Notify,
}

impl Registry {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Stream>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a stream (with its owner when already known) until the registration
    /// is dropped.
    pub fn register(
        self: &Arc<Self>,
        control: Arc<Control>,
        owner: Option<&Caller>,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.streams().insert(
            id,
            Stream {
                control,
                owner: owner.cloned(),
            },
        );
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// The identified streams of each tenant, for the fleet's count of connections
    /// (`hark.tenant_connections`).
    pub fn tenant_counts(&self) -> Vec<(Uuid, i32)> {
        let mut counts: HashMap<Uuid, i32> = HashMap::new();
        for owner in self
            .streams()
            .values()
            .filter_map(|stream| stream.owner.as_ref())
        {
            *counts.entry(owner.tenant_id).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    /// The identified streams of one tenant.
    pub fn tenant_count(&self, tenant_id: Uuid) -> i32 {
        let count = self
            .streams()
            .values()
            .filter(|stream| {
                stream
                    .owner
                    .as_ref()
                    .is_some_and(|owner| owner.tenant_id == tenant_id)
            })
            .count();
        i32::try_from(count).unwrap_or(i32::MAX)
    }

    /// Tells every stream to close with 1012 (server restarting).
    pub fn shutdown(&self) {
        for stream in self.streams().values() {
            stream
                .control
                .close(CLOSE_RESTARTING, "server restarting; reconnect");
        }
    }

    /// Closes every stream the revocation covers with 4001: their subscriptions end
    /// with them, and their users leave presence at once.
    pub fn revoke(&self, revocation: &Revocation) {
        for stream in self.streams().values() {
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
}

/// A stream's place in the registry; dropping it forgets the stream.
pub struct Registration {
    /// The registry.
    registry: Arc<Registry>,
    /// The stream's id.
    id: u64,
}

impl Registration {
    /// Records whose stream it is, once authenticated, so that revoking that session
    /// (or user, or tenant) anywhere closes it.
    pub fn identify(&self, owner: &Caller) {
        if let Some(stream) = self.registry.streams().get_mut(&self.id) {
            stream.owner = Some(owner.clone());
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let removed = self.registry.streams().remove(&self.id);
        if removed.is_some_and(|stream| stream.owner.is_some()) {
            self.registry.ended.notify_one();
        }
    }
}
