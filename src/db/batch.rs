//! Batched message writes (invariant 10): the sends waiting at the same moment go to
//! Postgres as one call of `hark_api.message_send_batch`, one transaction with one
//! notification per room, so that notifying commits do not cap throughput. A send
//! that arrives alone goes at once, through `hark_api.message_send`. Every sender gets
//! its own answer: a bad item fails alone.
//!
//! A worker never waits for a room's lock: a room another transaction holds (a room
//! being changed, a slow statement) is skipped by the batch, and that room's sends go
//! aside, to a task of their own that waits for the lock, in order, until the room's
//! queue is empty; meanwhile the other rooms of the shard are written as usual.

use std::collections::HashMap;
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use opentelemetry::trace::TraceContextExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::Json;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::{Attachment, Database, DatabaseError, NewMessage, SentMessage};
use crate::metrics::METRICS;

/// How the writer batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Shards of rooms, each with its own worker: at most this many batches in flight.
    pub workers: usize,
    /// The most sends in one batch.
    pub max_batch: usize,
    /// The largest message body, in bytes.
    pub max_body_bytes: i32,
}

/// An error raised inside the batch for one item, as Postgres reported it.
#[derive(Debug, Clone, Deserialize)]
pub struct ItemFailure {
    /// The SQLSTATE.
    pub sqlstate: String,
    /// The message (for `hark_api.fail`, the stable error code and the input field).
    pub message: String,
    /// The detail.
    pub detail: Option<String>,
    /// The constraint violated, if any.
    pub constraint: Option<String>,
    /// The hint (for `hark_api.fail`'s 429s, the seconds to wait).
    #[serde(default)]
    pub hint: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Ok(Box<SentMessage>),
    Error(ItemFailure),
    /// The room was held by another transaction: nothing was checked or written.
    Busy(serde::de::IgnoredAny),
}

#[derive(Debug, Serialize)]
struct BatchItem<'a> {
    tenant_id: Uuid,
    user_id: Uuid,
    session_id: Uuid,
    room_id: Uuid,
    message_id: Uuid,
    kind: &'static str,
    body: &'a str,
    attachment: Option<&'a Attachment>,
    reply_to_id: Option<Uuid>,
    client_id: Option<&'a str>,
    parent_id: Option<Uuid>,
    show_in_room: bool,
    mentions: &'a [Uuid],
    mention_room: bool,
}

/// A send waiting for its batch.
struct PendingSend {
    /// Who sends.
    caller: Caller,
    /// Where.
    room_id: Uuid,
    /// What.
    message: NewMessage,
    /// Where the answer goes.
    reply: oneshot::Sender<Result<SentMessage, DatabaseError>>,
    /// The span of the request or WebSocket operation that sent it, which the write
    /// joins (the first of a batch as parent, the others as links).
    span: tracing::Span,
}

/// How much batching happened, for metrics and tests.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Sends written alone.
    pub single_writes: AtomicU64,
    /// Batches of two or more sends written.
    pub batches: AtomicU64,
    /// Sends written in those batches.
    pub batched_items: AtomicU64,
    /// Sends queued and not yet taken by their worker: what the next batch will hold.
    pub waiting: AtomicU64,
    /// Sends that found their room held by another transaction and went aside.
    pub sent_aside: AtomicU64,
}

/// The instance's message writer: one queue and worker per shard of rooms, so that
/// one instance's batches never wait for each other's room locks and sends to one
/// room are written in the order they were submitted.
#[derive(Clone)]
pub struct MessageWriter {
    /// Sends waiting for their shard's worker.
    shards: Arc<Vec<mpsc::UnboundedSender<PendingSend>>>,
    /// Counts of what was written how.
    pub stats: Arc<BatchStats>,
}

impl MessageWriter {
    /// Starts one worker per shard.
    pub fn start(db: Database, settings: BatchSettings) -> Self {
        let stats = Arc::new(BatchStats::default());
        let shards = (0..settings.workers.max(1))
            .map(|_| {
                let (queue, receiver) = mpsc::unbounded_channel();
                tokio::spawn(work(db.clone(), receiver, settings, stats.clone()));
                queue
            })
            .collect();
        Self {
            shards: Arc::new(shards),
            stats,
        }
    }

