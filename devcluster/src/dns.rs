//! A loopback DNS server for the region endpoint names, and the resolver that asks it.
//!
//! Routers and nodes find each other only through DNS names (DESIGN.md section 1), re-resolved
//! as their TTL runs out, so that failover by DNS works the same locally, in compose and in a
//! cloud. [`DnsServer`] is the local stand-in for GeoDNS: an authoritative server for one zone
//! (e.g. `ticketing.test.`) whose A records live in memory and can change at run time; changing
//! a record redirects traffic once resolvers' cached answers expire. [`resolver_for`] builds the
//! resolver that asks only such a server and honours its TTLs.
//!
//! The resolver construction belongs to every service that dials a region endpoint (router,
//! region-node); it lives here until it moves to a crate they share.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::iter;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::{ensure, Context};
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, LowerQuery, Metadata, OpCode};
use hickory_server::proto::op::{MessageType, ResponseCode};
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

/// How often `start` retries when the UDP port it was given (port 0) is taken for TCP.
const BIND_ATTEMPTS: usize = 20;
/// A TCP client that sends nothing for this long is dropped, so idle resolvers cannot pile up
/// connections; hickory's resolver reconnects on its own.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection (hickory's own tests use the same figure).
const TCP_RESPONSE_BUFFER: usize = 32;
/// Upper bound on how long a resolver keeps a positive answer, whatever TTL the server sends:
/// a record set with a long TTL must still not pin traffic to a dead endpoint for long.
pub const RESOLVER_POSITIVE_MAX_TTL: Duration = Duration::from_secs(30);
/// Upper bound on how long a resolver remembers that a name does not exist: endpoints are
/// registered while the cluster starts, and a name looked up a moment too early must appear
/// soon after.
pub const RESOLVER_NEGATIVE_MAX_TTL: Duration = Duration::from_secs(1);
/// Per-query timeout of [`resolver_for`]; the server is on loopback, so a reply that takes this
/// long is lost, and the retry should come sooner than hickory's default 5 s.
const RESOLVER_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest TTL DNS allows (RFC 2181 section 8).
const MAX_TTL_SECS: u32 = i32::MAX as u32;

/// How many queries the server has answered, by transport (lets tests prove which transport a
/// resolver used and whether it answered from its cache).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryCounts {
    /// Queries received over UDP.
    pub udp: u64,
    /// Queries received over TCP.
    pub tcp: u64,
}

/// An authoritative DNS server for one zone, answering UDP and TCP on the same loopback port
/// from an in-memory table of A records.
///
/// Answers: A for names in the table; NOERROR with no data (and the zone's SOA, so resolvers
/// cache the absence briefly) for other types of existing names; NXDOMAIN for unknown names in
/// the zone; REFUSED for names outside it. Dropping the server stops it; [`DnsServer::shutdown`]
/// also waits until its sockets are closed.
pub struct DnsServer {
    zone: Arc<Zone>,
    local_addr: SocketAddr,
    server: Option<Server<ZoneRequestHandler>>,
}

impl DnsServer {
    /// Starts serving `zone` (e.g. `"ticketing.test."`; the final dot is optional) on `listen`,
    /// UDP and TCP on one port, with `ttl` on every answer.
    ///
    /// With port 0 the UDP socket is bound first to pick the port, then TCP on the same port;
    /// if another program holds that TCP port, both are retried on a fresh port. Must be called
    /// inside a Tokio runtime: the server runs as tasks on it.
    pub async fn start(listen: SocketAddr, zone: &str, ttl: Duration) -> anyhow::Result<DnsServer> {
        let origin = parse_zone(zone)?;
        let (udp, tcp) = bind_udp_and_tcp(listen).await?;
        let local_addr = udp
            .local_addr()
            .context("reading the DNS server's UDP address")?;
        let zone = Arc::new(Zone::new(origin, ttl));
        let mut server = Server::new(ZoneRequestHandler(zone.clone()));
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        tracing::debug!(%local_addr, zone = %zone.origin_name, "DNS server started");
        Ok(DnsServer {
            zone,
            local_addr,
            server: Some(server),
        })
    }

    /// The address (UDP and TCP) the server answers on; give it to [`resolver_for`].
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The zone's name, absolute (with the final dot).
    pub fn zone(&self) -> String {
        self.zone.origin_name.to_string()
    }

