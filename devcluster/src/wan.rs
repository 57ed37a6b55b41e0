//! A simulated WAN link between two regions: a TCP proxy that adds a one-way delay to every byte in
//! each direction, and that can be cut, restored and re-pointed while it runs.
//!
//! The devcluster puts one of these in front of everything that crosses regions (router-to-router
//! traffic, PostgreSQL streaming replication), so latency-sensitive behaviour (one WAN round trip
//! per booking, keep-alive reuse, replica lag, partitions) shows up on one machine.
//!
//! How it models a WAN:
//!
//! * **Latency, not bandwidth.** Each direction of a connection is a delay line: every chunk read
//!   is stamped with `now + one_way_delay` and queued; a writer sends it when that time comes
//!   while the reader keeps reading. A bulk stream is therefore late by the delay but as fast as
//!   loopback. The queue is bounded ([`MAX_QUEUED_BYTES`] per direction and connection), which
//!   caps memory yet allows `MAX_QUEUED_BYTES / one_way_delay` of throughput (over 280 MiB/s at
//!   the largest default delay), far more than a replication stream needs.
//! * **Handshake.** A new connection waits one round trip (2 x one-way) before the link connects
//!   upstream and starts reading from the client, as a TCP handshake over a WAN does. So the
//!   first exchange on a fresh connection costs two round trips and a reused keep-alive
//!   connection one, and tests can tell the difference.
//! * **Partitions.** [`WanLink::cut`] turns the link into a black hole: nothing is delivered in
//!   either direction and new connections are accepted (the kernel completes the local
//!   handshake) but go nowhere, so clients see timeouts rather than errors, as with dropped
//!   packets. Connections are paused, not broken: after [`WanLink::restore`] whatever was
//!   queued is delivered (as TCP would retransmit it once the partition heals) and connections
//!   accepted during the cut start their handshake. An endpoint that gave up meanwhile has its
//!   close delivered after the restore too. [`WanLink::cut_with_reset`] instead resets (RST)
//!   every existing connection on both sides and resets new ones as soon as they are accepted;
//!   those connections stay dead, and after `restore` new connections work.
//!
//! Dropping a [`WanLink`] (or [`WanLink::shutdown`]) stops the listener and every connection task;
//! connections still open are closed normally (FIN) on both sides.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Round trip assumed for a pair of regions with no published figure: a plausible mid-range
/// intercontinental value, so an unknown region still behaves like a remote one.
pub const FALLBACK_ROUND_TRIP: Duration = Duration::from_millis(100);

/// Public inter-region round-trip times (DESIGN.md section 1).
const DEFAULT_ROUND_TRIPS: [(&str, &str, u64); 3] = [
    ("us-east", "eu-west", 76),
    ("us-east", "ap-southeast", 222),
    ("eu-west", "ap-southeast", 160),
];

/// Bytes a direction of one connection may hold in its delay line. Bounds memory; with the
/// delay it also bounds throughput (`MAX_QUEUED_BYTES / one_way_delay`), so it is large.
pub const MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;

/// Chunks a direction may hold: bounds the per-chunk overhead when a peer writes tiny pieces.
const MAX_QUEUED_CHUNKS: usize = 8192;

/// Largest single read, so one chunk never takes a large share of the byte budget.
const READ_BUFFER: usize = 64 * 1024;

/// Upper bound for the one-way delay: keeps deadline arithmetic far from overflow.
pub const MAX_ONE_WAY_DELAY: Duration = Duration::from_secs(3600);

/// How long connecting to the target (after the simulated handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The round-trip time between two regions from the design's defaults: `Some(0)` for a region
/// and itself (no WAN in between), `None` for a pair without a figure. Names are matched
/// exactly (`us-east`, `eu-west`, `ap-southeast`) and in either order.
pub fn default_round_trip(a: &str, b: &str) -> Option<Duration> {
    if a == b {
        return Some(Duration::ZERO);
    }
    DEFAULT_ROUND_TRIPS
        .iter()
        .find(|(x, y, _)| (*x == a && *y == b) || (*x == b && *y == a))
        .map(|(_, _, ms)| Duration::from_millis(*ms))
}

/// The one-way delay a link between regions `a` and `b` should add: half the default round trip
/// ([`FALLBACK_ROUND_TRIP`] for an unknown pair), times `scale` (the `--latency-scale` option).
/// A scale of 0, a negative one or NaN gives no delay; the result is capped at
/// [`MAX_ONE_WAY_DELAY`].
pub fn one_way(a: &str, b: &str, scale: f64) -> Duration {
    let round_trip = default_round_trip(a, b).unwrap_or(FALLBACK_ROUND_TRIP);
    scaled_half(round_trip, scale)
}

