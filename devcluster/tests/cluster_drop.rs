//! A cluster dropped without `stop` (as when a test panics) leaves no process, port or folder.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use devcluster::cluster::{Cluster, ClusterSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_cluster_leaves_nothing_behind() {
    let spec = ClusterSpec {
        regions: vec!["eu-west".into()],
        latency_scale: 0.0,
        state_dir: std::env::temp_dir().join(format!("cluster-drop-{}", std::process::id())),
        base_port: 30_000 + (std::process::id() % 400) as u16 * 20,
        rate_limit_scale: 1.0,
        program: env!("CARGO_BIN_EXE_devcluster").into(),
        routers_per_region: 1,
    };
    let cluster = Cluster::start(&spec).await.expect("cluster starts");
    let region = cluster.region("eu-west");
    let addresses: Vec<String> = [&region.router_url, &region.node_url]
        .iter()
        .map(|url| url.trim_start_matches("http://").to_owned())
        .chain([region
            .primary_url
            .rsplit('@')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()])
        .collect();
    drop(cluster);

    assert!(!spec.state_dir.exists(), "state folder left behind");
    // Processes stop asynchronously after the kill; give their sockets a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    for address in &addresses {
        while TcpListener::bind(address.as_str()).is_err() {
            assert!(Instant::now() < deadline, "{address} still bound");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
