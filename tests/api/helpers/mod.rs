//! The test harness, by concern: the PostgreSQL tests run against (`database`), test
//! settings written once (`settings`), the application in-process over real HTTP
//! (`app`), `hark serve` as a process (`process`), a cluster of a test's own
//! (`cluster`), Citus clusters (`citus`), fixtures made through the public API (`fixtures`), and a webhook
//! receiver (`receiver`).

mod app;
mod citus;
mod cluster;
mod database;
mod fixtures;
mod process;
mod receiver;
mod settings;

pub use app::{Answer, TestApp, spawn_app, spawn_app_with, spawn_on};
pub use citus::{OwnCitus, enabled as on_citus};
pub use cluster::OwnCluster;
pub use database::{RowLock, fresh_database};
pub use fixtures::{Session, claims_of, forge_token, id_of, room_with_bob, unix_now};
pub use process::{spawn_process, spawn_process_on, terminate};
pub use receiver::{Received, Receiver};
pub use settings::{PASSWORD, TEST_JWT_SECRET, TEST_OPERATOR_KEY, test_config};
