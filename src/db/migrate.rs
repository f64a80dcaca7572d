//! Schema changes: the immutable, numbered migrations of `sql/migrations` and the
//! replaceable functions of `sql/functions`, applied under an advisory lock so that
//! any number of instances may start at once.
//!
//! A migration runs once and is recorded with its checksum; a recorded migration
//! whose text has changed stops the start, since migrations are immutable. The
//! functions are re-created as a whole (schema `hark_api` dropped and rebuilt in one
//! transaction) whenever the checksum of their text differs from the recorded one.
//!
//! On a Citus coordinator (a database with the `citus` extension) the tables are
//! spread over the workers in between, by `sql/citus/distribute.sql`, whenever a
//! migration was applied or that file changed; and the functions, once re-created,
//! are put on every node and those that name a tenant delegated to its worker, by
//! `sql/citus/delegate.sql`. A plain PostgreSQL runs neither.

use anyhow::{Context as _, bail};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, error::SqlState};

use crate::db::tls::{Target, target};

/// The advisory lock key that serialises schema changes ("HARK" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x4841_524b;

/// The numbered migrations, in order. Never edit one that has been released; add a new one.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_core_model",
        include_str!("../../sql/migrations/0001_core_model.sql"),
    ),
    (
        2,
        "0002_safe_defaults",
        include_str!("../../sql/migrations/0002_safe_defaults.sql"),
    ),
    (
        3,
        "0003_foreign_key_indexes",
        include_str!("../../sql/migrations/0003_foreign_key_indexes.sql"),
    ),
    (
        4,
        "0004_room_purge",
        include_str!("../../sql/migrations/0004_room_purge.sql"),
    ),
    (
        5,
        "0005_webhooks",
        include_str!("../../sql/migrations/0005_webhooks.sql"),
    ),
    (
        6,
        "0006_server_side",
        include_str!("../../sql/migrations/0006_server_side.sql"),
    ),
    (
        7,
        "0007_user_feed",
        include_str!("../../sql/migrations/0007_user_feed.sql"),
    ),
    (
        8,
        "0008_webhook_outbox",
        include_str!("../../sql/migrations/0008_webhook_outbox.sql"),
    ),
    (
        9,
        "0009_moderation",
        include_str!("../../sql/migrations/0009_moderation.sql"),
    ),
    (
        10,
        "0010_conversations",
        include_str!("../../sql/migrations/0010_conversations.sql"),
    ),
    (
        11,
        "0011_operator",
        include_str!("../../sql/migrations/0011_operator.sql"),
    ),
    (
        12,
        "0012_quotas",
        include_str!("../../sql/migrations/0012_quotas.sql"),
    ),
    (
        13,
        "0013_erasure",
        include_str!("../../sql/migrations/0013_erasure.sql"),
    ),
    (
        14,
        "0014_exports",
        include_str!("../../sql/migrations/0014_exports.sql"),
    ),
    (
        15,
        "0015_retention",
        include_str!("../../sql/migrations/0015_retention.sql"),
    ),
    (
        16,
        "0016_usage",
        include_str!("../../sql/migrations/0016_usage.sql"),
    ),
    (
        17,
        "0017_fleet_limits",
        include_str!("../../sql/migrations/0017_fleet_limits.sql"),
    ),
    (
        18,
        "0018_usage_quotas",
        include_str!("../../sql/migrations/0018_usage_quotas.sql"),
    ),
    (
        19,
        "0019_room_retention",
        include_str!("../../sql/migrations/0019_room_retention.sql"),
    ),
    (
        20,
        "0020_search_tenant_as_value",
        include_str!("../../sql/migrations/0020_search_tenant_as_value.sql"),
    ),
];

