//! The operator API: every tenant, for whoever runs the service, with the operator
//! key in `X-Operator-Key` (`HARK_OPERATOR_KEY`). Failed keys are counted per client
//! address like failed logins, so the key cannot be guessed at the server's speed.

use poem::{Request, web::Data};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Header, Path, Query},
    payload::Json,
    types::{Example, MaybeUndefined},
};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::db::{OperatorTenant, OperatorTenantPage, TableStorage, TenantQuery, TenantUsage};
use crate::error::ApiError;
use crate::limits::Attempt;
use crate::state::AppState;

/// Tenants per page when the request does not say.
const DEFAULT_PAGE_SIZE: i32 = 50;

/// Why a tenant is suspended.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct SuspendRequest {
    /// Shown to the operator with the tenant (at most 500 characters).
    #[oai(validator(max_length = 500))]
    pub reason: Option<String>,
}

impl Example for SuspendRequest {
    fn example() -> Self {
        Self {
            reason: Some("Unpaid invoice".to_owned()),
        }
    }
}

/// Changes to a tenant's quotas: a number sets the tenant's own, null goes back to the
/// configured default, an absent quota stays as it is.
#[derive(Debug, Clone, Object)]
pub struct QuotasPatch {
    /// Users not deleted.
    #[oai(validator(minimum(value = "0")))]
    pub users: MaybeUndefined<i64>,
    /// Rooms not deleted, direct ones included.
    #[oai(validator(minimum(value = "0")))]
    pub rooms: MaybeUndefined<i64>,
    /// Members of one room.
    #[oai(validator(minimum(value = "0")))]
    pub members_per_room: MaybeUndefined<i64>,
    /// Webhook endpoints.
    #[oai(validator(minimum(value = "0")))]
    pub webhook_endpoints: MaybeUndefined<i64>,
    /// Messages written per UTC day.
    #[oai(validator(minimum(value = "0")))]
    pub messages_per_day: MaybeUndefined<i64>,
    /// Bytes of attachment metadata written per UTC day.
    #[oai(validator(minimum(value = "0")))]
    pub attachment_bytes_per_day: MaybeUndefined<i64>,
    /// WebSocket and event-stream connections at once, across the fleet.
    #[oai(validator(minimum(value = "0")))]
    pub connections: MaybeUndefined<i64>,
}

impl QuotasPatch {
    /// The changes as the database takes them: quota names to a number or null.
    fn changes(&self) -> serde_json::Value {
        let mut changes = serde_json::Map::new();
        for (name, change) in [
            ("users", &self.users),
            ("rooms", &self.rooms),
            ("members_per_room", &self.members_per_room),
            ("webhook_endpoints", &self.webhook_endpoints),
            ("messages_per_day", &self.messages_per_day),
            ("attachment_bytes_per_day", &self.attachment_bytes_per_day),
            ("connections", &self.connections),
        ] {
            match change {
                MaybeUndefined::Undefined => {}
                MaybeUndefined::Null => {
                    changes.insert(name.to_owned(), serde_json::Value::Null);
                }
                MaybeUndefined::Value(quota) => {
                    changes.insert(name.to_owned(), serde_json::Value::from(*quota));
                }
            }
        }
        serde_json::Value::Object(changes)
    }
}

/// Changes to a tenant by the operator.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct OperatorTenantPatch {
    /// Its own quotas.
    pub quotas: QuotasPatch,
}

impl Example for OperatorTenantPatch {
    fn example() -> Self {
        Self {
            quotas: QuotasPatch {
                users: MaybeUndefined::Value(10_000),
                rooms: MaybeUndefined::Null,
                members_per_room: MaybeUndefined::Undefined,
                webhook_endpoints: MaybeUndefined::Undefined,
                messages_per_day: MaybeUndefined::Value(1_000_000),
                attachment_bytes_per_day: MaybeUndefined::Undefined,
                connections: MaybeUndefined::Undefined,
            },
        }
    }
}

/// The answer to a tenant's deletion.
#[derive(ApiResponse)]
pub enum TenantDeletion {
    /// The tenant is refused everywhere from now on; its rows are being purged, which
    /// `purged_at` shows once finished.
    #[oai(status = 202)]
    Accepted(Json<OperatorTenant>),
}

/// The operator's operations.
#[derive(Default)]
pub struct OperatorApi;

