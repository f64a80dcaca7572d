//! Webhooks: every instance's delivery worker, which takes deliveries from the
//! database's outbox and POSTs them, signed, to the tenants' endpoints.
//!
//! The outbox (`hark.webhook_outbox`) is written by the SQL that writes the events, in
//! the same transaction, never from memory: one small row per write, naming the
//! stretch of a room's log written (`hark_api.webhook_enqueue_room_events`) or holding
//! other events (`hark_api.webhook_enqueue`). Its commit NOTIFYs `hark_webhooks`,
//! which wakes the worker of every instance (through the real-time broker's one
//! LISTEN connection); a poll each second catches retries that fall due and wake-ups
//! missed while that connection was down. The worker first fans outbox rows out into
//! per-endpoint deliveries (`hark.webhook_deliveries`, `hark_api.webhook_fanout`: one
//! instance at a time, in outbox order, removing each row in the transaction that
//! creates its deliveries), then claims deliveries.
//!
//! Guarantees, and how: *at least once*: a delivery leaves the queue only when an
//! endpoint answered 2xx, or after `HARK_WEBHOOK_RETRY_FOR_SECONDS` of failures; a
//! claimed run is leased (`HARK_WEBHOOK_LEASE_SECONDS`) rather than locked, so an
//! instance killed mid-delivery leaves it to be taken again when the lease ends, under
//! the same `webhook-id`. *Order per room per endpoint*: deliveries of one endpoint
//! and one order key (the room, or the tenant for events outside rooms) go out one
//! after the other in outbox order; a failing one holds its later ones back until it
//! is delivered or given up. *One attempt at a time*: claims skip locked rows and
//! leased runs, so a delivery is attempted by one instance at a time. *Bounded*: at
//! most `HARK_WEBHOOK_ENDPOINT_CONCURRENCY` runs (so requests) per endpoint per
//! instance, `HARK_WEBHOOK_CONCURRENCY` runs per instance, `HARK_WEBHOOK_TIMEOUT_MS`
//! per attempt, 500 characters of an answer kept. *Fair*: each claim visits the
//! queue's chains round-robin from where the instance's last claim stopped, and costs
//! an index probe per chain visited, not a read of the backlog.

mod signing;
mod target;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::db::{
    ChainKey, ClaimedDelivery, ClaimedRun, Database, DeliveryOutcome, OutcomeKind, RetryPolicy,
};
use crate::metrics::METRICS;

pub use signing::generate_secret;
pub use target::{UrlRefusal, check_url};

/// How often the worker looks for due retries without being woken.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Outbox rows (one write of a room, or other events) fanned out into deliveries per
/// statement.
const FANOUT_BATCH: i32 = 200;

/// The least time between two claims made because deliveries were queued: a busy
/// write path queues some in every transaction, and each wakes every instance, so
/// wake-ups are gathered rather than each paid with a claim. It is the most it adds
/// to a delivery's latency.
const WAKE_PAUSE: Duration = Duration::from_millis(25);
/// How long to wait after the database failed the worker.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// How often finished deliveries past their keeping time are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Finished deliveries deleted per sweep transaction.
const SWEEP_BATCH: i32 = 1000;
/// The most characters of an endpoint's answer kept with the delivery.
const SNIPPET_CHARS: usize = 500;

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Whether `http` URLs and non-public addresses are allowed (tests, private
    /// networks).
    pub allow_private: bool,
    /// The most an attempt may take, answer included.
    pub timeout: Duration,
    /// Retries and giving up.
    pub retry: RetryPolicy,
    /// Runs this instance attempts at once; 0: it delivers none.
    pub concurrency: usize,
    /// Runs out at once per endpoint from this instance.
    pub endpoint_concurrency: i32,
    /// Deliveries per run.
    pub run_length: i32,
    /// How long a claimed run is this instance's; another instance takes it again after.
    pub lease: Duration,
    /// How long finished deliveries are kept (for the list and for replays).
    pub keep_seconds: i32,
    /// How long a rotated-out secret still signs.
    pub secret_grace_seconds: i32,
}

/// The instance's delivery worker; waking it makes it claim at once.
#[derive(Clone)]
pub struct Deliverer {
    /// Wakes the worker (a notification on `hark_webhooks`).
    wake: Arc<Notify>,
}

impl Deliverer {
    /// Builds the HTTP client and starts the worker, unless the instance delivers none.
    pub fn start(db: Database, settings: WebhookSettings) -> anyhow::Result<Self> {
        let wake = Arc::new(Notify::new());
        if settings.concurrency == 0 {
            return Ok(Self { wake });
        }
        let client = http_client(&settings)?;
        tokio::spawn(work(
            Worker {
                db,
                client,
                settings: Arc::new(settings),
            },
            wake.clone(),
        ));
        Ok(Self { wake })
    }

