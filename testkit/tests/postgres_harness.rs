//! Tests for the throwaway-PostgreSQL harness and tied child processes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use testkit::postgres::{shared_test_cluster, Durability, PgCluster, PgOptions};
use testkit::process::{pid_alive, spawn_tied, ChildSpec};

async fn select_one(url: &str) -> i32 {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .expect("SELECT 1");
    conn.close().await.expect("close");
    one
}

async fn show(url: &str, setting: &str) -> String {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
        .fetch_one(&mut conn)
        .await
        .expect("SHOW");
    conn.close().await.expect("close");
    value
}

fn fast_opts() -> PgOptions {
    PgOptions {
        durability: Durability::Fast,
        ..PgOptions::default()
    }
}

/// Polls until `pid` is gone (zombies count as gone).
fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !pid_alive(pid)
}

#[tokio::test]
async fn cluster_starts_and_answers_select_1() {
    let mut cluster = PgCluster::start(fast_opts()).await.expect("start");
    assert_eq!(select_one(&cluster.url("postgres")).await, 1);
    assert_eq!(
        cluster.url("x"),
        format!("postgres://postgres@127.0.0.1:{}/x", cluster.port())
    );
    // Replication prerequisites for later pg_basebackup -R replicas.
    assert_eq!(show(&cluster.url("postgres"), "wal_level").await, "replica");
    assert_eq!(
        show(&cluster.url("postgres"), "max_wal_senders").await,
        "10"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn unique_databases_are_distinct_and_usable() {
    let cluster = shared_test_cluster().await;
    let a = cluster
        .create_unique_database("harness")
        .await
        .expect("db a");
    let b = cluster
        .create_unique_database("harness")
        .await
        .expect("db b");
    assert_ne!(a, b);

    let mut conn_a = PgConnection::connect(&a).await.expect("connect a");
    let mut conn_b = PgConnection::connect(&b).await.expect("connect b");
    sqlx::raw_sql("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .execute(&mut conn_a)
        .await
        .expect("write a");
    // Same table name in b must not see a's table.
    let missing = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM t")
        .fetch_one(&mut conn_b)
        .await;
    assert!(missing.is_err(), "table from database a visible in b");
    sqlx::raw_sql("CREATE TABLE t (v int)")
        .execute(&mut conn_b)
        .await
        .expect("write b");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut conn_a)
        .await
        .expect("read a");
    assert_eq!(count, 1);
    let db_a: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn_a)
        .await
        .expect("current_database a");
    let db_b: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn_b)
        .await
        .expect("current_database b");
    assert_ne!(db_a, db_b);
    assert!(a.ends_with(&db_a) && b.ends_with(&db_b));
}

#[tokio::test]
async fn invalid_database_names_are_rejected() {
    let cluster = shared_test_cluster().await;
    for bad in [
        "",
        "Upper",
        "semi;colon",
        "quote\"",
        "dash-ed",
        &"x".repeat(64),
    ] {
        assert!(
            cluster.create_database(bad).await.is_err(),
            "{bad:?} accepted"
        );
    }
}

#[tokio::test]
async fn stop_kills_postmaster_and_removes_temp_dir() {
    let mut cluster = PgCluster::start(fast_opts()).await.expect("start");
    let pid = cluster.pid().expect("running");
    let dir = cluster.data_dir().to_path_buf();
    assert!(dir.join("PG_VERSION").exists());
    assert!(dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(&format!("ticketing-pg-{}-", std::process::id()))));
    cluster.stop().await;
    assert!(!pid_alive(pid), "postmaster {pid} still alive after stop");
    assert!(!dir.exists(), "{} not removed", dir.display());
    assert_eq!(cluster.pid(), None);
    cluster.stop().await; // idempotent
}

#[tokio::test]
async fn drop_kills_postmaster_and_removes_temp_dir() {
    let cluster = PgCluster::start(fast_opts()).await.expect("start");
    let pid = cluster.pid().expect("running");
    let dir = cluster.data_dir().to_path_buf();
    // Hold a backend open so immediate shutdown has children to take down.
    let mut conn = PgConnection::connect(&cluster.url("postgres"))
        .await
        .expect("connect");
    drop(cluster);
    assert!(!pid_alive(pid), "postmaster {pid} still alive after drop");
    assert!(!dir.exists(), "{} not removed", dir.display());
    assert!(sqlx::query("SELECT 1").execute(&mut conn).await.is_err());
}

