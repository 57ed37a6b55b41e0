//! A running postmaster owned by this process: start (with port retries), readiness, admin
//! connections and databases, graceful and immediate stop.

use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use super::binaries::{find_bindir, server_user};
use super::cleanup::{
    create_temp_dir, install_exit_hook, next_registry_id, registry_insert, registry_remove,
    registry_set_pid, sweep_stale_temp_dirs, RegistryEntry,
};
use super::data_dir::{base_backup, chown_to, init_data_dir, write_settings};
use super::log::{log_tail_or_error, read_log_from, LOG_FILE};
use super::{PgOptions, SUPERUSER};
use crate::process::{self, ChildSpec, UserIds};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const PORT_ATTEMPTS: usize = 5;

/// A running postmaster owned by this process.
///
/// Holds no async-runtime resources (every admin call opens a fresh
/// connection), so it can live in a `static` shared by tests that each run
/// their own tokio runtime.
#[derive(Debug)]
pub struct PgCluster {
    child: Option<Child>,
    data_dir: PathBuf,
    port: u16,
    bindir: PathBuf,
    run_as: Option<UserIds>,
    /// True for user-supplied data directories.
    keep_data_dir: bool,
    registry_id: u64,
    /// Log length when the current postmaster was spawned.
    log_start: u64,
}

