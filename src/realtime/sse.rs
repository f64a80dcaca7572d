//! Server-Sent Events: one room's events for clients and platforms without
//! WebSockets, with the same order and resume guarantees (`id:` is the seq, so a
//! reconnecting EventSource resumes with `Last-Event-ID`).

use std::sync::Arc;

use futures_util::{Stream, stream};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::SubscriptionGrant;
use crate::error::ApiError;
use crate::realtime::{
    Control, Hub, Outbound, Registration, Subscriber,
    cursor::{Delivery, RoomCursor},
};

/// One item of the stream: an event (its JSON, with `seq` and `type`) or a reset.
pub type Item = serde_json::Value;

/// Subscribes to the room and streams its events after `since` (or live ones only).
pub async fn subscribe(
    hub: Hub,
    caller: &Caller,
    grant: SubscriptionGrant,
    since: Option<i64>,
) -> Result<impl Stream<Item = Item> + use<>, ApiError> {
    let settings = hub.settings().clone();
    let (queue, outbound) = mpsc::channel(settings.send_queue);
    let control = Arc::new(Control::default());
    let subscription_id = hub.next_id();
    let subscriber = Subscriber {
        user_id: grant.user.id,
        queue,
        control: control.clone(),
    };
    hub.subscribe(
        subscription_id,
        subscriber,
        grant.tenant_id,
        grant.room_id,
        &grant.user,
    )
    .await?;
    // Checked again now that the LISTEN is active, as for WebSocket subscriptions.
    let now = match hub.db().room_subscribe(caller, grant.room_id).await {
        Ok(again) => again.last_seq,
        Err(error) => {
            hub.unsubscribe(subscription_id, grant.room_id, Some(grant.user.id));
            return Err(error.into());
        }
    };
    hub.delivered_at_least(grant.room_id, now);
    let cursor = RoomCursor {
        tenant_id: grant.tenant_id,
        room_id: grant.room_id,
        last_sent: since.map_or(now, |since| since.min(now)),
    };
    let (items_tx, items_rx) = mpsc::channel(settings.send_queue);
    // Registered with its owner, the stream ends when the session, user or tenant is
    // revoked on any instance; and it ends when its token expires.
    let registration = hub.register(control.clone(), Some(caller));
    let expires_in = (caller.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::spawn(feed(
        Feed {
            hub,
            subscription_id,
            user_id: grant.user.id,
            expires_at: tokio::time::Instant::now() + expires_in,
            _registration: registration,
        },
        cursor,
        now,
        outbound,
        control,
        items_tx,
    ));
    Ok(stream::unfold(items_rx, |mut items| async move {
        items.recv().await.map(|item| (item, items))
    }))
}

/// Who a stream's feed works for, and until when.
struct Feed {
    /// The hub.
    hub: Hub,
    /// The subscriber's id in the hub.
    subscription_id: u64,
    /// The subscribed user.
    user_id: Uuid,
    /// When the token expires, and the stream with it.
    expires_at: tokio::time::Instant,
    /// The stream's place in the hub's registry, held for the feed's life.
    _registration: Registration,
}

async fn feed(
    Feed {
        hub,
        subscription_id,
        user_id,
        expires_at,
        _registration,
    }: Feed,
    mut cursor: RoomCursor,
    catch_up_to: i64,
    mut outbound: mpsc::Receiver<Outbound>,
    control: Arc<Control>,
    items: mpsc::Sender<Item>,
) {
    let window = hub.settings().replay_window;
    let room_id = cursor.room_id;
    let mut deliveries = Vec::new();
    let mut healthy = cursor
        .catch_up(catch_up_to, hub.db(), window, &mut deliveries)
        .await
        .is_ok();
    while healthy {
        for delivery in deliveries.drain(..) {
            let item = match delivery {
                Delivery::Event(frame) => serde_json::to_value(&frame.event).unwrap_or_default(),
                Delivery::Reset { room_id, seq } => {
                    serde_json::json!({"type": "reset", "room_id": room_id, "seq": seq})
                }
            };
            if items.send(item).await.is_err() {
                healthy = false;
                break;
            }
        }
        if !healthy {
            break;
        }
        tokio::select! {
            message = outbound.recv() => match message {
                Some(Outbound::Event(frame)) => {
                    healthy = cursor.accept(frame, hub.db(), window, &mut deliveries).await.is_ok();
                }
                Some(Outbound::Revoked(_)) => {
                    // The subscriber left the room: deliver what is due, then end.
                    for delivery in deliveries.drain(..) {
                        if let Delivery::Event(frame) = delivery {
                            drop(items.send(serde_json::to_value(&frame.event).unwrap_or_default()).await);
                        }
                    }
                    break;
                }
                Some(_) => {}
                None => break,
            },
            _ = control.closed() => break,
            () = tokio::time::sleep_until(expires_at) => break,
            () = items.closed() => break,
        }
    }
    hub.unsubscribe(subscription_id, room_id, Some(user_id));
}

/// Streams end on their own when the subscriber falls too far behind or the server
/// restarts; the EventSource reconnects and resumes from its `Last-Event-ID`.
pub fn to_event(item: Item) -> poem::web::sse::Event {
    let event_type = item
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("message")
        .to_owned();
    let event = poem::web::sse::Event::message(item.to_string()).event_type(event_type);
    match item.get("seq").and_then(serde_json::Value::as_i64) {
        Some(seq) if item.get("type").and_then(serde_json::Value::as_str) != Some("reset") => {
            event.id(seq.to_string())
        }
        _ => event,
    }
}
