//! `loadgen` against a real two-region devcluster (short WAN delays): every scenario, closed and
//! open loop, the per-pair and per-client-region figures, CPU per request per process, an event
//! made on its own and read by id, the audit, the JSON and SVG outputs, and its refusals of bad
//! options. One cluster for the whole file; the runs are short and bounded.

use clap::Parser;
use devcluster::cluster::{Cluster, ClusterSpec};
use loadgen::cpu::Kind;
use loadgen::options::{EventOptions, Options};
use loadgen::report::Report;
use loadgen::stats::{Op, ALL_REGIONS};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    options: Options,
}

#[derive(Parser)]
struct EventCli {
    #[command(flatten)]
    options: EventOptions,
}

fn options(cluster: &Cluster, args: &[&str]) -> Options {
    let json = cluster.state_dir.join("cluster.json");
    let mut all = vec!["loadgen", "--cluster", json.to_str().unwrap()];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).unwrap().options
}

async fn run(cluster: &Cluster, args: &[&str]) -> Report {
    loadgen::execute(&options(cluster, args)).await.unwrap()
}

fn rows(report: &Report, op: Op) -> Vec<&loadgen::stats::Row> {
    report.op_rows(op).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_drives_every_scenario_and_audits_the_primaries() {
    let spec = ClusterSpec {
        regions: vec!["us-east".into(), "eu-west".into()],
        latency_scale: 0.1,
        state_dir: std::env::temp_dir().join(format!("loadgen-test-{}", std::process::id())),
        // Below the kernel's ephemeral ports (32768 and up), which any client socket may hold,
        // and below multi_region's 21000 and up; a cluster spans about 2,200 ports.
        base_port: 10_000 + (std::process::id() % 350) as u16 * 20,
        // loadgen's users all come from 127.0.0.1.
        rate_limit_scale: 1000.0,
        program: env!("CARGO_BIN_EXE_devcluster").into(),
        routers_per_region: 1,
    };
    let cluster = Cluster::start(&spec).await.unwrap();

    // On-sale, closed loop: more buyers than VIP seats, every outcome of a hold.
    let onsale = run(
        &cluster,
        &[
            "--scenario",
            "onsale",
            "--users",
            "24",
            "--duration",
            "3s",
            "--tiers",
            "VIP=30,GA=400",
            "--quantity",
            "1-4",
            "--outcomes",
            "confirm=50,fail=20,cancel=10,abandon=20",
            "--home",
            "eu-west",
        ],
    )
    .await;
    let table = onsale.table();
    assert!(onsale.passed(), "{table}");
    let audit = onsale.audit.as_ref().expect("primaries are known");
    assert!(audit.passed(), "{table}");
    assert!(audit
        .checks
        .iter()
        .any(|c| c.name.contains("available + held + sold")));
    let reserves = rows(&onsale, Op::Reserve);
    // Users in both regions, all buying the eu-west event.
    assert_eq!(reserves.len(), 2, "{table}");
    assert!(
        reserves.iter().all(|r| r.home == "eu-west" && r.ok > 0),
        "{table}"
    );
    let confirms: u64 = rows(&onsale, Op::Confirm).iter().map(|r| r.ok).sum();
    assert!(confirms > 0, "{table}");
    assert!(
        rows(&onsale, Op::Cancel).iter().map(|r| r.ok).sum::<u64>() > 0,
        "{table}"
    );
    // The audit found every booking the load saw confirmed.
    let confirmed_check = audit
        .checks
        .iter()
        .find(|c| c.name == "bookings the load saw confirmed, confirmed")
        .unwrap();
    assert!(
        confirmed_check.expected > 0 && confirmed_check.passed(),
        "{table}"
    );
    // A remote write pays the (scaled) round trip; the pair's delay is known to the report.
    let remote = reserves.iter().find(|r| r.client == "us-east").unwrap();
    assert!(remote.rtt_ms.unwrap() > 0.0);
    assert!(remote.p50_ms >= remote.rtt_ms.unwrap() * 0.8, "{table}");
    assert!(table.contains("reserve") && table.contains("us-east → eu-west"));

    // CPU per request per process over the steady window (from 1 s in): the cluster's processes
    // are named in cluster.json. Here devcluster is this test's process, so loadgen's CPU is in
    // devcluster's figure.
    let cpu = onsale
        .cpu
        .as_ref()
        .expect("cluster.json names the processes");
    assert!(cpu.missing.is_empty(), "{table}");
    assert_eq!(cpu.regions.len(), 2, "{table}");
    for kind in [Kind::Router, Kind::Node, Kind::Postgres, Kind::Devcluster] {
        let figure = cpu
            .kind(kind)
            .unwrap_or_else(|| panic!("{kind:?}: {table}"));
        assert!(figure.cpu_s > 0.0, "{kind:?}: {table}");
    }
    assert!(cpu.kind(Kind::Loadgen).unwrap().cpu_s == 0.0, "{table}");
    assert!(cpu.window_s > 1.0 && cpu.window_s < 2.5, "{table}");
    assert!(
        cpu.requests > 0 && cpu.requests <= onsale.totals.requests,
        "{table}"
    );
    let per_request = cpu.total.us_per_request.unwrap();
    // Between a microsecond and a second of CPU per request: plausible, whatever the machine.
    assert!((1.0..1e6).contains(&per_request), "{table}");
    assert!(table.contains("µs/request"), "{table}");

    // Sold out is the platform working, not an error.
    let sellout = run(
        &cluster,
        &[
            "--scenario",
            "onsale",
            "--users",
            "16",
            "--duration",
            "2s",
            "--tiers",
            "VIP=5",
            "--quantity",
            "1",
            "--outcomes",
            "abandon=1",
            "--clients",
            "us-east",
        ],
    )
    .await;
    let table = sellout.table();
    assert!(sellout.passed(), "{table}");
    assert_eq!(sellout.totals.ok, 5, "{table}");
    assert!(sellout.totals.refused > 0, "{table}");
    let codes = &rows(&sellout, Op::Reserve)[0].codes;
    assert!(codes.contains_key("409 sold_out"), "{table}");

    // Global, open loop, bounded by count: a reserve per pair of regions, reads served locally.
    let global = run(
        &cluster,
        &[
            "--scenario",
            "global",
            "--rate",
            "40",
            "--max-journeys",
            "60",
            "--duration",
            "10s",
            "--quantity",
            "1",
            "--outcomes",
            "confirm=1",
        ],
    )
    .await;
    let table = global.table();
    assert!(global.passed(), "{table}");
    assert_eq!(global.totals.journeys, 60, "{table}");
    assert_eq!(global.arrivals, "open loop, 40 journeys/s");
    assert_eq!(rows(&global, Op::Reserve).len(), 4, "{table}");
    assert_eq!(rows(&global, Op::Availability).len(), 4, "{table}");
    // Per client region, over both home regions.
    let merged: Vec<_> = global
        .client_region_rows
        .iter()
        .filter(|r| r.op == Op::Reserve)
        .collect();
    assert_eq!(merged.len(), 2, "{table}");
    for m in merged {
        assert_eq!(m.home, ALL_REGIONS);
        let pairs: u64 = rows(&global, Op::Reserve)
            .iter()
            .filter(|r| r.client == m.client)
            .map(|r| r.count)
            .sum();
        assert_eq!(m.count, pairs, "{table}");
    }
    assert!(table.contains("per client region"), "{table}");
    // 60 journeys at 40/s: about 1.5 s of arrivals, not the 10 s allowed.
    assert!(global.elapsed_s < 8.0, "{table}");

    // Browse and the default mix: cache counters from the nodes, JSON and SVG outputs.
    let dir = tempdir();
    let json = dir.join("mix.json");
    let svg = dir.join("mix.svg");
    let mix_options = options(
        &cluster,
        &[
            "--scenario",
            "mix",
            "--users",
            "12",
            "--duration",
            "2s",
            "--json",
            json.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
        ],
    );
    let mix = loadgen::execute(&mix_options).await.unwrap();
    let table = mix.table();
    assert!(mix.passed(), "{table}");
    for op in [Op::Events, Op::Event, Op::Availability] {
        assert!(!rows(&mix, op).is_empty(), "no {op:?} row: {table}");
    }
    assert!(
        mix.nodes.iter().any(|n| n.cache_hits > 0),
        "the nodes' caches were used: {table}"
    );
    std::fs::write(&json, serde_json::to_vec(&mix).unwrap()).unwrap();
    let back: Report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(back.totals.requests, mix.totals.requests);
    let chart = loadgen::chart::render(&mix.title, &mix.rows);
    assert!(chart.contains("availability us-east → us-east"));

    // An event made on its own, then its availability read by id: every read finds it whole.
    let json = cluster.state_dir.join("cluster.json");
    let made = EventCli::try_parse_from([
        "create-event",
        "--cluster",
        json.to_str().unwrap(),
        "--home",
        "eu-west",
        "--tiers",
        "GA=150000",
    ])
    .unwrap()
    .options;
    let event = loadgen::create_event(&made).await.unwrap();
    let reads = run(
        &cluster,
        &[
            "--scenario",
            "browse",
            "--reads",
            "availability",
            "--event",
            &event.id,
            "--clients",
            "us-east",
            "--users",
            "4",
            "--accounts",
            "1",
            "--duration",
            "2s",
        ],
    )
    .await;
    let table = reads.table();
    assert!(reads.passed(), "{table}");
    let read_rows = rows(&reads, Op::Availability);
    assert_eq!(read_rows.len(), 1, "{table}");
    assert_eq!(read_rows[0].home, "eu-west", "{table}");
    assert_eq!(reads.events[0].tiers, vec![("GA".to_owned(), 150_000)]);

    // Bad options are refused before any load, with a reason.
    for (args, says) in [
        (
            vec!["--scenario", "onsale", "--home", "mars"],
            "unknown region",
        ),
        (vec!["--clients", "us-east,atlantis"], "unknown region"),
        (vec!["--outcomes", "confirm=0"], "weight above 0"),
        (vec!["--mix", "dance=3"], "unknown scenario"),
        (vec!["--rate", "0"], "--rate"),
        (vec!["--users", "0"], "--users"),
        (vec!["--quantity", "3-1"], "--quantity"),
        (
            vec!["--scenario", "onsale", "--tiers", "VIP=0"],
            "at least one tier",
        ),
    ] {
        let error = loadgen::execute(&options(&cluster, &args))
            .await
            .expect_err(&format!("{args:?} should be refused"));
        assert!(format!("{error:#}").contains(says), "{args:?}: {error:#}");
    }
    let remote = Cli::try_parse_from([
        "loadgen",
        "--router",
        "us-east=http://192.0.2.1:8081",
        "--admin-token",
        "x",
    ])
    .unwrap()
    .options;
    let error = loadgen::execute(&remote).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("not a loopback address"),
        "{error:#}"
    );

    cluster.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