impl PgCluster {
    /// Initializes (if needed) and starts a cluster, returning once it accepts
    /// connections.
    pub async fn start(opts: PgOptions) -> anyhow::Result<PgCluster> {
        install_exit_hook();
        sweep_stale_temp_dirs();

        let bindir = find_bindir()?;
        let run_as = server_user()?;
        let (data_dir, keep_data_dir) = match &opts.data_dir {
            Some(dir) => (dir.clone(), true),
            None => (create_temp_dir()?, false),
        };
        // From here on, dropping `cluster` (e.g. on `?`) kills the server and
        // removes a temp dir.
        let mut cluster = PgCluster {
            child: None,
            data_dir,
            port: 0,
            bindir,
            run_as,
            keep_data_dir,
            registry_id: next_registry_id(),
            log_start: 0,
        };
        registry_insert(
            cluster.registry_id,
            RegistryEntry {
                pid: None,
                data_dir: cluster.data_dir.clone(),
                remove_dir: !keep_data_dir,
            },
        );

        {
            let (bindir, data_dir) = (cluster.bindir.clone(), cluster.data_dir.clone());
            let replica_of = opts.replica_of;
            tokio::task::spawn_blocking(move || match replica_of {
                Some(source) => base_backup(&bindir, &data_dir, source, run_as),
                None => init_data_dir(&bindir, &data_dir, run_as),
            })
            .await
            .context("initdb task panicked")??;
        }
        write_settings(&cluster.data_dir, &opts, run_as)?;

        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = match opts.port {
                Some(port) => port,
                None => free_port()?,
            };
            cluster.port = port;
            cluster.spawn_postmaster()?;
            match cluster.wait_ready().await {
                Ok(()) => break,
                Err(err) => {
                    cluster.kill_now();
                    // Only look at what this attempt logged.
                    let port_taken = opts.port.is_none()
                        && (err.is::<PortConflict>()
                            || read_log_from(&cluster.data_dir, cluster.log_start)
                                .map(|log| log.contains("Address already in use"))
                                .unwrap_or(false));
                    if port_taken && attempt < PORT_ATTEMPTS {
                        tracing::debug!(port, "postgres port was taken, retrying with another");
                        continue;
                    }
                    return Err(err);
                }
            }
        }
        tracing::info!(
            port = cluster.port,
            data_dir = %cluster.data_dir.display(),
            "postgres cluster ready"
        );
        Ok(cluster)
    }

    /// Connection URL for `database` as the trusted superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The postmaster's stdout/stderr.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    /// Directory of the server binaries (for `pg_basebackup`, `psql`, ...).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The user the server runs as (`None` = ourselves); run tools that touch
    /// data directories (e.g. `pg_basebackup`) as this user too.
    pub fn server_user(&self) -> Option<UserIds> {
        self.run_as
    }

    /// The postmaster's pid while it is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Opens a fresh superuser connection (never pooled: see the type docs).
    pub async fn connect(&self, database: &str) -> anyhow::Result<PgConnection> {
        connect_options(self.port, database)
            .connect()
            .await
            .with_context(|| format!("connecting to {}", self.url(database)))
    }

    /// Creates database `name` (`[a-z0-9_]+`, since identifiers cannot be bind
    /// parameters) and returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        validate_identifier(name)?;
        let mut conn = self.connect("postgres").await?;
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        conn.close().await.ok();
        Ok(self.url(name))
    }

    /// Creates a database no other test (in this or another process) uses:
    /// `<prefix>_<counter>_<pid>`. One database per test keeps tests
    /// independent while sharing one cluster.
    pub async fn create_unique_database(&self, prefix: &str) -> anyhow::Result<String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{n}_{}", std::process::id());
        self.create_database(&name).await
    }

    /// Fast shutdown (SIGINT: abort transactions, checkpoint, exit), escalating
    /// to SIGQUIT after 10 s and SIGKILL after 5 more; then removes a temp data
    /// directory. Idempotent.
    pub async fn stop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let steps = [
                (libc::SIGINT, Duration::from_secs(10)),
                (libc::SIGQUIT, Duration::from_secs(5)),
            ];
            let mut exited = false;
            for (signal, grace) in steps {
                send_signal(child, signal);
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline {
                    if !matches!(child.try_wait(), Ok(None)) {
                        exited = true;
                        break;
                    }
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                if exited {
                    break;
                }
                tracing::warn!(
                    signal,
                    port = self.port,
                    "postgres did not stop in time; escalating"
                );
            }
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
            }
            self.child = None;
            registry_set_pid(self.registry_id, None);
        }
        self.cleanup_dir();
    }

    fn spawn_postmaster(&mut self) -> anyhow::Result<()> {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        chown_to(&log_path, self.run_as)?;
        self.log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log.try_clone().context("duplicating log file handle")?;

        let mut cmd = Command::new(self.bindir.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            // Instance-specific, so passed on the command line rather than
            // written to files a pg_basebackup copy would inherit.
            .arg("-c")
            .arg(format!("port={}", self.port))
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.data_dir.display()
            ))
            .current_dir(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let spec = ChildSpec::new(cmd)
            .run_as(self.run_as)
            .death_signal(libc::SIGQUIT);
        let child = process::spawn_tied(spec).context("spawning postgres")?;
        let pid = child.id();
        self.child = Some(child);
        registry_set_pid(self.registry_id, Some(pid));
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let options = connect_options(self.port, "postgres");
        loop {
            if let Some(child) = self.child.as_mut() {
                match child.try_wait() {
                    Ok(None) => {}
                    Ok(Some(status)) => {
                        self.child = None;
                        registry_set_pid(self.registry_id, None);
                        bail!(
                            "postgres on port {} exited during startup ({status}); log tail:\n{}",
                            self.port,
                            log_tail_or_error(&self.data_dir)
                        );
                    }
                    Err(e) => bail!("waiting for postgres: {e}"),
                }
            }
            let attempt = async {
                let mut conn = options.connect().await?;
                sqlx::query_scalar::<_, i32>("SELECT 1")
                    .fetch_one(&mut conn)
                    .await?;
                let served: String = sqlx::query_scalar("SHOW data_directory")
                    .fetch_one(&mut conn)
                    .await?;
                conn.close().await?;
                Ok::<_, sqlx::Error>(served)
            };
            let last_error = match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(served)) if same_dir(Path::new(&served), &self.data_dir) => return Ok(()),
                Ok(Ok(served)) => {
                    // Someone else's server grabbed the port between our
                    // probe and the postmaster's bind (ours will exit).
                    return Err(anyhow::Error::new(PortConflict).context(format!(
                        "port {} is served by another PostgreSQL (data_directory {served})",
                        self.port
                    )));
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connection attempt timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "postgres on port {} not ready after {READY_TIMEOUT:?} (last error: {last_error}); log tail:\n{}",
                    self.port,
                    log_tail_or_error(&self.data_dir)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Immediate shutdown, synchronously; for Drop and failed starts.
    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(&mut child, libc::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        registry_set_pid(self.registry_id, None);
    }

    fn cleanup_dir(&mut self) {
        if !self.keep_data_dir {
            if let Err(e) = fs::remove_dir_all(&self.data_dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %self.data_dir.display(), error = %e, "could not remove postgres data dir");
                }
            }
        }
        registry_remove(self.registry_id);
    }
}

impl Drop for PgCluster {
    /// Best effort, so a panicking test still cleans up: immediate shutdown
    /// (nothing to preserve in a dropped cluster) and temp dir removal.
    fn drop(&mut self) {
        self.kill_now();
        self.cleanup_dir();
    }
}

/// Marks a start attempt that lost its port to another server.
#[derive(Debug)]
struct PortConflict;

impl std::fmt::Display for PortConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("port already in use")
    }
}

impl std::error::Error for PortConflict {}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn connect_options(port: u16, database: &str) -> PgConnectOptions {
    PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username(SUPERUSER)
        .database(database)
        .disable_statement_logging()
}

fn validate_identifier(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        bail!("invalid database name {name:?}: must match [a-z0-9_]+ and be at most 63 bytes");
    }
    Ok(())
}

fn send_signal(child: &mut Child, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // Only signal a child we have not reaped, so the pid cannot have been
        // reused by an unrelated process.
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: plain kill(2) on our own unreaped child.
            unsafe { libc::kill(pid, signal) };
        }
    }
}

/// Binds an ephemeral port and releases it. Racy by nature; `start` retries.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("finding a free port")?.port())
}