    /// The absolute name that `name` stands for in this zone, as resolvers should ask for it:
    /// `"node.us-east"` gives `"node.us-east.ticketing.test."`. Same rules as [`DnsServer::set`].
    pub fn fqdn(&self, name: &str) -> anyhow::Result<String> {
        Ok(self.zone.qualify(name)?.to_string())
    }

    /// Points `name` at `addr`, replacing any earlier address. Resolvers see the change once
    /// the answer they cached runs out (at most the TTL).
    ///
    /// `name` is relative to the zone (`"node.us-east"`) unless it ends with a dot or with the
    /// zone's name (`"node.us-east.ticketing.test"`); a name outside the zone is an error.
    pub fn set(&self, name: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
        let name = self.zone.qualify(name)?;
        self.zone.records_write().insert(name, addr);
        self.zone.serial.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes `name` (same rules as [`DnsServer::set`]), so that it answers NXDOMAIN; returns
    /// the address it had.
    pub fn remove(&self, name: &str) -> anyhow::Result<Option<Ipv4Addr>> {
        let name = self.zone.qualify(name)?;
        let old = self.zone.records_write().remove(&name);
        if old.is_some() {
            self.zone.serial.fetch_add(1, Ordering::Relaxed);
        }
        Ok(old)
    }

    /// Sets the TTL of every answer from now on. DNS TTLs are whole seconds: fractions are
    /// dropped, so a resolver never caches an answer longer than asked.
    pub fn set_ttl(&self, ttl: Duration) {
        self.zone.ttl.store(ttl_secs(ttl), Ordering::Relaxed);
    }

    /// The TTL currently sent with answers.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.zone.ttl.load(Ordering::Relaxed)))
    }

    /// How many queries have been answered so far, by transport.
    pub fn query_counts(&self) -> QueryCounts {
        QueryCounts {
            udp: self.zone.udp_queries.load(Ordering::Relaxed),
            tcp: self.zone.tcp_queries.load(Ordering::Relaxed),
        }
    }

    /// Stops the server and waits until its UDP socket and TCP listener are closed, so the port
    /// is free again when this returns. Open TCP connections are dropped.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(mut server) = self.server.take() {
            server
                .shutdown_gracefully()
                .await
                .context("DNS server stopped with an error")?;
        }
        Ok(())
    }
}

impl Drop for DnsServer {
    /// Stops the server without waiting: the tasks are cancelled and aborted, and the runtime
    /// closes the sockets shortly after. Use [`DnsServer::shutdown`] to wait for that.
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown_token().cancel();
            drop(server);
        }
    }
}

impl fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsServer")
            .field("zone", &self.zone.origin_name)
            .field("local_addr", &self.local_addr)
            .field("running", &self.server.is_some())
            .finish()
    }
}

/// A resolver that asks only `nameserver` (UDP, falling back to TCP for truncated answers) and
/// nothing from the system: no `/etc/resolv.conf`, no hosts file, no search domains.
///
/// Its cache honours the server's TTLs (minimum 0, so a TTL of 0 means "ask every time"),
/// capped at [`RESOLVER_POSITIVE_MAX_TTL`] for answers and [`RESOLVER_NEGATIVE_MAX_TTL`] for
/// NXDOMAIN and no-data answers. `lookup_ip` asks for A records only, since the endpoints are
/// IPv4. Must be used inside a Tokio runtime. Ask for absolute names
/// (`"node.us-east.ticketing.test."`): see [`DnsServer::fqdn`].
pub fn resolver_for(nameserver: SocketAddr) -> anyhow::Result<TokioResolver> {
    build_resolver(
        nameserver,
        vec![ConnectionConfig::udp(), ConnectionConfig::tcp()],
    )
}

/// Like [`resolver_for`], but over TCP only (for networks that drop UDP, and to test TCP).
pub fn resolver_for_tcp(nameserver: SocketAddr) -> anyhow::Result<TokioResolver> {
    build_resolver(nameserver, vec![ConnectionConfig::tcp()])
}

