//! The node assembled: the axum router of the API listener with its middleware, the
//! operations listener's router, and `serve`, which runs both with the background loops
//! (machine-lease renewal, expiry sweeper, queue serving loop, queue gauges, replica lag watch,
//! rate-limit pruner) until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware;
use axum::response::IntoResponse;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use wire::headers::X_REQUEST_ID;
use wire::server::Listeners;

use crate::config::Config;
use crate::error::ApiError;
use crate::http::extract::BodyLimit;
use crate::http::middleware::{stamp_and_time_limit, track, NodeRequestIds};
use crate::identity::lease::MachineLease;
use crate::ops::{queue_metrics, sweeper};
use crate::queue::serving;
use crate::state::Node;

/// The API listener's routes and middleware, outermost last.
pub fn router(node: Arc<Node>) -> Router {
    let body_limit = node.config.http.body_limit_bytes;
    Router::new()
        .merge(crate::http::api_routes())
        .merge(crate::http::health_routes())
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .route_layer(middleware::from_fn_with_state(node.clone(), track))
        .layer(middleware::from_fn_with_state(
            node.clone(),
            stamp_and_time_limit,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(BodyLimit(body_limit)))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|r: &Request| wire::trace::request_span(r)),
        )
        .layer(SetRequestIdLayer::new(
            X_REQUEST_ID,
            NodeRequestIds::default(),
        ))
        .with_state(node)
}

/// The operations listener's routes: `/metrics`, `/cluster` and health, with no API
/// middleware (they are not API requests, and are not counted as such).
pub fn ops_router(node: Arc<Node>) -> Router {
    crate::http::health_routes()
        .merge(crate::http::ops_only_routes())
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(node)
}

/// Runs the node on `listeners` until `shutdown` completes: HTTP (API and operations), the
/// machine-lease renewal, the expiry sweeper, the queue serving loop and gauges, the lag watch
/// and the rate-limit pruner. The
/// lease is given back on the
/// way out.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let node = Node::start(config).await?;
    serve_node(node, listeners, shutdown).await
}

/// As `serve`, for a node already started (tests keep the `Node` to inspect it).
pub async fn serve_node(
    node: Arc<Node>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let lease: Arc<MachineLease> = node.ids.lease_handle();
    let pruned = node.clone();
    let background = [
        tokio::spawn(lease.clone().keep_renewed(node.pool.clone())),
        tokio::spawn(sweeper::run(node.clone())),
        tokio::spawn(serving::run(node.clone())),
        tokio::spawn(queue_metrics::run(node.clone())),
        tokio::spawn(node.readers.clone().watch()),
        tokio::spawn(wire::limits::prune_loop(
            Duration::from_millis(node.config.limits.prune_interval_ms),
            move || pruned.limits.prune(),
        )),
    ];
    tracing::info!(
        addr = %listeners.api_addr()?,
        ops = %listeners.ops_addr()?,
        region = %node.config.region,
        node = %node.config.node_name,
        machine = lease.machine(),
        "region-node serving"
    );
    let api = router(node.clone());
    // Streams never end by themselves: they are ended before the graceful stop waits for
    // requests in flight.
    let streams = node.clone();
    let shutdown = async move {
        shutdown.await;
        streams.streams.close();
    };
    wire::server::serve(
        listeners,
        &node.config.connections,
        |_| api.clone(),
        ops_router(node.clone()),
        shutdown,
    )
    .await;
    for task in background {
        task.abort();
    }
    if let Err(error) = lease.release(&node.pool).await {
        tracing::warn!(%error, "could not release the machine lease");
    }
    node.pool.close().await;
    Ok(())
}
