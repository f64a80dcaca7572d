//! The REST API: one module per resource, assembled into one OpenAPI service. The
//! handlers only translate between HTTP and the typed calls of [`crate::db`]; the
//! rules live in the SQL functions.

mod api_keys;
mod auth;
mod backend;
mod conversations;
pub mod document;
mod events;
mod health;
pub mod in_flight;
mod members;
mod messages;
mod moderation;
mod operator;
mod realtime;
mod rooms;
mod safety;
mod search;
pub mod security;
mod tenants;
mod users;
mod webhooks;

use poem_openapi::{OpenApiService, Tags};

/// The groups operations are listed under.
#[derive(Tags)]
pub enum ApiTags {
    /// Tenants and their settings.
    Tenants,
    /// Registration, login, token refresh and logout.
    Auth,
    /// The users of a tenant.
    Users,
    /// Group and direct rooms.
    Rooms,
    /// The members of a room.
    Members,
    /// Messages, reactions and read markers.
    Messages,
    /// Threads, mentions, pins and search.
    Conversations,
    /// A room's event log.
    Events,
    /// WebSocket, Server-Sent Events and presence.
    Realtime,
    /// Keys with which a tenant's backend calls the `backend` operations.
    ApiKeys,
    /// Operations for a tenant's own backend, authenticated with an API key.
    Backend,
    /// Signed deliveries of events to the tenant's endpoints.
    Webhooks,
    /// Blocks, reports, the moderation queue, mutes, bans, word filters and the audit
    /// log.
    Moderation,
    /// Health and readiness probes.
    Operations,
    /// Every tenant, for the operator of the service (`X-Operator-Key`).
    Operator,
}

/// Every operation of the API.
pub type Api = (
    health::HealthApi,
    tenants::TenantsApi,
    auth::AuthApi,
    users::UsersApi,
    rooms::RoomsApi,
    members::MembersApi,
    messages::MessagesApi,
    events::EventsApi,
    realtime::RealtimeApi,
    api_keys::ApiKeysApi,
    backend::BackendApi,
    // Tuples have `Default` up to twelve members: the last groups the rest.
    (
        webhooks::WebhooksApi,
        safety::SafetyApi,
        moderation::ModerationApi,
        conversations::ConversationsApi,
        search::SearchApi,
        operator::OperatorApi,
    ),
);

/// The OpenAPI service: the routes together with their description.
pub fn service() -> OpenApiService<Api, ()> {
    OpenApiService::new(
        Api::default(),
        "Hark",
        env!("CARGO_PKG_VERSION"),
    )
    // OpenAPI 3.0 has no info.summary, so the one-line summary opens the description.
    .description(
        "Multi-tenant chat backend. Every error is a JSON body `{\"code\", \"message\", \"request_id\"}` \
         (plus `field` for input errors) with a stable `code`. Ids of another tenant behave \
         exactly like ids that do not exist.",
    )
}

/// The OpenAPI document as YAML, as committed in `openapi/openapi.yaml`.
pub fn spec_yaml() -> String {
    document::yaml()
}

/// A filter by metadata from its two query parameters, given together or not at all
/// (422 `invalid_metadata_filter`).
pub(crate) fn metadata_filter(
    key: Option<String>,
    value: Option<String>,
) -> Result<Option<crate::db::MetadataFilter>, crate::error::ApiError> {
    match (key, value) {
        (Some(key), Some(value)) => Ok(Some(crate::db::MetadataFilter { key, value })),
        (None, None) => Ok(None),
        _ => Err(crate::error::ApiError::invalid(
            "metadata_key",
            "invalid_metadata_filter",
            "Give metadata_key and metadata_value together",
        )),
    }
}

/// The client's address: the TCP peer, or behind a trusted proxy the last entry of
/// `X-Forwarded-For` (entries before it come from the client and can be forged).
pub(crate) fn client_address(
    request: &poem::Request,
    trust_forwarded_for: bool,
) -> Option<std::net::IpAddr> {
    let forwarded = trust_forwarded_for
        .then(|| request.headers().get("x-forwarded-for"))
        .flatten()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok());
    forwarded.or_else(|| {
        request
            .remote_addr()
            .as_socket_addr()
            .map(|address| address.ip())
    })
}

/// How long an anonymous caller's request refused by a limit (signups, failed logins)
/// waits before it is answered: a client flooding the server with them then gets one
/// answer per connection per pause, instead of as many as the server can produce,
/// which took the CPU that other tenants' requests needed.
pub(crate) const REFUSAL_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Counts a registration or tenant creation from the request's address, refusing it
/// (429 `too_many_signups`, after [`REFUSAL_PAUSE`]) past
/// `HARK_SIGNUPS_PER_ADDRESS_PER_HOUR`: each costs a password hash and leaves rows
/// behind.
pub(crate) async fn count_signup(
    state: &crate::startup::AppState,
    request: &poem::Request,
) -> Result<(), crate::error::ApiError> {
    let Some(address) = client_address(request, state.config.trust_forwarded_for) else {
        return Ok(());
    };
    let allowance = state.limits.signups.acquire(&address).await;
    if allowance.retry_after.is_some() {
        tokio::time::sleep(REFUSAL_PAUSE).await;
        return Err(crate::error::ApiError::too_many(
            &allowance,
            "too_many_signups",
            "Too many registrations from this address; retry after the Retry-After seconds",
        ));
    }
    Ok(())
}
