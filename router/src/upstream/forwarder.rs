//! The forwarding client: one call to one upstream by the failure rules of `upstream` (bounded
//! time, re-sent only after a broken connection, a liveness probe before giving up), and the two
//! ways the router uses it: reads fall back across regions, writes go to their home region only.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::uri::PathAndQuery;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;

use crate::config::Config;
use crate::error::RouterError;
use crate::metrics::{FallbackLabels, Metrics, RegionLabels, UpstreamLabels};
use crate::routing::plan::Via;
use crate::routing::regions::{Region, Regions};
use crate::upstream::answer::{is_event_stream, Answer};
use crate::upstream::client::{http_client, HttpClient, OutgoingBody};
use crate::upstream::discovery::{Discovery, Pinned};
use crate::upstream::liveness::Liveness;
use crate::upstream::request::{Outgoing, Upstream};

/// Where a request goes upstream.
#[derive(Clone, Copy, Debug)]
pub enum Destination<'a> {
    /// The own region's node, else the fallback regions' nodes.
    Read,
    /// The home region only, straight to its node or through its router.
    Write { home: &'a Region, via: Via },
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

/// Why one attempt got no answer.
enum AttemptError {
    /// The request never left (DNS, connect): re-sending it now cannot help.
    NotSent(String),
    /// The connection broke after the request was sent: it may have arrived.
    Broken(Box<dyn StdError + Send + Sync>),
}

pub struct Forwarder {
    client: HttpClient,
    discovery: Discovery,
    request_timeout: Duration,
    unreachable: Duration,
    probe_timeout: Duration,
    retries: u32,
    liveness: Liveness,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    pub fn new(
        config: &Config,
        discovery: Discovery,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Forwarder> {
        let t = &config.timeouts;
        let client = http_client(config, discovery.clone());
        Ok(Forwarder {
            client,
            discovery,
            request_timeout: Duration::from_millis(t.request_ms),
            unreachable: Duration::from_millis(t.unreachable_ms),
            probe_timeout: Duration::from_millis(t.probe_ms),
            retries: config.upstream.retries,
            liveness: Liveness::new(Duration::from_millis(config.upstream.down_for_ms)),
            metrics,
        })
    }

    /// Forwards `out` to `destination`. A read goes to the own region's node, then the
    /// fallback regions' nodes, each tried only if the previous one was unreachable (regions
    /// that just failed go last: no point waiting for them again first); an HTTP answer, even
    /// an error, is final. A write goes to its home region only: when that is unreachable the
    /// answer is `503`, and the write is not offered to anyone else.
    ///
    /// One upstream call site for both kinds, so every request's future has room for one call,
    /// not one per kind (the compiler does not overlap them).
    pub async fn forward<'a>(
        &self,
        regions: &'a Regions,
        destination: Destination<'a>,
        out: &Outgoing,
    ) -> Result<Answer<'a>, RouterError> {
        let read = matches!(destination, Destination::Read);
        let (steps, down) = match destination {
            Destination::Write { .. } => (1, 0),
            Destination::Read => {
                // Which regions count as down, taken once: first the others in read order,
                // then these (a region is at most the 31st: ids are 1..=31).
                let down = regions
                    .read_order()
                    .enumerate()
                    .filter(|(_, r)| self.liveness.is_down(&r.node))
                    .fold(0u32, |mask, (i, _)| mask | 1 << i);
                (2 * regions.read_order().count(), down)
            }
        };
        let mut failures = Vec::new();
        for step in 0..steps {
            let upstream = match destination {
                Destination::Write { home, via } => match via {
                    Via::LocalNode => Upstream::node(home),
                    Via::PeerRouter => Upstream::router(home),
                },
                Destination::Read => {
                    let (pass, i) = (step / (steps / 2), step % (steps / 2));
                    if (down >> i & 1 == 1) != (pass == 1) {
                        continue;
                    }
                    match regions.read_order().nth(i) {
                        Some(region) => Upstream::node(region),
                        None => continue,
                    }
                }
            };
            match self.call(upstream, out, read).await {
                Ok(mut answer) => {
                    let own = regions.own();
                    if read && upstream.region != own.name {
                        self.record_fallback(&own.name, upstream.region);
                        answer.fallback_from = Some(&own.name);
                    }
                    return Ok(answer);
                }
                Err(CallError::Unreachable(detail)) if read => {
                    failures.push(format!("{}: {detail}", upstream.region));
                }
                Err(CallError::Unreachable(detail)) => {
                    return Err(RouterError::HomeRegionUnreachable {
                        region: upstream.region.to_owned(),
                        detail,
                    })
                }
                Err(CallError::Timeout) => {
                    return Err(RouterError::UpstreamTimeout {
                        region: upstream.region.to_owned(),
                    })
                }
            }
        }
        Err(RouterError::ReadUnavailable {
            detail: failures.join("; "),
        })
    }

    fn record_fallback(&self, own: &str, served_by: &str) {
        self.metrics
            .read_fallbacks
            .get_or_create(&FallbackLabels {
                from: own.to_owned(),
                to: served_by.to_owned(),
            })
            .inc();
        tracing::debug!(from = %own, to = %served_by, "read fallback");
    }

    /// One upstream call with the retry and liveness rules of the `upstream` module docs.
    /// `stream_events`: pass a Server-Sent Events answer on as it comes.
    pub async fn call<'a>(
        &self,
        upstream: Upstream<'a>,
        out: &Outgoing,
        stream_events: bool,
    ) -> Result<Answer<'a>, CallError> {
        let start = Instant::now();
        // Pinned here and lent: moved into the deadlines' future, it would take its room twice
        // there (argument and pinned local), in every request's future.
        let attempts = std::pin::pin!(self.attempts(upstream, out, stream_events));
        let result = self.within_deadlines(upstream, start, attempts).await;
        self.record_outcome(upstream, &result, start);
        result.map(|mut answer| {
            answer.upstream_time = start.elapsed();
            answer
        })
    }

    /// `attempts`, bounded by `request_ms`, and cut short as unreachable when the upstream has
    /// shown no sign of life since `start` by the time a liveness probe would still fit in
    /// `unreachable_ms`. One timer serves both deadlines, re-armed for the second: a call
    /// answered in time (nearly all) registers one timer, not two.
    async fn within_deadlines<'a>(
        &self,
        upstream: Upstream<'_>,
        start: Instant,
        mut attempts: Pin<&mut impl Future<Output = Result<Answer<'a>, CallError>>>,
    ) -> Result<Answer<'a>, CallError> {
        let start_at = tokio::time::Instant::from_std(start);
        let give_up = start_at + self.request_timeout;
        let look_for_life = start_at + self.unreachable.saturating_sub(self.probe_timeout);
        let timer = tokio::time::sleep_until(look_for_life.min(give_up));
        tokio::pin!(timer);
        tokio::select! {
            result = &mut attempts => return result,
            () = &mut timer => {}
        }
        if look_for_life >= give_up {
            return Err(CallError::Timeout);
        }
        timer.as_mut().reset(give_up);
        // Finishes only if the upstream shows no sign of life in time. Boxed, as it is rarely
        // needed: its room would otherwise be in every call's future.
        let watchdog = async {
            if Box::pin(self.alive_since(upstream, start)).await {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = &mut attempts => result,
            () = watchdog => Err(CallError::Unreachable(
                "no answer, and no answer to a liveness probe".into(),
            )),
            () = &mut timer => Err(CallError::Timeout),
        }
    }

    /// Metrics and logs of one call, and whether its upstream now counts as down.
    fn record_outcome(
        &self,
        upstream: Upstream<'_>,
        result: &Result<Answer<'_>, CallError>,
        start: Instant,
    ) {
        let outcome = match result {
            Ok(_) => "answered",
            Err(CallError::Unreachable(_)) => "unreachable",
            Err(CallError::Timeout) => "timeout",
        };
        self.metrics
            .upstream_calls
            .get_or_create(&UpstreamLabels {
                region: upstream.label.clone(),
                upstream: upstream.kind_label(),
                outcome,
            })
            .inc();
        match result {
            Ok(_) => {
                self.liveness.mark_up(upstream.base);
                self.metrics
                    .upstream_seconds
                    .get_or_create(&region_label(upstream))
                    .observe(start.elapsed().as_secs_f64());
            }
            Err(CallError::Unreachable(detail)) => {
                tracing::warn!(%upstream, %detail, "upstream unreachable");
                self.liveness.mark_down(upstream.base);
            }
            Err(CallError::Timeout) => tracing::warn!(%upstream, "upstream timed out"),
        }
    }

    /// Sends `out` until it gets an answer, re-sending only after a broken connection.
    async fn attempts<'a>(
        &self,
        upstream: Upstream<'a>,
        out: &Outgoing,
        stream_events: bool,
    ) -> Result<Answer<'a>, CallError> {
        let mut attempt = 0;
        loop {
            let broken = match self.attempt(upstream, out, stream_events).await {
                Ok(answer) => return Ok(answer),
                Err(AttemptError::NotSent(detail)) => return Err(CallError::Unreachable(detail)),
                Err(AttemptError::Broken(error)) => error,
            };
            attempt += 1;
            if attempt > self.retries {
                return Err(CallError::Unreachable(format!(
                    "connection broke on all {attempt} attempts: {}",
                    describe(broken.as_ref())
                )));
            }
            self.metrics
                .retries
                .get_or_create(&region_label(upstream))
                .inc();
            tracing::warn!(%upstream, attempt, error = %describe(broken.as_ref()), "connection broke; re-sending");
        }
    }

    /// Sends `out` once and reads the answer (only its head, for an event stream).
    async fn attempt<'a>(
        &self,
        upstream: Upstream<'a>,
        out: &Outgoing,
        stream_events: bool,
    ) -> Result<Answer<'a>, AttemptError> {
        let pinned = self
            .discovery
            .pin(upstream.base, out.path_and_query.clone())
            .await
            .map_err(|e| AttemptError::NotSent(e.to_string()))?;
        let request = pinned_request(pinned, out.method.clone(), &out.headers, out.body.clone());
        let response = self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                AttemptError::NotSent(format!("cannot connect: {}", describe(&e)))
            } else {
                AttemptError::Broken(e.into())
            }
        })?;
        self.liveness.record_answer(upstream.base);
        let (head, body) = response.into_parts();
        if stream_events && is_event_stream(&head.headers) {
            return Ok(Answer::streamed(upstream, head.status, head.headers, body));
        }
        // An answer that broke off: the request did arrive, and re-sending it with the same
        // Idempotency-Key returns the first result.
        let body = body
            .collect()
            .await
            .map_err(|e| AttemptError::Broken(e.into()))?
            .to_bytes();
        Ok(Answer::full(upstream, head.status, head.headers, body))
    }

    /// `GET path` on the upstream with its own deadline; the status if it answered at all. The
    /// body is read so the connection goes back to the pool (this is also how it is kept warm).
    pub async fn probe(
        &self,
        upstream: Upstream<'_>,
        path: &'static str,
        timeout: Duration,
    ) -> Option<StatusCode> {
        let probe = async {
            let path = PathAndQuery::from_static(path);
            let pinned = self.discovery.pin(upstream.base, path).await.ok()?;
            let request = pinned_request(pinned, Method::GET, &HeaderMap::new(), Bytes::new());
            let response = self.client.request(request).await.ok()?;
            self.liveness.record_answer(upstream.base);
            let status = response.status();
            let _ = response.into_body().collect().await;
            Some(status)
        };
        tokio::time::timeout(timeout, probe).await.ok().flatten()
    }

    /// Is the upstream alive, judged since `since`: it answered anything (a request or a
    /// probe), or, failing that, it answers the liveness probe. Probes are single-flight per
    /// upstream: a waiter that finds a probe under way waits for it and takes its outcome.
    async fn alive_since(&self, upstream: Upstream<'_>, since: Instant) -> bool {
        if self.liveness.answered_since(upstream.base, since) {
            return true;
        }
        let turn = self.liveness.probe_turn(upstream.base);
        let _turn = turn.lock().await;
        if self.liveness.answered_since(upstream.base, since) {
            return true;
        }
        if self.liveness.probe_failed_since(upstream.base, since) {
            return false;
        }
        if self
            .probe(upstream, "/healthz", self.probe_timeout)
            .await
            .is_some()
        {
            return true;
        }
        self.liveness.record_probe_failure(upstream.base);
        false
    }
}

/// A request with `headers` to the address `pinned` names, with the name kept in `Host` (see
/// `discovery`). Built after the address is known, so the request's parts are not held across
/// the lookup.
///
/// The headers are copied into a map with room to spare, not cloned: hyper reuses a request's
/// map for its answer, to which the router then adds its own headers, and a clone (exactly as
/// large as its original) grew twice on the way, rehashing and copying each time.
fn pinned_request(
    pinned: Pinned,
    method: Method,
    headers: &HeaderMap,
    body: Bytes,
) -> Request<OutgoingBody> {
    let mut copy = HeaderMap::with_capacity(headers.len() + 8);
    for (name, value) in headers {
        copy.append(name.clone(), value.clone());
    }
    if let Some(host) = pinned.host {
        copy.insert(header::HOST, host);
    }
    let headers = copy;
    let mut request = Request::new(OutgoingBody::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = pinned.uri;
    *request.headers_mut() = headers;
    request
}

fn region_label(upstream: Upstream<'_>) -> RegionLabels {
    RegionLabels {
        region: upstream.label.clone(),
    }
}

/// An error and its causes on one line (hyper's own message omits the cause).
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
