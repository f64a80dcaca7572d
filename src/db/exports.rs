//! Typed calls of the export functions (`sql/functions/0016_exports.sql`).

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Principal;
use crate::db::{Database, DatabaseError};

/// Where an export stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum ExportState {
    /// Being built in the background.
    Pending,
    /// Built: `document` holds it.
    Ready,
}

/// The latest export of a user's data.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct UserExport {
    /// The user it is about.
    pub user_id: Uuid,
    /// Where it stands.
    pub state: ExportState,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
    /// When it was built.
    pub ready_at: Option<DateTime<Utc>>,
    /// Once ready: `profile`, `memberships` (with read markers), `messages` (every
    /// one they wrote, with its current text), `reactions`, `thread_read_markers` and
    /// `reports` (those they filed), and `exported_at`.
    pub document: Option<serde_json::Value>,
}

impl Database {
    /// Asks for an export of a user's data.
    pub async fn user_export_request(
        &self,
        principal: &Principal,
        user_id: Uuid,
    ) -> Result<UserExport, DatabaseError> {
        self.call_as("user_export_request", principal, &[&user_id])
            .await
    }

    /// The latest export of a user's data.
    pub async fn user_export_get(
        &self,
        principal: &Principal,
        user_id: Uuid,
    ) -> Result<UserExport, DatabaseError> {
        self.call_as("user_export_get", principal, &[&user_id])
            .await
    }

    /// Builds the pending export asked for first; answers whether there was one. A
    /// user's whole history can take longer than a request's statement timeout, so
    /// it runs without one.
    pub async fn export_build(&self) -> Result<bool, DatabaseError> {
        self.without_statement_timeout()
            .call("export_build", &[])
            .await
    }
}
