//! Liveness and readiness probes.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    payload::{Json, PlainText},
};

use crate::api::ApiTags;
use crate::metrics::METRICS;
use crate::state::AppState;

/// The state of the instance.
#[derive(Debug, Object)]
pub struct Health {
    /// `ok` when alive, `ready` or `unready` for readiness.
    pub status: String,
    /// `up` or `down`, for readiness.
    #[oai(skip_serializing_if_is_none)]
    pub database: Option<String>,
    /// `up` or `down`: the LISTEN connection of real-time delivery, for readiness.
    #[oai(skip_serializing_if_is_none)]
    pub listener: Option<String>,
}

/// The readiness answer.
#[derive(ApiResponse)]
pub enum Readiness {
    /// The instance can serve: the database answers.
    #[oai(status = 200)]
    Ready(Json<Health>),
    /// The instance cannot serve now; route traffic elsewhere.
    #[oai(status = 503)]
    Unready(Json<Health>),
}

/// The probes.
#[derive(Default)]
pub struct HealthApi;

#[OpenApi(tag = "ApiTags::Operations")]
impl HealthApi {
    /// Liveness: the process answers
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health {
            status: "ok".to_owned(),
            database: None,
            listener: None,
        })
    }

    /// Metrics in Prometheus's text format
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&AppState>) -> PlainText<String> {
        let (in_use, idle, waiting) = state.db.pool_usage();
        for (label, value) in [("in_use", in_use), ("idle", idle), ("waiting", waiting)] {
            METRICS
                .pool
                .with_label_values(&[label])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        match state.db.notification_queue_usage().await {
            Ok(usage) => METRICS.notification_queue_usage.set(usage),
            Err(error) => tracing::warn!(%error, "could not read the notification queue usage"),
        }
        match state.db.webhook_backlog().await {
            Ok(backlog) => {
                METRICS.webhook_backlog.set(backlog.pending);
                METRICS.webhook_oldest_pending.set(backlog.oldest_seconds);
            }
            Err(error) => tracing::warn!(%error, "could not read the webhook backlog"),
        }
        if state.config.metrics_tenants > 0 {
            match state
                .db
                .usage_top_tenants(state.config.metrics_tenants)
                .await
            {
                Ok(tenants) => {
                    // Replaced as a whole: a tenant that left the top leaves no series.
                    METRICS.tenant_figures.reset();
                    for tenant in &tenants {
                        for (figure, value) in tenant.by_name() {
                            METRICS
                                .tenant_figures
                                .with_label_values(&[figure, tenant.slug.as_str()])
                                .set(value);
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "could not read the tenants' figures"),
            }
        }
        PlainText(METRICS.render())
    }

    /// Readiness: the database is reachable and the LISTEN connection is up
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&AppState>) -> Readiness {
        let database = match state.db.ping().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "not ready: the database does not answer");
                false
            }
        };
        let listener = state.realtime.is_ready();
        let up_or_down = |up: bool| Some(if up { "up" } else { "down" }.to_owned());
        let health = Health {
            status: if database && listener {
                "ready"
            } else {
                "unready"
            }
            .to_owned(),
            database: up_or_down(database),
            listener: up_or_down(listener),
        };
        if database && listener {
            Readiness::Ready(Json(health))
        } else {
            Readiness::Unready(Json(health))
        }
    }
}
