//! The tenant's webhook endpoints, managed by its owners and admins and by API keys:
//! where events are POSTed, signed as Standard Webhooks says, and what became of each
//! delivery. Delivering is `crate::webhooks`'s.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use serde::Serialize;
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::AdminAuth;
use crate::db::{NewWebhook, Webhook, WebhookDelivery, WebhookDeliveryPage, WebhookReplay};
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::{check_url, generate_secret};

/// An endpoint to create.
#[derive(Debug, Object)]
#[oai(example)]
pub struct CreateWebhookRequest {
    /// Where to POST deliveries: `https`, to a public address (`http` and private
    /// addresses only where the operator allows them).
    #[oai(validator(max_length = 2048, pattern = r"^https?://[!-~]+$"))]
    pub url: String,
    /// What the endpoint is for (at most 500 characters).
    #[oai(validator(max_length = 500))]
    pub description: Option<String>,
    /// The event types to receive, or `*` for all.
    #[oai(validator(min_items = 1, max_items = 50))]
    pub event_types: Vec<WebhookEventType>,
}

/// The events an endpoint may receive. Room events are the room log's, with the
/// room's `seq`; the others happen outside rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
pub enum WebhookEventType {
    /// Every type.
    #[oai(rename = "*")]
    #[serde(rename = "*")]
    All,
    /// A message was sent.
    #[oai(rename = "message.created")]
    #[serde(rename = "message.created")]
    MessageCreated,
    /// A message was edited.
    #[oai(rename = "message.edited")]
    #[serde(rename = "message.edited")]
    MessageEdited,
    /// A message was deleted.
    #[oai(rename = "message.deleted")]
    #[serde(rename = "message.deleted")]
    MessageDeleted,
    /// A message was pinned in its room.
    #[oai(rename = "message.pinned")]
    #[serde(rename = "message.pinned")]
    MessagePinned,
    /// A message was unpinned.
    #[oai(rename = "message.unpinned")]
    #[serde(rename = "message.unpinned")]
    MessageUnpinned,
    /// A reaction was added.
    #[oai(rename = "reaction.added")]
    #[serde(rename = "reaction.added")]
    ReactionAdded,
    /// A reaction was removed.
    #[oai(rename = "reaction.removed")]
    #[serde(rename = "reaction.removed")]
    ReactionRemoved,
    /// Someone joined a room or was added (a room's creation is its owner's).
    #[oai(rename = "member.joined")]
    #[serde(rename = "member.joined")]
    MemberJoined,
    /// Someone left a room or was removed.
    #[oai(rename = "member.left")]
    #[serde(rename = "member.left")]
    MemberLeft,
    /// A member's role changed.
    #[oai(rename = "member.role_changed")]
    #[serde(rename = "member.role_changed")]
    MemberRoleChanged,
    /// A member was muted in a room.
    #[oai(rename = "member.muted")]
    #[serde(rename = "member.muted")]
    MemberMuted,
    /// A mute was lifted.
    #[oai(rename = "member.unmuted")]
    #[serde(rename = "member.unmuted")]
    MemberUnmuted,
    /// A user was banned from a room.
    #[oai(rename = "member.banned")]
    #[serde(rename = "member.banned")]
    MemberBanned,
    /// A room ban was lifted.
    #[oai(rename = "member.unbanned")]
    #[serde(rename = "member.unbanned")]
    MemberUnbanned,
    /// A room's settings changed.
    #[oai(rename = "room.updated")]
    #[serde(rename = "room.updated")]
    RoomUpdated,
    /// A room was archived.
    #[oai(rename = "room.archived")]
    #[serde(rename = "room.archived")]
    RoomArchived,
    /// A room was deleted.
    #[oai(rename = "room.deleted")]
    #[serde(rename = "room.deleted")]
    RoomDeleted,
    /// A user was created (registration or the backend).
    #[oai(rename = "user.created")]
    #[serde(rename = "user.created")]
    UserCreated,
    /// A user's profile or role changed.
    #[oai(rename = "user.updated")]
    #[serde(rename = "user.updated")]
    UserUpdated,
    /// A user was deleted.
    #[oai(rename = "user.deleted")]
    #[serde(rename = "user.deleted")]
    UserDeleted,
    /// A user was banned from the tenant. `data`: `user`, `reason`, `actor_id`.
    #[oai(rename = "user.banned")]
    #[serde(rename = "user.banned")]
    UserBanned,
    /// A tenant-wide ban was lifted. `data`: `user`, `actor_id`.
    #[oai(rename = "user.unbanned")]
    #[serde(rename = "user.unbanned")]
    UserUnbanned,
    /// A message or user was reported, by a member or by a word filter that flags.
    /// `data`: `report`.
    #[oai(rename = "report.created")]
    #[serde(rename = "report.created")]
    ReportCreated,
    /// A report was resolved with an action. `data`: `report`.
    #[oai(rename = "report.resolved")]
    #[serde(rename = "report.resolved")]
    ReportResolved,
    /// The tenant's settings changed.
    #[oai(rename = "tenant.updated")]
    #[serde(rename = "tenant.updated")]
    TenantUpdated,
    /// One of the tenant's endpoints was disabled after failing for too long.
    #[oai(rename = "webhook.disabled")]
    #[serde(rename = "webhook.disabled")]
    WebhookDisabled,
    /// A test, sent on request (`POST /v1/webhooks/{webhook_id}/test`).
    #[oai(rename = "webhook.test")]
    #[serde(rename = "webhook.test")]
    WebhookTest,
    /// A message, right after its `message.created`, with the members it should be
    /// pushed to: `data.user_ids`, those not connected (no subscription on any
    /// instance) when it was sent, the sender left out; not sent when there are none.
    /// `data`: `room_id`, `message`, `user_ids`.
    #[oai(rename = "notification.message")]
    #[serde(rename = "notification.message")]
    NotificationMessage,
    /// Users were mentioned by a message (sent, or edited to mention them): to push
    /// to them. `data`: `room_id`, `message`, `user_ids` (the users newly mentioned;
    /// every member but the sender for a mention of the room).
    #[oai(rename = "notification.mention")]
    #[serde(rename = "notification.mention")]
    NotificationMention,
}

