//! The API's security schemes: how a request says who it is (a bearer token, the same
//! token in the query for browsers' streams, or a tenant's API key), checked before
//! the handler runs. What a caller is ([`Caller`]) is authentication's; reading it
//! from a request is the HTTP edge's.

use poem::Request;
use poem_openapi::{
    SecurityScheme,
    auth::{ApiKey, Bearer},
};
use uuid::Uuid;

use crate::auth::{ApiKeySecret, Caller, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// The header that names the user a tenant's API key acts as.
pub const ACTING_USER_HEADER: &str = "X-Hark-User";

/// A user's access token: `Authorization: Bearer <JWT>`. A tenant's backend may
/// instead present one of its API keys as the bearer token (`Bearer hark_sk_…`) with
/// the header `X-Hark-User: <user id>`, and act as that user on any REST route or
/// event stream a user may call (the WebSocket takes access tokens only): the same
/// rules, events and errors, and the key's own limits (it acts for no user above its
/// creator's role, and stops acting when revoked).
#[derive(SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "verify_bearer"
)]
pub struct BearerAuth(pub Caller);

/// A bearer token already verified for this request (by the bound on each user's
/// requests, `api::in_flight`), with its caller: the security check of the route
/// takes it rather than verifying the same token again.
#[derive(Clone)]
pub struct VerifiedBearer {
    /// The token as the request carried it.
    pub token: String,
    /// Whom it names.
    pub caller: Caller,
}

async fn verify_bearer(request: &Request, bearer: Bearer) -> poem::Result<Caller> {
    if ApiKeySecret::looks_like(&bearer.token) {
        return Ok(act_as(request, &bearer.token).await?);
    }
    verify_token(request, &bearer.token)
}

/// An access token, as the header or the query carries it.
fn verify_token(request: &Request, token: &str) -> poem::Result<Caller> {
    // Only the same token: a query token (`?token=`) may differ from the header's.
    if let Some(verified) = request.extensions().get::<VerifiedBearer>()
        && verified.token == token
    {
        return Ok(verified.caller.clone());
    }
    Ok(app_state(request)?.tokens.verify(token)?)
}

fn app_state(request: &Request) -> Result<&AppState, ApiError> {
    request
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("authentication", &"application state is missing"))
}

/// An API key acting as the user named by `X-Hark-User`: SQL checks the key and the
/// user and answers the session the key acts through, which every call then carries
/// like a token's (so `hark_api.enter_session` checks the key again on each).
async fn act_as(request: &Request, token: &str) -> Result<Caller, ApiError> {
    let key = ApiKeySecret::parse(token)?;
    let header = request.headers().get(ACTING_USER_HEADER).ok_or_else(|| {
        ApiError::unauthorized(
            "acting_user_required",
            "An API key used as a bearer token acts as the user named in the X-Hark-User header",
        )
    })?;
    let user_id = header
        .to_str()
        .ok()
        .and_then(|value| Uuid::try_parse(value.trim()).ok())
        .ok_or_else(|| {
            ApiError::invalid(
                ACTING_USER_HEADER,
                "invalid_acting_user",
                "X-Hark-User must be a user id",
            )
        })?;
    let state = app_state(request)?;
    let session = state.db.key_acting_session(&key, user_id).await?;
    Ok(Caller {
        tenant_id: key.tenant_id,
        user_id,
        session_id: session.session_id,
        role: session.role,
        // A stream opened this way is checked like a token's and ends with the same
        // lifetime, after which the backend opens it again.
        expires_at: state.tokens.expiry_from_now()?,
    })
}

/// A tenant's API key: `X-Api-Key: hark_sk_…`, for the tenant's own backend.
#[derive(SecurityScheme)]
#[oai(
    rename = "apiKeyAuth",
    ty = "api_key",
    key_name = "X-Api-Key",
    key_in = "header",
    checker = "parse_api_key"
)]
pub struct ApiKeyAuth(pub ApiKeySecret);

async fn parse_api_key(_request: &Request, key: ApiKey) -> poem::Result<ApiKeySecret> {
    Ok(ApiKeySecret::parse(&key.key)?)
}

/// An access token in the `token` query parameter, for browsers' WebSocket and
/// EventSource, which cannot set headers.
#[derive(SecurityScheme)]
#[oai(
    rename = "queryToken",
    ty = "api_key",
    key_name = "token",
    key_in = "query",
    checker = "verify_query_token"
)]
pub struct QueryTokenAuth(pub Caller);

async fn verify_query_token(request: &Request, token: ApiKey) -> poem::Result<Caller> {
    // Never an API key: a URL ends up in logs.
    verify_token(request, &token.key)
}

/// A bearer token, or the same token in the `token` query parameter.
#[derive(SecurityScheme)]
pub enum StreamAuth {
    /// `Authorization: Bearer <JWT>`.
    Bearer(BearerAuth),
    /// `?token=<JWT>`.
    Query(QueryTokenAuth),
}

impl StreamAuth {
    /// The verified caller.
    pub fn caller(&self) -> &Caller {
        match self {
            Self::Bearer(auth) => &auth.0,
            Self::Query(auth) => &auth.0,
        }
    }
}

/// A tenant's administrator: a bearer token (of an owner or admin, which SQL checks)
/// or an API key.
#[derive(SecurityScheme)]
pub enum AdminAuth {
    /// `Authorization: Bearer <JWT>`.
    Bearer(BearerAuth),
    /// `X-Api-Key: hark_sk_…`.
    ApiKey(ApiKeyAuth),
}

impl AdminAuth {
    /// Who acts.
    pub fn principal(&self) -> Principal {
        match self {
            Self::Bearer(auth) => Principal::User(auth.0.clone()),
            Self::ApiKey(auth) => Principal::Key(auth.0.clone()),
        }
    }
}
