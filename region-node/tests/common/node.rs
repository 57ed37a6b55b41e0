//! In-process region-nodes over real PostgreSQL (zero-to-production style): one shared
//! throwaway cluster per test binary, a fresh database per node, served through testkit.

use std::sync::Arc;

use region_node::booking::store::Claims;
use region_node::config::Config;
use region_node::identity::auth::Role;
use region_node::Node;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use testkit::postgres::shared_test_cluster;
use testkit::TestService;

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
    // Tests send bursts no person would; the limits' own tests turn them on.
    config.limits = config.limits.scaled(0.0);
    config
}

/// A region-node serving on a loopback port, over its own fresh database.
pub struct TestNode {
    pub base_url: String,
    /// The operations listener: `/metrics`, `/cluster`.
    pub ops_url: String,
    /// The node itself, for tests to inspect (its ids, cache, configuration).
    pub node: Arc<Node>,
    /// A separate pool onto the node's database, for setup and audit queries.
    pub db: PgPool,
    pub database_url: String,
    service: TestService,
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
        TestNode::launch(database_url, adjust, Claims::default()).await
    }

    /// A node whose claims take no row locks: the race tests' negative control.
    pub async fn start_without_row_locks(
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<TestNode> {
        let cluster = shared_test_cluster().await;
        let database_url = cluster.create_unique_database("node").await?;
        TestNode::launch(&database_url, adjust, Claims::without_row_locks()).await
    }

    async fn launch(
        database_url: &str,
        adjust: impl FnOnce(&mut Config),
        claims: Claims,
    ) -> anyhow::Result<TestNode> {
        let database_url = database_url.to_owned();
        let mut config = test_config(&database_url);
        adjust(&mut config);
        let node = Node::start_with(config, claims).await?;
        let serving = node.clone();
        let service = TestService::start(move |listeners, shutdown| {
            region_node::serve_node(serving, listeners, shutdown)
        })
        .await?;
        let db = PgPoolOptions::new()
            .max_connections(4)
            .connect(&database_url)
            .await?;
        Ok(TestNode {
            base_url: service.base_url(),
            ops_url: service.ops_url(),
            node,
            db,
            database_url,
            service,
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
    pub async fn stop(self) -> anyhow::Result<()> {
        self.service.stop().await
    }
}
