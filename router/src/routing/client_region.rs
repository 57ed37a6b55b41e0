//! Working out which region a client is in, and its address (what rate limits count by).
//!
//! GeoDNS already sent the client to the nearest router, so the default is the router's own
//! region. A proxy in front of the router (a CDN edge, a load balancer) may know better and say
//! so in `X-Client-Region`, but only proxies we trust may: anyone else could name any region.
//! An optional CIDR table maps client addresses to regions (e.g. corporate ranges).

use std::net::IpAddr;

use axum::http::HeaderMap;

use crate::cidr::Cidr;
use crate::headers::{X_CLIENT_REGION, X_FORWARDED_FOR};

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

/// The decision, naming a region of the router's own table (borrowed: deciding allocates
/// nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRegion<'a> {
    pub region: &'a str,
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
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> ClientRegion<'_> {
        let trusted = self.is_trusted(peer);
        if trusted {
            let named = headers
                .get(X_CLIENT_REGION)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .and_then(|name| self.known.iter().find(|k| k.as_str() == name));
            if let Some(region) = named {
                return ClientRegion {
                    region,
                    source: Source::Header,
                };
            }
        }
        let client = self.client_address(peer, headers);
        if let Some((_, region)) = self.table.iter().find(|(c, _)| c.contains(client)) {
            return ClientRegion {
                region,
                source: Source::Cidr,
            };
        }
        ClientRegion {
            region: &self.own,
            source: Source::Default,
        }
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy (then the address
    /// it forwarded for). An untrusted peer's `X-Forwarded-For` changes nothing.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.is_trusted(peer) {
            self.forwarded_client(peer, headers)
        } else {
            peer
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
    use axum::http::{HeaderName, HeaderValue};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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

    fn header(name: HeaderName, value: &'static str) -> HeaderMap {
        HeaderMap::from_iter([(name, HeaderValue::from_static(value))])
    }

    #[test]
    fn header_only_from_trusted_proxies() {
        let r = resolver();
        let h = header(X_CLIENT_REGION, "eu-west");
        assert_eq!(r.resolve(ip("10.1.1.1"), &h).region, "eu-west");
        assert_eq!(r.resolve(ip("10.1.1.1"), &h).source, Source::Header);
        assert_eq!(r.resolve(ip("8.8.8.8"), &h).region, "us-east");
        assert_eq!(r.resolve(ip("8.8.8.8"), &h).source, Source::Default);
        // A region we do not know is ignored, not trusted blindly.
        let h = header(X_CLIENT_REGION, "mars");
        assert_eq!(r.resolve(ip("10.1.1.1"), &h).region, "us-east");
    }

    #[test]
    fn cidr_table_longest_prefix_and_forwarded_for() {
        let r = resolver();
        let none = HeaderMap::new();
        assert_eq!(r.resolve(ip("192.0.2.9"), &none).region, "eu-west");
        assert_eq!(r.resolve(ip("192.9.9.9"), &none).region, "ap-southeast");
        // Behind a trusted proxy, the forwarded client address is used...
        let h = header(X_FORWARDED_FOR, "1.1.1.1, 192.0.2.5, 10.0.0.2");
        let got = r.resolve(ip("10.0.0.1"), &h);
        assert_eq!((got.region, got.source), ("eu-west", Source::Cidr));
        // ...but an untrusted peer's X-Forwarded-For is ignored.
        assert_eq!(r.resolve(ip("8.8.8.8"), &h).region, "us-east");
    }
}
