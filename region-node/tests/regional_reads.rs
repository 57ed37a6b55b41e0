//! Reads from this region's streaming replica, through the cache, with read-your-writes by
//! consistency token and lag handling — on a real primary and `pg_basebackup -R` replica.

mod common;

use common::replica::{eventually, pause_replay, replica_conn, shard, wait_fresh};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_come_from_the_replica_and_the_cache_loads_each_key_once() {
    let s = shard(2_000).await;
    let api = &s.api;
    let event = api.seeded_event(10, 10, 10, 600).await;
    wait_fresh(api).await;
    let path = format!("/events/{event}");
    let first = api.get(&path, None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.headers["x-read-source"], "us-east=replica");
    assert_eq!(first.headers["x-cache"], "miss");
    let answer = api.get(&path, None).await;
    assert_eq!(answer.headers["x-cache"], "hit");
    assert!(answer.headers.contains_key("x-data-age-ms"));

    // 50 concurrent readers of a key nobody has read: one database read.
    let availability = format!("/tickets?eventId={event}");
    let misses_before = api.node.node.cache.misses();
    let answers = futures::future::join_all((0..50).map(|_| api.get(&availability, None))).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    assert_eq!(api.node.node.cache.misses() - misses_before, 1);
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.headers["x-cache"] == "miss")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_reads_its_own_write_even_with_replay_paused() {
    let s = shard(60_000).await;
    let api = &s.api;
    // One reader books twenty times: room for that under the per-user cap.
    let event = api
        .seeded_event_with(30, 0, 0, 600, json!({ "maxTicketsPerUser": 30 }))
        .await;
    let user = api.signup("reader").await;
    let availability = format!("/tickets?eventId={event}");
    wait_fresh(api).await;

    let mut replica = replica_conn(&s).await;
    pause_replay(&mut replica).await;
    for round in 0..20 {
        let held = api.reserve(&user, &event, &[("VIP", 1)]).await;
        assert_eq!(held.status, StatusCode::CREATED);
        let token = held.headers["x-consistency-token"]
            .to_str()
            .unwrap()
            .to_owned();
        let booking = held.body["bookingId"].as_str().unwrap();

        let mine = api
            .send(
                reqwest::Method::GET,
                &format!("/booking/user/{}", user.id),
                Some(&user.token),
                None,
                None,
            )
            .await;
        // Without the token: the paused replica has not seen this round's booking.
        assert!(
            !mine
                .body
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["bookingId"] == booking),
            "round {round}: the paused replica cannot know the booking"
        );
        let http = reqwest::Client::new();
        let with_token = http
            .get(api.node.api(&format!("/booking/user/{}", user.id)))
            .bearer_auth(&user.token)
            .header("x-consistency-token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(with_token.headers()["x-read-source"], "us-east=primary");
        let list: serde_json::Value = with_token.json().await.unwrap();
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .any(|b| b["bookingId"] == booking),
            "round {round}: the token must show the booking"
        );
        let fresh: serde_json::Value = http
            .get(api.node.api(&availability))
            .header("x-consistency-token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(fresh["totalAvailable"], 30 - (round + 1));
    }
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut replica)
        .await
        .unwrap();
    // Once replayed, the same token is served by the replica again.
    let held = api.reserve(&user, &event, &[("VIP", 1)]).await;
    let token = held.headers["x-consistency-token"]
        .to_str()
        .unwrap()
        .to_owned();
    eventually("the replica replays the token", async || {
        let answer = reqwest::Client::new()
            .get(api.node.api(&format!("/booking/user/{}", user.id)))
            .bearer_auth(&user.token)
            .header("x-consistency-token", &token)
            .send()
            .await
            .unwrap();
        answer.headers()["x-read-source"] == "us-east=replica"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_is_read_around_and_readyz_says_degraded() {
    let s = shard(300).await;
    let api = &s.api;
    let event = api.seeded_event(10, 0, 0, 600).await;
    let user = api.signup("lagged").await;
    wait_fresh(api).await;
    let mut replica = replica_conn(&s).await;
    pause_replay(&mut replica).await;
    // Writes the replica cannot replay: its lag now grows past the bound.
    api.reserve(&user, &event, &[("VIP", 1)]).await;
    let readyz = format!("{}/readyz", api.node.base_url);
    eventually("readyz reports degraded", async || {
        let body: serde_json::Value = reqwest::get(&readyz).await.unwrap().json().await.unwrap();
        body["status"] == "degraded"
    })
    .await;
    let body: serde_json::Value = reqwest::get(&readyz).await.unwrap().json().await.unwrap();
    let shard = &body["shards"][0];
    assert_eq!(shard["lagging"], true);
    assert!(shard["lagMs"].as_u64().unwrap() > 300, "{shard}");
    assert!(shard["lagBytes"].as_u64().unwrap() > 0, "{shard}");
    let answer = api.get(&format!("/tickets?eventId={event}"), None).await;
    assert_eq!(answer.headers["x-read-source"], "us-east=primary");
    assert_eq!(answer.body["totalAvailable"], 9);

    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut replica)
        .await
        .unwrap();
    eventually("readyz ready again", async || {
        let body: serde_json::Value = reqwest::get(&readyz).await.unwrap().json().await.unwrap();
        body["status"] == "ready"
    })
    .await;
    let cluster = api.cluster().await;
    assert_eq!(cluster["shards"][0]["shard"], "us-east");
    assert!(cluster["cache"]["hits"].is_u64());
    drop(s.primary);
}