#[OpenApi(tag = "ApiTags::Operator")]
impl OperatorApi {
    /// List tenants (operator)
    ///
    /// Live tenants in slug order, `limit` at a time (1 to 200, default 50); pass the
    /// answer's `next_cursor` as `cursor` for the next page. `slug` keeps the tenants
    /// whose slug starts with it.
    #[oai(
        path = "/v1/operator/tenants",
        method = "get",
        operation_id = "operatorListTenants"
    )]
    async fn list_tenants(
        &self,
        state: Data<&AppState>,
        request: &Request,
        /// The operator key.
        #[oai(name = "X-Operator-Key")]
        operator_key: Header<Option<String>>,
        /// Only tenants whose slug starts with this.
        #[oai(validator(max_length = 40))]
        slug: Query<Option<String>>,
        /// The `next_cursor` of the previous page.
        #[oai(validator(max_length = 40))]
        cursor: Query<Option<String>>,
        /// Tenants per page, 1 to 200.
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<OperatorTenantPage>, ApiError> {
        require_operator_key(&state, request, operator_key.0.as_deref()).await?;
        let query = TenantQuery {
            after: cursor.0,
            slug_prefix: slug.0,
            limit: limit.0.unwrap_or(DEFAULT_PAGE_SIZE),
        };
        Ok(Json(state.db.operator_tenant_list(&query).await?))
    }

    /// Get a tenant (operator)
    ///
    /// Deleted tenants too, with how far the purge of their rows went.
    #[oai(
        path = "/v1/operator/tenants/:tenant_id",
        method = "get",
        operation_id = "operatorGetTenant"
    )]
    async fn get_tenant(
        &self,
        state: Data<&AppState>,
        request: &Request,
        /// The operator key.
        #[oai(name = "X-Operator-Key")]
        operator_key: Header<Option<String>>,
        tenant_id: Path<Uuid>,
    ) -> Result<Json<OperatorTenant>, ApiError> {
        require_operator_key(&state, request, operator_key.0.as_deref()).await?;
        Ok(Json(state.db.operator_tenant_get(tenant_id.0).await?))
    }

    /// Get a tenant's usage (operator)
    ///
    /// Its counts against its quotas, and its figures of the last 30 UTC days
    /// (messages, active users, peak connected users) and monthly active users, rolled
    /// up in the background each `HARK_USAGE_ROLLUP_SECONDS`.
    #[oai(
        path = "/v1/operator/tenants/:tenant_id/usage",
        method = "get",
        operation_id = "operatorGetTenantUsage"
    )]
    async fn tenant_usage(
        &self,
        state: Data<&AppState>,
        request: &Request,
        /// The operator key.
        #[oai(name = "X-Operator-Key")]
        operator_key: Header<Option<String>>,
        tenant_id: Path<Uuid>,
    ) -> Result<Json<TenantUsage>, ApiError> {
        require_operator_key(&state, request, operator_key.0.as_deref()).await?;
        Ok(Json(state.db.operator_tenant_usage(tenant_id.0).await?))
    }

    /// Storage by table (operator)
    ///
    /// What each table takes on disk with its indexes, every tenant together, largest
    /// first, read from the catalog.
    #[oai(
        path = "/v1/operator/storage",
        method = "get",
        operation_id = "operatorGetStorage"
    )]
    async fn storage(
        &self,
        state: Data<&AppState>,
        request: &Request,
        /// The operator key.
        #[oai(name = "X-Operator-Key")]
        operator_key: Header<Option<String>>,
    ) -> Result<Json<Vec<TableStorage>>, ApiError> {
        require_operator_key(&state, request, operator_key.0.as_deref()).await?;
        Ok(Json(state.db.operator_storage().await?))
    }

    /// Change a tenant's quotas (operator)
    ///
    /// Each quota given with a number becomes the tenant's own; with null, the tenant
    /// goes back to the configured default (`HARK_QUOTA_*`). What the tenant already
    /// has beyond a lowered quota stays; only new creations are refused.
    #[oai(
        path = "/v1/operator/tenants/:tenant_id",
        method = "patch",
        operation_id = "operatorUpdateTenant"
    )]
    async fn update_tenant(
        &self,
        state: Data<&AppState>,
        request: &Request,
        /// The operator key.
        #[oai(name = "X-Operator-Key")]
        operator_key: Header<Option<String>>,
        tenant_id: Path<Uuid>,
        body: Json<OperatorTenantPatch>,
    ) -> Result<Json<OperatorTenant>, ApiError> {
        require_operator_key(&state, request, operator_key.0.as_deref()).await?;
        Ok(Json(
            state
                .db
                .operator_tenant_quotas(tenant_id.0, &body.0.quotas.changes())
                .await?,
        ))
    }

    /// Delete a tenant and purge its rows (operator)
    ///
    /// At once, like an owner's `DELETE /v1/tenant`: its tokens, keys and logins are
    /// refused and its streams end on every instance. Then every instance's purge
    /// removes its rows in bounded batches, one short transaction each, so that other
    /// tenants are not stalled; `GET` on the tenant shows `purged_rows` and, once
    /// nothing is left, `purged_at`. Its row stays, keeping the slug taken.
    #[oai(
        path = "/v1/operator/tenants/:tenant_id",
        method = "delete",
        operation_id = "operatorDeleteTenant"
    )]
    async fn delete_tenant(
        &self,
        state: Data<&AppState>,
        request: &Request,
        /// The operator key.
        #[oai(name = "X-Operator-Key")]
        operator_key: Header<Option<String>>,
        tenant_id: Path<Uuid>,
    ) -> Result<TenantDeletion, ApiError> {
        require_operator_key(&state, request, operator_key.0.as_deref()).await?;
        let tenant = state.db.operator_tenant_delete(tenant_id.0).await?;
        state.purger.wake();
        Ok(TenantDeletion::Accepted(Json(tenant)))
    }

    /// Suspend a tenant (operator)
    ///
    /// Its data stays; from the answer on, its access tokens, refresh tokens, API keys,
    /// logins and registrations are refused with 403 `tenant_suspended`, and its
    /// WebSockets and event streams end with 4001 on every instance within a second.
    /// Suspending a suspended tenant only changes the reason.
    #[oai(
        path = "/v1/operator/tenants/:tenant_id/suspend",
        method = "post",
        operation_id = "operatorSuspendTenant"
    )]
    async fn suspend_tenant(
        &self,
        state: Data<&AppState>,
        request: &Request,
        /// The operator key.
        #[oai(name = "X-Operator-Key")]
        operator_key: Header<Option<String>>,
        tenant_id: Path<Uuid>,
        body: Json<SuspendRequest>,
    ) -> Result<Json<OperatorTenant>, ApiError> {
        require_operator_key(&state, request, operator_key.0.as_deref()).await?;
        Ok(Json(
            state
                .db
                .operator_tenant_suspend(tenant_id.0, body.0.reason.as_deref())
                .await?,
        ))
    }

    /// Resume a suspended tenant (operator)
    ///
    /// Its unexpired tokens and its API keys work again.
    #[oai(
        path = "/v1/operator/tenants/:tenant_id/resume",
        method = "post",
        operation_id = "operatorResumeTenant"
    )]
    async fn resume_tenant(
        &self,
        state: Data<&AppState>,
        request: &Request,
        /// The operator key.
        #[oai(name = "X-Operator-Key")]
        operator_key: Header<Option<String>>,
        tenant_id: Path<Uuid>,
    ) -> Result<Json<OperatorTenant>, ApiError> {
        require_operator_key(&state, request, operator_key.0.as_deref()).await?;
        Ok(Json(state.db.operator_tenant_resume(tenant_id.0).await?))
    }
}

