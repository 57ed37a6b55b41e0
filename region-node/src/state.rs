//! The node's shared state, built once at start and handed to every request: configuration,
//! the primary's pool, the id source, token keys and password hashing, metrics, the shard
//! readers and read cache, the reserve and join batchers and the rate limiters. It holds only components that import nothing of it back (no
//! feature logic, no HTTP), so no module depends on itself through it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderValue;
use id_gen::{Id, RegionId};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use wire::ServiceConfig;

use crate::booking::request::Prepared;
use crate::booking::store::Claims;
use crate::booking::views::Reserved;
use crate::catalog::terms::TermsCache;
use crate::coalesce::Coalescer;
use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::identity::auth::TokenKeys;
use crate::identity::lease::{IdSource, MachineLease};
use crate::identity::password::Passwords;
use crate::limits::NodeLimits;
use crate::ops::metrics::Metrics;
use crate::queue::pass::PassKeys;
use crate::queue::place::{Joining, QueuePlace};
use crate::reads::cache::ReadCache;
use crate::reads::consistency::{token_after_write, ReadAfter};
use crate::reads::replica::{ReadSource, Readers, ShardReader};
use crate::streams::hub::Hub;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A reserve or join batch worker with nothing to do for this long ends; the queue is made again on
/// demand.
const BATCH_WORKER_IDLE: Duration = Duration::from_secs(30);

/// Everything a request handler needs, shared by all of them.
pub struct Node {
    pub config: Config,
    pub region_id: RegionId,
    /// This region's primary: every write, and reads of this node's own shard without a replica.
    pub pool: PgPool,
    pub ids: IdSource,
    pub tokens: TokenKeys,
    /// Queue passes: signed and checked with the same secret as access tokens.
    pub passes: PassKeys,
    pub passwords: Passwords,
    pub metrics: Metrics,
    pub readers: Arc<Readers>,
    pub cache: ReadCache,
    /// Group commit: concurrent reserves of one event, coalesced per event id.
    pub batcher: Coalescer<Prepared, ApiResult<Reserved>>,
    /// Concurrent joins of one event's waiting room, coalesced per event id (one worker: the
    /// queue row's lock serialises them anyway).
    pub joins: Coalescer<Joining, ApiResult<QueuePlace>>,
    pub claims: Claims,
    pub terms: TermsCache,
    /// Booking writes per user, reserves per event.
    pub limits: NodeLimits,
    /// `<region>/<node>`, stamped on every answer as `X-Served-By`.
    pub served_by: HeaderValue,
    /// Live streams: one watcher per watched event.
    pub streams: Hub,
}

impl Node {
    /// Connects to the primary, applies migrations and leases a machine number.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Node>> {
        Node::start_with(config, Claims::default()).await
    }

    /// As `start`, claiming tickets as `claims` says (only the race tests' negative control
    /// has another choice than row locks).
    pub async fn start_with(config: Config, claims: Claims) -> anyhow::Result<Arc<Node>> {
        config.validate()?;
        let limits = NodeLimits::new(&config.limits)?;
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
            config.auth.leeway_seconds,
        );
        let passes = PassKeys::new(config.auth.jwt_secret.as_bytes());
        let passwords = Passwords::new(&config.auth.password)?;
        let readers = Arc::new(Readers::new(&config, pool.clone())?);
        readers.check_all().await;
        let cache = ReadCache::new(
            Duration::from_millis(config.reads.cache_ttl_ms),
            config.reads.cache_capacity,
        );
        let batcher = Coalescer::new(
            config.booking.batch_workers_per_event,
            config.booking.batch_max,
            BATCH_WORKER_IDLE,
        );
        let joins = Coalescer::new(1, config.queue.join_batch_max, BATCH_WORKER_IDLE);
        let served_by = HeaderValue::from_str(&format!("{}/{}", config.region, config.node_name))
            .context("region and node name must be header-safe")?;
        let metrics = Metrics::new();
        let streams = Hub::new(metrics.stream_watchers.clone());
        Ok(Arc::new(Node {
            config,
            region_id,
            pool,
            ids,
            tokens,
            passes,
            passwords,
            metrics,
            readers,
            cache,
            batcher,
            joins,
            claims,
            terms: TermsCache::new(),
            limits,
            served_by,
            streams,
        }))
    }

    /// The reader of the shard an id was minted in.
    pub fn shard_of(&self, id: Id) -> ApiResult<&ShardReader> {
        self.readers
            .shard_by_region(id.region().get())
            .ok_or_else(|| ApiError::InvalidId(format!("{id} names no region this node reads")))
    }

    /// A source for `shard` that honours the read's consistency token for it.
    pub async fn read_source(
        &self,
        shard: &ShardReader,
        after: &ReadAfter,
    ) -> ApiResult<ReadSource> {
        self.readers.source(shard, after.lsn_for(&shard.name)).await
    }

    /// After a write to `event_id`'s tickets committed on `conn` (this node's primary): drops
    /// this node's cached page and availability of the event and returns the write's
    /// consistency token (which also makes the event list skip cached pages older than it).
    pub async fn event_written(&self, conn: &mut PgConnection, event_id: i64) -> ApiResult<String> {
        self.cache.invalidate_counts(event_id).await;
        token_after_write(conn, &self.config.region).await
    }

    /// After a change to `event_id`'s listing committed on `conn` (its creation, new tickets):
    /// drops this node's cached views of the event and every page of its shard's event list,
    /// and returns the write's consistency token.
    pub async fn listing_written(
        &self,
        conn: &mut PgConnection,
        event_id: i64,
    ) -> ApiResult<String> {
        self.cache
            .invalidate_event_views(event_id, self.region_id.get())
            .await;
        token_after_write(conn, &self.config.region).await
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
