//! Throwaway PostgreSQL clusters for tests, benchmarks and the dev cluster.
//!
//! A [`PgCluster`] is a real `postgres` postmaster running from a private data
//! directory on a private port. It is started directly (not via `pg_ctl`, which
//! daemonizes and would escape our process tree) through
//! [`crate::process::spawn_tied`], so it receives SIGQUIT (immediate shutdown)
//! when our process dies for any reason.
//!
//! Cleanup happens at several levels because test binaries die in many ways:
//! [`PgCluster::stop`], `Drop`, an `atexit` hook for clusters kept in statics
//! (statics are never dropped), and a sweep of temp directories left behind by
//! processes that no longer exist (SIGKILL skips every hook, but the death
//! signal already took their postmasters down).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::process::{self, ChildSpec, UserIds};

/// Prefix of temp data directories; the sweep relies on
/// `ticketing-pg-<pid>-<counter>`.
const TEMP_PREFIX: &str = "ticketing-pg-";
/// The superuser created by initdb (`-U postgres`).
const SUPERUSER: &str = "postgres";
/// Log file (stdout+stderr of the postmaster) inside the data directory.
const LOG_FILE: &str = "postgres.log";
/// Settings we own; rewritten on every start and included from
/// postgresql.conf, so options can change between restarts of a kept data
/// directory and are copied along by `pg_basebackup`.
const SETTINGS_FILE: &str = "ticketing.conf";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const PORT_ATTEMPTS: usize = 5;

/// Finds the directory holding `initdb` and `postgres`.
///
/// Order: `initdb` on `PATH` (symlinks resolved, since the server locates its
/// share directory relative to the real binary), `pg_config --bindir`, then the
/// highest `/usr/lib/postgresql/<version>/bin` (Debian keeps it off `PATH`).
pub fn find_bindir() -> anyhow::Result<PathBuf> {
    let usable =
        |dir: &Path| is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"));

    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if !is_executable(&initdb) {
                continue;
            }
            if let Some(real_dir) = fs::canonicalize(&initdb)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
            {
                if usable(&real_dir) {
                    return Ok(real_dir);
                }
            }
        }
    }

    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
    {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if usable(&dir) {
                return Ok(dir);
            }
        }
    }

    let mut candidates: Vec<(Vec<u64>, PathBuf)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name
                .split('.')
                .map(|part| part.parse::<u64>().ok())
                .collect::<Option<Vec<u64>>>()
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if usable(&bin) {
                candidates.push((version, bin));
            }
        }
    }
    candidates.sort();
    if let Some((_, bin)) = candidates.pop() {
        return Ok(bin);
    }

    bail!(
        "PostgreSQL server binaries not found: no `initdb` on PATH, `pg_config --bindir` \
         gave nothing usable, and no /usr/lib/postgresql/*/bin/initdb exists \
         (install e.g. the Debian `postgresql` package)"
    )
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The identity the server processes must run as.
///
/// initdb and postgres refuse to run as root, so as root we use the `postgres`
/// system user; otherwise `None` (run as ourselves).
pub fn server_user() -> anyhow::Result<Option<UserIds>> {
    if UserIds::current().uid != 0 {
        return Ok(None);
    }
    match process::lookup_user("postgres").context("looking up the `postgres` system user")? {
        Some(ids) => Ok(Some(ids)),
        None => bail!(
            "running as root, but PostgreSQL refuses to run as root and there is no `postgres` \
             system user to run it as; create one (e.g. `useradd --system postgres`) or run as a \
             regular user"
        ),
    }
}

/// How much the cluster cares about surviving a machine crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`: data is
    /// thrown away anyway, so tests don't pay for disk flushes.
    Fast,
    /// PostgreSQL defaults: benchmarks and the dev cluster should measure and
    /// behave like production.
    #[default]
    Durable,
}

/// How to start a [`PgCluster`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `None`: a fresh temp directory, removed on stop. `Some`: used and kept;
    /// initialized only if it does not already hold a cluster (`PG_VERSION`).
    pub data_dir: Option<PathBuf>,
    /// `None`: a free port (retried if another process grabs it first).
    pub port: Option<u16>,
    pub durability: Durability,
    pub max_connections: u32,
    pub shared_buffers: String,
    /// Extra `postgresql.conf` settings, written verbatim as `key = value`
    /// (quote string values yourself, e.g. `("log_statement", "'all'")`).
    pub extra_settings: Vec<(String, String)>,
    /// Make this a streaming replica: the data directory (when new) is a `pg_basebackup -R` of
    /// the server at this address, which may be a WAN link in front of the primary, so the
    /// replication stream keeps flowing through it.
    pub replica_of: Option<std::net::SocketAddr>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            data_dir: None,
            port: None,
            durability: Durability::default(),
            max_connections: 200,
            shared_buffers: "128MB".to_owned(),
            extra_settings: Vec::new(),
            replica_of: None,
        }
    }
}

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
            registry_id: NEXT_REGISTRY_ID.fetch_add(1, Ordering::Relaxed),
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

