//! When upstreams fail: writes answer a fast 503 and never go elsewhere, broken connections are
//! retried with the same key, reads fall back to another region, and connections are reused.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn reserve_in(region: u8) -> serde_json::Value {
    json!({"eventId": id_in(region).to_string(), "tickets": [{"tier": "GA", "quantity": 1}]})
}

/// A write homed in eu-west when eu-west's router is at `url`: 503 within 2 s (and not before
/// `at_least`, which shows which mechanism gave up), with `Retry-After`, and no other upstream
/// ever sees it.
async fn assert_home_unreachable(url: String, at_least: Duration) {
    let fakes = Fakes::start().await;
    let mut config = fakes.config();
    config.regions[1].router = url;
    let router = RouterUnderTest::start(config).await;
    for _ in 0..2 {
        let started = Instant::now();
        let response = client()
            .post(router.url("/api/v1/booking/reserve"))
            .json(&reserve_in(2))
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(response.status(), 503);
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert!(took >= at_least, "took {took:?}");
        assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
        assert_eq!(
            header(&response, "x-home-region").as_deref(),
            Some("eu-west")
        );
        assert!(header(&response, "idempotency-key").is_some());
        let body = json_of(response).await;
        assert_eq!(body["error"]["code"], "home_region_unreachable", "{body}");
        assert_eq!(body["error"]["status"], 503);
    }
    assert!(
        fakes.all_api_writes().is_empty(),
        "a write went elsewhere: {:?}",
        fakes.all_api_writes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_region_refusing_connections_gives_a_fast_503() {
    assert_home_unreachable(refused_url().await, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_region_black_hole_that_accepts_and_never_answers_gives_503_within_2s() {
    // Gives up when the liveness probe (sent at 1.05 s) goes unanswered for 0.65 s.
    assert_home_unreachable(silent_url().await, Duration::from_millis(1_600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_region_black_hole_that_never_accepts_gives_503_within_2s() {
    let (url, _guard) = never_accepting_url().await;
    // Gives up at the connect timeout (750 ms), which leaves room for a 250 ms WAN round trip.
    assert_home_unreachable(url, Duration::from_millis(700)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_home_that_is_down_is_503_too_never_another_region() {
    let fakes = Fakes::start().await;
    let mut config = fakes.config();
    config.regions[0].node = refused_url().await;
    let router = RouterUnderTest::start(config).await;
    let response = client()
        .post(router.url("/api/v1/booking/reserve"))
        .json(&reserve_in(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        json_of(response).await["error"]["code"],
        "home_region_unreachable"
    );
    assert!(fakes.all_api_writes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_connection_is_retried_with_the_same_key() {
    let fakes = Fakes::start().await;
    let mut options = FakeOptions::new("eu-west/node-1");
    options.drop_first = 1;
    let flaky = Fake::start_with(options).await;
    let mut config = fakes.config();
    config.regions[1].router = flaky.url();
    let router = RouterUnderTest::start(config).await;

    let response = client()
        .post(router.url("/api/v1/booking/reserve"))
        .json(&reserve_in(2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let returned_key = header(&response, "idempotency-key").unwrap();
    let seen = flaky.api_writes();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].dropped && !seen[1].dropped);
    assert_eq!(seen[0].header("idempotency-key").unwrap(), returned_key);
    assert_eq!(seen[1].header("idempotency-key").unwrap(), returned_key);

    // The client's own key is the one re-sent.
    let mut options = FakeOptions::new("eu-west/node-1");
    options.drop_first = 2;
    let flakier = Fake::start_with(options).await;
    let mut config = fakes.config();
    config.regions[1].router = flakier.url();
    let router = RouterUnderTest::start(config).await;
    let response = client()
        .post(router.url("/api/v1/booking/reserve"))
        .header("idempotency-key", "order-7")
        .json(&reserve_in(2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let keys: Vec<_> = flakier
        .api_writes()
        .iter()
        .map(|s| s.header("idempotency-key").unwrap())
        .collect();
    assert_eq!(keys, ["order-7", "order-7", "order-7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded() {
    let fakes = Fakes::start().await;
    let mut options = FakeOptions::new("eu-west/node-1");
    options.drop_first = 100;
    let broken = Fake::start_with(options).await;
    let mut config = fakes.config();
    config.regions[1].router = broken.url();
    config.upstream.retries = 1;
    let router = RouterUnderTest::start(config).await;
    let response = client()
        .post(router.url("/api/v1/booking/reserve"))
        .json(&reserve_in(2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        json_of(response).await["error"]["code"],
        "home_region_unreachable"
    );
    assert_eq!(broken.api_writes().len(), 2, "one try and one retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alive_but_slow_home_region_gives_504() {
    let fakes = Fakes::start().await;
    let mut options = FakeOptions::new("eu-west/node-1");
    options.api_delay = Duration::from_secs(5);
    let slow = Fake::start_with(options).await;
    let mut config = fakes.config();
    config.regions[1].router = slow.url();
    config.timeouts.request_ms = 2_500;
    let router = RouterUnderTest::start(config).await;
    let started = Instant::now();
    let response = client()
        .post(router.url("/api/v1/booking/reserve"))
        .json(&reserve_in(2))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 504);
    assert_eq!(json_of(response).await["error"]["code"], "upstream_timeout");
    // It answered the liveness probe, so the router waited out the request timeout.
    assert!(took >= Duration::from_millis(2_400), "took {took:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(slow.seen().iter().any(|s| s.uri == "/healthz"));
    assert_eq!(slow.api_writes().len(), 1, "never re-sent after it arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fall_back_to_another_region_when_the_local_node_is_down() {
    let fakes = Fakes::start().await;
    let mut config = fakes.config();
    config.regions[0].node = refused_url().await;
    let router = RouterUnderTest::start(config.clone()).await;
    for _ in 0..3 {
        let response = client()
            .get(router.url("/api/v1/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-read-fallback").as_deref(),
            Some("us-east -> eu-west")
        );
        assert_eq!(header(&response, "x-served-by").unwrap(), "eu-west/node-1");
        let timing = header(&response, "server-timing").unwrap();
        assert!(timing.contains(r#"upstream;desc="eu-west""#), "{timing}");
    }
    assert_eq!(fakes.nodes["eu-west"].api().len(), 3);

    // The configured preference order decides where, and black holes are skipped within ~2 s.
    config.regions[0].fallback_order = Some(vec!["ap-southeast".into(), "eu-west".into()]);
    config.regions[0].node = silent_url().await;
    let router = RouterUnderTest::start(config).await;
    let started = Instant::now();
    let response = client()
        .get(router.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        header(&response, "x-read-fallback").as_deref(),
        Some("us-east -> ap-southeast")
    );
    // Meanwhile the black hole is remembered: the next read does not wait for it.
    let started = Instant::now();
    let response = client()
        .get(router.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(fakes.nodes["ap-southeast"].api().len(), 2);

    // Every node down: a JSON 503.
    let dead = refused_url().await;
    let router = RouterUnderTest::start(config_with(|_| (dead.clone(), dead.clone()))).await;
    let response = client()
        .get(router.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(header(&response, "retry-after").is_some());
    assert_eq!(
        json_of(response).await["error"]["code"],
        "region_unreachable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_error_is_an_answer_not_a_reason_to_fall_back() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let response = client()
        .get(router.url("/api/v1/missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(header(&response, "x-read-fallback").is_none());
    assert!(fakes.nodes["eu-west"].api().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_writes_to_a_peer_reuse_one_connection() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let client = client();
    for _ in 0..25 {
        let response = client
            .post(router.url("/api/v1/booking/reserve"))
            .json(&reserve_in(3))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let peer = &fakes.routers["ap-southeast"];
    assert_eq!(peer.api_writes().len(), 25);
    assert_eq!(
        peer.connections(),
        1,
        "one keep-alive connection for all writes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_opens_the_connection_before_the_first_write() {
    let fakes = Fakes::start().await;
    let mut config = fakes.config();
    config.upstream.warm_interval_ms = 60_000;
    config.upstream.warm_connections = 3;
    let router = RouterUnderTest::start(config).await;
    let peer = &fakes.routers["eu-west"];
    let deadline = Instant::now() + Duration::from_secs(3);
    while peer.connections() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        peer.connections(),
        3,
        "one warm connection per warm_connections"
    );
    // Give the warm-up answer time to return its connection to the pool.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        let response = client()
            .post(router.url("/api/v1/booking/reserve"))
            .json(&reserve_in(2))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        peer.connections(),
        3,
        "the writes used the warm connections"
    );
}
