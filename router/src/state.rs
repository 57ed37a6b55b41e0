//! The router's shared state: what every request needs, built once from the configuration.

use std::sync::Arc;

use anyhow::Context;
use axum::http::HeaderValue;
use wire::token::TokenKeys;
use wire::ServiceConfig;

use crate::config::Config;
use crate::cors::Cors;
use crate::limits::RouterLimits;
use crate::metrics::Metrics;
use crate::routing::client_region::ClientRegions;
use crate::routing::regions::Regions;
use crate::streams::Streams;
use crate::upstream::discovery::Discovery;
use crate::upstream::forwarder::Forwarder;

/// Everything a request needs, shared by all of them.
pub struct App {
    pub config: Config,
    pub regions: Arc<Regions>,
    pub client_regions: ClientRegions,
    /// Checks bearer tokens on protected routes (`identity`).
    pub tokens: TokenKeys,
    pub forwarder: Arc<Forwarder>,
    pub metrics: Arc<Metrics>,
    /// Rate limits per client address.
    pub limits: RouterLimits,
    /// `<region>/<router>`: `X-Served-By` on answers the router gives itself, and the hop
    /// header on writes it sends to a peer router.
    pub name: HeaderValue,
    pub cors: Cors,
    /// Live event streams: relays and the per-address cap.
    pub streams: Streams,
}

impl App {
    /// Validates the configuration and builds the resolver and the upstream client.
    pub fn new(config: Config) -> anyhow::Result<Arc<App>> {
        config.validate()?;
        let regions = Arc::new(Regions::from_config(&config)?);
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
        let tokens = TokenKeys::new(
            config.auth.jwt_secret.as_bytes(),
            config.auth.leeway_seconds,
        );
        let metrics = Arc::new(Metrics::new());
        let limits = RouterLimits::new(&config.limits)?;
        let discovery = Discovery::new(&config.dns).context("building the DNS resolver")?;
        let forwarder = Arc::new(
            Forwarder::new(&config, discovery, metrics.clone())
                .context("building the upstream HTTP client")?,
        );
        let streams = Streams::new(&config, forwarder.clone(), regions.clone(), metrics.clone());
        let name = HeaderValue::from_str(&format!("{}/{}", config.region, config.router_name))
            .context("region and router name must be header-safe")?;
        let cors = Cors::new(&config.cors);
        Ok(Arc::new(App {
            cors,
            config,
            regions,
            client_regions,
            tokens,
            forwarder,
            metrics,
            limits,
            name,
            streams,
        }))
    }
}
