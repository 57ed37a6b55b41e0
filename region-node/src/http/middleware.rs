//! What wraps every request: request ids, `X-Served-By`, the request time limit, and the
//! per-route request counter and latency histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{MakeRequestId, RequestId};
use wire::headers::X_SERVED_BY;

use crate::error::ApiError;
use crate::ops::metrics::{RequestLabels, RouteLabels};
use crate::state::Node;

/// Request ids for requests that arrive without one (the router sends its own).
#[derive(Clone, Default)]
pub struct NodeRequestIds(Arc<AtomicU64>);

impl MakeRequestId for NodeRequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("node-{}-{n}", std::process::id()))
            .ok()
            .map(RequestId::new)
    }
}

/// Stamps `X-Served-By` and bounds the request's time, so a stuck request answers `504`.
pub async fn stamp_and_time_limit(
    State(node): State<Arc<Node>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response =
        match tokio::time::timeout(node.config.request_timeout(), next.run(request)).await {
            Ok(response) => response,
            Err(_) => ApiError::Timeout.into_response(),
        };
    response
        .headers_mut()
        .insert(X_SERVED_BY, node.served_by.clone());
    response
}

/// Counts and times every request under its route template (not its raw path, which would make
/// one series per id).
pub async fn track(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let metrics = &node.metrics;
    metrics
        .latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
