//! Message search over every room the caller may read.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{OpenApi, param::Query, payload::Json};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::BearerAuth;
use crate::db::{MessageKind, SearchPage, SearchQuery};
use crate::error::ApiError;
use crate::state::AppState;

/// The page size when none is asked for.
const DEFAULT_PAGE_SIZE: i32 = 20;

/// Search.
#[derive(Default)]
pub struct SearchApi;

#[OpenApi(tag = "ApiTags::Conversations")]
impl SearchApi {
    /// Search messages
    ///
    /// In every room the caller is a member of (or in `room_id`), never a deleted
    /// message nor one of a user the caller blocked. Each word of `q` matches the
    /// start of a word, whatever its case and diacritics ("the gioi" finds "Thế giới");
    /// in scripts written without spaces (Chinese, Japanese, Korean) any part of a
    /// run matches, and `q` as a whole also matches inside words. Best matches first
    /// (of the newest 1,000), `limit` at a time (1 to 50, default 20). 422
    /// `empty_query` or `query_too_long` (over 200 characters); a search that runs
    /// longer than `HARK_SEARCH_TIMEOUT_MS` is 503 `statement_timeout`.
    #[oai(
        path = "/v1/search/messages",
        method = "get",
        operation_id = "searchMessages"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn search_messages(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The words to find (1 to 200 characters; 422 `empty_query`,
        /// `query_too_long`).
        q: Query<String>,
        /// Only in this room.
        room_id: Query<Option<Uuid>>,
        /// Only messages of this user.
        sender_id: Query<Option<Uuid>>,
        /// Only messages sent after this time.
        after: Query<Option<DateTime<Utc>>>,
        /// Only messages sent before this time.
        before: Query<Option<DateTime<Utc>>>,
        /// Only messages with (true) or without (false) an attachment.
        has_attachment: Query<Option<bool>>,
        /// Only messages of this kind.
        kind: Query<Option<MessageKind>>,
        /// The `next_cursor` of the page before.
        #[oai(validator(max_length = 100))]
        cursor: Query<Option<String>>,
        /// Hits per page, 1 to 50.
        #[oai(validator(minimum(value = "1"), maximum(value = "50")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<SearchPage>, ApiError> {
        let query = SearchQuery {
            text: q.0,
            room_id: room_id.0,
            sender_id: sender_id.0,
            after: after.0,
            before: before.0,
            has_attachment: has_attachment.0,
            kind: kind.0,
            cursor: cursor.0,
            limit: limit.0.unwrap_or(DEFAULT_PAGE_SIZE),
        };
        Ok(Json(state.db.message_search(&auth.0, &query).await?))
    }
}
