//! Finding region endpoints by DNS name.
//!
//! Region URLs in the configuration may use hostnames, so failover by DNS works the same
//! locally, in compose and in a cloud (DESIGN section 1). Names are resolved with hickory
//! against the configured nameserver, and answers are reused exactly as long as their TTL says.
//!
//! Keep-alive pools and DNS pull in opposite directions: a pooled connection to the old address
//! would keep carrying traffic long after the record changed, since a busy connection never
//! idles out. So the forwarder *pins* each request to a resolved address ([`Discovery::pin`]):
//! the URI names the IP (the `Host` header keeps the name), which keys the client's pool by
//! address. Once the TTL has run out and the name resolves elsewhere, new requests use (and
//! pool) connections to the new address at once; the old ones just idle out. `Discovery` is
//! also the resolver of the client's connector (a `tower` service of names), so a URI that
//! reaches it with a name still asks the configured nameserver: nothing bypasses it.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{HeaderValue, Uri};
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use hyper_util::client::legacy::connect::dns::Name;
use url::{Host, Url};

use crate::config::DnsConfig;

/// After a failed lookup, a stale answer is reused for this long before asking again, so a dead
/// nameserver costs one lookup timeout per name, not one per request.
const STALE_GRACE: Duration = Duration::from_secs(5);
/// How long "no such name" is believed: endpoints register while a cluster starts, and a name
/// looked up a moment too early must work soon after.
const NEGATIVE_MAX_TTL: Duration = Duration::from_secs(1);

/// Resolves region hostnames, honouring TTLs. Cheap to clone.
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: no nameserver configured; the system resolver answers.
    resolver: Option<TokioResolver>,
    timeout: Duration,
    system_cache: Duration,
    cache: RwLock<HashMap<String, Entry>>,
}

#[derive(Clone)]
struct Entry {
    addrs: Arc<[IpAddr]>,
    valid_until: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("DNS lookup of {host} failed: {error}")]
    Lookup { host: String, error: String },
    #[error("DNS lookup of {0} timed out")]
    Timeout(String),
    #[error("{0} has no address")]
    NoAddress(String),
}

/// A request URI pinned to one address of its host.
#[derive(Clone, Debug)]
pub struct Pinned {
    pub uri: Uri,
    /// The original `host[:port]`, for the `Host` header; `None` when the URL already named an
    /// address.
    pub host: Option<HeaderValue>,
}

