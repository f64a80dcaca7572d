//! Real-time routes: the WebSocket, the Server-Sent Events stream of a room, and who
//! in a room is online.

use std::time::Duration;

use poem::{
    Request,
    web::{
        Data,
        websocket::{WebSocket, WebSocketConfig},
    },
};
use poem_openapi::{
    Object, OpenApi,
    param::{Header, Path, Query},
    payload::{EventStream, Json},
};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::{BearerAuth, StreamAuth};
use crate::db::UserRef;
use crate::error::ApiError;
use crate::realtime::{socket, sse};
use crate::state::AppState;

/// How often an idle SSE stream sends a keep-alive comment.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The online members of a room.
#[derive(Debug, Object)]
pub struct OnlineMembers {
    /// Members with a connection subscribed to the room, on any instance.
    pub items: Vec<UserRef>,
}

/// Real-time operations.
#[derive(Default)]
pub struct RealtimeApi;

#[OpenApi(tag = "ApiTags::Realtime")]
impl RealtimeApi {
    /// Open the WebSocket
    ///
    /// Upgrades to the real-time protocol (JSON text frames; see `openapi/websocket.md`).
    /// The access token goes in the `Authorization: Bearer` header, in the `token`
    /// query parameter, or in a first frame `{"op":"auth","token":…}`. One connection
    /// subscribes to any number of rooms.
    #[oai(path = "/v1/ws", method = "get", operation_id = "connectWebSocket")]
    async fn connect(
        &self,
        state: Data<&AppState>,
        request: &Request,
        websocket: WebSocket,
        /// The access token, for clients that cannot set headers.
        token: Query<Option<String>>,
    ) -> Result<poem::web::websocket::BoxWebSocketUpgraded, ApiError> {
        let header_token = request
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::to_owned);
        let identity = match header_token.or(token.0) {
            Some(token) => Some(state.tokens.verify(&token)?),
            None => None,
        };
        let mut admission = socket::Admission {
            identity: None,
            stream_slot: None,
            unauthenticated_slot: None,
        };
        match &identity {
            Some(caller) => {
                // A revoked session is refused before the upgrade, with a plain 401,
                // and a user over the connection limit with a 429.
                state.db.user_me(caller).await?;
                admission.stream_slot = Some(state.limits.streams.open(caller.user_id)?);
                state.realtime.admit(caller).await?;
            }
            None => {
                // Connections that authenticate by a first frame are bounded per
                // address until they do, so that anonymous sockets cannot pile up.
                if let Some(address) =
                    crate::api::client_address(request, state.config.trust_forwarded_for)
                {
                    admission.unauthenticated_slot =
                        Some(state.limits.unauthenticated_sockets.open(address)?);
                }
            }
        }
        admission.identity = identity;
        let max_frame = state.realtime.settings().max_frame_bytes;
        let mut config = WebSocketConfig::default();
        // The socket reads frames up to twice the limit, so that a frame just over it
        // is answered with `frame_too_large` instead of a dropped connection.
        config.max_message_size = Some(max_frame * 2);
        config.max_frame_size = Some(max_frame * 2);
        // Most connections are idle: a small read buffer keeps them cheap, and it grows
        // for the frames that need more.
        config.read_buffer_size = 1024;
        let context = socket::Context {
            db: state.db.clone(),
            tokens: state.tokens.clone(),
            limits: state.limits.clone(),
            writer: state.writer.clone(),
            realtime: state.realtime.clone(),
            max_message_bytes: state.config.max_message_bytes,
        };
        Ok(websocket
            .config(config)
            .on_upgrade(move |stream| socket::serve(stream, context, admission))
            .boxed())
    }

    /// Stream a room's events (Server-Sent Events, members)
    ///
    /// The same events as the WebSocket, in seq order: those after `since` (or
    /// `Last-Event-ID`) first, then live ones. Each event's `id` is its seq and its
    /// `event` its type; a `reset` event means the client is further behind than the
    /// replay window and should reload history. Keep-alive comments every 15 s.
    #[oai(
        path = "/v1/rooms/:room_id/events",
        method = "get",
        operation_id = "streamRoomEvents"
    )]
    async fn stream_events(
        &self,
        state: Data<&AppState>,
        auth: StreamAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        /// The last seq the client has.
        #[oai(validator(minimum(value = "0")))]
        since: Query<Option<i64>>,
        /// Sent by a reconnecting EventSource: the last seq it received.
        #[oai(name = "Last-Event-ID")]
        last_event_id: Header<Option<String>>,
    ) -> Result<EventStream<futures_util::stream::BoxStream<'static, sse::Item>>, ApiError> {
        open_stream(&state, auth.caller(), room_id.0, since.0, last_event_id.0).await
    }

    /// Stream the caller's own events (Server-Sent Events)
    ///
    /// The caller's feed: what happens to them across rooms (`feed.room_added` when
    /// added to a room or a direct room is opened with them, `feed.room_removed`,
    /// `feed.room_archived`, `feed.unread` when messages of others arrive in a room
    /// they had read, `feed.read` when their read marker moves on any device), with
    /// its own gapless `seq` and the rooms' resume: `since` or `Last-Event-ID`. Each
    /// event's `room_id` is the caller's id, which is also how the WebSocket subscribes
    /// to the feed.
    #[oai(
        path = "/v1/users/me/events",
        method = "get",
        operation_id = "streamMyEvents"
    )]
    async fn stream_my_events(
        &self,
        state: Data<&AppState>,
        auth: StreamAuth,
        /// The last seq the client has.
        #[oai(validator(minimum(value = "0")))]
        since: Query<Option<i64>>,
        /// Sent by a reconnecting EventSource: the last seq it received.
        #[oai(name = "Last-Event-ID")]
        last_event_id: Header<Option<String>>,
    ) -> Result<EventStream<futures_util::stream::BoxStream<'static, sse::Item>>, ApiError> {
        let feed = auth.caller().user_id;
        open_stream(&state, auth.caller(), feed, since.0, last_event_id.0).await
    }

    /// List a room's online members (members)
    ///
    /// Members with a connection subscribed to the room right now, on any instance.
    #[oai(
        path = "/v1/rooms/:room_id/presence",
        method = "get",
        operation_id = "listOnlineMembers"
    )]
    async fn online_members(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The room's id.
        room_id: Path<Uuid>,
    ) -> Result<Json<OnlineMembers>, ApiError> {
        let online = state.realtime.online(room_id.0);
        let items = state
            .db
            .room_members_among(&auth.0, room_id.0, &online)
            .await?;
        Ok(Json(OnlineMembers { items }))
    }
}

