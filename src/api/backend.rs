//! Operations for a tenant's own backend, authenticated with an API key: products
//! that already have users create them here and mint their tokens.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::{AdminAuth, ApiKeyAuth};
use crate::auth::{AuthSession, PendingSession};
use crate::db::{Message, NewBackendUser, Role, RoomKind, TenantRoomFilter, TenantRoomPage, User};
use crate::error::ApiError;
use crate::state::AppState;

/// A user to create from the tenant's backend.
#[derive(Debug, Object)]
#[oai(example)]
pub struct BackendCreateUserRequest {
    /// 2 to 32 letters, digits, `.`, `-` or `_`, unique in the tenant.
    #[oai(validator(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,31}$"))]
    pub username: String,
    /// Optional email address.
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    /// The name shown to others (1 to 100 characters).
    #[oai(validator(min_length = 1, max_length = 100))]
    pub display_name: Option<String>,
    /// The backend's own id for the user (1 to 200 characters), unique in the tenant.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub external_id: Option<String>,
    /// `member` (the default), `moderator` or `admin`: a key never makes owners.
    pub role: Option<BackendRole>,
}

/// The roles a tenant's backend may give the users it creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum BackendRole {
    /// An ordinary user.
    Member,
    /// Moderates every room of the tenant.
    Moderator,
    /// Manages users and API keys.
    Admin,
}

impl From<BackendRole> for Role {
    fn from(role: BackendRole) -> Self {
        match role {
            BackendRole::Member => Self::Member,
            BackendRole::Moderator => Self::Moderator,
            BackendRole::Admin => Self::Admin,
        }
    }
}

impl Example for BackendCreateUserRequest {
    fn example() -> Self {
        BackendCreateUserRequest {
            username: "carol".to_owned(),
            email: None,
            display_name: Some("Carol".to_owned()),
            external_id: Some("customer-4711".to_owned()),
            role: Some(BackendRole::Member),
        }
    }
}

/// The answer to a user creation.
#[derive(ApiResponse)]
pub enum BackendUserCreated {
    /// The user exists.
    #[oai(status = 201)]
    Created(Json<User>),
}

/// The answer to a token request.
#[derive(ApiResponse)]
pub enum BackendSessionCreated {
    /// A session is open for the user.
    #[oai(status = 201)]
    Created(Json<AuthSession>),
}

/// The answer to a revocation.
#[derive(ApiResponse)]
pub enum BackendSessionsRevoked {
    /// Every session of the user is closed, and their streams end on every instance.
    #[oai(status = 204)]
    Revoked,
}

/// A system message from the tenant's backend.
#[derive(Debug, Object)]
#[oai(example)]
pub struct SystemMessageRequest {
    /// The text, as long as a message may be (`HARK_MAX_MESSAGE_BYTES`).
    #[oai(validator(min_length = 1))]
    pub body: String,
}

impl Example for SystemMessageRequest {
    fn example() -> Self {
        Self {
            body: "Your order #4711 has shipped".to_owned(),
        }
    }
}

/// The answer to a system message.
#[derive(ApiResponse)]
pub enum SystemMessageSent {
    /// The message is in the room's log, with no sender.
    #[oai(status = 201)]
    Created(Json<Message>),
}

/// The page size of the tenant's rooms when none is asked for.
const DEFAULT_ROOM_PAGE_SIZE: i32 = 50;

/// Backend operations.
#[derive(Default)]
pub struct BackendApi;

