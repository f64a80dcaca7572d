//! Registration, login, refresh and logout.

use poem::{Request, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json, types::Example};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::BearerAuth;
use crate::auth::{AuthSession, PendingSession, RefreshSecret};
use crate::db::{NewRegistration, Refreshed};
use crate::error::ApiError;
use crate::limits::{Attempt, account_key};
use crate::state::AppState;

/// Self-registration as a member of a tenant.
#[derive(Debug, Object)]
#[oai(example)]
pub struct RegisterRequest {
    /// The slug of the tenant to join.
    #[oai(validator(pattern = r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$"))]
    pub tenant: String,
    /// 2 to 32 letters, digits, `.`, `-` or `_`, unique in the tenant.
    #[oai(validator(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,31}$"))]
    pub username: String,
    /// 8 to 256 characters.
    #[oai(validator(min_length = 8, max_length = 256))]
    pub password: String,
    /// Optional; unique in the tenant.
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    /// The name shown to others (1 to 100 characters).
    #[oai(validator(min_length = 1, max_length = 100))]
    pub display_name: Option<String>,
}

impl Example for RegisterRequest {
    fn example() -> Self {
        RegisterRequest {
            tenant: "acme".to_owned(),
            username: "bob".to_owned(),
            password: "correct horse battery staple".to_owned(),
            email: Some("bob@acme.example".to_owned()),
            display_name: Some("Bob".to_owned()),
        }
    }
}

/// Credentials.
#[derive(Debug, Object)]
#[oai(example)]
pub struct LoginRequest {
    /// The slug of the user's tenant.
    #[oai(validator(max_length = 40))]
    pub tenant: String,
    /// The username or the email address.
    #[oai(validator(max_length = 254))]
    pub login: String,
    /// The password.
    #[oai(validator(max_length = 256))]
    pub password: String,
}

impl Example for LoginRequest {
    fn example() -> Self {
        LoginRequest {
            tenant: "acme".to_owned(),
            login: "bob".to_owned(),
            password: "correct horse battery staple".to_owned(),
        }
    }
}

/// A refresh token to exchange.
#[derive(Debug, Object)]
#[oai(example)]
pub struct RefreshRequest {
    /// The `refresh_token` of an earlier answer.
    pub refresh_token: String,
}

impl Example for RefreshRequest {
    fn example() -> Self {
        Self {
            refresh_token: "hark_rt_…".to_owned(),
        }
    }
}

/// A new session.
#[derive(ApiResponse)]
pub enum Created {
    /// The session was opened.
    #[oai(status = 201)]
    Created(Json<AuthSession>),
}

/// No content.
#[derive(ApiResponse)]
pub enum LoggedOut {
    /// The session is closed; its tokens are refused from now on.
    #[oai(status = 204)]
    LoggedOut,
}

/// Registration, login, refresh and logout.
#[derive(Default)]
pub struct AuthApi;

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Register as a member of a tenant
    ///
    /// Fails with 403 `registration_closed` when the tenant has closed registration,
    /// 429 `too_many_signups` after `HARK_SIGNUPS_PER_ADDRESS_PER_HOUR` registrations
    /// and tenant creations from one address, and 503 `busy` when too many passwords
    /// are being hashed at once.
    #[oai(path = "/v1/auth/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        state: Data<&AppState>,
        request: &Request,
        body: Json<RegisterRequest>,
    ) -> Result<Created, ApiError> {
        let body = body.0;
        crate::api::count_signup(&state, request).await?;
        // Everything cheap first: the password hash is slow and takes memory on purpose.
        state
            .db
            .registration_check(&body.tenant, &body.username)
            .await?;
        let password_hash = state.passwords.hash(&body.password).await?;
        let registration = NewRegistration {
            tenant_slug: body.tenant,
            user_id: Uuid::now_v7(),
            username: body.username,
            email: body.email,
            display_name: body.display_name,
            password_hash,
        };
        let session = PendingSession::new(&state.tokens)?;
        let registered = state.db.register(&registration, &session.record).await?;
        Ok(Created::Created(Json(session.finish(
            &state.tokens,
            registered.tenant_id,
            registered.user,
        )?)))
    }

    /// Log in
    ///
    /// With the tenant's slug and a username or email. A wrong tenant, login or
    /// password all answer 401 `invalid_credentials`, in the same time. After
    /// repeated failures for one login (`HARK_LOGIN_FAILURES_PER_ACCOUNT`) or from one
    /// address (`HARK_LOGIN_FAILURES_PER_ADDRESS`), attempts answer 429
    /// `login_throttled` with `Retry-After`, whether the account exists or not.
    #[oai(path = "/v1/auth/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&AppState>,
        request: &Request,
        body: Json<LoginRequest>,
    ) -> Result<Json<AuthSession>, ApiError> {
        // Throttling is keyed by what the client typed, never by what exists, so a
        // refusal says nothing about the account.
        let account = account_key(&body.tenant, &body.login);
        let address = crate::api::client_address(request, state.config.trust_forwarded_for);
        let limits = &state.limits;
        let attempt = match Attempt::by(
            &limits.login_accounts,
            account,
            &limits.login_addresses,
            address,
        )
        .await
        {
            Ok(attempt) => attempt,
            Err(allowance) => {
                tokio::time::sleep(crate::api::REFUSAL_PAUSE).await;
                return Err(ApiError::too_many(
                    &allowance,
                    "login_throttled",
                    "Too many failed logins; retry after the Retry-After seconds",
                ));
            }
        };
        let candidate = state.db.login_lookup(&body.tenant, &body.login).await?;
        let verified = state
            .passwords
            .verify(
                &body.password,
                candidate
                    .as_ref()
                    .map(|candidate| candidate.password_hash.as_str()),
            )
            .await?;
        let candidate = match candidate {
            Some(candidate) if verified => {
                attempt.succeeded().await;
                candidate
            }
            _ => {
                return Err(ApiError::unauthorized(
                    "invalid_credentials",
                    "The tenant, login or password is wrong",
                ));
            }
        };
        let session = PendingSession::new(&state.tokens)?;
        let user = state
            .db
            .login_complete(candidate.tenant_id, candidate.user_id, &session.record)
            .await?;
        Ok(Json(session.finish(
            &state.tokens,
            candidate.tenant_id,
            user,
        )?))
    }

    /// Exchange a refresh token for new tokens
    ///
    /// The refresh token works once: the answer carries its successor. A spent refresh
    /// token presented again ends the whole session (401 `refresh_token_reused`):
    /// someone holds a copy of it.
    #[oai(path = "/v1/auth/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(
        &self,
        state: Data<&AppState>,
        body: Json<RefreshRequest>,
    ) -> Result<Json<AuthSession>, ApiError> {
        let (tenant_id, presented) = RefreshSecret::parse(&body.refresh_token)?;
        let next = PendingSession::for_session(&state.tokens, presented.session_id)?;
        let refreshed = state
            .db
            .session_refresh(tenant_id, &presented.hash(), &next.record)
            .await?;
        match refreshed {
            Refreshed::Rotated { user } => {
                Ok(Json(next.finish(&state.tokens, tenant_id, *user)?))
            }
            Refreshed::Reused => Err(ApiError::unauthorized(
                "refresh_token_reused",
                "This refresh token was already used: the session has been ended everywhere; log in again",
            )),
        }
    }

    /// Log out
    ///
    /// Closes the session: its access and refresh tokens are refused from then on.
    #[oai(path = "/v1/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<LoggedOut, ApiError> {
        state.db.logout(&auth.0).await?;
        Ok(LoggedOut::LoggedOut)
    }
}
