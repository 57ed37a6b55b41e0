//! Where everything is: the port layout from `--base-port`, the loopback addresses that stand in
//! for each region's hosts and WAN links, the region table, which links exist, and each region's
//! view of the region names.
//!
//! Port layout from `--base-port N`: region i's router at N+1+i, node at N+1001+i, primary at
//! N+2001+i, its replica of shard j at N+2101+10i+j (the defaults give DESIGN's 8081 / 9081);
//! the operations listeners of its router at N+3001+i and of its node at N+3101+i, on
//! 127.0.0.1. With several routers per region (`--routers-per-region`), region i's router k > 0
//! listens at N+1+i+100k and its operations listener at N+3201+10i+k; the first one keeps the
//! ports above, and it is the one other regions' routers send writes to.
//!
//! Addresses: routers on 127.0.0.1 (what users call); region i's node on 127.0.1.(i+1); the
//! link carrying region i's calls to region j's router on 127.0.(10+i).(j+1) and to its node on
//! 127.0.(20+i).(j+1), each on the target's own port. Region i's DNS server is its view of the
//! network: `router.<j>.ticketing.test` resolves there to the i->j link, so one set of names
//! works in every region, as it would in a real deployment.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use region_node::config::{default_regions, RegionConfig};

/// The zone every region's DNS server answers for.
pub(super) const ZONE: &str = "ticketing.test.";
const ZONE_HOST: &str = "ticketing.test";
/// Short, so that tests of a changed record run quickly.
pub(super) const DNS_TTL: Duration = Duration::from_secs(2);

/// What a link carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Replication and a node's reads of another region's primary.
    Primary,
    /// Writes sent to the home region's router.
    Router,
    /// Reads falling back to another region's node.
    Node,
}

/// The ports and addresses of a cluster started with `--base-port base`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    base: u16,
}

impl Layout {
    pub(super) fn new(base: u16) -> Layout {
        Layout { base }
    }

    fn port(&self, offset: u32) -> anyhow::Result<u16> {
        u16::try_from(u32::from(self.base) + offset)
            .context("--base-port is too high for this many regions")
    }

    pub(super) fn router_port(&self, i: usize) -> anyhow::Result<u16> {
        self.port(1 + i as u32)
    }

    pub(super) fn node_port(&self, i: usize) -> anyhow::Result<u16> {
        self.port(1001 + i as u32)
    }

    pub(super) fn primary_port(&self, i: usize) -> anyhow::Result<u16> {
        self.port(2001 + i as u32)
    }

    /// Region i's replica of shard j.
    pub(super) fn replica_port(&self, i: usize, j: usize) -> anyhow::Result<u16> {
        self.port(2101 + 10 * i as u32 + j as u32)
    }

    /// Region i's router's operations listener (`/metrics`).
    pub(super) fn router_ops_addr(&self, i: usize) -> anyhow::Result<SocketAddr> {
        Ok(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            self.port(3001 + i as u32)?,
        )))
    }

    /// Region i's node's operations listener (`/metrics`, `/cluster`).
    pub(super) fn node_ops_addr(&self, i: usize) -> anyhow::Result<SocketAddr> {
        Ok(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            self.port(3101 + i as u32)?,
        )))
    }

    /// Region i's router k (0 is the first, the one the names and links point at).
    pub(super) fn nth_router_addr(&self, i: usize, k: usize) -> anyhow::Result<SocketAddr> {
        if k == 0 {
            return self.router_addr(i);
        }
        Ok(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            self.port(1 + i as u32 + 100 * k as u32)?,
        )))
    }

    /// The operations listener of region i's router k.
    pub(super) fn nth_router_ops_addr(&self, i: usize, k: usize) -> anyhow::Result<SocketAddr> {
        if k == 0 {
            return self.router_ops_addr(i);
        }
        Ok(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            self.port(3201 + 10 * i as u32 + k as u32)?,
        )))
    }

    pub(super) fn router_addr(&self, i: usize) -> anyhow::Result<SocketAddr> {
        Ok(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            self.router_port(i)?,
        )))
    }

    pub(super) fn node_addr(&self, i: usize) -> anyhow::Result<SocketAddr> {
        Ok(SocketAddr::from((node_ip(i), self.node_port(i)?)))
    }

    /// Region i's primary, as its own region (and the links in front of it) reach it.
    pub(super) fn primary_addr(&self, i: usize) -> anyhow::Result<SocketAddr> {
        Ok(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            self.primary_port(i)?,
        )))
    }

    /// (listen, target) of the link carrying region `from`'s traffic to a service homed in `to`.
    /// Router and node links listen on an address of their own, on the target's port, so the
    /// names can point at them; primary links on a free port, which replicas and nodes are told.
    pub(super) fn link(
        &self,
        kind: LinkKind,
        from: usize,
        to: usize,
    ) -> anyhow::Result<(SocketAddr, SocketAddr)> {
        let target = match kind {
            LinkKind::Primary => {
                return Ok((
                    SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                    self.primary_addr(to)?,
                ))
            }
            LinkKind::Router => self.router_addr(to)?,
            LinkKind::Node => self.node_addr(to)?,
        };
        Ok((
            SocketAddr::from((link_ip(kind, from, to), target.port())),
            target,
        ))
    }

    /// How every router finds region `j`'s node: by name, through its own region's DNS.
    pub(super) fn node_url_by_name(&self, name: &str, j: usize) -> anyhow::Result<String> {
        Ok(format!(
            "http://node.{name}.{ZONE_HOST}:{}",
            self.node_port(j)?
        ))
    }

    /// How every router finds region `j`'s router, by name.
    pub(super) fn router_url_by_name(&self, name: &str, j: usize) -> anyhow::Result<String> {
        Ok(format!(
            "http://router.{name}.{ZONE_HOST}:{}",
            self.router_port(j)?
        ))
    }
}

fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, i as u8 + 1)
}

fn link_ip(kind: LinkKind, from: usize, to: usize) -> Ipv4Addr {
    let third = match kind {
        LinkKind::Router => 10,
        LinkKind::Node => 20,
        LinkKind::Primary => 30,
    };
    Ipv4Addr::new(127, 0, third + from as u8, to as u8 + 1)
}

/// Region names with their Snowflake region ids: the defaults keep theirs, others follow.
pub(super) fn region_table(names: &[String]) -> anyhow::Result<Vec<RegionConfig>> {
    let defaults = default_regions();
    let mut next_id = defaults.iter().map(|r| r.id).max().unwrap_or(0) + 1;
    let mut table: Vec<RegionConfig> = Vec::new();
    for name in names {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            bail!("region names are lowercase letters, digits and '-': {name:?}");
        }
        if table.iter().any(|r| &r.name == name) {
            bail!("region {name} is listed twice");
        }
        let id = match defaults.iter().find(|r| &r.name == name) {
            Some(r) => r.id,
            None => {
                let id = next_id;
                next_id += 1;
                id
            }
        };
        if id > id_gen::MAX_REGION {
            bail!("too many regions: ids run out at {}", id_gen::MAX_REGION);
        }
        table.push(RegionConfig {
            name: name.clone(),
            id,
        });
    }
    if table.is_empty() {
        bail!("--regions names no region");
    }
    Ok(table)
}

/// Which links exist: one of each kind for every ordered pair of distinct regions, `(from, to)`
/// by index in table order.
pub(super) fn region_pairs(regions: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..regions).flat_map(move |from| {
        (0..regions)
            .filter(move |to| *to != from)
            .map(move |to| (from, to))
    })
}

/// Region `i`'s view of the names `node.<region>` and `router.<region>`: its own services
/// directly, every other region's through the link from `i` to it.
pub(super) fn dns_view(table: &[RegionConfig], i: usize) -> Vec<(String, Ipv4Addr)> {
    let mut view = Vec::new();
    for (j, other) in table.iter().enumerate() {
        let (node, router) = if i == j {
            (node_ip(i), Ipv4Addr::LOCALHOST)
        } else {
            (
                link_ip(LinkKind::Node, i, j),
                link_ip(LinkKind::Router, i, j),
            )
        };
        view.push((format!("node.{}", other.name), node));
        view.push((format!("router.{}", other.name), router));
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_default_base_port_gives_the_design_ports() {
        let layout = Layout::new(8080);
        assert_eq!(layout.router_addr(0).unwrap().to_string(), "127.0.0.1:8081");
        assert_eq!(layout.node_addr(1).unwrap().to_string(), "127.0.1.2:9082");
        assert_eq!(layout.primary_port(2).unwrap(), 10083);
        assert_eq!(layout.replica_port(1, 2).unwrap(), 10193);
        assert_eq!(layout.router_ops_addr(0).unwrap().port(), 11081);
        assert_eq!(layout.node_ops_addr(2).unwrap().port(), 11183);
        let link = |kind, from, to| {
            let (listen, target) = layout.link(kind, from, to).unwrap();
            (listen.to_string(), target.to_string())
        };
        assert_eq!(
            link(LinkKind::Router, 0, 1),
            ("127.0.10.2:8082".to_string(), "127.0.0.1:8082".to_string())
        );
        assert_eq!(
            link(LinkKind::Node, 2, 0),
            ("127.0.22.1:9081".to_string(), "127.0.1.1:9081".to_string())
        );
        assert_eq!(
            link(LinkKind::Primary, 1, 0),
            ("127.0.0.1:0".to_string(), "127.0.0.1:10081".to_string())
        );
        assert!(Layout::new(65_000).primary_port(0).is_err());
        // Further routers of a region: ports of their own, the first one unchanged.
        assert_eq!(
            layout.nth_router_addr(1, 0).unwrap(),
            layout.router_addr(1).unwrap()
        );
        assert_eq!(layout.nth_router_addr(1, 2).unwrap().port(), 8282);
        assert_eq!(
            layout.nth_router_ops_addr(0, 0).unwrap(),
            layout.router_ops_addr(0).unwrap()
        );
        assert_eq!(layout.nth_router_ops_addr(2, 1).unwrap().port(), 11302);
    }

    #[test]
    fn regions_keep_their_default_ids_and_new_ones_follow() {
        let table = region_table(&names(&["eu-west", "mars-1"])).unwrap();
        let default_eu = default_regions()
            .into_iter()
            .find(|r| r.name == "eu-west")
            .unwrap();
        assert_eq!(table[0].id, default_eu.id);
        let max_default = default_regions().iter().map(|r| r.id).max().unwrap();
        assert_eq!(table[1].id, max_default + 1);
        for bad in [&["Mars"][..], &["a", "a"], &[]] {
            assert!(region_table(&names(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn links_join_every_ordered_pair_and_each_region_sees_its_own_view() {
        let pairs: Vec<_> = region_pairs(3).collect();
        assert_eq!(pairs, [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]);
        let table = region_table(&names(&["us-east", "eu-west"])).unwrap();
        let view = dns_view(&table, 1);
        assert_eq!(
            view,
            [
                ("node.us-east".to_string(), Ipv4Addr::new(127, 0, 21, 1)),
                ("router.us-east".to_string(), Ipv4Addr::new(127, 0, 11, 1)),
                ("node.eu-west".to_string(), Ipv4Addr::new(127, 0, 1, 2)),
                ("router.eu-west".to_string(), Ipv4Addr::LOCALHOST),
            ]
        );
    }
}
