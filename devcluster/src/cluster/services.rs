//! The node and router processes: what each is told (its configuration file), how devcluster
//! starts it (`devcluster run-node` / `run-router`, tied to our life, logging to the state
//! folder), and that child side, which serves it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use region_node::config::{Config as NodeConfig, PasswordConfig, RegionConfig, ShardConfig};
use testkit::postgres::PgCluster;
use testkit::process::{spawn_tied, ChildSpec};

use super::private::write_private;
use super::topology::Layout;
use super::{Cluster, ClusterSpec};

impl Cluster {
    /// A node of `region`: writes to its primary, reads every shard from this region's replica
    /// of it, and falls back to another shard's primary through the link in front of it.
    pub(super) fn node_config(
        &self,
        table: &[RegionConfig],
        region: &RegionConfig,
        listen: SocketAddr,
        primary_url: &str,
        replicas: &[(String, PgCluster, String)],
        secret: &str,
    ) -> NodeConfig {
        let mut config = NodeConfig {
            region: region.name.clone(),
            node_name: "node-1".into(),
            listen,
            regions: table.to_vec(),
            ..NodeConfig::default()
        };
        config.database.url = primary_url.to_owned();
        config.auth.jwt_secret = secret.to_owned();
        config.auth.password = local_password_cost();
        config.reads.shards = replicas
            .iter()
            .map(|(shard, _, url)| ShardConfig {
                name: shard.clone(),
                replica: Some(url.clone()),
                primary: self
                    .primary_link_addr(&region.name, shard)
                    .map(|addr| format!("postgres://postgres@{addr}/ticketing")),
            })
            .collect();
        config
    }

    pub(super) fn spawn_node(
        &self,
        spec: &ClusterSpec,
        config: &NodeConfig,
    ) -> anyhow::Result<Child> {
        self.spawn_service(spec, "run-node", &format!("{}-node", config.region), config)
    }

    /// Router `k` of its region: `<region>-router` for the first, `<region>-router-<k+1>` after.
    pub(super) fn spawn_router(
        &self,
        spec: &ClusterSpec,
        config: &router::Config,
        k: usize,
    ) -> anyhow::Result<Child> {
        let name = match k {
            0 => format!("{}-router", config.region),
            _ => format!("{}-router-{}", config.region, k + 1),
        };
        self.spawn_service(spec, "run-router", &name, config)
    }

    /// Writes `config` to `<name>.toml` in the state folder (mode 0600: it holds the JWT
    /// secret) and runs `devcluster <subcommand>` on it, logging to `logs/<name>.log`, tied to
    /// our life; SIGTERM lets it finish cleanly.
    fn spawn_service(
        &self,
        spec: &ClusterSpec,
        subcommand: &str,
        name: &str,
        config: &impl serde::Serialize,
    ) -> anyhow::Result<Child> {
        let config_path = self.state_dir.join(format!("{name}.toml"));
        write_private(&config_path, toml::to_string(config)?.as_bytes())?;
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
}

/// Argon2id at 1 MiB and one pass: about a millisecond a hash, so loadgen's sign-ups stay
/// cheap on one machine. A deployment keeps the OWASP-level default of `PasswordConfig`.
fn local_password_cost() -> PasswordConfig {
    PasswordConfig {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    }
}

/// Descriptors a service keeps beside its client connections: upstream and database
/// connections, its listeners, logs.
const DESCRIPTOR_HEADROOM: u64 = 1_000;

/// The client connections a service may hold given the open-file hard limit its processes get
/// (`hard`): all but the headroom, and never fewer than the services' own `default`. Each held
/// stream is a connection, and the services' default (10,000) would turn away the streams of
/// a 50,000-subscriber run long before the descriptors run out.
pub(super) fn connection_cap(hard: u64, default: usize) -> usize {
    usize::try_from(hard.saturating_sub(DESCRIPTOR_HEADROOM))
        .unwrap_or(usize::MAX)
        .clamp(default, 1_000_000)
}

/// The open-file hard limit devcluster's children inherit, after raising it where allowed.
pub(super) fn open_file_limit() -> u64 {
    let wanted = wire::server::ConnectionLimits::default().max_open_files;
    wire::server::open_files::raise(wanted).map_or(0, |(_, hard)| hard)
}

/// Router `k` of `region`, finding every endpoint by name through the region's DNS server and
/// checking bearer tokens with the deployment's `secret`.
pub(super) fn router_config(
    layout: Layout,
    table: &[RegionConfig],
    region: &RegionConfig,
    listen: SocketAddr,
    nameserver: SocketAddr,
    secret: &str,
    k: usize,
) -> anyhow::Result<router::Config> {
    let mut config = router::Config {
        region: region.name.clone(),
        router_name: format!("router-{}", k + 1),
        listen,
        ..router::Config::default()
    };
    config.auth.jwt_secret = secret.to_owned();
    config.regions = table
        .iter()
        .enumerate()
        .map(|(j, r)| {
            Ok(router::config::RegionConfig {
                name: r.name.clone(),
                id: r.id,
                node: layout.node_url_by_name(&r.name, j)?,
                router: layout.router_url_by_name(&r.name, j)?,
                fallback_order: None,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    config.dns.nameserver = Some(nameserver);
    Ok(config)
}

/// A region-node in this process, for `devcluster run-node`: stops on SIGTERM or Ctrl-C.
pub async fn run_node(config_path: &Path) -> anyhow::Result<()> {
    wire::service::serve_from_file::<region_node::NodeService>(Some(config_path)).await
}

/// A router in this process, for `devcluster run-router`: stops on SIGTERM or Ctrl-C.
pub async fn run_router(config_path: &Path) -> anyhow::Result<()> {
    wire::service::serve_from_file::<router::RouterService>(Some(config_path)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_take_all_descriptors_but_a_headroom_and_never_fewer_than_their_default() {
        assert_eq!(connection_cap(20_000, 10_000), 19_000);
        assert_eq!(connection_cap(4_096, 10_000), 10_000);
        assert_eq!(connection_cap(0, 10_000), 10_000);
        assert_eq!(connection_cap(u64::MAX, 10_000), 1_000_000);
    }
}
