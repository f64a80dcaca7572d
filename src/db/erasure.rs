//! Typed calls of the erasure function (`sql/functions/0015_erasure.sql`).

use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Principal;
use crate::db::{Database, DatabaseError};

/// What erasing a user does to their messages, as the tenant chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum ErasureMode {
    /// Messages stay, under a sender whose name, email and profile are gone.
    Anonymise,
    /// Messages become tombstones: body, attachment and earlier versions gone, the
    /// seq kept so that history stays gapless.
    Delete,
}

/// What an erasure did.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct Erasure {
    /// The erased user, whose id is all that is left of the profile.
    pub user_id: Uuid,
    /// What became of their messages.
    pub mode: ErasureMode,
    /// How many of their messages became tombstones (0 when anonymised).
    pub messages: i64,
}

impl Database {
    /// Erases a user's personal data. It rewrites every copy of it in the tenant's
    /// tables, which takes longer than a request's statement timeout allows for a user
    /// with a long history, so it runs without one.
    pub async fn user_erase(
        &self,
        principal: &Principal,
        user_id: Uuid,
    ) -> Result<Erasure, DatabaseError> {
        self.without_statement_timeout()
            .call_as("user_erase", principal, &[&user_id])
            .await
    }
}
