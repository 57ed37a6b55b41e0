//! The loopback DNS server and the resolver that asks it: names resolve, unknown names are a
//! clean NXDOMAIN, a changed record is seen once the TTL has passed (and no stale answer after
//! that), TCP works, and shutdown frees the port. Loopback only; every test is bounded in time.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use devcluster::dns::{resolver_for, resolver_for_tcp, DnsServer};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::TokioResolver;

const ZONE: &str = "ticketing.test.";
const LOOPBACK: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Fails the test instead of hanging it.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test finished within 30 s")
}

async fn ipv4s(resolver: &TokioResolver, name: &str) -> Result<Vec<IpAddr>, NetError> {
    Ok(resolver.lookup_ip(name).await?.iter().collect())
}

#[tokio::test]
async fn a_name_resolves_to_its_address() {
    bounded(async {
        let dns = DnsServer::start(LOOPBACK, ZONE, Duration::from_secs(5))
            .await
            .unwrap();
        let node = Ipv4Addr::new(127, 0, 0, 11);
        let router = Ipv4Addr::new(127, 0, 0, 12);
        dns.set("node.us-east", node).unwrap();
        dns.set("router.eu-west.ticketing.test.", router).unwrap();
        dns.set(
            "Router.AP-Southeast.ticketing.test",
            Ipv4Addr::new(127, 0, 0, 13),
        )
        .unwrap();
        assert_eq!(
            dns.fqdn("node.us-east").unwrap(),
            "node.us-east.ticketing.test."
        );
        assert!(dns.set("node.example.org.", node).is_err(), "outside zone");

        let resolver = resolver_for(dns.local_addr()).unwrap();
        assert_eq!(
            ipv4s(&resolver, "node.us-east.ticketing.test.")
                .await
                .unwrap(),
            [IpAddr::V4(node)]
        );
        // Absolute without the final dot, and names compare case-insensitively.
        assert_eq!(
            ipv4s(&resolver, "ROUTER.eu-west.ticketing.test")
                .await
                .unwrap(),
            [IpAddr::V4(router)]
        );
        assert_eq!(
            ipv4s(&resolver, "router.ap-southeast.ticketing.test.")
                .await
                .unwrap(),
            [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 13))]
        );
        // The answer carries the server's TTL.
        let lookup = resolver
            .ipv4_lookup("node.us-east.ticketing.test.")
            .await
            .unwrap();
        assert!(lookup.answers().iter().all(|r| r.ttl <= 5 && r.ttl >= 4));
        let counts = dns.query_counts();
        assert!(counts.udp > 0 && counts.tcp == 0, "{counts:?}");
        dns.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn unknown_names_are_nxdomain_and_other_answers_are_clean() {
    bounded(async {
        let dns = DnsServer::start(LOOPBACK, ZONE, Duration::from_secs(5))
            .await
            .unwrap();
        dns.set("node.us-east", Ipv4Addr::new(127, 0, 0, 11))
            .unwrap();
        let resolver = resolver_for(dns.local_addr()).unwrap();

        let error = ipv4s(&resolver, "nobody.us-east.ticketing.test.")
            .await
            .unwrap_err();
        assert!(error.is_nx_domain(), "{error:?}");

        // An existing name without AAAA: NOERROR, no data (not NXDOMAIN).
        let error = resolver
            .ipv6_lookup("node.us-east.ticketing.test.")
            .await
            .unwrap_err();
        assert!(
            error.is_no_records_found() && !error.is_nx_domain(),
            "{error:?}"
        );
        // A name with names below it exists too.
        let error = ipv4s(&resolver, "us-east.ticketing.test.")
            .await
            .unwrap_err();
        assert!(
            error.is_no_records_found() && !error.is_nx_domain(),
            "{error:?}"
        );

        // Another zone: refused, not claimed to be missing.
        let error = ipv4s(&resolver, "example.org.").await.unwrap_err();
        assert!(
            matches!(
                error,
                NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused))
            ),
            "{error:?}"
        );

        // A removed name is NXDOMAIN for a fresh resolver at once.
        assert_eq!(
            dns.remove("node.us-east").unwrap(),
            Some(Ipv4Addr::new(127, 0, 0, 11))
        );
        let fresh = resolver_for(dns.local_addr()).unwrap();
        let error = ipv4s(&fresh, "node.us-east.ticketing.test.")
            .await
            .unwrap_err();
        assert!(error.is_nx_domain(), "{error:?}");
        dns.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn a_changed_record_is_seen_once_the_ttl_has_passed() {
    bounded(async {
        let ttl = Duration::from_secs(1);
        let name = "node.us-east.ticketing.test.";
        let old = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 21));
        let new = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 22));
        let dns = DnsServer::start(LOOPBACK, ZONE, ttl).await.unwrap();
        dns.set("node.us-east", Ipv4Addr::new(127, 0, 0, 21))
            .unwrap();
        let resolver = resolver_for(dns.local_addr()).unwrap();

        assert_eq!(ipv4s(&resolver, name).await.unwrap(), [old]);
        let cached_at = Instant::now();
        let queries = dns.query_counts().udp;

        dns.set("node.us-east", Ipv4Addr::new(127, 0, 0, 22))
            .unwrap();
        let changed_at = Instant::now();

        // Within the TTL the resolver answers from its cache, without asking (only checked
        // when the machine was quick enough for the cache to still be fresh).
        let again = ipv4s(&resolver, name).await.unwrap();
        if cached_at.elapsed() < ttl / 2 {
            assert_eq!(again, [old], "answered from the cache within the TTL");
            assert_eq!(dns.query_counts().udp, queries, "no query within the TTL");
        }

        // Once the TTL has passed, the new address, and never the stale one again.
        let deadline = changed_at + ttl + Duration::from_millis(1_500);
        loop {
            let seen = ipv4s(&resolver, name).await.unwrap();
            if seen == [new] {
                break;
            }
            assert_eq!(seen, [old]);
            assert!(
                Instant::now() < deadline,
                "still the old address {:?} after the change",
                changed_at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..10 {
            assert_eq!(ipv4s(&resolver, name).await.unwrap(), [new]);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }

        // A removed name disappears the same way.
        dns.remove(name).unwrap();
        let removed_at = Instant::now();
        loop {
            match ipv4s(&resolver, name).await {
                Err(error) if error.is_nx_domain() => break,
                Err(error) => panic!("{error:?}"),
                Ok(seen) => assert_eq!(seen, [new]),
            }
            assert!(
                removed_at.elapsed() < ttl + Duration::from_millis(1_500),
                "removed name still resolves"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        dns.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn set_ttl_changes_how_long_answers_are_cached() {
    bounded(async {
        let dns = DnsServer::start(LOOPBACK, ZONE, Duration::from_secs(300))
            .await
            .unwrap();
        dns.set("router.us-east", Ipv4Addr::new(127, 0, 0, 31))
            .unwrap();
        dns.set_ttl(Duration::ZERO);
        assert_eq!(dns.ttl(), Duration::ZERO);
        let resolver = resolver_for(dns.local_addr()).unwrap();
        let before = dns.query_counts().udp;
        for _ in 0..3 {
            ipv4s(&resolver, "router.us-east.ticketing.test.")
                .await
                .unwrap();
        }
        assert_eq!(dns.query_counts().udp - before, 3, "TTL 0 is never cached");
        dns.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn queries_over_tcp_work() {
    bounded(async {
        let dns = DnsServer::start(LOOPBACK, ZONE, Duration::from_secs(5))
            .await
            .unwrap();
        dns.set("node.eu-west", Ipv4Addr::new(127, 0, 0, 41))
            .unwrap();
        let resolver = resolver_for_tcp(dns.local_addr()).unwrap();
        assert_eq!(
            ipv4s(&resolver, "node.eu-west.ticketing.test.")
                .await
                .unwrap(),
            [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 41))]
        );
        let error = ipv4s(&resolver, "nobody.ticketing.test.")
            .await
            .unwrap_err();
        assert!(error.is_nx_domain(), "{error:?}");
        let counts = dns.query_counts();
        assert!(counts.tcp >= 2 && counts.udp == 0, "{counts:?}");
        dns.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn shutdown_frees_the_port() {
    bounded(async {
        let dns = DnsServer::start(LOOPBACK, ZONE, Duration::from_secs(5))
            .await
            .unwrap();
        let addr = dns.local_addr();
        assert_ne!(addr.port(), 0);
        dns.set("node.us-east", Ipv4Addr::new(127, 0, 0, 51))
            .unwrap();
        // Leave a TCP connection open across the shutdown.
        let tcp_resolver = resolver_for_tcp(addr).unwrap();
        ipv4s(&tcp_resolver, "node.us-east.ticketing.test.")
            .await
            .unwrap();

        dns.shutdown().await.unwrap();
        {
            let _udp = std::net::UdpSocket::bind(addr).expect("UDP port free after shutdown");
            let _tcp = tokio::net::TcpListener::bind(addr)
                .await
                .expect("TCP port free after shutdown");
        }

        // The same fixed port serves again.
        let dns = DnsServer::start(addr, ZONE, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(dns.local_addr(), addr);
        dns.set("node.us-east", Ipv4Addr::new(127, 0, 0, 52))
            .unwrap();
        let resolver = resolver_for(addr).unwrap();
        assert_eq!(
            ipv4s(&resolver, "node.us-east.ticketing.test.")
                .await
                .unwrap(),
            [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 52))]
        );

        // Dropping stops it too; the runtime closes the sockets shortly after.
        drop(dns);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let udp = std::net::UdpSocket::bind(addr);
            let tcp = tokio::net::TcpListener::bind(addr).await;
            if udp.is_ok() && tcp.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "port still taken after drop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn bad_zones_and_taken_ports_are_errors() {
    bounded(async {
        assert!(DnsServer::start(LOOPBACK, ".", Duration::from_secs(1))
            .await
            .is_err());
        let dns = DnsServer::start(LOOPBACK, "ticketing.test", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(dns.zone(), "ticketing.test.");
        let taken = DnsServer::start(dns.local_addr(), ZONE, Duration::from_secs(1)).await;
        assert!(taken.is_err(), "a port in use is an error");
        dns.shutdown().await.unwrap();
    })
    .await
}