    /// The waker, for the real-time node to call on each `hark_webhooks` notification.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

/// What a run's task needs.
#[derive(Clone)]
struct Worker {
    db: Database,
    client: reqwest::Client,
    settings: Arc<WebhookSettings>,
}

/// The client every attempt uses: TLS by rustls with the web's root certificates, no
/// redirects (a redirect could lead anywhere, and a receiver is expected to answer at its URL), the attempt's timeout, and, unless
/// private addresses are allowed, a resolver that answers public addresses only.
fn http_client(settings: &WebhookSettings) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .user_agent(concat!("Hark-Webhooks/", env!("CARGO_PKG_VERSION")));
    if !settings.allow_private {
        builder = builder.dns_resolver(Arc::new(target::PublicOnly));
    }
    builder
        .build()
        .context("could not build the webhook client")
}

/// The worker's loop: claim as many runs as there is room for, attempt each in a task
/// of its own, and claim again when one ends, when woken, or each second. Chains are
/// claimed round-robin (each claim starts past the last chain the previous one took),
/// and each endpoint has at most `endpoint_concurrency` runs out from this instance.
async fn work(worker: Worker, wake: Arc<Notify>) {
    let settings = worker.settings.clone();
    let lease_seconds = i32::try_from(settings.lease.as_secs()).unwrap_or(i32::MAX);
    let mut running = JoinSet::new();
    let mut per_endpoint: HashMap<Uuid, i32> = HashMap::new();
    let mut after: Option<ChainKey> = None;
    let mut last_sweep: Option<Instant> = None;
    let mut last_claim = Instant::now();
    loop {
        // Every run that ended frees its place, not one per turn of the loop.
        while let Some(ended) = running.try_join_next() {
            release(&mut per_endpoint, ended);
        }
        // Events written since become deliveries first, whatever room there is to
        // attempt them; a full batch means more wait.
        let more_to_fan_out = match worker.db.webhook_fanout(FANOUT_BATCH).await {
            Ok(taken) => taken == FANOUT_BATCH,
            Err(error) => {
                tracing::warn!(%error, "could not fan webhook events out; trying again");
                false
            }
        };
        let free = settings.concurrency.saturating_sub(running.len());
        if free > 0 {
            last_claim = Instant::now();
            let wanted = i32::try_from(free).unwrap_or(i32::MAX);
            let room: HashMap<Uuid, i32> = per_endpoint
                .iter()
                .map(|(webhook, out)| (*webhook, settings.endpoint_concurrency - out))
                .collect();
            match worker
                .db
                .webhook_claim(
                    wanted,
                    settings.run_length,
                    lease_seconds,
                    settings.endpoint_concurrency,
                    &room,
                    after.as_ref(),
                )
                .await
            {
                Ok(claim) => {
                    let claimed_all = claim.runs.len() == free;
                    after = claim.after.or(after);
                    for run in claim.runs {
                        *per_endpoint.entry(run.webhook.id).or_default() += 1;
                        running.spawn(deliver_run(worker.clone(), run));
                    }
                    // More may be due: claim again at once, not after a poll.
                    if claimed_all && running.len() < settings.concurrency {
                        continue;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not claim webhook deliveries; trying again");
                    tokio::time::sleep(RETRY_AFTER).await;
                    continue;
                }
            }
        }
        if more_to_fan_out {
            continue;
        }
        if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            last_sweep = Some(Instant::now());
            sweep(&worker.db, settings.keep_seconds).await;
        }
        tokio::select! {
            () = wake.notified() => {
                tokio::time::sleep_until((last_claim + WAKE_PAUSE).into()).await;
            }
            Some(ended) = running.join_next(), if !running.is_empty() => {
                release(&mut per_endpoint, ended);
            }
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}

/// Counts a run that ended out of its endpoint's runs. A run whose task failed (it
/// cannot name its endpoint) is not counted out; its lease ends it anyway.
fn release(per_endpoint: &mut HashMap<Uuid, i32>, ended: Result<Uuid, tokio::task::JoinError>) {
    match ended {
        Ok(webhook) => {
            if let Some(out) = per_endpoint.get_mut(&webhook) {
                *out -= 1;
                if *out <= 0 {
                    per_endpoint.remove(&webhook);
                }
            }
        }
        Err(error) => tracing::error!(%error, "a webhook delivery task failed"),
    }
}

/// Deletes finished deliveries past their keeping time, a batch per transaction.
async fn sweep(db: &Database, keep_seconds: i32) {
    loop {
        match db.webhook_sweep(keep_seconds, SWEEP_BATCH).await {
            Ok(count) if count >= i64::from(SWEEP_BATCH) => {}
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, "could not sweep finished webhook deliveries");
                return;
            }
        }
    }
}

