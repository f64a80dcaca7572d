//! Typed calls of the operator's functions (`sql/functions/0013_operator.sql`): every
//! tenant, for whoever holds the operator key or runs `hark tenant …`.

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::{Database, DatabaseError};

/// A tenant as the operator sees it.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct OperatorTenant {
    /// The tenant's id.
    pub id: Uuid,
    /// The unique, URL-safe name users give at login.
    pub slug: String,
    /// The display name.
    pub name: String,
    /// Whether anyone may register as a member with the tenant's slug.
    pub registration_open: bool,
    /// When the tenant was created.
    pub created_at: DateTime<Utc>,
    /// When the tenant was last changed.
    pub updated_at: DateTime<Utc>,
    /// Whether the operator suspended it: its tokens, keys and logins are refused with
    /// 403 `tenant_suspended`, its data is kept.
    pub suspended: bool,
    /// Since when it is suspended.
    pub suspended_at: Option<DateTime<Utc>>,
    /// Why, as the operator said.
    pub suspended_reason: Option<String>,
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

    /// One live tenant.
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

    /// Resumes a suspended tenant.
    pub async fn operator_tenant_resume(
        &self,
        tenant_id: Uuid,
    ) -> Result<OperatorTenant, DatabaseError> {
        self.call("operator_tenant_resume", &[&tenant_id]).await
    }
}
