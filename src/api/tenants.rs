//! Tenants: creation together with the first owner, and the caller's own tenant.

use poem::{Request, web::Data};
use poem_openapi::{ApiResponse, OpenApi, param::Header, payload::Json};

use crate::api::ApiTags;
use crate::api::security::{AdminAuth, BearerAuth};
use crate::config::TenantCreation;
use crate::db::{Tenant, TenantPatch, TenantUsage};
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
        let tenant = state.db.tenant_update(&auth.0, &body.0).await?;
        // A new retention applies at once, not at the next sweep.
        if body.0.retention_days.is_some() {
            state.purger.wake();
        }
        Ok(Json(tenant))
    }

    /// The tenant's usage against its quotas (owners, admins, API keys)
    ///
    /// For each quota (users, rooms, members per room, webhook endpoints): what the
    /// tenant has and the quota, absent when there is none. A creation past a quota is
    /// refused with 403 `quota_exceeded`, the quota's name in `field`.
    #[oai(
        path = "/v1/tenant/usage",
        method = "get",
        operation_id = "getTenantUsage"
    )]
    async fn get_usage(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
    ) -> Result<Json<TenantUsage>, ApiError> {
        Ok(Json(state.db.tenant_usage(&auth.principal()).await?))
    }

    /// Delete the caller's tenant (owners)
    ///
    /// Every user, key and token of the tenant stops working at once; its rows are
    /// then purged in the background. Its slug stays taken.
    #[oai(path = "/v1/tenant", method = "delete", operation_id = "deleteTenant")]
    async fn delete_tenant(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<TenantDeleted, ApiError> {
        state.db.tenant_delete(&auth.0).await?;
        state.purger.wake();
        Ok(TenantDeleted::Deleted)
    }
}
