//! One API request, end to end: read the body (bounded), work out the client's region, decide
//! the route, forward, and label the answer with the home region and idempotency key.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use wire::headers::IDEMPOTENCY_KEY;

use crate::app::App;
use crate::error::RouterError;
use crate::forward::{outgoing_headers, Outgoing};
use crate::headers::{X_HOME_REGION, X_ROUTER_HOP};
use crate::routing::{self, Plan, RouteInput, Via};
use crate::trace;

/// What goes on the response whether the request was forwarded or refused.
#[derive(Default)]
struct Labels {
    home: Option<HeaderValue>,
    idempotency_key: Option<HeaderValue>,
}

pub async fn handle(app: &App, peer: SocketAddr, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut labels = Labels::default();
    let mut response = forward(app, peer, &parts, body, &mut labels)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let headers = response.headers_mut();
    if let Some(home) = labels.home {
        headers.insert(X_HOME_REGION, home);
    }
    // Returned so a client whose write failed in transit can retry it safely.
    if let Some(key) = labels.idempotency_key {
        headers.insert(IDEMPOTENCY_KEY, key);
    }
    response
}

async fn forward(
    app: &App,
    peer: SocketAddr,
    parts: &Parts,
    body: Body,
    labels: &mut Labels,
) -> Result<Response, RouterError> {
    let body = read_body(body, &parts.headers, app.config.http.body_limit_bytes).await?;
    let client = app.client_regions.resolve(peer.ip(), &parts.headers);
    let plan = routing::plan(
        &RouteInput {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            body: &body,
            client_region: &client.region,
            from_peer_router: parts.headers.contains_key(X_ROUTER_HOP),
        },
        &app.regions,
    );
    let home = match &plan {
        Ok(Plan::Read { home }) => *home,
        Ok(Plan::Write { home, .. }) => Some(*home),
        Err(_) => None,
    };
    labels.home = home.and_then(|h| HeaderValue::from_str(&h.name).ok());
    let mut headers = outgoing_headers(&parts.headers, peer.ip(), &client.region);
    let outgoing = |headers: HeaderMap| Outgoing {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers,
        body: body.clone(),
    };
    let answer = match plan? {
        Plan::Read { .. } => app.forwarder.read(&app.regions, &outgoing(headers)).await?,
        Plan::Write { home, via } => {
            // A key on every write lets the router (and the client) re-send it safely.
            let key = match headers.get(&IDEMPOTENCY_KEY) {
                Some(key) => key.clone(),
                None => {
                    let key = HeaderValue::from_str(&trace::idempotency_key())
                        .map_err(|e| RouterError::Internal(e.into()))?;
                    headers.insert(IDEMPOTENCY_KEY, key.clone());
                    key
                }
            };
            labels.idempotency_key = Some(key);
            if via == Via::PeerRouter {
                headers.insert(X_ROUTER_HOP, app.name.clone());
            }
            tracing::debug!(home = %home.name, ?via, client_region = %client.region, "write");
            app.forwarder.write(home, via, &outgoing(headers)).await?
        }
    };
    Ok(answer.into_response())
}

/// The whole request body, refused with `413` past `limit` (early, from `Content-Length`,
/// when the client declares it).
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, RouterError> {
    let too_large = || RouterError::PayloadTooLarge { limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RouterError::Validation(format!("could not read the request body: {e}"))
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}
