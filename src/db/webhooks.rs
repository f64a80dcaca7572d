//! Typed calls of the webhook functions (`sql/functions/0008_webhooks.sql`): the
//! endpoints a tenant's administrators manage, and the claims and settlements of the
//! delivery workers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::auth::Principal;
use crate::db::{Database, DatabaseError};

/// A webhook endpoint as its administrators see it; the secret is shown once, at
/// creation and at rotation.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct Webhook {
    /// The endpoint's id.
    pub id: Uuid,
    /// Where deliveries are POSTed.
    pub url: String,
    /// What the endpoint is for.
    pub description: String,
    /// The event types it receives (`*`: all).
    pub event_types: Vec<String>,
    /// Whether deliveries are attempted; a disabled endpoint's pending deliveries wait.
    pub enabled: bool,
    /// Why it is disabled: `manual`, `gone` (it answered 410) or `failing` (every
    /// attempt failed for too long).
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed.
    pub failing_since: Option<DateTime<Utc>>,
    /// Until when the secret before the last rotation still signs.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Deliveries not yet made.
    pub backlog: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// One delivery of one event to one endpoint, with its last attempt.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct WebhookDelivery {
    /// The delivery's id: the cursor of the list.
    pub id: i64,
    /// The `webhook-id` header (Standard Webhooks' message id), the same for every
    /// attempt and replay. Named apart from a chat message's id.
    pub webhook_message_id: String,
    /// The event's type.
    pub event_type: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub state: String,
    /// Attempts made.
    pub attempts: i32,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was last attempted.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last attempt, if the endpoint answered.
    pub last_status: Option<i32>,
    /// Why the last attempt failed, when it did.
    pub last_error: Option<String>,
    /// The start of the last answer's body (at most 500 characters).
    pub response_snippet: Option<String>,
    /// How long the last attempt took, in milliseconds.
    pub latency_ms: Option<i32>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The body sent.
    pub payload: serde_json::Value,
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct WebhookDeliveryPage {
    /// The deliveries.
    pub items: Vec<WebhookDelivery>,
    /// The `before` of the next page; absent on the last.
    pub next_before: Option<i64>,
}

/// How many deliveries a replay queued again.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct WebhookReplay {
    /// Deliveries queued again.
    pub queued: i64,
}

/// An endpoint about to be stored.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Its id.
    pub webhook_id: Uuid,
    /// The checked URL.
    pub url: String,
    /// What it is for.
    pub description: Option<String>,
    /// The event types.
    pub event_types: Vec<String>,
    /// The signing secret (`whsec_…`).
    pub secret: String,
}

/// What a claim took.
#[derive(Debug, Deserialize)]
pub struct Claim {
    /// The runs, each to be attempted in order.
    pub runs: Vec<ClaimedRun>,
    /// Where the next claim starts its round: the last chain this one took.
    pub after: Option<ChainKey>,
}

/// A chain of the queue: the deliveries of one endpoint and order key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainKey {
    /// The endpoint.
    pub webhook_id: Uuid,
    /// The room, or the tenant.
    pub order_key: Uuid,
}

/// A run of deliveries claimed by this instance: the next pending deliveries of one
/// endpoint and order key, to be attempted in order.
#[derive(Debug, Deserialize)]
pub struct ClaimedRun {
    /// Where they go.
    pub webhook: ClaimedEndpoint,
    /// In order.
    pub deliveries: Vec<ClaimedDelivery>,
}

/// An endpoint as the worker needs it.
#[derive(Debug, Deserialize)]
pub struct ClaimedEndpoint {
    /// Its id.
    pub id: Uuid,
    /// Its URL.
    pub url: String,
    /// The secrets that sign: the current one, then the previous one during its grace.
    pub secrets: Vec<String>,
}

/// A delivery as the worker needs it.
#[derive(Debug, Deserialize)]
pub struct ClaimedDelivery {
    /// Its tenant.
    pub tenant_id: Uuid,
    /// Its id.
    pub id: i64,
    /// The `webhook-id` header.
    pub message_id: String,
    /// The body.
    pub payload: serde_json::Value,
    /// Attempts made before this one.
    pub attempts: i32,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
}

/// How one delivery of a run went.
#[derive(Debug, Serialize)]
pub struct DeliveryOutcome {
    /// Its tenant.
    pub tenant_id: Uuid,
    /// Its id.
    pub id: i64,
    /// What happened.
    pub outcome: OutcomeKind,
    /// The endpoint's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
    /// The start of the answer's body.
    pub snippet: Option<String>,
    /// How long the attempt took.
    pub latency_ms: Option<u64>,
}

/// What happened to a claimed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// A 2xx answer.
    Delivered,
    /// Anything else: tried again later.
    Failed,
    /// Not attempted (the run stopped before it): free for the next claim.
    Released,
}

/// How the worker retries and gives up, as `hark_api.webhook_settle` applies it.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first retry's delay, doubled for each later one (with jitter).
    pub base_ms: i32,
    /// How long after an event its delivery is given up.
    pub give_up_after_seconds: i32,
    /// How long an endpoint may fail every attempt before it is disabled.
    pub disable_after_seconds: i32,
}

