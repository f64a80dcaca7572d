//! What moderators do: the moderation queue and its resolution, mutes and bans in
//! rooms, bans from the tenant, word filters; and the audit log of every moderation
//! and administrative action. Who may do what is decided in SQL
//! (`sql/functions/0011_moderation.sql`): these routes take a user's token or an API
//! key alike.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::AdminAuth;
use crate::db::{
    AuditFilter, AuditPage, FilterAction, Report, ReportAction, ReportFilter, ReportPage,
    ReportState, Resolution, Restriction, RestrictionKind, RestrictionPage, Sanction, User,
    WordFilter, WordFilterList,
};
use crate::error::ApiError;
use crate::state::AppState;

/// The page size when none is asked for.
const DEFAULT_PAGE_SIZE: i32 = 50;

/// A moderator's decision on a report.
#[derive(Debug, Object)]
#[oai(example)]
pub struct ResolveReportRequest {
    /// `dismiss`, `delete_message`, `mute` or `ban` (in the message's room), or
    /// `ban_user` (from the tenant).
    pub action: ReportAction,
    /// For mutes and bans: how long, 1 second to a year (absent: until lifted).
    #[oai(validator(minimum(value = "1"), maximum(value = "31536000")))]
    pub duration_seconds: Option<i32>,
    /// Why (at most 500 characters); kept with the report, the sanction and the audit
    /// entry.
    #[oai(validator(max_length = 500))]
    pub note: Option<String>,
}

impl Example for ResolveReportRequest {
    fn example() -> Self {
        Self {
            action: ReportAction::Mute,
            duration_seconds: Some(3600),
            note: Some("Spam, first warning".to_owned()),
        }
    }
}

/// A mute or a ban of a user in a room.
#[derive(Debug, Object)]
#[oai(example)]
pub struct RestrictRequest {
    /// The user's id.
    pub user_id: Uuid,
    /// How long, 1 second to a year (absent: until lifted).
    #[oai(validator(minimum(value = "1"), maximum(value = "31536000")))]
    pub duration_seconds: Option<i32>,
    /// Why (at most 500 characters).
    #[oai(validator(max_length = 500))]
    pub reason: Option<String>,
}

impl Example for RestrictRequest {
    fn example() -> Self {
        Self {
            user_id: Uuid::nil(),
            duration_seconds: Some(600),
            reason: Some("Flooding".to_owned()),
        }
    }
}

/// A ban from the whole tenant.
#[derive(Debug, Object)]
#[oai(example)]
pub struct BanRequest {
    /// How long, 1 second to a year (absent: until lifted).
    #[oai(validator(minimum(value = "1"), maximum(value = "31536000")))]
    pub duration_seconds: Option<i32>,
    /// Why (at most 500 characters).
    #[oai(validator(max_length = 500))]
    pub reason: Option<String>,
}

impl Example for BanRequest {
    fn example() -> Self {
        Self {
            duration_seconds: None,
            reason: Some("Harassment of several users".to_owned()),
        }
    }
}

/// A new word filter.
#[derive(Debug, Object)]
#[oai(example)]
pub struct CreateWordFilterRequest {
    /// The term (1 to 100 characters), matched as a whole word, ignoring case and
    /// diacritics; `*` stands for any letters (`spam*` matches `spammer`).
    #[oai(validator(min_length = 1, max_length = 100))]
    pub term: String,
    /// `block` refuses the message (422 `blocked_content`); `flag` accepts it and puts
    /// it in the moderation queue.
    pub action: FilterAction,
}

impl Example for CreateWordFilterRequest {
    fn example() -> Self {
        Self {
            term: "casino*".to_owned(),
            action: FilterAction::Flag,
        }
    }
}

/// No content.
#[derive(ApiResponse)]
pub enum Lifted {
    /// The restriction is gone (or was not there).
    #[oai(status = 204)]
    Lifted,
}

/// The answer to a new word filter.
#[derive(ApiResponse)]
pub enum WordFilterCreated {
    /// The filter applies to every message sent or edited from now on.
    #[oai(status = 201)]
    Created(Json<WordFilter>),
}

/// No content.
#[derive(ApiResponse)]
pub enum WordFilterDeleted {
    /// The filter is gone.
    #[oai(status = 204)]
    Deleted,
}

/// Moderation.
#[derive(Default)]
pub struct ModerationApi;

#[OpenApi(tag = "ApiTags::Moderation")]
impl ModerationApi {
    /// The moderation queue (tenant owners, admins, moderators; API keys)
    ///
    /// Reports newest first, `limit` at a time; pass `next_cursor` as `cursor` for
    /// older ones.
    #[oai(
        path = "/v1/moderation/reports",
        method = "get",
        operation_id = "listReports"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list_reports(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// Only reports in this state.
        #[oai(name = "state")]
        state_filter: Query<Option<ReportState>>,
        /// Only reports of messages of this room.
        room_id: Query<Option<Uuid>>,
        /// Only reports about this user.
        user_id: Query<Option<Uuid>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<Uuid>>,
        /// Reports per page, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<ReportPage>, ApiError> {
        let filter = ReportFilter {
            state: state_filter.0,
            room_id: room_id.0,
            user_id: user_id.0,
        };
        let limit = limit.0.unwrap_or(DEFAULT_PAGE_SIZE);
        Ok(Json(
            state
                .db
                .report_list(&auth.principal(), &filter, cursor.0, limit)
                .await?,
        ))
    }

