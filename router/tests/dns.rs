//! Region endpoints found by DNS name through the configured nameserver: a changed record moves
//! traffic within its TTL, even though the old address's keep-alive connection is still open.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::net::{TcpListener, UdpSocket};

/// A tiny authoritative DNS server over UDP: A records from a table the test can change.
#[derive(Clone)]
struct FakeDns {
    addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, (Ipv4Addr, u32)>>>,
}

impl FakeDns {
    async fn start() -> FakeDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dns = FakeDns {
            addr: socket.local_addr().unwrap(),
            records: Arc::default(),
        };
        let records = dns.records.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let reply = answer(&buf[..n], &records.lock().unwrap());
                if let Some(answer) = reply {
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        dns
    }

    fn set(&self, name: &str, ip: Ipv4Addr, ttl: u32) {
        self.records
            .lock()
            .unwrap()
            .insert(name.to_owned(), (ip, ttl));
    }
}

/// The answer to one query: its header and question echoed, plus an A record if we have one.
fn answer(query: &[u8], records: &HashMap<String, (Ipv4Addr, u32)>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    while *query.get(i)? != 0 {
        let len = usize::from(query[i]);
        labels.push(String::from_utf8_lossy(query.get(i + 1..i + 1 + len)?).to_lowercase());
        i += 1 + len;
    }
    let question_end = i + 5;
    let qtype = u16::from_be_bytes([*query.get(i + 1)?, *query.get(i + 2)?]);
    let record = records.get(&labels.join("."));
    let answer = record.filter(|_| qtype == 1);
    let mut out = Vec::new();
    out.extend_from_slice(&query[0..2]);
    out.push(0x84 | (query[2] & 0x01)); // response, authoritative, recursion desired as asked
    out.push(if record.is_some() { 0x80 } else { 0x83 }); // recursion available; NXDOMAIN
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    if let Some((ip, ttl)) = answer {
        out.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

/// Two fake routers on the same port, at 127.0.0.1 and 127.0.0.2 (the DNS record's old and
/// new address).
async fn twin_routers() -> (Fake, Fake, u16) {
    for _ in 0..20 {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        if let Ok(second) = TcpListener::bind(("127.0.0.2", port)).await {
            let old = Fake::serve(first, FakeOptions::new("eu-west/old-node"));
            let new = Fake::serve(second, FakeOptions::new("eu-west/new-node"));
            return (old, new, port);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_record_moves_writes_within_its_ttl() {
    let dns = FakeDns::start().await;
    let name = "router.eu-west.ticketing.test";
    dns.set(name, Ipv4Addr::new(127, 0, 0, 1), 1);
    let (old, new, port) = twin_routers().await;
    let fakes = Fakes::start().await;
    let mut config = fakes.config();
    config.dns.nameserver = Some(dns.addr);
    config.regions[1].router = format!("http://{name}:{port}");
    let router = RouterUnderTest::start(config).await;
    let client = client();
    let write = || {
        client
            .post(router.url("/api/v1/booking/reserve"))
            .json(&json!({"eventId": id_in(2).to_string()}))
            .send()
    };

    for _ in 0..3 {
        let response = write().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-served-by").unwrap(),
            "eu-west/old-node"
        );
    }
    let seen = old.api_writes();
    assert_eq!(seen.len(), 3);
    // The name, not the address, is what the peer sees as Host.
    assert_eq!(seen[0].header("host").unwrap(), format!("{name}:{port}"));
    assert_eq!(old.connections(), 1);

    // Fail over by DNS. The old connection stays open, but traffic must move within the TTL.
    dns.set(name, Ipv4Addr::new(127, 0, 0, 2), 1);
    let changed = Instant::now();
    let mut moved_after = None;
    for _ in 0..40 {
        let response = write().await.unwrap();
        assert_eq!(response.status(), 200);
        if header(&response, "x-served-by").unwrap() == "eu-west/new-node" {
            moved_after = Some(changed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved_after = moved_after.expect("writes never moved to the new address");
    assert!(
        moved_after < Duration::from_millis(2_500),
        "{moved_after:?}"
    );
    let before = old.api_writes().len();
    for _ in 0..3 {
        let response = write().await.unwrap();
        assert_eq!(
            header(&response, "x-served-by").unwrap(),
            "eu-west/new-node"
        );
    }
    assert_eq!(
        old.api_writes().len(),
        before,
        "nothing more to the old address"
    );
    assert_eq!(new.api_writes().len(), 4);
    assert_eq!(new.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_name_is_unreachable_not_a_crash() {
    let dns = FakeDns::start().await;
    let fakes = Fakes::start().await;
    let mut config = fakes.config();
    config.dns.nameserver = Some(dns.addr);
    config.regions[2].router = "http://router.ap-southeast.ticketing.test:8083".into();
    let router = RouterUnderTest::start(config).await;
    let started = Instant::now();
    let response = client()
        .post(router.url("/api/v1/booking/reserve"))
        .json(&json!({"eventId": id_in(3).to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(2));
    let body = json_of(response).await;
    assert_eq!(body["error"]["code"], "home_region_unreachable");
    // Why (the name did not resolve) is in the router's log; the client is told the region
    // and never the internal name or address.
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("ap-southeast"), "{body}");
    assert!(!message.contains("ticketing.test"), "{body}");
    assert!(fakes.all_api_writes().is_empty());
}
