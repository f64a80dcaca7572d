//! One WebSocket connection: a reader that handles the client's ops in order, and a
//! writer that owns the socket's sending half, drains the connection's bounded queue
//! and hands out each subscribed room's events through its cursor.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use poem::http::StatusCode;
use poem::web::websocket::{CloseCode, Message, WebSocketStream};
use poem_openapi::types::ToJSON;
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::{Caller, TokenIssuer};
use crate::db::{Database, Draft, MessageEdit, MessageWriter};
use crate::error::ApiError;
use crate::limits::{Limits, Slot};
use crate::metrics::METRICS;
use crate::realtime::{
    Node,
    cursor::{Delivery, RoomCursor},
    hub::{Outbound, Subscriber},
    protocol::{
        self, CLIENT_OPS, CLOSE_MALFORMED, CLOSE_RATE_LIMITED, CLOSE_TOO_SLOW, CLOSE_UNAUTHORIZED,
        ClientFrame, EventFrame, ServerFrame,
    },
    registry::{Control, Registration},
    subscription::{Start, Subscribed, Subscription},
};

/// Malformed frames tolerated on one connection before it is closed with 4400.
const MALFORMED_FRAMES_ALLOWED: u32 = 20;
/// Queued items a writer takes before it flushes the socket.
const WRITE_BURST: usize = 64;
/// Bytes of frames a writer gathers before it flushes the socket, whatever the number
/// of items: with the page of the log a catch-up reads, what one connection holds.
const WRITE_BURST_BYTES: usize = 256 * 1024;
/// How long a connection without a token may take to send its `auth` frame.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// The least time between two typing signals of one connection in one room.
const TYPING_INTERVAL: Duration = Duration::from_secs(1);

/// What a connection needs of the instance.
#[derive(Clone)]
pub struct Context {
    /// For the ops that read or write (edits, reactions, read markers, typing).
    pub db: Database,
    /// Verifies the token of an `auth` frame.
    pub tokens: Arc<TokenIssuer>,
    /// The per-user allowances every op draws from, and the count of open streams.
    pub limits: Arc<Limits>,
    /// Where sends go, batched with the instance's other sends.
    pub writer: MessageWriter,
    /// Subscriptions, the registry of open streams.
    pub realtime: Node,
    /// The largest message body, in bytes.
    pub max_message_bytes: i32,
}

/// How a connection was let in at the upgrade.
pub struct Admission {
    /// The verified token's claims and expiry, when the upgrade carried a token.
    pub identity: Option<Caller>,
    /// The connection's place in its user's count of open streams, when known.
    pub stream_slot: Option<Slot>,
    /// Without a token: the connection's place in its address's count of
    /// connections that have not authenticated yet, freed by the `auth` frame.
    pub unauthenticated_slot: Option<Slot<IpAddr>>,
}

/// Serves one upgraded connection until it closes.
pub async fn serve(socket: WebSocketStream, context: Context, admission: Admission) {
    let Admission {
        identity,
        stream_slot,
        unauthenticated_slot,
    } = admission;
    let hub = context.realtime.clone();
    let settings = hub.settings().clone();
    let (sink, mut stream) = socket.split();
    let (queue, outbound) = mpsc::channel(settings.send_queue);
    let control = Arc::new(Control::default());
    let registration = hub.register(control.clone(), identity.as_ref());
    METRICS.websockets_open.inc();
    let last_seen = Arc::new(AtomicI64::new(now_millis()));
    let subscriptions = Subscriptions::default();
    let writer = tokio::spawn(write(
        sink,
        outbound,
        control.clone(),
        hub.clone(),
        last_seen.clone(),
        subscriptions.clone(),
    ));

    let mut connection = Connection {
        context,
        queue,
        control: control.clone(),
        identity,
        subscriptions: subscriptions.clone(),
        typing_sent: HashMap::new(),
        malformed: 0,
        stream_slot,
        unauthenticated_slot,
        registration,
        refused_ops: 0,
    };
    connection.read(&mut stream, &last_seen).await;

    connection.subscriptions.clear();
    drop(connection);
    drop(writer.await);
    METRICS.websockets_open.dec();
}

fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

