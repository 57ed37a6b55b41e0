//! The README's main command: `devcluster` comes up, serves bookings, writes `cluster.json`
//! (with the PIDs of its processes) and the files holding secrets readable by no one else, and
//! on SIGTERM leaves no process and no state behind; a second start works, with two routers per
//! region that both serve.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A base port whose router, node, primary and replica ports are free now.
fn free_base_port(regions: u16) -> u16 {
    let start = 20_000 + (std::process::id() % 500) as u16 * 20;
    (0..200)
        .map(|i| start + i * 7)
        .find(|base| {
            (0..regions).all(|r| {
                [base + 1 + r, base + 1001 + r, base + 2001 + r]
                    .into_iter()
                    .chain([base + 3001 + r, base + 3101 + r])
                    // The second round's second router per region.
                    .chain([base + 101 + r, base + 3201 + 10 * r + 1])
                    .chain((0..regions).map(|s| base + 2101 + 10 * r + s))
                    .all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
            })
        })
        .expect("a free port range")
}

fn start(state_dir: &Path, base_port: u16, routers_per_region: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_devcluster"))
        .args(["--regions", "us-east,eu-west", "--state-dir"])
        .arg(state_dir)
        .args(["--base-port", &base_port.to_string()])
        .args(["--routers-per-region", &routers_per_region.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("devcluster starts")
}

fn wait_for_cluster_json(child: &mut Child, path: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("devcluster exited early: {status}");
        }
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                return value;
            }
        }
        assert!(Instant::now() < deadline, "no cluster.json after 90 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stop(child: &mut Child) {
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "devcluster did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The parent of process `pid`, from `/proc`.
fn parent_of(pid: u64) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    loadgen::cpu::parse_stat(&stat).unwrap().ppid
}

/// Nothing listens any more on the host and port of `url` (http:// or postgres://).
fn port_free(url: &str) -> bool {
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    TcpListener::bind(host_port).is_ok()
}

#[tokio::test]
async fn devcluster_starts_books_stops_clean_and_starts_again() {
    let state_dir = std::env::temp_dir().join(format!("devcluster-test-{}", std::process::id()));
    let base_port = free_base_port(2);
    // The second start has two routers per region.
    for (round, routers_per_region) in [(0, 1), (1, 2)] {
        let mut child = start(&state_dir, base_port, routers_per_region);
        let cluster = wait_for_cluster_json(&mut child, &state_dir.join("cluster.json"));
        let regions = cluster["regions"].as_array().unwrap();
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[1]["name"], "eu-west");
        assert_eq!(regions[1]["id"], 2);
        assert!(cluster["adminToken"].as_str().unwrap().len() > 20);
        // The deployment's secret, for loadgen to mint users' tokens: long enough to sign with.
        assert!(cluster["jwtSecret"].as_str().unwrap().len() >= wire::token::MIN_SECRET_BYTES);
        // The processes loadgen accounts CPU to: devcluster itself and, per region, its router,
        // node and PostgreSQL servers, all devcluster's children.
        assert_eq!(cluster["devclusterPid"], child.id());
        for r in regions {
            let pids = &r["pids"];
            let replicas = pids["replicas"].as_object().unwrap();
            assert_eq!(replicas.len(), 2, "a replica of every shard: {pids}");
            let routers = pids["routers"].as_array().unwrap();
            assert_eq!(routers.len(), routers_per_region, "{pids}");
            assert_eq!(routers[0], pids["router"]);
            assert_eq!(r["routers"].as_array().unwrap().len(), routers_per_region);
            assert_eq!(r["routers"][0], r["router"]);
            for pid in [&pids["node"], &pids["primary"]]
                .into_iter()
                .chain(routers)
                .chain(replicas.values())
            {
                let pid = pid.as_u64().unwrap_or_else(|| panic!("{pids}"));
                assert_eq!(parent_of(pid), child.id(), "{pids}");
            }
        }

        // Book the eu-west demo event as a demo user, on the eu-west node.
        let event = cluster["demo"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["homeRegion"] == "eu-west")
            .unwrap()
            .clone();
        let user = &cluster["demo"]["users"][0];
        // A us-east user books the eu-west event through the us-east router (its last one:
        // every router of a region forwards writes to another region).
        let router = regions[0]["routers"].as_array().unwrap().last().unwrap();
        let router = router.as_str().unwrap();
        let held = reqwest::Client::new()
            .post(format!("{router}/api/v1/booking/reserve"))
            .bearer_auth(user["token"].as_str().unwrap())
            .json(&json!({"eventId": event["id"], "tickets": [{"tier": "GA", "quantity": 2}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(held.status(), reqwest::StatusCode::CREATED, "round {round}");
        assert_eq!(held.headers()["x-served-by"], "eu-west/node-1");

        // The admin token, the demo tokens and the JWT secret: ours alone.
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        for file in ["cluster.json", "us-east-node.toml", "eu-west-router.toml"] {
            assert_eq!(mode(&state_dir.join(file)), 0o600, "{file}");
        }
        let folder = mode(&state_dir);
        assert_eq!(folder & 0o066, 0, "state folder mode {folder:o}");

        // Metrics and the cluster view are on the operations listeners only.
        let ops = regions[1]["nodeOps"].as_str().unwrap();
        let view: Value = reqwest::get(format!("{ops}/cluster"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view["region"], "eu-west");
        let node = regions[1]["node"].as_str().unwrap();
        let public = reqwest::get(format!("{node}/metrics")).await.unwrap();
        assert_eq!(public.status(), reqwest::StatusCode::NOT_FOUND);
        let ops = regions[0]["routerOps"].as_str().unwrap();
        let metrics = reqwest::get(format!("{ops}/metrics")).await.unwrap();
        assert_eq!(metrics.status(), reqwest::StatusCode::OK);

        // Every router of every region answers, and reads through any of them.
        for r in regions {
            for router in r["routers"].as_array().unwrap() {
                let router = router.as_str().unwrap();
                let health = reqwest::get(format!("{router}/healthz")).await.unwrap();
                assert_eq!(health.status(), reqwest::StatusCode::OK, "{router}");
                let read = reqwest::get(format!(
                    "{router}/api/v1/events/{}",
                    event["id"].as_str().unwrap()
                ))
                .await
                .unwrap();
                assert_eq!(read.status(), reqwest::StatusCode::OK, "{router}");
            }
        }

        stop(&mut child);
        assert!(!state_dir.exists(), "state folder left behind");
        for r in regions {
            assert!(
                port_free(r["node"].as_str().unwrap()),
                "node port still bound"
            );
            assert!(
                port_free(r["primary"].as_str().unwrap()),
                "primary port still bound"
            );
        }
    }
}
