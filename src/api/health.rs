//! Liveness and readiness probes.

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use crate::api::ApiTags;
use crate::startup::AppState;

/// The state of the instance.
#[derive(Debug, Object)]
pub struct Health {
    /// `ok` when alive, `ready` or `unready` for readiness.
    pub status: String,
    /// `up` or `down`, for readiness.
    #[oai(skip_serializing_if_is_none)]
    pub database: Option<String>,
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
pub struct HealthApi;

#[OpenApi(tag = "ApiTags::Operations")]
impl HealthApi {
    /// Liveness: the process answers
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health {
            status: "ok".to_owned(),
            database: None,
        })
    }

    /// Readiness: the database is reachable
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&AppState>) -> Readiness {
        match state.db.ping().await {
            Ok(()) => Readiness::Ready(Json(Health {
                status: "ready".to_owned(),
                database: Some("up".to_owned()),
            })),
            Err(error) => {
                tracing::warn!(%error, "not ready: the database does not answer");
                Readiness::Unready(Json(Health {
                    status: "unready".to_owned(),
                    database: Some("down".to_owned()),
                }))
            }
        }
    }
}
