//! Router configuration: its sections and defaults, and the checks the types cannot express.
//! Loaded by `wire` (defaults < TOML file < `TICKETING_ROUTER_` environment variables), the same
//! layering as region-node.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderValue;
use serde::{Deserialize, Serialize};
use url::Url;
use wire::limits::Rate;
use wire::server::ConnectionLimits;
use wire::{ConfigError, ServiceConfig};

use crate::cidr::Cidr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This router's region: reads go to its node, and writes homed here too.
    pub region: String,
    /// Name in logs, in `X-Served-By` of answers the router gives itself, and in the hop header.
    pub router_name: String,
    /// Address the binary serves the API on (tests pass their own listener).
    pub listen: SocketAddr,
    /// Address of the operations endpoints (`/metrics`, and `/healthz` and `/readyz` again):
    /// loopback by default; `/metrics` is not served on `listen`.
    pub ops_listen: SocketAddr,
    /// Client connections: header-read and idle timeouts, caps.
    pub connections: ConnectionLimits,
    pub cors: CorsConfig,
    /// Every region of the deployment: its Snowflake region id and where its node and router
    /// are. URLs may use DNS names (see `dns`).
    pub regions: Vec<RegionConfig>,
    /// Peers (CIDRs) whose `X-Client-Region` and `X-Forwarded-For` are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Client networks known to be in a region; the most specific match wins.
    pub client_region_cidrs: Vec<ClientRegionCidr>,
    pub auth: AuthConfig,
    pub dns: DnsConfig,
    pub timeouts: TimeoutsConfig,
    pub http: HttpConfig,
    pub upstream: UpstreamConfig,
    pub limits: LimitsConfig,
    pub streams: StreamsConfig,
}

/// Which web pages may call the API from a browser (CORS). No origins: no CORS headers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins, `scheme://host[:port]` (`https://tickets.example`), no wildcard.
    pub allowed_origins: Vec<String>,
    /// How long a browser may reuse a preflight's answer.
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            max_age_secs: 600,
        }
    }
}

/// Bearer tokens: the router checks them on protected routes before reading a body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The deployment's HS256 secret, the same as the nodes' `auth.jwt_secret`.
    pub jwt_secret: String,
    /// Clock skew forgiven on a token's `exp`, `nbf` and `iat`.
    pub leeway_seconds: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: String::new(),
            leeway_seconds: wire::token::DEFAULT_LEEWAY_SECONDS,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    /// The region bits of the Snowflake ids minted there (1..=31).
    pub id: u8,
    /// Base URL of the region's node, e.g. `http://node.us-east.ticketing.test:9081`.
    pub node: String,
    /// Base URL of the region's router, where other regions send writes homed here.
    pub router: String,
    /// For the router's own region: where reads go when the local node is down, in order.
    /// Defaults to every other region in the order of `regions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_order: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientRegionCidr {
    pub cidr: Cidr,
    pub region: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Nameserver for region hostnames (UDP, then TCP), e.g. `127.0.0.1:5353`. Unset: the
    /// system resolver (or IP literals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nameserver: Option<SocketAddr>,
    /// Bound on one lookup, so a dead nameserver cannot eat the unreachable budget.
    pub timeout_ms: u64,
    /// How long a system-resolver answer is reused (the system resolver reports no TTL).
    pub system_cache_ms: u64,
    /// Cap on the TTL honoured from the nameserver, so a long TTL cannot pin traffic to a dead
    /// endpoint for long.
    pub max_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// TCP connect to an upstream. Must allow one WAN round trip (up to ~250 ms) plus a busy
    /// machine's scheduling delay, and stay under the 2 s in which a dark region gets its 503.
    pub connect_ms: u64,
    /// Whole upstream call, retries included, once the upstream has shown it is alive.
    pub request_ms: u64,
    /// An upstream that gives no sign of life (no answer, and no answer to a liveness probe)
    /// within this is unreachable: `503` for writes, the next region for reads.
    pub unreachable_ms: u64,
    /// Time allowed for the liveness probe (`GET /healthz`), sent `unreachable_ms - probe_ms`
    /// after the request when no answer has come. Allow two WAN round trips (connect + GET).
    pub probe_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body accepted; larger ones get a JSON `413`.
    pub body_limit_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Extra attempts for a request whose connection broke after it was sent (same
    /// `Idempotency-Key`). Never after an HTTP answer; never after a failed connect.
    pub retries: u32,
    /// Idle keep-alive connections are closed after this. Connections are pooled per resolved
    /// address, so after a DNS change the old address's connections only idle out.
    pub pool_idle_timeout_ms: u64,
    /// Idle connections kept per upstream address. Keep it above the concurrency the router
    /// carries to one node: past it, every extra request pays a connect and a close (at 64 with
    /// 256 users in flight, that churn took a third of the router's CPU).
    pub pool_max_idle_per_host: usize,
    /// Every this often, `GET /healthz` each peer router and the local node, so a warm
    /// connection (and a fresh DNS answer) is ready before the next write. 0 disables it.
    pub warm_interval_ms: u64,
    /// Connections to each peer router kept warm by those probes (sent at once, so each takes
    /// its own connection). A write that finds none idle pays a TCP handshake: a second ocean
    /// crossing. Set it near the concurrent writes this region sends to one other region.
    pub warm_connections: usize,
    /// After an upstream was unreachable, reads try other regions first for this long.
    pub down_for_ms: u64,
}