fn build_resolver(
    nameserver: SocketAddr,
    mut connections: Vec<ConnectionConfig>,
) -> anyhow::Result<TokioResolver> {
    for connection in &mut connections {
        connection.port = nameserver.port();
    }
    let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
        nameserver.ip(),
        true,
        connections,
    )]);
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    let opts = builder.options_mut();
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ip_strategy = LookupIpStrategy::Ipv4Only;
    opts.positive_min_ttl = Some(Duration::ZERO);
    opts.positive_max_ttl = Some(RESOLVER_POSITIVE_MAX_TTL);
    opts.negative_min_ttl = Some(Duration::ZERO);
    opts.negative_max_ttl = Some(RESOLVER_NEGATIVE_MAX_TTL);
    opts.timeout = RESOLVER_TIMEOUT;
    opts.attempts = 2;
    opts.cache_size = 1_024;
    // One server: nothing to race against.
    opts.num_concurrent_reqs = 1;
    builder
        .build()
        .with_context(|| format!("building a DNS resolver for {nameserver}"))
}

/// Parses the zone's name, made absolute; the root zone is refused, since the server would
/// then claim authority over every name.
fn parse_zone(zone: &str) -> anyhow::Result<Name> {
    let mut origin =
        Name::from_ascii(zone.trim()).with_context(|| format!("bad DNS zone name {zone:?}"))?;
    origin.set_fqdn(true);
    ensure!(!origin.is_root(), "the DNS zone must not be the root zone");
    Ok(origin)
}

/// Binds UDP and TCP on one port; see [`DnsServer::start`].
async fn bind_udp_and_tcp(listen: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    if listen.port() != 0 {
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding DNS UDP socket on {listen}"))?;
        let tcp = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding DNS TCP listener on {listen}"))?;
        return Ok((udp, tcp));
    }
    let mut attempt = 1;
    loop {
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding DNS UDP socket on {listen}"))?;
        let addr = udp
            .local_addr()
            .context("reading the DNS server's UDP address")?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse && attempt < BIND_ATTEMPTS => {
                tracing::debug!(%addr, "TCP port taken, trying another port for DNS");
                attempt += 1;
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("binding DNS TCP listener on {addr} (attempt {attempt})")
                })
            }
        }
    }
}

/// DNS TTLs are whole seconds, at most 2^31 - 1.
fn ttl_secs(ttl: Duration) -> u32 {
    u32::try_from(ttl.as_secs()).map_or(MAX_TTL_SECS, |secs| secs.min(MAX_TTL_SECS))
}

/// The zone's state, shared by the [`DnsServer`] handle and the request handler.
struct Zone {
    origin: LowerName,
    origin_name: Name,
    records: RwLock<HashMap<LowerName, Ipv4Addr>>,
    ttl: AtomicU32,
    /// SOA serial, bumped on every change (nothing transfers the zone; it is there so the SOA
    /// is truthful).
    serial: AtomicU32,
    udp_queries: AtomicU64,
    tcp_queries: AtomicU64,
}

/// What the zone says about one query.
struct Answer {
    code: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
}

impl Zone {
    fn new(origin_name: Name, ttl: Duration) -> Zone {
        Zone {
            origin: LowerName::from(&origin_name),
            origin_name,
            records: RwLock::new(HashMap::new()),
            ttl: AtomicU32::new(ttl_secs(ttl)),
            serial: AtomicU32::new(1),
            udp_queries: AtomicU64::new(0),
            tcp_queries: AtomicU64::new(0),
        }
    }

