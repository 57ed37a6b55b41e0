//! A cluster's life: [`Cluster::start`] in named steps (primaries, their links, replicas, the
//! router and node links, DNS servers, nodes and routers, ready, demo data, replicated,
//! `cluster.json`), [`Cluster::stop`], the `Drop` that cleans up after a test that panicked,
//! and [`run`]: the command in the foreground until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use region_node::config::RegionConfig;
use serde_json::Value;
use testkit::postgres::{server_user, Durability, PgCluster, PgOptions};
use wire::service::stop_requested;
use wire::token::TokenKeys;

use super::readiness::wait_replicated;
use super::seed::{seed_demo_data, DEMO_PASSWORD};
use super::services::{connection_cap, open_file_limit, router_config};
use super::topology::{dns_view, region_pairs, region_table, Layout, LinkKind, DNS_TTL, ZONE};
use super::{Cluster, ClusterSpec, Link, Region};
use crate::dns::DnsServer;
use crate::wan::{self, WanLink, WanLinkConfig};

const PRIMARY_MAX_CONNECTIONS: u32 = 100;

/// A region's primary and the URL of its `ticketing` database.
type Primary = (PgCluster, String);
/// A region's replica of each shard: (shard, replica, URL).
type Replicas = Vec<(String, PgCluster, String)>;