/// A `Fast` cluster started once per process and shared by all tests in a
/// test binary; create one database per test with
/// [`PgCluster::create_unique_database`]. Stopped by the exit hook.
///
/// # Panics
///
/// If the cluster cannot be started (tests cannot proceed anyway); the message
/// includes the server log. A later call retries.
pub async fn shared_test_cluster() -> &'static PgCluster {
    static SHARED: tokio::sync::OnceCell<PgCluster> = tokio::sync::OnceCell::const_new();
    match SHARED
        .get_or_try_init(|| {
            PgCluster::start(PgOptions {
                durability: Durability::Fast,
                ..PgOptions::default()
            })
        })
        .await
    {
        Ok(cluster) => cluster,
        Err(e) => panic!("starting the shared test PostgreSQL cluster failed: {e:#}"),
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

/// `<tmp>/ticketing-pg-<pid>-<counter>`, created fresh (never reused).
fn create_temp_dir() -> anyhow::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = std::env::temp_dir();
    let pid = std::process::id();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = tmp.join(format!("{TEMP_PREFIX}{pid}-{n}"));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            // Leftover from an earlier process with the same pid.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
}

/// Copies the server at `source` into `data_dir` with `pg_basebackup -R` (unless `data_dir`
/// already holds a cluster), so the copy starts as a standby streaming from `source`.
fn base_backup(
    bindir: &Path,
    data_dir: &Path,
    source: std::net::SocketAddr,
    run_as: Option<UserIds>,
) -> anyhow::Result<()> {
    if data_dir.join("PG_VERSION").exists() {
        return init_data_dir(bindir, data_dir, run_as);
    }
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    // The server refuses a data directory others can read.
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", data_dir.display()))?;
    chown_to(data_dir, run_as)?;
    let mut cmd = Command::new(bindir.join("pg_basebackup"));
    cmd.arg("-D")
        .arg(data_dir)
        .args([
            "-h",
            &source.ip().to_string(),
            "-p",
            &source.port().to_string(),
        ])
        .args([
            "-U",
            SUPERUSER,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        ])
        .current_dir(data_dir);
    let output = process::output_tied(ChildSpec::new(cmd).run_as(run_as))
        .context("running pg_basebackup")?;
    process::check_status(
        &format!("pg_basebackup from {source} into {}", data_dir.display()),
        output,
    )?;
    Ok(())
}

/// Runs initdb unless `data_dir` already holds a cluster, and makes sure the
/// server user owns it.
fn init_data_dir(bindir: &Path, data_dir: &Path, run_as: Option<UserIds>) -> anyhow::Result<()> {
    if data_dir.join("PG_VERSION").exists() {
        // E.g. a kept devcluster dir, or a pg_basebackup copy made as root.
        if let Some(ids) = run_as {
            let meta = fs::metadata(data_dir)
                .with_context(|| format!("reading {}", data_dir.display()))?;
            if meta.uid() != ids.uid {
                chown_recursive(data_dir, ids)?;
            }
        }
        return Ok(());
    }
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    chown_to(data_dir, run_as)?;

    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        // initdb resolves its own path relative to the cwd, which must be
        // accessible to the server user (root's cwd usually is not).
        .current_dir(data_dir);
    let spec = ChildSpec::new(cmd).run_as(run_as);
    let output = process::output_tied(spec).context("running initdb")?;
    process::check_status(&format!("initdb -D {}", data_dir.display()), output)?;

    append(
        &data_dir.join("pg_hba.conf"),
        "\n# ticketing devcluster: streaming replicas and TCP clients from localhost\n\
         host replication all 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 trust\n",
    )?;
    append(
        &data_dir.join("postgresql.conf"),
        &format!("\n# ticketing devcluster settings (rewritten on every start)\ninclude_if_exists = '{SETTINGS_FILE}'\n"),
    )?;
    Ok(())
}

fn write_settings(
    data_dir: &Path,
    opts: &PgOptions,
    run_as: Option<UserIds>,
) -> anyhow::Result<()> {
    let mut settings: Vec<(String, String)> = vec![
        ("listen_addresses".into(), "'127.0.0.1'".into()),
        ("max_connections".into(), opts.max_connections.to_string()),
        (
            "shared_buffers".into(),
            format!("'{}'", opts.shared_buffers),
        ),
        ("wal_level".into(), "replica".into()),
        ("max_wal_senders".into(), "10".into()),
        ("max_replication_slots".into(), "10".into()),
        ("hot_standby".into(), "on".into()),
        // Lets a replica behind a slow or cut WAN link catch up without a replication slot.
        ("wal_keep_size".into(), "'256MB'".into()),
    ];
    if opts.durability == Durability::Fast {
        for key in ["fsync", "synchronous_commit", "full_page_writes"] {
            settings.push((key.into(), "off".into()));
        }
    }
    settings.extend(opts.extra_settings.iter().cloned());

    let mut text = String::from("# Written by devcluster on every start; edits are lost.\n");
    for (key, value) in &settings {
        text.push_str(&format!("{key} = {value}\n"));
    }
    let path = data_dir.join(SETTINGS_FILE);
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    chown_to(&path, run_as)
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn chown_to(path: &Path, ids: Option<UserIds>) -> anyhow::Result<()> {
    if let Some(ids) = ids {
        std::os::unix::fs::chown(path, Some(ids.uid), Some(ids.gid))
            .with_context(|| format!("chown {} to uid {}", path.display(), ids.uid))?;
    }
    Ok(())
}

fn chown_recursive(path: &Path, ids: UserIds) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(path, Some(ids.uid), Some(ids.gid))
        .with_context(|| format!("chown {} to uid {}", path.display(), ids.uid))?;
    let meta = fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
            let entry = entry.with_context(|| format!("listing {}", path.display()))?;
            chown_recursive(&entry.path(), ids)?;
        }
    }
    Ok(())
}

