//! What the router and the region-node both speak, written once: the JSON error envelope
//! (`error`), the header names they exchange (`headers`), the request span they log under
//! (`trace`, with the request-id check), bearer tokens (`token`), where an account lives and
//! what a refresh token looks like (`accounts`), live-stream message ids and the resume rule
//! (`stream`), rate limits and their `429` answer (`limits`),
//! the service bootstrap: figment configuration with a per-service prefix (`config`), tracing,
//! stop signals and the thin `main` (`service`), and the connection loop both serve with: two
//! listeners, timeouts, a cap (`server`).

pub mod accounts;
pub mod config;
pub mod error;
pub mod headers;
pub mod limits;
pub mod server;
pub mod service;
pub mod stream;
pub mod token;
pub mod trace;

pub use config::{ConfigError, ServiceConfig};
pub use error::ErrorEnvelope;
pub use service::{Service, Shutdown};
