//! Live event streams through the router (`GET /api/v1/events/{id}/stream`, DESIGN section 10):
//! one upstream stream per event per router (`relay`), fanned out to every client of this
//! router (`subscriber`), each resumed where its `Last-Event-ID` says, with at most
//! `limits.streams_per_address` open per client address (`caps`). The upstream's bytes are cut
//! into whole messages by `frames`.

pub mod caps;
pub mod frames;
pub mod relay;
pub mod subscriber;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method};
use axum::response::Response;
use wire::stream::{BadStreamId, StreamId};

use crate::config::Config;
use crate::error::RouterError;
use crate::headers::{LAST_EVENT_ID, X_HOME_REGION};
use crate::metrics::{Held, Metrics};
use crate::routing::home::read_home;
use crate::routing::regions::Regions;
use crate::streams::caps::StreamCaps;
use crate::streams::relay::{Phase, Relays};
use crate::streams::subscriber::Position;
use crate::upstream::forwarder::Forwarder;

/// The event id segment of a stream request, `GET /api/v1/events/{id}/stream`.
pub fn stream_event<'p>(method: &Method, path: &'p str) -> Option<&'p str> {
    if method != Method::GET {
        return None;
    }
    let (event, tail) = path.strip_prefix("/api/v1/events/")?.split_once('/')?;
    (tail == "stream" && !event.is_empty()).then_some(event)
}

/// A client's `Last-Event-ID`, if it sent one.
pub fn last_event_id(headers: &HeaderMap) -> Result<Option<StreamId>, BadStreamId> {
    headers
        .get(LAST_EVENT_ID)
        .map(|v| v.to_str().map_err(|_| BadStreamId)?.parse())
        .transpose()
}

/// The router's streams: its relays and the per-address cap.
pub struct Streams {
    relays: Arc<Relays>,
    caps: StreamCaps,
    regions: Arc<Regions>,
    keepalive: Duration,
}

impl Streams {
    pub fn new(
        config: &Config,
        forwarder: Arc<Forwarder>,
        regions: Arc<Regions>,
        metrics: Arc<Metrics>,
    ) -> Streams {
        let idle = Duration::from_millis(config.streams.idle_relay_ms);
        Streams {
            relays: Arc::new(Relays::new(forwarder, regions.clone(), idle, metrics)),
            caps: StreamCaps::new(config.limits.streams_per_address),
            regions,
            keepalive: Duration::from_millis(config.streams.keepalive_ms),
        }
    }

    /// `client`'s stream of `event`: the relay's answer head, then its messages; or the
    /// upstream's answer when that was not a stream (`404` for an unknown event), as it is.
    pub async fn open(
        &self,
        event: &str,
        client: IpAddr,
        headers: &HeaderMap,
    ) -> Result<Response, RouterError> {
        let last = last_event_id(headers)?;
        let permit = self
            .caps
            .acquire(client)
            .ok_or(RouterError::TooManyStreams {
                limit: self.caps.limit(),
            })?;
        let closed = || RouterError::ReadUnavailable {
            detail: "the router is stopping".into(),
        };
        let mut rx = self.relays.subscribe(event).ok_or_else(closed)?;
        let phase = rx
            .wait_for(|r| !matches!(r.phase, Phase::Connecting))
            .await
            .map_err(|_| closed())?
            .phase
            .clone();
        let mut response = match phase {
            Phase::Open(head) => {
                let held = (permit, Held::new(&self.relays.metrics().stream_subscribers));
                let body = subscriber::body(rx, Position::new(last), self.keepalive, held);
                let mut response = Response::new(body);
                *response.status_mut() = head.status;
                *response.headers_mut() = head.headers.clone();
                response
            }
            Phase::Refused(refusal) => refusal.response(),
            Phase::Ended | Phase::Connecting => return Err(closed()),
        };
        let path = format!("/api/v1/events/{event}/stream");
        if let Some(home) = read_home(&path, None, &self.regions) {
            response
                .headers_mut()
                .insert(X_HOME_REGION, home.name_header.clone());
        }
        Ok(response)
    }

    /// Ends every stream (the router is stopping).
    pub fn close(&self) {
        self.relays.close();
    }

    /// Relays running now (one per event with clients, or idle for less than
    /// `streams.idle_relay_ms`).
    pub fn relays(&self) -> usize {
        self.relays.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn stream_paths_and_last_event_ids() {
        assert_eq!(
            stream_event(&Method::GET, "/api/v1/events/42/stream"),
            Some("42")
        );
        for (method, path) in [
            (Method::HEAD, "/api/v1/events/42/stream"),
            (Method::POST, "/api/v1/events/42/stream"),
            (Method::GET, "/api/v1/events/42/streams"),
            (Method::GET, "/api/v1/events//stream"),
            (Method::GET, "/api/v1/events/42/stream/x"),
        ] {
            assert_eq!(stream_event(&method, path), None, "{method} {path}");
        }
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers), Ok(None));
        headers.insert(
            LAST_EVENT_ID,
            HeaderValue::from_static("a.0000000000000001"),
        );
        assert_eq!(last_event_id(&headers), Ok(Some(StreamId::at(10, 1))));
        headers.insert(LAST_EVENT_ID, HeaderValue::from_static("nonsense"));
        assert_eq!(last_event_id(&headers), Err(BadStreamId));
    }
}
