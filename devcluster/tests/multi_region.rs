//! Multi-region behaviour on a real three-region devcluster with WAN latency switched on
//! (DESIGN's round trips: us-east<->eu-west 76 ms, us-east<->ap-southeast 222 ms,
//! eu-west<->ap-southeast 160 ms). One cluster for the whole file: it takes seconds to start.

use std::time::{Duration, Instant};

use devcluster::cluster::{Cluster, ClusterSpec};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

fn spec() -> ClusterSpec {
    ClusterSpec {
        regions: vec!["us-east".into(), "eu-west".into(), "ap-southeast".into()],
        latency_scale: 1.0,
        state_dir: std::env::temp_dir().join(format!("multi-region-{}", std::process::id())),
        base_port: 21_000 + (std::process::id() % 400) as u16 * 20,
        program: env!("CARGO_BIN_EXE_devcluster").into(),
    }
}

fn demo_event(cluster: &Cluster, home: &str) -> String {
    cluster.demo["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["homeRegion"] == home)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn demo_user(cluster: &Cluster, home: &str) -> (String, String) {
    let user = cluster.demo["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["homeRegion"] == home)
        .unwrap();
    (
        user["id"].as_str().unwrap().to_owned(),
        user["token"].as_str().unwrap().to_owned(),
    )
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_regions_read_locally_write_at_home_and_survive_a_dark_region() {
    let cluster = Cluster::start(&spec()).await.expect("cluster starts");
    let http = Client::new();
    let us_event = demo_event(&cluster, "us-east");
    let ap = cluster.region("ap-southeast");
    let us = cluster.region("us-east");

    // Reads of a us-east event in ap-southeast are answered there, from its replica: far
    // quicker than the 222 ms round trip to us-east.
    let path = format!("{}/api/v1/events/{us_event}", ap.node_url);
    let mut timings = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let answer = http.get(&path).send().await.unwrap();
        timings.push(started.elapsed());
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()["x-served-by"], "ap-southeast/node-1");
        let source = answer.headers()["x-read-source"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            source == "us-east=replica" || source == "us-east=primary",
            "{source}"
        );
    }
    timings.sort();
    assert!(
        timings[2] < Duration::from_millis(100),
        "median local read {:?} suggests a WAN hop",
        timings[2]
    );

    // A write sent straight to the wrong region's node: 421, nothing changes anywhere.
    let (_, ap_token) = demo_user(&cluster, "ap-southeast");
    let held_before = count(
        &us.primary_url,
        "SELECT count(*) FROM tickets WHERE status <> 'available'",
    )
    .await;
    let wrong = http
        .post(format!("{}/api/v1/booking/reserve", ap.node_url))
        .bearer_auth(&ap_token)
        .json(&json!({"eventId": us_event, "tickets": [{"tier": "GA", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(
        count(
            &us.primary_url,
            "SELECT count(*) FROM tickets WHERE status <> 'available'"
        )
        .await,
        held_before
    );
    assert_eq!(
        count(&ap.primary_url, "SELECT count(*) FROM bookings").await,
        0
    );

    // Read-your-writes: a booking made at home in us-east by an ap-southeast user is visible in
    // ap-southeast with its token, every time.
    let (ap_user, _) = demo_user(&cluster, "ap-southeast");
    for round in 0..10 {
        let held = http
            .post(format!("{}/api/v1/booking/reserve", us.node_url))
            .bearer_auth(&ap_token)
            .json(&json!({"eventId": us_event, "tickets": [{"tier": "GA", "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(held.status(), StatusCode::CREATED);
        let token = held.headers()["x-consistency-token"]
            .to_str()
            .unwrap()
            .to_owned();
        let booking: Value = held.json().await.unwrap();
        let mine: Value = http
            .get(format!("{}/api/v1/booking/user/{ap_user}", ap.node_url))
            .bearer_auth(&ap_token)
            .header("x-consistency-token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            mine.as_array()
                .unwrap()
                .iter()
                .any(|b| b["bookingId"] == booking["bookingId"]),
            "round {round}: the booking must be visible with its token"
        );
    }

    // us-east goes dark (every link into or out of it black-holes).
    cluster.cut_region("us-east");
    let eu = cluster.region("eu-west");
    let eu_event = demo_event(&cluster, "eu-west");
    let (_, eu_token) = demo_user(&cluster, "eu-west");
    // Writes for another region's events are unaffected.
    let eu_write = http
        .post(format!("{}/api/v1/booking/reserve", eu.node_url))
        .bearer_auth(&eu_token)
        .json(&json!({"eventId": eu_event, "tickets": [{"tier": "GA", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(eu_write.status(), StatusCode::CREATED);
    // Reads of us-east's events still succeed in the other regions, from their replicas, and
    // once the lag bound passes they say they are stale.
    let availability = format!("/api/v1/tickets?eventId={us_event}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = http
            .get(format!("{}{availability}", ap.node_url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::OK,
            "reads survive a dark home region"
        );
        if answer.headers().get("x-stale").is_some() {
            assert_eq!(answer.headers()["x-read-source"], "us-east=replica");
            break;
        }
        assert!(Instant::now() < deadline, "never marked stale");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let eu_read = http
        .get(format!("{}{availability}", eu.node_url))
        .send()
        .await
        .unwrap();
    assert_eq!(eu_read.status(), StatusCode::OK);

    // Recovery: links back, replicas catch up, nothing lost or doubled.
    cluster.restore_region("us-east");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = http
            .get(format!("{}{availability}", ap.node_url))
            .send()
            .await
            .unwrap();
        if answer.headers().get("x-stale").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "still stale after recovery");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let audit = region_node::audit::audit_event(
        &sqlx::PgPool::connect(&us.primary_url).await.unwrap(),
        us_event.parse().unwrap(),
    )
    .await
    .unwrap();
    assert!(audit.is_clean(), "{:?}", audit.violations);
    assert_eq!(
        count(&us.primary_url, "SELECT count(*) FROM bookings").await,
        10,
        "ten bookings, none lost or doubled"
    );
    cluster.stop().await;
}