    /// Queues a message at once (so that sends submitted one after the other keep
    /// their order) and answers a future of its result.
    pub fn submit(
        &self,
        caller: &Caller,
        room_id: Uuid,
        message: NewMessage,
    ) -> impl Future<Output = Result<SentMessage, DatabaseError>> + Send + use<> {
        let (reply, answer) = oneshot::channel();
        // A NUL character would make Postgres refuse the whole batch's JSON, failing
        // the other senders' messages with it: it is refused here, alone.
        let refused = nul_field(&message).map(|field| DatabaseError::Item {
            context: "message_send",
            failure: ItemFailure {
                sqlstate: "HK422".to_owned(),
                message: format!("invalid_text {field}"),
                detail: Some("Text may not contain the NUL character (U+0000)".to_owned()),
                constraint: None,
                hint: None,
            },
        });
        if let Some(refused) = refused {
            return futures_util::future::Either::Left(std::future::ready(Err(refused)));
        }
        let pending = PendingSend {
            caller: caller.clone(),
            room_id,
            message,
            reply,
            span: tracing::Span::current(),
        };
        let shard = (room_id.as_u128() % self.shards.len() as u128) as usize;
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        let queued = self.shards[shard].send(pending).is_ok();
        futures_util::future::Either::Right(async move {
            if !queued {
                return Err(DatabaseError::WriterStopped);
            }
            answer.await.map_err(|_| DatabaseError::WriterStopped)?
        })
    }

    /// Sends a message, batched with whatever else is being sent at the moment.
    pub async fn send(
        &self,
        caller: &Caller,
        room_id: Uuid,
        message: NewMessage,
    ) -> Result<SentMessage, DatabaseError> {
        self.submit(caller, room_id, message).await
    }
}

/// A worker: takes the first waiting send and every other one waiting behind it, and
/// writes them; sends of a room gone aside follow the ones before them there.
async fn work(
    db: Database,
    mut receiver: mpsc::UnboundedReceiver<PendingSend>,
    settings: BatchSettings,
    stats: Arc<BatchStats>,
) {
    let (done, mut settled) = mpsc::unbounded_channel();
    let mut aside = Aside {
        rooms: HashMap::new(),
        done,
        db: db.clone(),
        settings,
        stats: stats.clone(),
    };
    loop {
        let first = tokio::select! {
            biased;
            Some((room_id, written)) = settled.recv() => {
                aside.settle(room_id, written);
                continue;
            }
            first = receiver.recv() => match first {
                Some(first) => first,
                None => return,
            },
        };
        let mut batch = Vec::new();
        let mut taken = 1;
        aside.route(first, &mut batch);
        while batch.len() < settings.max_batch {
            match receiver.try_recv() {
                Ok(next) => {
                    taken += 1;
                    aside.route(next, &mut batch);
                }
                Err(_) => break,
            }
        }
        stats.waiting.fetch_sub(taken, Ordering::Relaxed);
        if batch.is_empty() {
            continue;
        }
        let writes = by_tenant(batch, db.is_citus())
            .into_iter()
            .map(|(tenant_id, group)| write_group(&db, tenant_id, group, settings, &stats));
        for busy in futures_util::future::join_all(writes).await {
            for pending in busy {
                aside.send(pending);
            }
        }
    }
}

/// The sends of a batch as the calls that write them: all together (`None`), or on
/// Citus one call per tenant, each in the order the sends were taken. Citus runs a
/// call that names one tenant whole on that tenant's worker (`sql/citus/delegate.sql`);
/// a call of several tenants would run on the coordinator, every statement of it a
/// round trip to a worker. The calls of a batch go at once; a room's sends are all in
/// one of them, so their order holds.
fn by_tenant(batch: Vec<PendingSend>, split: bool) -> Vec<(Option<Uuid>, Vec<PendingSend>)> {
    if !split {
        return vec![(None, batch)];
    }
    let mut groups: Vec<(Option<Uuid>, Vec<PendingSend>)> = Vec::new();
    for pending in batch {
        let tenant_id = Some(pending.caller.tenant_id);
        match groups.iter_mut().find(|(group, _)| *group == tenant_id) {
            Some((_, group)) => group.push(pending),
            None => groups.push((tenant_id, vec![pending])),
        }
    }
    groups
}