impl WebhookEventType {
    /// The type's name, as events carry it.
    fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

impl Example for CreateWebhookRequest {
    fn example() -> Self {
        Self {
            url: "https://backend.example.com/hark/webhooks".to_owned(),
            description: Some("push notifications".to_owned()),
            event_types: vec![
                WebhookEventType::MessageCreated,
                WebhookEventType::MemberJoined,
            ],
        }
    }
}

/// The changes to an endpoint; absent fields stay as they are.
#[derive(Debug, Default, Serialize, Object)]
#[oai(example)]
pub struct UpdateWebhookRequest {
    /// A new URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(max_length = 2048, pattern = r"^https?://[!-~]+$"))]
    pub url: Option<String>,
    /// A new description (at most 500 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(max_length = 500))]
    pub description: Option<String>,
    /// New event types.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(min_items = 1, max_items = 50))]
    pub event_types: Option<Vec<WebhookEventType>>,
    /// `false` stops deliveries (they wait); `true` resumes them, also after the
    /// server disabled the endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl Example for UpdateWebhookRequest {
    fn example() -> Self {
        Self {
            enabled: Some(true),
            ..Self::default()
        }
    }
}

/// A replay to queue.
#[derive(Debug, Object)]
#[oai(example)]
pub struct ReplayWebhookRequest {
    /// Every delivery of the endpoint made since this time (and still kept) is sent
    /// again, under its own `webhook-id`, in its original order.
    pub since: DateTime<Utc>,
}

impl Example for ReplayWebhookRequest {
    fn example() -> Self {
        Self {
            since: DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default(),
        }
    }
}

/// An endpoint with its signing secret, shown this once.
#[derive(Debug, Object)]
pub struct WebhookWithSecret {
    /// The secret (`whsec_…`) with which receivers verify deliveries, as Standard
    /// Webhooks libraries take it.
    pub secret: String,
    /// The endpoint.
    pub webhook: Webhook,
}

/// The tenant's endpoints.
#[derive(Debug, Object)]
pub struct WebhookList {
    /// Every endpoint, newest first.
    pub items: Vec<Webhook>,
}

/// The states of a delivery, to filter the list by.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet delivered: due, waiting for a retry, or behind an earlier one.
    Pending,
    /// Answered with 2xx.
    Delivered,
    /// Given up after retrying for the retry period.
    Failed,
}

