//! The platform on one machine: throwaway PostgreSQL clusters and streaming replicas
//! (`postgres`), child processes that die with us (`process`), the simulated WAN (`wan`), the
//! loopback DNS server for region names (`dns`), in-process nodes for tests (`harness`), and the
//! `devcluster` command (`cluster`).

pub mod cluster;
pub mod dns;
pub mod harness;
pub mod postgres;
pub mod process;
pub mod wan;
