//! Running the node: its Prometheus metrics (`metrics`), the expiry sweeper (`sweeper`), and
//! what `/readyz`, `/cluster` and `/metrics` report (`health`).

pub mod health;
pub mod metrics;
pub mod sweeper;
