//! The router assembled: `Front`, the service each client connection gets (API requests
//! straight to the proxy, the rest to the operations routes, every answer with its ids, span
//! and stamp), `serve` on a listener, and `RouterService`, the router as a `wire` service for
//! its binary and devcluster.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::{IncomingStream, Listener, ListenerExt};
use futures::FutureExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_service::Service;
use tracing::Instrument;
use wire::trace::request_span;

use crate::config::Config;
use crate::error::RouterError;
use crate::http::api::{api, is_api};
use crate::http::middleware::{request_kind, stamp, trace_answer, Ids};
use crate::http::ops;
use crate::state::App;
use crate::upstream::warm::warm;

/// What the router answers itself: its operations endpoints, and `404`/`405` for anything that
/// is neither one of them nor an API path (those never reach this table; see `Front`).
fn ops_routes(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { RouterError::NotFound })
        .method_not_allowed_fallback(|| async { RouterError::MethodNotAllowed })
        .with_state(app)
}

/// Sends API requests straight to the proxy and anything else to `ops_routes`, inside the
/// request span and with the request id and trace context (`Ids`); stamps every answer; turns
/// a panic into a JSON `500`. An API request meets no route table, extractor or boxed layer: a
/// proxy should not pay for them on every request. One per client connection, from `peer`.
#[derive(Clone)]
pub struct Front {
    app: Arc<App>,
    ops: axum::Router,
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
        let Front { app, ops, peer } = self.clone();
        let answer = async move {
            tracing::debug!("started processing request");
            let kind = request_kind(&request);
            let routed = async {
                if is_api(request.uri().path()) {
                    api(&app, peer, request).await
                } else {
                    let Ok(response) = { ops }.call(request).await;
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
            trace_answer(&response, start.elapsed());
            ids.on_response(&mut response);
            Ok(response)
        };
        Box::pin(answer.instrument(span))
    }
}

/// Makes each connection's service, with the peer's address in it (read once per connection,
/// not carried in every request's extensions).
#[derive(Clone)]
struct MakeConnection {
    app: Arc<App>,
    ops: axum::Router,
}

impl<L> Service<IncomingStream<'_, L>> for MakeConnection
where
    L: Listener<Addr = SocketAddr>,
{
    type Response = Front;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Front, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'_, L>) -> Self::Future {
        std::future::ready(Ok(Front {
            app: self.app.clone(),
            ops: self.ops.clone(),
            peer: *stream.remote_addr(),
        }))
    }
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
    let pruner = spawn_pruner(&app);
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
    let make = MakeConnection {
        ops: ops_routes(app.clone()),
        app,
    };
    let result = axum::serve(listener, make)
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(warmer) = warmer {
        warmer.abort();
    }
    pruner.abort();
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
        listener: TcpListener,
        shutdown: wire::Shutdown,
    ) -> anyhow::Result<()> {
        serve(config, listener, shutdown).await
    }
}
