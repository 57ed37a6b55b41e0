//! Node configuration as data: every key and its default. Loaded by `wire::ServiceConfig`
//! (defaults < TOML file < `TICKETING_NODE_` environment variables) and checked here.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::limits::Rate;
use wire::server::ConnectionLimits;
use wire::{ConfigError, ServiceConfig};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's region; it accepts writes only for events homed here.
    pub region: String,
    /// Name shown in `X-Served-By` and in logs.
    pub node_name: String,
    /// Address the binary serves the API on (tests pass their own listener).
    pub listen: SocketAddr,
    /// Address of the operations endpoints (`/metrics`, `/cluster`, and `/healthz` and
    /// `/readyz` again): loopback by default; the first two are not served on `listen`.
    pub ops_listen: SocketAddr,
    /// Client connections: header-read and idle timeouts, caps.
    pub connections: ConnectionLimits,
    /// Every region of the deployment, with the id carried in Snowflake IDs.
    pub regions: Vec<RegionConfig>,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub booking: BookingConfig,
    pub http: HttpConfig,
    pub ids: IdsConfig,
    pub reads: ReadsConfig,
    pub limits: LimitsConfig,
    pub queue: QueueConfig,
    pub streams: StreamsConfig,
}

/// Live streams (`GET /events/{id}/stream`): how often an event's watcher reads its state, how
/// often an idle stream says it is alive, and how long a watcher outlives its last subscriber.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsConfig {
    /// One read of the event's state per interval, whatever the number of subscribers; also the
    /// shortest time between two messages of a stream.
    pub interval_ms: u64,
    /// A keep-alive comment after this long without a message.
    pub keepalive_ms: u64,
    /// A watcher without subscribers for this long ends (the next subscriber starts one).
    pub idle_watcher_ms: u64,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            interval_ms: 250,
            keepalive_ms: 15_000,
            idle_watcher_ms: 30_000,
        }
    }
}

impl StreamsConfig {
    /// A watcher's read costs one query batch per interval: below 10 ms it would be a busy loop.
    fn validate(&self) -> Result<(), ConfigError> {
        if !(10..=60_000).contains(&self.interval_ms) {
            return Err(ConfigError::Invalid(
                "streams.interval_ms must be 10..=60000".into(),
            ));
        }
        if self.keepalive_ms == 0 || self.idle_watcher_ms == 0 {
            return Err(ConfigError::Invalid(
                "streams.keepalive_ms and streams.idle_watcher_ms must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// The waiting room's loops and join batching (see `queue`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// How often the home node draws due lobbies and advances serving counters.
    pub tick_ms: u64,
    /// How often every node refreshes the queue gauges of `/metrics` from its replicas.
    pub metrics_interval_ms: u64,
    /// Most joins of one event in one transaction.
    pub join_batch_max: usize,
    /// Whether this node runs the serving loop (draws and counter advances) for its shard.
    /// Several nodes of a region may all run it (each queue row is taken `SKIP LOCKED`); off
    /// keeps a node out of it, e.g. tests that set a queue's counters by hand.
    pub serving_loop: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            tick_ms: 200,
            metrics_interval_ms: 1_000,
            join_batch_max: 512,
            serving_loop: true,
        }
    }
}

impl QueueConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.tick_ms == 0 || self.metrics_interval_ms == 0 || self.join_batch_max == 0 {
            return Err(ConfigError::Invalid(
                "queue.tick_ms, metrics_interval_ms and join_batch_max must be positive".into(),
            ));
        }
        // A tick slower than the shortest pass window (10 s) could not keep the loop closed.
        if self.tick_ms > 10_000 {
            return Err(ConfigError::Invalid(
                "queue.tick_ms must be at most 10000".into(),
            ));
        }
        Ok(())
    }
}

/// Where and how this node reads. Without `shards`, every read goes to `database.url` (a
/// single-region node); with them, each shard is read from its replica in this region.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadsConfig {
    pub shards: Vec<ShardConfig>,
    /// Past this replay lag a shard is read elsewhere and `/readyz` reports degraded.
    pub max_replica_lag_ms: u64,
    /// How long a read carrying a consistency token waits for the replica to replay it before
    /// reading the home primary instead.
    pub token_wait_ms: u64,
    pub lag_poll_ms: u64,
    /// How long a cached read is kept; 0 turns the read cache off (every read is a miss).
    pub cache_ttl_ms: u64,
    pub cache_capacity: u64,
    /// Connections per shard reader.
    pub pool_size: u32,
}

