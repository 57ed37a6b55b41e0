//! One upstream stream per event per router (`Relays`), fanned out to every client of this
//! router through one `watch` channel of the relay's phase and latest message.
//!
//! Why `watch` and not `broadcast`: every message is a whole state, so a client only ever needs
//! the newest one. A `watch` holds exactly one message (shared `Bytes`) whatever the number of
//! clients; a client that reads slowly simply gets the newest state when it is ready, rather
//! than a ring of old ones to catch up on (or a `Lagged` error). 50,000 clients cost 50,000
//! receivers, not 50,000 queues.
//!
//! A relay reads its stream from the local node (from other regions' nodes, as reads do, when
//! that one is down). When the upstream stream breaks it reconnects with its own latest id as
//! `Last-Event-ID` (after a growing pause), its clients none the wiser. It ends when it has had
//! no client for `streams.idle_relay_ms`, or when its first answer was not a stream: that
//! answer (a `404` JSON for an unknown event, say) then goes to the clients as it is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::uri::PathAndQuery;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use wire::headers::{SERVER_TIMING, TRACEPARENT, X_REQUEST_ID};
use wire::stream::StreamId;

use crate::error::RouterError;
use crate::headers::LAST_EVENT_ID;
use crate::metrics::{Held, Metrics};
use crate::routing::regions::Regions;
use crate::streams::frames::{Frame, Frames};
use crate::trace::{new_request_id, new_traceparent};
use crate::upstream::answer::AnswerBody;
use crate::upstream::forwarder::{Destination, Forwarder};
use crate::upstream::request::Outgoing;

/// The first pause before reconnecting upstream, doubled after each failure up to
/// `LAST_RETRY`. A node restarting is back within seconds; a region down for longer costs one
/// attempt every few seconds per event.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// The upstream's answer head, shared by every client of a relay.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// An answer that is not a stream, for the clients waiting for the relay's first one.
#[derive(Debug)]
pub enum Refusal {
    /// The node's own answer (`404 not_found` for an unknown event), passed on as it is.
    Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    /// No node could be asked.
    Error(RouterError),
}

impl Refusal {
    pub fn response(&self) -> Response {
        match self {
            Refusal::Answer {
                status,
                headers,
                body,
            } => {
                let mut response = Response::new(Body::from(body.clone()));
                *response.status_mut() = *status;
                *response.headers_mut() = headers.clone();
                response
            }
            Refusal::Error(error) => error.envelope().into_response(),
        }
    }
}

/// Where a relay is.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Waiting for the upstream's first answer.
    Connecting,
    /// Streaming (or reconnecting after a break, unseen by clients).
    Open(Arc<Head>),
    /// The upstream's answer was not a stream: the relay is over.
    Refused(Arc<Refusal>),
    /// Closed with the router: streams end.
    Ended,
}

/// One message as the upstream framed it, numbered by the relay (`seq`, from 1) so a client
/// can tell a new message from a change of phase.
#[derive(Debug, Clone)]
pub struct Message {
    pub seq: u64,
    pub id: Option<StreamId>,
    pub bytes: Bytes,
}

/// What a relay's clients watch.
#[derive(Debug, Clone)]
pub struct Relayed {
    pub phase: Phase,
    pub latest: Option<Message>,
}

type Sender = Arc<watch::Sender<Relayed>>;

struct Entry {
    tx: Sender,
    task: AbortHandle,
}

/// The relays of one router, by event (the id as the path wrote it), and what they need to
/// reach upstream.
pub struct Relays {
    /// `None` once the router closed its streams.
    relays: Mutex<Option<HashMap<String, Entry>>>,
    forwarder: Arc<Forwarder>,
    regions: Arc<Regions>,
    idle: Duration,
    metrics: Arc<Metrics>,
}