fn scaled_half(round_trip: Duration, scale: f64) -> Duration {
    if scale.is_nan() || scale <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(round_trip.as_secs_f64() / 2.0 * scale)
        .map_or(MAX_ONE_WAY_DELAY, |d| d.min(MAX_ONE_WAY_DELAY))
}

/// What a [`WanLink`] listens on and forwards to.
#[derive(Debug, Clone)]
pub struct WanLinkConfig {
    /// Address to listen on; port 0 picks a free one (see [`WanLink::local_addr`]).
    pub listen: SocketAddr,
    /// Where accepted connections are forwarded ("upstream").
    pub target: SocketAddr,
    /// Delay added to every byte in each direction (capped at [`MAX_ONE_WAY_DELAY`]).
    pub one_way_delay: Duration,
    /// Shown in logs, e.g. `us-east->eu-west/router`.
    pub name: String,
}

impl WanLinkConfig {
    /// A link listening on a free loopback port.
    pub fn new(name: impl Into<String>, target: SocketAddr, one_way_delay: Duration) -> Self {
        WanLinkConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            target,
            one_way_delay,
            name: name.into(),
        }
    }
}

/// Traffic counters of a link since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WanStats {
    /// Bytes delivered from clients to the target.
    pub bytes_up: u64,
    /// Bytes delivered from the target back to clients.
    pub bytes_down: u64,
    /// Connections accepted, including ones black-holed or reset by a cut.
    pub connections: u64,
    /// Connections currently held open by the link.
    pub active_connections: u64,
}

/// What the link does with traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    /// Nothing is delivered; connections wait.
    BlackHole,
    /// Connections are reset.
    Reset,
}

#[derive(Debug, Clone, Copy)]
struct LinkState {
    mode: Mode,
    /// Bumped by every `cut_with_reset`, so a connection notices a reset even when `restore`
    /// follows before it looks.
    resets: u64,
}

/// State shared by the handle, the accept loop and the connection tasks.
struct Shared {
    name: String,
    one_way_nanos: AtomicU64,
    target: Mutex<SocketAddr>,
    state: watch::Sender<LinkState>,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    connections: AtomicU64,
    active: AtomicU64,
}

impl Shared {
    fn one_way(&self) -> Duration {
        Duration::from_nanos(self.one_way_nanos.load(Ordering::Relaxed))
    }

    fn target(&self) -> SocketAddr {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mode(&self) -> Mode {
        self.state.borrow().mode
    }
}

/// A running simulated WAN link. See the [module documentation](self) for what it models.
pub struct WanLink {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl WanLink {
    /// Binds the listener and starts forwarding. Must be called inside a Tokio runtime.
    pub async fn start(config: WanLinkConfig) -> anyhow::Result<WanLink> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("WAN link {}: binding {}", config.name, config.listen))?;
        let local_addr = listener
            .local_addr()
            .with_context(|| format!("WAN link {}: reading local address", config.name))?;
        let (state, _) = watch::channel(LinkState {
            mode: Mode::Open,
            resets: 0,
        });
        let shared = Arc::new(Shared {
            name: config.name,
            one_way_nanos: AtomicU64::new(delay_nanos(config.one_way_delay)),
            target: Mutex::new(config.target),
            state,
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            active: AtomicU64::new(0),
        });
        tracing::debug!(
            link = %shared.name,
            listen = %local_addr,
            target = %config.target,
            one_way_ms = config.one_way_delay.as_millis() as u64,
            "WAN link started"
        );
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(shared.clone(), listener, stop_rx));
        Ok(WanLink {
            shared,
            local_addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The name given in the configuration.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Black hole: stops delivering bytes in both directions; new connections are accepted but
    /// nothing is forwarded. Connections resume on [`restore`](Self::restore).
    pub fn cut(&self) {
        self.shared.state.send_modify(|s| s.mode = Mode::BlackHole);
        tracing::debug!(link = %self.shared.name, "WAN link cut (black hole)");
    }

    /// Resets every open connection (both sides see a reset) and resets new ones as soon as
    /// they are accepted, until [`restore`](Self::restore).
    pub fn cut_with_reset(&self) {
        self.shared.state.send_modify(|s| {
            s.mode = Mode::Reset;
            s.resets += 1;
        });
        tracing::debug!(link = %self.shared.name, "WAN link cut (reset)");
    }

    /// Heals a cut: traffic flows again and new connections work.
    pub fn restore(&self) {
        self.shared.state.send_modify(|s| s.mode = Mode::Open);
        tracing::debug!(link = %self.shared.name, "WAN link restored");
    }

    /// Whether the link is cut (either kind).
    pub fn is_cut(&self) -> bool {
        self.shared.mode() != Mode::Open
    }

    /// Changes the one-way delay for chunks read from now on (and for handshakes starting from
    /// now on); chunks already queued keep their time. Order is always preserved, so after a
    /// decrease new chunks may wait behind older ones. Capped at [`MAX_ONE_WAY_DELAY`].
    pub fn set_one_way_delay(&self, delay: Duration) {
        self.shared
            .one_way_nanos
            .store(delay_nanos(delay), Ordering::Relaxed);
    }

    /// The current one-way delay.
    pub fn one_way_delay(&self) -> Duration {
        self.shared.one_way()
    }

    /// Points connections opened from now on at `target`; open connections stay where they are.
    pub fn set_target(&self, target: SocketAddr) {
        *self
            .shared
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = target;
        tracing::debug!(link = %self.shared.name, %target, "WAN link target changed");
    }

    /// The current target.
    pub fn target(&self) -> SocketAddr {
        self.shared.target()
    }

    /// Traffic counters so far. Bytes count once written to the receiving side.
    pub fn stats(&self) -> WanStats {
        let s = &self.shared;
        WanStats {
            bytes_up: s.bytes_up.load(Ordering::Relaxed),
            bytes_down: s.bytes_down.load(Ordering::Relaxed),
            connections: s.connections.load(Ordering::Relaxed),
            active_connections: s.active.load(Ordering::Relaxed),
        }
    }

    /// Stops the listener and every connection, and waits until they are gone: when this
    /// returns, the port is free and no task of this link runs.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::warn!(link = %self.shared.name, error = %e, "WAN link task failed");
            }
        }
    }
}

