//! Authentication: who is calling. Access tokens (JWT) for users, refresh tokens for
//! sessions, API keys for a tenant's own backend, and argon2id password hashes.
//!
//! A bearer token's signature, expiry, issuer and audience are checked here, without
//! the database; that its session is still open and its user and tenant still exist
//! is checked by the SQL function the request calls (`hark_api.enter_session`), in
//! the same statement, so it costs no extra round trip.

mod password;
mod secrets;
mod tokens;

use poem::Request;
use poem_openapi::{
    SecurityScheme,
    auth::{ApiKey, Bearer},
};
use uuid::Uuid;

use crate::error::ApiError;
use crate::startup::AppState;

pub use password::{PasswordHasher, PasswordSettings};
pub use secrets::{ApiKeySecret, RefreshSecret};
pub use tokens::{AccessToken, TokenIssuer, TokenSettings, default_key_id};

/// The publicly known secret used when `HARK_JWT_SECRET` is not set.
pub fn tokens_development_secret() -> &'static str {
    tokens::DEVELOPMENT_SECRET
}

pub(crate) use crate::db::Role;

/// The verified identity behind a request: the claims of its access token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The tenant the user belongs to.
    pub tenant_id: Uuid,
    /// The user.
    pub user_id: Uuid,
    /// The session (login) the token belongs to.
    pub session_id: Uuid,
    /// The user's role when the token was issued; SQL checks the current one.
    pub role: Role,
    /// When the access token expires: WebSockets and event streams opened with it
    /// end then (4001), unless the client authenticates again with a fresh one.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// A user's access token: `Authorization: Bearer <JWT>`.
#[derive(SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "verify_bearer"
)]
pub struct BearerAuth(pub Caller);

async fn verify_bearer(request: &Request, bearer: Bearer) -> poem::Result<Caller> {
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
