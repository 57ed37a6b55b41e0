//! `devcluster`: the platform on one machine. Per region: a PostgreSQL primary for its shard, a
//! streaming replica of every shard, a region-node and a router process, and a DNS server for
//! the region names; between regions, WAN links that delay every byte crossing them (replication
//! streams, a node's reads of another region's primary, router-to-router writes, read
//! fallback); demo data; `cluster.json` in the state folder. Everything it starts is tied to its
//! lifetime and everything it made is removed when it stops. Tests drive the same [`Cluster`]
//! in-process, to cut links and stop primaries.
//!
//! By concern: `topology` (port layout, addresses, region table, which links exist, each
//! region's view of the names), `services` (the node and router processes), `seed` (demo data),
//! `readiness` (waiting until services answer and replicas caught up), `lifecycle` (start in
//! named steps, stop, drop, watch, run), `description` (`cluster.json`) and `private` (files
//! holding secrets, mode 0600).

mod description;
mod lifecycle;
mod private;
mod readiness;
mod seed;
mod services;
mod topology;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;

use region_node::config::RegionConfig;
use serde_json::Value;
use testkit::postgres::PgCluster;

use crate::dns::DnsServer;
use crate::wan::WanLink;

pub use lifecycle::run;
pub use services::{run_node, run_router};
pub use topology::LinkKind;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub regions: Vec<String>,
    pub latency_scale: f64,
    pub state_dir: PathBuf,
    pub base_port: u16,
    /// Multiplies every rate limit of nodes and routers (their defaults otherwise); `0` turns
    /// them off. Load tests and benchmarks, which all come from 127.0.0.1, raise them.
    pub rate_limit_scale: f64,
    /// The `devcluster` binary, which runs each node as `devcluster run-node`.
    pub program: PathBuf,
    /// Routers in every region, all in front of its node (at least 1): one process cannot hold
    /// more streams than its open-file limit, so many subscribers need several routers.
    pub routers_per_region: usize,
}

/// A region: its primary, its replicas of every shard, its node.
pub struct Region {
    pub config: RegionConfig,
    pub primary: PgCluster,
    pub primary_url: String,
    /// (shard, replica, URL) for every shard, this region's own included.
    pub replicas: Vec<(String, PgCluster, String)>,
    pub node_url: String,
    /// The first router: the one other regions' routers send writes to.
    pub router_url: String,
    /// Every router of the region, the first one first.
    pub router_urls: Vec<String>,
    /// The operations listeners (`/metrics`, the node's `/cluster`), of the first router.
    pub node_ops_url: String,
    pub router_ops_url: String,
    /// This region's view of the region names.
    pub dns: DnsServer,
    node: Child,
    /// One per router of `router_urls`, in the same order.
    routers: Vec<Child>,
}

/// A directed WAN link: traffic from region `from` to a service homed in `to`.
pub struct Link {
    pub from: String,
    pub to: String,
    pub kind: LinkKind,
    pub link: WanLink,
}

/// A running cluster.
pub struct Cluster {
    pub state_dir: PathBuf,
    pub regions: Vec<Region>,
    pub links: Vec<Link>,
    pub admin_token: String,
    /// The deployment's JWT secret, in cluster.json for tools that mint users' tokens
    /// themselves (loadgen's `queue`: 50,000 sign-ups would cost 50,000 password hashes).
    pub jwt_secret: String,
    pub demo: Value,
}

impl Cluster {
    pub fn region(&self, name: &str) -> &Region {
        self.regions
            .iter()
            .find(|r| r.config.name == name)
            .unwrap_or_else(|| panic!("no region {name}"))
    }

    pub fn region_mut(&mut self, name: &str) -> &mut Region {
        self.regions
            .iter_mut()
            .find(|r| r.config.name == name)
            .unwrap_or_else(|| panic!("no region {name}"))
    }

    /// The link carrying traffic from `from` to services homed in `to`.
    pub fn link(&self, from: &str, to: &str) -> Option<&WanLink> {
        self.links
            .iter()
            .find(|l| l.from == from && l.to == to)
            .map(|l| &l.link)
    }

    /// Where region `from` reaches the primary of shard `to`: the WAN link in front of it.
    fn primary_link_addr(&self, from: &str, to: &str) -> Option<SocketAddr> {
        self.links
            .iter()
            .find(|l| l.from == from && l.to == to && l.kind == LinkKind::Primary)
            .map(|l| l.link.local_addr())
    }

    /// A region goes dark to the others: every link into or out of it black-holes.
    pub fn cut_region(&self, name: &str) {
        for l in self.links.iter().filter(|l| l.from == name || l.to == name) {
            l.link.cut();
        }
    }

    pub fn restore_region(&self, name: &str) {
        for l in self.links.iter().filter(|l| l.from == name || l.to == name) {
            l.link.restore();
        }
    }
}