impl Cluster {
    /// Starts everything; on failure stops what it started.
    pub async fn start(spec: &ClusterSpec) -> anyhow::Result<Cluster> {
        let table = region_table(&spec.regions)?;
        let state_dir = prepare_state_dir(&spec.state_dir)?;
        let mut cluster = Cluster {
            state_dir,
            regions: Vec::new(),
            links: Vec::new(),
            admin_token: String::new(),
            jwt_secret: String::new(),
            demo: Value::Null,
        };
        match cluster.start_all(spec, &table).await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.stop().await;
                Err(e)
            }
        }
    }

    /// Each step keeps what it started in `self`, so that `stop` can clean it up.
    async fn start_all(
        &mut self,
        spec: &ClusterSpec,
        table: &[RegionConfig],
    ) -> anyhow::Result<()> {
        let layout = Layout::new(spec.base_port);
        let secret = random_secret()?;
        // Primaries first: initdb dominates start-up.
        let primaries = self.start_primaries(table, layout).await?;
        self.start_links(&[LinkKind::Primary], table, layout, spec.latency_scale)
            .await?;
        let (replicas, replica_failure) = self.start_replicas(table, layout).await;
        self.start_links(
            &[LinkKind::Router, LinkKind::Node],
            table,
            layout,
            spec.latency_scale,
        )
        .await?;
        // Regions hold the replicas that did start, so a failed replica is reported only now.
        self.start_regions(spec, table, primaries, replicas, &secret)
            .await?;
        if let Some(e) = replica_failure {
            return Err(e);
        }
        let http = reqwest::Client::new();
        self.wait_ready(&http).await?;
        let tokens = TokenKeys::new(secret.as_bytes(), wire::token::DEFAULT_LEEWAY_SECONDS);
        self.jwt_secret = secret.clone();
        self.demo = seed_demo_data(&http, &self.regions, &tokens).await?;
        wait_replicated(&self.regions).await?;
        self.admin_token = self.demo["adminToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.write_cluster_json()
    }

    /// Each region's primary, kept in the state folder, on its layout port.
    async fn start_primaries(
        &self,
        table: &[RegionConfig],
        layout: Layout,
    ) -> anyhow::Result<Vec<Primary>> {
        let mut primaries = Vec::new();
        for (i, region) in table.iter().enumerate() {
            let primary = PgCluster::start(PgOptions {
                data_dir: Some(self.pg_dir(&format!("{}-primary", region.name))),
                port: Some(layout.primary_port(i)?),
                durability: Durability::Durable,
                max_connections: PRIMARY_MAX_CONNECTIONS,
                shared_buffers: "32MB".into(),
                ..PgOptions::default()
            })
            .await
            .with_context(|| format!("starting the {} primary", region.name))?;
            let url = primary.create_database("ticketing").await?;
            primaries.push((primary, url));
        }
        Ok(primaries)
    }

    /// A link of each of `kinds` for every ordered pair of regions. Primary links carry a
    /// region's replication stream and its node's reads of that primary across the ocean;
    /// router and node links, router-to-router writes and node read fallback.
    async fn start_links(
        &mut self,
        kinds: &[LinkKind],
        table: &[RegionConfig],
        layout: Layout,
        latency_scale: f64,
    ) -> anyhow::Result<()> {
        for (i, j) in region_pairs(table.len()) {
            let (from, to) = (&table[i].name, &table[j].name);
            for &kind in kinds {
                let (listen, target) = layout.link(kind, i, j)?;
                let name = match kind {
                    LinkKind::Primary => format!("{from}->{to} primary"),
                    _ => format!("{from}->{to} {kind:?}"),
                };
                let link = WanLink::start(WanLinkConfig {
                    listen,
                    target,
                    one_way_delay: wan::one_way(from, to, latency_scale),
                    name,
                })
                .await?;
                self.links.push(Link {
                    from: from.clone(),
                    to: to.clone(),
                    kind,
                    link,
                });
            }
        }
        Ok(())
    }

    /// Replicas of every shard in every region, made in parallel; another region's shard
    /// streams through the primary link. Each region's replicas come in shard order, with the
    /// last failure, if any, beside them.
    async fn start_replicas(
        &self,
        table: &[RegionConfig],
        layout: Layout,
    ) -> (Vec<Replicas>, Option<anyhow::Error>) {
        let starts = table.iter().enumerate().flat_map(|(i, region)| {
            table.iter().enumerate().map(move |(j, shard)| async move {
                let source = if i == j {
                    layout.primary_addr(j)?
                } else {
                    self.primary_link_addr(&region.name, &shard.name)
                        .context("link for a replica")?
                };
                let replica = PgCluster::start(PgOptions {
                    data_dir: Some(
                        self.pg_dir(&format!("{}-replica-of-{}", region.name, shard.name)),
                    ),
                    port: Some(layout.replica_port(i, j)?),
                    durability: Durability::Durable,
                    // A hot standby needs at least its primary's max_connections.
                    max_connections: PRIMARY_MAX_CONNECTIONS,
                    shared_buffers: "16MB".into(),
                    replica_of: Some(source),
                    ..PgOptions::default()
                })
                .await
                .with_context(|| format!("starting {}'s replica of {}", region.name, shard.name))?;
                let url = replica.url("ticketing");
                anyhow::Ok((i, shard.name.clone(), replica, url))
            })
        });
        let mut replicas: Vec<Replicas> = table.iter().map(|_| Vec::new()).collect();
        let mut failure = None;
        for started in futures::future::join_all(starts).await {
            match started {
                Ok((i, shard, replica, url)) => replicas[i].push((shard, replica, url)),
                Err(e) => failure = Some(e),
            }
        }
        (replicas, failure)
    }

    /// Per region: its DNS server (its view of the names), its node and its router, kept with
    /// its primary and replicas.
    async fn start_regions(
        &mut self,
        spec: &ClusterSpec,
        table: &[RegionConfig],
        primaries: Vec<Primary>,
        replicas: Vec<Replicas>,
        secret: &str,
    ) -> anyhow::Result<()> {
        let layout = Layout::new(spec.base_port);
        let descriptors = open_file_limit();
        for (i, ((region, (primary, primary_url)), replicas)) in
            table.iter().zip(primaries).zip(replicas).enumerate()
        {
            let node_addr = layout.node_addr(i)?;
            let router_addr = layout.router_addr(i)?;
            let dns =
                DnsServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), ZONE, DNS_TTL).await?;
            for (name, ip) in dns_view(table, i) {
                dns.set(&name, ip)?;
            }
            let mut node_config =
                self.node_config(table, region, node_addr, &primary_url, &replicas, secret);
            node_config.ops_listen = layout.node_ops_addr(i)?;
            node_config.limits = node_config.limits.scaled(spec.rate_limit_scale);
            node_config.connections.max = connection_cap(descriptors, node_config.connections.max);
            let node = self.spawn_node(spec, &node_config)?;
            // Every router of the region points at its node; other regions reach the first.
            let mut routers = Vec::new();
            let mut router_urls = Vec::new();
            for k in 0..spec.routers_per_region.max(1) {
                let listen = layout.nth_router_addr(i, k)?;
                let mut config =
                    router_config(layout, table, region, listen, dns.local_addr(), secret, k)?;
                config.ops_listen = layout.nth_router_ops_addr(i, k)?;
                config.limits = config.limits.scaled(spec.rate_limit_scale);
                config.connections.max = connection_cap(descriptors, config.connections.max);
                match self.spawn_router(spec, &config, k) {
                    Ok(child) => routers.push(child),
                    Err(e) => {
                        // Not yet kept in a region: end the ones started before failing.
                        for mut child in routers {
                            let _ = child.kill();
                            let _ = child.wait();
                        }
                        return Err(e);
                    }
                }
                router_urls.push(format!("http://{listen}"));
            }
            self.regions.push(Region {
                config: region.clone(),
                primary,
                primary_url,
                replicas,
                node_url: format!("http://{node_addr}"),
                router_url: format!("http://{router_addr}"),
                router_urls,
                node_ops_url: format!("http://{}", node_config.ops_listen),
                router_ops_url: format!("http://{}", layout.router_ops_addr(i)?),
                dns,
                node,
                routers,
            });
        }
        Ok(())
    }

    /// A PostgreSQL data directory in the state folder.
    fn pg_dir(&self, name: &str) -> PathBuf {
        self.state_dir.join("pg").join(name)
    }

    /// Stops every process and link and removes the state folder.
    pub async fn stop(mut self) {
        for r in &self.regions {
            // SIGTERM: routers and nodes finish in-flight requests; nodes give their machine
            // lease back.
            for router in &r.routers {
                testkit::process::terminate(router);
            }
            testkit::process::terminate(&r.node);
        }
        for r in &mut self.regions {
            for child in r.routers.iter_mut().chain([&mut r.node]) {
                let deadline = Instant::now() + Duration::from_secs(10);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for l in self.links.drain(..) {
            l.link.shutdown().await;
        }
        for r in self.regions.iter_mut() {
            for (_, replica, _) in &mut r.replicas {
                replica.stop().await;
            }
            r.primary.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// A cluster dropped without `stop` (a test that panicked) still ends its processes and removes
/// its state folder; the PostgreSQL servers stop through their own `Drop`.
impl Drop for Cluster {
    fn drop(&mut self) {
        for r in &mut self.regions {
            for child in r.routers.iter_mut().chain([&mut r.node]) {
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        // Servers and links first (their own Drop stops them), then their folders.
        self.regions.clear();
        self.links.clear();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Starts the cluster, waits for Ctrl-C or SIGTERM, then stops it and removes its state.
pub async fn run(spec: ClusterSpec) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut cluster = Cluster::start(&spec).await?;
    println!(
        "devcluster up in {:.1} s; state in {}",
        started.elapsed().as_secs_f64(),
        cluster.state_dir.display()
    );
    for r in &cluster.regions {
        // Users talk to the routers; nodes and primaries are for operators.
        println!(
            "  {:<14} router {}   (node {}, primary {})",
            r.config.name,
            r.router_urls.join(", "),
            r.node_url,
            r.primary_url
        );
    }
    print_accounts(&cluster.demo);
    println!(
        "cluster.json: {}",
        cluster.state_dir.join("cluster.json").display()
    );
    println!("Ctrl-C stops everything.");
    watch(&mut cluster).await;
    println!("stopping…");
    cluster.stop().await;
    Ok(())
}

/// The demo accounts and their known passwords (log in with `POST /api/v1/auth/login`).
fn print_accounts(demo: &Value) {
    let admin = &demo["admin"];
    println!(
        "admin account: {} / {} (home {})",
        admin["email"].as_str().unwrap_or_default(),
        admin["password"].as_str().unwrap_or_default(),
        admin["homeRegion"].as_str().unwrap_or_default()
    );
    println!("demo users (password {DEMO_PASSWORD}):");
    for user in demo["users"].as_array().into_iter().flatten() {
        println!(
            "  {:<14} {}",
            user["homeRegion"].as_str().unwrap_or_default(),
            user["email"].as_str().unwrap_or_default()
        );
    }
}

/// Waits for Ctrl-C or SIGTERM, reporting any node or router that dies meanwhile.
async fn watch(cluster: &mut Cluster) {
    let stop = stop_requested();
    tokio::pin!(stop);
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = check.tick() => {
                for r in cluster.regions.iter_mut() {
                    let routers = r.routers.iter_mut().map(|c| ("router", c));
                    for (what, child) in [("node", &mut r.node)].into_iter().chain(routers) {
                        if let Ok(Some(status)) = child.try_wait() {
                            eprintln!("the {} {what} exited ({status}); see its log", r.config.name);
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// A state folder of our own: leftovers of a run that was killed are removed first.
fn prepare_state_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        let marker = dir.join("cluster.json");
        let ours = marker.exists() || dir.join("pg").exists() || dir.join("logs").exists();
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !ours && !empty {
            bail!(
                "{} exists and is not a devcluster state folder; choose another --state-dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::create_dir_all(dir.join("pg"))?;
    let dir = dir.canonicalize()?;
    // The folder holds secrets (cluster.json, the services' configurations): no one else may
    // list or read it. PostgreSQL servers running as another user still pass through it to
    // their folders under `pg/`, which they may read.
    use std::os::unix::fs::PermissionsExt;
    let other_server_user = server_user()?.is_some();
    let own_mode = if other_server_user { 0o711 } else { 0o700 };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(own_mode))?;
    std::fs::set_permissions(dir.join("pg"), std::fs::Permissions::from_mode(0o755))?;
    if other_server_user {
        for ancestor in dir.ancestors().skip(1) {
            let mode = std::fs::metadata(ancestor)?.permissions().mode();
            if mode & 0o001 == 0 {
                bail!(
                    "the PostgreSQL servers run as the `postgres` user, which cannot enter {} \
                     (mode {:o}); choose a --state-dir outside it",
                    ancestor.display(),
                    mode & 0o777
                );
            }
        }
    }
    Ok(dir)
}

fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
