//! The region-node: the booking API over its region's PostgreSQL primary.
//!
//! It accepts writes only for events homed in its own region (the region is in every id) and runs
//! each as one short transaction on the local primary. See `shared/DESIGN.md`.

pub mod app;
pub mod auth;
pub mod batching;
pub mod booking;
pub mod cache;
pub mod config;
pub mod consistency;
pub mod error;
pub mod events;
pub mod expiry;
pub mod extract;
pub mod http;
pub mod idempotency;
pub mod machine_lease;
pub mod metrics;
pub mod payment;
pub mod reads;
pub mod replica;
pub mod tickets;
pub mod users;

pub use app::{router, serve, serve_node, Node, MIGRATOR};
pub use config::Config;