/// The queue, summed over every endpoint.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct WebhookBacklog {
    /// Deliveries not yet made.
    pub pending: i64,
    /// The age of the oldest, in seconds.
    pub oldest_seconds: f64,
}

impl Database {
    /// Stores a new endpoint.
    pub async fn webhook_create(
        &self,
        principal: &Principal,
        webhook: &NewWebhook,
    ) -> Result<Webhook, DatabaseError> {
        self.call_as(
            "webhook_create",
            principal,
            &[
                &webhook.webhook_id,
                &webhook.url,
                &webhook.description,
                &webhook.event_types,
                &webhook.secret,
            ],
        )
        .await
    }

    /// The tenant's endpoints, newest first.
    pub async fn webhook_list(&self, principal: &Principal) -> Result<Vec<Webhook>, DatabaseError> {
        self.call_as("webhook_list", principal, &[]).await
    }

    /// One endpoint.
    pub async fn webhook_get(
        &self,
        principal: &Principal,
        webhook_id: Uuid,
    ) -> Result<Webhook, DatabaseError> {
        self.call_as("webhook_get", principal, &[&webhook_id]).await
    }

    /// Changes an endpoint: the patch holds the fields to change, already checked.
    pub async fn webhook_update(
        &self,
        principal: &Principal,
        webhook_id: Uuid,
        patch: &serde_json::Value,
    ) -> Result<Webhook, DatabaseError> {
        self.call_as("webhook_update", principal, &[&webhook_id, patch])
            .await
    }

    /// Deletes an endpoint and its deliveries.
    pub async fn webhook_delete(
        &self,
        principal: &Principal,
        webhook_id: Uuid,
    ) -> Result<(), DatabaseError> {
        self.call_as("webhook_delete", principal, &[&webhook_id])
            .await
    }

    /// Replaces an endpoint's secret; the old one signs too for `grace_seconds`.
    pub async fn webhook_rotate_secret(
        &self,
        principal: &Principal,
        webhook_id: Uuid,
        secret: &str,
        grace_seconds: i32,
    ) -> Result<Webhook, DatabaseError> {
        self.call_as(
            "webhook_rotate_secret",
            principal,
            &[&webhook_id, &secret, &grace_seconds],
        )
        .await
    }

    /// A page of an endpoint's deliveries, newest first.
    pub async fn webhook_deliveries(
        &self,
        principal: &Principal,
        webhook_id: Uuid,
        before: Option<i64>,
        limit: i32,
        state: Option<&str>,
    ) -> Result<WebhookDeliveryPage, DatabaseError> {
        self.call_as(
            "webhook_deliveries",
            principal,
            &[&webhook_id, &before, &limit, &state, &self.max_page_bytes],
        )
        .await
    }

    /// Queues again the endpoint's finished deliveries made since `since`.
    pub async fn webhook_replay(
        &self,
        principal: &Principal,
        webhook_id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<WebhookReplay, DatabaseError> {
        self.call_as("webhook_replay", principal, &[&webhook_id, &since])
            .await
    }

    /// Queues a `webhook.test` event for the endpoint.
    pub async fn webhook_test(
        &self,
        principal: &Principal,
        webhook_id: Uuid,
    ) -> Result<WebhookDelivery, DatabaseError> {
        self.call_as("webhook_test", principal, &[&webhook_id])
            .await
    }

    /// Claims up to `runs` runs of at most `run_length` deliveries for this instance,
    /// leased for `lease_seconds`, visiting chains round-robin from just past `after`.
    /// `room` says how many more runs the instance may take per endpoint (others:
    /// `endpoint_concurrency`).
    pub async fn webhook_claim(
        &self,
        runs: i32,
        run_length: i32,
        lease_seconds: i32,
        endpoint_concurrency: i32,
        room: &HashMap<Uuid, i32>,
        after: Option<&ChainKey>,
    ) -> Result<Claim, DatabaseError> {
        self.call(
            "webhook_claim",
            &[
                &runs,
                &run_length,
                &lease_seconds,
                &endpoint_concurrency,
                &Json(room),
                &Json(after),
            ],
        )
        .await
    }

    /// Records how a run went.
    pub async fn webhook_settle(
        &self,
        webhook_id: Uuid,
        outcomes: &[DeliveryOutcome],
        policy: RetryPolicy,
    ) -> Result<(), DatabaseError> {
        self.call(
            "webhook_settle",
            &[
                &webhook_id,
                &Json(outcomes),
                &policy.base_ms,
                &policy.give_up_after_seconds,
                &policy.disable_after_seconds,
            ],
        )
        .await
    }

    /// Deletes up to `batch` finished deliveries older than `keep_seconds`; answers
    /// how many went.
    pub async fn webhook_sweep(&self, keep_seconds: i32, batch: i32) -> Result<i64, DatabaseError> {
        self.call("webhook_sweep", &[&keep_seconds, &batch]).await
    }

    /// The queue over every endpoint.
    pub async fn webhook_backlog(&self) -> Result<WebhookBacklog, DatabaseError> {
        self.call("webhook_backlog", &[]).await
    }

    /// Turns up to `limit` of the oldest outbox rows into deliveries; answers how many
    /// it took (0 at once while another instance fans out).
    pub async fn webhook_fanout(&self, limit: i32) -> Result<i32, DatabaseError> {
        self.call("webhook_fanout", &[&limit]).await
    }
}
