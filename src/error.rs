//! The one error type at the HTTP edge, and the one place where database errors
//! (SQLSTATEs raised by `sql/functions`, constraint names of `sql/migrations`) and
//! framework errors turn into statuses and stable codes.
//!
//! Every error reaches the client as `{"code", "message", "request_id"}` (plus
//! `field` for input errors). Internal errors are logged with their full context
//! and reach the client only as `internal_error`.

use poem::http::StatusCode;
use poem_openapi::{
    ApiResponse, Object,
    payload::Json,
    registry::{MetaResponses, Registry},
};
use tokio_postgres::error::SqlState;

use crate::db::DatabaseError;

/// An error answered to a client: a status, a stable snake_case code and a message
/// that a person can read.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The HTTP status of the response.
    pub status: StatusCode,
    /// The stable, greppable error code, such as `username_taken`.
    pub code: String,
    /// A sentence for people; clients must not parse it.
    pub message: String,
    /// The input field the error is about, when there is one.
    pub field: Option<String>,
    /// Response headers that go with it (`Retry-After`, `X-RateLimit-*`).
    pub headers: Vec<(&'static str, String)>,
}

/// The JSON body of every error response.
#[derive(Debug, Object, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code, such as `username_taken` or `token_expired`.
    pub code: String,
    /// Human-readable explanation; not meant to be parsed.
    pub message: String,
    /// The id of the request (echoes `X-Request-Id` when the client sent one).
    pub request_id: String,
    /// The input field at fault, for validation errors.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            headers: Vec::new(),
        }
    }

    /// The same error, answered with these headers too.
    pub fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers = headers;
        self
    }

    /// A 422 about one input field.
    pub fn invalid(field: &str, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
        }
    }

    /// A 401 with the given code.
    pub fn unauthorized(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// A 403 with the given code.
    pub fn forbidden(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// A 500 whose cause has been logged; the client learns nothing more.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "The server failed to handle the request; it has been logged",
        )
    }

    /// The JSON response for this error.
    pub fn to_response(&self, request_id: &str) -> poem::Response {
        let mut body = serde_json::json!({
            "code": self.code,
            "message": self.message,
            "request_id": request_id,
        });
        if let Some(field) = &self.field {
            body["field"] = serde_json::Value::from(field.as_str());
        }
        let mut response = poem::Response::builder()
            .status(self.status)
            .content_type("application/json");
        for (name, value) in &self.headers {
            response = response.header(*name, value.as_str());
        }
        response.body(body.to_string())
    }

    /// Turns any error that reached the HTTP edge into an `ApiError`: ours pass
    /// through, the framework's get codes of their own.
    pub fn from_poem(error: poem::Error) -> Self {
        if let Some(api_error) = error.downcast_ref::<ApiError>() {
            return Self {
                status: api_error.status,
                code: api_error.code.clone(),
                message: api_error.message.clone(),
                field: api_error.field.clone(),
                headers: api_error.headers.clone(),
            };
        }
        let status = error.status();
        if let Some(parse) = error.downcast_ref::<poem_openapi::error::ParseParamError>() {
            // A bound the document states, checked by the framework: named like the
            // same bound's error from SQL.
            if parse.reason.contains("verification failed") {
                let code = match parse.name {
                    "before" | "after" | "around" | "since" | "seq" => "invalid_seq".to_owned(),
                    name => format!("invalid_{name}"),
                };
                return Self::invalid(
                    parse.name,
                    code,
                    format!(
                        "The parameter `{}` is out of bounds: {}",
                        parse.name, parse.reason
                    ),
                );
            }
            return Self {
                field: Some(parse.name.to_owned()),
                ..Self::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_parameter",
                    format!(
                        "The parameter `{}` is invalid: {}",
                        parse.name, parse.reason
                    ),
                )
            };
        }
        if let Some(parse) = error.downcast_ref::<poem_openapi::error::ParsePathError>() {
            // The framework names path parameters by position, so the name is left out.
            return Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("A path parameter is invalid: {}", parse.reason),
            );
        }
        if let Some(parse) = error.downcast_ref::<poem_openapi::error::ParseRequestPayloadError>() {
            // A bound the document states (`maxLength`, `minimum`, …), checked by the
            // framework: named like the same bound's error from SQL, `invalid_<field>`.
            if let Some(field) = parse
                .reason
                .split_once("field `")
                .and_then(|(_, rest)| rest.split_once("` verification failed"))
                .map(|(field, _)| field)
            {
                return Self::invalid(
                    field,
                    format!("invalid_{field}"),
                    format!("The field `{field}` is out of bounds: {}", parse.reason),
                );
            }
            return Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("The request body is invalid: {}", parse.reason),
            );
        }
        if error.is::<poem_openapi::error::AuthorizationError>() {
            return Self::unauthorized(
                "missing_token",
                "This operation needs an `Authorization: Bearer` token (or an `X-Api-Key`)",
            );
        }
        if error.is::<poem_openapi::error::ContentTypeError>() {
            return Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "The request body must be application/json",
            );
        }
        match status {
            StatusCode::NOT_FOUND => Self::new(status, "not_found", "No such route"),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                status,
                "method_not_allowed",
                "This route does not accept this method",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                status,
                "payload_too_large",
                "The request body is larger than the server accepts",
            ),
            status if status.is_server_error() => Self::internal("request failed", &error),
            status => Self::new(status, status_code_name(status), error.to_string()),
        }
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> poem::Response {
        // The HTTP edge renders errors with the request id; this path is only taken by
        // an error converted outside of it, which has no request id to give.
        self.to_response("")
    }
}