/// The reading half's state.
struct Connection {
    /// What the connection needs of the instance.
    context: Context,
    /// The connection's bounded queue to its writer.
    queue: mpsc::Sender<Outbound>,
    /// How the connection is closed.
    control: Arc<Control>,
    /// The authenticated user, once known.
    identity: Option<Caller>,
    /// Subscribed rooms and the hub's subscriber ids, shared with the writer, which
    /// drops a room when the hub revokes it.
    subscriptions: Subscriptions,
    /// When a typing signal last went out per room, for the rate limit.
    typing_sent: HashMap<Uuid, Instant>,
    /// Bad frames so far.
    malformed: u32,
    /// This connection's place in its user's count of open streams, once known.
    stream_slot: Option<Slot>,
    /// Until it authenticates: its place in its address's count of unauthenticated
    /// connections.
    unauthenticated_slot: Option<Slot<IpAddr>>,
    /// The connection's place in the hub's registry of streams, which shutdown and
    /// revocations reach; it leaves the registry with the connection.
    registration: Registration,
    /// Ops refused by the rate limits in a row; at `REFUSED_OPS_BEFORE_CLOSE` the
    /// connection is closed with 4008.
    refused_ops: u32,
}

/// Ops refused in a row (each answered with a `rate_limited` error) before the
/// connection is closed with 4008.
const REFUSED_OPS_BEFORE_CLOSE: u32 = 5;

