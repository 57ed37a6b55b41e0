//! Tests for the simulated WAN link, against small servers on 127.0.0.1.
//!
//! Timing assertions follow DESIGN.md section 8: lower bounds are exact (the link only ever adds
//! delay), upper bounds are wide because the machine is shared.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use devcluster::wan::{
    default_round_trip, one_way, WanLink, WanLinkConfig, WanStats, MAX_ONE_WAY_DELAY,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

/// Upper bound for any single step that should succeed.
const STEP: Duration = Duration::from_secs(5);
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A line server: answers every line `x` with `<tag> x`. Counts its open connections.
struct LineServer {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for LineServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn line_server(tag: &'static str) -> LineServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    let task = tokio::spawn(async move {
        // Owned by this task, so aborting the server ends its connections too.
        let mut conns = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let guard = OpenGuard(counter.clone());
            conns.spawn(async move {
                let _guard = guard;
                let mut stream = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    match stream.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let reply = format!("{tag} {}\n", line.trim_end());
                    if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
            while conns.try_join_next().is_some() {}
        }
    });
    LineServer { addr, open, task }
}

struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = timeout(STEP, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream: BufReader::new(stream),
        }
    }

    async fn send(&mut self, msg: &str) {
        let line = format!("{msg}\n");
        timeout(STEP, self.stream.get_mut().write_all(line.as_bytes()))
            .await
            .expect("write timed out")
            .expect("write");
    }

    /// Reads one reply line; `None` when nothing arrives within `wait`.
    async fn reply_within(&mut self, wait: Duration) -> Option<String> {
        let mut line = String::new();
        let n = timeout(wait, self.stream.read_line(&mut line))
            .await
            .ok()?
            .expect("read");
        assert!(n > 0, "connection closed instead of answering");
        Some(line.trim_end().to_owned())
    }

    async fn ask(&mut self, msg: &str) -> String {
        self.send(msg).await;
        self.reply_within(STEP).await.expect("no reply in time")
    }

    /// Times one request/response exchange.
    async fn timed_ask(&mut self, msg: &str, expect: &str) -> Duration {
        let start = Instant::now();
        let reply = self.ask(msg).await;
        let took = start.elapsed();
        assert_eq!(reply, expect);
        took
    }

    /// Waits for the connection to end (EOF or error) and returns how long that took.
    async fn closed_within(&mut self, wait: Duration) -> Duration {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        let deadline = tokio::time::Instant::now() + wait;
        // Bounded: each read either ends the connection or returns data, within `wait`.
        for _ in 0..1000 {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => panic!("connection still open after {wait:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
                Ok(Ok(_)) => continue,
            }
        }
        panic!("connection kept delivering data");
    }
}

async fn start_link(target: SocketAddr, one_way_delay: Duration) -> WanLink {
    WanLink::start(WanLinkConfig::new("test", target, one_way_delay))
        .await
        .expect("start link")
}

/// Polls `check` every 10 ms for at most `wait`.
async fn eventually(wait: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    for _ in 0..10_000 {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(ms(10)).await;
    }
    false
}

#[test]
fn default_delays_follow_the_design() {
    assert_eq!(default_round_trip("us-east", "eu-west"), Some(ms(76)));
    assert_eq!(default_round_trip("eu-west", "us-east"), Some(ms(76)));
    assert_eq!(default_round_trip("us-east", "ap-southeast"), Some(ms(222)));
    assert_eq!(default_round_trip("ap-southeast", "eu-west"), Some(ms(160)));
    assert_eq!(
        default_round_trip("eu-west", "eu-west"),
        Some(Duration::ZERO)
    );
    assert_eq!(default_round_trip("us-east", "mars"), None);

    assert_eq!(one_way("us-east", "eu-west", 1.0), ms(38));
    assert_eq!(one_way("us-east", "ap-southeast", 1.0), ms(111));
    assert_eq!(one_way("eu-west", "ap-southeast", 0.5), ms(40));
    assert_eq!(one_way("eu-west", "ap-southeast", 0.0), Duration::ZERO);
    assert_eq!(one_way("us-east", "us-east", 1.0), Duration::ZERO);
    // Unknown pairs fall back to a 100 ms round trip.
    assert_eq!(one_way("us-east", "mars", 1.0), ms(50));
    // Nonsense scales give no delay or the cap, never a panic.
    assert_eq!(one_way("us-east", "eu-west", -1.0), Duration::ZERO);
    assert_eq!(one_way("us-east", "eu-west", f64::NAN), Duration::ZERO);
    assert_eq!(
        one_way("us-east", "eu-west", f64::INFINITY),
        MAX_ONE_WAY_DELAY
    );
    assert_eq!(one_way("us-east", "eu-west", 1e300), MAX_ONE_WAY_DELAY);
}

