//! The platform on one machine: throwaway PostgreSQL clusters (`postgres`), child processes that
//! die with us (`process`), in-process nodes for tests (`harness`), and the `devcluster` command
//! (`cluster`).

pub mod cluster;
pub mod harness;
pub mod postgres;
pub mod process;