/// The documented error responses of every operation. Only its metadata is used: at
/// run time every error is an [`ApiError`] rendered by the HTTP edge.
#[derive(ApiResponse)]
#[allow(dead_code)]
enum ErrorResponses {
    /// The request is malformed: unparsable JSON, a wrong parameter type (`invalid_body`, `invalid_parameter`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The token or key is missing, invalid, expired or revoked (`missing_token`, `invalid_token`, `token_expired`, `token_revoked`, `invalid_credentials`, `invalid_api_key`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The caller may not do this (`forbidden`, `registration_closed`, `tenant_creation_disabled`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such resource in the caller's tenant; ids of other tenants answer this too.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the current state (`username_taken`, `email_taken`, `slug_taken`, `last_owner`).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request body is larger than the configured limit (`payload_too_large`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The request body is not JSON (`unsupported_media_type`).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// A field is out of bounds or malformed; `field` names it.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many requests (`rate_limited`, `login_throttled`, `too_many_connections`, `too_many_requests`: as many of the caller's requests in flight as allowed), with `Retry-After` when waiting helps.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// The server failed; the error has been logged under the request id (`internal_error`).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database is unreachable (`unavailable`), or too many passwords are being
    /// hashed at once, or the tenant's requests take all of its share of the server
    /// (`busy`, with `Retry-After`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        ErrorResponses::meta()
    }

    fn register(registry: &mut Registry) {
        ErrorResponses::register(registry);
    }
}

impl ApiError {
    /// The 429 answered when a limit refuses a request, with the limit's headers.
    pub fn too_many(allowance: &crate::limits::Allowance, code: &str, message: &str) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, message).with_headers(allowance.headers())
    }
}

impl From<crate::limits::AtCapacity> for ApiError {
    fn from(refusal: crate::limits::AtCapacity) -> Self {
        // Sentence case for people; the refusal's own text is lower case for logs.
        let message = format!(
            "At most {} {} are allowed at once on each instance",
            refusal.limit, refusal.counted
        );
        Self::new(StatusCode::TOO_MANY_REQUESTS, refusal.code, message)
    }
}

impl From<crate::realtime::subscription::SubscribeError> for ApiError {
    fn from(error: crate::realtime::subscription::SubscribeError) -> Self {
        use crate::realtime::subscription::SubscribeError;
        match error {
            SubscribeError::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Real-time delivery is not available right now; retry shortly",
            ),
            SubscribeError::Database(error) => error.into(),
        }
    }
}

