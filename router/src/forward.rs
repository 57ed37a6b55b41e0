//! The proxying: one keep-alive HTTP client for every upstream, bounded timeouts, safe retries,
//! read fallback, and the header hygiene of a proxy.
//!
//! Failure handling, in order of what the router can know:
//! * **Connect failed** (refused, connect timeout, DNS): the request never left. Reads try the
//!   next region; writes answer `503 home_region_unreachable` (never another region).
//! * **Connection broke** after the request was sent (reset, closed before the answer): it may
//!   or may not have arrived, so it is re-sent, at most `upstream.retries` times, with the same
//!   `Idempotency-Key` (which makes a duplicate harmless). Never after an HTTP answer.
//! * **No answer yet**: a slow upstream and a black hole look alike, so after
//!   `unreachable_ms - probe_ms` the router looks for a sign of life since the request began:
//!   any answer from that upstream, or else its `/healthz` on another connection (one probe
//!   per upstream at a time, its outcome shared by every waiter, so a burst does not probe
//!   hundreds of times). None: unreachable, within `unreachable_ms` (~2 s). Alive but slow: the
//!   request may take up to `request_ms`, then `504`.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use reqwest::Url;

use crate::config::Config;
use crate::discovery::Discovery;
use crate::error::RouterError;
use crate::headers::{
    KEEP_ALIVE, PROXY_CONNECTION, X_CLIENT_REGION, X_FORWARDED_FOR, X_READ_FALLBACK, X_ROUTER_HOP,
};
use crate::metrics::{FallbackLabels, Metrics, RegionLabels, UpstreamLabels};
use crate::regions::{Region, Regions};
use crate::routing::Via;

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus those
/// the router sets itself.
const REQUEST_HEADERS_NOT_FORWARDED: [HeaderName; 13] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::EXPECT,
    header::HOST,
    header::CONTENT_LENGTH,
    X_CLIENT_REGION,
    X_ROUTER_HOP,
];
const RESPONSE_HEADERS_NOT_FORWARDED: [HeaderName; 7] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// One upstream: a region's node or its router.
#[derive(Clone, Copy)]
pub struct Upstream<'a> {
    pub region: &'a str,
    pub base: &'a Url,
    pub kind: UpstreamKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamKind {
    Node,
    Router,
}

impl<'a> Upstream<'a> {
    pub fn node(region: &'a Region) -> Upstream<'a> {
        Upstream {
            region: &region.name,
            base: &region.node,
            kind: UpstreamKind::Node,
        }
    }

    pub fn router(region: &'a Region) -> Upstream<'a> {
        Upstream {
            region: &region.name,
            base: &region.router,
            kind: UpstreamKind::Router,
        }
    }

    fn kind_label(&self) -> &'static str {
        match self.kind {
            UpstreamKind::Node => "node",
            UpstreamKind::Router => "router",
        }
    }
}

impl fmt::Display for Upstream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.region, self.kind_label(), self.base)
    }
}

/// A request as it will be sent upstream (headers already cleaned and completed).
pub struct Outgoing {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An upstream's answer, on its way back to the client.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: AnswerBody,
    /// The region that answered.
    pub region: String,
    /// Time across the upstream call, retries included (up to the headers, for streams).
    pub upstream_time: Duration,
    /// Set when a read was served by another region: the region it should have come from.
    pub fallback_from: Option<String>,
}

enum AnswerBody {
    Full(Bytes),
    /// Server-Sent Events: passed on as they come, with no overall deadline.
    Stream(reqwest::Response),
}

/// Why an upstream call produced no answer.
#[derive(Debug)]
pub enum CallError {
    /// No sign of life: connect failed, the connection kept breaking, or neither the request
    /// nor a liveness probe was answered in time.
    Unreachable(String),
    /// Alive (it answered the probe) but gave no answer within the request timeout.
    Timeout,
}

/// Where the router measured its upstream time; read by the `Server-Timing` middleware.
#[derive(Clone, Debug)]
pub struct UpstreamTiming {
    pub region: String,
    pub duration: Duration,
}

