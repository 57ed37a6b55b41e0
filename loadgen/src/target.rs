//! What the load is aimed at: each region's router (where its virtual users connect), and, when
//! known, its node's operations listener (for cache counters), its primary (for the audit) and the PIDs of its
//! processes (for CPU per request). Read from devcluster's `cluster.json`, or given region by
//! region on the command line.

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::cpu::{Group, Kind};

#[derive(Debug, Clone)]
pub struct Region {
    pub name: String,
    /// The region's number in ids (id-gen's region bits), when the cluster says.
    pub id: Option<u8>,
    pub router: String,
    /// Every router of the region, `router` first (devcluster `--routers-per-region`).
    pub routers: Vec<String>,
    /// The node's operations listener, where its `/cluster` view is.
    pub node_ops: Option<String>,
    pub primary: Option<String>,
    /// The region's processes, when the cluster runs on this machine and says.
    pub pids: Option<RegionPids>,
}

/// A region's processes as devcluster's `cluster.json` gives them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RegionPids {
    /// The first router.
    pub router: Option<u32>,
    /// Every router of the region, the first one first (absent from older files).
    #[serde(default)]
    pub routers: Vec<u32>,
    pub node: Option<u32>,
    /// The primary's postmaster.
    pub primary: Option<u32>,
    /// The postmaster of this region's replica of each shard.
    #[serde(default)]
    pub replicas: BTreeMap<String, Option<u32>>,
}

