//! Event streams through the router's relay, against a fake node that speaks SSE as the node
//! does (ids carrying a WAL position and a digest): one upstream stream per event whatever the
//! number of clients, each message delivered on its own as it comes, `Last-Event-ID` applied by
//! the resume rule (skip, wait, send), a node's non-stream answer passed on as it is, a broken
//! upstream stream resumed without the clients noticing or getting a repeat, idle relays ended,
//! reads' fallback to another region, and the per-address cap on open streams.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use router::config::Config;
use serde_json::json;
use tokio::sync::watch;
use wire::limits::Rate;
use wire::stream::{digest, message, StreamId};

/// A fake region node serving the stream of one event: on connect, `retry:` then its latest
/// state (whatever `Last-Event-ID` says: the router must not repeat it), then each state
/// published, until `cut` ends every stream it serves. Any other event is a JSON `404`.
#[derive(Clone)]
struct StreamNode {
    url: String,
    event: String,
    latest: Arc<watch::Sender<Option<Bytes>>>,
    cuts: Arc<watch::Sender<u64>>,
    /// The `Last-Event-ID` of each stream request it got, in order.
    requests: Arc<Mutex<Vec<Option<String>>>>,
}

impl StreamNode {
    async fn start(event: String) -> StreamNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node = StreamNode {
            url: format!("http://{}", listener.local_addr().unwrap()),
            event,
            latest: Arc::new(watch::channel(None).0),
            cuts: Arc::new(watch::channel(0).0),
            requests: Arc::default(),
        };
        let app = axum::Router::new()
            .route(
                "/api/v1/events/{id}/stream",
                axum::routing::get(serve_stream),
            )
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .with_state(node.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        node
    }

    /// Publishes a state read at `lsn`; returns its id.
    fn publish(&self, lsn: u64, data: &str) -> StreamId {
        let id = StreamId::at(lsn, digest(data.as_bytes()));
        self.latest
            .send_replace(Some(Bytes::from(message(id, "state", data))));
        id
    }

    /// Ends every stream it is serving (a node restarting).
    fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    fn requests(&self) -> Vec<Option<String>> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve_stream(
    State(node): State<StreamNode>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if id != node.event {
        let error =
            json!({"error": {"code": "not_found", "message": "no such event", "status": 404}});
        return (StatusCode::NOT_FOUND, axum::Json(error)).into_response();
    }
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap().to_owned());
    node.requests.lock().unwrap().push(last);
    let mut latest = node.latest.subscribe();
    let mut cuts = node.cuts.subscribe();
    cuts.mark_unchanged();
    let current = latest.borrow_and_update().clone();
    let first = futures::stream::iter(
        [Some(Bytes::from_static(b"retry: 2000\n\n")), current]
            .into_iter()
            .flatten()
            .map(Ok::<_, std::io::Error>),
    );
    let rest = futures::stream::unfold((latest, cuts), |(mut latest, mut cuts)| async move {
        tokio::select! {
            changed = latest.changed() => changed.ok()?,
            _ = cuts.changed() => return None,
        }
        let state = latest.borrow_and_update().clone()?;
        Some((Ok(state), (latest, cuts)))
    });
    let mut response = Response::new(Body::from_stream(futures::StreamExt::chain(first, rest)));
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    response
        .headers_mut()
        .insert("x-served-by", "node-with-stream".parse().unwrap());
    response
}

/// A client's stream, read frame by frame.
struct Sse {
    response: reqwest::Response,
    pending: Vec<u8>,
}

impl Sse {
    /// The next whole frame within `within`; `None` if none came.
    async fn frame(&mut self, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(at) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.pending.drain(..at + 2).collect();
                return Some(String::from_utf8(frame).unwrap());
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .expect("the stream broke")
                .expect("the stream ended");
            self.pending.extend_from_slice(&chunk);
        }
    }

    /// The next frame that is not a keep-alive.
    async fn message(&mut self, within: Duration) -> Option<String> {
        loop {
            let frame = self.frame(within).await?;
            if !frame.starts_with(':') {
                return Some(frame);
            }
        }
    }
}