pub struct Forwarder {
    client: reqwest::Client,
    discovery: Discovery,
    request_timeout: Duration,
    unreachable: Duration,
    probe_timeout: Duration,
    retries: u32,
    down_for: Duration,
    /// Upstreams (by base URL) that were unreachable recently, until when.
    down_until: Mutex<HashMap<String, Instant>>,
    /// When each upstream (by base URL) last answered anything. A request still waiting after
    /// others got answers is waiting on a slow upstream, not a dead one, and needs no probe of
    /// its own: under a burst, hundreds of probes would themselves miss their deadline.
    last_answer: Mutex<HashMap<String, Instant>>,
    /// One liveness probe per upstream at a time; waiters share its outcome.
    probing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// When each upstream's last probe went unanswered.
    last_probe_failure: Mutex<HashMap<String, Instant>>,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    /// One HTTP/1.1 client for all upstreams: its pool keeps connections to each peer alive, so
    /// a write costs one WAN round trip, not a handshake too. Redirects and reqwest's own
    /// retries are off: the router passes answers through and decides retries itself.
    pub fn new(
        config: &Config,
        discovery: Discovery,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Forwarder> {
        let t = &config.timeouts;
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(discovery.clone()))
            .connect_timeout(config.connect_timeout())
            .pool_idle_timeout(Duration::from_millis(config.upstream.pool_idle_timeout_ms))
            .pool_max_idle_per_host(config.upstream.pool_max_idle_per_host)
            .http1_only()
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .build()?;
        Ok(Forwarder {
            client,
            discovery,
            request_timeout: Duration::from_millis(t.request_ms),
            unreachable: Duration::from_millis(t.unreachable_ms),
            probe_timeout: Duration::from_millis(t.probe_ms),
            retries: config.upstream.retries,
            down_for: Duration::from_millis(config.upstream.down_for_ms),
            down_until: Mutex::new(HashMap::new()),
            last_answer: Mutex::new(HashMap::new()),
            probing: Mutex::new(HashMap::new()),
            last_probe_failure: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// A read: the own region's node, then the fallback regions' nodes, each tried only if the
    /// previous one was unreachable. An HTTP answer (even an error) is final.
    pub async fn read(&self, regions: &Regions, out: &Outgoing) -> Result<Answer, RouterError> {
        let own = regions.own();
        let mut order: Vec<&Region> = regions.read_order().collect();
        // Regions that just failed go last: no point waiting for them again first.
        order.sort_by_key(|r| self.is_down(&r.node));
        let mut failures = Vec::new();
        for region in order {
            match self.call(Upstream::node(region), out, true).await {
                Ok(mut answer) => {
                    if region.name != own.name {
                        self.metrics
                            .read_fallbacks
                            .get_or_create(&FallbackLabels {
                                from: own.name.clone(),
                                to: region.name.clone(),
                            })
                            .inc();
                        tracing::debug!(from = %own.name, to = %region.name, "read fallback");
                        answer.fallback_from = Some(own.name.clone());
                    }
                    return Ok(answer);
                }
                Err(CallError::Unreachable(detail)) => {
                    failures.push(format!("{}: {detail}", region.name));
                }
                Err(CallError::Timeout) => {
                    return Err(RouterError::UpstreamTimeout {
                        region: region.name.clone(),
                    })
                }
            }
        }
        Err(RouterError::ReadUnavailable {
            detail: failures.join("; "),
        })
    }

    /// A write: to its home region only. When that is unreachable the answer is `503`, and the
    /// write is not offered to anyone else.
    pub async fn write(
        &self,
        home: &Region,
        via: Via,
        out: &Outgoing,
    ) -> Result<Answer, RouterError> {
        let upstream = match via {
            Via::LocalNode => Upstream::node(home),
            Via::PeerRouter => Upstream::router(home),
        };
        match self.call(upstream, out, false).await {
            Ok(answer) => Ok(answer),
            Err(CallError::Unreachable(detail)) => Err(RouterError::HomeRegionUnreachable {
                region: home.name.clone(),
                detail,
            }),
            Err(CallError::Timeout) => Err(RouterError::UpstreamTimeout {
                region: home.name.clone(),
            }),
        }
    }

    /// One upstream call with the retry and liveness rules of the module docs.
    pub async fn call(
        &self,
        upstream: Upstream<'_>,
        out: &Outgoing,
        stream_events: bool,
    ) -> Result<Answer, CallError> {
        let start = Instant::now();
        let attempts = self.attempts(upstream, out, stream_events);
        // Finishes only if the upstream shows no sign of life in time.
        let watchdog = async {
            tokio::time::sleep(self.unreachable.saturating_sub(self.probe_timeout)).await;
            if self.alive_since(upstream, start).await {
                std::future::pending::<()>().await;
            }
        };
        let bounded = async {
            tokio::select! {
                result = attempts => result,
                () = watchdog => Err(CallError::Unreachable(
                    "no answer, and no answer to a liveness probe".into(),
                )),
            }
        };
        let result = tokio::time::timeout(self.request_timeout, bounded)
            .await
            .unwrap_or(Err(CallError::Timeout));
        let outcome = match &result {
            Ok(_) => "answered",
            Err(CallError::Unreachable(_)) => "unreachable",
            Err(CallError::Timeout) => "timeout",
        };
        self.metrics
            .upstream_calls
            .get_or_create(&UpstreamLabels {
                region: upstream.region.to_owned(),
                upstream: upstream.kind_label(),
                outcome,
            })
            .inc();
        match &result {
            Ok(_) => {
                self.mark(upstream.base, None);
                self.metrics
                    .upstream_seconds
                    .get_or_create(&RegionLabels {
                        region: upstream.region.to_owned(),
                    })
                    .observe(start.elapsed().as_secs_f64());
            }
            Err(CallError::Unreachable(detail)) => {
                tracing::warn!(%upstream, %detail, "upstream unreachable");
                self.mark(upstream.base, Some(Instant::now() + self.down_for));
            }
            Err(CallError::Timeout) => tracing::warn!(%upstream, "upstream timed out"),
        }
        result.map(|mut answer| {
            answer.upstream_time = start.elapsed();
            answer
        })
    }

    /// Sends `out` until it gets an answer, re-sending only after a broken connection.
    async fn attempts(
        &self,
        upstream: Upstream<'_>,
        out: &Outgoing,
        stream_events: bool,
    ) -> Result<Answer, CallError> {
        let mut attempt = 0;
        loop {
            let pinned = self
                .discovery
                .pin(upstream.base, &out.path, out.query.as_deref())
                .await
                .map_err(|e| CallError::Unreachable(e.to_string()))?;
            let mut headers = out.headers.clone();
            if let Some(host) = pinned.host {
                headers.insert(header::HOST, host);
            }
            let mut request = self
                .client
                .request(out.method.clone(), pinned.url)
                .headers(headers);
            if !out.body.is_empty() {
                request = request.body(out.body.clone());
            }
            let broken = match request.send().await {
                Ok(response) => {
                    self.record_answer(upstream.base);
                    let status = response.status();
                    let headers = response.headers().clone();
                    if stream_events && is_event_stream(&headers) {
                        return Ok(Answer::new(
                            upstream,
                            status,
                            headers,
                            AnswerBody::Stream(response),
                        ));
                    }
                    match response.bytes().await {
                        Ok(body) => {
                            return Ok(Answer::new(
                                upstream,
                                status,
                                headers,
                                AnswerBody::Full(body),
                            ))
                        }
                        // The answer broke off: the request did arrive, and re-sending it with
                        // the same Idempotency-Key returns the first result.
                        Err(e) => e,
                    }
                }
                Err(e) if e.is_connect() => {
                    return Err(CallError::Unreachable(format!(
                        "cannot connect: {}",
                        describe(&e)
                    )))
                }
                Err(e) => e,
            };
            attempt += 1;
            if attempt > self.retries {
                return Err(CallError::Unreachable(format!(
                    "connection broke on all {attempt} attempts: {}",
                    describe(&broken)
                )));
            }
            self.metrics
                .retries
                .get_or_create(&RegionLabels {
                    region: upstream.region.to_owned(),
                })
                .inc();
            tracing::warn!(%upstream, attempt, error = %describe(&broken), "connection broke; re-sending");
        }
    }

    /// `GET path` on the upstream with its own deadline; the status if it answered at all. The
    /// body is read so the connection goes back to the pool (this is also how it is kept warm).
    pub async fn probe(
        &self,
        upstream: Upstream<'_>,
        path: &str,
        timeout: Duration,
    ) -> Option<StatusCode> {
        let probe = async {
            let pinned = self.discovery.pin(upstream.base, path, None).await.ok()?;
            let mut request = self.client.get(pinned.url);
            if let Some(host) = pinned.host {
                request = request.header(header::HOST, host);
            }
            let response = request.send().await.ok()?;
            self.record_answer(upstream.base);
            let status = response.status();
            let _ = response.bytes().await;
            Some(status)
        };
        tokio::time::timeout(timeout, probe).await.ok().flatten()
    }

    fn record_answer(&self, base: &Url) {
        let mut last = self.last_answer.lock().unwrap_or_else(|e| e.into_inner());
        last.insert(base.as_str().to_owned(), Instant::now());
    }

    /// Is the upstream alive, judged since `since`: it answered anything (a request or a
    /// probe), or, failing that, it answers the liveness probe. Probes are single-flight per
    /// upstream: a waiter that finds a probe under way waits for it and takes its outcome.
    async fn alive_since(&self, upstream: Upstream<'_>, since: Instant) -> bool {
        if self.answered_since(upstream.base, since) {
            return true;
        }
        let turn = {
            let mut probing = self.probing.lock().unwrap_or_else(|e| e.into_inner());
            probing
                .entry(upstream.base.as_str().to_owned())
                .or_default()
                .clone()
        };
        let _turn = turn.lock().await;
        if self.answered_since(upstream.base, since) {
            return true;
        }
        if self.probe_failed_since(upstream.base, since) {
            return false;
        }
        if self
            .probe(upstream, "/healthz", self.probe_timeout)
            .await
            .is_some()
        {
            return true;
        }
        let mut failures = self
            .last_probe_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        failures.insert(upstream.base.as_str().to_owned(), Instant::now());
        false
    }

    fn probe_failed_since(&self, base: &Url, since: Instant) -> bool {
        let failures = self
            .last_probe_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        failures.get(base.as_str()).is_some_and(|at| *at > since)
    }

    /// Has `base` answered any request since `since`?
    fn answered_since(&self, base: &Url, since: Instant) -> bool {
        let last = self.last_answer.lock().unwrap_or_else(|e| e.into_inner());
        last.get(base.as_str()).is_some_and(|at| *at > since)
    }

    fn is_down(&self, base: &Url) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        down.get(base.as_str())
            .is_some_and(|until| *until > Instant::now())
    }

    fn mark(&self, base: &Url, down_until: Option<Instant>) {
        let mut down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        match down_until {
            Some(until) => {
                down.insert(base.as_str().to_owned(), until);
            }
            None => {
                down.remove(base.as_str());
            }
        }
    }
}

impl Answer {
    fn new(
        upstream: Upstream<'_>,
        status: StatusCode,
        headers: HeaderMap,
        body: AnswerBody,
    ) -> Answer {
        Answer {
            status,
            headers,
            body,
            region: upstream.region.to_owned(),
            upstream_time: Duration::ZERO,
            fallback_from: None,
        }
    }

    /// The client's response: the upstream's status, headers (minus hop-by-hop ones) and body,
    /// plus `X-Read-Fallback` when another region served a read.
    pub fn into_response(self) -> Response {
        let mut headers = self.headers;
        remove_connection_headers(&mut headers, &RESPONSE_HEADERS_NOT_FORWARDED);
        let body = match self.body {
            AnswerBody::Full(bytes) => Body::from(bytes),
            AnswerBody::Stream(response) => {
                headers.remove(header::CONTENT_LENGTH);
                Body::from_stream(chunks(response))
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = headers;
        if let Some(from) = &self.fallback_from {
            if let Ok(v) = HeaderValue::from_str(&format!("{from} -> {}", self.region)) {
                response.headers_mut().insert(X_READ_FALLBACK, v);
            }
        }
        response.extensions_mut().insert(UpstreamTiming {
            region: self.region,
            duration: self.upstream_time,
        });
        response
    }
}

/// The response body as a stream of chunks, ending after the first error.
fn chunks(
    response: reqwest::Response,
) -> impl futures::Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static {
    futures::stream::unfold(Some(response), |state| async move {
        let mut response = state?;
        match response.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// Removes hop-by-hop headers: the fixed list and any the `Connection` header names.
fn remove_connection_headers(headers: &mut HeaderMap, fixed: &[HeaderName]) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in fixed {
        headers.remove(name);
    }
}

/// The headers to send upstream: the client's, minus hop-by-hop ones, plus `X-Forwarded-For`
/// and the client region the router decided on (replacing any the client sent).
pub fn outgoing_headers(incoming: &HeaderMap, peer: IpAddr, client_region: &str) -> HeaderMap {
    let mut headers = incoming.clone();
    remove_connection_headers(&mut headers, &REQUEST_HEADERS_NOT_FORWARDED);
    let peer = peer.to_canonical().to_string();
    let forwarded = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {peer}"),
        None => peer,
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if let Ok(v) = HeaderValue::from_str(client_region) {
        headers.insert(X_CLIENT_REGION, v);
    }
    headers
}

/// An error and its causes on one line (reqwest's own message omits the cause).
fn describe(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_not_forwarded() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("host", HeaderValue::from_static("router.example"));
        h.insert("content-length", HeaderValue::from_static("5"));
        h.insert("x-client-region", HeaderValue::from_static("ap-southeast"));
        h.insert("x-router-hop", HeaderValue::from_static("eu-west/router-1"));
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        let out = outgoing_headers(&h, "::ffff:10.0.0.1".parse().unwrap(), "us-east");
        for gone in [
            "connection",
            "x-secret",
            "host",
            "content-length",
            "x-router-hop",
        ] {
            assert!(!out.contains_key(gone), "{gone}");
        }
        assert_eq!(out["x-client-region"], "us-east");
        assert_eq!(out["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
        assert_eq!(out["authorization"], "Bearer t");
    }

    #[test]
    fn event_streams_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!is_event_stream(&h));
        h.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        assert!(is_event_stream(&h));
    }
}