/// Attempts a run's deliveries in order, stopping at the first failure (its later
/// deliveries wait behind it) or when the lease is nearly over, then records how each
/// went. Should recording fail, the lease runs out and the run is attempted again:
/// at least once, never lost. Answers the run's endpoint.
async fn deliver_run(worker: Worker, run: ClaimedRun) -> Uuid {
    let settings = &worker.settings;
    // A delivery is started only while it can end before the lease does.
    let last_start = Instant::now() + settings.lease.saturating_sub(settings.timeout * 2);
    let refusal = target::check_url(&run.webhook.url, settings.allow_private).err();
    let mut stopped = false;
    let mut outcomes = Vec::with_capacity(run.deliveries.len());
    for delivery in &run.deliveries {
        if stopped || Instant::now() > last_start {
            outcomes.push(released(delivery));
            continue;
        }
        let outcome = match &refusal {
            Some(refusal) => failed(delivery, None, refusal.to_string(), None),
            None => attempt(&worker.client, &run, delivery).await,
        };
        stopped = outcome.outcome != OutcomeKind::Delivered;
        outcomes.push(outcome);
    }
    for attempt in 1..=3 {
        match worker
            .db
            .webhook_settle(run.webhook.id, &outcomes, settings.retry)
            .await
        {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, attempt, webhook_id = %run.webhook.id, "could not record webhook deliveries");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
    run.webhook.id
}

/// One attempt: the signed POST, and what came of it.
async fn attempt(
    client: &reqwest::Client,
    run: &ClaimedRun,
    delivery: &ClaimedDelivery,
) -> DeliveryOutcome {
    let body = delivery.payload.to_string();
    let timestamp = Utc::now().timestamp();
    let signature =
        signing::signature_header(&run.webhook.secrets, &delivery.message_id, timestamp, &body);
    let started = Instant::now();
    let sent = client
        .post(&run.webhook.url)
        .header("content-type", "application/json")
        .header("webhook-id", &delivery.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let outcome = match sent {
        Ok(mut response) => {
            let status = response.status();
            let snippet = snippet(&mut response).await;
            let latency = started.elapsed();
            if status.is_success() {
                METRICS.webhook_lag.observe(
                    (Utc::now() - delivery.created_at)
                        .to_std()
                        .unwrap_or_default()
                        .as_secs_f64(),
                );
                DeliveryOutcome {
                    tenant_id: delivery.tenant_id,
                    id: delivery.id,
                    outcome: OutcomeKind::Delivered,
                    status: Some(status.as_u16()),
                    error: None,
                    snippet,
                    latency_ms: Some(millis(latency)),
                }
            } else {
                failed(
                    delivery,
                    Some(status.as_u16()),
                    format!("the endpoint answered {status}"),
                    Some((snippet, latency)),
                )
            }
        }
        Err(error) => failed(
            delivery,
            None,
            describe(&error),
            Some((None, started.elapsed())),
        ),
    };
    METRICS
        .webhook_attempt_duration
        .observe(started.elapsed().as_secs_f64());
    let label = if outcome.outcome == OutcomeKind::Delivered {
        "delivered"
    } else {
        "failed"
    };
    METRICS.webhook_attempts.with_label_values(&[label]).inc();
    outcome
}

/// The start of an answer's body, read no further than needed.
async fn snippet(response: &mut reqwest::Response) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < SNIPPET_CHARS * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .take(SNIPPET_CHARS)
        .collect();
    (!text.is_empty()).then_some(text)
}

/// A failure as a receiver's operator would want it told: the cause, without the URL
/// (which the delivery list shows beside it anyway).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}

fn failed(
    delivery: &ClaimedDelivery,
    status: Option<u16>,
    error: String,
    answer: Option<(Option<String>, Duration)>,
) -> DeliveryOutcome {
    let (snippet, latency) = answer.unzip();
    DeliveryOutcome {
        tenant_id: delivery.tenant_id,
        id: delivery.id,
        outcome: OutcomeKind::Failed,
        status,
        error: Some(error),
        snippet: snippet.flatten(),
        latency_ms: latency.map(millis),
    }
}

fn released(delivery: &ClaimedDelivery) -> DeliveryOutcome {
    DeliveryOutcome {
        tenant_id: delivery.tenant_id,
        id: delivery.id,
        outcome: OutcomeKind::Released,
        status: None,
        error: None,
        snippet: None,
        latency_ms: None,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