/// The replaceable functions, applied in this order.
const FUNCTIONS: &[(&str, &str)] = &[
    (
        "0001_context",
        include_str!("../../sql/functions/0001_context.sql"),
    ),
    (
        "0002_tenants_and_sessions",
        include_str!("../../sql/functions/0002_tenants_and_sessions.sql"),
    ),
    (
        "0003_users",
        include_str!("../../sql/functions/0003_users.sql"),
    ),
    (
        "0004_rooms",
        include_str!("../../sql/functions/0004_rooms.sql"),
    ),
    (
        "0005_messages",
        include_str!("../../sql/functions/0005_messages.sql"),
    ),
    (
        "0006_realtime",
        include_str!("../../sql/functions/0006_realtime.sql"),
    ),
    (
        "0007_batched_writes",
        include_str!("../../sql/functions/0007_batched_writes.sql"),
    ),
    (
        "0008_webhooks",
        include_str!("../../sql/functions/0008_webhooks.sql"),
    ),
    (
        "0009_server_side",
        include_str!("../../sql/functions/0009_server_side.sql"),
    ),
    (
        "0010_user_feed",
        include_str!("../../sql/functions/0010_user_feed.sql"),
    ),
    (
        "0011_moderation",
        include_str!("../../sql/functions/0011_moderation.sql"),
    ),
    (
        "0012_conversations",
        include_str!("../../sql/functions/0012_conversations.sql"),
    ),
    (
        "0013_quotas",
        include_str!("../../sql/functions/0013_quotas.sql"),
    ),
    (
        "0014_operator",
        include_str!("../../sql/functions/0014_operator.sql"),
    ),
    (
        "0015_erasure",
        include_str!("../../sql/functions/0015_erasure.sql"),
    ),
    (
        "0016_exports",
        include_str!("../../sql/functions/0016_exports.sql"),
    ),
    (
        "0017_retention",
        include_str!("../../sql/functions/0017_retention.sql"),
    ),
    (
        "0018_usage",
        include_str!("../../sql/functions/0018_usage.sql"),
    ),
    (
        "0019_fleet_limits",
        include_str!("../../sql/functions/0019_fleet_limits.sql"),
    ),
];

/// Spreads the tables over a Citus cluster (see the module's documentation).
const CITUS_DISTRIBUTE: &str = include_str!("../../sql/citus/distribute.sql");

/// What puts the functions on every node of a Citus cluster and delegates the calls
/// that name a tenant to its worker, run after the functions on a coordinator.
const CITUS_DELEGATE: &str = include_str!("../../sql/citus/delegate.sql");

/// What a run of `migrate` changed.
#[derive(Debug, Default)]
pub struct MigrationReport {
    /// The names of the migrations applied by this run.
    pub applied_migrations: Vec<String>,
    /// Whether the functions were re-created by this run.
    pub functions_replaced: bool,
    /// Whether this run spread tables over a Citus cluster.
    pub tables_distributed: bool,
    /// Whether the database is a Citus coordinator's.
    pub citus: bool,
}