    /// The table is only ever replaced entry by entry, so a panic elsewhere cannot leave it
    /// half-written: a poisoned lock is still safe to use.
    fn records_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<LowerName, Ipv4Addr>> {
        self.records.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn records_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<LowerName, Ipv4Addr>> {
        self.records.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`DnsServer::set`] for the rules.
    fn qualify(&self, name: &str) -> anyhow::Result<LowerName> {
        let trimmed = name.trim();
        ensure!(!trimmed.is_empty(), "empty DNS name");
        let parsed = Name::from_ascii(trimmed).with_context(|| format!("bad DNS name {name:?}"))?;
        let absolute = if parsed.is_fqdn() {
            parsed
        } else {
            let mut as_absolute = parsed.clone();
            as_absolute.set_fqdn(true);
            if self.origin_name.zone_of(&as_absolute) {
                as_absolute
            } else {
                parsed
                    .append_domain(&self.origin_name)
                    .with_context(|| format!("DNS name {name:?} is too long"))?
            }
        };
        let absolute = LowerName::from(absolute);
        ensure!(
            self.origin.zone_of(&absolute),
            "DNS name {name:?} is outside zone {}",
            self.origin_name
        );
        Ok(absolute)
    }

    fn soa(&self, ttl: u32) -> Record {
        let prefixed = |label: &str| {
            self.origin_name
                .prepend_label(label)
                .unwrap_or_else(|_| self.origin_name.clone())
        };
        let soa = SOA::new(
            prefixed("ns"),
            prefixed("hostmaster"),
            self.serial.load(Ordering::Relaxed),
            3_600,
            600,
            86_400,
            // Negative answers are cached for min(SOA TTL, minimum) (RFC 2308): the same TTL
            // as positive ones.
            ttl,
        );
        Record::from_rdata(self.origin_name.clone(), ttl, RData::SOA(soa))
    }

    fn answer(&self, query: &LowerQuery) -> Answer {
        let refused = || Answer {
            code: ResponseCode::Refused,
            answers: Vec::new(),
            authorities: Vec::new(),
        };
        let name = query.name();
        if query.query_class() != DNSClass::IN || !self.origin.zone_of(name) {
            return refused();
        }
        let query_type = query.query_type();
        if matches!(query_type, RecordType::AXFR | RecordType::IXFR) {
            return refused();
        }
        let ttl = self.ttl.load(Ordering::Relaxed);
        let (addr, exists) = {
            let records = self.records_read();
            let addr = records.get(name).copied();
            // A name with names below it exists even without records of its own (an "empty
            // non-terminal", RFC 8020): `us-east.ticketing.test.` when `node.us-east` is set.
            let exists =
                addr.is_some() || *name == self.origin || records.keys().any(|k| name.zone_of(k));
            (addr, exists)
        };
        // Answer with the name as asked (case preserved), as resolvers may check it.
        let owner = query.original().name().clone();
        match (query_type, addr) {
            (RecordType::A | RecordType::ANY, Some(addr)) => Answer {
                code: ResponseCode::NoError,
                answers: vec![Record::from_rdata(owner, ttl, RData::A(A(addr)))],
                authorities: Vec::new(),
            },
            (RecordType::SOA, _) if *name == self.origin => Answer {
                code: ResponseCode::NoError,
                answers: vec![self.soa(ttl)],
                authorities: Vec::new(),
            },
            _ => Answer {
                code: if exists {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                },
                answers: Vec::new(),
                authorities: vec![self.soa(ttl)],
            },
        }
    }
}

/// Adapts [`Zone`] to hickory's server.
struct ZoneRequestHandler(Arc<Zone>);

impl ZoneRequestHandler {
    async fn respond<R: ResponseHandler>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        let zone = &self.0;
        match request.protocol() {
            Protocol::Tcp => zone.tcp_queries.fetch_add(1, Ordering::Relaxed),
            _ => zone.udp_queries.fetch_add(1, Ordering::Relaxed),
        };

        let mut response_edns = None;
        if let Some(request_edns) = &request.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(request_edns.max_payload().max(512));
            edns.set_version(0);
            if request_edns.version() > 0 {
                edns.set_rcode_high(ResponseCode::BADVERS.high());
                return send(
                    request,
                    &mut handle,
                    Some(&edns),
                    error(ResponseCode::BADVERS),
                )
                .await;
            }
            response_edns = Some(edns);
        }
        let edns = response_edns.as_ref();

        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            return send(request, &mut handle, edns, error(ResponseCode::NotImp)).await;
        }
        let answer = match request.request_info() {
            Ok(info) => zone.answer(info.query),
            // Not exactly one question.
            Err(_) => error(ResponseCode::FormErr),
        };
        send(request, &mut handle, edns, answer).await
    }
}

fn error(code: ResponseCode) -> Answer {
    Answer {
        code,
        answers: Vec::new(),
        authorities: Vec::new(),
    }
}

async fn send<R: ResponseHandler>(
    request: &Request,
    handle: &mut R,
    edns: Option<&Edns>,
    answer: Answer,
) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = answer.code;
    // Authoritative for what the zone said; not for refusals and malformed requests.
    metadata.authoritative = matches!(answer.code, ResponseCode::NoError | ResponseCode::NXDomain);
    metadata.recursion_available = false;
    let response = MessageResponseBuilder::new(&request.queries, edns).build(
        metadata,
        answer.answers.iter(),
        answer.authorities.iter(),
        iter::empty(),
        iter::empty(),
    );
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(%error, src = %request.src(), "sending a DNS response failed");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

// `RequestHandler` is an `async_trait` trait; this is the signature the macro would write, so
// the crate needs no dependency on `async-trait` itself.
impl RequestHandler for ZoneRequestHandler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.respond(request, response_handle))
    }
}