impl Relays {
    pub fn new(
        forwarder: Arc<Forwarder>,
        regions: Arc<Regions>,
        idle: Duration,
        metrics: Arc<Metrics>,
    ) -> Relays {
        Relays {
            relays: Mutex::new(Some(HashMap::new())),
            forwarder,
            regions,
            idle,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A receiver of `event`'s relay, started if there is none; `None` once closed. Under the
    /// one lock, so a relay never ends for want of clients while one is joining it.
    pub fn subscribe(self: &Arc<Self>, event: &str) -> Option<watch::Receiver<Relayed>> {
        let mut relays = self.relays.lock().unwrap_or_else(PoisonError::into_inner);
        let relays = relays.as_mut()?;
        if let Some(entry) = relays.get(event) {
            return Some(entry.tx.subscribe());
        }
        let (tx, rx) = watch::channel(Relayed {
            phase: Phase::Connecting,
            latest: None,
        });
        let tx = Arc::new(tx);
        let task = tokio::spawn(self.clone().run(event.to_owned(), tx.clone()));
        relays.insert(
            event.to_owned(),
            Entry {
                tx,
                task: task.abort_handle(),
            },
        );
        Some(rx)
    }

    /// Relays running now.
    pub fn len(&self) -> usize {
        self.relays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, HashMap::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends every relay and its clients' streams, and starts no more (the router is stopping:
    /// a stream never ends by itself, and a graceful stop waits for every answer to end).
    pub fn close(&self) {
        let relays = self
            .relays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        for (_, entry) in relays.into_iter().flatten() {
            entry.task.abort();
            entry.tx.send_modify(|r| r.phase = Phase::Ended);
        }
    }

    /// Forgets `event`'s relay if it is still `tx`'s and, unless `always`, has no client.
    fn remove(&self, event: &str, tx: &Sender, always: bool) -> bool {
        let mut relays = self.relays.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(relays) = relays.as_mut() else {
            return true;
        };
        let ours = relays.get(event).is_some_and(|e| Arc::ptr_eq(&e.tx, tx));
        if ours && (always || tx.receiver_count() == 0) {
            relays.remove(event);
            return true;
        }
        !ours
    }

    /// Completes once the relay has had no client for `idle`, and is forgotten.
    async fn idle_end(&self, event: &str, tx: &Sender) {
        loop {
            tx.closed().await;
            tokio::time::sleep(self.idle).await;
            if self.remove(event, tx, false) {
                return;
            }
        }
    }

    /// The relay's task: connects, relays, reconnects, until idle or refused.
    async fn run(self: Arc<Self>, event: String, tx: Sender) {
        let _running = Held::new(&self.metrics.stream_relays);
        let path = match PathAndQuery::try_from(format!("/api/v1/events/{event}/stream")) {
            Ok(path) => path,
            Err(_) => {
                let refusal = Refusal::Error(RouterError::NotFound);
                tx.send_modify(|r| r.phase = Phase::Refused(Arc::new(refusal)));
                self.remove(&event, &tx, true);
                return;
            }
        };
        let mut progress = Progress::default();
        let mut pause = FIRST_RETRY;
        loop {
            let outcome = tokio::select! {
                () = self.idle_end(&event, &tx) => return,
                outcome = self.relay_once(&path, &tx, &mut progress) => outcome,
            };
            let refusal = match outcome {
                Outcome::Broke { lasted } => {
                    // A stream that lasted was a recovery: the next break starts again from
                    // the first pause. One that ends as soon as it opens is a failure too.
                    if lasted >= LAST_RETRY {
                        pause = FIRST_RETRY;
                    }
                    None
                }
                Outcome::Unreachable(error) => Some(Refusal::Error(error)),
                Outcome::Answered(refusal) => Some(refusal),
            };
            if let Some(refusal) = refusal {
                // Before the first stream: the clients get this answer. After it: a client
                // error (the event is gone) ends the streams; anything else is retried.
                let client_error =
                    matches!(&refusal, Refusal::Answer { status, .. } if status.is_client_error());
                if !progress.opened || client_error {
                    if let Refusal::Error(error) = &refusal {
                        tracing::warn!(%event, %error, "event stream relay refused");
                    }
                    tx.send_modify(|r| r.phase = Phase::Refused(Arc::new(refusal)));
                    self.remove(&event, &tx, true);
                    return;
                }
                tracing::debug!(%event, ?pause, "event stream upstream failed; retrying");
            }
            tokio::select! {
                () = self.idle_end(&event, &tx) => return,
                () = tokio::time::sleep(pause) => {}
            }
            self.metrics.stream_reconnects.inc();
            pause = (pause * 2).min(LAST_RETRY);
        }
    }

    /// One upstream stream, from the request to its end.
    async fn relay_once(
        &self,
        path: &PathAndQuery,
        tx: &Sender,
        progress: &mut Progress,
    ) -> Outcome {
        let out = upstream_request(path, progress.last);
        let answer = match self
            .forwarder
            .forward(&self.regions, Destination::Read, &out)
            .await
        {
            Ok(answer) => answer,
            Err(error) => return Outcome::Unreachable(error),
        };
        let (status, mut headers, body) = answer.into_parts();
        remove_per_request_headers(&mut headers);
        let body = match body {
            AnswerBody::Stream(body) if status.is_success() => body,
            AnswerBody::Stream(_) => {
                return Outcome::Answered(Refusal::Answer {
                    status,
                    headers,
                    body: Bytes::new(),
                })
            }
            AnswerBody::Full(body) => {
                return Outcome::Answered(Refusal::Answer {
                    status,
                    headers,
                    body,
                })
            }
        };
        progress.opened = true;
        tx.send_modify(|r| r.phase = Phase::Open(Arc::new(Head { status, headers })));
        let start = Instant::now();
        relay_frames(body, tx, progress).await;
        Outcome::Broke {
            lasted: start.elapsed(),
        }
    }
}

/// What a relay knows across its upstream connections.
#[derive(Debug, Default)]
struct Progress {
    /// A stream was open once: its clients have their answer head.
    opened: bool,
    /// The id of the latest message, for `Last-Event-ID` on a reconnect.
    last: Option<StreamId>,
    seq: u64,
}

/// How one upstream connection ended.
enum Outcome {
    /// A stream that ended or broke after `lasted`.
    Broke { lasted: Duration },
    /// No node answered.
    Unreachable(RouterError),
    /// An answer that is not a stream.
    Answered(Refusal),
}

/// Publishes each whole message of `body` as it arrives, until the body ends or breaks.
async fn relay_frames(mut body: Incoming, tx: &Sender, progress: &mut Progress) {
    let mut frames = Frames::default();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map(|f| f.into_data()) else {
            return;
        };
        let Ok(data) = data else { continue };
        if frames.push(&data).is_err() {
            tracing::warn!("event stream upstream sent an endless frame; reconnecting");
            return;
        }
        while let Some(frame) = frames.next_frame() {
            let Frame::Message { id, bytes } = frame else {
                continue;
            };
            progress.seq += 1;
            progress.last = id.or(progress.last);
            let message = Message {
                seq: progress.seq,
                id,
                bytes,
            };
            tx.send_modify(|r| r.latest = Some(message));
        }
    }
}

/// The relay's own request: no client's headers (it serves many), fresh ids for the node's
/// logs, and its latest id so a reconnect neither repeats nor goes back.
fn upstream_request(path: &PathAndQuery, last: Option<StreamId>) -> Outgoing {
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static(wire::stream::CONTENT_TYPE),
    );
    headers.insert(X_REQUEST_ID, new_request_id());
    headers.insert(TRACEPARENT, new_traceparent());
    if let Some(last) = last {
        if let Ok(v) = HeaderValue::from_str(&last.to_string()) {
            headers.insert(LAST_EVENT_ID, v);
        }
    }
    Outgoing {
        method: Method::GET,
        path_and_query: path.clone(),
        headers,
        body: Bytes::new(),
    }
}

/// Headers of the relay's own request, which would mislabel its clients' answers (each gets
/// its own request id and timing).
fn remove_per_request_headers(headers: &mut HeaderMap) {
    for name in [X_REQUEST_ID, TRACEPARENT, SERVER_TIMING] {
        headers.remove(name);
    }
}
