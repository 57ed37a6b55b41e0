//! Child processes that cannot outlive us.
//!
//! Test binaries get killed in every possible way (panic, `abort`, SIGKILL from
//! a CI timeout, normal exit). A leaked `postgres` keeps a port, shared memory
//! and a data directory alive forever, so every helper process the harness
//! starts is tied to our lifetime with Linux's `PR_SET_PDEATHSIG`.
//!
//! Two traps make this less trivial than one `prctl` call:
//!
//! * The death signal fires when the *thread* that forked the child exits, not
//!   the process. Test harnesses run every test on its own short-lived thread
//!   while a shared cluster lives in a `static`, so all forking happens on one
//!   dedicated spawner thread that lives as long as the process.
//! * The death signal is cleared when credentials change, so switching to the
//!   `postgres` user (required when we run as root) is done *before* `prctl`.

use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// Numeric identity a child should run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIds {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

impl UserIds {
    /// The effective identity of this process.
    pub fn current() -> UserIds {
        // SAFETY: geteuid/getegid cannot fail and have no preconditions.
        unsafe {
            UserIds {
                uid: libc::geteuid(),
                gid: libc::getegid(),
            }
        }
    }
}

/// Looks up a system user by name (thread-safe `getpwnam_r`).
///
/// Returns `Ok(None)` when the user does not exist.
pub fn lookup_user(name: &str) -> io::Result<Option<UserIds>> {
    let cname = CString::new(name)?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: `passwd` is plain old data; all-zero is a valid value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to live, correctly sized memory for the
        // duration of the call; the strings in `pwd` point into `buf`, which we
        // do not read after it is dropped.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }
        return Ok(Some(UserIds {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        }));
    }
}

/// Whether a process with this pid exists and is not a zombie.
///
/// Zombies count as dead: in containers the reaper (pid 1) is not always a
/// real init, so a killed orphan can linger as `Z` indefinitely.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence/permission.
    let rc = unsafe { libc::kill(raw, 0) };
    if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Format: "pid (comm) S ..."; comm may contain spaces/parens, so look
        // after the last ')'.
        Ok(stat) => match stat.rfind(')') {
            Some(idx) => !matches!(stat[idx + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(_) => true,
    }
}

/// A command plus how to tie it to our lifetime.
pub struct ChildSpec {
    command: Command,
    run_as: Option<UserIds>,
    death_signal: i32,
}

impl ChildSpec {
    /// Wraps `command`; by default the child runs as us and gets SIGKILL when
    /// we die.
    pub fn new(command: Command) -> ChildSpec {
        ChildSpec {
            command,
            run_as: None,
            death_signal: libc::SIGKILL,
        }
    }

    /// Run the child as another user (requires root unless it is us).
    pub fn run_as(mut self, ids: Option<UserIds>) -> ChildSpec {
        self.run_as = ids;
        self
    }

    /// Signal the child receives when we die. Use something the program
    /// handles gracefully where possible (e.g. SIGQUIT for a postmaster, which
    /// then also takes its own children down).
    pub fn death_signal(mut self, signal: i32) -> ChildSpec {
        self.death_signal = signal;
        self
    }

    /// Access the command, e.g. to add arguments or redirect stdio.
    pub fn command_mut(&mut self) -> &mut Command {
        &mut self.command
    }
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("command", &self.command)
            .field("run_as", &self.run_as)
            .field("death_signal", &self.death_signal)
            .finish()
    }
}

type Request = (ChildSpec, mpsc::Sender<io::Result<Child>>);

/// Sender to the process-lifetime spawner thread.
fn spawner() -> io::Result<mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<Option<mpsc::Sender<Request>>>> = OnceLock::new();
    let slot = SPAWNER.get_or_init(|| Mutex::new(None));
    let mut guard = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(tx) = guard.as_ref() {
        return Ok(tx.clone());
    }
    let (tx, rx) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("tied-spawner".into())
        .spawn(move || {
            // Lives until the process exits: the sender is kept in a static,
            // so `recv` never observes disconnection.
            while let Ok((spec, reply)) = rx.recv() {
                let _ = reply.send(spawn_here(spec));
            }
        })?;
    *guard = Some(tx.clone());
    Ok(tx)
}

/// Forks on the current thread; only ever called on the spawner thread.
fn spawn_here(spec: ChildSpec) -> io::Result<Child> {
    let ChildSpec {
        mut command,
        run_as,
        death_signal,
    } = spec;
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure only performs async-signal-safe syscalls and builds
    // errors from raw OS codes (no allocation), as required after fork().
    unsafe {
        command.pre_exec(move || {
            if let Some(ids) = run_as {
                if libc::geteuid() == 0 {
                    // Drop root's supplementary groups before becoming the
                    // target user.
                    if libc::setgroups(0, std::ptr::null()) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::setgid(ids.gid) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setuid(ids.uid) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // After the credential change: changing credentials resets the
            // death signal.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                death_signal as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork() and prctl(); then we
            // have already been reparented and would never get the signal.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Spawns `spec` so that the child receives its death signal when this
/// process dies, however it dies.
///
/// The fork happens on a dedicated thread that lives for the whole process
/// (see the module docs), so this may be called from any thread, including
/// short-lived test threads and async tasks (it blocks only for the fork).
pub fn spawn_tied(spec: ChildSpec) -> io::Result<Child> {
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()?
        .send((spec, reply_tx))
        .map_err(|_| io::Error::other("tied-spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("tied-spawner thread dropped the request"))?
}

/// Runs a one-shot command tied to our lifetime and collects its output
/// (stdin is null, stdout/stderr are captured). Blocks until it exits, so call
/// it from `spawn_blocking` in async code.
///
/// Does not check the exit status; see [`check_status`].
pub fn output_tied(mut spec: ChildSpec) -> io::Result<Output> {
    spec.command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn_tied(spec)?.wait_with_output()
}

/// Turns a non-successful [`Output`] into an error that includes stderr and
/// stdout, because "exit status 1" alone is useless for initdb and friends.
pub fn check_status(what: &str, output: Output) -> anyhow::Result<Output> {
    if output.status.success() {
        return Ok(output);
    }
    anyhow::bail!(
        "{what} failed ({}):\n--- stderr ---\n{}\n--- stdout ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim_end(),
        String::from_utf8_lossy(&output.stdout).trim_end(),
    )
}

/// Asks a child to stop gracefully (SIGTERM); the caller waits for it.
pub fn terminate(child: &Child) {
    // SAFETY: kill(2) on a pid we spawned; at worst it names a process that already exited.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}