impl Discovery {
    /// A resolver asking `config.nameserver` (UDP, then TCP), or the system's when unset.
    pub fn new(config: &DnsConfig) -> anyhow::Result<Discovery> {
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let resolver = match config.nameserver {
            None => None,
            Some(nameserver) => Some(hickory(
                nameserver,
                timeout,
                Duration::from_secs(config.max_ttl_secs),
            )?),
        };
        Ok(Discovery {
            inner: Arc::new(Inner {
                resolver,
                timeout,
                system_cache: Duration::from_millis(config.system_cache_ms),
                cache: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// The addresses of `host`, from cache while its TTL lasts. When a lookup fails, the last
    /// answer (if any) is used a while longer: a nameserver outage should not take the regions
    /// down with it.
    pub async fn lookup(&self, host: &str) -> Result<Arc<[IpAddr]>, DiscoveryError> {
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
            return Ok(Arc::from([ip]));
        }
        let now = Instant::now();
        let cached = self.cached(host);
        if let Some(entry) = &cached {
            if entry.valid_until > now {
                return Ok(entry.addrs.clone());
            }
        }
        // Boxed: the resolver's future is large, and without the box every request's future
        // would carry its room (and have it allocated and copied) to use it once per TTL.
        let fresh = Box::pin(tokio::time::timeout(self.inner.timeout, self.fresh(host)));
        let fresh = match fresh.await {
            Ok(result) => result,
            Err(_) => Err(DiscoveryError::Timeout(host.to_owned())),
        };
        let entry = match (fresh, cached) {
            (Ok(entry), _) => entry,
            (Err(error), Some(stale)) => {
                tracing::warn!(%host, %error, "DNS lookup failed; reusing the last answer");
                Entry {
                    addrs: stale.addrs,
                    valid_until: now + STALE_GRACE,
                }
            }
            (Err(error), None) => return Err(error),
        };
        self.inner
            .cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_owned(), entry.clone());
        Ok(entry.addrs)
    }

    fn cached(&self, host: &str) -> Option<Entry> {
        let cache = self.inner.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.get(host).cloned()
    }

    async fn fresh(&self, host: &str) -> Result<Entry, DiscoveryError> {
        let lookup_error = |error: String| DiscoveryError::Lookup {
            host: host.to_owned(),
            error,
        };
        let (addrs, valid_until): (Vec<IpAddr>, Instant) = match &self.inner.resolver {
            Some(resolver) => {
                // Absolute, so it is one query, never a search-domain walk.
                let fqdn = if host.ends_with('.') {
                    host.to_owned()
                } else {
                    format!("{host}.")
                };
                let answer = resolver
                    .lookup_ip(fqdn.as_str())
                    .await
                    .map_err(|e| lookup_error(e.to_string()))?;
                (answer.iter().collect(), answer.valid_until())
            }
            None => {
                let addrs = tokio::net::lookup_host((host, 0))
                    .await
                    .map_err(|e| lookup_error(e.to_string()))?;
                let addrs = addrs.map(|a| a.ip()).collect();
                (addrs, Instant::now() + self.inner.system_cache)
            }
        };
        if addrs.is_empty() {
            return Err(DiscoveryError::NoAddress(host.to_owned()));
        }
        Ok(Entry {
            addrs: addrs.into(),
            valid_until,
        })
    }

    /// `base` joined with `path_and_query`, with its host replaced by one of its current
    /// addresses, so the connection pool is keyed by address (see the module docs). The path
    /// and query go upstream exactly as the client sent them.
    pub async fn pin(
        &self,
        base: &Url,
        path_and_query: PathAndQuery,
    ) -> Result<Pinned, DiscoveryError> {
        let (ip, host) = match base.host() {
            Some(Host::Ipv4(ip)) => (IpAddr::V4(ip), None),
            Some(Host::Ipv6(ip)) => (IpAddr::V6(ip), None),
            Some(Host::Domain(name)) => {
                let addrs = self.lookup(name).await?;
                let authority = match base.port() {
                    Some(port) => format!("{name}:{port}"),
                    None => name.to_owned(),
                };
                (addrs[0], HeaderValue::from_str(&authority).ok())
            }
            None => return Err(DiscoveryError::NoAddress(base.to_string())),
        };
        let port = base.port_or_known_default().unwrap_or(80);
        let address = SocketAddr::new(ip, port).to_string();
        let mut parts = axum::http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        // An address and a port always make an authority, and with a scheme and a path a URI.
        parts.authority = Authority::from_maybe_shared(Bytes::from(address)).ok();
        parts.path_and_query = Some(path_and_query);
        let uri =
            Uri::from_parts(parts).map_err(|_| DiscoveryError::NoAddress(base.to_string()))?;
        Ok(Pinned { uri, host })
    }
}

/// A hickory resolver asking only `nameserver` (no hosts file, no search domains). TTLs are
/// honoured as sent (a TTL of 0 means ask every time), capped at `max_ttl` so a long TTL cannot
/// pin traffic to a dead endpoint. One attempt per lookup and A records first (AAAA only if
/// there is no A): region names are looked up often and must answer fast.
fn hickory(
    nameserver: SocketAddr,
    timeout: Duration,
    max_ttl: Duration,
) -> anyhow::Result<TokioResolver> {
    let mut udp = ConnectionConfig::udp();
    udp.port = nameserver.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = nameserver.port();
    let server = NameServerConfig::new(nameserver.ip(), true, vec![udp, tcp]);
    let mut builder = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![server]),
        TokioRuntimeProvider::default(),
    );
    let options = builder.options_mut();
    options.timeout = timeout;
    options.attempts = 1;
    options.num_concurrent_reqs = 1;
    options.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    options.use_hosts_file = ResolveHosts::Never;
    options.positive_min_ttl = Some(Duration::ZERO);
    options.positive_max_ttl = Some(max_ttl);
    options.negative_min_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(NEGATIVE_MAX_TTL);
    Ok(builder.build()?)
}

/// The resolver of the client's connector. `pin` puts an address in every URI, which the
/// connector uses as it is; a name that reaches it anyway is looked up here, never elsewhere.
impl tower_service::Service<Name> for Discovery {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = DiscoveryError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DiscoveryError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DiscoveryError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let discovery = self.clone();
        Box::pin(async move {
            let addrs = discovery.lookup(name.as_str()).await?;
            // Port 0: the connector puts in the URI's port.
            let addrs: Vec<SocketAddr> = addrs.iter().map(|ip| SocketAddr::new(*ip, 0)).collect();
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_are_pinned_as_they_are() {
        let d = Discovery::new(&DnsConfig::default()).unwrap();
        let base = Url::parse("http://127.0.0.1:9081").unwrap();
        let path = PathAndQuery::from_static("/api/v1/events?limit=5");
        let pinned = d.pin(&base, path).await.unwrap();
        assert_eq!(
            pinned.uri.to_string(),
            "http://127.0.0.1:9081/api/v1/events?limit=5"
        );
        assert!(pinned.host.is_none());
        let v6 = Url::parse("http://[::1]:9081").unwrap();
        let pinned = d.pin(&v6, PathAndQuery::from_static("/x")).await.unwrap();
        assert_eq!(pinned.uri.to_string(), "http://[::1]:9081/x");
    }

    #[tokio::test]
    async fn system_names_are_pinned_to_an_address_with_the_name_as_host() {
        let d = Discovery::new(&DnsConfig::default()).unwrap();
        let base = Url::parse("http://localhost:9081").unwrap();
        let pinned = d
            .pin(&base, PathAndQuery::from_static("/healthz"))
            .await
            .unwrap();
        let host = pinned.uri.host().unwrap();
        assert!(host.parse::<IpAddr>().is_ok(), "{}", pinned.uri);
        assert_eq!(pinned.uri.port_u16(), Some(9081));
        assert_eq!(pinned.host.unwrap(), "localhost:9081");
    }
}