#[OpenApi(tag = "ApiTags::Backend")]
impl BackendApi {
    /// Create a user (API key)
    ///
    /// The user has no password: the backend mints their tokens.
    #[oai(
        path = "/v1/backend/users",
        method = "post",
        operation_id = "backendCreateUser"
    )]
    async fn create_user(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        body: Json<BackendCreateUserRequest>,
    ) -> Result<BackendUserCreated, ApiError> {
        let body = body.0;
        let user = NewBackendUser {
            user_id: Uuid::now_v7(),
            username: body.username,
            email: body.email,
            display_name: body.display_name,
            external_id: body.external_id,
            role: body.role.map_or(Role::Member, Role::from),
        };
        let created = state
            .db
            .backend_user_create(auth.0.tenant_id, &auth.0.hash(), &user)
            .await?;
        Ok(BackendUserCreated::Created(Json(created)))
    }

    /// Mint tokens for a user (API key)
    ///
    /// Opens a session for the user and answers its access and refresh tokens, to
    /// hand to the user's client.
    #[oai(
        path = "/v1/backend/users/:user_id/sessions",
        method = "post",
        operation_id = "backendCreateSession"
    )]
    async fn create_session(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        /// The user's id.
        user_id: Path<Uuid>,
    ) -> Result<BackendSessionCreated, ApiError> {
        let session = PendingSession::new(&state.tokens)?;
        let user = state
            .db
            .backend_session_open(auth.0.tenant_id, &auth.0.hash(), user_id.0, &session.record)
            .await?;
        Ok(BackendSessionCreated::Created(Json(session.finish(
            &state.tokens,
            auth.0.tenant_id,
            user,
        )?)))
    }

    /// End every session of a user (API key)
    ///
    /// Logs the user out everywhere: their access and refresh tokens are refused from
    /// then on, and their WebSockets and event streams end (4001) on every instance
    /// within a second. A key created by an admin cannot end an owner's sessions.
    #[oai(
        path = "/v1/backend/users/:user_id/sessions",
        method = "delete",
        operation_id = "backendRevokeSessions"
    )]
    async fn revoke_sessions(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        /// The user's id.
        user_id: Path<Uuid>,
    ) -> Result<BackendSessionsRevoked, ApiError> {
        state
            .db
            .backend_sessions_revoke(auth.0.tenant_id, &auth.0.hash(), user_id.0)
            .await?;
        Ok(BackendSessionsRevoked::Revoked)
    }

    /// Send a system message (API key)
    ///
    /// A message of kind `system` with no sender (`sender` is null), by the same rules,
    /// log and events as every send: the room must exist and not be archived. To send
    /// as a user, present the key as a bearer token with `X-Hark-User` on
    /// `POST /v1/rooms/{room_id}/messages`.
    #[oai(
        path = "/v1/backend/rooms/:room_id/messages",
        method = "post",
        operation_id = "backendSendSystemMessage"
    )]
    async fn send_system_message(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        /// The room's id.
        room_id: Path<Uuid>,
        body: Json<SystemMessageRequest>,
    ) -> Result<SystemMessageSent, ApiError> {
        let sent = state
            .db
            .system_message_send(
                &auth.0,
                room_id.0,
                Uuid::now_v7(),
                &body.0.body,
                state.config.max_message_bytes,
                crate::telemetry::current_traceparent().as_deref(),
            )
            .await?;
        Ok(SystemMessageSent::Created(Json(sent.message)))
    }

    /// List every room of the tenant (owners, admins, API key)
    ///
    /// In order of creation, public, private and direct rooms alike, with filters.
    #[oai(
        path = "/v1/backend/rooms",
        method = "get",
        operation_id = "backendListRooms"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list_rooms(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        /// Only rooms of this kind.
        kind: Query<Option<RoomKind>>,
        /// Only archived rooms (`true`) or only rooms not archived (`false`).
        archived: Query<Option<bool>>,
        /// Only rooms this user is a member of.
        member_id: Query<Option<Uuid>>,
        /// Only rooms whose name contains this text, case-insensitively.
        #[oai(validator(max_length = 100))]
        q: Query<Option<String>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<Uuid>>,
        /// Rooms per page, 1 to 200 (50 when absent).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i32>>,
    ) -> Result<Json<TenantRoomPage>, ApiError> {
        let filter = TenantRoomFilter {
            kind: kind.0,
            archived: archived.0,
            member_id: member_id.0,
            query: q.0,
        };
        let page = state
            .db
            .room_list_all(
                &auth.principal(),
                &filter,
                cursor.0,
                limit.0.unwrap_or(DEFAULT_ROOM_PAGE_SIZE),
            )
            .await?;
        Ok(Json(page))
    }
}
