//! The database: the connection pool and one typed Rust function per SQL function of
//! `sql/functions`. This is the only module that touches the pool.
//!
//! Every call is a single statement `select hark_api.f(...)` in its own implicit
//! transaction. The SQL function itself switches to the `hark_app` role and sets the
//! tenant and user transaction-locally (`hark_api.enter`), so nothing leaks from one
//! request to the next through a pooled connection or a transaction-mode pooler.
//! Functions answer JSON, decoded here into the types the API serves.

mod acting;
mod api_keys;
mod batch;
mod conversations;
mod erasure;
mod exports;
mod messages;
mod migrate;
mod moderation;
mod operator;
mod quotas;
mod rate_buckets;
mod realtime;
mod rooms;
mod sessions;
mod tenants;
pub mod tls;
mod users;
mod webhooks;

use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::de::DeserializeOwned;
use tokio_postgres::types::{Json, ToSql, Type};
use tracing::Instrument;

pub use api_keys::{ActingSession, ApiKey, NewApiKey};
pub use batch::{BatchSettings, BatchStats, ItemFailure, MessageWriter};
pub use conversations::{
    MentionPage, PinList, ReplyPage, SearchHit, SearchPage, SearchQuery, SearchRoom, SnippetRun,
    ThreadPage, ThreadReadMarker, ThreadSummary,
};
pub use erasure::{Erasure, ErasureMode};
pub use exports::{ExportState, UserExport};
pub use messages::{
    Attachment, Draft, EventPage, EventType, HistoryCursor, Message, MessageEdit, MessageKind,
    MessagePage, MessageVersion, MessageVersions, NewMessage, ReactionCount, ReadMarker, RoomEvent,
    RoomUnread, SentMessage, UnreadSummary,
};
pub use migrate::{MigrationReport, ensure_database_exists, is_citus, migrate};
pub use moderation::{
    AuditEntry, AuditFilter, AuditPage, Block, BlockPage, FilterAction, NewReport, Report,
    ReportAction, ReportFilter, ReportPage, ReportReason, ReportState, Resolution, Restriction,
    RestrictionKind, RestrictionPage, Sanction, WordFilter, WordFilterList,
};
pub use operator::{OperatorTenant, OperatorTenantPage, TenantQuery, UsageSummary};
pub use quotas::{DailyUsage, QuotaUsage, Quotas, TableStorage, TenantFigures, TenantUsage};
pub use rate_buckets::{RateBucket, RateLease};
pub use realtime::{LogStretch, SubscriptionGrant};
pub use rooms::{
    Member, MemberPage, MetadataFilter, NewRoom, Room, RoomAccess, RoomFilter, RoomKind, RoomPage,
    RoomPatch, RoomRole, RoomSort, RoomSummary, TenantRoomFilter, TenantRoomPage, UserRef,
    Visibility,
};
pub use sessions::{LoginCandidate, NewRegistration, NewSession, Refreshed, Registered};
pub use tenants::{NewTenant, Tenant, TenantPatch, TenantWithOwner};
pub use users::{NewBackendUser, Role, User, UserFilter, UserPage, UserPatch};
pub use webhooks::{
    ChainKey, Claim, ClaimedDelivery, ClaimedEndpoint, ClaimedRun, DeliveryOutcome, NewWebhook,
    OutcomeKind, RetryPolicy, Webhook, WebhookBacklog, WebhookDelivery, WebhookDeliveryPage,
    WebhookReplay,
};

/// A failure to talk to the database.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// No connection could be had from the pool.
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed (an error raised by a SQL function included).
    #[error("{context}: {source}")]
    Query {
        /// Which call failed.
        context: &'static str,
        /// What Postgres or the driver said.
        source: tokio_postgres::Error,
    },
    /// One item of a batch failed inside its own subtransaction.
    #[error("{context}: {} {}", failure.sqlstate, failure.message)]
    Item {
        /// Which call failed.
        context: &'static str,
        /// What Postgres said.
        failure: ItemFailure,
    },
    /// A whole batch failed; none of it was written.
    #[error("the batch failed: {message}")]
    Batch {
        /// What went wrong.
        message: String,
    },
    /// A statement ran longer than the statement timeout and was cancelled.
    #[error("{context}: the statement ran too long and was cancelled")]
    Timeout {
        /// Which call failed.
        context: &'static str,
    },
    /// A statement that always answers a value answered no row, or null.
    #[error("{context}: the statement answered nothing")]
    NoRow {
        /// Which call failed.
        context: &'static str,
    },
    /// The message writer is gone (the instance is stopping).
    #[error("the message writer has stopped")]
    WriterStopped,
}