impl Connection {
    async fn read(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocketStream>,
        last_seen: &AtomicI64,
    ) {
        let settings = self.context.realtime.settings().clone();
        let mut recheck = tokio::time::interval(settings.token_recheck);
        recheck.tick().await;
        let opened = tokio::time::Instant::now();
        loop {
            let expiry = match &self.identity {
                Some(identity) => {
                    let left = (identity.expires_at - Utc::now())
                        .to_std()
                        .unwrap_or_default();
                    tokio::time::Instant::now() + left
                }
                None => opened + AUTH_TIMEOUT,
            };
            tokio::select! {
                message = stream.next() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(error)) => {
                            // Frames over the socket's hard cap end up here: the
                            // connection cannot be read any further.
                            tracing::info!(%error, "unreadable WebSocket frame");
                            self.control.close(CLOSE_MALFORMED, "unreadable frame");
                            return;
                        }
                        None => return,
                    };
                    last_seen.store(now_millis(), Ordering::Relaxed);
                    match message {
                        // Boxed: an idle connection's task then stays small, and the
                        // space for handling a frame exists only while it is handled.
                        Message::Text(text) => Box::pin(self.handle_text(&text, settings.max_frame_bytes)).await,
                        Message::Binary(_) => self.malformed(None, "invalid_frame", "Frames are JSON text").await,
                        Message::Close(_) => return,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                () = tokio::time::sleep_until(expiry) => {
                    let reason = if self.identity.is_some() { "token expired" } else { "authenticate first" };
                    self.control.close(CLOSE_UNAUTHORIZED, reason);
                }
                _ = recheck.tick() => {
                    if let Some(identity) = &self.identity
                        && let Err(error) = Box::pin(self.context.db.user_me(identity)).await
                    {
                        let error = ApiError::from(error);
                        if error.status == StatusCode::UNAUTHORIZED {
                            self.control.close(CLOSE_UNAUTHORIZED, "token revoked");
                        }
                    }
                }
                _ = self.control.closed() => return,
            }
        }
    }

    async fn send_frame(&self, frame: String) {
        drop(self.queue.send(Outbound::Frame(frame.into())).await);
    }

    /// Closes the connection once the frames already queued are sent.
    /// Counts the connection among its user's open streams and its tenant's, once.
    async fn count_stream(&mut self, caller: &Caller) -> Result<(), ApiError> {
        if self.stream_slot.is_none() {
            let slot = self.context.limits.streams.open(caller.user_id)?;
            self.context.realtime.admit(caller).await?;
            self.stream_slot = Some(slot);
        }
        self.unauthenticated_slot = None;
        Ok(())
    }

    async fn close_after_queued(&self, code: u16, reason: &str) {
        drop(
            self.queue
                .send(Outbound::Close(code, reason.to_owned()))
                .await,
        );
    }

    async fn malformed(&mut self, reference: Option<&str>, code: &str, message: &str) {
        self.malformed += 1;
        let error = ApiError::new(StatusCode::BAD_REQUEST, code, message);
        self.send_frame(protocol::error(reference, &error)).await;
        if self.malformed > MALFORMED_FRAMES_ALLOWED {
            self.control
                .close(CLOSE_MALFORMED, "too many malformed frames");
        }
    }

    async fn handle_text(&mut self, text: &str, max_frame_bytes: usize) {
        if text.len() > max_frame_bytes {
            let message = format!("Frames must be at most {max_frame_bytes} bytes");
            return self.malformed(None, "frame_too_large", &message).await;
        }
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => {
                return self
                    .malformed(None, "invalid_frame", "The frame is not JSON")
                    .await;
            }
        };
        let reference = value
            .get("ref")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let op = value
            .get("op")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !CLIENT_OPS.contains(&op.as_str()) {
            let message = format!("Unknown op `{op}`; the ops are {}", CLIENT_OPS.join(", "));
            return self
                .malformed(reference.as_deref(), "unknown_op", &message)
                .await;
        }
        let frame = match serde_json::from_value::<ClientFrame>(value) {
            Ok(frame) => frame,
            Err(error) => {
                let message = format!("The `{op}` frame is malformed: {error}");
                return self
                    .malformed(reference.as_deref(), "invalid_frame", &message)
                    .await;
            }
        };
        let span = tracing::debug_span!(
            "websocket op",
            otel.name = %format_args!("ws {op}"),
            otel.kind = "server",
            websocket.op = %op,
        );
        self.handle_frame(frame, reference).instrument(span).await;
    }

    /// Handles a well-formed frame: authentication, or an op of an authenticated
    /// connection.
    async fn handle_frame(&mut self, frame: ClientFrame, reference: Option<String>) {
        if let ClientFrame::Auth { reference, token } = frame {
            return self.authenticate(reference.as_deref(), &token).await;
        }
        let Some(identity) = &self.identity else {
            self.control.close(CLOSE_UNAUTHORIZED, "authenticate first");
            return;
        };
        let caller = identity.clone();
        // Every op is counted against its user's allowance before any work, refused
        // ones included, so that no op (typing to rooms that do not exist, say)
        // reaches the database without a bound.
        let limits = &self.context.limits;
        let budget = match &frame {
            ClientFrame::Send { .. } => Some((&limits.sends, "messages")),
            ClientFrame::Ping { .. } | ClientFrame::Auth { .. } => None,
            _ => Some((&limits.ws_ops, "operations")),
        };
        if let Some((limiter, what)) = budget {
            let allowance = limiter.acquire(&caller.user_id).await;
            if let Some(retry_after) = allowance.retry_after {
                let error = ApiError::too_many(
                    &allowance,
                    "rate_limited",
                    &format!("Too many {what}; retry in {} ms", retry_after.as_millis()),
                );
                self.send_frame(protocol::error(reference.as_deref(), &error))
                    .await;
                self.refused_ops += 1;
                if self.refused_ops >= REFUSED_OPS_BEFORE_CLOSE {
                    self.close_after_queued(CLOSE_RATE_LIMITED, "rate limit exceeded")
                        .await;
                }
                return;
            }
            self.refused_ops = 0;
        }
        let reply = match self.handle_op(&caller, frame).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(error) => protocol::error(reference.as_deref(), &error),
        };
        self.send_frame(reply).await;
    }

    async fn authenticate(&mut self, reference: Option<&str>, token: &str) {
        let verified = self.context.tokens.verify(token);
        let outcome = match verified {
            Ok(caller) => match self.context.db.user_me(&caller).await {
                Ok(user) => match &self.identity {
                    Some(identity) if identity.user_id != caller.user_id => {
                        Err(ApiError::forbidden(
                            "other_user",
                            "A connection stays with the user it was opened for",
                        ))
                    }
                    _ => match self.count_stream(&caller).await {
                        Ok(()) => {
                            self.registration.identify(&caller);
                            self.identity = Some(caller);
                            Ok(user)
                        }
                        Err(error) => Err(error),
                    },
                },
                Err(error) => Err(ApiError::from(error)),
            },
            Err(error) => Err(error),
        };
        match outcome {
            Ok(user) => {
                let result = serde_json::json!({"user": user.to_json()});
                self.send_frame(protocol::ack(reference, &result)).await;
            }
            Err(error) => {
                self.send_frame(protocol::error(reference, &error)).await;
                if self.identity.is_none() {
                    // Too many connections, the user's or the tenant's quota: back off.
                    if error.status == poem::http::StatusCode::TOO_MANY_REQUESTS {
                        self.close_after_queued(CLOSE_RATE_LIMITED, "too many connections")
                            .await;
                    } else {
                        self.close_after_queued(CLOSE_UNAUTHORIZED, "invalid token")
                            .await;
                    }
                }
            }
        }
    }

    /// Handles one op; answers the frame to send back, if any.
    async fn handle_op(
        &mut self,
        caller: &Caller,
        frame: ClientFrame,
    ) -> Result<Option<String>, ApiError> {
        let db = &self.context.db;
        let max_bytes = self.context.max_message_bytes;
        Ok(Some(match frame {
            ClientFrame::Auth { .. } => return Ok(None),
            ClientFrame::Subscribe {
                reference,
                room_id,
                since,
            } => {
                let start = self.subscribe(caller, room_id, since).await?;
                // The ack travels with the subscription, ahead of its events.
                let ack = protocol::ack(
                    reference.as_deref(),
                    &serde_json::json!({"room_id": room_id, "seq": start.catch_up_to}),
                );
                self.queue
                    .send(Outbound::Subscribed(Box::new(Subscribed { start, ack })))
                    .await
                    .map_err(|_| closed())?;
                return Ok(None);
            }
            ClientFrame::Unsubscribe { reference, room_id } => {
                // Dropped here: the subscription ends.
                if self.subscriptions.remove(room_id).is_none() {
                    return Err(not_subscribed());
                }
                self.queue
                    .send(Outbound::Unsubscribed(room_id))
                    .await
                    .map_err(|_| closed())?;
                protocol::ack(
                    reference.as_deref(),
                    &serde_json::json!({"room_id": room_id}),
                )
            }
            ClientFrame::Send {
                reference,
                room_id,
                kind,
                body,
                attachment,
                reply_to_id,
                client_id,
                parent_id,
                show_in_room,
                mentions,
                mention_room,
            } => {
                let message = Draft {
                    kind,
                    body,
                    attachment,
                    reply_to_id,
                    client_id,
                    parent_id,
                    show_in_room,
                    mentions,
                    mention_room,
                }
                .into_message();
                // Queued now, in the connection's order, and answered when written,
                // so that a client's pipelined sends share batches.
                let written = self.context.writer.submit(caller, room_id, message);
                let queue = self.queue.clone();
                tokio::spawn(async move {
                    let frame = match written.await {
                        Ok(sent) => protocol::ack(reference.as_deref(), &sent.message.to_json()),
                        Err(error) => protocol::error(reference.as_deref(), &ApiError::from(error)),
                    };
                    drop(queue.send(Outbound::Frame(frame.into())).await);
                });
                return Ok(None);
            }
            ClientFrame::Edit {
                reference,
                room_id,
                message_id,
                body,
                mentions,
                mention_room,
            } => {
                let edit = MessageEdit {
                    body: &body,
                    attachment: None,
                    mentions: mentions.as_deref(),
                    mention_room,
                };
                let message = db
                    .message_edit(caller, room_id, message_id, edit, max_bytes)
                    .await?;
                protocol::ack(reference.as_deref(), &message.to_json())
            }
            ClientFrame::Delete {
                reference,
                room_id,
                message_id,
            } => {
                db.message_delete(caller, room_id, message_id).await?;
                protocol::ack(
                    reference.as_deref(),
                    &serde_json::json!({"message_id": message_id, "deleted": true}),
                )
            }
            ClientFrame::React {
                reference,
                room_id,
                message_id,
                emoji,
                remove,
            } => {
                let message = db
                    .reaction_set(caller, room_id, message_id, &emoji, !remove)
                    .await?;
                protocol::ack(reference.as_deref(), &message.to_json())
            }
            ClientFrame::Read {
                reference,
                room_id,
                seq,
            } => {
                let marker = db.mark_read(caller, room_id, seq).await?;
                protocol::ack(reference.as_deref(), &marker.to_json())
            }
            ClientFrame::Typing { reference, room_id } => {
                let now = Instant::now();
                let recent = self
                    .typing_sent
                    .get(&room_id)
                    .is_some_and(|sent| now.duration_since(*sent) < TYPING_INTERVAL);
                if !recent {
                    db.typing(caller, room_id).await?;
                    self.typing_sent.insert(room_id, now);
                }
                match reference {
                    Some(reference) => {
                        protocol::ack(Some(&reference), &serde_json::json!({"room_id": room_id}))
                    }
                    None => return Ok(None),
                }
            }
            ClientFrame::Ping { reference } => ServerFrame::Pong {
                reference: reference.as_deref(),
            }
            .text(),
        }))
    }

    /// Subscribes to a room: authorises, holds the room's events, LISTENs, and reads
    /// the room's seq once LISTEN is active.
    async fn subscribe(
        &mut self,
        caller: &Caller,
        room_id: Uuid,
        since: Option<i64>,
    ) -> Result<Start, ApiError> {
        if self.subscriptions.contains(room_id) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_subscribed",
                "This connection already receives this room",
            ));
        }
        if since.is_some_and(|since| since < 0) {
            return Err(ApiError::invalid(
                "since",
                "invalid_seq",
                "A seq is never negative",
            ));
        }
        let most = self.context.realtime.settings().max_subscriptions;
        if self.subscriptions.len() >= most {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_subscriptions",
                format!("A connection may subscribe to at most {most} rooms at once"),
            ));
        }
        let grant = self.context.db.room_subscribe(caller, room_id).await?;
        self.queue
            .send(Outbound::Pending(room_id))
            .await
            .map_err(|_| closed())?;
        let subscriber = Subscriber {
            user_id: caller.user_id,
            queue: self.queue.clone(),
            control: self.control.clone(),
        };
        match self
            .context
            .realtime
            .subscribe(caller, &grant, subscriber, since)
            .await
        {
            Ok((subscription, start)) => {
                self.subscriptions.insert(room_id, subscription);
                Ok(start)
            }
            Err(error) => {
                drop(self.queue.send(Outbound::Unsubscribed(room_id)).await);
                Err(error.into())
            }
        }
    }
}

