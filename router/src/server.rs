//! The router assembled: `Front`, the service each client connection gets (API requests
//! straight to the proxy, `OPTIONS` and CORS answered here, the rest to the public routes,
//! every answer with its ids, span and stamp), the operations routes of the operations
//! listener, `serve` on both listeners, and `RouterService`, the router as a `wire` service for
//! its binary and devcluster.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::FutureExt;
use tokio::task::JoinHandle;
use tower_service::Service;
use tracing::Instrument;
use wire::server::Listeners;
use wire::trace::request_span;

use crate::config::Config;
use crate::error::RouterError;
use crate::http::api::{api, is_api};
use crate::http::middleware::{request_kind, stamp, trace_answer, Ids};
use crate::http::ops;
use crate::state::App;
use crate::upstream::warm::warm;

/// What the router answers itself on the API listener: health for load balancers and peers
/// (`/healthz`, `/readyz`), and `404`/`405` for anything that is neither one of them nor an API
/// path (those never reach this table; see `Front`). `/metrics` is only on `ops_routes`.
fn public_routes(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(|| async { RouterError::NotFound })
        .method_not_allowed_fallback(|| async { RouterError::MethodNotAllowed })
        .with_state(app)
}

/// The operations listener's routes: health again, and the metrics.
fn ops_routes(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { RouterError::NotFound })
        .method_not_allowed_fallback(|| async { RouterError::MethodNotAllowed })
        .with_state(app)
}

/// Sends API requests straight to the proxy, answers `OPTIONS` itself (CORS preflights
/// included) and sends anything else to `public_routes`, inside the request span and with the
/// request id and trace context (`Ids`); stamps every answer, with CORS headers for an allowed
/// origin; turns a panic into a JSON `500`. An API request meets no route table, extractor or
/// boxed layer: a proxy should not pay for them on every request. One per client connection,
/// from `peer`.
#[derive(Clone)]
pub struct Front {
    app: Arc<App>,
    public: axum::Router,
    peer: SocketAddr,
}

impl Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let start = Instant::now();
        let ids = Ids::on_request(&mut request);
        let span = request_span(&request);
        let Front { app, public, peer } = self.clone();
        let answer = async move {
            tracing::debug!("started processing request");
            let kind = request_kind(&request);
            let origin = app.cors.allowed_origin(request.headers());
            let routed = async {
                if request.method() == Method::OPTIONS {
                    (app.cors.options(origin.as_ref(), request.headers()), None)
                } else if is_api(request.uri().path()) {
                    api(&app, peer, request).await
                } else {
                    let Ok(response) = { public }.call(request).await;
                    (response, None)
                }
            };
            let (mut response, upstream) = AssertUnwindSafe(routed)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    let error = RouterError::Internal(anyhow::anyhow!("handler panicked"));
                    (error.into_response(), None)
                });
            stamp(
                &app,
                kind,
                start.elapsed(),
                upstream.as_ref(),
                &mut response,
            );
            app.cors.stamp(origin, response.headers_mut());
            trace_answer(&response, start.elapsed());
            ids.on_response(&mut response);
            Ok(response)
        };
        Box::pin(answer.instrument(span))
    }
}

/// Runs the router on `listeners` (API and operations) until `shutdown` completes.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_app(App::new(config)?, listeners, shutdown).await
}

/// As `serve`, for an `App` already built (tests keep it to read metrics).
pub async fn serve_app(
    app: Arc<App>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let warmer = spawn_warmer(&app);
    let pruner = spawn_pruner(&app);
    tracing::info!(
        addr = %listeners.api_addr()?,
        ops = %listeners.ops_addr()?,
        region = %app.config.region,
        router = %app.config.router_name,
        "router serving"
    );
    let public = public_routes(app.clone());
    let ops = ops_routes(app.clone());
    let front = |peer| Front {
        app: app.clone(),
        public: public.clone(),
        peer,
    };
    // Streams never end by themselves, and a graceful stop waits for every answer: end them
    // first.
    let shutdown = {
        let app = app.clone();
        async move {
            shutdown.await;
            app.streams.close();
        }
    };
    wire::server::serve(listeners, &app.config.connections, front, ops, shutdown).await;
    if let Some(warmer) = warmer {
        warmer.abort();
    }
    pruner.abort();
    Ok(())
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

/// Forgets idle client addresses every `limits.prune_interval_ms`, from now until aborted, so
/// the rate limits' state stays bounded.
fn spawn_pruner(app: &Arc<App>) -> JoinHandle<()> {
    let every = Duration::from_millis(app.config.limits.prune_interval_ms);
    let app = app.clone();
    tokio::spawn(wire::limits::prune_loop(every, move || app.limits.prune()))
}

/// The router as a `wire` service: `wire::service::main` and `serve_from_file` run it.
pub struct RouterService;

impl wire::Service for RouterService {
    type Config = Config;
    const NAME: &'static str = "router";

    async fn serve(
        config: Config,
        listeners: Listeners,
        shutdown: wire::Shutdown,
    ) -> anyhow::Result<()> {
        serve(config, listeners, shutdown).await
    }
}
