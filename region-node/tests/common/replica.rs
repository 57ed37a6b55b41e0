//! A node whose own shard has a primary and a local streaming replica (`pg_basebackup -R`), and
//! what tests of replica reads do with it: pause replay, wait until the node sees it fresh.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use region_node::Config;
use sqlx::{Connection, PgConnection};
use testkit::postgres::{Durability, PgCluster, PgOptions};

use crate::common::node::TestNode;
use crate::common::Api;

pub struct Shard {
    pub primary: PgCluster,
    pub replica: PgCluster,
    pub api: Api,
}

/// A node whose own shard has a primary and a local streaming replica.
pub async fn shard(max_lag_ms: u64) -> Shard {
    shard_with(max_lag_ms, |_| {}).await
}

/// As `shard`, with `adjust` applied to the node's configuration last.
pub async fn shard_with(max_lag_ms: u64, adjust: impl FnOnce(&mut Config)) -> Shard {
    let options = || PgOptions {
        durability: Durability::Fast,
        max_connections: 60,
        shared_buffers: "32MB".into(),
        ..PgOptions::default()
    };
    let primary = PgCluster::start(options()).await.unwrap();
    let url = primary.create_database("shard").await.unwrap();
    let replica = PgCluster::start(PgOptions {
        replica_of: Some(SocketAddr::from(([127, 0, 0, 1], primary.port()))),
        ..options()
    })
    .await
    .unwrap();
    let replica_url = replica.url("shard");
    let node = TestNode::start_on(&url, |c| {
        c.reads.shards = vec![region_node::config::ShardConfig {
            name: "us-east".into(),
            replica: Some(replica_url),
            primary: None,
        }];
        c.reads.max_replica_lag_ms = max_lag_ms;
        c.reads.lag_poll_ms = 50;
        c.reads.cache_ttl_ms = 60_000;
        adjust(c);
    })
    .await
    .unwrap();
    Shard {
        primary,
        replica,
        api: Api::from(node),
    }
}

pub async fn replica_conn(shard: &Shard) -> PgConnection {
    PgConnection::connect(&shard.replica.url("shard"))
        .await
        .unwrap()
}

/// Pauses replay and waits until it has really stopped (a pause is only requested at first).
pub async fn pause_replay(replica: &mut PgConnection) {
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut *replica)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (state,): (String,) = sqlx::query_as("SELECT pg_get_wal_replay_pause_state()")
            .fetch_one(&mut *replica)
            .await
            .unwrap();
        if state == "paused" {
            return;
        }
        assert!(Instant::now() < deadline, "replay never paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the node sees its replica as fresh (it lags while replaying the migrations and
/// seed data), so that reads go to it.
pub async fn wait_fresh(api: &Api) {
    eventually("the replica is fresh", async || {
        let shards = api.cluster().await["shards"].clone();
        shards[0]["lagging"] == false && shards[0]["lagBytes"] == 0
    })
    .await;
}

/// Waits (bounded) until `check` holds.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
