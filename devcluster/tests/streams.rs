//! Live streams across regions on a real two-region devcluster with WAN latency: a subscriber
//! that reconnects to another region's node with its `Last-Event-ID` is sent nothing it has,
//! nothing older than it has (that region's replica is waited for), and every change since.

use std::time::{Duration, Instant};

use devcluster::cluster::{Cluster, ClusterSpec};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use testkit::sse::Sse;

fn spec() -> ClusterSpec {
    ClusterSpec {
        regions: vec!["us-east".into(), "eu-west".into()],
        latency_scale: 1.0,
        state_dir: std::env::temp_dir().join(format!("streams-{}", std::process::id())),
        base_port: 29_000 + (std::process::id() % 300) as u16 * 20,
        rate_limit_scale: 1000.0,
        program: env!("CARGO_BIN_EXE_devcluster").into(),
        routers_per_region: 1,
    }
}

fn ga(state: &Value) -> i64 {
    state["tiers"]
        .as_array()
        .expect("tiers")
        .iter()
        .find(|t| t["name"] == "GA")
        .and_then(|t| t["available"].as_i64())
        .unwrap_or_else(|| panic!("no GA in {state}"))
}

/// Pauses replay on a replica and waits until it has really stopped.
async fn pause_replay(replica: &mut PgConnection) {
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut *replica)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state: String = sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_in_another_region_neither_repeats_nor_misses_nor_goes_back() {
    let cluster = Cluster::start(&spec()).await.expect("cluster starts");
    let http = Client::new();
    let (us, eu) = (cluster.region("us-east"), cluster.region("eu-west"));
    let demo = &cluster.demo;
    let event = demo["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["homeRegion"] == "us-east")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = demo["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["homeRegion"] == "us-east")
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let stream_at = |node_url: &str| format!("{node_url}/api/v1/events/{event}/stream");
    let book = || async {
        let answer = http
            .post(format!("{}/api/v1/booking/reserve", us.node_url))
            .bearer_auth(&token)
            .json(&json!({"eventId": event, "tickets": [{"tier": "GA", "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::CREATED);
    };
    let wait = Duration::from_secs(5);

    // eu-west streams the us-east event from its replica, and sees a booking made at home.
    let mut in_eu = Sse::open(&http, &stream_at(&eu.node_url), None).await;
    let (_, state) = in_eu.next_state(wait).await.unwrap();
    let start = ga(&state);
    book().await;
    let (seen, state) = in_eu.next_state(wait).await.unwrap();
    assert_eq!(ga(&state), start - 1);
    drop(in_eu);

    // Resumed in us-east: what the subscriber has is not sent again; the next change is.
    let mut in_us = Sse::open(&http, &stream_at(&us.node_url), Some(seen)).await;
    in_us.no_state(Duration::from_secs(1)).await;
    book().await;
    let (seen, state) = in_us.next_state(wait).await.unwrap();
    assert_eq!(ga(&state), start - 2);
    drop(in_us);

    // A change made while disconnected is sent on reconnecting in eu-west.
    book().await;
    let mut in_eu = Sse::open(&http, &stream_at(&eu.node_url), Some(seen)).await;
    let (_, state) = in_eu.next_state(wait).await.unwrap();
    assert_eq!(ga(&state), start - 3);
    drop(in_eu);

    // eu-west's replica of us-east stops replaying; a subscriber that saw the next change in
    // us-east and moves to eu-west is shown nothing older, and not that change again once the
    // replica has caught up; the change after is sent.
    let replica_url = &eu
        .replicas
        .iter()
        .find(|(shard, _, _)| shard == "us-east")
        .expect("eu-west replicates us-east")
        .2;
    let mut replica = PgConnection::connect(replica_url).await.unwrap();
    pause_replay(&mut replica).await;
    let mut in_us = Sse::open(&http, &stream_at(&us.node_url), None).await;
    // Its watcher may first show the state of just before the last booking.
    while ga(&in_us.next_state(wait).await.unwrap().1) != start - 3 {}
    book().await;
    let (seen, state) = in_us.next_state(wait).await.unwrap();
    assert_eq!(ga(&state), start - 4);
    drop(in_us);
    let mut in_eu = Sse::open(&http, &stream_at(&eu.node_url), Some(seen)).await;
    in_eu.no_state(Duration::from_secs(1)).await;
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut replica)
        .await
        .unwrap();
    in_eu.no_state(Duration::from_secs(1)).await;
    book().await;
    let (id, state) = in_eu.next_state(wait).await.unwrap();
    assert_eq!(ga(&state), start - 5);
    assert!(id.lsn > seen.lsn);
    drop(in_eu);
    cluster.stop().await;
}
