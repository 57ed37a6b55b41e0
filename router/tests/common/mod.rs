//! Fake upstreams for routing tests: small axum servers on 127.0.0.1:0 playing region nodes and
//! peer routers. They record what they receive and answer like a node would. This tests the
//! router's routing, so fakes are the right tool here (the real multi-region behaviour is
//! covered by the devcluster tests).

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use id_gen::{Id, IdParts, RegionId, EPOCH_UNIX_MS};
use router::config::{Config, RegionConfig, UpstreamConfig};
use router::App;
use serde_json::json;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

pub const REGIONS: [(&str, u8); 3] = wire::config::DEFAULT_REGIONS;

/// The secret routers under test check bearer tokens with.
pub const TEST_JWT_SECRET: &str = "router-test-secret-not-for-real-use";

/// A valid access token of an ordinary user, signed with `TEST_JWT_SECRET`.
pub fn user_token() -> String {
    let keys = wire::token::TokenKeys::new(TEST_JWT_SECRET.as_bytes(), 5);
    let grant = wire::token::Grant {
        user: id_in(1),
        role: wire::token::Role::User,
        session: Some(id_in(1)),
    };
    keys.issue(grant, Duration::from_secs(3600)).unwrap().token
}

/// A Snowflake id minted in `region`.
pub fn id_in(region: u8) -> Id {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    IdParts {
        timestamp_ms: EPOCH_UNIX_MS + 86_400_000 * 500,
        region: RegionId::new(region).unwrap(),
        machine: 1,
        sequence: (SEQ.fetch_add(1, Ordering::Relaxed) % 4096) as u16,
    }
    .encode()
    .unwrap()
}

/// One request as a fake upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The connection was dropped after reading the request, without an answer.
    pub dropped: bool,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

#[derive(Clone)]
pub struct FakeOptions {
    /// `X-Served-By` it answers with.
    pub served_by: String,
    /// Drop this many connections after reading their first request, without answering.
    pub drop_first: usize,
    /// Delay before answering API requests (not `/healthz`).
    pub api_delay: Duration,
    pub ip: IpAddr,
    pub port: u16,
}

impl FakeOptions {
    pub fn new(served_by: &str) -> FakeOptions {
        FakeOptions {
            served_by: served_by.into(),
            drop_first: 0,
            api_delay: Duration::ZERO,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
        }
    }
}

/// A fake node or router.
#[derive(Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    pub served_by: String,
    log: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl Fake {
    pub async fn start(served_by: &str) -> Fake {
        Fake::start_with(FakeOptions::new(served_by)).await
    }

    pub async fn start_with(options: FakeOptions) -> Fake {
        let listener = TcpListener::bind((options.ip, options.port)).await.unwrap();
        Fake::serve(listener, options)
    }

    pub fn serve(listener: TcpListener, options: FakeOptions) -> Fake {
        let fake = Fake {
            addr: listener.local_addr().unwrap(),
            served_by: options.served_by.clone(),
            log: Arc::default(),
            connections: Arc::default(),
        };
        let listener = Recording {
            inner: listener,
            connections: fake.connections.clone(),
            drop_first: Arc::new(AtomicUsize::new(options.drop_first)),
            log: fake.log.clone(),
        };
        let app = axum::Router::new()
            .fallback(answer)
            .with_state((fake.clone(), options));
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything it received, including health checks and dropped requests.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// API requests it answered (not dropped, not `/healthz` or `/readyz`).
    pub fn api(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.uri.starts_with("/api/") && !s.dropped)
            .collect()
    }

    /// API writes it received, answered or not.
    pub fn api_writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.uri.starts_with("/api/") && s.method != "GET" && s.method != "HEAD")
            .collect()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn answer(State((fake, options)): State<(Fake, FakeOptions)>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let uri = parts.uri.to_string();
    fake.log.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: uri.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
        dropped: false,
    });
    let served_by = [
        (
            HeaderName::from_static("x-served-by"),
            options.served_by.clone(),
        ),
        (
            HeaderName::from_static("server-timing"),
            "db;dur=1.0".into(),
        ),
    ];
    if uri == "/healthz" || uri == "/readyz" {
        return (served_by, axum::Json(json!({"status": "ok"}))).into_response();
    }
    tokio::time::sleep(options.api_delay).await;
    if uri.ends_with("/stream") {
        // As a node: `retry:`, the current state, then nothing until it changes (never here).
        let id = wire::stream::StreamId::at(1, 1);
        let state = wire::stream::message(id, "state", "{}");
        let frames = futures::stream::iter([
            Ok::<_, std::io::Error>(Bytes::from_static(b"retry: 2000\n\n")),
            Ok(Bytes::from(state)),
        ]);
        let open = futures::StreamExt::chain(frames, futures::stream::pending());
        let mut response = Response::new(Body::from_stream(open));
        response.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        return response;
    }
    if uri.contains("/missing") {
        return (
            StatusCode::NOT_FOUND,
            served_by,
            axum::Json(json!({"error": {"code": "not_found", "message": "no", "status": 404}})),
        )
            .into_response();
    }
    (
        served_by,
        axum::Json(json!({
            "servedBy": options.served_by,
            "method": parts.method.as_str(),
            "uri": uri,
            "body": String::from_utf8_lossy(&body),
        })),
    )
        .into_response()
}

