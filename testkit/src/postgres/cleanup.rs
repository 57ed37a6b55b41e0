//! Nothing left behind: temp data directories named after their owner process, a process-wide
//! registry of live clusters that an `atexit` hook stops (clusters in statics are never
//! dropped), and a sweep of the temp directories of processes that are gone.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::process;

/// Prefix of temp data directories; the sweep relies on `ticketing-pg-<pid>-<counter>`.
const TEMP_PREFIX: &str = "ticketing-pg-";

/// `<tmp>/ticketing-pg-<pid>-<counter>`, created fresh (never reused).
pub(super) fn create_temp_dir() -> anyhow::Result<PathBuf> {
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

/// A live cluster, as the exit hook needs to know it.
#[derive(Debug)]
pub(super) struct RegistryEntry {
    pub(super) pid: Option<u32>,
    pub(super) data_dir: PathBuf,
    pub(super) remove_dir: bool,
}

static NEXT_REGISTRY_ID: AtomicU64 = AtomicU64::new(0);
static REGISTRY: Mutex<Option<HashMap<u64, RegistryEntry>>> = Mutex::new(None);

/// A key no other cluster of this process has.
pub(super) fn next_registry_id() -> u64 {
    NEXT_REGISTRY_ID.fetch_add(1, Ordering::Relaxed)
}

pub(super) fn registry_insert(id: u64, entry: RegistryEntry) {
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    guard.get_or_insert_with(HashMap::new).insert(id, entry);
}

/// Records the current postmaster pid; no-op once the cluster is unregistered.
pub(super) fn registry_set_pid(id: u64, pid: Option<u32>) {
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(entry) = guard.as_mut().and_then(|map| map.get_mut(&id)) {
        entry.pid = pid;
    }
}

pub(super) fn registry_remove(id: u64) {
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(map) = guard.as_mut() {
        map.remove(&id);
    }
}

pub(super) fn install_exit_hook() {
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
pub(super) fn sweep_stale_temp_dirs() {
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