impl RegionPids {
    /// Every router of the region: `routers`, or the one `router` of an older file.
    pub fn router_pids(&self) -> Vec<u32> {
        if self.routers.is_empty() {
            self.router.into_iter().collect()
        } else {
            self.routers.clone()
        }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub regions: Vec<Region>,
    pub admin_token: String,
    /// Simulated round trip between two regions, in ms, keyed "from>to", when the cluster says.
    pub rtt_ms: BTreeMap<String, f64>,
    /// devcluster's own process (it runs the WAN links and DNS servers), when the cluster says.
    pub devcluster_pid: Option<u32>,
    /// The deployment's JWT secret, when the cluster says: loadgen then mints users' tokens.
    pub jwt_secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterFile {
    admin_token: String,
    regions: Vec<ClusterRegion>,
    #[serde(default)]
    links: Vec<ClusterLink>,
    devcluster_pid: Option<u32>,
    jwt_secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterRegion {
    name: String,
    id: Option<u8>,
    router: String,
    #[serde(default)]
    routers: Vec<String>,
    node_ops: Option<String>,
    primary: Option<String>,
    pids: Option<RegionPids>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterLink {
    from: String,
    to: String,
    one_way_delay_ms: f64,
}

impl Target {
    pub fn from_cluster_json(path: &Path) -> anyhow::Result<Target> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let file: ClusterFile = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a devcluster cluster.json", path.display()))?;
        let mut rtt_ms = BTreeMap::new();
        // Links are one per direction and per kind (router, node, primary); any one of them
        // carries the pair's delay, and a round trip is the delay there plus the delay back.
        for link in &file.links {
            let back = file
                .links
                .iter()
                .find(|l| l.from == link.to && l.to == link.from)
                .map_or(link.one_way_delay_ms, |l| l.one_way_delay_ms);
            rtt_ms.insert(pair_key(&link.from, &link.to), link.one_way_delay_ms + back);
        }
        let target = Target {
            regions: file
                .regions
                .into_iter()
                .map(|r| Region {
                    name: r.name,
                    id: r.id,
                    routers: if r.routers.is_empty() {
                        vec![r.router.clone()]
                    } else {
                        r.routers
                    },
                    router: r.router,
                    node_ops: r.node_ops,
                    primary: r.primary,
                    pids: r.pids,
                })
                .collect(),
            admin_token: file.admin_token,
            rtt_ms,
            devcluster_pid: file.devcluster_pid,
            jwt_secret: file.jwt_secret.filter(|s| !s.is_empty()),
        };
        target.validate()?;
        Ok(target)
    }

    /// `name=url` pairs for routers and, optionally, primaries.
    pub fn from_urls(
        routers: &[String],
        primaries: &[String],
        admin_token: String,
    ) -> anyhow::Result<Target> {
        let mut regions = Vec::new();
        for pair in routers {
            let (name, url) = split_pair(pair)?;
            regions.push(Region {
                name: name.into(),
                id: None,
                router: url.into(),
                routers: vec![url.into()],
                node_ops: None,
                primary: None,
                pids: None,
            });
        }
        for pair in primaries {
            let (name, url) = split_pair(pair)?;
            let region = regions
                .iter_mut()
                .find(|r| r.name == name)
                .with_context(|| format!("--primary {name}: no --router for that region"))?;
            region.primary = Some(url.into());
        }
        let target = Target {
            regions,
            admin_token,
            rtt_ms: BTreeMap::new(),
            devcluster_pid: None,
            jwt_secret: None,
        };
        target.validate()?;
        Ok(target)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.regions.is_empty() {
            bail!("no regions to drive");
        }
        for r in &self.regions {
            if self.regions.iter().filter(|o| o.name == r.name).count() > 1 {
                bail!("region {} is given twice", r.name);
            }
        }
        Ok(())
    }

    pub fn region(&self, name: &str) -> anyhow::Result<&Region> {
        self.regions
            .iter()
            .find(|r| r.name == name)
            .with_context(|| {
                let known: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
                format!(
                    "unknown region {name}; the cluster has {}",
                    known.join(", ")
                )
            })
    }

    pub fn rtt_ms(&self, from: &str, to: &str) -> Option<f64> {
        if from == to {
            return Some(0.0);
        }
        self.rtt_ms.get(&pair_key(from, to)).copied()
    }

    /// The processes to account CPU to: each region's router, node and PostgreSQL servers (with
    /// their backends), devcluster alone (the rest of its tree is the regions), and `loadgen`
    /// (this process). Empty when the target names no processes.
    pub fn cpu_groups(&self, loadgen: u32) -> Vec<Group> {
        let mut groups = Vec::new();
        for region in &self.regions {
            let Some(pids) = &region.pids else { continue };
            let servers: Vec<u32> = pids
                .primary
                .into_iter()
                .chain(pids.replicas.values().flatten().copied())
                .collect();
            for (kind, pids) in [
                (Kind::Router, pids.router_pids()),
                (Kind::Node, pids.node.into_iter().collect()),
                (Kind::Postgres, servers),
            ] {
                if !pids.is_empty() {
                    groups.push(Group {
                        region: Some(region.name.clone()),
                        kind,
                        pids,
                        descendants: true,
                    });
                }
            }
        }
        if let Some(pid) = self.devcluster_pid {
            groups.push(Group {
                region: None,
                kind: Kind::Devcluster,
                pids: vec![pid],
                descendants: false,
            });
        }
        if !groups.is_empty() {
            groups.push(Group {
                region: None,
                kind: Kind::Loadgen,
                pids: vec![loadgen],
                descendants: true,
            });
        }
        groups
    }

    /// Load stays on this machine: every router, node and primary must be a loopback address.
    pub fn ensure_loopback(&self) -> anyhow::Result<()> {
        for r in &self.regions {
            let urls = [Some(&r.router), r.node_ops.as_ref(), r.primary.as_ref()];
            for url in urls.into_iter().flatten() {
                if !is_loopback_url(url)? {
                    bail!(
                        "{url} is not a loopback address; loadgen drives local clusters only \
                         (pass --allow-remote to aim it elsewhere)"
                    );
                }
            }
        }
        Ok(())
    }
}

fn pair_key(from: &str, to: &str) -> String {
    format!("{from}>{to}")
}

fn split_pair(pair: &str) -> anyhow::Result<(&str, &str)> {
    match pair.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => Ok((name, url)),
        _ => bail!("expected region=url, got {pair:?}"),
    }
}

/// The host of an http:// or postgres:// URL, resolved: loopback when every address is.
fn is_loopback_url(url: &str) -> anyhow::Result<bool> {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().unwrap_or(80)),
        _ => (host_port, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip.is_loopback());
    }
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .collect();
    Ok(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        assert!(is_loopback_url("http://127.0.0.1:8081").unwrap());
        assert!(is_loopback_url("http://127.0.1.3:9083/api").unwrap());
        assert!(is_loopback_url("postgres://postgres@127.0.0.1:10081/ticketing").unwrap());
        assert!(is_loopback_url("http://localhost:80").unwrap());
        assert!(is_loopback_url("http://[::1]:8080").unwrap());
        assert!(!is_loopback_url("http://10.1.2.3:8080").unwrap());
        assert!(!is_loopback_url("postgres://u:p@192.168.0.1/db").unwrap());
    }

