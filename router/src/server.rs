//! The router assembled: its routes, the middleware around them, `serve` on a listener, and
//! `RouterService`, the router as a `wire` service for its binary and devcluster.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use wire::headers::X_REQUEST_ID;
use wire::trace::request_span;

use crate::config::Config;
use crate::error::RouterError;
use crate::http::middleware::{stamp, trace_context};
use crate::http::{api, ops};
use crate::state::App;
use crate::trace::RandomRequestIds;
use crate::upstream::warm::warm;

/// Everything under `/api/v1` is forwarded; the router answers its operations endpoints itself.
fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/api/v1", any(api::api))
        .route("/api/v1/{*rest}", any(api::api))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { RouterError::NotFound })
        .method_not_allowed_fallback(|| async { RouterError::MethodNotAllowed })
}

/// The routes with their middleware, outermost last: a request id first, then the trace
/// context, the request span, the id echoed back, the stamp, and a JSON `500` for a panic.
pub fn router(app: Arc<App>) -> axum::Router {
    routes()
        .layer(CatchPanicLayer::custom(|_| {
            RouterError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(middleware::from_fn_with_state(app.clone(), stamp))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(request_span::<axum::body::Body>))
        .layer(middleware::from_fn(trace_context))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, RandomRequestIds))
        .with_state(app)
}

/// Runs the router on `listener` until `shutdown` completes.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_app(App::new(config)?, listener, shutdown).await
}

/// As `serve`, for an `App` already built (tests keep it to read metrics).
pub async fn serve_app(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let warmer = spawn_warmer(&app);
    tracing::info!(
        %addr,
        region = %app.config.region,
        router = %app.config.router_name,
        "router serving"
    );
    // No Nagle delay on small JSON answers.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let result = axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    if let Some(warmer) = warmer {
        warmer.abort();
    }
    result.context("http server")
}

/// Warms upstream connections every `upstream.warm_interval_ms`, from now until aborted;
/// `None` when that interval is 0.
fn spawn_warmer(app: &Arc<App>) -> Option<JoinHandle<()>> {
    let every = Duration::from_millis(app.config.upstream.warm_interval_ms);
    if every.is_zero() {
        return None;
    }
    let app = app.clone();
    Some(tokio::spawn(async move {
        loop {
            warm(&app.forwarder, &app.regions, &app.config).await;
            tokio::time::sleep(every).await;
        }
    }))
}

/// The router as a `wire` service: `wire::service::main` and `serve_from_file` run it.
pub struct RouterService;

impl wire::Service for RouterService {
    type Config = Config;
    const NAME: &'static str = "router";

    async fn serve(
        config: Config,
        listener: TcpListener,
        shutdown: wire::Shutdown,
    ) -> anyhow::Result<()> {
        serve(config, listener, shutdown).await
    }
}
