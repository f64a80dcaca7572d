//! The API's security schemes: how a request says who it is (a bearer token, the same
//! token in the query for browsers' streams, or a tenant's API key), checked before
//! the handler runs. What a caller is ([`Caller`]) is authentication's; reading it
//! from a request is the HTTP edge's.

use poem::Request;
use poem_openapi::{
    SecurityScheme,
    auth::{ApiKey, Bearer},
};

use crate::auth::{ApiKeySecret, Caller, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// A user's access token: `Authorization: Bearer <JWT>`.
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
    // Only the same token: a query token (`?token=`) may differ from the header's.
    if let Some(verified) = request.extensions().get::<VerifiedBearer>()
        && verified.token == bearer.token
    {
        return Ok(verified.caller.clone());
    }
    let state = request
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("authentication", &"application state is missing"))?;
    Ok(state.tokens.verify(&bearer.token)?)
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
    verify_bearer(request, Bearer { token: token.key }).await
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
