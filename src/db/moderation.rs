//! Typed calls of the moderation functions (`sql/functions/0011_moderation.sql`):
//! blocks and reports by users; the moderation queue, room mutes and bans,
//! tenant-wide bans and word filters of moderators; the audit log of administrators.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Caller, Principal};
use crate::db::{Database, DatabaseError, User, UserRef};

/// A user the caller blocked.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct Block {
    /// The blocked user.
    pub user: UserRef,
    /// When they were blocked.
    pub created_at: DateTime<Utc>,
}

/// One page of the caller's blocks.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct BlockPage {
    /// Blocks in order of the blocked user's id.
    pub items: Vec<Block>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// Why something is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum ReportReason {
    /// Unwanted advertising or repeated messages.
    Spam,
    /// Abuse aimed at someone.
    Harassment,
    /// Content that does not belong here.
    Inappropriate,
    /// Anything else; say what in `details`.
    Other,
    /// Put in the queue by a word filter whose action is `flag` (never given by users).
    Filtered,
}

impl ReportReason {
    /// The name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spam => "spam",
            Self::Harassment => "harassment",
            Self::Inappropriate => "inappropriate",
            Self::Other => "other",
            Self::Filtered => "filtered",
        }
    }
}

/// What a moderator does about a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum ReportAction {
    /// Nothing: the report is closed.
    Dismiss,
    /// The reported message becomes a tombstone.
    DeleteMessage,
    /// The reported user is muted in the message's room.
    Mute,
    /// The reported user is banned from the message's room (and removed).
    Ban,
    /// The reported user is banned from the whole tenant.
    BanUser,
}

impl ReportAction {
    /// The name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dismiss => "dismiss",
            Self::DeleteMessage => "delete_message",
            Self::Mute => "mute",
            Self::Ban => "ban",
            Self::BanUser => "ban_user",
        }
    }
}

/// Where a report stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum ReportState {
    /// Waiting for a moderator.
    Open,
    /// A moderator acted on it (or on another report of the same target).
    Resolved,
}

impl ReportState {
    /// The name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
        }
    }
}

/// A report of a message or a user.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct Report {
    /// The report's id.
    pub id: Uuid,
    /// `open` or `resolved`.
    pub state: ReportState,
    /// Why it was reported.
    pub reason: ReportReason,
    /// What the reporter added.
    pub details: Option<String>,
    /// Who reported it; absent when a word filter did.
    pub reporter: Option<UserRef>,
    /// The reported user (a message's sender); absent for a system message.
    pub target_user: Option<UserRef>,
    /// The reported message's room.
    pub room_id: Option<Uuid>,
    /// The reported message.
    pub message_id: Option<Uuid>,
    /// The message as it was when reported (later edits do not change it).
    pub message: Option<serde_json::Value>,
    /// What the moderator did.
    pub action: Option<ReportAction>,
    /// The moderator who resolved it (absent for an API key).
    pub resolved_by: Option<Uuid>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// The moderator's note.
    pub resolution_note: Option<String>,
    /// When it was reported.
    pub created_at: DateTime<Utc>,
}

/// One page of the moderation queue.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct ReportPage {
    /// Reports, newest first.
    pub items: Vec<Report>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// A new report by a user: of a message (`room_id` and `message_id`) or of a user.
#[derive(Debug, Clone)]
pub struct NewReport {
    /// The report's id.
    pub report_id: Uuid,
    /// The reported message's room.
    pub room_id: Option<Uuid>,
    /// The reported message.
    pub message_id: Option<Uuid>,
    /// The reported user.
    pub user_id: Option<Uuid>,
    /// Why.
    pub reason: ReportReason,
    /// What the reporter adds.
    pub details: Option<String>,
}

/// Which reports to list.
#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    /// Only reports in this state.
    pub state: Option<ReportState>,
    /// Only reports of messages of this room.
    pub room_id: Option<Uuid>,
    /// Only reports about this user.
    pub user_id: Option<Uuid>,
}

/// A moderator's decision on a report.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// What to do.
    pub action: ReportAction,
    /// For mutes and bans: how long, in seconds (none: until lifted).
    pub duration_seconds: Option<i32>,
    /// Why; kept with the report, the restriction and the audit entry.
    pub note: Option<String>,
}

