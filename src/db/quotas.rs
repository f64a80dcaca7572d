//! Typed calls of the quota functions (`sql/functions/0013_quotas.sql`): the
//! configured defaults, and a tenant's usage against its quotas.

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
}

/// How much of one quota a tenant uses.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct QuotaUsage {
    /// What the tenant has now (for `members_per_room`: its largest room's members).
    pub used: Option<i64>,
    /// The quota; absent when there is none.
    pub quota: Option<i64>,
}

/// A tenant's usage against each of its quotas.
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

    /// The tenant's usage against its quotas (owners, admins and their keys).
    pub async fn tenant_usage(&self, principal: &Principal) -> Result<TenantUsage, DatabaseError> {
        self.call_as("tenant_usage", principal, &[]).await
    }
}