fn closed() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "closing",
        "The connection is closing",
    )
}

fn not_subscribed() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "not_subscribed",
        "This connection does not receive this room",
    )
}

/// The rooms a connection receives. Shared with the writer, which drops a room's
/// subscription when the fan-out ends it; whatever is left ends with the connection.
#[derive(Clone, Default)]
struct Subscriptions(Arc<std::sync::Mutex<HashMap<Uuid, Subscription>>>);

impl Subscriptions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Subscription>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn contains(&self, room_id: Uuid) -> bool {
        self.lock().contains_key(&room_id)
    }

    fn insert(&self, room_id: Uuid, subscription: Subscription) {
        self.lock().insert(room_id, subscription);
    }

    /// Takes a room's subscription out; dropping it ends the subscription.
    fn remove(&self, room_id: Uuid) -> Option<Subscription> {
        self.lock().remove(&room_id)
    }

    /// Ends every subscription.
    fn clear(&self) {
        // Taken out first, so that they end without the map's lock held.
        let all = std::mem::take(&mut *self.lock());
        drop(all);
    }
}

/// A room's state in the writer.
enum RoomState {
    /// Subscribing: events are held until the ack.
    Pending(Vec<Arc<EventFrame>>),
    /// Subscribed: events go through the cursor.
    Active(RoomCursor),
}

