//! The database: the connection pool and one typed Rust function per SQL function of
//! `sql/functions`. This is the only module that touches the pool.
//!
//! Every call is a single statement `select hark_api.f(...)` in its own implicit
//! transaction. The SQL function itself switches to the `hark_app` role and sets the
//! tenant and user transaction-locally (`hark_api.enter`), so nothing leaks from one
//! request to the next through a pooled connection or a transaction-mode pooler.
//! Functions answer JSON, decoded here into the types the API serves.

mod api_keys;
mod batch;
mod messages;
mod migrate;
mod realtime;
mod rooms;
mod sessions;
mod tenants;
pub mod tls;
mod users;

use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::de::DeserializeOwned;
use tokio_postgres::{types::Json, types::ToSql};
use tracing::Instrument;

pub use api_keys::{ApiKey, NewApiKey};
pub use batch::{BatchSettings, BatchStats, ItemFailure, MessageWriter};
pub use messages::{
    Attachment, EventPage, EventType, HistoryCursor, Message, MessageKind, MessagePage,
    MessageVersion, MessageVersions, NewMessage, ReactionCount, ReadMarker, RoomEvent, RoomUnread,
    SentMessage, UnreadSummary,
};
pub use migrate::{MigrationReport, ensure_database_exists, migrate};
pub use realtime::{LogStretch, SubscriptionGrant};
pub use rooms::{
    Member, MemberPage, NewRoom, Room, RoomAccess, RoomKind, RoomPage, RoomPatch, RoomSummary,
    UserRef, Visibility,
};
pub use sessions::{LoginCandidate, NewRegistration, NewSession, Registered};
pub use tenants::{NewTenant, Tenant, TenantPatch, TenantWithOwner};
pub use users::{NewBackendUser, Role, User, UserPage, UserPatch};

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
    /// The message writer is gone (the instance is stopping).
    #[error("the message writer has stopped")]
    WriterStopped,
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
}

/// The pool of connections and the typed calls of the SQL API.
#[derive(Clone)]
pub struct Database {
    /// Connections shared by every request of this instance.
    pool: Pool,
}

impl Database {
    /// Builds the pool. Connections are opened lazily, so this succeeds even when the
    /// database is down; `ping` tells whether it is up.
    pub fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let tls::Target { config, tls } = tls::target(&settings.url, settings.ca_file.as_deref())?;
        let manager = Manager::from_config(
            config,
            tls,
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
        Ok(Self { pool })
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
        self.call(
            "notification_queue_usage",
            "select to_jsonb(hark_api.notification_queue_usage())",
            &[],
        )
        .await
    }

    /// Runs `sql` (one call of a SQL function answering JSON) and decodes the answer.
    async fn call<T: DeserializeOwned>(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<T, DatabaseError> {
        let query_error = |source| DatabaseError::Query { context, source };
        async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(sql).await.map_err(query_error)?;
            let row = client
                .query_one(&statement, params)
                .await
                .map_err(query_error)?;
            let Json(value) = row.try_get::<_, Json<T>>(0).map_err(query_error)?;
            Ok(value)
        }
        .instrument(sql_span(context))
        .await
    }

    /// Like `call`, for functions that may answer SQL null.
    async fn call_optional<T: DeserializeOwned>(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<T>, DatabaseError> {
        let query_error = |source| DatabaseError::Query { context, source };
        async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(sql).await.map_err(query_error)?;
            let row = client
                .query_one(&statement, params)
                .await
                .map_err(query_error)?;
            let value = row.try_get::<_, Option<Json<T>>>(0).map_err(query_error)?;
            Ok(value.map(|Json(value)| value))
        }
        .instrument(sql_span(context))
        .await
    }

    /// Like `call`, for functions that answer nothing.
    async fn call_void(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(), DatabaseError> {
        let query_error = |source| DatabaseError::Query { context, source };
        async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(sql).await.map_err(query_error)?;
            client
                .execute(&statement, params)
                .await
                .map_err(query_error)?;
            Ok(())
        }
        .instrument(sql_span(context))
        .await
    }
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
