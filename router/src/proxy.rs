//! One API request through the router: the client's region, the routing plan, the headers sent
//! upstream (an idempotency key on every write, the hop mark on writes to a peer router), the
//! forwarding, and the labels on the answer (home region, idempotency key).

use std::net::IpAddr;

use axum::body::Bytes;
use axum::http::request::Parts;
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use wire::headers::IDEMPOTENCY_KEY;

use crate::error::RouterError;
use crate::headers::{X_HOME_REGION, X_ROUTER_HOP};
use crate::routing::plan::{plan, Plan, RouteInput, Via};
use crate::state::App;
use crate::trace;
use crate::upstream::answer::{Answer, UpstreamTiming};
use crate::upstream::forwarder::Destination;
use crate::upstream::hygiene::outgoing_headers;
use crate::upstream::request::Outgoing;

/// The outcome of one API request, and what goes on its response whether it was forwarded or
/// refused.
pub struct Proxied<'a> {
    pub answer: Result<Answer<'a>, RouterError>,
    /// The home region of the id the request named, if any.
    pub home: Option<HeaderValue>,
    /// A write's key, returned so a client whose write failed in transit can retry it safely.
    pub idempotency_key: Option<HeaderValue>,
}

/// Routes and forwards one API request from `peer`, its body already read. The request's own
/// headers become the upstream's (cleaned and completed), not a copy of them.
pub async fn proxy(app: &App, peer: IpAddr, parts: Parts, body: Bytes) -> Proxied<'_> {
    let client = app.client_regions.resolve(peer, &parts.headers);
    let plan = plan(
        &RouteInput {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            body: &body,
            client_region: client.region,
            from_peer_router: parts.headers.contains_key(X_ROUTER_HOP),
        },
        &app.regions,
    );
    let home = plan
        .as_ref()
        .ok()
        .and_then(Plan::home)
        .map(|h| h.name_header.clone());
    let destination = match plan {
        Err(error) => {
            return Proxied {
                answer: Err(error),
                home,
                idempotency_key: None,
            }
        }
        Ok(Plan::Read { .. }) => Destination::Read,
        Ok(Plan::Write { home, via }) => {
            tracing::debug!(home = %home.name, ?via, client_region = client.region, "write");
            Destination::Write { home, via }
        }
    };
    // Always a configured region (the client-region table holds only those).
    let client_region = app.regions.by_name(client.region).map(|r| &r.name_header);
    let Parts {
        method,
        uri,
        headers,
        ..
    } = parts;
    let headers = outgoing_headers(headers, peer, client_region);
    let mut out = outgoing(method, &uri, headers, body);
    let idempotency_key = match destination {
        Destination::Read => None,
        Destination::Write { via, .. } => Some(write_headers(app, via, &mut out.headers)),
    };
    let answer = app.forwarder.forward(&app.regions, destination, &out).await;
    Proxied {
        answer,
        home,
        idempotency_key,
    }
}

/// A write's headers: an idempotency key (returned too) and, through a peer router, the hop
/// mark.
fn write_headers(app: &App, via: Via, headers: &mut HeaderMap) -> HeaderValue {
    let key = idempotency_key(headers);
    if via == Via::PeerRouter {
        headers.insert(X_ROUTER_HOP, app.name.clone());
    }
    key
}

/// The write's `Idempotency-Key`, minted and added when the client sent none: a key on every
/// write lets the router (and the client) re-send it safely.
fn idempotency_key(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(key) = headers.get(&IDEMPOTENCY_KEY) {
        return key.clone();
    }
    let key = trace::idempotency_key();
    headers.insert(IDEMPOTENCY_KEY, key.clone());
    key
}

fn outgoing(method: Method, uri: &Uri, headers: HeaderMap, body: Bytes) -> Outgoing {
    Outgoing {
        method,
        path_and_query: uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        headers,
        body,
    }
}

impl<'a> Proxied<'a> {
    /// The client's response, and the upstream's timing when one answered.
    pub fn into_response(self) -> (Response, Option<UpstreamTiming<'a>>) {
        let (mut response, timing) = match self.answer {
            Ok(answer) => {
                let (response, timing) = answer.into_response();
                (response, Some(timing))
            }
            Err(error) => (error.into_response(), None),
        };
        let headers = response.headers_mut();
        if let Some(home) = self.home {
            headers.insert(X_HOME_REGION, home);
        }
        if let Some(key) = self.idempotency_key {
            headers.insert(IDEMPOTENCY_KEY, key);
        }
        (response, timing)
    }
}
