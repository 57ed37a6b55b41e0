//! `devcluster`: the whole platform on one machine (see `cluster`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use devcluster::cluster::{self, ClusterSpec};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "devcluster",
    about = "Runs the ticketing platform on one machine"
)]
struct Cli {
    /// Regions to start, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "us-east,eu-west,ap-southeast"
    )]
    regions: Vec<String>,
    /// Multiplies the simulated WAN latencies (0 turns them off).
    #[arg(long, default_value_t = 1.0)]
    latency_scale: f64,
    /// Where data, logs and cluster.json go; removed on exit.
    #[arg(long, default_value = ".devcluster")]
    state_dir: PathBuf,
    /// Port layout base: routers at N+1.., nodes at N+1001.., primaries at N+2001...
    #[arg(long, default_value_t = 8080)]
    base_port: u16,
    /// Multiplies every rate limit (rate and burst) of the nodes and routers; 0 turns them off.
    /// Load from one address (loadgen, bench/) needs them raised: 1000.
    #[arg(long, default_value_t = 1.0)]
    rate_limit_scale: f64,
    /// Routers in every region, each on its own port, all in front of the region's node
    /// (1 to 9). A process holds at most its open-file limit of streams: tens of thousands of
    /// subscribers need several routers where that limit cannot be raised.
    #[arg(long, default_value_t = 1)]
    routers_per_region: usize,
    #[command(subcommand)]
    command: Option<Internal>,
}

#[derive(Subcommand)]
enum Internal {
    /// Runs one region-node in this process (devcluster starts its nodes this way).
    #[command(hide = true)]
    RunNode {
        #[arg(long)]
        config: PathBuf,
    },
    /// Runs one router in this process.
    #[command(hide = true)]
    RunRouter {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Some(Internal::RunNode { config }) => runtime.block_on(cluster::run_node(&config)),
        Some(Internal::RunRouter { config }) => runtime.block_on(cluster::run_router(&config)),
        None => {
            if !(0.0..=100.0).contains(&cli.latency_scale) {
                anyhow::bail!("--latency-scale must be between 0 and 100");
            }
            if !(0.0..=1e6).contains(&cli.rate_limit_scale) {
                anyhow::bail!("--rate-limit-scale must be between 0 and 1000000");
            }
            if !(1..=9).contains(&cli.routers_per_region) {
                anyhow::bail!("--routers-per-region must be between 1 and 9");
            }
            runtime.block_on(cluster::run(ClusterSpec {
                regions: cli.regions,
                latency_scale: cli.latency_scale,
                state_dir: cli.state_dir,
                base_port: cli.base_port,
                rate_limit_scale: cli.rate_limit_scale,
                program: std::env::current_exe()?,
                routers_per_region: cli.routers_per_region,
            }))
        }
    }
}
