//! A room's event log, and a user's feed, over REST: the same events that real-time
//! clients receive.

use poem::web::Data;
use poem_openapi::{
    OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::BearerAuth;
use crate::db::EventPage;
use crate::error::ApiError;
use crate::state::AppState;

/// Events per page when none is asked for.
const DEFAULT_PAGE_SIZE: i32 = 100;

/// The event log.
#[derive(Default)]
pub struct EventsApi;

#[OpenApi(tag = "ApiTags::Events")]
impl EventsApi {
    /// List a room's events after a seq (members)
    ///
    /// In seq order, `limit` at a time (1 to 1000, default 100). Pass the last `seq`
    /// received as `after` to continue.
    #[oai(
        path = "/v1/rooms/:room_id/event-log",
        method = "get",
        operation_id = "listRoomEvents"
    )]
    async fn list_events(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// Events with a greater seq (default 0: from the start).
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
        /// Events per page, 1 to 1000.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<EventPage>, ApiError> {
        let page = state
            .db
            .event_list(
                &auth.0,
                room_id.0,
                after.0.unwrap_or(0),
                limit.0.unwrap_or(DEFAULT_PAGE_SIZE),
            )
            .await?;
        Ok(Json(page))
    }

    /// List the caller's own events after a seq
    ///
    /// The caller's feed (see `GET /v1/users/me/events`) in seq order, `limit` at a
    /// time (1 to 1000, default 100).
    #[oai(
        path = "/v1/users/me/event-log",
        method = "get",
        operation_id = "listMyEvents"
    )]
    async fn list_my_events(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Events with a greater seq (default 0: from the start).
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
        /// Events per page, 1 to 1000.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<EventPage>, ApiError> {
        let page = state
            .db
            .feed_list(
                &auth.0,
                after.0.unwrap_or(0),
                limit.0.unwrap_or(DEFAULT_PAGE_SIZE),
            )
            .await?;
        Ok(Json(page))
    }
}