impl RoomState {
    /// Whether the room has events to read from the log.
    fn is_behind(&self) -> bool {
        matches!(self, Self::Active(cursor) if cursor.is_behind())
    }

    /// The room's cursor, when it has events to read from the log.
    fn behind(&mut self) -> Option<&mut RoomCursor> {
        match self {
            Self::Active(cursor) if cursor.is_behind() => Some(cursor),
            _ => None,
        }
    }
}

/// The writing half: sends queued frames in order, pings, and closes when asked.
async fn write(
    mut sink: SplitSink<WebSocketStream, Message>,
    mut outbound: mpsc::Receiver<Outbound>,
    control: Arc<Control>,
    hub: Node,
    last_seen: Arc<AtomicI64>,
    subscriptions: Subscriptions,
) {
    let settings = hub.settings().clone();
    let mut rooms: HashMap<Uuid, RoomState> = HashMap::new();
    let mut pings = tokio::time::interval(settings.ping_interval);
    pings.tick().await;
    let dead_after = i64::try_from(settings.ping_interval.as_millis() * 3).unwrap_or(i64::MAX);
    loop {
        let mut texts = Vec::new();
        let catching_up = rooms.values().any(RoomState::is_behind);
        tokio::select! {
            biased;
            (code, reason) = control.closed() => {
                drop(sink.send(Message::Close(Some((CloseCode::from(code), reason)))).await);
                break;
            }
            message = outbound.recv() => {
                let Some(message) = message else { break };
                // Take what else is already queued too, and write it all with one flush.
                let mut next = Some(message);
                let mut taken = 0;
                while let Some(message) = next.take() {
                    handle_outbound(message, &mut rooms, &hub, &control, &subscriptions, &mut texts);
                    taken += 1;
                    if taken < WRITE_BURST && texts.iter().map(String::len).sum::<usize>() < WRITE_BURST_BYTES {
                        next = outbound.try_recv().ok();
                    }
                }
            }
            _ = pings.tick() => {
                if now_millis() - last_seen.load(Ordering::Relaxed) > dead_after {
                    tracing::info!("dropping a dead connection");
                    break;
                }
                if sink.send(Message::Ping(Vec::new())).await.is_err() {
                    break;
                }
                continue;
            }
            () = std::future::ready(()), if catching_up => {}
        }
        // One page of the log for a room catching up, written before the next is read:
        // a replay goes out at the pace the peer reads it, queued items first.
        if let Some(cursor) = rooms.values_mut().find_map(RoomState::behind) {
            let mut deliveries = Vec::new();
            if let Err(error) = cursor.read_page(hub.db(), &mut deliveries).await {
                tracing::warn!(%error, "could not read the log for a subscriber");
                control.close(
                    CloseCode::Error.into(),
                    "could not read the room's log; reconnect and resume",
                );
            }
            texts.extend(deliveries.into_iter().map(Delivery::into_text));
        }
        if texts.is_empty() {
            continue;
        }
        let mut written = true;
        for text in texts {
            if sink.feed(Message::Text(text)).await.is_err() {
                written = false;
                break;
            }
        }
        if !written || sink.flush().await.is_err() {
            control.close(CloseCode::Away.into(), "gone");
        }
    }
    drop(sink.close().await);
    // However the writer ended (a dead peer, a failed write), the reader stops too, so
    // that the connection's subscriptions and presence end with it.
    control.close(CloseCode::Away.into(), "connection ended");
}