impl DeliveryState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// The answer to a creation.
#[derive(ApiResponse)]
pub enum WebhookCreated {
    /// The endpoint exists; deliveries start with the next event.
    #[oai(status = 201)]
    Created(Json<WebhookWithSecret>),
}

/// The answer to a deletion.
#[derive(ApiResponse)]
pub enum WebhookDeleted {
    /// The endpoint and its deliveries are gone.
    #[oai(status = 204)]
    Deleted,
}

/// The answer to a test.
#[derive(ApiResponse)]
pub enum WebhookTestQueued {
    /// A `webhook.test` delivery is queued.
    #[oai(status = 202)]
    Queued(Json<WebhookDelivery>),
}

/// The answer to a replay.
#[derive(ApiResponse)]
pub enum WebhookReplayQueued {
    /// The deliveries are queued again.
    #[oai(status = 202)]
    Queued(Json<WebhookReplay>),
}

/// Webhooks.
#[derive(Default)]
pub struct WebhooksApi;

/// Checks a URL as the server will call it (422 `invalid_url`).
fn checked_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    check_url(url, state.config.webhook_allow_private)
        .map(|_| url.to_owned())
        .map_err(|refusal| ApiError::invalid("url", "invalid_url", refusal.to_string()))
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl WebhooksApi {
    /// Create a webhook endpoint (owners, admins, API keys)
    ///
    /// The answer holds the signing secret, shown this once.
    #[oai(path = "/v1/webhooks", method = "post", operation_id = "createWebhook")]
    async fn create_webhook(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        body: Json<CreateWebhookRequest>,
    ) -> Result<WebhookCreated, ApiError> {
        let body = body.0;
        let secret = generate_secret();
        let webhook = NewWebhook {
            webhook_id: Uuid::now_v7(),
            url: checked_url(&state, &body.url)?,
            description: body.description,
            event_types: body
                .event_types
                .into_iter()
                .map(WebhookEventType::name)
                .collect(),
            secret: secret.clone(),
        };
        let webhook = state.db.webhook_create(&auth.principal(), &webhook).await?;
        Ok(WebhookCreated::Created(Json(WebhookWithSecret {
            secret,
            webhook,
        })))
    }

    /// List webhook endpoints (owners, admins, API keys)
    #[oai(path = "/v1/webhooks", method = "get", operation_id = "listWebhooks")]
    async fn list_webhooks(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
    ) -> Result<Json<WebhookList>, ApiError> {
        let items = state.db.webhook_list(&auth.principal()).await?;
        Ok(Json(WebhookList { items }))
    }

    /// Get a webhook endpoint (owners, admins, API keys)
    #[oai(
        path = "/v1/webhooks/:webhook_id",
        method = "get",
        operation_id = "getWebhook"
    )]
    async fn get_webhook(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The endpoint's id.
        webhook_id: Path<Uuid>,
    ) -> Result<Json<Webhook>, ApiError> {
        let webhook = state
            .db
            .webhook_get(&auth.principal(), webhook_id.0)
            .await?;
        Ok(Json(webhook))
    }

    /// Change a webhook endpoint (owners, admins, API keys)
    #[oai(
        path = "/v1/webhooks/:webhook_id",
        method = "patch",
        operation_id = "updateWebhook"
    )]
    async fn update_webhook(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The endpoint's id.
        webhook_id: Path<Uuid>,
        body: Json<UpdateWebhookRequest>,
    ) -> Result<Json<Webhook>, ApiError> {
        if let Some(url) = &body.0.url {
            checked_url(&state, url)?;
        }
        let patch = serde_json::to_value(&body.0)
            .map_err(|error| ApiError::internal("webhook patch", &error))?;
        let webhook = state
            .db
            .webhook_update(&auth.principal(), webhook_id.0, &patch)
            .await?;
        Ok(Json(webhook))
    }

    /// Delete a webhook endpoint and its deliveries (owners, admins, API keys)
    #[oai(
        path = "/v1/webhooks/:webhook_id",
        method = "delete",
        operation_id = "deleteWebhook"
    )]
    async fn delete_webhook(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The endpoint's id.
        webhook_id: Path<Uuid>,
    ) -> Result<WebhookDeleted, ApiError> {
        state
            .db
            .webhook_delete(&auth.principal(), webhook_id.0)
            .await?;
        Ok(WebhookDeleted::Deleted)
    }

    /// Rotate a webhook endpoint's secret (owners, admins, API keys)
    ///
    /// Deliveries are signed with the new secret and, for the grace period the
    /// answer's `previous_secret_until` gives, with the old one too.
    #[oai(
        path = "/v1/webhooks/:webhook_id/rotate-secret",
        method = "post",
        operation_id = "rotateWebhookSecret"
    )]
    async fn rotate_secret(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The endpoint's id.
        webhook_id: Path<Uuid>,
    ) -> Result<Json<WebhookWithSecret>, ApiError> {
        let secret = generate_secret();
        let webhook = state
            .db
            .webhook_rotate_secret(
                &auth.principal(),
                webhook_id.0,
                &secret,
                state.config.webhook_secret_grace_seconds,
            )
            .await?;
        Ok(Json(WebhookWithSecret { secret, webhook }))
    }

    /// List a webhook endpoint's deliveries, newest first (owners, admins, API keys)
    #[oai(
        path = "/v1/webhooks/:webhook_id/deliveries",
        method = "get",
        operation_id = "listWebhookDeliveries"
    )]
    async fn list_deliveries(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The endpoint's id.
        webhook_id: Path<Uuid>,
        /// Deliveries older than this one (the previous page's `next_before`).
        #[oai(validator(minimum(value = "0")))]
        before: Query<Option<i64>>,
        /// At most this many (1 to 100, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i32>>,
        /// Only deliveries in this state.
        #[oai(name = "state")]
        state_filter: Query<Option<DeliveryState>>,
    ) -> Result<Json<WebhookDeliveryPage>, ApiError> {
        let page = state
            .db
            .webhook_deliveries(
                &auth.principal(),
                webhook_id.0,
                before.0,
                limit.0.unwrap_or(50),
                state_filter.0.map(DeliveryState::as_str),
            )
            .await?;
        Ok(Json(page))
    }

    /// Send a webhook endpoint's deliveries again (owners, admins, API keys)
    ///
    /// For a receiver that lost what it had received: every delivery made since
    /// `since` that is still kept goes out again, under its own `webhook-id`.
    #[oai(
        path = "/v1/webhooks/:webhook_id/replay",
        method = "post",
        operation_id = "replayWebhook"
    )]
    async fn replay(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The endpoint's id.
        webhook_id: Path<Uuid>,
        body: Json<ReplayWebhookRequest>,
    ) -> Result<WebhookReplayQueued, ApiError> {
        let replay = state
            .db
            .webhook_replay(&auth.principal(), webhook_id.0, body.0.since)
            .await?;
        Ok(WebhookReplayQueued::Queued(Json(replay)))
    }

    /// Send a test event to a webhook endpoint (owners, admins, API keys)
    #[oai(
        path = "/v1/webhooks/:webhook_id/test",
        method = "post",
        operation_id = "testWebhook"
    )]
    async fn test(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The endpoint's id.
        webhook_id: Path<Uuid>,
    ) -> Result<WebhookTestQueued, ApiError> {
        let delivery = state
            .db
            .webhook_test(&auth.principal(), webhook_id.0)
            .await?;
        Ok(WebhookTestQueued::Queued(Json(delivery)))
    }
}