#[tokio::test]
async fn user_data_dir_is_kept_and_reused() {
    let dir = std::env::temp_dir().join(format!("testkit-harness-keep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = PgOptions {
        data_dir: Some(dir.clone()),
        durability: Durability::Durable,
        max_connections: 50,
        shared_buffers: "32MB".into(),
        extra_settings: vec![("application_name".into(), "'harness'".into())],
        ..PgOptions::default()
    };
    let mut cluster = PgCluster::start(opts.clone()).await.expect("start");
    let url = cluster.create_database("kept").await.expect("create");
    assert_eq!(show(&url, "fsync").await, "on");
    assert_eq!(show(&url, "max_connections").await, "50");
    assert_eq!(show(&url, "shared_buffers").await, "32MB");
    cluster.stop().await;
    assert!(dir.join("PG_VERSION").exists(), "user data dir was removed");

    // Restart on the same dir: no initdb, data still there, new options apply.
    let mut cluster = PgCluster::start(PgOptions {
        max_connections: 60,
        ..opts
    })
    .await
    .expect("restart");
    assert_eq!(select_one(&cluster.url("kept")).await, 1);
    assert_eq!(show(&cluster.url("kept"), "max_connections").await, "60");
    cluster.stop().await;
    assert!(dir.exists());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[tokio::test]
async fn busy_explicit_port_fails_with_log_tail() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let err = PgCluster::start(PgOptions {
        port: Some(port),
        ..fast_opts()
    })
    .await
    .expect_err("port is taken");
    let msg = format!("{err:#}");
    assert!(msg.contains("Address already in use"), "{msg}");
}

#[tokio::test]
async fn port_of_another_cluster_is_not_mistaken_for_ours() {
    let shared = shared_test_cluster().await;
    let err = PgCluster::start(PgOptions {
        port: Some(shared.port()),
        ..fast_opts()
    })
    .await
    .expect_err("port belongs to the shared cluster");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("Address already in use") || msg.contains("served by another PostgreSQL"),
        "{msg}"
    );
    assert_eq!(select_one(&shared.url("postgres")).await, 1);
}

/// (port, postmaster pid) seen by whichever of the two tests ran first.
static SHARED_SEEN: OnceLock<(u16, u32)> = OnceLock::new();

async fn check_shared_cluster_identity() {
    let cluster = shared_test_cluster().await;
    let me = (cluster.port(), cluster.pid().expect("running"));
    assert_eq!(*SHARED_SEEN.get_or_init(|| me), me);
    // Usable from this test's own runtime.
    let url = cluster
        .create_unique_database("shared")
        .await
        .expect("create");
    assert_eq!(select_one(&url).await, 1);
}

#[tokio::test]
async fn shared_cluster_is_reused_a() {
    check_shared_cluster_identity().await;
}

#[tokio::test]
async fn shared_cluster_is_reused_b() {
    check_shared_cluster_identity().await;
}

#[tokio::test]
async fn fast_durability_settings_are_in_effect() {
    let url = shared_test_cluster().await.url("postgres");
    assert_eq!(show(&url, "fsync").await, "off");
    assert_eq!(show(&url, "synchronous_commit").await, "off");
    assert_eq!(show(&url, "full_page_writes").await, "off");
    assert_eq!(show(&url, "listen_addresses").await, "127.0.0.1");
    assert_eq!(show(&url, "max_connections").await, "200");
}

const HELPER_ENV: &str = "TESTKIT_TIED_CHILD_HELPER";
const HELPER_PREFIX: &str = "TIED_CHILD_PID=";

/// Not a real test: when re-executed by `tied_child_dies_with_sigkilled_parent`
/// it spawns a tied `sleep`, reports its pid and waits to be SIGKILLed.
#[test]
fn tied_child_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let mut cmd = Command::new("sleep");
    cmd.arg("120");
    let mut child = spawn_tied(ChildSpec::new(cmd)).expect("spawn sleep");
    println!("\n{HELPER_PREFIX}{}", child.id());
    // Block until the parent test SIGKILLs us (or the sleep ends on its own).
    let _ = child.wait();
}

#[test]
fn tied_child_dies_with_sigkilled_parent() {
    let exe = std::env::current_exe().expect("current_exe");
    let mut helper = Command::new(exe)
        .args([
            "--exact",
            "tied_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn helper");
    let stdout = helper.stdout.take().expect("stdout");
    let mut sleep_pid = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read helper output");
        // libtest prints "test name ... " before our output on the same line.
        if let Some((_, pid)) = line.split_once(HELPER_PREFIX) {
            sleep_pid = Some(pid.trim().parse::<u32>().expect("pid"));
            break;
        }
    }
    let sleep_pid = sleep_pid.expect("helper did not report the child pid");
    assert!(pid_alive(sleep_pid), "tied child not running");

    helper.kill().expect("SIGKILL helper");
    helper.wait().expect("reap helper");
    assert!(
        wait_gone(sleep_pid, Duration::from_secs(2)),
        "tied child {sleep_pid} survived its SIGKILLed parent"
    );
}