/// Writes one call's sends: alone through `message_send`, or as a batch (of the one
/// tenant `tenant_id` names, or of any). Answers the sends whose room was busy.
async fn write_group(
    db: &Database,
    tenant_id: Option<Uuid>,
    mut batch: Vec<PendingSend>,
    settings: BatchSettings,
    stats: &BatchStats,
) -> Vec<PendingSend> {
    METRICS.write_batch_size.observe(batch.len() as f64);
    let span = batch_span(&batch);
    async {
        // The trace context of the write, carried by its notifications to the
        // instances that fan its events out.
        let traceparent = crate::telemetry::current_traceparent();
        if batch.len() == 1 {
            stats.single_writes.fetch_add(1, Ordering::Relaxed);
            let Some(single) = batch.pop() else {
                return Vec::new();
            };
            let result = db
                .message_send(
                    &single.caller,
                    single.room_id,
                    &single.message,
                    settings.max_body_bytes,
                    traceparent.as_deref(),
                    false,
                )
                .await;
            return match result {
                Err(error) if error.is_room_busy() => vec![single],
                result => {
                    let _ = single.reply.send(result);
                    Vec::new()
                }
            };
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .batched_items
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        write_batch(
            db,
            tenant_id,
            batch,
            settings.max_body_bytes,
            traceparent.as_deref(),
        )
        .await
    }
    .instrument(span)
    .await
}

/// The rooms of a shard whose sends go aside: each has a task that writes them one
/// after the other, waiting for the room's lock, and says when it has written all it
/// was handed; then the room's sends are batched again. A room's sends are never in
/// two places at once, so they are written in the order they were submitted.
struct Aside {
    /// By room: the queue of its task, and how many sends it was handed.
    rooms: HashMap<Uuid, (mpsc::UnboundedSender<PendingSend>, u64)>,
    /// Where the tasks say how many sends they have written.
    done: mpsc::UnboundedSender<(Uuid, u64)>,
    /// The database.
    db: Database,
    /// The writer's settings.
    settings: BatchSettings,
    /// The writer's counts.
    stats: Arc<BatchStats>,
}

impl Aside {
    /// Puts a send into the batch, or aside behind its room's earlier sends.
    fn route(&mut self, pending: PendingSend, batch: &mut Vec<PendingSend>) {
        if self.rooms.contains_key(&pending.room_id) {
            self.send(pending);
        } else {
            batch.push(pending);
        }
    }

    /// Hands a send to its room's task, starting one if none runs.
    fn send(&mut self, pending: PendingSend) {
        self.stats.sent_aside.fetch_add(1, Ordering::Relaxed);
        let room_id = pending.room_id;
        let (queue, handed) = self.rooms.entry(room_id).or_insert_with(|| {
            let (queue, receiver) = mpsc::unbounded_channel();
            tokio::spawn(write_aside(
                self.db.clone(),
                room_id,
                receiver,
                self.done.clone(),
                self.settings.max_body_bytes,
            ));
            (queue, 0)
        });
        *handed += 1;
        if let Err(mpsc::error::SendError(pending)) = queue.send(pending) {
            let _ = pending.reply.send(Err(DatabaseError::WriterStopped));
        }
    }

    /// A room's task has written `written` sends: when that is all it was handed, the
    /// room's sends are batched again (the task ends once its queue is dropped).
    fn settle(&mut self, room_id: Uuid, written: u64) {
        if self
            .rooms
            .get(&room_id)
            .is_some_and(|(_, handed)| *handed == written)
        {
            self.rooms.remove(&room_id);
        }
    }
}

/// A room's task of sends gone aside: writes them in order, each waiting for the
/// room's lock (within the statement timeout), and reports each time its queue is
/// empty how many it has written.
async fn write_aside(
    db: Database,
    room_id: Uuid,
    mut queue: mpsc::UnboundedReceiver<PendingSend>,
    done: mpsc::UnboundedSender<(Uuid, u64)>,
    max_body_bytes: i32,
) {
    let mut written = 0;
    loop {
        let pending = match queue.try_recv() {
            Ok(pending) => pending,
            Err(mpsc::error::TryRecvError::Empty) => {
                let _ = done.send((room_id, written));
                match queue.recv().await {
                    Some(pending) => pending,
                    None => return,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => return,
        };
        let span = pending.span.clone();
        let result = async {
            let traceparent = crate::telemetry::current_traceparent();
            db.message_send(
                &pending.caller,
                pending.room_id,
                &pending.message,
                max_body_bytes,
                traceparent.as_deref(),
                true,
            )
            .await
        }
        .instrument(span)
        .await;
        let _ = pending.reply.send(result);
        written += 1;
    }
}

/// The first field of a message holding a NUL character, which Postgres text cannot.
fn nul_field(message: &NewMessage) -> Option<&'static str> {
    let has_nul = |text: &str| text.contains('\0');
    if has_nul(&message.body) {
        return Some("body");
    }
    if message.client_id.as_deref().is_some_and(has_nul) {
        return Some("client_id");
    }
    let attachment = message.attachment.as_ref()?;
    let texts = [
        Some(attachment.url.as_str()),
        attachment.mime_type.as_deref(),
        attachment.name.as_deref(),
    ];
    texts
        .into_iter()
        .flatten()
        .any(has_nul)
        .then_some("attachment")
}

/// The span of one write: a child of the first sender's span, linked to the others'.
fn batch_span(batch: &[PendingSend]) -> tracing::Span {
    let Some(first) = batch.first() else {
        return tracing::Span::none();
    };
    let span = tracing::debug_span!(
        parent: &first.span,
        "write batch",
        otel.name = "write batch",
        messaging.batch.message_count = batch.len() as i64,
    );
    if !span.is_disabled() {
        for pending in &batch[1..] {
            let linked = pending.span.context().span().span_context().clone();
            if linked.is_valid() {
                span.add_link(linked);
            }
        }
    }
    span
}

/// Writes a batch and answers its senders; answers the sends whose room was busy,
/// unanswered, in their order.
async fn write_batch(
    db: &Database,
    tenant_id: Option<Uuid>,
    batch: Vec<PendingSend>,
    max_body_bytes: i32,
    traceparent: Option<&str>,
) -> Vec<PendingSend> {
    let items: Vec<BatchItem<'_>> = batch
        .iter()
        .map(|pending| BatchItem {
            tenant_id: pending.caller.tenant_id,
            user_id: pending.caller.user_id,
            session_id: pending.caller.session_id,
            room_id: pending.room_id,
            message_id: pending.message.message_id,
            kind: pending.message.kind.as_str(),
            body: &pending.message.body,
            attachment: pending.message.attachment.as_ref(),
            reply_to_id: pending.message.reply_to_id,
            client_id: pending.message.client_id.as_deref(),
            parent_id: pending.message.parent_id,
            show_in_room: pending.message.show_in_room,
            mentions: &pending.message.mentions,
            mention_room: pending.message.mention_room,
        })
        .collect();
    let answer: Result<Vec<Outcome>, DatabaseError> = db
        .call(
            "message_send_batch",
            &[&tenant_id, &Json(&items), &max_body_bytes, &traceparent],
        )
        .await;
    drop(items);
    match answer {
        Ok(outcomes) if outcomes.len() == batch.len() => {
            let mut busy = Vec::new();
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                let result = match outcome {
                    Outcome::Ok(sent) => Ok(*sent),
                    Outcome::Error(failure) => Err(DatabaseError::Item {
                        context: "message_send",
                        failure,
                    }),
                    Outcome::Busy(_) => {
                        busy.push(pending);
                        continue;
                    }
                };
                let _ = pending.reply.send(result);
            }
            return busy;
        }
        Ok(outcomes) => {
            tracing::error!(
                sent = batch.len(),
                answered = outcomes.len(),
                "a batch answered the wrong number of items"
            );
            for pending in batch {
                let _ = pending.reply.send(Err(DatabaseError::WriterStopped));
            }
        }
        Err(error) => {
            // The whole transaction failed (the connection, the server): every sender
            // gets the error; nothing of the batch was written.
            let message = error.to_string();
            tracing::warn!(error = %message, items = batch.len(), "a batch failed as a whole");
            for pending in batch {
                let _ = pending.reply.send(Err(DatabaseError::Batch {
                    message: message.clone(),
                }));
            }
        }
    }
    Vec::new()
}
