//! The command line: `hark serve`, `hark migrate`, `hark openapi` and
//! `hark tenant create`. With no subcommand, `hark` serves.

use std::{io::Write as _, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rand::RngCore;

use crate::config::Config;
use crate::startup::{AppState, serve};
use crate::tenancy::{CreateTenantRequest, OwnerRequest, TenantCreated, create_tenant_with_owner};

/// Hark, a multi-tenant chat backend.
#[derive(Debug, Parser)]
#[command(name = "hark", version, about)]
struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Migrate the database and serve HTTP until SIGTERM or Ctrl-C.
    Serve(Box<Config>),
    /// Bring the database schema up to date and exit.
    Migrate(Box<Config>),
    /// Print the OpenAPI document.
    Openapi {
        /// Print JSON instead of YAML.
        #[arg(long)]
        json: bool,
    },
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Measure a deployment (or two local instances) under load.
    #[cfg(feature = "bench")]
    Bench(Box<crate::bench::BenchArgs>),
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant with its owner and print the tenant and the owner's tokens as JSON.
    Create {
        /// The tenant's slug: 3 to 40 lowercase letters, digits or dashes.
        #[arg(long)]
        slug: String,
        /// The tenant's display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
        /// The owner's username.
        #[arg(long)]
        owner_username: String,
        /// The owner's password; a random one is made and printed when absent.
        #[arg(long, env = "HARK_OWNER_PASSWORD", hide_env_values = true)]
        owner_password: Option<String>,
        /// The owner's email address.
        #[arg(long)]
        owner_email: Option<String>,
        /// The owner's display name.
        #[arg(long)]
        owner_display_name: Option<String>,
        /// Open self-registration at once (new tenants start closed).
        #[arg(long)]
        registration_open: bool,
        /// Database and token settings.
        #[command(flatten)]
        config: Box<Config>,
    },
    /// List live tenants in slug order, as JSON (`GET /v1/operator/tenants`).
    List {
        /// Only tenants whose slug starts with this.
        #[arg(long)]
        slug: Option<String>,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        /// Tenants per page, 1 to 200.
        #[arg(long, default_value_t = 50)]
        limit: i32,
        /// Database settings.
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Show one tenant as JSON.
    Show {
        /// The tenant's id.
        tenant_id: uuid::Uuid,
        /// Database settings.
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Suspend a tenant: its tokens, keys and logins are refused and its streams end on
    /// every instance; its data stays.
    Suspend {
        /// The tenant's id.
        tenant_id: uuid::Uuid,
        /// Why, kept with the tenant.
        #[arg(long)]
        reason: Option<String>,
        /// Database settings.
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Delete a tenant: refused at once; the servers' purge then removes its rows
    /// (`hark tenant show` tells how far it went).
    Delete {
        /// The tenant's id.
        tenant_id: uuid::Uuid,
        /// Database settings.
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Resume a suspended tenant.
    Resume {
        /// The tenant's id.
        tenant_id: uuid::Uuid,
        /// Database settings.
        #[command(flatten)]
        config: Box<Config>,
    },
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    // A missing .env file is normal; a malformed one is worth saying.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        eprintln!("hark: could not read .env: {error}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hark: could not start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hark: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command {
        Some(command) => command,
        None => Command::Serve(Box::new(Config::default_from_env()?)),
    };
    match command {
        Command::Serve(mut config) => {
            let telemetry = crate::telemetry::init(config.log_format);
            crate::startup::resolve_database(&mut config).await?;
            let development = config.development;
            let listener = tokio::net::TcpListener::bind(&config.bind)
                .await
                .with_context(|| format!("could not listen on {}", config.bind))?;
            let demo_tenant = match config.demo_tenant.as_deref() {
                Some("off") | Some("") => None,
                Some(slug) => Some(slug.to_owned()),
                None => development.then(|| "demo".to_owned()),
            };
            let base_url = local_url(&listener)?;
            let state = AppState::start(*config).await?;
            if let Some(slug) = &demo_tenant {
                ensure_demo_tenant(&state, slug).await?;
            }
            eprintln!("hark: API docs at {base_url}/docs");
            match &demo_tenant {
                Some(slug) => eprintln!(
                    "hark: demo chat at {base_url}/demo (tenant `{slug}`: register any name, in two tabs)"
                ),
                None => eprintln!("hark: demo chat at {base_url}/demo"),
            }
            let served = serve(listener, state, shutdown_signal()).await;
            // The spans of the last requests are exported before the process exits.
            telemetry.shutdown().await;
            served
        }
        Command::Migrate(mut config) => {
            let _telemetry = crate::telemetry::init(config.log_format);
            crate::startup::resolve_database(&mut config).await?;
            crate::db::ensure_database_exists(
                config.migration_url(),
                config.database_ca_file.as_deref(),
            )
            .await?;
            let report =
                crate::db::migrate(config.migration_url(), config.database_ca_file.as_deref())
                    .await?;
            print_out(&format!(
                "migrations applied: {}; functions re-created: {}; tables spread over Citus: {}",
                if report.applied_migrations.is_empty() {
                    "none".to_owned()
                } else {
                    report.applied_migrations.join(", ")
                },
                report.functions_replaced,
                report.tables_distributed
            ))
        }
        #[cfg(feature = "bench")]
        Command::Bench(args) => crate::bench::run(*args).await,
        Command::Openapi { json } => print_out(&if json {
            crate::api::document::json()
        } else {
            crate::api::document::yaml()
        }),
        Command::Tenant(TenantCommand::Create {
            slug,
            name,
            owner_username,
            owner_password,
            owner_email,
            owner_display_name,
            registration_open,
            mut config,
        }) => {
            let _telemetry = crate::telemetry::init(config.log_format);
            crate::startup::resolve_database(&mut config).await?;
            let generated_password = owner_password.is_none();
            let password = owner_password.unwrap_or_else(random_password);
            let state = AppState::start(*config).await?;
            let request = CreateTenantRequest {
                name: name.unwrap_or_else(|| slug.clone()),
                slug,
                owner: OwnerRequest {
                    username: owner_username,
                    password: password.clone(),
                    email: owner_email,
                    display_name: owner_display_name,
                },
                registration_open: Some(registration_open),
            };
            let created = create_tenant_with_owner(&state, request)
                .await
                .map_err(|error| anyhow::anyhow!("{}: {}", error.code, error.message))?;
            let mut output = serde_json::to_value(CreatedOutput::from(&created))?;
            if generated_password {
                output["owner_password"] = serde_json::Value::from(password);
            }
            print_out(&serde_json::to_string_pretty(&output)?)
        }
        Command::Tenant(TenantCommand::List {
            slug,
            cursor,
            limit,
            config,
        }) => {
            let query = crate::db::TenantQuery {
                after: cursor,
                slug_prefix: slug,
                limit,
            };
            let db = operator_database(config).await?;
            print_json(db.operator_tenant_list(&query).await)
        }
        Command::Tenant(TenantCommand::Show { tenant_id, config }) => {
            let db = operator_database(config).await?;
            print_json(db.operator_tenant_get(tenant_id).await)
        }
        Command::Tenant(TenantCommand::Suspend {
            tenant_id,
            reason,
            config,
        }) => {
            let db = operator_database(config).await?;
            print_json(
                db.operator_tenant_suspend(tenant_id, reason.as_deref())
                    .await,
            )
        }
        Command::Tenant(TenantCommand::Delete { tenant_id, config }) => {
            let db = operator_database(config).await?;
            print_json(db.operator_tenant_delete(tenant_id).await)
        }
        Command::Tenant(TenantCommand::Resume { tenant_id, config }) => {
            let db = operator_database(config).await?;
            print_json(db.operator_tenant_resume(tenant_id).await)
        }
    }
}

/// The database of the operator's subcommands, migrated as the server would.
async fn operator_database(mut config: Box<Config>) -> anyhow::Result<crate::db::Database> {
    crate::startup::resolve_database(&mut config).await?;
    Ok(AppState::start(*config).await?.db)
}

/// Prints an operator subcommand's answer as JSON, or fails with its error code and
/// message, as the HTTP API would answer them.
fn print_json<T: serde::Serialize>(
    answer: Result<T, crate::db::DatabaseError>,
) -> anyhow::Result<()> {
    match answer {
        Ok(value) => print_out(&serde_json::to_string_pretty(&value)?),
        Err(error) => {
            let error = crate::error::ApiError::from(error);
            anyhow::bail!("{}: {}", error.code, error.message)
        }
    }
}

/// The URL a local browser reaches the listener at.
fn local_url(listener: &tokio::net::TcpListener) -> anyhow::Result<String> {
    let address = listener
        .local_addr()
        .context("the listener has no address")?;
    Ok(
        if address.ip().is_unspecified() || address.ip().is_loopback() {
            format!("http://localhost:{}", address.port())
        } else {
            format!("http://{address}")
        },
    )
}

/// Creates the demo tenant (open registration, an owner nobody logs in as) unless
/// it exists.
async fn ensure_demo_tenant(state: &AppState, slug: &str) -> anyhow::Result<()> {
    let request = CreateTenantRequest {
        name: "Hark demo".to_owned(),
        slug: slug.to_owned(),
        owner: OwnerRequest {
            username: "demo-owner".to_owned(),
            password: random_password(),
            email: None,
            display_name: Some("Demo owner".to_owned()),
        },
        registration_open: Some(true),
    };
    match create_tenant_with_owner(state, request).await {
        Ok(_) => {
            tracing::info!(tenant = slug, "created the demo tenant");
            Ok(())
        }
        Err(error) if error.code == "slug_taken" => Ok(()),
        Err(error) => Err(anyhow::anyhow!(
            "could not create the demo tenant `{slug}`: {}: {}",
            error.code,
            error.message
        )),
    }
}

/// What `hark tenant create` prints.
#[derive(serde::Serialize)]
struct CreatedOutput {
    tenant_id: uuid::Uuid,
    tenant_slug: String,
    owner_id: uuid::Uuid,
    owner_username: String,
    access_token: String,
    refresh_token: String,
}

impl From<&TenantCreated> for CreatedOutput {
    fn from(created: &TenantCreated) -> Self {
        Self {
            tenant_id: created.tenant.id,
            tenant_slug: created.tenant.slug.clone(),
            owner_id: created.session.user.id,
            owner_username: created.session.user.username.clone(),
            access_token: created.session.access_token.clone(),
            refresh_token: created.session.refresh_token.clone(),
        }
    }
}

/// Prints a command's result on standard output. A reader that went away (`| head`)
/// is not an error of ours.
fn print_out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("could not write to standard output")
        }
        _ => Ok(()),
    }
}

fn random_password() -> String {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "could not listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "could not listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
