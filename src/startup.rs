//! Building the application: its routes and the server loop. The
//! server takes its listener and its shutdown signal as arguments, so that tests and
//! `main` run it the same way.

use std::{future::Future, time::Duration};

use anyhow::Context as _;
use poem::{
    Endpoint, EndpointExt, Response, Route, Server,
    endpoint::make_sync,
    listener::{Acceptor, TcpAcceptor},
    middleware::{Compression, Cors},
};

use crate::acceptor::GuardedAcceptor;
use crate::api::in_flight::UserRequests;
use crate::config::Config;
use crate::edge::Edge;
pub use crate::state::AppState;

/// Where the private cluster lives when no server answers (relative to the working
/// directory) and its port, below the ephemeral range.
const PRIVATE_CLUSTER_DIR: &str = ".hark/postgres";
const PRIVATE_CLUSTER_PORT: u16 = 25_433;

/// Makes sure there is a database to use when `DATABASE_URL` is not set: the local
/// server if it answers, else a private cluster started from the installed server
/// binaries, else an error that says how to get one.
/// It also marks the configuration as the zero-configuration development run when
/// `DATABASE_URL` was not set.
pub async fn resolve_database(config: &mut Config) -> anyhow::Result<()> {
    config.development = config.database_url.is_none();
    if config.database_url.is_some() {
        return Ok(());
    }
    let local = config.database_url().to_owned();
    let server = local.replace("/hark", "/postgres");
    if tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .is_ok()
    {
        return Ok(());
    }
    if crate::local_postgres::bin_dir().is_none() {
        anyhow::bail!(
            "no PostgreSQL answers at 127.0.0.1:5432 and no server binaries are installed. \
             Install them (`apt-get install postgresql`), start a server, or set DATABASE_URL."
        );
    }
    let data = std::env::current_dir()?.join(PRIVATE_CLUSTER_DIR);
    crate::local_postgres::start(&data, PRIVATE_CLUSTER_PORT, "")?;
    let private = format!("postgres://postgres@127.0.0.1:{PRIVATE_CLUSTER_PORT}");
    for _ in 0..100 {
        if tokio_postgres::connect(&format!("{private}/postgres"), tokio_postgres::NoTls)
            .await
            .is_ok()
        {
            tracing::warn!(
                directory = %data.display(),
                port = PRIVATE_CLUSTER_PORT,
                "no PostgreSQL answered at 127.0.0.1:5432: using a private cluster (started if it was not running)"
            );
            eprintln!(
                "hark: no PostgreSQL at 127.0.0.1:5432; using a private cluster in {} on port {PRIVATE_CLUSTER_PORT}",
                data.display()
            );
            config.database_url = Some(format!("{private}/hark"));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "the private PostgreSQL cluster in {} did not start; see its server.log",
        data.display()
    )
}

/// Every route of the server: the API, its description and its browsable UI.
pub fn routes(state: AppState) -> impl Endpoint + 'static {
    let service = crate::api::service();
    let cors = (!state.config.cors_origins.is_empty()).then(|| {
        let cors = Cors::new();
        if state.config.cors_origins.iter().any(|origin| origin == "*") {
            cors
        } else {
            cors.allow_origins(state.config.cors_origins.iter().map(String::as_str))
        }
        .expose_header(crate::edge::REQUEST_ID_HEADER)
    });
    let max_body_bytes = state.config.max_body_bytes;
    Route::new()
        .nest("/docs", service.swagger_ui())
        .at("/demo", crate::demo::page())
        .at("/demo/hark-sdk.js", crate::demo::sdk())
        .at(
            "/openapi.json",
            make_sync(|_| {
                Response::builder()
                    .content_type("application/json")
                    .body(crate::api::document::json())
            }),
        )
        .at(
            "/openapi.yaml",
            make_sync(|_| {
                Response::builder()
                    .content_type("application/yaml")
                    .body(crate::api::document::yaml())
            }),
        )
        .nest("/", service)
        .with(UserRequests)
        .with_if(cors.is_some(), cors.unwrap_or_default())
        .with(Compression::new())
        .data(state)
        .with(Edge { max_body_bytes })
}

/// Serves until `shutdown` completes, then lets in-flight requests finish within the
/// configured grace period.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(state.config.shutdown_grace_seconds);
    let acceptor = GuardedAcceptor::new(
        TcpAcceptor::from_tokio(listener).context("could not use the listener")?,
        state.config.connection_limits(),
    );
    let idle_timeout = state.config.idle_timeout();
    let address = acceptor
        .local_addr()
        .into_iter()
        .next()
        .map(|address| address.to_string())
        .unwrap_or_default();
    tracing::info!(%address, "serving");
    let realtime = state.realtime.clone();
    // On shutdown, WebSocket clients are told to reconnect elsewhere (1012) before the
    // server stops accepting and drains.
    let shutdown = async move {
        shutdown.await;
        realtime.shutdown();
    };
    Server::new_with_acceptor(acceptor)
        .idle_timeout(idle_timeout)
        .run_with_graceful_shutdown(routes(state), shutdown, Some(grace))
        .await
        .context("the server failed")
}