#[tokio::test]
async fn exchange_on_open_connection_costs_one_round_trip() {
    let server = line_server("a").await;
    let link = start_link(server.addr, ms(50)).await;
    let mut client = Client::connect(link.local_addr()).await;
    client.ask("warm up").await;

    let mut samples = Vec::new();
    for i in 0..5 {
        samples.push(
            client
                .timed_ask(&format!("ping {i}"), &format!("a ping {i}"))
                .await,
        );
    }
    for took in &samples {
        assert!(*took >= ms(100), "faster than one round trip: {samples:?}");
    }
    let fastest = samples.iter().min().copied().unwrap_or_default();
    // Two round trips would be >= 200 ms: the open connection is reused without a handshake.
    assert!(fastest < ms(200), "slower than one round trip: {samples:?}");
    let mut sorted = samples.clone();
    sorted.sort();
    assert!(sorted[2] < ms(300), "median too slow: {samples:?}");
    assert_eq!(link.stats().connections, 1);
}

#[tokio::test]
async fn new_connection_costs_an_extra_round_trip() {
    let server = line_server("a").await;
    let link = start_link(server.addr, ms(50)).await;
    for i in 0..2u64 {
        let start = Instant::now();
        let mut client = Client::connect(link.local_addr()).await;
        assert_eq!(client.ask("hello").await, "a hello");
        let took = start.elapsed();
        assert!(took >= ms(200), "handshake not charged: {took:?}");
        assert!(took < ms(1000), "first exchange too slow: {took:?}");
        assert_eq!(link.stats().connections, i + 1);
    }
}

#[tokio::test]
async fn counters_count_bytes_and_connections() {
    let server = line_server("a").await;
    let link = start_link(server.addr, ms(5)).await;
    let mut c1 = Client::connect(link.local_addr()).await;
    let mut c2 = Client::connect(link.local_addr()).await;
    assert_eq!(c1.ask("hello").await, "a hello"); // 6 up, 8 down
    assert_eq!(c2.ask("hi").await, "a hi"); // 3 up, 5 down
    let expected = WanStats {
        bytes_up: 9,
        bytes_down: 13,
        connections: 2,
        active_connections: 2,
    };
    // Bytes count just after they are written, which can be a moment after the client reads.
    assert!(
        eventually(STEP, || link.stats() == expected).await,
        "stats {:?}, expected {expected:?}",
        link.stats()
    );
    drop(c1);
    drop(c2);
    assert!(
        eventually(STEP, || link.stats().active_connections == 0).await,
        "connections not closed: {:?}",
        link.stats()
    );
}

/// Order-sensitive checksum over little-endian u64 words.
fn checksum(data: &[u8]) -> u64 {
    data.chunks_exact(8).fold(0xcbf2_9ce4_8422_2325, |h, w| {
        let word = u64::from_le_bytes(w.try_into().unwrap_or_default());
        (h ^ word)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(7)
    })
}

/// A server that reads exactly `len` bytes per connection, expects EOF, and answers with the
/// checksum of what it read.
async fn checksum_server(len: usize) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            conns.spawn(async move {
                let mut data = vec![0u8; len];
                if stream.read_exact(&mut data).await.is_err() {
                    return;
                }
                let mut rest = [0u8; 1];
                if !matches!(stream.read(&mut rest).await, Ok(0)) {
                    return; // more than `len` bytes: the client sees no checksum
                }
                let _ = stream.write_all(&checksum(&data).to_le_bytes()).await;
            });
            while conns.try_join_next().is_some() {}
        }
    });
    (addr, task)
}