/// Counts accepted connections, and drops the first `drop_first` after reading a request
/// from each (a peer that crashed mid-request, or a connection the network broke).
struct Recording {
    inner: TcpListener,
    connections: Arc<AtomicUsize>,
    drop_first: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl Listener for Recording {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                continue;
            };
            self.connections.fetch_add(1, Ordering::SeqCst);
            let drop_it = self
                .drop_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if !drop_it {
                return (stream, addr);
            }
            let log = self.log.clone();
            tokio::spawn(async move {
                let seen = read_request_head(stream).await;
                log.lock().unwrap().push(seen);
                // The stream is dropped here: closed without an answer.
            });
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

async fn read_request_head(stream: TcpStream) -> Seen {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if !matches!(
            tokio::time::timeout_at(deadline, stream.readable()).await,
            Ok(Ok(()))
        ) {
            break;
        }
        match stream.try_read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let uri = request_line.next().unwrap_or_default().to_owned();
    let mut headers = HeaderMap::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.trim().as_bytes()),
                HeaderValue::from_str(v.trim()),
            ) {
                headers.append(k, v);
            }
        }
    }
    Seen {
        method,
        uri,
        headers,
        body: Bytes::new(),
        dropped: true,
    }
}

/// A port where nothing listens: connections are refused.
pub async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A peer that accepts connections and never answers (nor reads).
pub async fn silent_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("http://{addr}")
}

/// A peer that never completes a TCP handshake: a listener with a full accept queue, so the
/// kernel drops new SYNs, as a firewall black hole would. The returned guard keeps it so.
pub async fn never_accepting_url() -> (String, Guard) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            // The queue is full: connects now hang.
            _ => break,
        }
    }
    (format!("http://{addr}"), Guard(listener, fillers))
}

/// Keeps a never-accepting listener and the connections that fill its queue.
pub struct Guard(TcpListener, Vec<TcpStream>);

/// The fakes of a three-region deployment seen from a router in us-east.
pub struct Fakes {
    pub nodes: HashMap<&'static str, Fake>,
    pub routers: HashMap<&'static str, Fake>,
}

impl Fakes {
    pub async fn start() -> Fakes {
        let mut nodes = HashMap::new();
        let mut routers = HashMap::new();
        for (name, _) in REGIONS {
            nodes.insert(name, Fake::start(&format!("{name}/node-1")).await);
            // A peer router passes its node's X-Served-By through.
            routers.insert(name, Fake::start(&format!("{name}/node-1")).await);
        }
        Fakes { nodes, routers }
    }

    /// A us-east router configuration pointing at these fakes.
    pub fn config(&self) -> Config {
        config_with(|name| (self.nodes[name].url(), self.routers[name].url()))
    }

    /// Every API write received anywhere, as (which fake, seen).
    pub fn all_api_writes(&self) -> Vec<(String, Seen)> {
        let mut all = Vec::new();
        for (name, fake) in &self.nodes {
            all.extend(
                fake.api_writes()
                    .into_iter()
                    .map(|s| (format!("{name} node"), s)),
            );
        }
        for (name, fake) in &self.routers {
            all.extend(
                fake.api_writes()
                    .into_iter()
                    .map(|s| (format!("{name} router"), s)),
            );
        }
        all
    }
}

/// A us-east router configuration with each region's (node, router) URLs from `urls`. Warming
/// is off so that connection counts are the requests' own.
pub fn config_with(urls: impl Fn(&str) -> (String, String)) -> Config {
    let mut config = Config {
        region: "us-east".into(),
        router_name: "router-test".into(),
        regions: REGIONS
            .iter()
            .map(|&(name, id)| {
                let (node, router) = urls(name);
                RegionConfig {
                    name: name.into(),
                    id,
                    node,
                    router,
                    fallback_order: None,
                }
            })
            .collect(),
        upstream: UpstreamConfig {
            warm_interval_ms: 0,
            ..UpstreamConfig::default()
        },
        ..Config::default()
    };
    config.auth.jwt_secret = TEST_JWT_SECRET.into();
    config
}

/// The router under test, serving in-process on 127.0.0.1:0 until dropped.
pub struct RouterUnderTest {
    pub addr: SocketAddr,
    /// The operations listener (`/metrics`).
    pub ops_addr: SocketAddr,
    /// The router's state, for tests to read (its metrics).
    pub app: Arc<App>,
    _service: testkit::TestService,
}

impl RouterUnderTest {
    pub async fn start(config: Config) -> RouterUnderTest {
        let app = App::new(config).unwrap();
        let serving = app.clone();
        let service = testkit::TestService::start(move |listeners, shutdown| {
            router::serve_app(serving, listeners, shutdown)
        })
        .await
        .unwrap();
        RouterUnderTest {
            addr: service.addr(),
            ops_addr: service.ops_addr(),
            app,
            _service: service,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Graceful stop: requests in flight finish first.
    pub async fn stop(self) -> anyhow::Result<()> {
        self._service.stop().await
    }

    /// `path` on the operations listener.
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops_addr)
    }
}

/// A test client signed in as an ordinary user (`user_token`): no proxies from the
/// environment, bounded time.
pub fn client() -> reqwest::Client {
    signed_in(reqwest::Client::builder()).build().unwrap()
}

/// A test client that sends no token.
pub fn anonymous_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// A signed-in client whose connections come from `ip` (another loopback address), to play a
/// proxy.
pub fn client_from(ip: IpAddr) -> reqwest::Client {
    signed_in(reqwest::Client::builder().local_address(ip))
        .build()
        .unwrap()
}

fn signed_in(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", user_token()).parse().unwrap(),
    );
    builder
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .default_headers(headers)
}

pub async fn json_of(response: reqwest::Response) -> serde_json::Value {
    response.json().await.unwrap()
}

pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
