//! Typed calls of the operator's functions (`sql/functions/0013_operator.sql`): every
//! tenant, for whoever holds the operator key or runs `hark tenant …`.

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::{Database, DatabaseError, Quotas, Tenant};

/// A tenant as the operator sees it.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct OperatorTenant {
    /// The tenant as its own owners see it.
    #[oai(flatten)]
    #[serde(flatten)]
    pub tenant: Tenant,
    /// Whether the operator suspended it: its tokens, keys and logins are refused with
    /// 403 `tenant_suspended`, its data is kept.
    pub suspended: bool,
    /// Since when it is suspended.
    pub suspended_at: Option<DateTime<Utc>>,
    /// Why, as the operator said.
    pub suspended_reason: Option<String>,
    /// Its quotas: its own, or the configured defaults.
    pub quotas: Quotas,
    /// When it was deleted (its owner's `DELETE /v1/tenant`, or the operator's).
    pub deleted_at: Option<DateTime<Utc>>,
    /// Rows of it the purge has removed since.
    pub purged_rows: i64,
    /// When the purge finished: no row of the tenant is left but this one, which
    /// keeps its slug reserved.
    pub purged_at: Option<DateTime<Utc>>,
    /// Its rolled-up usage in brief.
    pub usage: UsageSummary,
}

/// A tenant's rolled-up usage in brief.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct UsageSummary {
    /// Messages written today (UTC), as of the last roll-up.
    pub messages_today: i64,
    /// Users who sent a message or were connected in the last 30 days.
    pub monthly_active_users: i64,
}

/// A page of tenants, in slug order.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct OperatorTenantPage {
    /// The tenants.
    pub items: Vec<OperatorTenant>,
    /// Give as `after` for the next page; absent on a page that is not full.
    pub next_cursor: Option<String>,
}

/// Which tenants to list.
#[derive(Debug, Clone, Default)]
pub struct TenantQuery {
    /// Only tenants whose slug comes after this one.
    pub after: Option<String>,
    /// Only tenants whose slug starts with this.
    pub slug_prefix: Option<String>,
    /// At most this many (1 to 200).
    pub limit: i32,
}

impl Database {
    /// Live tenants in slug order.
    pub async fn operator_tenant_list(
        &self,
        query: &TenantQuery,
    ) -> Result<OperatorTenantPage, DatabaseError> {
        self.call(
            "operator_tenant_list",
            &[&query.after, &query.slug_prefix, &query.limit],
        )
        .await
    }

    /// One tenant, deleted ones too (with how far their purge went).
    pub async fn operator_tenant_get(
        &self,
        tenant_id: Uuid,
    ) -> Result<OperatorTenant, DatabaseError> {
        self.call("operator_tenant_get", &[&tenant_id]).await
    }

    /// Suspends a tenant and ends its streams on every instance.
    pub async fn operator_tenant_suspend(
        &self,
        tenant_id: Uuid,
        reason: Option<&str>,
    ) -> Result<OperatorTenant, DatabaseError> {
        self.call("operator_tenant_suspend", &[&tenant_id, &reason])
            .await
    }

    /// Sets a tenant's own quotas: `changes` maps quota names to a number, or to null
    /// for the default; quotas not named stay.
    pub async fn operator_tenant_quotas(
        &self,
        tenant_id: Uuid,
        changes: &serde_json::Value,
    ) -> Result<OperatorTenant, DatabaseError> {
        self.call("operator_tenant_quotas", &[&tenant_id, changes])
            .await
    }

    /// Deletes a tenant: refused everywhere at once, its rows purged afterwards.
    pub async fn operator_tenant_delete(
        &self,
        tenant_id: Uuid,
    ) -> Result<OperatorTenant, DatabaseError> {
        self.call("operator_tenant_delete", &[&tenant_id]).await
    }

    /// One batch of retention work (messages older than their tenant's retention
    /// become tombstones, then the events older than it and beyond the replay window
    /// go); answers how many rows changed (0 when nothing is left to do).
    pub async fn retention_batch(
        &self,
        batch: i32,
        replay_window: i64,
    ) -> Result<i32, DatabaseError> {
        self.call("retention_batch", &[&batch, &replay_window])
            .await
    }

    /// Deletes a bounded batch of a deleted tenant's rows; answers how many went (0
    /// when no deleted tenant is left to purge).
    pub async fn purge_tenants(&self, batch: i32) -> Result<i32, DatabaseError> {
        self.call("purge_tenants", &[&batch]).await
    }

    /// Resumes a suspended tenant.
    pub async fn operator_tenant_resume(
        &self,
        tenant_id: Uuid,
    ) -> Result<OperatorTenant, DatabaseError> {
        self.call("operator_tenant_resume", &[&tenant_id]).await
    }
}
