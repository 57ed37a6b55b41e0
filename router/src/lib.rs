//! The router: works out the client's region, answers reads from its own region (falling back
//! to another region's node when the local one is down), and sends every write to its home
//! region, found in the Snowflake id, over one WAN round trip on a warm keep-alive connection.
//! It never runs SQL. See `shared/DESIGN.md`, sections 1 and 2.
//!
//! Layers, each importing only those above it: the foundations (`config`, `cidr`, `cors`,
//! `error`, `headers`, `metrics`, `trace`, `identity`: a protected request's bearer token,
//! checked before its body is read); `routing` (pure decisions); `limits` (rate limits per
//! client address); `upstream` (the forwarding client); `readiness`; `streams` (live event
//! streams relayed, one upstream stream per event); the shared `state`; `proxy` (one request
//! end to end); `http` (thin handlers and middleware); `server` (assembled at the top).

pub mod cidr;
pub mod config;
pub mod cors;
pub mod error;
pub mod headers;
pub mod http;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod readiness;
pub mod routing;
pub mod server;
pub mod state;
pub mod streams;
pub mod trace;
pub mod upstream;

pub use config::Config;
pub use server::{serve, serve_app, RouterService};
pub use state::App;
