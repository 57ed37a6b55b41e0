//! In-process region-nodes over real PostgreSQL, for integration tests (zero-to-production
//! style): one shared throwaway cluster per test binary, a fresh database per node.

use std::sync::Arc;

use region_node::config::Config;
use region_node::identity::auth::Role;
use region_node::Node;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::postgres::shared_test_cluster;

/// The secret test nodes sign tokens with.
pub const TEST_JWT_SECRET: &str = "test-secret-for-integration-tests-only";

/// Settings for a node under test: quick sweeps and payments, so tests run fast.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::default();
    config.database.url = database_url.to_owned();
    config.database.max_connections = 16;
    config.auth.jwt_secret = TEST_JWT_SECRET.into();
    config.booking.payment_delay_ms = 20;
    config.booking.sweep_interval_ms = 200;
    config
}

/// A region-node serving on a loopback port, over its own fresh database.
pub struct TestNode {
    pub base_url: String,
    pub node: Arc<Node>,
    /// A separate pool onto the node's database, for setup and audit queries.
    pub db: PgPool,
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestNode {
    pub async fn start() -> anyhow::Result<TestNode> {
        TestNode::start_with(|_| {}).await
    }

    /// Starts a node with `adjust` applied to the test configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> anyhow::Result<TestNode> {
        let cluster = shared_test_cluster().await;
        let database_url = cluster.create_unique_database("node").await?;
        TestNode::start_on(&database_url, adjust).await
    }

    /// Starts a node whose primary is the existing database `database_url`.
    pub async fn start_on(
        database_url: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<TestNode> {
        TestNode::start_with_claims(database_url, adjust, Default::default()).await
    }

    pub async fn start_with_claims(
        database_url: &str,
        adjust: impl FnOnce(&mut Config),
        claims: region_node::booking::store::Claims,
    ) -> anyhow::Result<TestNode> {
        let database_url = database_url.to_owned();
        let mut config = test_config(&database_url);
        adjust(&mut config);
        let node = Node::start_with(config, claims).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(region_node::serve_node(node.clone(), listener, async {
            let _ = shutdown_rx.await;
        }));
        let db = PgPoolOptions::new()
            .max_connections(4)
            .connect(&database_url)
            .await?;
        Ok(TestNode {
            base_url,
            node,
            db,
            database_url,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// `path` under `/api/v1`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base_url)
    }

    pub fn admin_token(&self) -> String {
        let admin = self.node.ids.next().expect("mint an id for the admin");
        self.node
            .tokens
            .issue(admin, Role::Admin)
            .expect("sign an admin token")
    }

    /// Graceful stop: in-flight requests finish, the machine lease is given back.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