impl DatabaseError {
    /// Whether a send without waiting found its room held by another transaction
    /// (`hark_api.lock_room` without `p_wait`: SQLSTATE 55P03).
    pub fn is_room_busy(&self) -> bool {
        match self {
            Self::Query { source, .. } => source.as_db_error().is_some_and(|error| {
                error.code() == &tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE
            }),
            _ => false,
        }
    }
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// The URL the pool connects with.
    pub url: String,
    /// The most connections the pool holds.
    pub pool_size: usize,
    /// How long a request waits for a pooled connection before failing with 503.
    pub pool_timeout: Duration,
    /// A file of root certificates for TLS to Postgres, when not in the URL.
    pub ca_file: Option<String>,
    /// Distinct reactions one user may put on one message, which `reaction_set`
    /// enforces.
    pub max_reactions_per_user: i32,
    /// Edits one message may have, which `message_edit` enforces.
    pub max_edits_per_message: i32,
    /// The most bytes of JSON one page of history or of the event log carries.
    pub max_page_bytes: i32,
    /// How long one statement may run before it is cancelled.
    pub statement_timeout: Duration,
    /// How long one message search may run (see [`Database::message_search`]).
    pub search_timeout: Duration,
    /// Whether the database is a Citus coordinator's (see [`Database::citus`]).
    pub citus: bool,
}

/// The pool of connections and the typed calls of the SQL API.
#[derive(Clone)]
pub struct Database {
    /// Connections shared by every request of this instance.
    pool: Pool,
    /// Distinct reactions one user may put on one message.
    max_reactions_per_user: i32,
    /// Edits one message may have: its edit history is bounded.
    max_edits_per_message: i32,
    /// The most bytes of JSON one page carries, which the listing functions enforce.
    max_page_bytes: i32,
    /// How long one statement may run: then it is cancelled on the server (a cancel
    /// request, which poolers pass on) and the call fails with 503, so that no request
    /// holds a pooled connection for long whatever it waits for. `None` for the
    /// real-time core's reads of the log, which are never abandoned (see
    /// [`Database::without_statement_timeout`]).
    statement_timeout: Option<Duration>,
    /// The bound of a message search, which costs what its words match: shorter than
    /// the statement timeout, so that searches cannot hold pooled connections as long
    /// as other calls may.
    search_timeout: Duration,
    /// The TLS setup the cancel requests connect with, the same as the pool's.
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// Whether every call runs in a transaction block of its own (`begin`, the call,
    /// `commit`): on a Citus coordinator. Citus passes the transaction's `SET LOCAL`s
    /// (the tenant and user `hark_api.enter` sets, which the policies on the shards
    /// read) on to a worker only in the remote transaction block it opens there, and it
    /// opens one for a read only inside a transaction block of the client's.
    citus: bool,
}