    /// Resolve a report with an action (tenant owners, admins, moderators; API keys)
    ///
    /// In one transaction: the action (dismiss, delete the message, mute or ban its
    /// sender in the room, ban the user from the tenant), the report and every other
    /// open report of the same message (or user) resolved, and the audit entry. A
    /// resolved report is 409 `report_resolved`.
    #[oai(
        path = "/v1/moderation/reports/:report_id/resolve",
        method = "post",
        operation_id = "resolveReport"
    )]
    async fn resolve_report(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The report's id.
        report_id: Path<Uuid>,
        body: Json<ResolveReportRequest>,
    ) -> Result<Json<Report>, ApiError> {
        let resolution = Resolution {
            action: body.0.action,
            duration_seconds: body.0.duration_seconds,
            note: body.0.note,
        };
        Ok(Json(
            state
                .db
                .report_resolve(&auth.principal(), report_id.0, &resolution)
                .await?,
        ))
    }

    /// Mute a user in a room (room owners and admins, tenant moderators; API keys)
    ///
    /// The user may read but not send, edit or react (403 `muted`) until the mute
    /// ends or is lifted; `member.muted` goes to the room. Muting again replaces the
    /// mute. Room admins mute members; tenant moderators mute users ranked below them.
    #[oai(
        path = "/v1/rooms/:room_id/mutes",
        method = "post",
        operation_id = "muteMember"
    )]
    async fn mute_member(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        body: Json<RestrictRequest>,
    ) -> Result<Json<Restriction>, ApiError> {
        restrict(&state, &auth, room_id.0, body.0, RestrictionKind::Mute).await
    }

    /// List a room's mutes in force (its moderators)
    #[oai(
        path = "/v1/rooms/:room_id/mutes",
        method = "get",
        operation_id = "listMutes"
    )]
    async fn list_mutes(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<Uuid>>,
        /// Mutes per page, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<RestrictionPage>, ApiError> {
        list_restrictions(
            &state,
            &auth,
            room_id.0,
            RestrictionKind::Mute,
            cursor.0,
            limit.0,
        )
        .await
    }

    /// Unmute a user in a room (its moderators)
    #[oai(
        path = "/v1/rooms/:room_id/mutes/:user_id",
        method = "delete",
        operation_id = "unmuteMember"
    )]
    async fn unmute_member(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The user's id.
        user_id: Path<Uuid>,
    ) -> Result<Lifted, ApiError> {
        state
            .db
            .room_unrestrict(
                &auth.principal(),
                room_id.0,
                user_id.0,
                RestrictionKind::Mute,
            )
            .await?;
        Ok(Lifted::Lifted)
    }

    /// Ban a user from a room (room owners and admins, tenant moderators; API keys)
    ///
    /// A member is removed (`member.left` with reason `banned`, their streams of the
    /// room end) and nobody banned joins again, by id, by invite code or by an admin
    /// adding them (403 `banned`), until the ban ends or is lifted.
    #[oai(
        path = "/v1/rooms/:room_id/bans",
        method = "post",
        operation_id = "banFromRoom"
    )]
    async fn ban_from_room(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        body: Json<RestrictRequest>,
    ) -> Result<Json<Restriction>, ApiError> {
        restrict(&state, &auth, room_id.0, body.0, RestrictionKind::Ban).await
    }

    /// List a room's bans in force (its moderators)
    #[oai(
        path = "/v1/rooms/:room_id/bans",
        method = "get",
        operation_id = "listRoomBans"
    )]
    async fn list_room_bans(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<Uuid>>,
        /// Bans per page, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<RestrictionPage>, ApiError> {
        list_restrictions(
            &state,
            &auth,
            room_id.0,
            RestrictionKind::Ban,
            cursor.0,
            limit.0,
        )
        .await
    }

    /// Lift a user's ban from a room (its moderators)
    #[oai(
        path = "/v1/rooms/:room_id/bans/:user_id",
        method = "delete",
        operation_id = "unbanFromRoom"
    )]
    async fn unban_from_room(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The user's id.
        user_id: Path<Uuid>,
    ) -> Result<Lifted, ApiError> {
        state
            .db
            .room_unrestrict(
                &auth.principal(),
                room_id.0,
                user_id.0,
                RestrictionKind::Ban,
            )
            .await?;
        Ok(Lifted::Lifted)
    }

    /// Ban a user from the tenant (tenant owners, admins, moderators; API keys)
    ///
    /// Every session of the user is revoked and their streams end (4001) on every
    /// instance within a second; until the ban ends or is lifted they cannot log in,
    /// be minted a session or be acted for (403 `user_banned`). Moderators ban
    /// members, admins moderators too, owners admins too.
    #[oai(
        path = "/v1/users/:user_id/ban",
        method = "post",
        operation_id = "banUser"
    )]
    async fn ban_user(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The user's id.
        user_id: Path<Uuid>,
        body: Json<BanRequest>,
    ) -> Result<Json<User>, ApiError> {
        let sanction = Sanction {
            reason: body.0.reason,
            duration_seconds: body.0.duration_seconds,
        };
        Ok(Json(
            state
                .db
                .user_ban(&auth.principal(), user_id.0, &sanction)
                .await?,
        ))
    }

    /// Lift a user's ban from the tenant (the roles that may ban them)
    #[oai(
        path = "/v1/users/:user_id/unban",
        method = "post",
        operation_id = "unbanUser"
    )]
    async fn unban_user(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The user's id.
        user_id: Path<Uuid>,
    ) -> Result<Json<User>, ApiError> {
        Ok(Json(
            state.db.user_unban(&auth.principal(), user_id.0).await?,
        ))
    }

    /// List the tenant's word filters (tenant owners, admins, moderators; API keys)
    #[oai(
        path = "/v1/moderation/filters",
        method = "get",
        operation_id = "listWordFilters"
    )]
    async fn list_word_filters(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
    ) -> Result<Json<WordFilterList>, ApiError> {
        Ok(Json(state.db.word_filter_list(&auth.principal()).await?))
    }

    /// Add a word filter (tenant owners and admins; API keys)
    ///
    /// Every message sent or edited afterwards, on every path, is checked against the
    /// tenant's filters. At most 500 per tenant (422 `too_many_filters`); a term equal
    /// to one there once case and diacritics are ignored is 409 `filter_exists`.
    #[oai(
        path = "/v1/moderation/filters",
        method = "post",
        operation_id = "createWordFilter"
    )]
    async fn create_word_filter(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        body: Json<CreateWordFilterRequest>,
    ) -> Result<WordFilterCreated, ApiError> {
        let filter = state
            .db
            .word_filter_create(
                &auth.principal(),
                Uuid::now_v7(),
                &body.0.term,
                body.0.action,
            )
            .await?;
        Ok(WordFilterCreated::Created(Json(filter)))
    }

    /// Remove a word filter (tenant owners and admins; API keys)
    #[oai(
        path = "/v1/moderation/filters/:filter_id",
        method = "delete",
        operation_id = "deleteWordFilter"
    )]
    async fn delete_word_filter(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// The filter's id.
        filter_id: Path<Uuid>,
    ) -> Result<WordFilterDeleted, ApiError> {
        state
            .db
            .word_filter_delete(&auth.principal(), filter_id.0)
            .await?;
        Ok(WordFilterDeleted::Deleted)
    }

    /// The audit log (tenant owners and admins; API keys)
    ///
    /// Every moderation and administrative action, written in the transaction of the
    /// action: role changes, mutes and bans, removals and deletions by others, report
    /// resolutions, word filters, tenant settings, API keys, webhooks, deactivations.
    /// Newest first; nothing in it can be changed or deleted through the API.
    #[oai(path = "/v1/audit-log", method = "get", operation_id = "listAuditLog")]
    #[allow(clippy::too_many_arguments)]
    async fn list_audit_log(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// Only this action, such as `room.ban` or `user.role_change`.
        #[oai(validator(max_length = 100))]
        action: Query<Option<String>>,
        /// Only actions of this user.
        actor_id: Query<Option<Uuid>>,
        /// Only actions on this target.
        target_id: Query<Option<Uuid>>,
        /// The `next_cursor` of the previous page.
        #[oai(validator(minimum(value = "1")))]
        cursor: Query<Option<i64>>,
        /// Entries per page, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<AuditPage>, ApiError> {
        let filter = AuditFilter {
            action: action.0,
            actor_id: actor_id.0,
            target_id: target_id.0,
        };
        let limit = limit.0.unwrap_or(DEFAULT_PAGE_SIZE);
        Ok(Json(
            state
                .db
                .audit_list(&auth.principal(), &filter, cursor.0, limit)
                .await?,
        ))
    }
}

/// Mutes or bans a user in a room.
async fn restrict(
    state: &AppState,
    auth: &AdminAuth,
    room_id: Uuid,
    body: RestrictRequest,
    kind: RestrictionKind,
) -> Result<Json<Restriction>, ApiError> {
    let sanction = Sanction {
        reason: body.reason,
        duration_seconds: body.duration_seconds,
    };
    Ok(Json(
        state
            .db
            .room_restrict(&auth.principal(), room_id, body.user_id, kind, &sanction)
            .await?,
    ))
}

/// One page of a room's mutes or bans.
async fn list_restrictions(
    state: &AppState,
    auth: &AdminAuth,
    room_id: Uuid,
    kind: RestrictionKind,
    cursor: Option<Uuid>,
    limit: Option<i32>,
) -> Result<Json<RestrictionPage>, ApiError> {
    Ok(Json(
        state
            .db
            .room_restriction_list(
                &auth.principal(),
                room_id,
                kind,
                cursor,
                limit.unwrap_or(DEFAULT_PAGE_SIZE),
            )
            .await?,
    ))
}