impl From<DatabaseError> for ApiError {
    fn from(error: DatabaseError) -> Self {
        match error {
            DatabaseError::Pool(pool_error) => {
                tracing::error!(error = %pool_error, "no database connection");
                unavailable()
            }
            DatabaseError::Query { context, source } => match source.as_db_error() {
                Some(db_error) => from_sql_error(
                    context,
                    &SqlError {
                        code: db_error.code().code(),
                        message: db_error.message(),
                        detail: db_error.detail(),
                        constraint: db_error.constraint(),
                        hint: db_error.hint(),
                    },
                )
                .unwrap_or_else(|| {
                    let described = format!("{}: {}", db_error.code().code(), db_error.message());
                    Self::internal(context, &described)
                }),
                None => {
                    tracing::error!(error = %source, context, "database connection failed");
                    unavailable()
                }
            },
            DatabaseError::Item { context, failure } => from_sql_error(
                context,
                &SqlError {
                    code: &failure.sqlstate,
                    message: &failure.message,
                    detail: failure.detail.as_deref(),
                    constraint: failure.constraint.as_deref(),
                    hint: failure.hint.as_deref(),
                },
            )
            .unwrap_or_else(|| {
                Self::internal(
                    context,
                    &format!("{} {}", failure.sqlstate, failure.message),
                )
            }),
            DatabaseError::Batch { message } => {
                tracing::error!(error = %message, "a write batch failed");
                unavailable()
            }
            DatabaseError::WriterStopped => unavailable(),
            DatabaseError::NoRow { context } => Self::internal(context, &"no row answered"),
            DatabaseError::Timeout { context } => {
                tracing::warn!(context, "a statement ran too long and was cancelled");
                statement_timeout()
            }
        }
    }
}

/// A statement that ran longer than the statement timeout (cancelled here or by the
/// server).
fn statement_timeout() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "statement_timeout",
        "The request took too long in the database and was cancelled; retry shortly",
    )
    .with_headers(vec![("retry-after", "1".to_owned())])
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "The database is unreachable; try again shortly",
    )
}

/// The parts of a Postgres error that decide the answer.
struct SqlError<'a> {
    code: &'a str,
    message: &'a str,
    detail: Option<&'a str>,
    constraint: Option<&'a str>,
    hint: Option<&'a str>,
}

/// The constraint a violation's message names (`… violates check constraint "name"`),
/// for errors that arrive without their constraint field: Citus passes on an error
/// raised on a worker with its code, message, detail and hint only.
fn constraint_in_message(message: &str) -> Option<&str> {
    let (_, named) = message.split_once(" constraint \"")?;
    named.split_once('"').map(|(name, _)| name)
}

/// Maps a SQLSTATE raised by Postgres to a client error, or `None` when it is a
/// server fault. This is the one SQLSTATE-to-status table of the project.
fn from_sql_error(context: &str, error: &SqlError<'_>) -> Option<ApiError> {
    // Errors raised by hark_api.fail: SQLSTATE HK<status>, the stable code and the
    // field, if any, after a space as the message, the explanation as the detail; a
    // 429's hint, when SQL gives one (slow mode), is the seconds to wait.
    if let Some(status) = error.code.strip_prefix("HK") {
        let (code, field) = match error.message.split_once(' ') {
            Some((code, field)) => (code, Some(field)),
            None => (error.message, None),
        };
        let status = status.parse::<u16>().ok()?;
        let status = StatusCode::from_u16(status).ok()?;
        let retry_after = error
            .hint
            .filter(|_| status == StatusCode::TOO_MANY_REQUESTS)
            .and_then(|hint| hint.parse::<u32>().ok());
        return Some(ApiError {
            status,
            code: code.to_owned(),
            message: error.detail.unwrap_or_default().to_owned(),
            field: field.map(str::to_owned),
            headers: retry_after
                .map(|seconds| vec![("retry-after", seconds.to_string())])
                .unwrap_or_default(),
        });
    }
    let constraint = error
        .constraint
        .or_else(|| constraint_in_message(error.message))
        .unwrap_or_default();
    let state = SqlState::from_code(error.code);
    match state {
        SqlState::UNIQUE_VIOLATION => Some(unique_violation(constraint)),
        SqlState::CHECK_VIOLATION => Some(check_violation(constraint)),
        SqlState::FOREIGN_KEY_VIOLATION => Some(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "A referenced resource does not exist",
        )),
        SqlState::STRING_DATA_RIGHT_TRUNCATION | SqlState::PROGRAM_LIMIT_EXCEEDED => {
            Some(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "value_too_long",
                "A value is too long",
            ))
        }
        // Postgres text cannot hold U+0000, as a parameter or inside JSON.
        SqlState::UNTRANSLATABLE_CHARACTER | SqlState::CHARACTER_NOT_IN_REPERTOIRE => {
            Some(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_text",
                "Text may not contain the NUL character (U+0000)",
            ))
        }
        SqlState::INVALID_TEXT_REPRESENTATION | SqlState::INVALID_PARAMETER_VALUE => {
            Some(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_value",
                "A value is malformed",
            ))
        }
        SqlState::QUERY_CANCELED => Some(statement_timeout()),
        SqlState::T_R_SERIALIZATION_FAILURE | SqlState::T_R_DEADLOCK_DETECTED => {
            tracing::warn!(context, "transaction conflict: {}", error.message);
            Some(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "conflict_retry",
                "A concurrent change got in the way; retry the request",
            ))
        }
        _ => None,
    }
}