impl Drop for WanLink {
    /// Aborts the accept loop, which drops its connection tasks with it. The sockets close as
    /// soon as the runtime processes the abort (use [`WanLink::shutdown`] to wait for that).
    fn drop(&mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl fmt::Debug for WanLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WanLink")
            .field("name", &self.shared.name)
            .field("local_addr", &self.local_addr)
            .field("target", &self.shared.target())
            .field("one_way_delay", &self.shared.one_way())
            .field("mode", &self.shared.mode())
            .finish()
    }
}

fn delay_nanos(delay: Duration) -> u64 {
    // MAX_ONE_WAY_DELAY is far below u64::MAX nanoseconds.
    delay.min(MAX_ONE_WAY_DELAY).as_nanos() as u64
}

/// Accepts connections until told to stop, then stops every connection task and waits for them.
async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!(link = %shared.name, error = %e, "WAN connection task panicked");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    let state = *shared.state.borrow();
                    if state.mode == Mode::Reset {
                        tracing::debug!(link = %shared.name, %peer, "WAN connection reset: link is cut");
                        reset(&client);
                        continue;
                    }
                    connections.spawn(run_connection(shared.clone(), client, peer, state.resets));
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(link = %shared.name, error = %e, "WAN link accept failed");
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
    }
    drop(listener);
    connections.shutdown().await;
    tracing::debug!(link = %shared.name, "WAN link stopped");
}

/// Makes the next close send a reset instead of a FIN, and discard unsent data.
fn reset(stream: &TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!(error = %e, "could not set SO_LINGER 0; closing normally");
    }
}

/// Counts a connection as active while alive.
struct ActiveGuard<'a>(&'a AtomicU64);

impl<'a> ActiveGuard<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(counter)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One accepted connection, from handshake to close.
async fn run_connection(shared: Arc<Shared>, mut client: TcpStream, peer: SocketAddr, epoch: u64) {
    let _active = ActiveGuard::new(&shared.active);
    let _ = client.set_nodelay(true);
    let mut reset_rx = shared.state.subscribe();
    // Kept out here so that a reset can reach the target side too.
    let mut upstream: Option<TcpStream> = None;
    let counts = [AtomicU64::new(0), AtomicU64::new(0)];
    let outcome = tokio::select! {
        r = proxy(&shared, &mut client, &mut upstream, peer, &counts) => r.map_err(Some),
        () = reset_signal(&mut reset_rx, epoch) => Err(None),
    };
    let (up, down) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    );
    match outcome {
        Ok(()) => {
            tracing::debug!(link = %shared.name, %peer, bytes_up = up, bytes_down = down, "WAN connection closed");
        }
        Err(error) => {
            // Pass an abrupt end on as a reset, as it would travel end to end over a real
            // network, so neither side mistakes it for a clean close.
            reset(&client);
            if let Some(upstream) = &upstream {
                reset(upstream);
            }
            match error {
                Some(e) => tracing::debug!(
                    link = %shared.name, %peer, bytes_up = up, bytes_down = down, error = %e,
                    "WAN connection closed with error"
                ),
                None => tracing::debug!(
                    link = %shared.name, %peer, bytes_up = up, bytes_down = down,
                    "WAN connection reset: link is cut"
                ),
            }
        }
    }
}

