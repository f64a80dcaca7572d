//! Typed calls of the quota and usage functions (`sql/functions/0013_quotas.sql`,
//! `sql/functions/0018_usage.sql`): the configured defaults, a tenant's usage against
//! its quotas and its figures, and the operator's storage by table.

use poem_openapi::Object;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::db::{Database, DatabaseError};

/// A tenant's quotas; none where absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Object)]
pub struct Quotas {
    /// Users not deleted.
    pub users: Option<i64>,
    /// Rooms not deleted, direct ones included.
    pub rooms: Option<i64>,
    /// Members of one room.
    pub members_per_room: Option<i64>,
    /// Webhook endpoints.
    pub webhook_endpoints: Option<i64>,
    /// Messages written per UTC day.
    pub messages_per_day: Option<i64>,
    /// Bytes of attachment metadata (each attachment's JSON text) written per UTC day.
    pub attachment_bytes_per_day: Option<i64>,
    /// WebSocket and event-stream connections at once, across the fleet.
    pub connections: Option<i64>,
}

/// How much of one quota a tenant uses.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct QuotaUsage {
    /// What the tenant has now (for `members_per_room`: its largest room's members).
    pub used: Option<i64>,
    /// The quota; absent when there is none.
    pub quota: Option<i64>,
}

/// One UTC day of a tenant's usage.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct DailyUsage {
    /// The day (UTC).
    pub day: chrono::NaiveDate,
    /// Messages written that day.
    pub messages: i64,
    /// Users who sent a message or were connected that day.
    pub active_users: i64,
    /// The most users connected at once that day (sampled each roll-up).
    pub peak_connected_users: i32,
}

/// A tenant's usage: its counts against each of its quotas, and its figures, rolled
/// up in the background each `HARK_USAGE_ROLLUP_SECONDS`.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct TenantUsage {
    /// Users not deleted.
    pub users: QuotaUsage,
    /// Rooms not deleted.
    pub rooms: QuotaUsage,
    /// Members of the largest room.
    pub members_per_room: QuotaUsage,
    /// Webhook endpoints.
    pub webhook_endpoints: QuotaUsage,
    /// Messages written today (UTC), counted as they are written while the quota is
    /// set, else the rolled-up figure.
    pub messages_per_day: QuotaUsage,
    /// Bytes of attachment metadata written today (UTC), counted while a send quota
    /// is set.
    pub attachment_bytes_per_day: QuotaUsage,
    /// WebSocket and event-stream connections open now, as the instances last
    /// recorded them.
    pub connections: QuotaUsage,
    /// The last 30 UTC days with activity, newest first.
    pub days: Vec<DailyUsage>,
    /// Users active in the last 30 days.
    pub monthly_active_users: i64,
}

/// One tenant's figures of today (UTC) as the per-tenant metrics show them.
#[derive(Debug, Clone, Deserialize)]
pub struct TenantFigures {
    /// The tenant's slug, the metrics' label.
    pub slug: String,
    /// Messages written today, as rolled up.
    pub messages_today: i64,
    /// Users who sent or were connected today.
    pub active_users_today: i64,
    /// The most users connected at once today (sampled).
    pub peak_connected_users_today: i64,
    /// Users active in the last 30 days.
    pub monthly_active_users: i64,
}

impl TenantFigures {
    /// Each figure by its name in the metrics.
    pub fn by_name(&self) -> [(&'static str, i64); 4] {
        [
            ("messages_today", self.messages_today),
            ("active_users_today", self.active_users_today),
            (
                "peak_connected_users_today",
                self.peak_connected_users_today,
            ),
            ("monthly_active_users", self.monthly_active_users),
        ]
    }
}

/// What one table takes on disk, every tenant together.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct TableStorage {
    /// The table.
    pub table: String,
    /// Bytes, with its indexes and TOAST.
    pub bytes: i64,
    /// Rows, as the planner's statistics estimate them.
    pub rows_estimate: i64,
}

impl Database {
    /// Records the configured quotas, which apply where a tenant has none of its own.
    pub async fn quota_defaults_set(&self, quotas: &Quotas) -> Result<(), DatabaseError> {
        self.call(
            "quota_defaults_set",
            &[&tokio_postgres::types::Json(quotas)],
        )
        .await
    }

    /// Rolls up every tenant's usage figures (skipped while another instance does);
    /// answers how many tenants were rolled up.
    pub async fn usage_rollup(&self) -> Result<i32, DatabaseError> {
        self.without_statement_timeout()
            .call("usage_rollup", &[])
            .await
    }

    /// The `limit` live tenants with the most messages today, with today's figures,
    /// for the per-tenant metrics.
    pub async fn usage_top_tenants(&self, limit: i32) -> Result<Vec<TenantFigures>, DatabaseError> {
        self.call("usage_top_tenants", &[&limit]).await
    }

    /// A tenant's usage, for the operator.
    pub async fn operator_tenant_usage(
        &self,
        tenant_id: uuid::Uuid,
    ) -> Result<TenantUsage, DatabaseError> {
        self.call("operator_tenant_usage", &[&tenant_id]).await
    }

    /// What each table takes on disk, for the operator.
    pub async fn operator_storage(&self) -> Result<Vec<TableStorage>, DatabaseError> {
        self.call("operator_storage", &[]).await
    }

    /// The tenant's usage against its quotas (owners, admins and their keys).
    pub async fn tenant_usage(&self, principal: &Principal) -> Result<TenantUsage, DatabaseError> {
        self.call_as("tenant_usage", principal, &[]).await
    }
}