/// Brings the database at `url` up to date.
pub async fn migrate(url: &str, ca_file: Option<&str>) -> anyhow::Result<MigrationReport> {
    let mut client = connect(url, ca_file).await?;
    client
        .execute("select pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("could not take the migration lock")?;
    let result = migrate_locked(&mut client).await;
    // The lock also ends with the connection; unlocking explicitly just frees it sooner.
    let unlock = client
        .execute("select pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let report = result?;
    unlock.context("could not release the migration lock")?;
    Ok(report)
}

async fn migrate_locked(client: &mut Client) -> anyhow::Result<MigrationReport> {
    client
        .batch_execute(
            "create schema if not exists hark;
             create schema if not exists hark_meta;
             create table if not exists hark_meta.migrations (
                 version integer primary key,
                 name text not null,
                 checksum text not null,
                 applied_at timestamptz not null default now());
             create table if not exists hark_meta.functions (
                 id boolean primary key default true check (id),
                 checksum text not null,
                 applied_at timestamptz not null default now());
             create table if not exists hark_meta.distribution (
                 id boolean primary key default true check (id),
                 checksum text not null,
                 applied_at timestamptz not null default now());",
        )
        .await
        .context("could not create the migration bookkeeping tables")?;

    let mut report = MigrationReport::default();
    for (version, name, sql) in MIGRATIONS {
        let checksum = checksum(&[sql]);
        let recorded = client
            .query_opt(
                "select checksum from hark_meta.migrations where version = $1",
                &[version],
            )
            .await
            .context("could not read the applied migrations")?;
        if let Some(row) = recorded {
            let recorded_checksum: String = row.get(0);
            if recorded_checksum != checksum {
                bail!(
                    "migration {name} was changed after it was applied; migrations are immutable, add a new one instead"
                );
            }
            continue;
        }
        let transaction = client.transaction().await?;
        transaction
            .batch_execute(sql)
            .await
            .with_context(|| format!("migration {name} failed"))?;
        transaction
            .execute(
                "insert into hark_meta.migrations (version, name, checksum) values ($1, $2, $3)",
                &[version, name, &checksum],
            )
            .await?;
        transaction.commit().await?;
        tracing::info!(migration = name, "applied migration");
        report.applied_migrations.push((*name).to_owned());
    }

    report.citus = is_citus(client).await?;
    if report.citus {
        let distribute_checksum = checksum(&[CITUS_DISTRIBUTE]);
        let recorded = recorded_checksum(client, "distribution").await?;
        if !report.applied_migrations.is_empty()
            || recorded.as_deref() != Some(distribute_checksum.as_str())
        {
            let transaction = client.transaction().await?;
            transaction
                .batch_execute(CITUS_DISTRIBUTE)
                .await
                .context("could not spread the tables over the Citus cluster")?;
            record_checksum(&transaction, "distribution", &distribute_checksum).await?;
            transaction.commit().await?;
            tracing::info!("spread the tables over the Citus cluster");
            report.tables_distributed = true;
        }
    }

    // On Citus the functions are recorded with their delegation: a change of either
    // re-creates both.
    let mut functions: Vec<&str> = FUNCTIONS.iter().map(|(_, sql)| *sql).collect();
    if report.citus {
        functions.push(CITUS_DELEGATE);
    }
    let functions_checksum = checksum(&functions);
    let recorded = recorded_checksum(client, "functions").await?;
    if recorded.as_deref() != Some(functions_checksum.as_str()) {
        let transaction = client.transaction().await?;
        transaction
            .batch_execute("drop schema if exists hark_api cascade")
            .await
            .context("could not drop the old functions")?;
        for (name, sql) in FUNCTIONS {
            transaction
                .batch_execute(sql)
                .await
                .with_context(|| format!("functions file {name} failed"))?;
        }
        transaction
            .batch_execute("grant execute on all functions in schema hark_api to hark_app")
            .await?;
        if report.citus {
            transaction
                .batch_execute(CITUS_DELEGATE)
                .await
                .context("could not delegate the functions to the Citus workers")?;
        }
        record_checksum(&transaction, "functions", &functions_checksum).await?;
        transaction.commit().await?;
        tracing::info!("re-created the SQL functions");
        report.functions_replaced = true;
    }
    Ok(report)
}

/// The checksum recorded in `hark_meta.<table>` (`functions` or `distribution`: the
/// replaceable SQL last applied), if any.
async fn recorded_checksum(client: &Client, table: &str) -> anyhow::Result<Option<String>> {
    Ok(client
        .query_opt(&format!("select checksum from hark_meta.{table}"), &[])
        .await
        .with_context(|| format!("could not read the {table} checksum"))?
        .map(|row| row.get::<_, String>(0)))
}

/// Records in `hark_meta.<table>` the checksum of the replaceable SQL just applied.
async fn record_checksum(
    transaction: &tokio_postgres::Transaction<'_>,
    table: &str,
    checksum: &str,
) -> anyhow::Result<()> {
    transaction
        .execute(
            &format!(
                "insert into hark_meta.{table} (checksum) values ($1)
                 on conflict (id) do update set checksum = excluded.checksum, applied_at = now()"
            ),
            &[&checksum],
        )
        .await
        .with_context(|| format!("could not record the {table} checksum"))?;
    Ok(())
}

/// Whether the database is a Citus coordinator's: the extension is installed in it.
pub async fn is_citus(client: &Client) -> anyhow::Result<bool> {
    Ok(client
        .query_one(
            "select exists (select from pg_extension where extname = 'citus')",
            &[],
        )
        .await
        .context("could not look for the citus extension")?
        .get(0))
}

/// Creates the database named in `url` when it does not exist yet, so that a fresh
/// machine serves without setup. Other connection errors are left for the caller.
pub async fn ensure_database_exists(url: &str, ca_file: Option<&str>) -> anyhow::Result<()> {
    let Target { config, tls } = target(url, ca_file)?;
    match config.connect(tls.clone()).await {
        Ok(_) => return Ok(()),
        Err(error) if error.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {}
        Err(error) => {
            return Err(error).context("could not connect to PostgreSQL");
        }
    }
    let name = config
        .get_dbname()
        .context("DATABASE_URL names no database")?
        .to_owned();
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
    let (client, connection) = maintenance
        .connect(tls)
        .await
        .context("could not connect to the `postgres` database to create the database")?;
    tokio::spawn(connection);
    let statement = format!("create database \"{}\"", name.replace('"', "\"\""));
    match client.batch_execute(&statement).await {
        Ok(()) => {
            tracing::info!(database = name, "created the database");
            Ok(())
        }
        Err(error) if error.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(error) => Err(error).with_context(|| format!("could not create database {name}")),
    }
}

async fn connect(url: &str, ca_file: Option<&str>) -> anyhow::Result<Client> {
    let Target { config, tls } = target(url, ca_file)?;
    let (client, connection) = config
        .connect(tls)
        .await
        .context("could not connect to PostgreSQL to migrate")?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "migration connection ended");
        }
    });
    Ok(client)
}

fn checksum(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}