/// Unique constraints of `sql/migrations`, by name, as 409 conflicts.
fn unique_violation(constraint: &str) -> ApiError {
    let (code, field, message) = match constraint {
        "tenants_slug_key" | "tenants_pkey" => ("slug_taken", "slug", "This tenant slug is taken"),
        "users_username_key" => ("username_taken", "username", "This username is taken"),
        "users_email_key" => ("email_taken", "email", "This email is already registered"),
        "users_external_id_key" => (
            "external_id_taken",
            "external_id",
            "A user with this external id exists",
        ),
        "rooms_invite_code_key" => ("invite_code_taken", "invite_code", "Invite code collision"),
        _ => ("conflict", "", "The resource already exists"),
    };
    ApiError {
        field: (!field.is_empty()).then(|| field.to_owned()),
        ..ApiError::new(StatusCode::CONFLICT, code, message)
    }
}

/// Check constraints of `sql/migrations`, by name, as 422 input errors.
fn check_violation(constraint: &str) -> ApiError {
    let (code, field, message) = match constraint {
        "tenants_slug_format" => (
            "invalid_slug",
            "slug",
            "The slug must be 3 to 40 lowercase letters, digits or dashes, not starting or ending with a dash",
        ),
        "tenants_name_length" => (
            "invalid_name",
            "name",
            "The name must be 1 to 100 characters",
        ),
        "users_username_format" => (
            "invalid_username",
            "username",
            "The username must be 2 to 32 letters, digits, dots, dashes or underscores, starting with a letter or digit",
        ),
        "users_email_format" => ("invalid_email", "email", "The email address is malformed"),
        "users_display_name_length" => (
            "invalid_display_name",
            "display_name",
            "The display name must be 1 to 100 characters",
        ),
        "users_avatar_url_valid" => (
            "invalid_url",
            "avatar_url",
            "The avatar URL must be an http or https URL of at most 2048 bytes",
        ),
        "users_bio_length" => (
            "invalid_bio",
            "bio",
            "The bio must be at most 1000 characters",
        ),
        "users_external_id_length" => (
            "invalid_external_id",
            "external_id",
            "The external id must be 1 to 200 characters",
        ),
        "users_metadata_size" | "rooms_metadata_size" => (
            "invalid_metadata",
            "metadata",
            "The metadata must be at most 8 KiB",
        ),
        "users_role_valid" => (
            "invalid_role",
            "role",
            "The role must be owner, admin or member",
        ),
        "api_keys_name_length" => (
            "invalid_name",
            "name",
            "The name must be 1 to 100 characters",
        ),
        _ => ("invalid_value", "", "A value is out of bounds"),
    };
    ApiError {
        field: (!field.is_empty()).then(|| field.to_owned()),
        ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

/// A snake_case code for a status the framework produced without a code of ours.
fn status_code_name(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace([' ', '-'], "_")
}

#[cfg(test)]
mod tests {
    use super::{SqlError, from_sql_error};

    fn answer(
        code: &str,
        message: &str,
        constraint: Option<&str>,
    ) -> (u16, String, Option<String>) {
        let error = SqlError {
            code,
            message,
            detail: Some("explained"),
            constraint,
            hint: None,
        };
        let Some(error) = from_sql_error("test", &error) else {
            panic!("{code} {message} is a server fault");
        };
        (error.status.as_u16(), error.code, error.field)
    }

    #[test]
    fn a_fail_answers_its_code_and_the_field_after_it() {
        assert_eq!(
            answer("HK404", "room_not_found", None),
            (404, "room_not_found".into(), None)
        );
        assert_eq!(
            answer("HK422", "invalid_metadata metadata", None),
            (422, "invalid_metadata".into(), Some("metadata".into()))
        );
    }

    #[test]
    fn a_violation_relayed_without_its_constraint_is_known_by_the_name_in_its_message() {
        let relayed = "new row for relation \"users_102254\" violates check constraint \"users_metadata_size\"";
        assert_eq!(answer("23514", relayed, None).1, "invalid_metadata");
        assert_eq!(
            answer("23514", relayed, None),
            answer("23514", "anything", Some("users_metadata_size"))
        );
    }
}