/// Rate limits per client address (the TCP peer, or behind a trusted proxy the address it
/// forwarded for; an IPv6 client by its /64), each `{enabled, per_second, burst}`. Classes and
/// why: `limits`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Every API request except streams and the waiting room. Generous: many people may share
    /// one address behind a NAT.
    pub per_address: Rate,
    /// `POST /api/v1/users`, on top of `per_address`: a person signs up once, a bot thousands
    /// of times.
    pub sign_ups: Rate,
    /// `/api/v1/events/{id}/stream` connections, instead of `per_address` (issue 11).
    pub streams: Rate,
    /// `/api/v1/events/{id}/queue…`, the waiting room, instead of `per_address` (issue 11).
    pub queue: Rate,
    /// How often addresses whose budgets are full again are forgotten.
    pub prune_interval_ms: u64,
    /// Event streams one client address may hold open at once on this router (the `streams`
    /// rate only bounds how fast it opens them); past it `429 too_many_streams`.
    pub streams_per_address: u32,
}

/// The relays of live event streams (`streams`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsConfig {
    /// A keep-alive comment goes to a client after this long without anything written to it.
    pub keepalive_ms: u64,
    /// A relay with no client for this long closes its upstream stream.
    pub idle_relay_ms: u64,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            keepalive_ms: 15_000,
            idle_relay_ms: 30_000,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            per_address: Rate::new(100.0, 200),
            sign_ups: Rate::new(0.2, 10),
            streams: Rate::new(2.0, 20),
            queue: Rate::new(5.0, 20),
            prune_interval_ms: 5_000,
            streams_per_address: 32,
        }
    }
}

impl LimitsConfig {
    /// Every class's rate and burst times `factor`; `0` turns them all off.
    pub fn scaled(&self, factor: f64) -> LimitsConfig {
        LimitsConfig {
            per_address: self.per_address.scaled(factor),
            sign_ups: self.sign_ups.scaled(factor),
            streams: self.streams.scaled(factor),
            queue: self.queue.scaled(factor),
            prune_interval_ms: self.prune_interval_ms,
            streams_per_address: self.streams_per_address,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.per_address.validate("per_address")?;
        self.sign_ups.validate("sign_ups")?;
        self.streams.validate("streams")?;
        self.queue.validate("queue")?;
        if self.prune_interval_ms == 0 {
            return invalid("limits.prune_interval_ms must be positive".into());
        }
        if self.streams_per_address == 0 {
            return invalid("limits.streams_per_address must be positive".into());
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            region: "us-east".into(),
            router_name: "router-1".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 11081)),
            connections: ConnectionLimits::default(),
            cors: CorsConfig::default(),
            regions: default_regions(),
            trusted_proxies: Vec::new(),
            client_region_cidrs: Vec::new(),
            auth: AuthConfig::default(),
            dns: DnsConfig::default(),
            timeouts: TimeoutsConfig::default(),
            http: HttpConfig::default(),
            upstream: UpstreamConfig::default(),
            limits: LimitsConfig::default(),
            streams: StreamsConfig::default(),
        }
    }
}

