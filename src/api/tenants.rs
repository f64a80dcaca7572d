//! Tenants: creation together with the first owner, and the caller's own tenant.

use poem::{Request, web::Data};
use poem_openapi::{ApiResponse, OpenApi, param::Header, payload::Json};

use crate::api::ApiTags;
use crate::api::security::BearerAuth;
use crate::config::TenantCreation;
use crate::db::{Tenant, TenantPatch};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenancy::{CreateTenantRequest, TenantCreated, create_tenant_with_owner};

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
            if state.config.operator_key.is_none() {
                return Err(ApiError::forbidden(
                    "tenant_creation_disabled",
                    "Tenants are created with `hark tenant create`; set HARK_OPERATOR_KEY to allow it over HTTP",
                ));
            }
            crate::api::operator::require_operator_key(&state, request, operator_key.0.as_deref())
                .await?;
        }
        crate::api::count_signup(&state, request).await?;
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
