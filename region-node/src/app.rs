//! The node: its shared state, its HTTP routes and middleware, and `serve`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use id_gen::RegionId;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::auth::TokenKeys;
use crate::batching::Batcher;
use crate::cache::ReadCache;
use crate::config::Config;
use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::machine_lease::{IdSource, MachineLease};
use crate::metrics::Metrics;
use crate::replica::Readers;
use crate::{expiry, http};

/// Everything a request handler needs, shared by all of them.
pub struct Node {
    pub config: Config,
    pub region_id: RegionId,
    pub pool: PgPool,
    pub ids: IdSource,
    pub tokens: TokenKeys,
    pub metrics: Metrics,
    pub readers: Arc<Readers>,
    pub cache: ReadCache,
    pub batcher: Batcher,
    pub terms: crate::events::TermsCache,
    served_by: HeaderValue,
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

impl Node {
    /// Connects to the primary, applies migrations and leases a machine number.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Node>> {
        config.validate()?;
        let region_id = RegionId::new(config.region_id(&config.region).unwrap_or_default())?;
        let pool = PgPoolOptions::new()
            .max_connections(config.database.max_connections)
            .acquire_timeout(Duration::from_millis(config.database.acquire_timeout_ms))
            .connect(&config.database.url)
            .await
            .with_context(|| format!("connecting to {}", redact(&config.database.url)))?;
        if config.database.migrate {
            MIGRATOR.run(&pool).await.context("applying migrations")?;
        }
        let holder = format!(
            "{}/{}/{}",
            config.region,
            config.node_name,
            std::process::id()
        );
        let lease = MachineLease::acquire(
            &pool,
            &config.region,
            &holder,
            Duration::from_secs(config.ids.lease_ttl_seconds),
        )
        .await?;
        let ids = IdSource::new(
            region_id,
            lease,
            Duration::from_millis(config.ids.max_clock_backward_ms),
        )?;
        let tokens = TokenKeys::new(
            config.auth.jwt_secret.as_bytes(),
            config.auth.token_ttl_seconds,
        );
        let readers = Arc::new(Readers::new(&config, pool.clone())?);
        readers.check_all().await;
        let cache = ReadCache::new(
            Duration::from_millis(config.reads.cache_ttl_ms),
            config.reads.cache_capacity,
        );
        let served_by = HeaderValue::from_str(&format!("{}/{}", config.region, config.node_name))
            .context("region and node name must be header-safe")?;
        Ok(Arc::new(Node {
            config,
            region_id,
            pool,
            ids,
            tokens,
            metrics: Metrics::new(),
            readers,
            cache,
            batcher: Batcher::default(),
            terms: crate::events::TermsCache::new(),
            served_by,
        }))
    }
}

/// Hides a password in a database URL for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

pub fn router(node: Arc<Node>) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let body_limit = node.config.http.body_limit_bytes;
    Router::new()
        .nest("/api/v1", http::api_routes())
        .merge(http::ops_routes())
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .route_layer(middleware::from_fn_with_state(
            node.clone(),
            crate::metrics::track,
        ))
        .layer(middleware::from_fn_with_state(node.clone(), stamp_and_time_limit))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(Extension(BodyLimit(body_limit)))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, NodeRequestIds::default()))
        .with_state(node)
}

/// Request ids for requests that arrive without one (the router will send its own).
#[derive(Clone, Default)]
struct NodeRequestIds(Arc<AtomicU64>);

impl MakeRequestId for NodeRequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("node-{}-{n}", std::process::id()))
            .ok()
            .map(RequestId::new)
    }
}

/// Stamps `X-Served-By` and bounds the request's time, so a stuck request answers `504`.
async fn stamp_and_time_limit(
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
        .insert("x-served-by", node.served_by.clone());
    response
}

/// Runs the node on `listener` until `shutdown` completes: HTTP, the machine-lease renewal and
/// the expiry sweeper. The lease is given back on the way out.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let node = Node::start(config).await?;
    serve_node(node, listener, shutdown).await
}

/// As `serve`, for a node already started (tests keep the `Node` to inspect it).
pub async fn serve_node(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let lease: Arc<MachineLease> = node.ids.lease_handle();
    let renewal = tokio::spawn(lease.clone().keep_renewed(node.pool.clone()));
    let sweeper = tokio::spawn(expiry::run(node.clone()));
    let lag_watch = tokio::spawn(node.readers.clone().watch());
    tracing::info!(
        addr = %listener.local_addr()?,
        region = %node.config.region,
        node = %node.config.node_name,
        machine = lease.machine(),
        "region-node serving"
    );
    let result = axum::serve(listener, router(node.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    renewal.abort();
    sweeper.abort();
    lag_watch.abort();
    if let Err(error) = lease.release(&node.pool).await {
        tracing::warn!(%error, "could not release the machine lease");
    }
    node.pool.close().await;
    result.context("http server")
}
