//! What tests share, so that no test crate depends on the services it tests through another:
//! throwaway PostgreSQL clusters and streaming replicas (`postgres`), child processes that die
//! with us (`process`), services run in this process on a loopback port (`service`), a reader of
//! live streams (`sse`), and the oversell audit every test and loadgen run against a primary
//! (`audit`).

pub mod audit;
pub mod postgres;
pub mod process;
pub mod service;
pub mod sse;

pub use service::TestService;
