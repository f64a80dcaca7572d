//! Typed calls of the real-time functions (`sql/functions/0006_realtime.sql`).

use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::{Database, DatabaseError, RoomEvent, UserRef};

/// What a subscription needs to know about its room.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionGrant {
    /// The room.
    pub room_id: Uuid,
    /// Its tenant.
    pub tenant_id: Uuid,
    /// Its newest seq when the grant was made.
    pub last_seq: i64,
    /// The subscriber, as others see them.
    pub user: UserRef,
}

/// A stretch of a room's log read by the instance.
#[derive(Debug, Clone, Deserialize)]
pub struct LogStretch {
    /// The room's newest seq; `None` when the room no longer exists.
    pub last_seq: Option<i64>,
    /// The events, in seq order.
    pub items: Vec<RoomEvent>,
}

impl Database {
    /// Checks that the caller may subscribe to a room.
    pub async fn room_subscribe(
        &self,
        caller: &Caller,
        room_id: Uuid,
    ) -> Result<SubscriptionGrant, DatabaseError> {
        self.call(
            "room_subscribe",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
            ],
        )
        .await
    }

    /// Reads events of a room after a seq (up to `upto`, at most `limit`) for
    /// subscribers the instance has already authorised.
    pub async fn room_events_after(
        &self,
        tenant_id: Uuid,
        room_id: Uuid,
        after_seq: i64,
        upto_seq: Option<i64>,
        limit: i32,
        max_bytes: i32,
    ) -> Result<LogStretch, DatabaseError> {
        self.call(
            "room_events_after",
            &[
                &tenant_id, &room_id, &after_seq, &upto_seq, &limit, &max_bytes,
            ],
        )
        .await
    }

    /// Signals that the caller is typing in a room.
    pub async fn typing(&self, caller: &Caller, room_id: Uuid) -> Result<(), DatabaseError> {
        self.call(
            "typing",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
            ],
        )
        .await
    }

    /// Publishes a presence signal to every instance.
    pub async fn presence_publish(&self, payload: &str) -> Result<(), DatabaseError> {
        self.call("presence_publish", &[&payload]).await
    }

    /// Of the given users, the members of a room.
    pub async fn room_members_among(
        &self,
        caller: &Caller,
        room_id: Uuid,
        user_ids: &[Uuid],
    ) -> Result<Vec<UserRef>, DatabaseError> {
        self.call(
            "room_members_among",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &user_ids,
            ],
        )
        .await
    }

    /// Of `candidates`, the users who share a room with `user_id` (for presence in
    /// their feeds).
    pub async fn users_sharing_a_room(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        candidates: &[Uuid],
    ) -> Result<Vec<Uuid>, DatabaseError> {
        let candidates = candidates.to_vec();
        self.call("users_sharing_a_room", &[&tenant_id, &user_id, &candidates])
            .await
    }

    /// Records the users connected to this instance (`(tenant, user)` pairs) and its
    /// streams per tenant (`(tenant, streams)`), valid for `ttl` unless synced again,
    /// in place of what it recorded before; and that the users of `seen` (who came or
    /// went since) were seen now.
    pub async fn connections_sync(
        &self,
        instance_id: Uuid,
        ttl: std::time::Duration,
        connected: &[(Uuid, Uuid)],
        seen: &[(Uuid, Uuid)],
        streams: &[(Uuid, i32)],
    ) -> Result<(), DatabaseError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let counts: Vec<serde_json::Value> = streams
            .iter()
            .map(|(tenant_id, connections)| {
                serde_json::json!({"tenant_id": tenant_id, "connections": connections})
            })
            .collect();
        self.call(
            "connections_sync",
            &[
                &instance_id,
                &ttl_ms,
                &tokio_postgres::types::Json(pairs_json(connected)),
                &tokio_postgres::types::Json(pairs_json(seen)),
                &tokio_postgres::types::Json(counts),
            ],
        )
        .await
    }

    /// Admits one more stream of a tenant that holds `here` on `instance_id`, within
    /// its connections quota (429 `quota_exceeded` past it).
    pub async fn connection_admit(
        &self,
        tenant_id: Uuid,
        instance_id: Uuid,
        here: i32,
    ) -> Result<(), DatabaseError> {
        self.call("connection_admit", &[&tenant_id, &instance_id, &here])
            .await
    }
}

/// `(tenant, user)` pairs as the SQL functions read them.
fn pairs_json(pairs: &[(Uuid, Uuid)]) -> Vec<serde_json::Value> {
    pairs
        .iter()
        .map(|(tenant_id, user_id)| serde_json::json!({"tenant_id": tenant_id, "user_id": user_id}))
        .collect()
}