const SOON: Duration = Duration::from_secs(3);
const QUIET: Duration = Duration::from_millis(400);

fn state(n: u64) -> String {
    json!({"eventId": "1", "tiers": [], "totalAvailable": n, "queue": null}).to_string()
}

/// Frames as the node writes them, for comparing.
fn framed(id: StreamId, n: u64) -> String {
    message(id, "state", &state(n))
}

/// A router in us-east whose nodes are `us_east` and `eu_west` (ap-southeast refuses), with
/// room for many streams from the test's one address unless `edit` says otherwise.
async fn router_with(
    us_east: String,
    eu_west: String,
    edit: impl FnOnce(&mut Config),
) -> RouterUnderTest {
    let refused = refused_url().await;
    let mut config = config_with(|name| match name {
        "us-east" => (us_east.clone(), refused.clone()),
        "eu-west" => (eu_west.clone(), refused.clone()),
        _ => (refused.clone(), refused.clone()),
    });
    config.limits.streams = Rate::new(10_000.0, 10_000);
    config.limits.streams_per_address = 1_000;
    edit(&mut config);
    RouterUnderTest::start(config).await
}

async fn open(router: &RouterUnderTest, event: &str, last: Option<&str>) -> reqwest::Response {
    let mut request = anonymous_client().get(router.url(&format!("/api/v1/events/{event}/stream")));
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    request.send().await.unwrap()
}

