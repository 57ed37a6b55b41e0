//! Resident memory of the processes behind a run, from Linux's `/proc/<pid>/status` (`VmRSS`),
//! read at one moment (the end of a `watch` run, while its streams are still held).

use serde::{Deserialize, Serialize};

use crate::cpu::Kind;
use crate::target::Target;

/// One process's resident memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resident {
    pub region: String,
    pub process: Kind,
    pub pid: u32,
    pub bytes: u64,
}

/// `VmRSS:   123456 kB` of a status file, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        _ => None,
    }
}

/// The resident memory of each region's routers (every one) and node the target names, now;
/// processes that are gone or unreadable are left out.
pub fn routers_and_nodes(target: &Target) -> Vec<Resident> {
    let mut out = Vec::new();
    for region in &target.regions {
        let Some(pids) = &region.pids else { continue };
        let routers = pids
            .router_pids()
            .into_iter()
            .map(|pid| (Kind::Router, pid));
        for (kind, pid) in routers.chain(pids.node.map(|pid| (Kind::Node, pid))) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
            if let Some(bytes) = status.ok().as_deref().and_then(parse_vm_rss) {
                out.push(Resident {
                    region: region.name.clone(),
                    process: kind,
                    pid,
                    bytes,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\trouter\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(123_456 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
        let mine = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(parse_vm_rss(&mine).unwrap() > 0);
    }
}