/// Sends `data`, half-closes, and returns the server's checksum and the time taken.
async fn push(addr: SocketAddr, data: &[u8]) -> (u64, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(data).await.expect("write");
    stream.shutdown().await.expect("shutdown");
    let mut sum = [0u8; 8];
    stream.read_exact(&mut sum).await.expect("read checksum");
    (u64::from_le_bytes(sum), start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_is_not_throttled() {
    const LEN: usize = 64 * 1024 * 1024;
    // splitmix64: cheap, and no two words repeat, so reordering changes the checksum.
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut data = Vec::with_capacity(LEN);
    for _ in 0..LEN / 8 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        data.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    let expected = checksum(&data);
    let (addr, server) = checksum_server(LEN).await;

    let (direct_sum, direct) = timeout(Duration::from_secs(60), push(addr, &data))
        .await
        .expect("direct transfer timed out");
    assert_eq!(direct_sum, expected);

    let link = start_link(addr, ms(50)).await;
    let (sum, through_link) = timeout(Duration::from_secs(60), push(link.local_addr(), &data))
        .await
        .expect("transfer through the link timed out");
    assert_eq!(sum, expected, "bytes corrupted or reordered");
    // A sleep per read would take over 50 s (1024+ reads x 50 ms); a delay line takes the
    // direct time plus about 200 ms (handshake, delay each way).
    let limit = Duration::from_secs(5).max(direct * 2 + Duration::from_secs(1));
    assert!(
        through_link < limit,
        "throttled: {through_link:?} through the link, {direct:?} direct"
    );
    assert!(through_link >= ms(200), "delay missing: {through_link:?}");
    assert!(
        eventually(STEP, || link.stats().bytes_up == LEN as u64).await,
        "{:?}",
        link.stats()
    );
    server.abort();
}

#[tokio::test]
async fn cut_is_a_black_hole_until_restored() {
    let server = line_server("a").await;
    let link = start_link(server.addr, ms(50)).await;
    let mut old = Client::connect(link.local_addr()).await;
    assert_eq!(old.ask("before").await, "a before");

    link.cut();
    assert!(link.is_cut());
    old.send("during").await;
    assert_eq!(
        old.reply_within(ms(500)).await,
        None,
        "answered through a cut"
    );
    // New connections are accepted (no error) but go nowhere.
    let mut new = Client::connect(link.local_addr()).await;
    new.send("new").await;
    assert_eq!(
        new.reply_within(ms(500)).await,
        None,
        "answered through a cut"
    );

    link.restore();
    assert!(!link.is_cut());
    let mut fresh = Client::connect(link.local_addr()).await;
    assert_eq!(fresh.ask("after").await, "a after");
    // Paused, not broken: what was sent during the cut is delivered after the restore.
    assert_eq!(old.reply_within(STEP).await.as_deref(), Some("a during"));
    assert_eq!(new.reply_within(STEP).await.as_deref(), Some("a new"));
    assert_eq!(old.ask("again").await, "a again");
}

#[tokio::test]
async fn cut_with_reset_closes_connections_promptly() {
    let server = line_server("a").await;
    let link = start_link(server.addr, ms(50)).await;
    let mut old = Client::connect(link.local_addr()).await;
    assert_eq!(old.ask("before").await, "a before");
    assert_eq!(server.open.load(Ordering::SeqCst), 1);

    link.cut_with_reset();
    assert!(link.is_cut());
    let took = old.closed_within(ms(1000)).await;
    assert!(took < ms(1000));
    // The target side is reset too.
    assert!(
        eventually(STEP, || server.open.load(Ordering::SeqCst) == 0).await,
        "upstream connection still open"
    );

    // New connections are closed as soon as they arrive (the local connect itself may succeed).
    if let Ok(Ok(stream)) = timeout(STEP, TcpStream::connect(link.local_addr())).await {
        let mut refused = Client {
            stream: BufReader::new(stream),
        };
        let _ = refused.stream.get_mut().write_all(b"hello\n").await;
        refused.closed_within(ms(1000)).await;
    }

    link.restore();
    let mut fresh = Client::connect(link.local_addr()).await;
    assert_eq!(fresh.ask("after").await, "a after");
}

#[tokio::test]
async fn set_target_moves_new_connections() {
    let a = line_server("a").await;
    let b = line_server("b").await;
    let link = start_link(a.addr, ms(10)).await;
    let mut first = Client::connect(link.local_addr()).await;
    assert_eq!(first.ask("x").await, "a x");

    link.set_target(b.addr);
    assert_eq!(link.target(), b.addr);
    let mut second = Client::connect(link.local_addr()).await;
    assert_eq!(second.ask("y").await, "b y");
    // Open connections stay where they are.
    assert_eq!(first.ask("z").await, "a z");
}

#[tokio::test]
async fn set_one_way_delay_applies_at_run_time() {
    let server = line_server("a").await;
    let link = start_link(server.addr, ms(50)).await;
    let mut client = Client::connect(link.local_addr()).await;
    client.ask("warm up").await;

    link.set_one_way_delay(ms(150));
    assert_eq!(link.one_way_delay(), ms(150));
    let took = client.timed_ask("slow", "a slow").await;
    assert!(took >= ms(300), "new delay not applied: {took:?}");

    link.set_one_way_delay(Duration::ZERO);
    let mut samples = Vec::new();
    for i in 0..3 {
        samples.push(
            client
                .timed_ask(&format!("fast {i}"), &format!("a fast {i}"))
                .await,
        );
    }
    let fastest = samples.iter().min().copied().unwrap_or_default();
    assert!(fastest < ms(100), "delay not removed: {samples:?}");
}

#[tokio::test]
async fn shutdown_frees_the_port_and_closes_connections() {
    let server = line_server("a").await;
    let link = start_link(server.addr, ms(10)).await;
    let addr = link.local_addr();
    let mut client = Client::connect(addr).await;
    assert_eq!(client.ask("hello").await, "a hello");

    timeout(STEP, link.shutdown())
        .await
        .expect("shutdown timed out");
    let rebound = TcpListener::bind(addr).await.expect("port still taken");
    drop(rebound);
    client.closed_within(STEP).await;
    assert!(
        eventually(STEP, || server.open.load(Ordering::SeqCst) == 0).await,
        "upstream connection still open"
    );
}

#[tokio::test]
async fn drop_stops_the_link() {
    let server = line_server("a").await;
    let link = start_link(server.addr, ms(10)).await;
    let addr = link.local_addr();
    let mut client = Client::connect(addr).await;
    assert_eq!(client.ask("hello").await, "a hello");

    drop(link);
    client.closed_within(STEP).await;
    assert!(
        eventually(STEP, || server.open.load(Ordering::SeqCst) == 0).await,
        "upstream connection still open"
    );
    let mut rebound = None;
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            rebound = Some(listener);
            break;
        }
        tokio::time::sleep(ms(20)).await;
    }
    assert!(rebound.is_some(), "port still taken after drop");
}
