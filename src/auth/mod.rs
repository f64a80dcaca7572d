//! Authentication: who is calling. Access tokens (JWT) for users, refresh tokens for
//! sessions, API keys for a tenant's own backend, and argon2id password hashes.
//!
//! A bearer token's signature, expiry, issuer and audience are checked here, without
//! the database; that its session is still open and its user and tenant still exist
//! is checked by the SQL function the request calls (`hark_api.enter_session`), in
//! the same statement, so it costs no extra round trip.

mod password;
mod secrets;
mod session;
mod tokens;

use uuid::Uuid;

pub use password::{PasswordHasher, PasswordSettings};
pub use secrets::{ApiKeySecret, RefreshSecret};
pub use session::{AuthSession, PendingSession};
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

/// Who administers a tenant in a request: a user's verified access token (SQL checks
/// that the user is an owner or admin now) or one of the tenant's API keys (SQL checks
/// that it is live and its creator still an owner or admin).
#[derive(Debug, Clone)]
pub enum Principal {
    /// A user's access token.
    User(Caller),
    /// An API key.
    Key(ApiKeySecret),
}

impl Principal {
    /// The tenant it acts in.
    pub fn tenant_id(&self) -> Uuid {
        match self {
            Self::User(caller) => caller.tenant_id,
            Self::Key(key) => key.tenant_id,
        }
    }
}