/// Completes when `cut_with_reset` has been called since the connection was accepted.
async fn reset_signal(rx: &mut watch::Receiver<LinkState>, epoch: u64) {
    if rx.wait_for(|s| s.resets != epoch).await.is_err() {
        // The sender lives as long as the link; without it there is nothing to wait for.
        std::future::pending::<()>().await;
    }
}

/// Waits until the link is open (returns at once if it is).
async fn wait_open(rx: &mut watch::Receiver<LinkState>) {
    if rx.borrow().mode != Mode::Open {
        let _ = rx.wait_for(|s| s.mode == Mode::Open).await;
    }
}

/// Simulated handshake, connect to the target, then both delay lines until both sides closed.
async fn proxy(
    shared: &Shared,
    client: &mut TcpStream,
    upstream: &mut Option<TcpStream>,
    peer: SocketAddr,
    counts: &[AtomicU64; 2],
) -> io::Result<()> {
    let mut state_rx = shared.state.subscribe();
    // A SYN sent into a black hole gets nowhere: the handshake starts once the link is open,
    // and starts over if the link was cut while it was under way.
    loop {
        wait_open(&mut state_rx).await;
        let round_trip = shared.one_way().saturating_mul(2);
        if !round_trip.is_zero() {
            tokio::time::sleep(round_trip).await;
        }
        if shared.mode() == Mode::Open {
            break;
        }
    }
    let target = shared.target();
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {target}")))?
        .map_err(|e| io::Error::new(e.kind(), format!("connecting to {target}: {e}")))?;
    let _ = stream.set_nodelay(true);
    tracing::debug!(link = %shared.name, %peer, %target, "WAN connection open");
    let upstream = upstream.insert(stream);
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    tokio::try_join!(
        delay_line(
            shared,
            client_read,
            upstream_write,
            [&shared.bytes_up, &counts[0]],
            state_rx.clone(),
        ),
        delay_line(
            shared,
            upstream_read,
            client_write,
            [&shared.bytes_down, &counts[1]],
            state_rx,
        ),
    )?;
    Ok(())
}

/// A chunk in a delay line; `data: None` is the sender's FIN.
struct Chunk {
    due: Instant,
    data: Option<Vec<u8>>,
}

/// One direction: a reader stamps and queues chunks, a writer sends each when due (and while the
/// link is open). Ends once the FIN has been passed on; an I/O error on either side ends it
/// with that error.
async fn delay_line<R, W>(
    shared: &Shared,
    mut from: R,
    mut to: W,
    counters: [&AtomicU64; 2],
    mut state_rx: watch::Receiver<LinkState>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Chunk>(MAX_QUEUED_CHUNKS);
    let budget = Semaphore::new(MAX_QUEUED_BYTES);
    let budget = &budget;
    let read = async move {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let n = from.read(&mut buf).await?;
            let due = Instant::now() + shared.one_way();
            if n == 0 {
                // The writer only stops early on an error, which ends the whole connection.
                let _ = tx.send(Chunk { due, data: None }).await;
                return Ok::<(), io::Error>(());
            }
            // n <= READ_BUFFER, which fits in u32 and in the budget.
            budget
                .acquire_many(n as u32)
                .await
                .map_err(io::Error::other)?
                .forget();
            let chunk = Chunk {
                due,
                data: Some(buf[..n].to_vec()),
            };
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
        }
    };
    let write = async move {
        while let Some(chunk) = rx.recv().await {
            if chunk.due > Instant::now() {
                tokio::time::sleep_until(chunk.due).await;
            }
            wait_open(&mut state_rx).await;
            match chunk.data {
                Some(data) => {
                    to.write_all(&data).await?;
                    for counter in counters {
                        counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    budget.add_permits(data.len());
                }
                None => {
                    to.shutdown().await?;
                    return Ok::<(), io::Error>(());
                }
            }
        }
        Ok(())
    };
    tokio::try_join!(read, write)?;
    Ok(())
}
