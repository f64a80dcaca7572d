//! Creating a tenant with its first owner, logged in: one operation shared by the
//! HTTP route (`POST /v1/tenants`) and `hark tenant create`, below both.

use poem_openapi::{Object, types::Example};
use uuid::Uuid;

use crate::auth::{AuthSession, PendingSession};
use crate::db::{NewTenant, Tenant, User};
use crate::error::ApiError;
use crate::state::AppState;

/// A new tenant and its owner.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct CreateTenantRequest {
    /// 3 to 40 lowercase letters, digits or dashes; users give it at login.
    #[oai(validator(pattern = r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$"))]
    pub slug: String,
    /// The display name (1 to 100 characters).
    #[oai(validator(min_length = 1, max_length = 100))]
    pub name: String,
    /// The first owner.
    pub owner: OwnerRequest,
    /// Whether anyone may register in the tenant. New tenants start closed (the
    /// default): users join when the owner opens registration, or through API keys.
    pub registration_open: Option<bool>,
}

/// The first owner of a new tenant.
#[derive(Debug, Clone, Object)]
pub struct OwnerRequest {
    /// 2 to 32 letters, digits, `.`, `-` or `_`.
    #[oai(validator(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,31}$"))]
    pub username: String,
    /// 8 to 256 characters.
    #[oai(validator(min_length = 8, max_length = 256))]
    pub password: String,
    /// Optional email address.
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    /// The name shown to others (1 to 100 characters).
    #[oai(validator(min_length = 1, max_length = 100))]
    pub display_name: Option<String>,
}

impl Example for CreateTenantRequest {
    fn example() -> Self {
        CreateTenantRequest {
            slug: "acme".to_owned(),
            name: "Acme Corp".to_owned(),
            owner: OwnerRequest {
                username: "alice".to_owned(),
                password: "correct horse battery staple".to_owned(),
                email: Some("alice@acme.example".to_owned()),
                display_name: Some("Alice".to_owned()),
            },
            registration_open: Some(false),
        }
    }
}

/// A created tenant, its owner and the owner's tokens.
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct TenantCreated {
    /// The tenant.
    pub tenant: Tenant,
    /// The owner's first session.
    pub session: AuthSession,
}

/// Creates a tenant with its owner and logs the owner in; shared by the HTTP route and
/// `hark tenant create`.
pub async fn create_tenant_with_owner(
    state: &AppState,
    request: CreateTenantRequest,
) -> Result<TenantCreated, ApiError> {
    // Everything cheap first: the password hash is slow and takes memory on purpose.
    state.db.tenant_slug_check(&request.slug).await?;
    let password_hash = state.passwords.hash(&request.owner.password).await?;
    let tenant = NewTenant {
        tenant_id: Uuid::now_v7(),
        slug: request.slug,
        name: request.name,
        owner_id: Uuid::now_v7(),
        username: request.owner.username,
        email: request.owner.email,
        display_name: request.owner.display_name,
        password_hash,
        registration_open: request.registration_open.unwrap_or(false),
    };
    let session = PendingSession::new(&state.tokens)?;
    let created = state.db.tenant_create(&tenant, &session.record).await?;
    let user: User = created.user;
    Ok(TenantCreated {
        tenant: created.tenant,
        session: session.finish(&state.tokens, tenant.tenant_id, user)?,
    })
}