fn read_log_from(data_dir: &Path, offset: u64) -> std::io::Result<String> {
    let mut file = File::open(data_dir.join(LOG_FILE))?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The last ~40 lines of the postmaster log.
fn read_log_tail(data_dir: &Path) -> std::io::Result<String> {
    const MAX: u64 = 8 * 1024;
    let mut file = File::open(data_dir.join(LOG_FILE))?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(MAX)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines[lines.len().saturating_sub(40)..].join("\n"))
}

fn log_tail_or_error(data_dir: &Path) -> String {
    read_log_tail(data_dir).unwrap_or_else(|e| {
        format!(
            "<could not read {}: {e}>",
            data_dir.join(LOG_FILE).display()
        )
    })
}

// ---------------------------------------------------------------------------
// Process-wide registry and exit hook: clusters in statics are never dropped.

#[derive(Debug)]
struct RegistryEntry {
    pid: Option<u32>,
    data_dir: PathBuf,
    remove_dir: bool,
}

static NEXT_REGISTRY_ID: AtomicU64 = AtomicU64::new(0);
static REGISTRY: Mutex<Option<HashMap<u64, RegistryEntry>>> = Mutex::new(None);

fn registry_insert(id: u64, entry: RegistryEntry) {
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    guard.get_or_insert_with(HashMap::new).insert(id, entry);
}

/// Records the current postmaster pid; no-op once the cluster is unregistered.
fn registry_set_pid(id: u64, pid: Option<u32>) {
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(entry) = guard.as_mut().and_then(|map| map.get_mut(&id)) {
        entry.pid = pid;
    }
}

fn registry_remove(id: u64) {
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(map) = guard.as_mut() {
        map.remove(&id);
    }
}

fn install_exit_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registering a plain `extern "C" fn` that never unwinds.
        if unsafe { libc::atexit(stop_registered_clusters) } != 0 {
            tracing::warn!("could not register atexit cleanup for postgres clusters");
        }
    });
}

/// atexit handler: immediate shutdown of every live cluster, then remove temp
/// dirs. Must not panic (it runs inside `exit`).
extern "C" fn stop_registered_clusters() {
    let _ = std::panic::catch_unwind(|| {
        // Another thread may hold the lock while we exit; don't deadlock.
        let entries = match REGISTRY.try_lock() {
            Ok(mut guard) => guard.take().unwrap_or_default(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take().unwrap_or_default(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let pids: Vec<libc::pid_t> = entries
            .values()
            .filter_map(|e| e.pid.and_then(|pid| libc::pid_t::try_from(pid).ok()))
            .collect();
        for &pid in &pids {
            // SAFETY: these are our own children, not yet reaped (reaping
            // removes them from the registry first).
            unsafe { libc::kill(pid, libc::SIGQUIT) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut pending = pids;
        while !pending.is_empty() {
            // SAFETY: non-blocking waitpid on our own children.
            pending.retain(
                |&pid| unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } == 0,
            );
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for &pid in &pending {
                    // SAFETY: as above.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, std::ptr::null_mut(), 0);
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for entry in entries.values() {
            if entry.remove_dir && !entry.data_dir.as_os_str().is_empty() {
                let _ = fs::remove_dir_all(&entry.data_dir);
            }
        }
    });
}

/// Removes `<tmp>/ticketing-pg-<pid>-*` dirs whose owning process is gone
/// (e.g. SIGKILLed test binaries; their postmasters died by death signal).
/// Runs once per process.
fn sweep_stale_temp_dirs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        let me = std::process::id();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
                continue;
            };
            let Some(owner) = rest.split_once('-').and_then(|(pid, _)| pid.parse::<u32>().ok()) else {
                continue;
            };
            if owner == me || process::pid_alive(owner) {
                continue;
            }
            let dir = entry.path();
            // A postmaster may still be finishing its immediate shutdown.
            let postmaster_alive = fs::read_to_string(dir.join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
                .is_some_and(process::pid_alive);
            if postmaster_alive {
                continue;
            }
            match fs::remove_dir_all(&dir) {
                Ok(()) => tracing::debug!(dir = %dir.display(), "removed stale postgres temp dir"),
                Err(e) => tracing::debug!(dir = %dir.display(), error = %e, "could not remove stale postgres temp dir"),
            }
        }
    });
}