/// The local three-region layout of DESIGN section 1, on devcluster's default ports.
pub fn default_regions() -> Vec<RegionConfig> {
    wire::config::DEFAULT_REGIONS
        .into_iter()
        .map(|(name, id)| RegionConfig {
            name: name.into(),
            id,
            node: format!("http://127.0.0.1:{}", 9080 + u16::from(id)),
            router: format!("http://127.0.0.1:{}", 8080 + u16::from(id)),
            fallback_order: None,
        })
        .collect()
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameserver: None,
            timeout_ms: 500,
            system_cache_ms: 5_000,
            max_ttl_secs: 30,
        }
    }
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect_ms: 1_500,
            request_ms: 10_000,
            unreachable_ms: 1_700,
            probe_ms: 1_200,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit_bytes: 64 * 1024,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            retries: 2,
            pool_idle_timeout_ms: 60_000,
            pool_max_idle_per_host: 1024,
            warm_interval_ms: 10_000,
            warm_connections: 8,
            down_for_ms: 2_000,
        }
    }
}

impl ServiceConfig for Config {
    /// `TICKETING_ROUTER_DNS__NAMESERVER` sets `dns.nameserver`; the node reads
    /// `TICKETING_NODE_*`, so one environment can hold both.
    const ENV_PREFIX: &'static str = "TICKETING_ROUTER_";

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
        self.check_identity()?;
        wire::token::check_secret("auth.jwt_secret", &self.auth.jwt_secret)?;
        if self.auth.leeway_seconds > 300 {
            return invalid("auth.leeway_seconds must be at most 300".into());
        }
        self.check_regions()?;
        self.check_client_region_cidrs()?;
        self.check_cors()?;
        self.connections.validate().map_err(ConfigError::Invalid)?;
        self.check_limits()?;
        self.limits.validate()
    }
}

impl Config {
    /// This router's region is configured and its name can go into headers.
    fn check_identity(&self) -> Result<(), ConfigError> {
        if self.region_config(&self.region).is_none() {
            return invalid(format!("region {:?} is not in `regions`", self.region));
        }
        if self.router_name.is_empty() || HeaderValue::from_str(&self.router_name).is_err() {
            return invalid("router_name must be a non-empty header-safe string".into());
        }
        Ok(())
    }

