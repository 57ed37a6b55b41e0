//! Streaming replicas made with `pg_basebackup -R` replay the primary continuously, and a paused
//! replay holds them back (the lag path the node must handle).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use testkit::postgres::{Durability, PgCluster, PgOptions};

async fn wait_for_rows(replica: &mut PgConnection, want: i64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM seats")
            .fetch_one(&mut *replica)
            .await
            .unwrap_or((-1,));
        if n == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_replica_streams_the_primary_and_can_be_held_back() {
    let fast = || PgOptions {
        durability: Durability::Fast,
        max_connections: 20,
        shared_buffers: "16MB".into(),
        ..PgOptions::default()
    };
    let mut primary = PgCluster::start(fast()).await.unwrap();
    let url = primary.create_database("shard").await.unwrap();
    let mut writer = PgConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE seats (id int PRIMARY KEY)")
        .execute(&mut writer)
        .await
        .unwrap();

    let source: SocketAddr = ([127, 0, 0, 1], primary.port()).into();
    let mut replica = PgCluster::start(PgOptions {
        replica_of: Some(source),
        ..fast()
    })
    .await
    .unwrap();
    let mut reader = PgConnection::connect(&replica.url("shard")).await.unwrap();
    let (in_recovery,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert!(in_recovery, "a replica is a standby");

    sqlx::query("INSERT INTO seats SELECT generate_series(1, 100)")
        .execute(&mut writer)
        .await
        .unwrap();
    assert!(wait_for_rows(&mut reader, 100).await, "replica caught up");
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut reader)
        .await
        .unwrap();
    sqlx::query("INSERT INTO seats SELECT generate_series(101, 150)")
        .execute(&mut writer)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (held_back,): (i64,) = sqlx::query_as("SELECT count(*) FROM seats")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(held_back, 100, "paused replay shows the old state");
    let (behind,): (bool,) =
        sqlx::query_as("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()")
            .fetch_one(&mut reader)
            .await
            .unwrap();
    assert!(behind, "received but not replayed");

    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut reader)
        .await
        .unwrap();
    assert!(
        wait_for_rows(&mut reader, 150).await,
        "replica caught up after resume"
    );
    reader.close().await.ok();
    writer.close().await.ok();
    replica.stop().await;
    primary.stop().await;
}
