//! Running the node: its Prometheus metrics (`metrics`) and the loop keeping the waiting
//! rooms' gauges (`queue_metrics`), the expiry sweeper (`sweeper`), and what `/readyz`,
//! `/cluster` and `/metrics` report (`health`).

pub mod health;
pub mod metrics;
pub mod queue_metrics;
pub mod sweeper;