fn handle_outbound(
    message: Outbound,
    rooms: &mut HashMap<Uuid, RoomState>,
    hub: &Node,
    control: &Control,
    subscriptions: &Subscriptions,
    texts: &mut Vec<String>,
) {
    let mut deliveries = Vec::new();
    apply_outbound(
        message,
        rooms,
        hub,
        control,
        subscriptions,
        texts,
        &mut deliveries,
    );
    texts.extend(deliveries.into_iter().map(Delivery::into_text));
}

/// Applies one queued item: frames it produces go to `texts`, events to `deliveries`
/// (after the frames already in `texts`).
fn apply_outbound(
    message: Outbound,
    rooms: &mut HashMap<Uuid, RoomState>,
    hub: &Node,
    control: &Control,
    subscriptions: &Subscriptions,
    texts: &mut Vec<String>,
    deliveries: &mut Vec<Delivery>,
) {
    let settings = hub.settings();
    match message {
        Outbound::Frame(text) => texts.push(text.to_string()),
        Outbound::Event(frame) => match rooms.get_mut(&frame.room_id) {
            Some(RoomState::Pending(held)) => {
                held.push(frame);
                if held.len() > settings.send_queue {
                    control.close(CLOSE_TOO_SLOW, "too slow to keep up; reconnect and resume");
                }
            }
            Some(RoomState::Active(cursor)) => {
                cursor.accept(frame, settings.replay_window, deliveries);
            }
            None => {}
        },
        Outbound::Pending(room_id) => {
            rooms.insert(room_id, RoomState::Pending(Vec::new()));
        }
        Outbound::Subscribed(subscribed) => {
            let Subscribed {
                start:
                    Start {
                        mut cursor,
                        catch_up_to,
                    },
                ack,
            } = *subscribed;
            texts.push(ack);
            let held = match rooms.remove(&cursor.room_id()) {
                Some(RoomState::Pending(held)) => held,
                _ => Vec::new(),
            };
            cursor.catch_up_to(catch_up_to, settings.replay_window, deliveries);
            for frame in held {
                cursor.accept(frame, settings.replay_window, deliveries);
            }
            rooms.insert(cursor.room_id(), RoomState::Active(cursor));
        }
        Outbound::Unsubscribed(room_id) => {
            rooms.remove(&room_id);
        }
        Outbound::Close(code, reason) => control.close(code, &reason),
        Outbound::Revoked(room_id) => {
            rooms.remove(&room_id);
            drop(subscriptions.remove(room_id));
            texts.push(
                ServerFrame::Unsubscribed {
                    room_id,
                    reason: "not_a_member",
                }
                .text(),
            );
        }
    }
}
