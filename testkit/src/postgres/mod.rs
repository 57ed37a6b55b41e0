//! Throwaway PostgreSQL clusters and streaming replicas for tests, benchmarks and the dev cluster.
//!
//! A [`PgCluster`] is a real `postgres` postmaster running from a private data directory on a
//! private port. It is started directly (not via `pg_ctl`, which daemonizes and would escape our
//! process tree) through [`crate::process::spawn_tied`], so it receives SIGQUIT (immediate
//! shutdown) when our process dies for any reason.
//!
//! Cleanup happens at several levels because test binaries die in many ways:
//! [`PgCluster::stop`], `Drop`, an `atexit` hook for clusters kept in statics (statics are never
//! dropped), and a sweep of temp directories left behind by processes that no longer exist
//! (SIGKILL skips every hook, but the death signal already took their postmasters down).
//!
//! By concern: `server` (start, stop, connect, databases), `options` (what a start asks for),
//! `data_dir` (initdb, base backup, settings), `binaries` (the server binaries and the user they
//! run as), `log` (the postmaster's log), `cleanup` (temp dirs, the exit hook and the sweep) and
//! `shared` (the one cluster a test binary shares).

mod binaries;
mod cleanup;
mod data_dir;
mod log;
mod options;
mod server;
mod shared;

pub use binaries::{find_bindir, server_user};
pub use options::{Durability, PgOptions};
pub use server::PgCluster;
pub use shared::shared_test_cluster;

/// The superuser created by initdb (`-U postgres`).
const SUPERUSER: &str = "postgres";
