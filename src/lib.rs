//! Hark: a multi-tenant chat backend. Stateless instances serve a REST API (described
//! by OpenAPI) over PostgreSQL, which holds all state and enforces the rules through
//! SQL functions and row-level security. See ARCHITECTURE.md for the map.

#![forbid(unsafe_code)]

pub mod acceptor;
pub mod api;
pub mod auth;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod edge;
pub mod error;
pub mod exports;
pub mod limits;
pub mod local_postgres;
pub mod metrics;
pub mod purge;
pub mod realtime;
pub mod schema;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tenancy;
pub mod usage;
pub mod webhooks;
