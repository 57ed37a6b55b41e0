//! loadgen's own open-file limit: holding 50,000 streams takes 50,000 descriptors, past a
//! shell's usual hard limit (20,000 here). As root the hard limit itself can be raised, up to
//! the kernel's `fs.nr_open`; then the soft limit goes to the hard one, as the services do at
//! start (`wire::server::open_files`, whose root-aware `raise` this can become once it is on
//! the branch loadgen is built with).

use std::io;

fn limit() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

/// Raises the limit so that `wanted` descriptors fit if it can; the soft limit after.
pub fn raise_open_files(wanted: u64) -> io::Result<u64> {
    let mut now = limit()?;
    if now.rlim_max < wanted {
        let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(1_048_576);
        let raised = libc::rlimit {
            rlim_cur: now.rlim_cur,
            rlim_max: wanted.min(ceiling).max(now.rlim_max),
        };
        // SAFETY: setrlimit only reads the struct. Without CAP_SYS_RESOURCE it fails with
        // EPERM and the hard limit stays: the run then reports the streams it could not open.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            now = raised;
        }
    }
    if now.rlim_cur < now.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: now.rlim_max,
            rlim_max: now.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit()?.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let before = limit().unwrap();
        let soft = raise_open_files(1024).unwrap();
        let after = limit().unwrap();
        assert_eq!(soft, after.rlim_cur);
        assert_eq!(after.rlim_cur, after.rlim_max);
        assert!(after.rlim_max >= before.rlim_max);
    }
}
