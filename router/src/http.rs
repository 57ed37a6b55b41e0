//! The router's HTTP surface: everything under `/api/v1` is forwarded (nodes answer unknown
//! API routes themselves), and the router serves its own operations endpoints.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;

use crate::app::App;
use crate::error::RouterError;
use crate::{ops, proxy};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1", any(api))
        .route("/api/v1/{*rest}", any(api))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { RouterError::NotFound })
        .method_not_allowed_fallback(|| async { RouterError::MethodNotAllowed })
}

/// Any API request: routed and forwarded.
async fn api(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    proxy::handle(&app, peer, request).await
}
