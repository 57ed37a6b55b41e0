//! Live streams (`GET /events/{id}/stream`, Server-Sent Events) on a real node: the first
//! message is the current state, changes arrive within a bounded time and bursts coalesce,
//! a reconnect with `Last-Event-ID` neither repeats nor goes back (waiting for a replica that is
//! behind), bad input is a JSON error, and subscribers share one watcher per event.

mod common;

use std::time::{Duration, Instant};

use common::replica::{eventually, pause_replay, replica_conn, shard_with, wait_fresh};
use common::{Api, User};
use region_node::reads::consistency::Lsn;
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::sse::Sse;
use wire::stream::StreamId;

/// `event`'s stream on `api`'s node, resuming after `last` if given.
async fn open(api: &Api, event: &str, last: Option<StreamId>) -> Sse {
    Sse::open(
        &api.http,
        &api.node.api(&format!("/events/{event}/stream")),
        last,
    )
    .await
}

fn available(state: &Value, tier: &str) -> i64 {
    state["tiers"]
        .as_array()
        .expect("tiers")
        .iter()
        .find(|t| t["name"] == tier)
        .and_then(|t| t["available"].as_i64())
        .unwrap_or_else(|| panic!("no tier {tier} in {state}"))
}

/// A gauge or counter of the node's `/metrics`.
async fn metric(api: &Api, name: &str) -> f64 {
    let (_, text) = api.ops("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

async fn book(api: &Api, user: &User, event: &str, tier: &str) -> Value {
    let answer = api.reserve(user, event, &[(tier, 1)]).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.body
}

/// A node without a replica: the watcher reads its primary.
async fn node(adjust: impl FnOnce(&mut region_node::Config)) -> Api {
    Api::start_with(|c| {
        c.streams.interval_ms = 100;
        c.streams.keepalive_ms = 200;
        adjust(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_message_is_the_replica_s_state_and_a_lagging_replica_is_waited_for() {
    let s = shard_with(60_000, |c| c.streams.interval_ms = 100).await;
    let api = &s.api;
    let event = api.seeded_event(2, 2, 5, 600).await;
    wait_fresh(api).await;
    let mut stream = open(api, &event, None).await;
    let (first, state) = stream.next_state(Duration::from_secs(5)).await.unwrap();
    assert_eq!(state["eventId"], event);
    assert_eq!(
        state["tiers"],
        json!([{"name": "VIP", "available": 2}, {"name": "Front Row", "available": 2},
               {"name": "GA", "available": 5}])
    );
    assert_eq!(state["totalAvailable"], 9);
    assert_eq!(state["queue"], Value::Null);

    // A booking reaches the stream within a bounded time.
    let user = api.signup("Streamer").await;
    let booked = Instant::now();
    book(api, &user, &event, "GA").await;
    let (second, state) = stream.next_state(Duration::from_secs(5)).await.unwrap();
    assert!(booked.elapsed() < Duration::from_secs(3));
    assert_eq!(
        (available(&state, "GA"), state["totalAvailable"].as_i64()),
        (4, Some(8))
    );
    assert!(second.lsn >= first.lsn && second.digest != first.digest);

    // The replica stops replaying: the primary's next booking is not shown from it...
    let mut replica = replica_conn(&s).await;
    pause_replay(&mut replica).await;
    let token = book(api, &user, &event, "GA").await["consistencyToken"]
        .as_str()
        .expect("a consistency token")
        .to_owned();
    let written: Lsn = token.split_once(':').unwrap().1.parse().unwrap();
    stream.no_state(Duration::from_millis(600)).await;
    // ...and a subscriber resuming from a region that had replayed it (its id is at the write's
    // position) is sent nothing older: it waits until this replica has replayed that far.
    let ahead = StreamId::at(written.0, 1);
    let mut resumed = open(api, &event, Some(ahead)).await;
    resumed.no_state(Duration::from_secs(1)).await;
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut replica)
        .await
        .unwrap();
    let (id, state) = resumed.next_state(Duration::from_secs(5)).await.unwrap();
    assert!(id.lsn >= written.0, "{id} is behind {written}");
    assert_eq!(available(&state, "GA"), 3);
    let (_, state) = stream.next_state(Duration::from_secs(5)).await.unwrap();
    assert_eq!(available(&state, "GA"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_state_sends_only_keep_alives_past_the_request_time_limit_until_shutdown() {
    let api = node(|c| c.http.request_timeout_ms = 300).await;
    let event = api.seeded_event(1, 1, 1, 600).await;
    let mut stream = open(&api, &event, None).await;
    stream.next_state(Duration::from_secs(5)).await.unwrap();
    let keep_alives = stream.no_state(Duration::from_millis(1_500)).await;
    assert!(keep_alives >= 4, "{keep_alives} keep-alives in 1.5 s");
    // A slow request it is not: its latency is the time to its head.
    let (_, text) = api.ops("/metrics").await;
    let slow = text
        .lines()
        .find(|l| {
            l.contains("route=\"/api/v1/events/{id}/stream\"")
                && l.starts_with("ticketing_http_request_duration_seconds_sum")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .expect("the stream's latency");
    assert!(slow < 1.0, "a stream counted {slow} s long");
    // Shutdown ends open streams, so the graceful stop is not held up.
    let Api { node, .. } = api;
    tokio::time::timeout(Duration::from_secs(10), node.stop())
        .await
        .expect("the node stops with a stream open")
        .unwrap();
    while stream.next(Duration::from_secs(2)).await.is_some() {}
    assert!(stream.ended, "the stream outlived the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_bookings_is_coalesced_and_the_last_message_is_right() {
    let api = node(|c| c.streams.interval_ms = 250).await;
    let event = api.seeded_event(0, 0, 100, 600).await;
    let names: Vec<String> = (0..50).map(|n| format!("Fan {n}")).collect();
    let users = futures::future::join_all(names.iter().map(|n| api.signup(n))).await;
    let mut stream = open(&api, &event, None).await;
    let (_, state) = stream.next_state(Duration::from_secs(5)).await.unwrap();
    assert_eq!(state["totalAvailable"], 100);
    let started = Instant::now();
    futures::future::join_all(users.iter().map(|u| book(&api, u, &event, "GA"))).await;
    let burst = started.elapsed();
    let mut messages = 0;
    let mut last = state;
    while last["totalAvailable"] != 50 {
        let (_, state) = stream
            .next_state(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("stuck at {last}"));
        messages += 1;
        last = state;
    }
    stream.no_state(Duration::from_millis(600)).await;
    // One message per interval at most, plus the one that was in flight.
    let bound = burst.as_millis() as usize / 250 + 2;
    assert!(
        messages <= bound,
        "{messages} messages for a burst of {burst:?}"
    );
    assert_eq!(available(&last, "GA"), api.available(&event, "GA").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_the_latest_id_repeats_nothing_and_with_an_older_one_gets_the_news() {
    let api = node(|_| {}).await;
    let event = api.seeded_event(0, 0, 10, 600).await;
    let user = api.signup("Reconnecting").await;
    let mut stream = open(&api, &event, None).await;
    let (seen, _) = stream.next_state(Duration::from_secs(5)).await.unwrap();
    drop(stream);

    let mut resumed = open(&api, &event, Some(seen)).await;
    resumed.no_state(Duration::from_secs(1)).await;
    book(&api, &user, &event, "GA").await;
    let (news, state) = resumed.next_state(Duration::from_secs(5)).await.unwrap();
    assert_eq!(state["totalAvailable"], 9);
    drop(resumed);

    // Missed while away: sent at once.
    let mut late = open(&api, &event, Some(seen)).await;
    let (id, state) = late.next_state(Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        (id.digest, state["totalAvailable"].as_i64()),
        (news.digest, Some(9))
    );

    // An id far ahead of what this node reads: nothing until it gets there.
    let future = StreamId::at(u64::MAX >> 8, 1);
    let mut early = open(&api, &event, Some(future)).await;
    early.no_state(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_json_error_not_a_stream() {
    let api = node(|_| {}).await;
    let event = api.seeded_event(1, 1, 1, 600).await;
    let path = |id: &str| api.node.api(&format!("/events/{id}/stream"));
    for bad in [
        "nonsense",
        "12.00000000000000001",
        "1.2.3",
        "zz.0000000000000001",
    ] {
        let answer = api
            .http
            .get(path(&event))
            .header("last-event-id", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_last_event_id", "{bad}");
    }
    let unknown = api.node.node.ids.next().unwrap().to_string();
    let answer = api.get(&format!("/events/{unknown}/stream"), None).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let answer = api.get("/events/abc/stream", None).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::BAD_REQUEST, "invalid_id")
    );
    assert_eq!(metric(&api, "ticketing_stream_subscribers").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_of_an_event_share_one_watcher_which_ends_after_they_leave() {
    let api = node(|c| c.streams.idle_watcher_ms = 300).await;
    let event = api.seeded_event(0, 0, 5, 600).await;
    let mut streams = futures::future::join_all((0..200).map(|_| open(&api, &event, None))).await;
    for stream in &mut streams {
        let (_, state) = stream.next_state(Duration::from_secs(10)).await.unwrap();
        assert_eq!(state["totalAvailable"], 5);
    }
    assert_eq!(metric(&api, "ticketing_stream_subscribers").await, 200.0);
    assert_eq!(metric(&api, "ticketing_stream_watchers").await, 1.0);
    assert_eq!(api.node.node.streams.watched(), 1);
    assert!(metric(&api, "ticketing_stream_messages_total").await >= 200.0);
    drop(streams);
    // Gone subscribers are noticed at the next keep-alive; the watcher then idles out.
    eventually("the subscribers are gone", async || {
        metric(&api, "ticketing_stream_subscribers").await == 0.0
    })
    .await;
    eventually("the watcher ends", async || {
        metric(&api, "ticketing_stream_watchers").await == 0.0
    })
    .await;
    // And the next subscriber starts one again.
    let mut again = open(&api, &event, None).await;
    assert!(again.next_state(Duration::from_secs(5)).await.is_some());
    assert_eq!(metric(&api, "ticketing_stream_watchers").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_event_s_stream_carries_its_queue() {
    let api = node(|_| {}).await;
    let event = api.seeded_event(0, 0, 5, 600).await;
    let id: i64 = event.parse().unwrap();
    sqlx::query(
        "INSERT INTO event_queues (event_id, opens_at, target_active, max_admit_per_second,
                                   pass_seconds)
         VALUES ($1, now() + interval '1 hour', 100, 50, 300)",
    )
    .bind(id)
    .execute(&api.node.db)
    .await
    .unwrap();
    let mut stream = open(&api, &event, None).await;
    let (_, state) = stream.next_state(Duration::from_secs(5)).await.unwrap();
    let queue = &state["queue"];
    assert_eq!(queue["eventId"], event);
    assert_eq!(
        (&queue["open"], &queue["serving"], &queue["targetActive"]),
        (&json!(false), &json!(0), &json!(100))
    );
    sqlx::query(
        "UPDATE event_queues SET drawn_at = now(), lobby_size = 10, last_position = 10,
                                 serving = 3
         WHERE event_id = $1",
    )
    .bind(id)
    .execute(&api.node.db)
    .await
    .unwrap();
    let (_, state) = stream.next_state(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (&state["queue"]["open"], &state["queue"]["serving"]),
        (&json!(true), &json!(3))
    );
}