    #[test]
    fn urls_by_region() {
        let t = Target::from_urls(
            &[
                "us-east=http://127.0.0.1:1".into(),
                "eu-west=http://127.0.0.1:2".into(),
            ],
            &["eu-west=postgres://127.0.0.1:3/x".into()],
            "token".into(),
        )
        .unwrap();
        assert_eq!(
            t.region("eu-west").unwrap().primary.as_deref(),
            Some("postgres://127.0.0.1:3/x")
        );
        assert!(t.region("ap-southeast").is_err());
        assert!(Target::from_urls(&["nourl".into()], &[], "t".into()).is_err());
        assert!(Target::from_urls(
            &["a=http://127.0.0.1:1".into(), "a=http://127.0.0.1:2".into()],
            &[],
            "t".into()
        )
        .is_err());
        assert!(Target::from_urls(
            &["a=http://127.0.0.1:1".into()],
            &["b=postgres://x".into()],
            "t".into()
        )
        .is_err());
    }

    #[test]
    fn the_processes_of_a_cluster_json() {
        let path = std::env::temp_dir().join(format!("loadgen-target-{}.json", std::process::id()));
        let cluster = serde_json::json!({
            "adminToken": "t",
            "devclusterPid": 100,
            "jwtSecret": "a-secret-of-enough-bytes",
            "regions": [
                {"name": "us-east", "id": 1, "router": "http://127.0.0.1:1",
                 "routers": ["http://127.0.0.1:1", "http://127.0.0.1:101"],
                 "node": "http://127.0.1.1:9081", "nodeOps": "http://127.0.0.1:11181",
                 "pids": {"router": 101, "routers": [101, 105], "node": 102, "primary": 103,
                          "replicas": {"us-east": 104, "eu-west": null}}},
                {"name": "eu-west", "router": "http://127.0.0.1:2"}
            ]
        });
        std::fs::write(&path, cluster.to_string()).unwrap();
        let target = Target::from_cluster_json(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            target.jwt_secret.as_deref(),
            Some("a-secret-of-enough-bytes")
        );
        assert_eq!(
            (target.regions[0].id, target.regions[1].id),
            (Some(1), None)
        );
        // A file without `routers` has the one router.
        assert_eq!(target.regions[0].routers.len(), 2);
        assert_eq!(target.regions[1].routers, ["http://127.0.0.1:2"]);
        // The node's cache counters are read on its operations listener.
        assert_eq!(
            target.regions[0].node_ops.as_deref(),
            Some("http://127.0.0.1:11181")
        );
        let groups = target.cpu_groups(7);
        let summary: Vec<(Option<&str>, Kind, Vec<u32>, bool)> = groups
            .iter()
            .map(|g| (g.region.as_deref(), g.kind, g.pids.clone(), g.descendants))
            .collect();
        assert_eq!(
            summary,
            vec![
                // Both routers of us-east, counted together.
                (Some("us-east"), Kind::Router, vec![101, 105], true),
                (Some("us-east"), Kind::Node, vec![102], true),
                (Some("us-east"), Kind::Postgres, vec![103, 104], true),
                (None, Kind::Devcluster, vec![100], false),
                (None, Kind::Loadgen, vec![7], true),
            ]
        );
        // Routers given on the command line name no processes: no CPU accounting at all.
        let bare = Target::from_urls(&["a=http://127.0.0.1:1".into()], &[], "t".into()).unwrap();
        assert!(bare.cpu_groups(7).is_empty());
    }
}
