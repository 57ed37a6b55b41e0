//! The one cluster every test of a test binary shares, a fresh database per test.

use super::{Durability, PgCluster, PgOptions};

/// A `Fast` cluster started once per process and shared by all tests in a
/// test binary; create one database per test with
/// [`PgCluster::create_unique_database`]. Stopped by the exit hook.
///
/// # Panics
///
/// If the cluster cannot be started (tests cannot proceed anyway); the message
/// includes the server log. A later call retries.
pub async fn shared_test_cluster() -> &'static PgCluster {
    static SHARED: tokio::sync::OnceCell<PgCluster> = tokio::sync::OnceCell::const_new();
    match SHARED
        .get_or_try_init(|| {
            PgCluster::start(PgOptions {
                durability: Durability::Fast,
                ..PgOptions::default()
            })
        })
        .await
    {
        Ok(cluster) => cluster,
        Err(e) => panic!("starting the shared test PostgreSQL cluster failed: {e:#}"),
    }
}
