//! The router's shared state: what every request needs, built once from the configuration.

use std::sync::Arc;

use anyhow::Context;
use axum::http::HeaderValue;
use wire::ServiceConfig;

use crate::config::Config;
use crate::cors::Cors;
use crate::limits::RouterLimits;
use crate::metrics::Metrics;
use crate::routing::client_region::ClientRegions;
use crate::routing::regions::Regions;
use crate::upstream::discovery::Discovery;
use crate::upstream::forwarder::Forwarder;

/// Everything a request needs, shared by all of them.
pub struct App {
    pub config: Config,
    pub regions: Regions,
    pub client_regions: ClientRegions,
    pub forwarder: Forwarder,
    pub metrics: Arc<Metrics>,
    /// Rate limits per client address.
    pub limits: RouterLimits,
    /// `<region>/<router>`: `X-Served-By` on answers the router gives itself, and the hop
    /// header on writes it sends to a peer router.
    pub name: HeaderValue,
    pub cors: Cors,
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
        let limits = RouterLimits::new(&config.limits)?;
        let discovery = Discovery::new(&config.dns).context("building the DNS resolver")?;
        let forwarder = Forwarder::new(&config, discovery, metrics.clone())
            .context("building the upstream HTTP client")?;
        let name = HeaderValue::from_str(&format!("{}/{}", config.region, config.router_name))
            .context("region and router name must be header-safe")?;
        let cors = Cors::new(&config.cors);
        Ok(Arc::new(App {
            cors,
            config,
            regions,
            client_regions,
            forwarder,
            metrics,
            limits,
            name,
        }))
    }
}
