//! Rate limits per client address at the router: each budget trips with a JSON `429`, its
//! `Retry-After` and `RateLimit` fields, and refills after its window; a sign-up bot gets its
//! burst and nothing more; streams and the waiting room keep their own budgets; only trusted
//! proxies may name the client address. Small limits and short windows, so no long sleeps.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use router::config::LimitsConfig;
use serde_json::{json, Value};
use wire::limits::Rate;

/// So slow that nothing refills during a test.
const NO_REFILL: f64 = 0.001;

async fn router_with(adjust: impl FnOnce(&mut router::Config)) -> (Fakes, RouterUnderTest) {
    let fakes = Fakes::start().await;
    let mut config = fakes.config();
    adjust(&mut config);
    let router = RouterUnderTest::start(config).await;
    (fakes, router)
}

/// A sign-up whose email is homed in us-east, the fake node whose writes the tests count.
fn sign_up_body(local: &str) -> Value {
    let ids: Vec<u8> = REGIONS.iter().map(|(_, id)| *id).collect();
    let (_, us_east) = REGIONS.iter().find(|(r, _)| *r == "us-east").unwrap();
    let email = wire::accounts::email_homed_in(local, "example.com", *us_east, &ids).unwrap();
    json!({"name": local, "email": email, "password": "long enough"})
}

