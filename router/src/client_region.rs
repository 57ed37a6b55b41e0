//! Working out which region a client is in.
//!
//! GeoDNS already sent the client to the nearest router, so the default is the router's own
//! region. A proxy in front of the router (a CDN edge, a load balancer) may know better and say
//! so in `X-Client-Region`, but only proxies we trust may: anyone else could name any region.
//! An optional CIDR table maps client addresses to regions (e.g. corporate ranges).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::headers::{X_CLIENT_REGION, X_FORWARDED_FOR};

/// An IPv4 or IPv6 network, e.g. `10.0.0.0/8`; a bare address means just that address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid CIDR {0:?}: expected ADDRESS or ADDRESS/PREFIX")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(Cidr {
            network: mask(addr, prefix),
            prefix,
        })
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Cidr, CidrError> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl Cidr {
    /// Whether `ip` is inside the network. IPv4-mapped IPv6 addresses (what a dual-stack
    /// listener reports for IPv4 peers) count as their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

/// How the client's region was decided (for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The router's own region: GeoDNS sent the client here.
    Default,
    /// `X-Client-Region` from a trusted proxy.
    Header,
    /// The client address matched `client_region_cidrs`.
    Cidr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRegion {
    pub region: String,
    pub source: Source,
}

/// Decides a request's client region from its TCP peer address and headers.
#[derive(Clone, Debug)]
pub struct ClientRegions {
    own: String,
    known: Vec<String>,
    trusted: Vec<Cidr>,
    /// Sorted longest prefix first, so the most specific network wins.
    table: Vec<(Cidr, String)>,
}

impl ClientRegions {
    pub fn new(
        own: String,
        known: Vec<String>,
        trusted: Vec<Cidr>,
        mut table: Vec<(Cidr, String)>,
    ) -> ClientRegions {
        table.sort_by_key(|(cidr, _)| std::cmp::Reverse(cidr.prefix()));
        ClientRegions {
            own,
            known,
            trusted,
            table,
        }
    }

    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(peer))
    }

    /// The client's region: a trusted proxy's `X-Client-Region` (if it names a configured
    /// region), else the CIDR table for the client address, else the router's own region.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> ClientRegion {
        let trusted = self.is_trusted(peer);
        if trusted {
            let named = headers
                .get(X_CLIENT_REGION)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .and_then(|name| self.known.iter().find(|k| k.as_str() == name));
            if let Some(region) = named {
                return ClientRegion {
                    region: region.clone(),
                    source: Source::Header,
                };
            }
        }
        let client = if trusted {
            self.forwarded_client(peer, headers)
        } else {
            peer
        };
        if let Some((_, region)) = self.table.iter().find(|(c, _)| c.contains(client)) {
            return ClientRegion {
                region: region.clone(),
                source: Source::Cidr,
            };
        }
        ClientRegion {
            region: self.own.clone(),
            source: Source::Default,
        }
    }

    /// The client address behind trusted proxies: the right-most `X-Forwarded-For` entry
    /// that is not itself a trusted proxy (entries further left are client-controlled).
    fn forwarded_client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer;
        let entries = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for entry in entries.into_iter().rev() {
            let Ok(ip) = entry.parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(ip("10.200.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.7")));
        let single: Cidr = "127.0.0.1".parse().unwrap();
        assert!(single.contains(ip("127.0.0.1")));
        assert!(!single.contains(ip("127.0.0.2")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0/8",
            "::/129",
            "x/1",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    fn resolver() -> ClientRegions {
        ClientRegions::new(
            "us-east".into(),
            vec!["us-east".into(), "eu-west".into(), "ap-southeast".into()],
            vec!["10.0.0.0/8".parse().unwrap()],
            vec![
                ("192.0.0.0/8".parse().unwrap(), "ap-southeast".into()),
                ("192.0.2.0/24".parse().unwrap(), "eu-west".into()),
            ],
        )
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn header_only_from_trusted_proxies() {
        let r = resolver();
        let h = headers(&[("x-client-region", "eu-west")]);
        assert_eq!(r.resolve(ip("10.1.1.1"), &h).region, "eu-west");
        assert_eq!(r.resolve(ip("10.1.1.1"), &h).source, Source::Header);
        assert_eq!(r.resolve(ip("8.8.8.8"), &h).region, "us-east");
        assert_eq!(r.resolve(ip("8.8.8.8"), &h).source, Source::Default);
        // A region we do not know is ignored, not trusted blindly.
        let h = headers(&[("x-client-region", "mars")]);
        assert_eq!(r.resolve(ip("10.1.1.1"), &h).region, "us-east");
    }

    #[test]
    fn cidr_table_longest_prefix_and_forwarded_for() {
        let r = resolver();
        let none = HeaderMap::new();
        assert_eq!(r.resolve(ip("192.0.2.9"), &none).region, "eu-west");
        assert_eq!(r.resolve(ip("192.9.9.9"), &none).region, "ap-southeast");
        // Behind a trusted proxy, the forwarded client address is used...
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 192.0.2.5, 10.0.0.2")]);
        let got = r.resolve(ip("10.0.0.1"), &h);
        assert_eq!((got.region.as_str(), got.source), ("eu-west", Source::Cidr));
        // ...but an untrusted peer's X-Forwarded-For is ignored.
        assert_eq!(r.resolve(ip("8.8.8.8"), &h).region, "us-east");
    }
}
