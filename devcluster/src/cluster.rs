//! `devcluster`: the platform on one machine. Per region: a PostgreSQL primary for its shard, a
//! streaming replica of every shard, and a region-node process; between regions, WAN links that
//! delay every byte crossing them (replication streams and a node's reads of another region's
//! primary); demo data; `cluster.json` in the state folder. Everything it starts is tied to its
//! lifetime and everything it made is removed when it stops. Tests drive the same [`Cluster`]
//! in-process, to cut links and stop primaries.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use region_node::auth::{Role, TokenKeys};
use region_node::config::{default_regions, Config as NodeConfig, RegionConfig, ShardConfig};
use serde_json::{json, Value};
use testkit::postgres::{Durability, PgCluster, PgOptions};
use testkit::process::{spawn_tied, ChildSpec};

use crate::dns::DnsServer;
use crate::wan::{self, WanLink, WanLinkConfig};

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub regions: Vec<String>,
    pub latency_scale: f64,
    pub state_dir: PathBuf,
    pub base_port: u16,
    /// The `devcluster` binary, which runs each node as `devcluster run-node`.
    pub program: PathBuf,
}

const PRIMARY_MAX_CONNECTIONS: u32 = 100;

/// Port layout from `--base-port N`: region i's router at N+1+i, node at N+1001+i, primary at
/// N+2001+i, its replica of shard j at N+2101+10i+j (the defaults give DESIGN's 8081 / 9081).
///
/// Addresses: routers on 127.0.0.1 (what users call); region i's node on 127.0.1.(i+1); the
/// link carrying region i's calls to region j's router on 127.0.(10+i).(j+1) and to its node on
/// 127.0.(20+i).(j+1), each on the target's own port. Region i's DNS server is its view of the
/// network: `router.<j>.ticketing.test` resolves there to the i->j link, so one set of names
/// works in every region, as it would in a real deployment.
fn port(base: u16, offset: u32) -> anyhow::Result<u16> {
    u16::try_from(u32::from(base) + offset).context("--base-port is too high for this many regions")
}

/// Region names with their Snowflake region ids: the defaults keep theirs, others follow.
fn region_table(names: &[String]) -> anyhow::Result<Vec<RegionConfig>> {
    let defaults = default_regions();
    let mut next_id = defaults.iter().map(|r| r.id).max().unwrap_or(0) + 1;
    let mut table: Vec<RegionConfig> = Vec::new();
    for name in names {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            bail!("region names are lowercase letters, digits and '-': {name:?}");
        }
        if table.iter().any(|r| &r.name == name) {
            bail!("region {name} is listed twice");
        }
        let id = match defaults.iter().find(|r| &r.name == name) {
            Some(r) => r.id,
            None => {
                let id = next_id;
                next_id += 1;
                id
            }
        };
        if id > id_gen::MAX_REGION {
            bail!("too many regions: ids run out at {}", id_gen::MAX_REGION);
        }
        table.push(RegionConfig {
            name: name.clone(),
            id,
        });
    }
    if table.is_empty() {
        bail!("--regions names no region");
    }
    Ok(table)
}

/// A region: its primary, its replicas of every shard, its node.
pub struct Region {
    pub config: RegionConfig,
    pub primary: PgCluster,
    pub primary_url: String,
    /// (shard, replica, URL) for every shard, this region's own included.
    pub replicas: Vec<(String, PgCluster, String)>,
    pub node_url: String,
    pub router_url: String,
    /// This region's view of the region names.
    pub dns: DnsServer,
    node: Child,
    router: Child,
}

/// What a link carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Replication and a node's reads of another region's primary.
    Primary,
    /// Writes sent to the home region's router.
    Router,
    /// Reads falling back to another region's node.
    Node,
}

/// A directed WAN link: traffic from region `from` to a service homed in `to`.
pub struct Link {
    pub from: String,
    pub to: String,
    pub kind: LinkKind,
    pub link: WanLink,
}

const ZONE: &str = "ticketing.test.";
const ZONE_HOST: &str = "ticketing.test";
/// Short, so that tests of a changed record run quickly.
const DNS_TTL: Duration = Duration::from_secs(2);

fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, i as u8 + 1)
}

fn link_ip(kind: LinkKind, from: usize, to: usize) -> Ipv4Addr {
    let third = match kind {
        LinkKind::Router => 10,
        LinkKind::Node => 20,
        LinkKind::Primary => 30,
    };
    Ipv4Addr::new(127, 0, third + from as u8, to as u8 + 1)
}

/// A running cluster.
pub struct Cluster {
    pub state_dir: PathBuf,
    pub regions: Vec<Region>,
    pub links: Vec<Link>,
    pub admin_token: String,
    pub demo: Value,
}

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

    async fn start_all(
        &mut self,
        spec: &ClusterSpec,
        table: &[RegionConfig],
    ) -> anyhow::Result<()> {
        let secret = random_secret()?;
        let base = spec.base_port;
        // Primaries first: initdb dominates start-up.
        let mut primaries = Vec::new();
        for (i, region) in table.iter().enumerate() {
            let primary = PgCluster::start(PgOptions {
                data_dir: Some(
                    self.state_dir
                        .join("pg")
                        .join(format!("{}-primary", region.name)),
                ),
                port: Some(port(base, 2001 + i as u32)?),
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
        // A link for every (region, other region's shard): its replication stream and its
        // node's reads of that primary cross the ocean through it.
        for from in table {
            for (j, to) in table.iter().enumerate() {
                if from.name == to.name {
                    continue;
                }
                let target = SocketAddr::from(([127, 0, 0, 1], primaries[j].0.port()));
                let link = WanLink::start(WanLinkConfig::new(
                    format!("{}->{} primary", from.name, to.name),
                    target,
                    wan::one_way(&from.name, &to.name, spec.latency_scale),
                ))
                .await?;
                self.links.push(Link {
                    from: from.name.clone(),
                    to: to.name.clone(),
                    kind: LinkKind::Primary,
                    link,
                });
            }
        }
        // Replicas of every shard in every region, made in parallel.
        let replica_starts = table.iter().enumerate().flat_map(|(i, region)| {
            let links = &self.links;
            let primaries = &primaries;
            let state_dir = &self.state_dir;
            table.iter().enumerate().map(move |(j, shard)| async move {
                let source = if region.name == shard.name {
                    SocketAddr::from(([127, 0, 0, 1], primaries[j].0.port()))
                } else {
                    links
                        .iter()
                        .find(|l| {
                            l.from == region.name
                                && l.to == shard.name
                                && l.kind == LinkKind::Primary
                        })
                        .map(|l| l.link.local_addr())
                        .context("link for a replica")?
                };
                let replica = PgCluster::start(PgOptions {
                    data_dir: Some(
                        state_dir
                            .join("pg")
                            .join(format!("{}-replica-of-{}", region.name, shard.name)),
                    ),
                    port: Some(port(base, 2101 + 10 * i as u32 + j as u32)?),
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
        let mut replicas: Vec<Vec<(String, PgCluster, String)>> =
            table.iter().map(|_| Vec::new()).collect();
        let mut failure = None;
        for started in futures::future::join_all(replica_starts).await {
            match started {
                Ok((i, shard, replica, url)) => replicas[i].push((shard, replica, url)),
                Err(e) => failure = Some(e),
            }
        }
        // Links for router-to-router writes and node read fallback, on addresses of their own.
        for (i, from) in table.iter().enumerate() {
            for (j, to) in table.iter().enumerate() {
                if i == j {
                    continue;
                }
                for (kind, target_ip, target_port) in [
                    (
                        LinkKind::Router,
                        Ipv4Addr::LOCALHOST,
                        port(base, 1 + j as u32)?,
                    ),
                    (LinkKind::Node, node_ip(j), port(base, 1001 + j as u32)?),
                ] {
                    let link = WanLink::start(WanLinkConfig {
                        listen: SocketAddr::from((link_ip(kind, i, j), target_port)),
                        target: SocketAddr::from((target_ip, target_port)),
                        one_way_delay: wan::one_way(&from.name, &to.name, spec.latency_scale),
                        name: format!("{}->{} {kind:?}", from.name, to.name),
                    })
                    .await?;
                    self.links.push(Link {
                        from: from.name.clone(),
                        to: to.name.clone(),
                        kind,
                        link,
                    });
                }
            }
        }
        // Keep whatever started so that `stop` can clean it up, then report.
        for ((region, (primary, primary_url)), replicas) in
            table.iter().zip(primaries).zip(replicas)
        {
            let i = self.regions.len();
            let node_addr = SocketAddr::from((node_ip(i), port(base, 1001 + i as u32)?));
            let router_addr = SocketAddr::from(([127, 0, 0, 1], port(base, 1 + i as u32)?));
            let dns =
                DnsServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), ZONE, DNS_TTL).await?;
            for (j, other) in table.iter().enumerate() {
                let (node, router) = if i == j {
                    (node_ip(i), Ipv4Addr::LOCALHOST)
                } else {
                    (
                        link_ip(LinkKind::Node, i, j),
                        link_ip(LinkKind::Router, i, j),
                    )
                };
                dns.set(&format!("node.{}", other.name), node)?;
                dns.set(&format!("router.{}", other.name), router)?;
            }
            let node = self.spawn_node(
                spec,
                table,
                region,
                &primary_url,
                &replicas,
                node_addr,
                &secret,
            )?;
            let router = self.spawn_router(spec, table, region, router_addr, dns.local_addr())?;
            self.regions.push(Region {
                config: region.clone(),
                primary,
                primary_url,
                replicas,
                node_url: format!("http://{node_addr}"),
                router_url: format!("http://{router_addr}"),
                dns,
                node,
                router,
            });
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let http = reqwest::Client::new();
        for r in &mut self.regions {
            let what = format!("the {} node", r.config.name);
            wait_healthy(&http, &mut r.node, &format!("{}/readyz", r.node_url), &what).await?;
        }
        for r in &mut self.regions {
            let what = format!("the {} router", r.config.name);
            wait_healthy(
                &http,
                &mut r.router,
                &format!("{}/healthz", r.router_url),
                &what,
            )
            .await?;
        }
        let tokens = TokenKeys::new(secret.as_bytes(), 30 * 24 * 3600);
        self.demo = seed_demo_data(&http, &self.regions, &tokens).await?;
        wait_replicated(&self.regions).await?;
        self.admin_token = self.demo["adminToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let path = self.state_dir.join("cluster.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&self.cluster_json())?)
            .with_context(|| format!("writing {}", path.display()))
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_node(
        &self,
        spec: &ClusterSpec,
        table: &[RegionConfig],
        region: &RegionConfig,
        primary_url: &str,
        replicas: &[(String, PgCluster, String)],
        node_addr: SocketAddr,
        secret: &str,
    ) -> anyhow::Result<Child> {
        let mut config = NodeConfig {
            region: region.name.clone(),
            node_name: "node-1".into(),
            listen: node_addr,
            regions: table.to_vec(),
            ..NodeConfig::default()
        };
        config.database.url = primary_url.to_owned();
        config.auth.jwt_secret = secret.to_owned();
        config.reads.shards = replicas
            .iter()
            .map(|(shard, _, url)| ShardConfig {
                name: shard.clone(),
                replica: Some(url.clone()),
                primary: self
                    .links
                    .iter()
                    .find(|l| {
                        l.from == region.name && &l.to == shard && l.kind == LinkKind::Primary
                    })
                    .map(|l| format!("postgres://postgres@{}/ticketing", l.link.local_addr())),
            })
            .collect();
        self.spawn_service(spec, "run-node", &format!("{}-node", region.name), &config)
    }

    /// Writes `config` to `<name>.toml` in the state folder and runs `devcluster <subcommand>`
    /// on it, logging to `logs/<name>.log`, tied to our life; SIGTERM lets it finish cleanly.
    fn spawn_service(
        &self,
        spec: &ClusterSpec,
        subcommand: &str,
        name: &str,
        config: &impl serde::Serialize,
    ) -> anyhow::Result<Child> {
        let config_path = self.state_dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, toml::to_string(config)?)?;
        let log = std::fs::File::create(self.state_dir.join("logs").join(format!("{name}.log")))?;
        let mut command = Command::new(&spec.program);
        command
            .arg(subcommand)
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        spawn_tied(ChildSpec::new(command).death_signal(libc::SIGTERM))
            .with_context(|| format!("starting {name}"))
    }

    /// A router process for `region`, finding every endpoint by name through the region's DNS.
    fn spawn_router(
        &self,
        spec: &ClusterSpec,
        table: &[RegionConfig],
        region: &RegionConfig,
        listen: SocketAddr,
        nameserver: SocketAddr,
    ) -> anyhow::Result<Child> {
        let mut config = router::Config {
            region: region.name.clone(),
            router_name: "router-1".into(),
            listen,
            ..router::Config::default()
        };
        config.regions = table
            .iter()
            .enumerate()
            .map(|(j, r)| {
                Ok(router::config::RegionConfig {
                    name: r.name.clone(),
                    id: r.id,
                    node: format!(
                        "http://node.{}.{ZONE_HOST}:{}",
                        r.name,
                        port(spec.base_port, 1001 + j as u32)?
                    ),
                    router: format!(
                        "http://router.{}.{ZONE_HOST}:{}",
                        r.name,
                        port(spec.base_port, 1 + j as u32)?
                    ),
                    fallback_order: None,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        config.dns.nameserver = Some(nameserver);
        self.spawn_service(
            spec,
            "run-router",
            &format!("{}-router", region.name),
            &config,
        )
    }

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

    /// The machine-readable description of DESIGN section 7.
    pub fn cluster_json(&self) -> Value {
        let regions: Vec<Value> = self
            .regions
            .iter()
            .map(|r| {
                let replicas: serde_json::Map<String, Value> = r
                    .replicas
                    .iter()
                    .map(|(shard, _, url)| (shard.clone(), Value::String(url.clone())))
                    .collect();
                json!({
                    "name": r.config.name,
                    "id": r.config.id,
                    "router": r.router_url,
                    "node": r.node_url,
                    "primary": r.primary_url,
                    "dns": r.dns.local_addr().to_string(),
                    "replicas": replicas,
                })
            })
            .collect();
        let links: Vec<Value> = self
            .links
            .iter()
            .map(|l| {
                json!({"from": l.from, "to": l.to, "address": l.link.local_addr().to_string(),
                             "oneWayDelayMs": l.link.one_way_delay().as_millis() as u64})
            })
            .collect();
        json!({
            "adminToken": self.admin_token,
            "regions": regions,
            "links": links,
            "demo": {"events": self.demo["events"], "users": self.demo["users"]},
        })
    }

    /// Stops every process and link and removes the state folder.
    pub async fn stop(mut self) {
        for r in &self.regions {
            // SIGTERM: routers and nodes finish in-flight requests; nodes give their machine
            // lease back.
            testkit::process::terminate(&r.router);
            testkit::process::terminate(&r.node);
        }
        for r in &mut self.regions {
            for child in [&mut r.router, &mut r.node] {
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
            for child in [&mut r.router, &mut r.node] {
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
            r.config.name, r.router_url, r.node_url, r.primary_url
        );
    }
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
                    for (what, child) in [("node", &mut r.node), ("router", &mut r.router)] {
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

/// Polls `url` until it answers 2xx, failing early if `child` exits.
async fn wait_healthy(
    http: &reqwest::Client,
    child: &mut Child,
    url: &str,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}); see its log in the state folder's logs/");
        }
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not become ready in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every replica has replayed its primary's WAL as of now, so that the demo data
/// reads the same in every region once the cluster is announced (a read without a consistency
/// token may otherwise still miss it on a far replica).
async fn wait_replicated(regions: &[Region]) -> anyhow::Result<()> {
    use sqlx::Connection;
    let deadline = Instant::now() + Duration::from_secs(30);
    for home in regions {
        let mut primary = sqlx::PgConnection::connect(&home.primary_url).await?;
        let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
            .fetch_one(&mut primary)
            .await?;
        for (shard, _, url) in regions.iter().flat_map(|r| &r.replicas) {
            if *shard != home.config.name {
                continue;
            }
            let mut replica = sqlx::PgConnection::connect(url).await?;
            loop {
                let replayed: Option<bool> =
                    sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
                        .bind(&lsn)
                        .fetch_one(&mut replica)
                        .await?;
                if replayed == Some(true) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("a replica of {shard} did not replay {lsn} within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    Ok(())
}

/// One event per region with the seed's tiers and prices, a few thousand tickets, a few users.
async fn seed_demo_data(
    http: &reqwest::Client,
    regions: &[Region],
    tokens: &TokenKeys,
) -> anyhow::Result<Value> {
    let first = &regions[0];
    let admin_user = post(
        http,
        &format!("{}/api/v1/users", first.node_url),
        None,
        json!({"name": "Admin"}),
    )
    .await?;
    let admin_id: id_gen::Id = admin_user["user"]["id"]
        .as_str()
        .context("admin user id")?
        .parse()?;
    let admin = tokens
        .issue(admin_id, Role::Admin)
        .map_err(|e| anyhow::anyhow!("signing the admin token: {e}"))?;
    let mut events = Vec::new();
    let mut users = Vec::new();
    for r in regions {
        let api = format!("{}/api/v1", r.node_url);
        let event = post(
            http,
            &format!("{api}/events"),
            Some(&admin),
            json!({
                "name": format!("{} Arena Night", demo_city(&r.config.name)),
                "description": "Demo on-sale: VIP, Front Row and GA.",
                "venue": format!("{} Arena", demo_city(&r.config.name)),
                "startsAt": "2030-07-01T19:30:00Z",
                "homeRegion": r.config.name,
                "tiers": [
                    {"name": "VIP", "priceCents": 10_000},
                    {"name": "Front Row", "priceCents": 5_000},
                    {"name": "GA", "priceCents": 1_000},
                ],
            }),
        )
        .await?;
        let event_id = event["id"].as_str().context("event id")?.to_owned();
        post(
            http,
            &format!("{api}/tickets/create"),
            Some(&admin),
            json!({"eventId": event_id, "tiers": {"VIP": 100, "Front Row": 400, "GA": 2500}}),
        )
        .await?;
        events.push(json!({"id": event_id, "homeRegion": r.config.name, "name": event["name"]}));
        for n in 1..=3 {
            let user = post(
                http,
                &format!("{api}/users"),
                None,
                json!({"name": format!("Demo {} {n}", r.config.name)}),
            )
            .await?;
            users.push(json!({
                "id": user["user"]["id"],
                "name": user["user"]["name"],
                "homeRegion": r.config.name,
                "token": user["token"],
            }));
        }
    }
    Ok(json!({"adminToken": admin, "events": events, "users": users}))
}

/// A city to name the demo venue after.
fn demo_city(region: &str) -> String {
    match region {
        "us-east" => "New York".into(),
        "eu-west" => "Dublin".into(),
        "ap-southeast" => "Singapore".into(),
        other => other.to_owned(),
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut request = http.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("POST {url}: body"))?;
    if !status.is_success() {
        bail!("POST {url}: {status} {body}");
    }
    Ok(body)
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
    // The PostgreSQL servers may run as another user: let them reach their folders.
    use std::os::unix::fs::PermissionsExt;
    for d in [dir.clone(), dir.join("pg")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
    }
    if testkit::postgres::server_user()?.is_some() {
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

/// Ctrl-C or SIGTERM.
async fn stop_requested() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A region-node in this process, for `devcluster run-node`: stops on SIGTERM or Ctrl-C.
pub async fn run_node(config_path: &Path) -> anyhow::Result<()> {
    let config = NodeConfig::load(Some(config_path))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    region_node::serve(config, listener, stop_requested()).await
}

/// A router in this process, for `devcluster run-router`: stops on SIGTERM or Ctrl-C.
pub async fn run_router(config_path: &Path) -> anyhow::Result<()> {
    let config = router::Config::load(Some(config_path))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    router::serve(config, listener, stop_requested()).await
}
