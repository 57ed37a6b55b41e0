//! The router: its shared state, middleware, and `serve`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use wire::headers::{SERVER_TIMING, TRACEPARENT, X_REQUEST_ID, X_SERVED_BY};
use wire::ServiceConfig;

use crate::client_region::ClientRegions;
use crate::config::Config;
use crate::discovery::Discovery;
use crate::error::RouterError;
use crate::forward::{Forwarder, Upstream, UpstreamTiming};
use crate::metrics::{Metrics, RequestLabels};
use crate::regions::Regions;
use crate::{http, routing, trace};

/// Everything a request needs, shared by all of them.
pub struct App {
    pub config: Config,
    pub regions: Regions,
    pub client_regions: ClientRegions,
    pub forwarder: Forwarder,
    pub metrics: Arc<Metrics>,
    /// `<region>/<router>`: `X-Served-By` on answers the router gives itself, and the hop
    /// header on writes it sends to a peer router.
    pub name: HeaderValue,
}

impl App {
    /// Validates the configuration and builds the resolver and the upstream client.
    pub fn new(config: Config) -> anyhow::Result<Arc<App>> {
        config.validate()?;
        let regions = Regions::from_config(&config)?;
        let client_regions = ClientRegions::new(
            config.region.clone(),
            regions.names(),
            config.trusted_proxies.clone(),
            config
                .client_region_cidrs
                .iter()
                .map(|e| (e.cidr, e.region.clone()))
                .collect(),
        );
        let metrics = Arc::new(Metrics::new());
        let discovery = Discovery::new(&config.dns).context("building the DNS resolver")?;
        let forwarder = Forwarder::new(&config, discovery, metrics.clone())
            .context("building the upstream HTTP client")?;
        let name = HeaderValue::from_str(&format!("{}/{}", config.region, config.router_name))
            .context("region and router name must be header-safe")?;
        Ok(Arc::new(App {
            config,
            regions,
            client_regions,
            forwarder,
            metrics,
            name,
        }))
    }

    /// `GET /healthz` on the local node and every peer router, so connections are warm (and
    /// DNS answers fresh) before the next request needs them.
    async fn warm(&self) {
        let own = self.regions.own();
        let mut targets = vec![Upstream::node(own)];
        for peer in self.regions.all().iter().filter(|r| r.name != own.name) {
            for _ in 0..self.config.upstream.warm_connections.max(1) {
                targets.push(Upstream::router(peer));
            }
        }
        let timeout = Duration::from_millis(self.config.timeouts.unreachable_ms);
        futures::future::join_all(
            targets
                .into_iter()
                .map(|u| self.forwarder.probe(u, "/healthz", timeout)),
        )
        .await;
    }
}

pub fn router(app: Arc<App>) -> axum::Router {
    http::routes()
        .layer(CatchPanicLayer::custom(|_| {
            RouterError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(middleware::from_fn_with_state(app.clone(), stamp))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(wire::trace::request_span::<axum::body::Body>),
        )
        .layer(middleware::from_fn(trace_context))
        .layer(SetRequestIdLayer::new(
            X_REQUEST_ID,
            trace::RandomRequestIds,
        ))
        .with_state(app)
}

/// Passes a valid W3C `traceparent` on unchanged and starts a trace for requests without one
/// (or with a malformed one), so the node's logs join the router's. The client gets it back.
async fn trace_context(mut request: Request, next: Next) -> Response {
    let incoming = request
        .headers()
        .get(TRACEPARENT)
        .filter(|v| v.to_str().is_ok_and(trace::is_valid_traceparent))
        .cloned();
    let traceparent = match incoming {
        Some(v) => v,
        None => {
            let v = HeaderValue::from_str(&trace::new_traceparent())
                .unwrap_or_else(|_| HeaderValue::from_static("-"));
            request.headers_mut().insert(TRACEPARENT, v.clone());
            v
        }
    };
    let mut response = next.run(request).await;
    response.headers_mut().insert(TRACEPARENT, traceparent);
    response
}

/// `Server-Timing` (router time and upstream time, after the node's own entries),
/// `X-Served-By` for answers the router gave itself, and the request counter.
async fn stamp(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let kind = if !request.uri().path().starts_with("/api/") {
        "ops"
    } else if routing::is_read(request.method()) {
        "read"
    } else {
        "write"
    };
    let mut response = next.run(request).await;
    let total = start.elapsed();
    let upstream = response.extensions().get::<UpstreamTiming>().cloned();
    let headers = response.headers_mut();
    if !headers.contains_key(X_SERVED_BY) {
        headers.insert(X_SERVED_BY, app.name.clone());
    }
    append_server_timing(headers, total, upstream.as_ref());
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            kind,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Appends `router;dur=…` and (for forwarded requests) `upstream;desc="<region>";dur=…` to the
/// upstream's own `Server-Timing`, in milliseconds. Router time is total minus upstream.
pub fn append_server_timing(
    headers: &mut HeaderMap,
    total: Duration,
    upstream: Option<&UpstreamTiming>,
) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let router = total.saturating_sub(upstream.map_or(Duration::ZERO, |u| u.duration));
    let mut entries: Vec<String> = headers
        .get_all(SERVER_TIMING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    entries.push(format!("router;dur={:.1}", ms(router)));
    if let Some(u) = upstream {
        entries.push(format!(
            "upstream;desc=\"{}\";dur={:.1}",
            u.region,
            ms(u.duration)
        ));
    }
    if let Ok(v) = HeaderValue::from_str(&entries.join(", ")) {
        headers.insert(SERVER_TIMING, v);
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
    let warm_every = Duration::from_millis(app.config.upstream.warm_interval_ms);
    let warmer = (!warm_every.is_zero()).then(|| {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                app.warm().await;
                tokio::time::sleep(warm_every).await;
            }
        })
    });
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

/// The router as a `wire` service, for its binary and devcluster.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_is_appended_to_the_upstreams() {
        let mut h = HeaderMap::new();
        h.insert(SERVER_TIMING, HeaderValue::from_static("db;dur=3.0"));
        let upstream = UpstreamTiming {
            region: "eu-west".into(),
            duration: Duration::from_micros(81_200),
        };
        append_server_timing(&mut h, Duration::from_micros(81_600), Some(&upstream));
        assert_eq!(
            h[SERVER_TIMING],
            "db;dur=3.0, router;dur=0.4, upstream;desc=\"eu-west\";dur=81.2"
        );
        let mut h = HeaderMap::new();
        append_server_timing(&mut h, Duration::from_micros(1_260), None);
        assert_eq!(h[SERVER_TIMING], "router;dur=1.3");
    }
}
