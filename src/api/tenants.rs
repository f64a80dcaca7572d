//! Tenants: creation together with the first owner, and the caller's own tenant.

use poem::{Request, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Header, payload::Json, types::Example};
use uuid::Uuid;

use crate::api::{ApiTags, auth::PendingSession};
use crate::auth::BearerAuth;
use crate::config::TenantCreation;
use crate::db::{NewTenant, Tenant, TenantPatch, User};
use crate::error::ApiError;
use crate::startup::AppState;

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
    pub session: crate::api::AuthSession,
}

/// The answer to a tenant creation.
#[derive(ApiResponse)]
pub enum TenantCreatedResponse {
    /// The tenant exists, with its owner logged in.
    #[oai(status = 201)]
    Created(Json<TenantCreated>),
}

/// No content.
#[derive(ApiResponse)]
pub enum TenantDeleted {
    /// The tenant is gone; every token of it is refused from now on.
    #[oai(status = 204)]
    Deleted,
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
    let session = PendingSession::new(state)?;
    let created = state.db.tenant_create(&tenant, &session.record).await?;
    let user: User = created.user;
    Ok(TenantCreated {
        tenant: created.tenant,
        session: session.finish(state, tenant.tenant_id, user)?,
    })
}

/// Tenants.
#[derive(Default)]
pub struct TenantsApi;

#[OpenApi(tag = "ApiTags::Tenants")]
impl TenantsApi {
    /// Create a tenant with its owner
    ///
    /// Depending on `HARK_TENANT_CREATION`, open to anyone or only to callers with the
    /// operator key in `X-Operator-Key` (the default). Answers the owner's tokens.
    #[oai(path = "/v1/tenants", method = "post", operation_id = "createTenant")]
    async fn create_tenant(
        &self,
        state: Data<&AppState>,
        request: &Request,
        body: Json<CreateTenantRequest>,
        /// The operator key, when tenant creation is restricted to operators.
        #[oai(name = "X-Operator-Key")]
        operator_key: Header<Option<String>>,
    ) -> Result<TenantCreatedResponse, ApiError> {
        if state.config.tenant_creation == TenantCreation::Operator {
            let Some(expected) = state.config.operator_key.as_deref() else {
                return Err(ApiError::forbidden(
                    "tenant_creation_disabled",
                    "Tenants are created with `hark tenant create`; set HARK_OPERATOR_KEY to allow it over HTTP",
                ));
            };
            let presented = operator_key.0.as_deref().unwrap_or_default();
            if !constant_time_equal(presented.as_bytes(), expected.as_bytes()) {
                return Err(ApiError::unauthorized(
                    "invalid_operator_key",
                    "Creating a tenant needs the operator key in `X-Operator-Key`",
                ));
            }
        }
        crate::api::count_signup(&state, request)?;
        let created = create_tenant_with_owner(&state, body.0).await?;
        Ok(TenantCreatedResponse::Created(Json(created)))
    }

    /// Get the caller's tenant
    #[oai(path = "/v1/tenant", method = "get", operation_id = "getTenant")]
    async fn get_tenant(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<Json<Tenant>, ApiError> {
        Ok(Json(state.db.tenant_get(&auth.0).await?))
    }

    /// Update the caller's tenant (owners and admins)
    #[oai(path = "/v1/tenant", method = "patch", operation_id = "updateTenant")]
    async fn update_tenant(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<TenantPatch>,
    ) -> Result<Json<Tenant>, ApiError> {
        Ok(Json(state.db.tenant_update(&auth.0, &body.0).await?))
    }

    /// Delete the caller's tenant (owners)
    ///
    /// Every user, key and token of the tenant stops working at once.
    #[oai(path = "/v1/tenant", method = "delete", operation_id = "deleteTenant")]
    async fn delete_tenant(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<TenantDeleted, ApiError> {
        state.db.tenant_delete(&auth.0).await?;
        Ok(TenantDeleted::Deleted)
    }
}

/// Compares secrets in time independent of where they differ.
fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}