/// Opens the event stream of a room, or of the caller's feed (their own id), after
/// `since` or `Last-Event-ID`.
async fn open_stream(
    state: &AppState,
    caller: &crate::auth::Caller,
    room_id: Uuid,
    since: Option<i64>,
    last_event_id: Option<String>,
) -> Result<EventStream<futures_util::stream::BoxStream<'static, sse::Item>>, ApiError> {
    let since = match (&last_event_id, since) {
        (Some(header), _) => Some(header.trim().parse::<i64>().map_err(|_| {
            ApiError::invalid(
                "Last-Event-ID",
                "invalid_seq",
                "Last-Event-ID must be a seq",
            )
        })?),
        (None, since) => since,
    };
    if since.is_some_and(|since| since < 0) {
        return Err(ApiError::invalid(
            "since",
            "invalid_seq",
            "A seq is never negative",
        ));
    }
    let stream_slot = state.limits.streams.open(caller.user_id)?;
    state.realtime.admit(caller).await?;
    let grant = state.db.room_subscribe(caller, room_id).await?;
    let stream = sse::subscribe(state.realtime.clone(), caller, grant, since).await?;
    // The stream holds its slot in the user's count until the client goes away.
    let stream = futures_util::StreamExt::map(stream, move |item| {
        let _held = &stream_slot;
        item
    });
    Ok(EventStream::new(futures_util::StreamExt::boxed(stream))
        .keep_alive(SSE_KEEP_ALIVE)
        .to_event(sse::to_event))
}