/// A mute or a ban in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestrictionKind {
    /// Can read, cannot send, edit or react.
    Mute,
    /// Removed, and cannot join again.
    Ban,
}

impl RestrictionKind {
    /// The name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mute => "mute",
            Self::Ban => "ban",
        }
    }
}

/// A user's mute or ban in a room.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct Restriction {
    /// The room.
    pub room_id: Uuid,
    /// The user.
    pub user: UserRef,
    /// `mute` or `ban`.
    pub kind: String,
    /// Why.
    pub reason: Option<String>,
    /// When it ends by itself; absent: until lifted.
    pub expires_at: Option<DateTime<Utc>>,
    /// Who set it (absent for an API key).
    pub created_by: Option<Uuid>,
    /// When it was set.
    pub created_at: DateTime<Utc>,
}

/// One page of a room's mutes or bans.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct RestrictionPage {
    /// Restrictions in force, in order of the user's id.
    pub items: Vec<Restriction>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// A mute, a room ban or a tenant-wide ban to set.
#[derive(Debug, Clone)]
pub struct Sanction {
    /// Why.
    pub reason: Option<String>,
    /// How long, in seconds (none: until lifted).
    pub duration_seconds: Option<i32>,
}

/// What a word filter does with a message that contains its term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum FilterAction {
    /// Refuse the message (422 `blocked_content`).
    Block,
    /// Accept it and put it in the moderation queue.
    Flag,
}

impl FilterAction {
    /// The name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Flag => "flag",
        }
    }
}

/// One of the tenant's word filters.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct WordFilter {
    /// The filter's id.
    pub id: Uuid,
    /// The term, matched as a whole word, ignoring case and diacritics; `*` stands
    /// for any letters.
    pub term: String,
    /// What happens to a message that contains it.
    pub action: FilterAction,
    /// Who added it (absent for an API key).
    pub created_by: Option<Uuid>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// The tenant's word filters.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct WordFilterList {
    /// Every filter, in order of creation.
    pub items: Vec<WordFilter>,
}

/// An entry of the audit log.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct AuditEntry {
    /// The entry's id: increasing, the cursor of the log.
    pub id: i64,
    /// The user who acted (absent for an API key alone).
    pub actor_id: Option<Uuid>,
    /// The API key that acted, alone or as `actor_id`.
    pub actor_key_id: Option<Uuid>,
    /// What was done, such as `room.ban`, `user.role_change`, `api_key.create`.
    pub action: String,
    /// What kind of thing it was done to: `user`, `message`, `report`, `api_key`,
    /// `webhook`, `word_filter`, `tenant`.
    pub target_type: Option<String>,
    /// The id of what it was done to.
    pub target_id: Option<Uuid>,
    /// The room it happened in.
    pub room_id: Option<Uuid>,
    /// The reason given.
    pub reason: Option<String>,
    /// What else the action recorded (a new role, a duration, a term).
    pub data: serde_json::Value,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// One page of the audit log.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct AuditPage {
    /// Entries, newest first.
    pub items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// Which entries of the audit log to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this action.
    pub action: Option<String>,
    /// Only actions of this user.
    pub actor_id: Option<Uuid>,
    /// Only actions on this target.
    pub target_id: Option<Uuid>,
}