/// One shard (home region) as this node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// The shard's home region.
    pub name: String,
    /// This region's streaming replica of the shard.
    pub replica: Option<String>,
    /// The shard's home primary (for this node's own shard: `database.url`). Reads go there when
    /// the replica is too far behind or down; for another region's shard that crosses the WAN.
    pub primary: Option<String>,
}

impl Default for ReadsConfig {
    fn default() -> Self {
        ReadsConfig {
            shards: Vec::new(),
            max_replica_lag_ms: 2_000,
            token_wait_ms: 250,
            lag_poll_ms: 250,
            cache_ttl_ms: 500,
            cache_capacity: 10_000,
            pool_size: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegionConfig {
    pub name: String,
    pub id: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The region's primary.
    pub url: String,
    pub max_connections: u32,
    /// How long a request may wait for a pooled connection before it gets a 503.
    pub acquire_timeout_ms: u64,
    /// Apply `migrations/` at start-up.
    pub migrate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret shared by every node and router of the deployment.
    pub jwt_secret: String,
    /// Access tokens (bearer JWTs) live this long. Logout cannot recall one, so keep it short.
    pub access_token_ttl_seconds: u64,
    /// A refresh token works this long after it was issued; each refresh issues a new one.
    pub refresh_token_ttl_seconds: u64,
    /// Clock skew forgiven on a token's `exp`, `nbf` and `iat`.
    pub leeway_seconds: u64,
    pub password: PasswordConfig,
}

/// Argon2id cost of a password hash. The defaults are OWASP's (19 MiB, 2 passes, 1 lane);
/// tests and the local cluster configure far cheaper ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// The largest per-user ticket cap an event or the default may set (the schema's CHECK).
pub const MAX_TICKETS_PER_USER: i64 = 1_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BookingConfig {
    /// Hold length for events that do not set their own.
    pub default_hold_seconds: u32,
    /// Per-order ticket maximum for events that do not set their own.
    pub default_max_per_order: u32,
    /// Per-user ticket cap (held and bought, across orders) for events that do not set their
    /// own; read when a reserve or a view needs it, so a change reaches those events too.
    pub default_max_tickets_per_user: u32,
    /// Simulated payment time, spent outside any transaction.
    pub payment_delay_ms: u64,
    /// How often the sweeper tidies lapsed holds into `expired`.
    pub sweep_interval_ms: u64,
    /// Bookings the sweeper expires per statement (bounded so it never holds many locks).
    pub sweep_batch: u32,
    /// Idempotency records are kept this long.
    pub idempotency_ttl_hours: u32,
    /// Coalesce concurrent reserves of one event into one transaction (one commit for many).
    pub batch_reserves: bool,
    /// Most reserves in one batch.
    pub batch_max: usize,
    /// Batches of one event in flight at once (SKIP LOCKED keeps them apart).
    pub batch_workers_per_event: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdsConfig {
    /// Machine-number lease length; renewed every third of it.
    pub lease_ttl_seconds: u64,
    /// Largest backwards clock step waited out; a larger one makes ID minting fail.
    pub max_clock_backward_ms: u64,
}

/// Rate limits (see `limits`), each `{enabled, per_second, burst}`: past one, `429` with
/// `Retry-After` and the `RateLimit` fields. Per client address limits are the router's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Booking writes (reserve, confirm, cancel) per user, from the bearer token.
    pub user_writes: Rate,
    /// Reserves per event on its home node: a high ceiling, near what one primary can book
    /// (about 5,000 a second measured), so a flood is refused rather than queued. The waiting
    /// room (issue 11) is the real admission control.
    pub event_reserves: Rate,
    /// How often users and events whose budgets are full again are forgotten.
    pub prune_interval_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            user_writes: Rate::new(5.0, 20),
            event_reserves: Rate::new(5_000.0, 5_000),
            prune_interval_ms: 5_000,
        }
    }
}

impl LimitsConfig {
    /// Every class's rate and burst times `factor`; `0` turns them all off.
    pub fn scaled(&self, factor: f64) -> LimitsConfig {
        LimitsConfig {
            user_writes: self.user_writes.scaled(factor),
            event_reserves: self.event_reserves.scaled(factor),
            prune_interval_ms: self.prune_interval_ms,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.user_writes.validate("user_writes")?;
        self.event_reserves.validate("event_reserves")?;
        if self.prune_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "limits.prune_interval_ms must be positive".into(),
            ));
        }
        Ok(())
    }
}

