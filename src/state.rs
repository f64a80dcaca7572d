//! What every request shares: the database, tokens, password hashing, real-time
//! delivery, the message writer, the purge of deleted rooms, limits and configuration
//! (webhook delivery is started here and runs on its own). Below the routes
//! (`api`), the WebSocket and event-stream edges and authentication, which all take
//! it; it imports none of them.

use std::sync::Arc;

use anyhow::Context as _;

use crate::auth::{PasswordHasher, TokenIssuer};
use crate::config::Config;
use crate::db::{self, Database, DatabaseSettings, MessageWriter};
use crate::exports::Exporter;
use crate::limits::Limits;
use crate::purge::Purger;
use crate::realtime::Node;
use crate::webhooks::Deliverer;

/// What every request shares.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: Database,
    /// Signs and verifies access tokens.
    pub tokens: Arc<TokenIssuer>,
    /// Hashes and verifies passwords.
    pub passwords: PasswordHasher,
    /// Real-time delivery: subscriptions, the LISTEN connection, presence.
    pub realtime: Node,
    /// Batches concurrent message sends into one transaction each.
    pub writer: MessageWriter,
    /// Deletes deleted rooms' history and deleted tenants' rows in the background.
    pub purger: Purger,
    /// Builds exports of users' data in the background.
    pub exporter: Exporter,
    /// Rate limits and connection counts.
    pub limits: Arc<Limits>,
    /// The configuration the instance started with.
    pub config: Arc<Config>,
}

impl AppState {
    /// Migrates the database (creating it first if it does not exist) and builds the
    /// state of a server.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        db::ensure_database_exists(config.migration_url(), config.database_ca_file.as_deref())
            .await?;
        let report =
            db::migrate(config.migration_url(), config.database_ca_file.as_deref()).await?;
        tracing::info!(
            applied = ?report.applied_migrations,
            functions_replaced = report.functions_replaced,
            tables_distributed = report.tables_distributed,
            "database schema is up to date"
        );
        let db = Database::connect(&DatabaseSettings {
            citus: report.citus,
            ..config.database()
        })?;
        db.quota_defaults_set(&config.quotas())
            .await
            .context("could not record the configured quotas")?;
        Self::new(db, config)
    }

    /// Builds the state of a server on a database already migrated (or, in a test,
    /// unreachable), starting its background tasks.
    pub fn new(db: Database, config: Config) -> anyhow::Result<Self> {
        let tokens = Arc::new(TokenIssuer::new(config.tokens()?)?);
        let passwords = PasswordHasher::new(config.passwords())?;
        // The webhook worker runs on its own; the node wakes it on each notification
        // that deliveries were queued.
        let webhooks = Deliverer::start(db.clone(), config.webhooks())?;
        let realtime = Node::start(
            db.without_statement_timeout(),
            config.realtime(),
            webhooks.waker(),
        );
        let writer = MessageWriter::start(db.clone(), config.batches());
        let purger = Purger::start(db.clone(), config.purge());
        let exporter = Exporter::start(db.clone());
        crate::usage::start(
            db.clone(),
            std::time::Duration::from_secs(config.usage_rollup_seconds),
        );
        let limits = Arc::new(Limits::from_config(&config, &db));
        Ok(Self {
            db,
            tokens,
            passwords,
            realtime,
            writer,
            purger,
            exporter,
            limits,
            config: Arc::new(config),
        })
    }
}