impl Database {
    /// Blocks a user for the caller.
    pub async fn block_add(&self, caller: &Caller, user_id: Uuid) -> Result<Block, DatabaseError> {
        self.call(
            "block_add",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &user_id,
            ],
        )
        .await
    }

    /// Unblocks a user for the caller.
    pub async fn block_remove(&self, caller: &Caller, user_id: Uuid) -> Result<(), DatabaseError> {
        self.call(
            "block_remove",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &user_id,
            ],
        )
        .await
    }

    /// One page of the caller's blocks.
    pub async fn block_list(
        &self,
        caller: &Caller,
        after: Option<Uuid>,
        limit: i32,
    ) -> Result<BlockPage, DatabaseError> {
        self.call(
            "block_list",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &after,
                &limit,
            ],
        )
        .await
    }

    /// Reports a message or a user.
    pub async fn report_create(
        &self,
        caller: &Caller,
        report: &NewReport,
    ) -> Result<Report, DatabaseError> {
        self.call(
            "report_create",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &report.report_id,
                &report.room_id,
                &report.message_id,
                &report.user_id,
                &report.reason.as_str(),
                &report.details,
            ],
        )
        .await
    }

    /// One page of the moderation queue.
    pub async fn report_list(
        &self,
        principal: &Principal,
        filter: &ReportFilter,
        before: Option<Uuid>,
        limit: i32,
    ) -> Result<ReportPage, DatabaseError> {
        self.call_as(
            "report_list",
            principal,
            &[
                &filter.state.map(ReportState::as_str),
                &filter.room_id,
                &filter.user_id,
                &before,
                &limit,
            ],
        )
        .await
    }

    /// Resolves a report with an action.
    pub async fn report_resolve(
        &self,
        principal: &Principal,
        report_id: Uuid,
        resolution: &Resolution,
    ) -> Result<Report, DatabaseError> {
        self.call_as(
            "report_resolve",
            principal,
            &[
                &report_id,
                &resolution.action.as_str(),
                &resolution.duration_seconds,
                &resolution.note,
            ],
        )
        .await
    }

    /// Mutes or bans a user in a room.
    pub async fn room_restrict(
        &self,
        principal: &Principal,
        room_id: Uuid,
        user_id: Uuid,
        kind: RestrictionKind,
        sanction: &Sanction,
    ) -> Result<Restriction, DatabaseError> {
        self.call_as(
            "room_restrict",
            principal,
            &[
                &room_id,
                &user_id,
                &kind.as_str(),
                &sanction.reason,
                &sanction.duration_seconds,
            ],
        )
        .await
    }

    /// Lifts a user's mute or ban in a room.
    pub async fn room_unrestrict(
        &self,
        principal: &Principal,
        room_id: Uuid,
        user_id: Uuid,
        kind: RestrictionKind,
    ) -> Result<(), DatabaseError> {
        self.call_as(
            "room_unrestrict",
            principal,
            &[&room_id, &user_id, &kind.as_str()],
        )
        .await
    }

    /// One page of a room's mutes or bans in force.
    pub async fn room_restriction_list(
        &self,
        principal: &Principal,
        room_id: Uuid,
        kind: RestrictionKind,
        after: Option<Uuid>,
        limit: i32,
    ) -> Result<RestrictionPage, DatabaseError> {
        self.call_as(
            "room_restriction_list",
            principal,
            &[&room_id, &kind.as_str(), &after, &limit],
        )
        .await
    }

    /// Bans a user from the tenant.
    pub async fn user_ban(
        &self,
        principal: &Principal,
        user_id: Uuid,
        sanction: &Sanction,
    ) -> Result<User, DatabaseError> {
        self.call_as(
            "user_ban",
            principal,
            &[&user_id, &sanction.reason, &sanction.duration_seconds],
        )
        .await
    }

    /// Lifts a user's tenant-wide ban.
    pub async fn user_unban(
        &self,
        principal: &Principal,
        user_id: Uuid,
    ) -> Result<User, DatabaseError> {
        self.call_as("user_unban", principal, &[&user_id]).await
    }

    /// Adds a word filter.
    pub async fn word_filter_create(
        &self,
        principal: &Principal,
        filter_id: Uuid,
        term: &str,
        action: FilterAction,
    ) -> Result<WordFilter, DatabaseError> {
        self.call_as(
            "word_filter_create",
            principal,
            &[&filter_id, &term, &action.as_str()],
        )
        .await
    }

    /// The tenant's word filters.
    pub async fn word_filter_list(
        &self,
        principal: &Principal,
    ) -> Result<WordFilterList, DatabaseError> {
        self.call_as("word_filter_list", principal, &[]).await
    }

    /// Removes a word filter.
    pub async fn word_filter_delete(
        &self,
        principal: &Principal,
        filter_id: Uuid,
    ) -> Result<(), DatabaseError> {
        self.call_as("word_filter_delete", principal, &[&filter_id])
            .await
    }

    /// One page of the audit log.
    pub async fn audit_list(
        &self,
        principal: &Principal,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: i32,
    ) -> Result<AuditPage, DatabaseError> {
        self.call_as(
            "audit_list",
            principal,
            &[
                &filter.action,
                &filter.actor_id,
                &filter.target_id,
                &before,
                &limit,
            ],
        )
        .await
    }
}