    /// Each region: a Snowflake region id, a header-safe name, both unique, usable endpoint
    /// URLs, and a fallback order naming only other configured regions.
    fn check_regions(&self) -> Result<(), ConfigError> {
        for (i, r) in self.regions.iter().enumerate() {
            if !(1..=id_gen::MAX_REGION).contains(&r.id) {
                return invalid(format!("region {} has id {}, must be 1..=31", r.name, r.id));
            }
            if r.name.is_empty() || HeaderValue::from_str(&r.name).is_err() {
                return invalid(format!("region name {:?} is not header-safe", r.name));
            }
            if self.regions[..i]
                .iter()
                .any(|o| o.id == r.id || o.name == r.name)
            {
                return invalid(format!("region {} or id {} appears twice", r.name, r.id));
            }
            for (what, url) in [("node", &r.node), ("router", &r.router)] {
                if let Err(m) = parse_base_url(url) {
                    return invalid(format!("regions[{}].{what}: {m}", r.name));
                }
            }
            for other in r.fallback_order.iter().flatten() {
                if other == &r.name || self.region_config(other).is_none() {
                    return invalid(format!(
                        "regions[{}].fallback_order: {other:?} is not another configured region",
                        r.name
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_client_region_cidrs(&self) -> Result<(), ConfigError> {
        for entry in &self.client_region_cidrs {
            if self.region_config(&entry.region).is_none() {
                return invalid(format!(
                    "client_region_cidrs: {} maps to unknown region {:?}",
                    entry.cidr, entry.region
                ));
            }
        }
        Ok(())
    }

    /// Each allowed origin is one an `Origin` header can carry: scheme, host, port, no more.
    fn check_cors(&self) -> Result<(), ConfigError> {
        for origin in &self.cors.allowed_origins {
            let canonical = Url::parse(origin)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .map(|u| u.origin().ascii_serialization());
            if canonical.as_deref() != Some(origin.as_str()) {
                return invalid(format!(
                    "cors.allowed_origins: {origin:?} is not an origin like https://tickets.example"
                ));
            }
        }
        Ok(())
    }

    /// Timeouts that nest (a probe fits in the unreachable budget, which fits in the request
    /// timeout), a positive body limit, and a bounded number of retries.
    fn check_limits(&self) -> Result<(), ConfigError> {
        let t = &self.timeouts;
        if t.connect_ms == 0 || t.probe_ms == 0 {
            return invalid("timeouts.connect_ms and probe_ms must be positive".into());
        }
        if t.unreachable_ms <= t.probe_ms {
            return invalid("timeouts.unreachable_ms must exceed timeouts.probe_ms".into());
        }
        if t.request_ms < t.unreachable_ms {
            return invalid("timeouts.request_ms must be at least timeouts.unreachable_ms".into());
        }
        if self.http.body_limit_bytes == 0 {
            return invalid("http.body_limit_bytes must be positive".into());
        }
        if self.upstream.retries > 5 {
            return invalid("upstream.retries must be at most 5".into());
        }
        if self.streams.keepalive_ms == 0 || self.streams.idle_relay_ms == 0 {
            return invalid("streams.keepalive_ms and idle_relay_ms must be positive".into());
        }
        Ok(())
    }

    pub fn region_config(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.name == name)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.timeouts.connect_ms)
    }
}

fn invalid(message: String) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid(message))
}

/// A region endpoint: plain `http` (the router has no TLS client; terminate TLS in front),
/// with a host, and no path of its own since request paths are appended as they came.
pub fn parse_base_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!("{s:?}: only http:// upstreams are supported"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(format!("{s:?} must not have a path or query"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::{Format, Serialized, Toml};
    use figment::Figment;

    /// The defaults and a secret: the one setting with no safe default.
    fn with_secret() -> Config {
        let mut config = Config::default();
        config.auth.jwt_secret = "a-secret-for-unit-tests".into();
        config
    }

    #[test]
    fn defaults_with_a_secret_are_valid() {
        with_secret().validate().unwrap();
        let err = Config::default().validate().unwrap_err().to_string();
        assert!(err.contains("auth.jwt_secret"), "{err}");
    }

    #[test]
    fn toml_over_defaults() {
        let toml = r#"
            region = "eu-west"
            trusted_proxies = ["10.0.0.0/8"]
            [[client_region_cidrs]]
            cidr = "192.0.2.0/24"
            region = "us-east"
            [[regions]]
            name = "us-east"
            id = 1
            node = "http://node.us-east.ticketing.test:9081"
            router = "http://router.us-east.ticketing.test:8081"
            [[regions]]
            name = "eu-west"
            id = 2
            node = "http://127.0.0.1:9082"
            router = "http://127.0.0.1:8082"
            fallback_order = ["us-east"]
            [dns]
            nameserver = "127.0.0.1:5353"
            [timeouts]
            connect_ms = 500
            [limits.sign_ups]
            burst = 3
            [limits.streams]
            enabled = false
        "#;
        let config = Config::from_figment(
            Figment::from(Serialized::defaults(with_secret())).merge(Toml::string(toml)),
        )
        .unwrap();
        assert_eq!(config.region, "eu-west");
        assert_eq!(config.router_name, "router-1");
        assert_eq!(
            config.dns.nameserver,
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(config.timeouts.connect_ms, 500);
        assert_eq!(config.timeouts.request_ms, 10_000);
        assert_eq!(config.regions.len(), 2);
        assert_eq!(config.client_region_cidrs[0].region, "us-east");
        // A class's fields merge over its defaults one by one.
        assert_eq!(config.limits.sign_ups, Rate::new(0.2, 3));
        assert!(!config.limits.streams.enabled);
        assert_eq!(config.limits.per_address, Rate::new(100.0, 200));
        assert!(config.trusted_proxies[0].contains("10.9.9.9".parse().unwrap()));
        let bad = Toml::string("trusted_proxies = [\"10.0.0.0/99\"]");
        let err =
            Config::from_figment(Figment::from(Serialized::defaults(with_secret())).merge(bad))
                .unwrap_err();
        assert!(err.to_string().contains("invalid CIDR"), "{err}");
    }

    #[test]
    fn the_example_file_is_valid() {
        let example = include_str!("../router.example.toml");
        // The secret comes from the environment, never the file.
        let config = Config::from_figment(
            Figment::from(Serialized::defaults(with_secret())).merge(Toml::string(example)),
        )
        .unwrap();
        assert_eq!(config.regions.len(), 3);
        assert_eq!(
            config.timeouts.unreachable_ms,
            TimeoutsConfig::default().unreachable_ms
        );
    }

    #[test]
    fn rejects_bad_configs() {
        let bad = |edit: &dyn Fn(&mut Config)| {
            let mut c = with_secret();
            edit(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(&|c| c.region = "mars".into()).contains("not in `regions`"));
        assert!(bad(&|c| c.regions[1].id = 1).contains("twice"));
        assert!(bad(&|c| c.regions[1].id = 32).contains("1..=31"));
        assert!(bad(&|c| c.regions[0].node = "https://x:1".into()).contains("only http"));
        assert!(bad(&|c| c.regions[0].node = "http://x:1/api".into()).contains("path"));
        assert!(
            bad(&|c| c.regions[0].fallback_order = Some(vec!["us-east".into()]))
                .contains("fallback_order")
        );
        assert!(bad(&|c| c.timeouts.probe_ms = 5_000).contains("unreachable_ms"));
        for origin in [
            "*",
            "https://a.example/",
            "https://a.example/x",
            "ftp://a.example",
        ] {
            assert!(
                bad(&|c| c.cors.allowed_origins = vec![origin.into()]).contains("cors"),
                "{origin}"
            );
        }
        assert!(bad(&|c| c.connections.max = 0).contains("connections.max"));
        let fine = Config {
            cors: CorsConfig {
                allowed_origins: vec!["https://a.example".into(), "http://localhost:3000".into()],
                ..CorsConfig::default()
            },
            ..with_secret()
        };
        fine.validate().unwrap();
        assert!(bad(&|c| c.auth.jwt_secret = "short".into()).contains("16 bytes"));
        assert!(bad(&|c| c.limits.sign_ups.per_second = 0.0).contains("limits.sign_ups"));
        assert!(bad(&|c| c.limits.per_address.burst = 0).contains("limits.per_address.burst"));
        assert!(bad(&|c| c.limits.prune_interval_ms = 0).contains("prune_interval_ms"));
        assert!(bad(&|c| c.limits.streams_per_address = 0).contains("streams_per_address"));
        assert!(bad(&|c| c.streams.keepalive_ms = 0).contains("streams.keepalive_ms"));
    }
}