impl Default for IdsConfig {
    fn default() -> Self {
        IdsConfig {
            lease_ttl_seconds: 30,
            max_clock_backward_ms: 100,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            region: "us-east".into(),
            node_name: "node-1".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9081)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 11181)),
            connections: ConnectionLimits::default(),
            regions: default_regions(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            booking: BookingConfig::default(),
            http: HttpConfig::default(),
            ids: IdsConfig::default(),
            reads: ReadsConfig::default(),
            limits: LimitsConfig::default(),
            queue: QueueConfig::default(),
            streams: StreamsConfig::default(),
        }
    }
}

/// The local three-region layout of DESIGN section 1.
pub fn default_regions() -> Vec<RegionConfig> {
    wire::config::DEFAULT_REGIONS
        .into_iter()
        .map(|(name, id)| RegionConfig {
            name: name.into(),
            id,
        })
        .collect()
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "postgres://postgres@127.0.0.1:5432/ticketing".into(),
            max_connections: 32,
            acquire_timeout_ms: 10_000,
            migrate: true,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: String::new(),
            access_token_ttl_seconds: 15 * 60,
            refresh_token_ttl_seconds: 30 * 24 * 3600,
            leeway_seconds: wire::token::DEFAULT_LEEWAY_SECONDS,
            password: PasswordConfig::default(),
        }
    }
}

impl Default for BookingConfig {
    fn default() -> Self {
        BookingConfig {
            default_hold_seconds: 600,
            default_max_per_order: 10,
            default_max_tickets_per_user: 8,
            payment_delay_ms: 200,
            sweep_interval_ms: 1_000,
            sweep_batch: 500,
            idempotency_ttl_hours: 24,
            batch_reserves: true,
            batch_max: 256,
            batch_workers_per_event: 2,
        }
    }
}

impl BookingConfig {
    /// The per-user ticket cap of an event that sets `own` (`None`: this node's default).
    pub fn ticket_cap(&self, own: Option<i32>) -> i64 {
        own.map_or(self.default_max_tickets_per_user.into(), i64::from)
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit_bytes: 64 * 1024,
            request_timeout_ms: 15_000,
        }
    }
}

impl ServiceConfig for Config {
    const ENV_PREFIX: &'static str = "TICKETING_NODE_";

    fn listen(&self) -> SocketAddr {
        self.listen
    }

    fn ops_listen(&self) -> SocketAddr {
        self.ops_listen
    }

    fn connections(&self) -> &ConnectionLimits {
        &self.connections
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        self.connections.validate().map_err(ConfigError::Invalid)?;
        wire::token::check_secret("auth.jwt_secret", &self.auth.jwt_secret)?;
        self.check_auth()?;
        if self.region_id(&self.region).is_none() {
            return invalid(format!("region {:?} is not in `regions`", self.region));
        }
        for (i, r) in self.regions.iter().enumerate() {
            if id_gen::RegionId::new(r.id).is_err() || r.id == 0 {
                return invalid(format!("region {} has id {}, must be 1..=31", r.name, r.id));
            }
            if self.regions[..i]
                .iter()
                .any(|o| o.id == r.id || o.name == r.name)
            {
                return invalid(format!("region {} or id {} appears twice", r.name, r.id));
            }
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections must be positive".into());
        }
        if self.booking.batch_max == 0 || self.booking.batch_workers_per_event == 0 {
            return invalid(
                "booking.batch_max and batch_workers_per_event must be positive".into(),
            );
        }
        if self.booking.sweep_batch == 0 || self.booking.sweep_interval_ms == 0 {
            return invalid("booking.sweep_batch and sweep_interval_ms must be positive".into());
        }
        if !(1..=3600).contains(&self.booking.default_hold_seconds) {
            return invalid("booking.default_hold_seconds must be 1..=3600".into());
        }
        if !(1..=100).contains(&self.booking.default_max_per_order) {
            return invalid("booking.default_max_per_order must be 1..=100".into());
        }
        if !(1..=MAX_TICKETS_PER_USER)
            .contains(&i64::from(self.booking.default_max_tickets_per_user))
        {
            return invalid(format!(
                "booking.default_max_tickets_per_user must be 1..={MAX_TICKETS_PER_USER}"
            ));
        }
        for shard in &self.reads.shards {
            if self.region_id(&shard.name).is_none() {
                return invalid(format!(
                    "reads.shards names unknown region {:?}",
                    shard.name
                ));
            }
        }
        if self.reads.pool_size == 0 || self.reads.lag_poll_ms == 0 {
            return invalid("reads.pool_size and reads.lag_poll_ms must be positive".into());
        }
        if self.ids.lease_ttl_seconds < 3 {
            return invalid("ids.lease_ttl_seconds must be at least 3".into());
        }
        self.queue.validate()?;
        self.streams.validate()?;
        // An idle stream must write before an idle connection would be closed on the way.
        if self.streams.keepalive_ms >= self.connections.idle_timeout_ms {
            return invalid(
                "streams.keepalive_ms must be below connections.idle_timeout_ms".into(),
            );
        }
        self.limits.validate()
    }
}

