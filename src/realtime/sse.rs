//! Server-Sent Events: one room's events for clients and platforms without
//! WebSockets, with the same order and resume guarantees (`id:` is the seq, so a
//! reconnecting EventSource resumes with `Last-Event-ID`).

use std::sync::Arc;

use futures_util::{Stream, stream};
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::db::SubscriptionGrant;
use crate::realtime::{
    Node,
    cursor::Delivery,
    hub::{Outbound, Subscriber},
    registry::{Control, Registration},
    subscription::{Start, SubscribeError, Subscription},
};

/// Items a stream's feed prepares ahead of its reader: each is a copy of an event's
/// JSON, so what a reader that stops reading makes the instance hold stays small (its
/// subscription's queue then fills, and the stream is ended as too slow).
const ITEMS_AHEAD: usize = 16;

/// One item of the stream: an event (its JSON, with `seq` and `type`) or a reset.
pub type Item = serde_json::Value;

/// Subscribes to the room and streams its events after `since` (or live ones only).
pub async fn subscribe(
    node: Node,
    caller: &Caller,
    grant: SubscriptionGrant,
    since: Option<i64>,
) -> Result<impl Stream<Item = Item> + use<>, SubscribeError> {
    let send_queue = node.settings().send_queue;
    let (queue, outbound) = mpsc::channel(send_queue);
    let control = Arc::new(Control::default());
    let subscriber = Subscriber {
        user_id: grant.user.id,
        queue,
        control: control.clone(),
    };
    let (subscription, start) = node.subscribe(caller, &grant, subscriber, since).await?;
    let (items_tx, items_rx) = mpsc::channel(ITEMS_AHEAD);
    // Registered with its owner, the stream ends when the session, user or tenant is
    // revoked on any instance; and it ends when its token expires.
    let registration = node.register(control.clone(), Some(caller));
    let expires_in = (caller.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::spawn(feed(
        Feed {
            node,
            expires_at: tokio::time::Instant::now() + expires_in,
            _subscription: subscription,
            _registration: registration,
        },
        start,
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
    /// The node.
    node: Node,
    /// When the token expires, and the stream with it.
    expires_at: tokio::time::Instant,
    /// The stream's subscription, ended when the feed ends.
    _subscription: Subscription,
    /// The stream's place in the registry, held for the feed's life.
    _registration: Registration,
}

/// An event's item, or a reset's.
fn item(delivery: Delivery) -> Item {
    match delivery {
        Delivery::Event(frame) => serde_json::to_value(&frame.event).unwrap_or_default(),
        Delivery::Reset { room_id, seq } => {
            serde_json::json!({"type": "reset", "room_id": room_id, "seq": seq})
        }
    }
}

async fn feed(
    Feed {
        node,
        expires_at,
        _subscription,
        _registration,
    }: Feed,
    Start {
        mut cursor,
        catch_up_to,
    }: Start,
    mut outbound: mpsc::Receiver<Outbound>,
    control: Arc<Control>,
    items: mpsc::Sender<Item>,
) {
    let window = node.settings().replay_window;
    let mut deliveries = Vec::new();
    cursor.catch_up_to(catch_up_to, window, &mut deliveries);
    loop {
        for delivery in deliveries.drain(..) {
            if items.send(item(delivery)).await.is_err() {
                return;
            }
        }
        let next = if cursor.is_behind() {
            // Whatever is queued first (events only move the cursor's target then),
            // then one page of the log, sent before the next is read: a replay goes
            // out at the pace the stream's reader takes it.
            match outbound.try_recv() {
                Ok(message) => Some(message),
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::select! {
                        read = cursor.read_page(node.db(), &mut deliveries) => if read.is_err() { break },
                        _ = control.closed() => break,
                        () = tokio::time::sleep_until(expires_at) => break,
                    }
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            }
        } else {
            tokio::select! {
                message = outbound.recv() => message,
                _ = control.closed() => break,
                () = tokio::time::sleep_until(expires_at) => break,
                () = items.closed() => break,
            }
        };
        match next {
            Some(Outbound::Event(frame)) => cursor.accept(frame, window, &mut deliveries),
            Some(Outbound::Revoked(_)) => {
                // The subscriber left the room: deliver what is due, then end.
                for delivery in deliveries.drain(..) {
                    if let Delivery::Event(_) = delivery {
                        drop(items.send(item(delivery)).await);
                    }
                }
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
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