/// A stream opened and its `retry:` read.
async fn subscribe(router: &RouterUnderTest, event: &str, last: Option<&str>) -> Sse {
    let response = open(router, event, last).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type").unwrap(),
        "text/event-stream"
    );
    let mut sse = Sse {
        response,
        pending: Vec::new(),
    };
    assert_eq!(sse.frame(SOON).await.unwrap(), "retry: 2000\n\n");
    sse
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upstream_stream_serves_every_client_each_message_as_it_comes() {
    let event = id_in(1).to_string();
    let node = StreamNode::start(event.clone()).await;
    let router = router_with(node.url.clone(), refused_url().await, |_| {}).await;
    let first = node.publish(10, &state(1));
    let mut clients = Vec::new();
    for _ in 0..40 {
        let mut sse = subscribe(&router, &event, None).await;
        assert_eq!(
            header(&sse.response, "x-home-region").as_deref(),
            Some("us-east")
        );
        assert_eq!(
            header(&sse.response, "x-served-by").as_deref(),
            Some("node-with-stream")
        );
        assert_eq!(sse.message(SOON).await.unwrap(), framed(first, 1));
        clients.push(sse);
    }
    assert_eq!(
        node.requests().len(),
        1,
        "one upstream stream for every client"
    );
    assert_eq!(router.app.streams.relays(), 1);
    // Each message reaches every client before the next exists: nothing waits in a buffer.
    for n in 2..5 {
        let id = node.publish(10 * n, &state(n));
        let start = Instant::now();
        for sse in &mut clients {
            assert_eq!(sse.message(SOON).await.unwrap(), framed(id, n));
        }
        assert!(start.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(node.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_skips_what_a_client_has_waits_for_newer_and_sends_a_change() {
    let event = id_in(1).to_string();
    let node = StreamNode::start(event.clone()).await;
    let router = router_with(node.url.clone(), refused_url().await, |_| {}).await;
    let a = node.publish(0x20, &state(1));
    // The relay is running and holds state 1.
    let mut watcher = subscribe(&router, &event, None).await;
    assert_eq!(watcher.message(SOON).await.unwrap(), framed(a, 1));

    // Has state 1 already: nothing until the next change.
    let mut has_it = subscribe(&router, &event, Some(&a.to_string())).await;
    // Was sent a state at a later position than this region's (it came from elsewhere): waits.
    let ahead = StreamId::at(0x40, 99);
    let mut ahead_of_us = subscribe(&router, &event, Some(&ahead.to_string())).await;
    // Was sent an older state: gets the current one at once.
    let old = StreamId::at(0x10, 5);
    let mut behind = subscribe(&router, &event, Some(&old.to_string())).await;
    assert_eq!(behind.message(SOON).await.unwrap(), framed(a, 1));
    assert_eq!(has_it.message(QUIET).await, None);
    assert_eq!(ahead_of_us.message(QUIET).await, None);

    let b = node.publish(0x30, &state(2));
    assert_eq!(has_it.message(SOON).await.unwrap(), framed(b, 2));
    assert_eq!(behind.message(SOON).await.unwrap(), framed(b, 2));
    assert_eq!(ahead_of_us.message(QUIET).await, None, "still behind it");
    let c = node.publish(0x50, &state(3));
    assert_eq!(ahead_of_us.message(SOON).await.unwrap(), framed(c, 3));
    assert_eq!(has_it.message(SOON).await.unwrap(), framed(c, 3));

    // A Last-Event-ID that is no id: a JSON 400, no stream.
    let bad = open(&router, &event, Some("yesterday")).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(json_of(bad).await["error"]["code"], "invalid_last_event_id");
    assert_eq!(node.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_answer_that_is_not_a_stream_is_passed_on_as_it_is() {
    let node = StreamNode::start(id_in(1).to_string()).await;
    let router = router_with(node.url.clone(), refused_url().await, |_| {}).await;
    for _ in 0..2 {
        // Another event than the node's: it has no such event.
        let response = open(&router, &id_in(1).to_string(), None).await;
        assert_eq!(response.status(), 404);
        assert!(header(&response, "content-type")
            .unwrap()
            .starts_with("application/json"));
        assert_eq!(json_of(response).await["error"]["code"], "not_found");
    }
    // A refused relay is over: nothing left running for it.
    assert_eq!(router.app.streams.relays(), 0);

    // No node at all: the router's own 503, not a hang.
    let dark = router_with(refused_url().await, refused_url().await, |_| {}).await;
    let response = open(&dark, &id_in(1).to_string(), None).await;
    assert_eq!(response.status(), 503);
    assert!(header(&response, "retry-after").is_some());
    assert_eq!(
        json_of(response).await["error"]["code"],
        "region_unreachable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_upstream_stream_is_resumed_and_clients_keep_theirs_without_a_repeat() {
    let event = id_in(1).to_string();
    let node = StreamNode::start(event.clone()).await;
    let router = router_with(node.url.clone(), refused_url().await, |_| {}).await;
    let a = node.publish(0x100, &state(1));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut sse = subscribe(&router, &event, None).await;
        assert_eq!(sse.message(SOON).await.unwrap(), framed(a, 1));
        clients.push(sse);
    }
    node.cut();
    // The relay comes back with its latest id; the node sends state 1 again on connect, and
    // the clients must not see it twice.
    let deadline = Instant::now() + SOON;
    while node.requests().len() < 2 {
        assert!(Instant::now() < deadline, "the relay did not reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(node.requests()[1].as_deref(), Some(a.to_string().as_str()));
    for sse in &mut clients {
        assert_eq!(sse.message(QUIET).await, None, "state 1 repeated");
    }
    let b = node.publish(0x200, &state(2));
    for sse in &mut clients {
        assert_eq!(sse.message(SOON).await.unwrap(), framed(b, 2));
    }
    assert_eq!(node.requests().len(), 2);
    assert_eq!(router.app.metrics.stream_reconnects.get(), 1);
    drop(clients);
    let deadline = Instant::now() + SOON;
    while router.app.metrics.stream_subscribers.get() > 0 {
        assert!(Instant::now() < deadline, "ended streams still counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fall_back_keep_alives_flow_and_idle_relays_end() {
    let event = id_in(1).to_string();
    // The local node is down: the relay reads eu-west's.
    let node = StreamNode::start(event.clone()).await;
    let router = router_with(refused_url().await, node.url.clone(), |c| {
        c.streams.keepalive_ms = 150;
        c.streams.idle_relay_ms = 200;
    })
    .await;
    let a = node.publish(1, &state(1));
    let mut sse = subscribe(&router, &event, None).await;
    assert_eq!(
        header(&sse.response, "x-read-fallback").as_deref(),
        Some("us-east -> eu-west")
    );
    assert_eq!(sse.frame(SOON).await.unwrap(), framed(a, 1));
    assert_eq!(sse.frame(SOON).await.unwrap(), ": keep-alive\n\n");
    assert_eq!(sse.frame(SOON).await.unwrap(), ": keep-alive\n\n");
    drop(sse);
    // No client for idle_relay_ms: the relay and its upstream stream end.
    let deadline = Instant::now() + SOON;
    while router.app.streams.relays() > 0 {
        assert!(Instant::now() < deadline, "the idle relay is still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        node.latest.receiver_count(),
        0,
        "the upstream stream is closed"
    );
    // The next client starts a new one.
    let mut sse = subscribe(&router, &event, None).await;
    assert_eq!(sse.message(SOON).await.unwrap(), framed(a, 1));
    assert_eq!(node.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_holds_at_most_its_cap_of_open_streams() {
    let event = id_in(1).to_string();
    let node = StreamNode::start(event.clone()).await;
    let router = router_with(node.url.clone(), refused_url().await, |c| {
        c.limits.streams_per_address = 2;
    })
    .await;
    let first = subscribe(&router, &event, None).await;
    let _second = subscribe(&router, &event, None).await;
    let refused = open(&router, &event, None).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"));
    assert_eq!(json_of(refused).await["error"]["code"], "too_many_streams");
    // A stream that ends frees its place.
    drop(first);
    let deadline = Instant::now() + SOON;
    loop {
        let response = open(&router, &event, None).await;
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 429);
        assert!(Instant::now() < deadline, "the place was not freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_fill_the_connection_cap_leave_new_clients_a_clean_503() {
    let event = id_in(1).to_string();
    let node = StreamNode::start(event.clone()).await;
    let router = router_with(node.url.clone(), refused_url().await, |c| {
        c.connections.max = 3;
    })
    .await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(subscribe(&router, &event, None).await);
    }
    // A fresh client is answered at once, not left waiting: 503, Retry-After, the envelope.
    let start = Instant::now();
    let refused = anonymous_client()
        .get(router.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(refused.status(), 503);
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"));
    assert_eq!(json_of(refused).await["error"]["code"], "unavailable");
    // The streams go on.
    let id = node.publish(5, &state(5));
    for sse in &mut streams {
        assert_eq!(sse.message(SOON).await.unwrap(), framed(id, 5));
    }
    // One ends: its place serves the next client.
    drop(streams.pop());
    let deadline = Instant::now() + SOON;
    loop {
        let response = anonymous_client()
            .get(router.url("/api/v1/events"))
            .send()
            .await;
        if response.is_ok_and(|r| r.status() != 503) {
            break;
        }
        assert!(Instant::now() < deadline, "no place after a stream ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_ends_the_streams_rather_than_wait_for_them() {
    let event = id_in(1).to_string();
    let node = StreamNode::start(event.clone()).await;
    let router = router_with(node.url.clone(), refused_url().await, |_| {}).await;
    let mut sse = subscribe(&router, &event, None).await;
    tokio::time::timeout(SOON, router.stop())
        .await
        .expect("the stop waited for a stream that never ends")
        .unwrap();
    let rest = tokio::time::timeout(SOON, sse.response.chunk())
        .await
        .unwrap();
    assert!(matches!(rest, Ok(None) | Err(_)), "{rest:?}");
}
