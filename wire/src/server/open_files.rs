//! The open-file limit: each connection is a descriptor, so a service raises its soft limit to
//! the hard one at start, rather than stop accepting at the shell's default; started as root it
//! first raises the hard limit itself to `connections.max_open_files` (a login's usual 4,096 or
//! 524,288 would cap the streams one router holds), within the kernel's `fs.nr_open`.

use std::io;

/// The hard limit to ask for: `wanted` within the kernel's `nr_open`, for root (only it may
/// raise a hard limit); never lower than the `current` one.
pub fn hard_target(
    current: libc::rlim_t,
    wanted: libc::rlim_t,
    nr_open: Option<libc::rlim_t>,
    root: bool,
) -> libc::rlim_t {
    if !root {
        return current;
    }
    current.max(nr_open.map_or(wanted, |n| wanted.min(n)))
}

/// The kernel's ceiling on any process's open files.
fn nr_open() -> Option<libc::rlim_t> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Raises the hard limit towards `max_open_files` when root (see `hard_target`; if the kernel
/// refuses, the hard limit stays), then the soft limit to the hard one. Returns both.
pub fn raise(max_open_files: u64) -> io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let hard = hard_target(
        limit.rlim_max,
        max_open_files as libc::rlim_t,
        nr_open(),
        root,
    );
    if hard > limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        // Asking for no more than the current hard limit: the same for root and others.
        let (_, hard) = raise(0).unwrap();
        let (soft, again) = raise(0).unwrap();
        assert_eq!((soft, again), (hard, hard));
    }

    #[test]
    fn only_root_raises_the_hard_limit_and_never_past_the_kernels_ceiling() {
        assert_eq!(hard_target(4_096, 1_048_576, Some(1_048_576), false), 4_096);
        assert_eq!(
            hard_target(4_096, 1_048_576, Some(1_048_576), true),
            1_048_576
        );
        assert_eq!(hard_target(4_096, 1_048_576, Some(65_536), true), 65_536);
        assert_eq!(hard_target(4_096, 1_048_576, None, true), 1_048_576);
        // Never lowered.
        assert_eq!(
            hard_target(2_000_000, 1_048_576, Some(4_000_000), true),
            2_000_000
        );
        assert_eq!(hard_target(4_096, 1_024, Some(1_048_576), true), 4_096);
    }
}