/// Checks the operator key a request presents: 403 `operator_api_disabled` when the
/// server has none, 401 `invalid_operator_key` when it differs, and 429
/// `operator_key_throttled` (after [`crate::api::REFUSAL_PAUSE`]) once the client's
/// address has failed `HARK_LOGIN_FAILURES_PER_ADDRESS` times within the lockout.
pub(crate) async fn require_operator_key(
    state: &AppState,
    request: &Request,
    presented: Option<&str>,
) -> Result<(), ApiError> {
    let Some(expected) = state.config.operator_key.as_deref() else {
        return Err(ApiError::forbidden(
            "operator_api_disabled",
            "This server has no operator key: set HARK_OPERATOR_KEY to use the operator API",
        ));
    };
    // A request without a peer address (none over TCP) counts under the unspecified one.
    let address = crate::api::client_address(request, state.config.trust_forwarded_for)
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let limits = &state.limits;
    let attempt = match Attempt::by(
        &limits.operator_key_failures,
        address,
        &limits.login_addresses,
        None,
    )
    .await
    {
        Ok(attempt) => attempt,
        Err(allowance) => {
            tokio::time::sleep(crate::api::REFUSAL_PAUSE).await;
            return Err(ApiError::too_many(
                &allowance,
                "operator_key_throttled",
                "Too many wrong operator keys from this address; retry after the Retry-After seconds",
            ));
        }
    };
    if !constant_time_equal(
        presented.unwrap_or_default().as_bytes(),
        expected.as_bytes(),
    ) {
        return Err(ApiError::unauthorized(
            "invalid_operator_key",
            "This needs the operator key in `X-Operator-Key`",
        ));
    }
    attempt.succeeded().await;
    Ok(())
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