impl Database {
    /// Builds the pool. Connections are opened lazily, so this succeeds even when the
    /// database is down; `ping` tells whether it is up.
    pub fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let tls::Target { config, tls } = tls::target(&settings.url, settings.ca_file.as_deref())?;
        let manager = Manager::from_config(
            config,
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .wait_timeout(Some(settings.pool_timeout))
            .create_timeout(Some(settings.pool_timeout))
            .recycle_timeout(Some(settings.pool_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .context("could not build the connection pool")?;
        Ok(Self {
            pool,
            max_reactions_per_user: settings.max_reactions_per_user,
            max_edits_per_message: settings.max_edits_per_message,
            max_page_bytes: settings.max_page_bytes,
            statement_timeout: Some(settings.statement_timeout),
            search_timeout: settings.search_timeout,
            tls,
            citus: settings.citus,
        })
    }

    /// The same database for work that must not give up part way: the real-time
    /// core's reads of a room's log. A read abandoned there would leave a subscriber a
    /// gap that nothing fills until the room's next event, so it waits as long as the
    /// statement takes (connection failures still end it).
    pub fn without_statement_timeout(&self) -> Self {
        Self {
            statement_timeout: None,
            ..self.clone()
        }
    }

    /// The same database with a shorter bound on each statement (the configured one
    /// still holds when it is shorter): for calls whose cost depends on what users ask,
    /// such as searches.
    fn with_statement_timeout(&self, limit: Duration) -> Self {
        Self {
            statement_timeout: Some(self.statement_timeout.map_or(limit, |own| own.min(limit))),
            ..self.clone()
        }
    }

    /// Whether the database is a Citus coordinator's (see [`Database::citus`]'s field).
    pub fn is_citus(&self) -> bool {
        self.citus
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), DatabaseError> {
        let client = self.pool.get().await?;
        client
            .simple_query("select 1")
            .await
            .map_err(|source| DatabaseError::Query {
                context: "ping",
                source,
            })?;
        Ok(())
    }

    /// The pool's connections: in use, idle, and requests waiting for one.
    pub fn pool_usage(&self) -> (usize, usize, usize) {
        let status = self.pool.status();
        (
            status.size.saturating_sub(status.available),
            status.available,
            status.waiting,
        )
    }

    /// Postgres's notification queue usage, from 0 to 1.
    pub async fn notification_queue_usage(&self) -> Result<f64, DatabaseError> {
        self.call("notification_queue_usage", &[]).await
    }

    /// Calls `hark_api.<function>` with the parameters, in order, and decodes its
    /// answer: JSON into `T`, and SQL null or `void` into what null means for `T`
    /// (`None`, or `()` for functions that answer nothing). The one way Rust calls
    /// the SQL API: a function's name is written once, at its call.
    async fn call<T: DeserializeOwned>(
        &self,
        function: &'static str,
        params: &[&dyn Param],
    ) -> Result<T, DatabaseError> {
        let placeholders: Vec<String> = (1..=params.len()).map(|n| format!("${n}")).collect();
        let sql = format!("select hark_api.{function}({})", placeholders.join(", "));
        async {
            let row = self.query_one(function, &sql, params).await?;
            let answer = if row
                .columns()
                .first()
                .is_some_and(|column| *column.type_() == Type::VOID)
            {
                None
            } else {
                row.try_get::<_, Option<Json<T>>>(0)
                    .map_err(|source| DatabaseError::Query {
                        context: function,
                        source,
                    })?
                    .map(|Json(value)| value)
            };
            match answer {
                Some(value) => Ok(value),
                None => T::deserialize(serde_json::Value::Null)
                    .map_err(|_| DatabaseError::NoRow { context: function }),
            }
        }
        .instrument(sql_span(function))
        .await
    }

    /// Runs one statement answering one row, as an unnamed statement: parse, bind and
    /// execute in one round trip (`query_typed`), with the parameter types given by
    /// the Rust values. A named prepared statement would be session state, and a
    /// transaction-mode pooler hands the next statement to another server
    /// connection, where the name does not exist (SQLSTATE 26000).
    async fn query_one(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<tokio_postgres::Row, DatabaseError> {
        let client = self.pool.get().await?;
        let query_error = |source| DatabaseError::Query { context, source };
        if self.citus {
            client.batch_execute("begin").await.map_err(query_error)?;
        }
        let outcome = self.run_bounded(&client, context, sql, params).await;
        // A statement still running after its cancel leaves the connection busy: it
        // is closed below, its transaction with it.
        if self.citus && !matches!(outcome, Err(false)) {
            let committed = matches!(outcome, Ok(Ok(_)));
            let end = if committed { "commit" } else { "rollback" };
            if let Err(source) = client.batch_execute(end).await {
                // A connection whose transaction did not end is not given back.
                drop(deadpool_postgres::Object::take(client));
                return Err(match outcome {
                    Ok(Err(error)) if !committed => query_error(error),
                    Err(_) => DatabaseError::Timeout { context },
                    _ => query_error(source),
                });
            }
        }
        let rows = match outcome {
            Ok(rows) => rows.map_err(query_error)?,
            Err(ended) => {
                // A connection whose statement did not end even then is closed instead.
                if !ended {
                    drop(deadpool_postgres::Object::take(client));
                }
                return Err(DatabaseError::Timeout { context });
            }
        };
        rows.into_iter()
            .next()
            .ok_or(DatabaseError::NoRow { context })
    }

    /// Runs the statement within the statement timeout: its rows or its error, or
    /// `Err(ended)` when it ran too long and was cancelled (`ended`: whether it has
    /// ended since, so that the connection is idle again).
    async fn run_bounded(
        &self,
        client: &deadpool_postgres::Object,
        context: &'static str,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>, bool> {
        let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
            .iter()
            .map(|param| (param.as_sql(), param.sql_type()))
            .collect();
        let Some(limit) = self.statement_timeout else {
            return Ok(client.query_typed(sql, &typed).await);
        };
        let query = client.query_typed(sql, &typed);
        tokio::pin!(query);
        tokio::select! {
            rows = &mut query => Ok(rows),
            () = tokio::time::sleep(limit) => {
                if let Err(error) = client.cancel_token().cancel_query(self.tls.clone()).await {
                    tracing::warn!(%error, context, "could not cancel a statement that ran too long");
                }
                // The statement's end is awaited, so that the connection goes back to
                // the pool idle and the cancel cannot reach a later statement.
                Err(tokio::time::timeout(limit, &mut query).await.is_ok())
            }
        }
    }
}

/// A parameter of a SQL call: a value together with the PostgreSQL type it is sent
/// as, since unnamed statements run without a round trip that would ask the server.
pub trait Param: Sync {
    /// The value, for the driver.
    fn as_sql(&self) -> &(dyn ToSql + Sync);
    /// The type the statement declares for it.
    fn sql_type(&self) -> Type;
}

/// Rust types with one PostgreSQL type.
trait SqlType {
    /// That type.
    const TYPE: Type;
}

impl<T: ToSql + Sync + SqlType> Param for T {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        self
    }

    fn sql_type(&self) -> Type {
        T::TYPE
    }
}

impl<T: SqlType + ?Sized> SqlType for &T {
    const TYPE: Type = T::TYPE;
}

impl<T: SqlType> SqlType for Option<T> {
    const TYPE: Type = T::TYPE;
}

impl<T: serde::Serialize> SqlType for Json<T> {
    const TYPE: Type = Type::JSONB;
}

/// Declares the PostgreSQL type of Rust types.
macro_rules! sql_types {
    ($($rust:ty => $sql:ident),* $(,)?) => {
        $(impl SqlType for $rust {
            const TYPE: Type = Type::$sql;
        })*
    };
}

sql_types! {
    bool => BOOL,
    i32 => INT4,
    i64 => INT8,
    f64 => FLOAT8,
    str => TEXT,
    String => TEXT,
    [String] => TEXT_ARRAY,
    Vec<String> => TEXT_ARRAY,
    uuid::Uuid => UUID,
    [u8] => BYTEA,
    Vec<u8> => BYTEA,
    [uuid::Uuid] => UUID_ARRAY,
    Vec<uuid::Uuid> => UUID_ARRAY,
    serde_json::Value => JSONB,
    chrono::DateTime<chrono::Utc> => TIMESTAMPTZ,
}

/// The span of one SQL function call, named and attributed as OpenTelemetry's
/// database conventions say. At `debug` level, it exists only when traces are
/// exported (see `telemetry`).
fn sql_span(function: &'static str) -> tracing::Span {
    tracing::debug_span!(
        "sql",
        otel.name = %format_args!("SELECT hark_api.{function}"),
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = "SELECT",
        db.stored_procedure.name = %format_args!("hark_api.{function}"),
    )
}
