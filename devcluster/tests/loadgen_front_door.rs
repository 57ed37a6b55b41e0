//! `loadgen watch` and `loadgen queue` (issue 11) against a real two-region devcluster (short
//! WAN delays): a few dozen streams through one region's router, each of a handful of changes
//! delivered to every one of them, memory and CPU read from the cluster's PIDs; a small queued
//! on-sale with users minted from the cluster's JWT secret in both regions, everyone served in
//! position order, nothing booked without a pass, the audit clean.

use clap::Parser;
use devcluster::cluster::{Cluster, ClusterSpec};
use loadgen::cpu::Kind;
use loadgen::options::{QueueOptions, WatchOptions};
use loadgen::stats::Op;

#[derive(Parser)]
struct WatchCli {
    #[command(flatten)]
    options: WatchOptions,
}

#[derive(Parser)]
struct QueueCli {
    #[command(flatten)]
    options: QueueOptions,
}

fn args<'a>(cluster: &'a std::path::Path, more: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["loadgen", "--cluster", cluster.to_str().unwrap()];
    all.extend_from_slice(more);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_watches_streams_and_runs_a_queued_onsale() {
    let spec = ClusterSpec {
        regions: vec!["us-east".into(), "eu-west".into()],
        latency_scale: 0.1,
        state_dir: std::env::temp_dir().join(format!("loadgen-front-{}", std::process::id())),
        // Below the kernel's ephemeral ports, apart from the other devcluster tests' ranges.
        base_port: 17_000 + (std::process::id() % 150) as u16 * 20,
        rate_limit_scale: 1000.0,
        program: env!("CARGO_BIN_EXE_devcluster").into(),
        routers_per_region: 1,
    };
    let cluster = Cluster::start(&spec).await.unwrap();
    let json = cluster.state_dir.join("cluster.json");
    let described: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // loadgen mints users' tokens with the deployment's secret, which the file now carries.
    assert!(described["jwtSecret"].as_str().unwrap().len() >= 16);

    // 60 streams in eu-west, two per source address; bookings of a us-east event from us-east.
    let watch = WatchCli::try_parse_from(args(
        &json,
        &[
            "--subscribers",
            "60",
            "--per-address",
            "2",
            "--region",
            "eu-west",
            "--home",
            "us-east",
            "--tiers",
            "GA=100",
            "--changes",
            "3",
            "--change-interval",
            "1s",
            "--duration",
            "4s",
            "--reads",
            "20",
        ],
    ))
    .unwrap()
    .options;
    let report = loadgen::watch::run(&watch).await.unwrap();
    let table = report.table();
    assert!(report.passed(), "{table}");
    assert_eq!((report.connected, report.failed), (60, 0), "{table}");
    assert_eq!(report.source_addresses, 30, "{table}");
    assert_eq!(report.changes.len(), 3, "{table}");
    for change in &report.changes {
        assert_eq!(change.subscribers, 60, "{table}");
        assert_eq!(change.delivered, 60, "{table}");
        assert!(change.p99_ms.unwrap() < 5_000.0, "{table}");
    }
    let reads = report.reads().expect("fresh reads");
    assert!(reads.count > 0 && reads.errors == 0, "{table}");
    // Memory and CPU of the cluster's processes, named in cluster.json.
    assert!(report
        .memory
        .iter()
        .any(|m| m.region == "eu-west" && m.process == Kind::Router && m.bytes > 0));
    assert!(report.region_memory() > 0, "{table}");
    assert!(report.cpu.is_some(), "{table}");
    assert!(report.audit.as_ref().unwrap().passed(), "{table}");

    // A queued on-sale: 200 users in both regions for 150 tickets; early ones in the lobby.
    let queue = QueueCli::try_parse_from(args(
        &json,
        &[
            "--users",
            "200",
            "--tickets",
            "150",
            "--join-window",
            "3s",
            "--opens-in",
            "1500ms",
            "--home",
            "us-east",
            "--target-active",
            "40",
            "--max-admit-per-second",
            "100",
            "--pass-seconds",
            "30",
            "--passless",
            "3",
            "--max-wait",
            "60s",
        ],
    ))
    .unwrap()
    .options;
    let report = loadgen::queue::run(&queue).await.unwrap();
    let table = report.table();
    assert!(report.passed(), "{table}");
    assert!(report.minted_users, "{table}");
    let o = &report.outcomes;
    assert_eq!(o.joined, 200, "{table}");
    assert!(o.lobby > 0 && o.lobby < 200, "{table}");
    // Every ticket went to an admitted user; whoever was left gave up or found it sold out.
    let audit = report.audit.as_ref().unwrap();
    assert_eq!(audit.tickets.get("available"), Some(&0), "{table}");
    assert_eq!(o.tickets_confirmed, 150, "{table}");
    assert_eq!(o.admitted, o.passes, "{table}");
    assert_eq!(
        (
            report.passless.tried,
            report.passless.refused,
            report.passless.succeeded
        ),
        (3, 3, 0),
        "{table}"
    );
    assert!(report.queue_checks.len() >= 8, "{table}");
    assert!(report.queue_checks.iter().all(|c| c.passed()), "{table}");
    // The home node's in-flight figure was scraped and stayed at or under its target.
    assert!(report.active.samples > 0, "{table}");
    assert!(report.active.max.unwrap() <= 40.0, "{table}");
    // Joins in both regions, the remote one paying its round trip.
    let joins: Vec<_> = report.rows.iter().filter(|r| r.op == Op::Join).collect();
    assert_eq!(joins.len(), 2, "{table}");
    assert!(report.waits.users > 0, "{table}");

    cluster.stop().await;
}