impl Config {
    /// Token lifetimes that make sense, and argon2 costs its crate accepts (at least 8 KiB of
    /// memory per lane) without letting one hash take the machine (at most 1 GiB, 16 lanes).
    fn check_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if auth.access_token_ttl_seconds == 0 || auth.refresh_token_ttl_seconds == 0 {
            return invalid(
                "auth.access_token_ttl_seconds and refresh_token_ttl_seconds must be positive",
            );
        }
        if auth.leeway_seconds > 300 {
            return invalid("auth.leeway_seconds must be at most 300");
        }
        let p = &auth.password;
        if !(1..=16).contains(&p.parallelism) || p.iterations == 0 || p.iterations > 100 {
            return invalid("auth.password: parallelism must be 1..=16 and iterations 1..=100");
        }
        if p.memory_kib < 8 * p.parallelism || p.memory_kib > 1024 * 1024 {
            return invalid("auth.password.memory_kib must be 8 per lane to 1048576");
        }
        Ok(())
    }

    /// Every configured region id, for `wire::accounts::email_shard`.
    pub fn region_ids(&self) -> Vec<u8> {
        self.regions.iter().map(|r| r.id).collect()
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.auth.access_token_ttl_seconds)
    }

    pub fn region_id(&self, name: &str) -> Option<u8> {
        self.regions.iter().find(|r| r.name == name).map(|r| r.id)
    }

    pub fn region_name(&self, id: u8) -> Option<&str> {
        self.regions
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.name.as_str())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        let mut config = Config::default();
        config.auth.jwt_secret = "a secret of sixteen bytes or more".into();
        config
    }

    #[test]
    fn rate_limits_are_checked_and_scale_together() {
        valid().validate().unwrap();
        let mut config = valid();
        config.limits.user_writes.per_second = f64::NAN;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("limits.user_writes.per_second"), "{error}");
        let mut config = valid();
        config.limits.event_reserves.burst = 0;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("limits.event_reserves.burst"), "{error}");
        let raised = LimitsConfig::default().scaled(1000.0);
        assert_eq!(raised.user_writes, Rate::new(5_000.0, 20_000));
        let off = LimitsConfig::default().scaled(0.0);
        assert!(!off.user_writes.enabled && !off.event_reserves.enabled);
    }

    #[test]
    fn queue_loops_need_positive_periods() {
        for adjust in [
            |c: &mut Config| c.queue.tick_ms = 0,
            |c: &mut Config| c.queue.tick_ms = 60_000,
            |c: &mut Config| c.queue.metrics_interval_ms = 0,
            |c: &mut Config| c.queue.join_batch_max = 0,
        ] {
            let mut config = valid();
            adjust(&mut config);
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("queue."), "{error}");
        }
    }

    #[test]
    fn stream_settings_are_checked() {
        let streams = StreamsConfig::default();
        assert_eq!(
            (
                streams.interval_ms,
                streams.keepalive_ms,
                streams.idle_watcher_ms
            ),
            (250, 15_000, 30_000)
        );
        for adjust in [
            (|s: &mut StreamsConfig| s.interval_ms = 0) as fn(&mut StreamsConfig),
            |s| s.interval_ms = 5,
            |s| s.keepalive_ms = 0,
            |s| s.idle_watcher_ms = 0,
            |s| s.keepalive_ms = 75_000,
        ] {
            let mut config = valid();
            adjust(&mut config.streams);
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("streams."), "{error}");
        }
    }
}
