//! What the router does at its front door, before any routing: client request ids kept only
//! when plain, the metrics only on the operations listener, upstream failures told without
//! internal addresses, and the connection cap's clean `503`.

mod common;

use std::time::Duration;

use common::{client, header, id_in, json_of, refused_url, Fakes, RouterUnderTest};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_id_is_replaced_never_echoed_or_forwarded() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let long = "x".repeat(65);
    for bad in ["<script>alert(1)</script>", "two words", long.as_str()] {
        let response = client()
            .post(router.url("/api/v1/booking/reserve"))
            .header("x-request-id", bad)
            .json(&json!({"eventId": id_in(3).to_string()}))
            .send()
            .await
            .unwrap();
        let answered = header(&response, "x-request-id").unwrap();
        assert_ne!(answered, bad);
        assert!(
            wire::trace::is_valid_request_id(answered.as_bytes()),
            "{answered}"
        );
        let seen = fakes.routers["ap-southeast"].api_writes();
        let forwarded = seen.last().unwrap().header("x-request-id").unwrap();
        assert_eq!(forwarded, answered);
    }
    let kept = client()
        .get(router.url("/healthz"))
        .header("x-request-id", "client-1:retry.2")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&kept, "x-request-id").unwrap(), "client-1:retry.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_refused_on_the_api_listener() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let public = client().get(router.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    assert_eq!(json_of(public).await["error"]["code"], "not_found");
    let ops = client()
        .get(router.ops_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(ops.status(), 200);
    // The operations listener serves no API.
    let api = client()
        .get(router.ops_url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_region_is_named_but_its_address_is_not() {
    let fakes = Fakes::start().await;
    let dead = refused_url().await;
    let mut config = fakes.config();
    config.regions[2].router = dead.clone();
    config.regions[2].node = dead.clone();
    let router = RouterUnderTest::start(config).await;
    let response = client()
        .post(router.url("/api/v1/booking/reserve"))
        .json(&json!({"eventId": id_in(3).to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body = json_of(response).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("ap-southeast"), "{body}");
    let port = dead.rsplit(':').next().unwrap();
    assert!(
        !message.contains(port) && !message.contains("127.0.0.1"),
        "{body}"
    );
    assert!(!message.to_lowercase().contains("connect"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_gets_a_json_503_and_the_first_goes_on() {
    let fakes = Fakes::start().await;
    let mut config = fakes.config();
    config.connections.max = 1;
    let router = RouterUnderTest::start(config).await;
    let get = b"GET /healthz HTTP/1.1\r\nhost: router\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    first.write_all(get).await.unwrap();
    let mut buf = [0u8; 2048];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    let over = client().get(router.url("/healthz")).send().await.unwrap();
    assert_eq!(over.status(), 503);
    assert_eq!(header(&over, "connection").unwrap(), "close");
    let body = json_of(over).await;
    assert_eq!(body["error"]["code"], "unavailable");

    first.write_all(get).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "the first connection goes on"
    );
}
