//! Hark's API tests: one binary, one module per feature, every test against a real
//! PostgreSQL and the application over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod api_keys;
mod auth;
mod citus;
mod erasure;
mod exports;
mod feed;
mod fuzz;
mod health;
mod helpers;
mod isolation;
mod limits;
mod matrix;
mod members;
mod mentions;
mod messages;
mod moderation;
mod neighbours;
mod online;
mod openapi;
mod operator;
mod pgbouncer;
mod pins;
mod pooler;
mod quotas;
mod realtime;
mod retention;
mod revocation;
mod rooms;
mod row_level_security;
mod search;
mod secure_defaults;
mod server_side;
mod soak;
mod tenants;
mod threads;
mod tls;
mod traces;
mod users;
mod webhooks;
mod ws;
