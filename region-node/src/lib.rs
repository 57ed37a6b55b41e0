//! The region-node: the booking API over its region's PostgreSQL primary.
//!
//! It accepts writes only for events homed in its own region (the region is in every id) and runs
//! each as one short transaction on the local primary; it answers reads from this region's
//! replicas of every shard, through a cache. See `shared/DESIGN.md`.
//!
//! Layout, by concern: `booking/` (reserve with group commit, confirm, cancel; all booking SQL in
//! `booking::store`), `catalog/` (events, tiers, tickets, sale terms), `reads/` (replica readers
//! and lag, cache, consistency tokens, answers), `identity/` (tokens, users, machine lease),
//! `ops/` (metrics, sweeper, health), `streams/` (live streams of an event), `http/` (thin
//! handlers), `limits` (rate limits per user
//! and per event), `queue/` (the waiting room), `coalesce` (group commit's batching queue, shared
//! by booking and queue). `state` is the shared state; `server` assembles it all.

pub mod booking;
pub mod catalog;
pub mod coalesce;
pub mod config;
pub mod error;
pub mod http;
pub mod identity;
pub mod ids;
pub mod input;
pub mod limits;
pub mod ops;
pub mod queue;
pub mod reads;
pub mod server;
pub mod state;
pub mod streams;

pub use config::Config;
pub use server::{ops_router, router, serve, serve_node};
pub use state::{Node, MIGRATOR};

/// The region-node as a deployable service (`wire::service::main` runs it).
pub struct NodeService;

impl wire::Service for NodeService {
    type Config = Config;
    const NAME: &'static str = "region-node";

    fn serve(
        config: Config,
        listeners: wire::server::Listeners,
        shutdown: wire::Shutdown,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send {
        serve(config, listeners, shutdown)
    }
}
