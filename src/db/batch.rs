//! Batched message writes (invariant 10): the sends waiting at the same moment go to
//! Postgres as one call of `hark_api.message_send_batch`, one transaction with one
//! notification per room, so that notifying commits do not cap throughput. A send
//! that arrives alone goes at once, through `hark_api.message_send`. Every sender gets
//! its own answer: a bad item fails alone.

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
    /// The message (for `hark_api.fail`, the stable error code).
    pub message: String,
    /// The detail.
    pub detail: Option<String>,
    /// The column (for `hark_api.fail`, the input field).
    pub column: Option<String>,
    /// The constraint violated, if any.
    pub constraint: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Ok(Box<SentMessage>),
    Error(ItemFailure),
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
                message: "invalid_text".to_owned(),
                detail: Some("Text may not contain the NUL character (U+0000)".to_owned()),
                column: Some(field.to_owned()),
                constraint: None,
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
/// writes them.
async fn work(
    db: Database,
    mut receiver: mpsc::UnboundedReceiver<PendingSend>,
    settings: BatchSettings,
    stats: Arc<BatchStats>,
) {
    loop {
        let mut batch = Vec::new();
        match receiver.recv().await {
            Some(first) => batch.push(first),
            None => return,
        }
        while batch.len() < settings.max_batch {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        stats
            .waiting
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
        METRICS.write_batch_size.observe(batch.len() as f64);
        let span = batch_span(&batch);
        async {
            // The trace context of the write, carried by its notifications to the
            // instances that fan its events out.
            let traceparent = crate::telemetry::current_traceparent();
            if batch.len() == 1 {
                stats.single_writes.fetch_add(1, Ordering::Relaxed);
                if let Some(single) = batch.pop() {
                    let result = db
                        .message_send(
                            &single.caller,
                            single.room_id,
                            &single.message,
                            settings.max_body_bytes,
                            traceparent.as_deref(),
                        )
                        .await;
                    let _ = single.reply.send(result);
                }
                return;
            }
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats
                .batched_items
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            write_batch(&db, batch, settings.max_body_bytes, traceparent.as_deref()).await;
        }
        .instrument(span)
        .await;
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

async fn write_batch(
    db: &Database,
    batch: Vec<PendingSend>,
    max_body_bytes: i32,
    traceparent: Option<&str>,
) {
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
        })
        .collect();
    let answer: Result<Vec<Outcome>, DatabaseError> = db
        .call(
            "message_send_batch",
            &[&Json(&items), &max_body_bytes, &traceparent],
        )
        .await;
    drop(items);
    match answer {
        Ok(outcomes) if outcomes.len() == batch.len() => {
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                let result = match outcome {
                    Outcome::Ok(sent) => Ok(*sent),
                    Outcome::Error(failure) => Err(DatabaseError::Item {
                        context: "message_send",
                        failure,
                    }),
                };
                let _ = pending.reply.send(result);
            }
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
}
