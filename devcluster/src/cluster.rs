//! `devcluster`: the platform on one machine. Per region, a PostgreSQL primary for its shard and
//! a region-node process; demo data; `cluster.json` in the state folder. Everything it starts is
//! tied to its lifetime and everything it made is removed when it stops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use region_node::auth::{Role, TokenKeys};
use region_node::config::{default_regions, Config as NodeConfig, RegionConfig};
use serde::Serialize;
use serde_json::{json, Value};

use crate::postgres::{Durability, PgCluster, PgOptions};
use crate::process::{spawn_tied, ChildSpec};

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub regions: Vec<String>,
    pub latency_scale: f64,
    pub state_dir: PathBuf,
    pub base_port: u16,
}

/// Port layout from `--base-port N`: region i's router at N+1+i, node at N+1001+i, primary at
/// N+2001+i (the defaults give the 8081 / 9081 of DESIGN section 7).
struct Ports {
    node: u16,
    primary: u16,
}

fn ports(base: u16, index: usize) -> anyhow::Result<Ports> {
    let at = |offset: u32| -> anyhow::Result<u16> {
        u16::try_from(u32::from(base) + offset + index as u32)
            .context("--base-port is too high for this many regions")
    };
    Ok(Ports {
        node: at(1001)?,
        primary: at(2001)?,
    })
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

struct RunningRegion {
    config: RegionConfig,
    primary: PgCluster,
    primary_url: String,
    node_url: String,
    node: Child,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RegionEntry {
    name: String,
    id: u8,
    node: String,
    primary: String,
    /// Each shard's replica in this region; filled once replicas exist (multi-region issue).
    replicas: serde_json::Map<String, Value>,
}

/// Starts the cluster, waits for Ctrl-C or SIGTERM, then stops it and removes its state.
pub async fn run(spec: ClusterSpec) -> anyhow::Result<()> {
    let regions = region_table(&spec.regions)?;
    let state_dir = prepare_state_dir(&spec.state_dir)?;
    let secret = random_secret()?;
    let started = Instant::now();
    if (spec.latency_scale - 1.0).abs() > f64::EPSILON {
        tracing::warn!(
            "--latency-scale is accepted but there are no WAN links yet: regions do not talk to \
             each other until the router and replicas exist"
        );
    }

    let mut running: Vec<RunningRegion> = Vec::new();
    let result = start_all(&spec, &regions, &state_dir, &secret, &mut running).await;
    let outcome = match result {
        Ok(()) => {
            println!(
                "devcluster up in {:.1} s; state in {}",
                started.elapsed().as_secs_f64(),
                state_dir.display()
            );
            for r in &running {
                println!(
                    "  {:<14} node {}   primary {}",
                    r.config.name, r.node_url, r.primary_url
                );
            }
            println!("cluster.json: {}", state_dir.join("cluster.json").display());
            println!("Ctrl-C stops everything.");
            watch(&mut running).await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    println!("stopping…");
    stop_all(&mut running).await;
    let _ = std::fs::remove_dir_all(&state_dir);
    outcome
}

async fn start_all(
    spec: &ClusterSpec,
    regions: &[RegionConfig],
    state_dir: &Path,
    secret: &str,
    running: &mut Vec<RunningRegion>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the devcluster binary")?;
    // Primaries first, all of them, then nodes: initdb dominates start-up.
    let mut primaries = Vec::new();
    for (i, region) in regions.iter().enumerate() {
        let ports = ports(spec.base_port, i)?;
        let cluster = PgCluster::start(PgOptions {
            data_dir: Some(
                state_dir
                    .join("pg")
                    .join(format!("{}-primary", region.name)),
            ),
            port: Some(ports.primary),
            durability: Durability::Durable,
            max_connections: 100,
            shared_buffers: "64MB".into(),
            ..PgOptions::default()
        })
        .await
        .with_context(|| format!("starting the {} primary", region.name))?;
        let url = cluster.create_database("ticketing").await?;
        primaries.push((cluster, url));
    }
    for (i, (region, (primary, primary_url))) in regions.iter().zip(primaries).enumerate() {
        let ports = ports(spec.base_port, i)?;
        let mut config = NodeConfig {
            region: region.name.clone(),
            node_name: "node-1".into(),
            listen: ([127, 0, 0, 1], ports.node).into(),
            regions: regions.to_vec(),
            ..NodeConfig::default()
        };
        config.database.url = primary_url.clone();
        config.auth.jwt_secret = secret.to_owned();
        let config_path = state_dir.join(format!("{}-node.toml", region.name));
        std::fs::write(&config_path, toml::to_string(&config)?)?;
        let log = std::fs::File::create(
            state_dir
                .join("logs")
                .join(format!("{}-node.log", region.name)),
        )?;
        let mut command = Command::new(&exe);
        command
            .arg("run-node")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let node = spawn_tied(ChildSpec::new(command).death_signal(libc::SIGTERM))
            .with_context(|| format!("starting the {} node", region.name))?;
        running.push(RunningRegion {
            config: region.clone(),
            primary,
            primary_url,
            node_url: format!("http://127.0.0.1:{}", ports.node),
            node,
        });
    }
    let http = reqwest::Client::new();
    for r in running.iter_mut() {
        wait_ready(&http, r).await?;
    }
    let tokens = TokenKeys::new(secret.as_bytes(), 30 * 24 * 3600);
    let demo = seed_demo_data(&http, running, &tokens).await?;
    write_cluster_json(state_dir, running, &demo)?;
    Ok(())
}

async fn wait_ready(http: &reqwest::Client, region: &mut RunningRegion) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("{}/readyz", region.node_url);
    loop {
        if let Some(status) = region.node.try_wait()? {
            bail!(
                "the {} node exited ({status}); see logs/{}-node.log in the state folder",
                region.config.name,
                region.config.name
            );
        }
        if let Ok(response) = http.get(&url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the {} node did not become ready in 30 s",
                region.config.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One event per region with the seed's tiers and prices, a few thousand tickets, a few users.
async fn seed_demo_data(
    http: &reqwest::Client,
    regions: &[RunningRegion],
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

fn write_cluster_json(
    state_dir: &Path,
    regions: &[RunningRegion],
    demo: &Value,
) -> anyhow::Result<()> {
    let entries: Vec<RegionEntry> = regions
        .iter()
        .map(|r| RegionEntry {
            name: r.config.name.clone(),
            id: r.config.id,
            node: r.node_url.clone(),
            primary: r.primary_url.clone(),
            replicas: serde_json::Map::new(),
        })
        .collect();
    let document = json!({
        "adminToken": demo["adminToken"],
        "regions": entries,
        "demo": {"events": demo["events"], "users": demo["users"]},
    });
    let path = state_dir.join("cluster.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&document)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Waits for Ctrl-C or SIGTERM, reporting any node that dies meanwhile.
async fn watch(running: &mut [RunningRegion]) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = check.tick() => {
                for r in running.iter_mut() {
                    if let Ok(Some(status)) = r.node.try_wait() {
                        eprintln!("the {} node exited ({status}); see its log", r.config.name);
                        return;
                    }
                }
            }
        }
    }
}

async fn stop_all(running: &mut [RunningRegion]) {
    for r in running.iter_mut() {
        // SIGTERM: the node finishes in-flight requests and gives its machine lease back.
        unsafe {
            libc::kill(r.node.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    for r in running.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(r.node.try_wait(), Ok(None)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = r.node.kill();
        let _ = r.node.wait();
        r.primary.stop().await;
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
    // The PostgreSQL servers may run as another user: let them reach their folders.
    use std::os::unix::fs::PermissionsExt;
    for d in [dir.clone(), dir.join("pg")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
    }
    if crate::postgres::server_user()?.is_some() {
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

/// A region-node in this process, for `devcluster run-node`: stops on SIGTERM or Ctrl-C.
pub async fn run_node(config_path: &Path) -> anyhow::Result<()> {
    let config = NodeConfig::load(Some(config_path))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    region_node::serve(config, listener, async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    })
    .await
}