/// Checks a 429 answer: JSON envelope, `Retry-After`, the draft's two fields; its policy.
async fn assert_limited(response: reqwest::Response, policy: &str) -> Value {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = header(&response, "retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let policy_field = header(&response, "ratelimit-policy").unwrap();
    assert!(
        policy_field.starts_with(&format!("\"{policy}\";q=")),
        "{policy_field}"
    );
    assert_eq!(
        header(&response, "ratelimit").unwrap(),
        format!("\"{policy}\";r=0;t={retry_after}")
    );
    assert_eq!(
        header(&response, "content-type").unwrap(),
        "application/json"
    );
    let body = json_of(response).await;
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["error"]["status"], 429);
    assert_eq!(body["error"]["policy"], policy);
    assert_eq!(body["error"]["retryAfterSeconds"], retry_after);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_limit_trips_with_a_429_and_refills() {
    // 2 a second, 3 at once: the 4th request is refused, and half a second later one passes.
    let (fakes, router) = router_with(|c| c.limits.per_address = Rate::new(2.0, 3)).await;
    let client = client();
    let events = router.url("/api/v1/events");
    for _ in 0..3 {
        assert_eq!(client.get(&events).send().await.unwrap().status(), 200);
    }
    let refused = client.get(&events).send().await.unwrap();
    let ids = (
        header(&refused, "x-request-id"),
        header(&refused, "x-served-by"),
    );
    let body = assert_limited(refused, "per_address").await;
    assert_eq!(
        body["error"]["message"],
        "too many requests: the per_address limit allows 3 per 2 s; retry in 1 s"
    );
    // A refused request is answered by the router itself, stamped like its other answers,
    // and never forwarded.
    assert!(ids.0.is_some());
    assert_eq!(ids.1.as_deref(), Some("us-east/router-test"));
    assert_eq!(fakes.nodes["us-east"].api().len(), 3);
    // Operations endpoints spend nothing and are never refused.
    for path in ["/healthz", "/readyz"] {
        let response = client.get(router.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(client.get(&events).send().await.unwrap().status(), 200);
    assert_limited(client.get(&events).send().await.unwrap(), "per_address").await;
    assert_eq!(fakes.nodes["us-east"].api().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_of_a_thousand_sign_ups_from_one_address_gets_only_the_burst() {
    let (fakes, router) = router_with(|c| {
        c.limits.per_address = Rate::new(10_000.0, 10_000);
        c.limits.sign_ups = Rate::new(NO_REFILL, 5);
    })
    .await;
    let client = client();
    let statuses: Vec<u16> = futures::stream::iter(0..1_000)
        .map(|i| {
            let request = client
                .post(router.url("/api/v1/users"))
                .json(&sign_up_body(&format!("bot{i}")));
            async move { request.send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let created = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((created, refused), (5, 995), "{statuses:?}");
    assert_eq!(fakes.nodes["us-east"].api_writes().len(), 5);
    // The same address still browses: sign-ups have a budget of their own.
    let read = client
        .get(router.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let refused = client
        .post(router.url("/api/v1/users"))
        .json(&sign_up_body("one-more"))
        .send()
        .await
        .unwrap();
    assert_limited(refused, "sign_ups").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_up_limit_refills_after_its_window() {
    let (fakes, router) = router_with(|c| c.limits.sign_ups = Rate::new(2.0, 2)).await;
    let client = client();
    let sign_up = || {
        client
            .post(router.url("/api/v1/users"))
            .json(&sign_up_body("ann"))
            .send()
    };
    assert_eq!(sign_up().await.unwrap().status(), 200);
    assert_eq!(sign_up().await.unwrap().status(), 200);
    assert_limited(sign_up().await.unwrap(), "sign_ups").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sign_up().await.unwrap().status(), 200);
    assert_eq!(fakes.nodes["us-east"].api_writes().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_the_waiting_room_are_not_starved_by_the_generic_budget() {
    let (fakes, router) = router_with(|c| {
        c.limits = LimitsConfig {
            per_address: Rate::new(NO_REFILL, 2),
            streams: Rate::new(NO_REFILL, 2),
            queue: Rate::new(NO_REFILL, 1),
            ..LimitsConfig::default()
        }
    })
    .await;
    let client = client();
    let event = id_in(1);
    for _ in 0..2 {
        let response = client
            .get(router.url("/api/v1/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let refused = client
        .get(router.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_limited(refused, "per_address").await;

    // The generic budget is spent; the stream and the queue still answer.
    let stream = router.url(&format!("/api/v1/events/{event}/stream"));
    for _ in 0..2 {
        let mut response = client.get(&stream).send().await.unwrap();
        assert_eq!(response.status(), 200);
        // A stream does not end: its first bytes show it is one.
        let first = response.chunk().await.unwrap().unwrap();
        assert!(first.starts_with(b"retry: "), "{first:?}");
    }
    let queue = router.url(&format!("/api/v1/events/{event}/queue"));
    assert_eq!(client.post(&queue).send().await.unwrap().status(), 200);
    // Each of those has a limit of its own too.
    assert_limited(client.get(&stream).send().await.unwrap(), "streams").await;
    assert_limited(client.post(&queue).send().await.unwrap(), "queue").await;
    // Two reads and a join reached the node (the two streams share one relayed upstream one).
    let api = fakes.nodes["us-east"].api();
    assert_eq!(
        api.iter().filter(|s| !s.uri.ends_with("/stream")).count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_names_the_client_only_from_a_trusted_proxy() {
    let proxy: IpAddr = "127.0.0.2".parse().unwrap();
    let (fakes, router) = router_with(|c| {
        c.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
        c.limits.per_address = Rate::new(NO_REFILL, 2);
    })
    .await;
    let events = router.url("/api/v1/events");

    // An untrusted peer inventing a new address each time: all of it is one client.
    let direct = client();
    for i in 0..2 {
        let response = direct
            .get(&events)
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let spoofed = direct
        .get(&events)
        .header("x-forwarded-for", "198.51.100.99")
        .send()
        .await
        .unwrap();
    assert_limited(spoofed, "per_address").await;

    // Through the trusted proxy, each forwarded client has its own budget...
    let via_proxy = client_from(proxy);
    let forwarded_for =
        |xff: &'static str| via_proxy.get(&events).header("x-forwarded-for", xff).send();
    assert_eq!(forwarded_for("203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(forwarded_for("203.0.113.1").await.unwrap().status(), 200);
    assert_limited(forwarded_for("203.0.113.1").await.unwrap(), "per_address").await;
    assert_eq!(forwarded_for("203.0.113.2").await.unwrap().status(), 200);
    // ...counted by the right-most address the proxy saw, whatever the client wrote before it.
    let prefixed = forwarded_for("192.0.2.50, 203.0.113.1").await.unwrap();
    assert_limited(prefixed, "per_address").await;
    // The proxy's own requests are the proxy's, a budget the direct client did not touch.
    assert_eq!(via_proxy.get(&events).send().await.unwrap().status(), 200);
    assert_eq!(fakes.nodes["us-east"].api().len(), 6);
}
