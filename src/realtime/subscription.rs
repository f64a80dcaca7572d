//! A subscription of one WebSocket or event stream to one room, set up the one way
//! invariant 12 requires, and ended by dropping it.

use std::sync::Arc;

use uuid::Uuid;

use crate::auth::Caller;
use crate::db::{DatabaseError, SubscriptionGrant};
use crate::realtime::{
    Node, cursor::RoomCursor, hub::Subscriber, protocol::CLOSE_UNAUTHORIZED, registry::Control,
};

/// Why a subscription could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The LISTEN could not be made active in time: real-time delivery is down here.
    #[error("real-time delivery is not available right now")]
    Unavailable,
    /// The check made once the LISTEN was active refused (the caller was removed
    /// meanwhile), or failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
}

/// A subscriber's place in a room's fan-out. Dropping it ends the subscription: the
/// subscriber leaves the hub (the last one out UNLISTENs), the gauge goes down, and
/// the user leaves the room's presence unless another connection of theirs stays.
pub struct Subscription {
    /// The node.
    node: Node,
    /// The subscriber's id in the hub.
    id: u64,
    /// The room.
    room_id: Uuid,
    /// The subscribed user, once counted in the room's presence here (a subscription
    /// that failed before then leaves no presence to take back).
    present: Option<Uuid>,
    /// The tenant and user, once counted in the tenant's presence here (every
    /// subscription is, a feed's included), which the drop takes back.
    in_tenant: Option<(Uuid, Uuid)>,
    /// Whether this is a subscription to the user's own feed, counted among the
    /// instance's open feeds until dropped.
    feed: bool,
    /// The connection's control: a subscription ended by a revocation (4001) leaves
    /// presence at once, any other after the debounce.
    control: Arc<Control>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let revoked = self
            .control
            .requested()
            .is_some_and(|(code, _)| code == CLOSE_UNAUTHORIZED);
        self.node
            .unsubscribe(self.id, self.room_id, self.present, revoked);
        if let Some((tenant_id, user_id)) = self.in_tenant {
            if self.feed {
                self.node.feed_closed(tenant_id, user_id);
            }
            self.node.left_tenant(tenant_id, user_id, revoked);
        }
    }
}

/// Where a new subscriber starts.
#[derive(Debug)]
pub struct Start {
    /// Its cursor: at `since` when given (at most the room's seq), else at the
    /// room's seq.
    pub cursor: RoomCursor,
    /// The room's seq once LISTEN was active: the events up to it come from the log,
    /// those after it from the fan-out.
    pub catch_up_to: i64,
}

/// A subscription just acknowledged, as the WebSocket's writer receives it: send
/// `ack`, hand out events after the cursor's position up to `catch_up_to` from the
/// log, then the held and live ones. (Boxed in `Outbound` to keep every queue slot
/// small.)
#[derive(Debug)]
pub struct Subscribed {
    /// Where the subscriber starts.
    pub start: Start,
    /// The ack frame.
    pub ack: String,
}

impl Node {
    /// Subscribes to a room, given the caller's grant: registers the subscriber, waits
    /// until the instance LISTENs on the room, and only then reads the room's seq
    /// (checking membership again), so that every event committed after that seq
    /// reaches the subscriber's queue, and those before come from the log. A removal
    /// from the room from here on reaches the fan-out, which ends the subscription; one
    /// before is refused here.
    pub async fn subscribe(
        &self,
        caller: &Caller,
        grant: &SubscriptionGrant,
        subscriber: Subscriber,
        since: Option<i64>,
    ) -> Result<(Subscription, Start), SubscribeError> {
        let id = self.next_id();
        let control = subscriber.control.clone();
        self.hub()
            .add(grant.room_id, grant.tenant_id, id, subscriber);
        let mut subscription = Subscription {
            node: self.clone(),
            id,
            room_id: grant.room_id,
            present: None,
            in_tenant: None,
            feed: false,
            control,
        };
        if !self.listen(grant.room_id).await {
            return Err(SubscribeError::Unavailable);
        }
        // A user's feed (keyed by their own id) is theirs alone: nobody's presence
        // but the tenant's.
        if grant.room_id == grant.user.id {
            self.feed_opened(grant.tenant_id, grant.user.id);
            subscription.feed = true;
        } else {
            self.joined(grant.room_id, &grant.user);
            subscription.present = Some(grant.user.id);
        }
        // Set together with `feed`, so that the drop closes the feed it opened.
        subscription.in_tenant = Some((grant.tenant_id, grant.user.id));
        self.joined_tenant(grant.tenant_id, &grant.user);
        let now = self
            .db()
            .room_subscribe(caller, grant.room_id)
            .await?
            .last_seq;
        self.hub().set_baseline(grant.room_id, now);
        let start = Start {
            cursor: RoomCursor::new(
                grant.tenant_id,
                grant.room_id,
                since.map_or(now, |since| since.min(now)),
            ),
            catch_up_to: now,
        };
        Ok((subscription, start))
    }
}
