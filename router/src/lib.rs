//! The router: works out the client's region, answers reads from its own region (falling back
//! to another region's node when the local one is down), and sends every write to its home
//! region, found in the Snowflake id, over one WAN round trip on a warm keep-alive connection.
//! It never runs SQL. See `shared/DESIGN.md`, sections 1 and 2.

pub mod app;
pub mod client_region;
pub mod config;
pub mod discovery;
pub mod error;
pub mod forward;
pub mod headers;
pub mod http;
pub mod metrics;
pub mod ops;
pub mod proxy;
pub mod regions;
pub mod routing;
pub mod trace;

pub use app::{router, serve, serve_app, App, RouterService};
pub use config::Config;
