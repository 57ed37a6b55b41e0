//! loadgen's own open-file limit: holding 50,000 streams takes 50,000 descriptors, past a
//! shell's usual hard limit (20,000 here). As root the hard limit itself can be raised, up to
//! the kernel's `fs.nr_open`; then the soft limit goes to the hard one
//! (`wire::server::open_files`, as the services do at start).

/// Raises the limit so that `wanted` descriptors fit if it can; the soft limit after.
pub fn raise_open_files(wanted: u64) -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_max < wanted {
        let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(1_048_576);
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_cur,
            rlim_max: wanted.min(ceiling),
        };
        // SAFETY: setrlimit only reads the struct. Without CAP_SYS_RESOURCE it fails with
        // EPERM, and the hard limit stays what it was: the runs then report the failures.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    }
    let (soft, _hard) = wire::server::open_files::raise_to_hard_limit()?;
    Ok(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_at_least_to_what_it_was() {
        let mut before = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut before) },
            0
        );
        let soft = raise_open_files(1024).unwrap();
        assert!(soft >= before.rlim_cur && soft >= before.rlim_max.min(1024));
    }
}
