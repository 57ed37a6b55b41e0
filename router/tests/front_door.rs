//! What the router does at its front door, before any routing: CORS for configured origins
//! (preflights answered here, never forwarded), `OPTIONS` never a `405`, client request ids kept
//! only when plain, the metrics only on the operations listener, upstream failures told without
//! internal addresses, and the connection cap's clean `503`.

mod common;

use std::time::Duration;

use common::{client, header, id_in, json_of, refused_url, Fakes, RouterUnderTest};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAGE: &str = "https://tickets.example";

async fn router_with_cors() -> (Fakes, RouterUnderTest) {
    let fakes = Fakes::start().await;
    let mut config = fakes.config();
    config.cors.allowed_origins = vec![PAGE.into()];
    let router = RouterUnderTest::start(config).await;
    (fakes, router)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_from_an_allowed_origin_gets_204_with_what_it_may_send() {
    let (fakes, router) = router_with_cors().await;
    let preflight = client()
        .request(
            reqwest::Method::OPTIONS,
            router.url("/api/v1/booking/reserve"),
        )
        .header("origin", PAGE)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        header(&preflight, "access-control-allow-origin").unwrap(),
        PAGE
    );
    assert_eq!(header(&preflight, "vary").unwrap(), "origin");
    assert!(header(&preflight, "access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let allowed = header(&preflight, "access-control-allow-headers").unwrap();
    for name in [
        "authorization",
        "content-type",
        "idempotency-key",
        "x-request-id",
        "x-consistency-token",
    ] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    assert_eq!(header(&preflight, "access-control-max-age").unwrap(), "600");
    assert!(
        fakes.all_api_writes().is_empty(),
        "a preflight is never forwarded"
    );
    for fake in fakes.nodes.values().chain(fakes.routers.values()) {
        assert!(fake.seen().iter().all(|s| s.method != "OPTIONS"));
    }

    // The answer itself names the origin and the headers the page may read.
    let read = client()
        .get(router.url(&format!("/api/v1/events/{}", id_in(1))))
        .header("origin", PAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(header(&read, "access-control-allow-origin").unwrap(), PAGE);
    assert!(read
        .headers()
        .get_all("vary")
        .iter()
        .any(|v| v.to_str().unwrap().contains("origin")));
    let exposed = header(&read, "access-control-expose-headers").unwrap();
    for name in [
        "x-request-id",
        "retry-after",
        "ratelimit",
        "link",
        "x-consistency-token",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_origin_gets_no_cors_headers_and_options_is_never_a_405() {
    let (_fakes, router) = router_with_cors().await;
    let no_cors = |response: &reqwest::Response| {
        response
            .headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-"))
    };
    let preflight = client()
        .request(
            reqwest::Method::OPTIONS,
            router.url("/api/v1/booking/reserve"),
        )
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert!(no_cors(&preflight), "{:?}", preflight.headers());
    let read = client()
        .get(router.url(&format!("/api/v1/events/{}", id_in(1))))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert!(no_cors(&read), "{:?}", read.headers());

    // No CORS configured, no Origin: OPTIONS still gets an empty 204 (with no `Allow`: the
    // router cannot tell one resource's methods from another's).
    let fakes = Fakes::start().await;
    let plain = RouterUnderTest::start(fakes.config()).await;
    for path in ["/api/v1/events", "/healthz", "/nowhere"] {
        let options = client()
            .request(reqwest::Method::OPTIONS, plain.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(options.status(), 204, "{path}");
        assert!(header(&options, "allow").is_none());
        assert!(no_cors(&options));
        assert!(options.bytes().await.unwrap().is_empty());
    }
}

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
