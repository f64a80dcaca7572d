//! What every user does to protect themselves: blocking users and reporting messages
//! and users to the tenant's moderators.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::BearerAuth;
use crate::db::{Block, BlockPage, NewReport, Report, ReportReason};
use crate::error::ApiError;
use crate::state::AppState;

/// The page size when none is asked for.
const DEFAULT_PAGE_SIZE: i32 = 100;

/// A user to block.
#[derive(Debug, Object)]
#[oai(example)]
pub struct BlockRequest {
    /// The user's id.
    pub user_id: Uuid,
}

impl Example for BlockRequest {
    fn example() -> Self {
        Self {
            user_id: Uuid::nil(),
        }
    }
}

/// A report: of a message (`room_id` and `message_id`) or of a user (`user_id`).
#[derive(Debug, Object)]
#[oai(example)]
pub struct CreateReportRequest {
    /// The reported message's room.
    pub room_id: Option<Uuid>,
    /// The reported message (the reporter is a member of its room).
    pub message_id: Option<Uuid>,
    /// The reported user, when no message is reported.
    pub user_id: Option<Uuid>,
    /// Why.
    pub reason: UserReportReason,
    /// What the moderators should know (at most 1000 characters).
    #[oai(validator(max_length = 1000))]
    pub details: Option<String>,
}

impl Example for CreateReportRequest {
    fn example() -> Self {
        Self {
            room_id: Some(Uuid::nil()),
            message_id: Some(Uuid::nil()),
            user_id: None,
            reason: UserReportReason::Spam,
            details: Some("Posts the same link every minute".to_owned()),
        }
    }
}

/// The reasons a user gives (`filtered` is a word filter's alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum UserReportReason {
    /// Unwanted advertising or repeated messages.
    Spam,
    /// Abuse aimed at someone.
    Harassment,
    /// Content that does not belong here.
    Inappropriate,
    /// Anything else; say what in `details`.
    Other,
}

impl From<UserReportReason> for ReportReason {
    fn from(reason: UserReportReason) -> Self {
        match reason {
            UserReportReason::Spam => Self::Spam,
            UserReportReason::Harassment => Self::Harassment,
            UserReportReason::Inappropriate => Self::Inappropriate,
            UserReportReason::Other => Self::Other,
        }
    }
}

/// No content.
#[derive(ApiResponse)]
pub enum Unblocked {
    /// The user is not blocked (any more).
    #[oai(status = 204)]
    Unblocked,
}

/// The answer to a report.
#[derive(ApiResponse)]
pub enum ReportCreated {
    /// The report is in the moderation queue.
    #[oai(status = 201)]
    Created(Json<Report>),
}

/// Blocks and reports.
#[derive(Default)]
pub struct SafetyApi;

#[OpenApi(tag = "ApiTags::Moderation")]
impl SafetyApi {
    /// Block a user
    ///
    /// In a direct room with a user one of them blocked, neither may write (403
    /// `blocked`), and a new direct room between them cannot be opened. In group rooms
    /// the blocker's history marks the blocked user's messages `hidden` (body and
    /// attachment withheld); live events carry them with their sender, and the
    /// blocker's feed (`feed.blocks_changed`) keeps every device's list current so that
    /// clients hide them. The list is private. Blocking twice changes nothing.
    #[oai(
        path = "/v1/users/me/blocks",
        method = "post",
        operation_id = "blockUser"
    )]
    async fn block_user(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<BlockRequest>,
    ) -> Result<Json<Block>, ApiError> {
        Ok(Json(state.db.block_add(&auth.0, body.0.user_id).await?))
    }

    /// List the users the caller blocked
    #[oai(
        path = "/v1/users/me/blocks",
        method = "get",
        operation_id = "listBlocks"
    )]
    async fn list_blocks(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<Uuid>>,
        /// Blocks per page, 1 to 1000 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<BlockPage>, ApiError> {
        let limit = limit.0.unwrap_or(DEFAULT_PAGE_SIZE);
        Ok(Json(state.db.block_list(&auth.0, cursor.0, limit).await?))
    }

    /// Unblock a user
    ///
    /// Unblocking a user who is not blocked changes nothing.
    #[oai(
        path = "/v1/users/me/blocks/:user_id",
        method = "delete",
        operation_id = "unblockUser"
    )]
    async fn unblock_user(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The blocked user's id.
        user_id: Path<Uuid>,
    ) -> Result<Unblocked, ApiError> {
        state.db.block_remove(&auth.0, user_id.0).await?;
        Ok(Unblocked::Unblocked)
    }

    /// Report a message or a user
    ///
    /// Any member reports a message of their room (not their own), and any user
    /// reports another user, once per target (409 `already_reported`). The report
    /// keeps the message as it was; moderators find it in
    /// `GET /v1/moderation/reports`.
    #[oai(path = "/v1/reports", method = "post", operation_id = "createReport")]
    async fn create_report(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<CreateReportRequest>,
    ) -> Result<ReportCreated, ApiError> {
        let body = body.0;
        let report = NewReport {
            report_id: Uuid::now_v7(),
            room_id: body.room_id,
            message_id: body.message_id,
            user_id: body.user_id,
            reason: body.reason.into(),
            details: body.details,
        };
        Ok(ReportCreated::Created(Json(
            state.db.report_create(&auth.0, &report).await?,
        )))
    }
}
