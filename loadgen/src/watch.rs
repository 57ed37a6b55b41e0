//! `loadgen watch`: N subscribers each hold one live stream (`GET /events/{id}/stream`) through
//! one region's routers (round robin over all of them), opened by the lean client (`sse`) from
//! many loopback source addresses at a ramped rate; then a writer books K times, and each subscriber notes when the first
//! message whose id (`wire::stream::StreamId`) is at or past the booking's commit LSN (from its
//! consistency token) reaches it. A delivery's delay is counted from when the writer SENT the
//! booking: an upper bound on the time since its commit. Alongside, a small read load measures
//! fresh reads while the streams are held; at the end, the routers' and nodes' resident memory
//! and every process's CPU.
//!
//! One process holds at most its open-file limit of streams (20,000 on a machine without
//! CAP_SYS_RESOURCE), so past `--per-worker` streams loadgen re-executes itself as `loadgen
//! watch-worker` children: each reads its [`WorkerPlan`] on stdin, opens its share of the
//! streams on the same schedule and clock (the wall clock's run start), says when they have
//! all answered, and on `stop` writes its subscribers' logs back on stdout ([`WorkerLine`]);
//! the parent merges them ([`merge_workers`]) into one report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use wire::stream::StreamId;

use crate::api::Api;
use crate::audit::Audit;
use crate::cpu::{self, Usage};
use crate::fixture::{self, Event};
use crate::memory::{self, Resident};
use crate::options::{parse_tiers, WatchOptions};
use crate::stats::{Key, Op, Recorder, Row, SeenBooking};
use crate::target::Target;
use crate::{descriptors, minted, sse};

/// The most streams one run holds.
const MAX_SUBSCRIBERS: usize = 200_000;
/// A change counts as delivered in time when it arrives within this of its booking's send.
const ON_TIME: Duration = Duration::from_secs(1);
/// How long the run keeps the streams after the last booking, for it to arrive.
const SETTLE: Duration = Duration::from_secs(3);

/// One booking of the writer: when it was sent (µs into the run), the commit LSN its
/// consistency token gave, and how it was answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub sent_us: u64,
    pub lsn: Option<u64>,
    /// "200" or "409 sold_out", …
    pub answer: String,
}

/// What one subscriber saw: when its stream opened, whether and when it ended or failed, and
/// every message (its id's LSN and its arrival, µs into the run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriberLog {
    pub connected_us: Option<u64>,
    /// Why the stream could not open or ended before the run stopped it, and when.
    pub failure: Option<(u64, String)>,
    pub messages: Vec<(u64, u64)>,
    /// Messages whose id was missing or not a stream id.
    pub bad_ids: u64,
}

/// How one change reached the subscribers that were connected when it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The booking's commit LSN, as PostgreSQL prints it; none when the booking failed.
    pub lsn: Option<String>,
    pub answer: String,
    /// Subscribers connected before the booking was sent.
    pub subscribers: u64,
    pub delivered: u64,
    pub within_1s: u64,
    /// within_1s / subscribers.
    pub share_within_1s: f64,
    /// Percentiles over every subscriber of the change; none when fewer than that share got it.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

fn one() -> usize {
    1
}

/// `X/Y` as PostgreSQL prints a WAL position.
fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// The commit LSN of a consistency token, `us-east:0/3A1B2C8`.
pub fn token_lsn(token: &str) -> Option<u64> {
    let (_, lsn) = token.trim().split_once(':')?;
    let (high, low) = lsn.split_once('/')?;
    let part = |p: &str| {
        (!p.is_empty() && p.len() <= 8)
            .then(|| u32::from_str_radix(p, 16).ok())
            .flatten()
    };
    Some((u64::from(part(high)?) << 32) | u64::from(part(low)?))
}

/// Each change's delivery over the subscribers' logs.
pub fn deliveries(changes: &[Change], logs: &[SubscriberLog]) -> Vec<Delivery> {
    let on_time = ON_TIME.as_micros() as u64;
    changes
        .iter()
        .map(|change| {
            let mut delays: Vec<u64> = Vec::new();
            let mut subscribers = 0u64;
            if let Some(lsn) = change.lsn {
                for log in logs {
                    // Only subscribers connected when the booking was sent.
                    if log.connected_us.is_none_or(|at| at > change.sent_us) {
                        continue;
                    }
                    subscribers += 1;
                    let first = log
                        .messages
                        .iter()
                        .find(|(m_lsn, at)| *m_lsn >= lsn && *at >= change.sent_us);
                    if let Some((_, at)) = first {
                        delays.push(at - change.sent_us);
                    }
                }
            }
            delays.sort_unstable();
            // Undelivered subscribers count as infinitely late.
            let quantile = |q: f64| {
                if subscribers == 0 {
                    return None;
                }
                let rank = ((q * subscribers as f64).ceil() as usize).max(1) - 1;
                delays.get(rank).map(|us| *us as f64 / 1000.0)
            };
            let within = delays.iter().filter(|d| **d <= on_time).count() as u64;
            Delivery {
                lsn: change.lsn.map(lsn_text),
                answer: change.answer.clone(),
                subscribers,
                delivered: delays.len() as u64,
                within_1s: within,
                share_within_1s: within as f64 / subscribers.max(1) as f64,
                p50_ms: quantile(0.50),
                p99_ms: quantile(0.99),
                max_ms: quantile(1.0),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchReport {
    pub title: String,
    pub region: String,
    pub writer_region: String,
    pub event: Event,
    /// Streams asked for.
    pub subscribers: usize,
    pub connected: u64,
    pub failed: u64,
    /// Streams that opened but ended before the run stopped them.
    pub dropped: u64,
    /// Failures and drops by reason.
    pub failures: BTreeMap<String, u64>,
    pub ramp_per_second: f64,
    /// From the first connection to the last one answered (or failed).
    pub connecting_s: f64,
    /// How long the streams were held once connected.
    pub held_s: f64,
    pub source_addresses: usize,
    /// The region's routers the streams were spread over.
    #[serde(default = "one")]
    pub routers: usize,
    /// Processes holding the streams: this one, or its `watch-worker` children.
    #[serde(default = "one")]
    pub workers: usize,
    pub open_file_limit: u64,
    pub changes: Vec<Delivery>,
    /// The writer's bookings and the fresh reads while held.
    pub rows: Vec<Row>,
    /// Resident memory of every router and node at the end, streams still held.
    pub memory: Vec<Resident>,
    /// CPU over the hold; "requests" are the fresh reads.
    pub cpu: Option<Usage>,
    pub audit: Option<Audit>,
}

impl WatchReport {
    pub fn passed(&self) -> bool {
        self.failed == 0
            && self.dropped == 0
            && !self.changes.is_empty()
            && self
                .changes
                .iter()
                .all(|c| c.lsn.is_some() && c.delivered == c.subscribers)
            && self.rows.iter().all(|r| r.errors == 0)
            && self.audit.as_ref().is_none_or(Audit::passed)
    }

    /// The router and node of the subscribers' region together, in bytes.
    pub fn region_memory(&self) -> u64 {
        self.memory
            .iter()
            .filter(|m| m.region == self.region)
            .map(|m| m.bytes)
            .sum()
    }

    /// The fresh reads' row.
    pub fn reads(&self) -> Option<&Row> {
        self.rows.iter().find(|r| r.op == Op::Event)
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title);
        let _ = writeln!(
            out,
            "{} streams of event {} (home {}) through {}'s {} router(s), held by {} process(es): \
             {} connected, {} failed, {} dropped; connecting took {:.1} s at {:.0}/s from {} \
             source addresses; held {:.1} s; open-file limit {}",
            self.subscribers,
            self.event.id,
            self.event.home,
            self.region,
            self.routers,
            self.workers,
            self.connected,
            self.failed,
            self.dropped,
            self.connecting_s,
            self.ramp_per_second,
            self.source_addresses,
            self.held_s,
            self.open_file_limit
        );
        for (why, n) in &self.failures {
            let _ = writeln!(out, "  {n} × {why}");
        }
        let _ = writeln!(
            out,
            "\nchanges (booked through {}'s router; delay from the booking's send, an upper \
             bound on the time since its commit):\n  {:<3} {:<14} {:<16} {:>11} {:>10} {:>10} {:>9} {:>9} {:>9}",
            self.writer_region,
            "#",
            "commit LSN",
            "booking",
            "subscribers",
            "delivered",
            "within 1 s",
            "p50 ms",
            "p99 ms",
            "max ms"
        );
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        for (i, c) in self.changes.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {:<3} {:<14} {:<16} {:>11} {:>10} {:>9.2}% {:>9} {:>9} {:>9}",
                i + 1,
                c.lsn.as_deref().unwrap_or("-"),
                c.answer,
                c.subscribers,
                c.delivered,
                100.0 * c.share_within_1s,
                ms(c.p50_ms),
                ms(c.p99_ms),
                ms(c.max_ms)
            );
        }
        for r in &self.rows {
            let _ = writeln!(
                out,
                "\n{} {} → {}: {} ({} errors), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                r.op.name(),
                r.client,
                r.home,
                r.count,
                r.errors,
                r.p50_ms,
                r.p99_ms,
                r.max_ms
            );
        }
        if !self.memory.is_empty() {
            let _ = writeln!(out, "\nresident memory at the end (streams held):");
            for m in &self.memory {
                let _ = writeln!(
                    out,
                    "  {:<14} {:<7} {:>8.1} MiB",
                    m.region,
                    m.process.name(),
                    m.bytes as f64 / (1024.0 * 1024.0)
                );
            }
        }
        if let Some(cpu) = &self.cpu {
            let _ = writeln!(out, "\nCPU over the hold ({:.1} s):", cpu.window_s);
            for p in &cpu.processes {
                let _ = writeln!(
                    out,
                    "  {:<12} {:<14} {:>8.2} s {:>7.1}% of a core",
                    p.process.name(),
                    p.region.as_deref().unwrap_or("-"),
                    p.figure.cpu_s,
                    p.figure.core_percent
                );
            }
        }
        if let Some(audit) = &self.audit {
            let verdict = if audit.passed() { "passed" } else { "FAILED" };
            let _ = writeln!(out, "\naudit {verdict}; tickets now {:?}", audit.tickets);
        }
        out
    }
}

/// A router URL's socket address and `Host` header.
pub fn socket_of(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap_or_default().to_owned();
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("{host} has no IPv4 address"))?;
    Ok((addr, host))
}

/// A user token for one region: minted when the cluster gives its secret, else signed up.
pub async fn one_user_token(api: &Api, target: &Target, region: &str) -> anyhow::Result<String> {
    if let (Some(secret), Some(id)) = (&target.jwt_secret, target.region(region)?.id) {
        let mint = minted::Mint::new(secret, Duration::from_secs(3600))?;
        return mint.token(mint.user_id(id, 0)?);
    }
    let users = fixture::create_users(api, target, region, 1).await?;
    Ok(users[0].token.clone())
}

struct Stream {
    server: SocketAddr,
    host: String,
    path: String,
    timeout: Duration,
    started: Instant,
}

fn micros(started: Instant) -> u64 {
    started.elapsed().as_micros() as u64
}

/// One subscriber: opens its stream from `source`, then logs each message's LSN until `stop`.
async fn subscriber(
    stream: Arc<Stream>,
    source: std::net::IpAddr,
    mut stop: watch::Receiver<bool>,
    settled: Arc<AtomicU64>,
) -> SubscriberLog {
    let mut log = SubscriberLog::default();
    let opened = sse::open(
        stream.server,
        source,
        &stream.host,
        &stream.path,
        stream.timeout,
    )
    .await;
    settled.fetch_add(1, Ordering::Relaxed);
    let mut open = match opened {
        Ok(open) => open,
        Err(failure) => {
            log.failure = Some((micros(stream.started), failure.label()));
            return log;
        }
    };
    log.connected_us = Some(micros(stream.started));
    loop {
        let started = stream.started;
        let messages = &mut log.messages;
        let bad_ids = &mut log.bad_ids;
        let mut on_message = |m: sse::Message| {
            let at = micros(started);
            match m.id.as_deref().map(str::parse::<StreamId>) {
                Some(Ok(id)) => messages.push((id.lsn, at)),
                _ => *bad_ids += 1,
            }
        };
        tokio::select! {
            _ = stop.changed() => break,
            read = open.read(&mut on_message) => {
                if let Err(failure) = read {
                    log.failure = Some((micros(stream.started), failure.label()));
                    break;
                }
            }
        }
    }
    log
}

/// Which streams one process opens, where and when: all of them in-process, or one worker's
/// share. Every process times against the same wall-clock start, so their logs merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPlan {
    /// The region's routers: subscriber i connects to router i mod their number.
    pub routers: Vec<String>,
    pub path: String,
    /// Streams of the whole run; subscriber i is due at the run's start + i / ramp.
    pub subscribers: usize,
    /// This process opens subscribers `worker`, `worker + workers`, …
    pub worker: usize,
    pub workers: usize,
    pub ramp: f64,
    pub per_address: usize,
    pub connect_timeout_ms: u64,
    /// The run's start, µs since the Unix epoch.
    pub epoch_us: u64,
}

impl WorkerPlan {
    fn indices(&self) -> impl Iterator<Item = usize> {
        (self.worker..self.subscribers).step_by(self.workers.max(1))
    }

    /// How many streams this process opens.
    pub fn count(&self) -> usize {
        self.subscribers
            .saturating_sub(self.worker)
            .div_ceil(self.workers.max(1))
    }

    fn spacing(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.ramp)
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// By when every stream of the run has answered or given up.
    fn all_settled(&self, started: Instant) -> Instant {
        started + self.spacing().mul_f64(self.subscribers as f64) + self.connect_timeout()
    }
}

/// What a worker writes on its stdout, one JSON line each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "line")]
pub enum WorkerLine {
    /// Its streams have all answered (or the run's deadline passed): how many did.
    Settled { answered: u64 },
    /// After `stop`: its subscribers' logs.
    Done { logs: Vec<SubscriberLog> },
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// This process's `Instant` for a wall-clock time, µs since the Unix epoch.
fn instant_at(epoch_us: u64) -> Instant {
    let (now, now_us) = (Instant::now(), unix_micros());
    if now_us >= epoch_us {
        now.checked_sub(Duration::from_micros(now_us - epoch_us))
            .unwrap_or(now)
    } else {
        now + Duration::from_micros(epoch_us - now_us)
    }
}

/// The streams this process holds: one task per subscriber.
struct Held {
    tasks: tokio::task::JoinSet<SubscriberLog>,
    settled: Arc<AtomicU64>,
    count: usize,
    stop: watch::Sender<bool>,
}

impl Held {
    /// Opens the plan's streams on its schedule; returns once the last one is started.
    async fn open(plan: &WorkerPlan, started: Instant) -> anyhow::Result<Held> {
        let streams = plan
            .routers
            .iter()
            .map(|url| {
                let (server, host) = socket_of(url)?;
                Ok(Arc::new(Stream {
                    server,
                    host,
                    path: plan.path.clone(),
                    timeout: plan.connect_timeout(),
                    started,
                }))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if streams.is_empty() {
            bail!("the region names no router");
        }
        let (stop, stop_rx) = watch::channel(false);
        let settled = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let spacing = plan.spacing();
        for i in plan.indices() {
            tokio::time::sleep_until((started + spacing.mul_f64(i as f64)).into()).await;
            tasks.spawn(subscriber(
                streams[i % streams.len()].clone(),
                sse::source_address(i, plan.per_address),
                stop_rx.clone(),
                settled.clone(),
            ));
        }
        Ok(Held {
            tasks,
            settled,
            count: plan.count(),
            stop,
        })
    }

    /// Waits until every stream answered or `deadline`; how many did.
    async fn settle(&self, deadline: Instant) -> u64 {
        while (self.settled.load(Ordering::Relaxed) as usize) < self.count
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.settled.load(Ordering::Relaxed)
    }

    /// Stops every stream; their logs (a subscriber whose task failed has none).
    async fn stop(mut self) -> Vec<SubscriberLog> {
        let _ = self.stop.send(true);
        let mut logs = Vec::with_capacity(self.count);
        while let Some(log) = self.tasks.join_next().await {
            if let Ok(log) = log {
                logs.push(log);
            }
        }
        logs
    }
}

/// `loadgen watch-worker`: reads its plan on stdin, holds its streams, says when they have
/// answered, and on a line (or the end) of stdin stops them and writes their logs.
pub async fn worker_main() -> anyhow::Result<()> {
    // Plain blocking stdio: one line in at the start and one at the end, and one out each.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let plan: WorkerPlan = serde_json::from_str(&line).context("a bad worker plan on stdin")?;
    descriptors::raise_open_files(plan.count() as u64 + 1024)
        .context("raising the open-file limit")?;
    let started = instant_at(plan.epoch_us);
    let held = Held::open(&plan, started).await?;
    let answered = held.settle(plan.all_settled(started)).await;
    write_line(&WorkerLine::Settled { answered })?;
    // The parent writes `stop`; its end (the parent died) stops us too.
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
    let logs = held.stop().await;
    write_line(&WorkerLine::Done { logs })
}

fn write_line(line: &WorkerLine) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, line)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// A `loadgen watch-worker` child as the parent sees it.
struct Worker {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Worker {
    /// Starts `program watch-worker` and hands it `plan`.
    async fn spawn(program: &std::path::Path, plan: &WorkerPlan) -> anyhow::Result<Worker> {
        let mut child = tokio::process::Command::new(program)
            .arg("watch-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} watch-worker", program.display()))?;
        let mut stdin = child.stdin.take().context("the worker's stdin")?;
        let stdout = child.stdout.take().context("the worker's stdout")?;
        let mut line = serde_json::to_vec(plan)?;
        line.push(b'\n');
        stdin.write_all(&line).await?;
        stdin.flush().await?;
        Ok(Worker {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn next_line(&mut self) -> Result<WorkerLine, String> {
        match self.lines.next_line().await {
            Ok(Some(line)) => serde_json::from_str(&line).map_err(|e| format!("bad line: {e}")),
            Ok(None) => Err(match self.child.try_wait() {
                Ok(Some(status)) => format!("exited ({status})"),
                _ => "closed its output".into(),
            }),
            Err(e) => Err(format!("unreadable: {e}")),
        }
    }

    /// How many of its streams answered, once all have (or by `deadline`).
    async fn settled(&mut self, deadline: Instant) -> Result<u64, String> {
        match tokio::time::timeout_at(deadline.into(), self.next_line()).await {
            Ok(Ok(WorkerLine::Settled { answered })) => Ok(answered),
            Ok(Ok(_)) => Err("out of order".into()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("no answer in time".into()),
        }
    }

    /// Stops its streams and takes their logs.
    async fn stop(mut self) -> Result<Vec<SubscriberLog>, String> {
        self.stdin
            .write_all(b"stop\n")
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        let _ = self.stdin.flush().await;
        let logs = match self.next_line().await? {
            WorkerLine::Done { logs } => logs,
            WorkerLine::Settled { .. } => return Err("out of order".into()),
        };
        let _ = self.child.wait().await;
        Ok(logs)
    }
}

/// Every subscriber's log from each process's outcome (`assigned` streams, their logs or why
/// the process failed): the subscribers of a failed process, or missing from its logs, are
/// streams that never opened.
pub fn merge_workers(
    outcomes: Vec<(usize, Result<Vec<SubscriberLog>, String>)>,
) -> Vec<SubscriberLog> {
    let lost = |why: String| SubscriberLog {
        failure: Some((0, why)),
        ..SubscriberLog::default()
    };
    let mut all = Vec::new();
    for (assigned, outcome) in outcomes {
        match outcome {
            Ok(mut logs) => {
                let missing = assigned.saturating_sub(logs.len());
                all.append(&mut logs);
                all.extend((0..missing).map(|_| lost("no answer".into())));
            }
            Err(why) => all.extend((0..assigned).map(|_| lost(format!("worker failed: {why}")))),
        }
    }
    all
}

/// Subscribers connected, failed, dropped, and failures by reason.
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    pub connected: u64,
    pub failed: u64,
    pub dropped: u64,
    pub failures: BTreeMap<String, u64>,
}

pub fn tally(logs: &[SubscriberLog]) -> Tally {
    let mut t = Tally::default();
    for log in logs {
        match (&log.connected_us, &log.failure) {
            (Some(_), None) => t.connected += 1,
            (Some(_), Some((_, why))) => {
                t.connected += 1;
                t.dropped += 1;
                *t.failures.entry(format!("dropped: {why}")).or_default() += 1;
            }
            (None, failure) => {
                t.failed += 1;
                let why = failure.as_ref().map_or("no answer", |(_, w)| w.as_str());
                *t.failures.entry(why.to_owned()).or_default() += 1;
            }
        }
        if log.bad_ids > 0 {
            *t.failures
                .entry("messages without a stream id".into())
                .or_default() += log.bad_ids;
        }
    }
    t
}

/// Who holds the streams: this process, or its workers (those that failed, with why).
enum Holders {
    Here(Held),
    Workers(Vec<(usize, Result<Worker, String>)>),
}

impl Holders {
    async fn stop(self) -> Vec<SubscriberLog> {
        match self {
            Holders::Here(held) => {
                let count = held.count;
                merge_workers(vec![(count, Ok(held.stop().await))])
            }
            Holders::Workers(workers) => {
                let stops = workers.into_iter().map(|(assigned, worker)| async move {
                    let logs = match worker {
                        Ok(w) => w.stop().await,
                        Err(why) => Err(why),
                    };
                    (assigned, logs)
                });
                merge_workers(futures::future::join_all(stops).await)
            }
        }
    }
}

/// The whole of `loadgen watch`.
pub async fn run(o: &WatchOptions) -> anyhow::Result<WatchReport> {
    if o.subscribers == 0 || o.subscribers > MAX_SUBSCRIBERS {
        bail!("--subscribers is 1 to {MAX_SUBSCRIBERS}");
    }
    if o.changes == 0 || o.changes > 100 {
        bail!("--changes is 1 to 100");
    }
    if !(o.ramp.is_finite() && o.ramp > 0.0 && o.ramp <= 100_000.0) {
        bail!("--ramp is streams per second, above 0 and at most 100,000");
    }
    if !(o.reads.is_finite() && (0.0..=10_000.0).contains(&o.reads)) {
        bail!("--reads is reads per second, 0 to 10,000");
    }
    if o.per_address == 0 {
        bail!("--per-address is at least 1");
    }
    if o.per_worker == 0 {
        bail!("--per-worker is at least 1");
    }
    let target = crate::target(&o.target)?;
    let region = match &o.region {
        Some(r) => target.region(r)?.clone(),
        None => target.regions[0].clone(),
    };
    let api = Api::new(Duration::from_secs(30))?;
    let event = match &o.event {
        Some(id) => fixture::existing_event(&api, &target, id).await?,
        None => {
            let home = o.home.clone().unwrap_or_else(|| region.name.clone());
            let tiers = parse_tiers(&o.tiers)?;
            let name = format!("{} event", o.title);
            let event = fixture::create_event(&api, &target, &home, &name, &tiers, 600).await?;
            fixture::wait_until_visible(&api, &target, &event, Duration::from_secs(120)).await?;
            event
        }
    };
    let tier = event
        .tiers
        .iter()
        .find(|(_, n)| *n > 0)
        .or(event.tiers.first())
        .map(|(t, _)| t.clone())
        .context("the event has no tiers")?;
    let writer_region = o.writer.clone().unwrap_or_else(|| event.home.clone());
    let writer_router = target.region(&writer_region)?.router.clone();
    let writer_token = one_user_token(&api, &target, &writer_region).await?;
    // Past --per-worker streams, worker processes hold them, each its share.
    let workers = o.subscribers.div_ceil(o.per_worker);
    let per_process = o.subscribers.div_ceil(workers) as u64;
    let open_file_limit =
        descriptors::raise_open_files(per_process + 4096).context("raising the open-file limit")?;
    if open_file_limit < per_process + 1024 {
        // Without CAP_SYS_RESOURCE not even root raises the hard limit: the streams past it
        // fail with "Too many open files", and the report says so.
        eprintln!(
            "loadgen's open-file limit is {open_file_limit} and could not be raised: at most \
             about {} of each process's {per_process} streams can open (lower --per-worker)",
            open_file_limit.saturating_sub(1024),
        );
    }

    let epoch_us = unix_micros();
    let started = instant_at(epoch_us);
    let plan = |worker| WorkerPlan {
        routers: region.routers.clone(),
        path: format!("/api/v1/events/{}/stream", event.id),
        subscribers: o.subscribers,
        worker,
        workers,
        ramp: o.ramp,
        per_address: o.per_address,
        connect_timeout_ms: o.connect_timeout.as_millis() as u64,
        epoch_us,
    };
    let all_settled = plan(0).all_settled(started);
    eprintln!(
        "opening {} streams to {} at {:.0}/s in {workers} process(es)",
        o.subscribers,
        region.routers.join(", "),
        o.ramp
    );
    let (holders, answered) = if workers <= 1 {
        let held = Held::open(&plan(0), started).await?;
        let answered = held.settle(all_settled).await;
        (Holders::Here(held), answered)
    } else {
        let program = std::env::current_exe().context("finding loadgen's own program")?;
        let mut spawned = Vec::new();
        for w in 0..workers {
            let plan = plan(w);
            let worker = Worker::spawn(&program, &plan)
                .await
                .map_err(|e| format!("{e:#}"));
            spawned.push((plan.count(), worker));
        }
        let mut answered = 0;
        // A worker that is late past the run's deadline (and a margin) counts as failed.
        let deadline = all_settled + Duration::from_secs(10);
        for (_, worker) in &mut spawned {
            if let Ok(w) = worker {
                match w.settled(deadline).await {
                    Ok(n) => answered += n,
                    Err(why) => *worker = Err(why),
                }
            }
        }
        (Holders::Workers(spawned), answered)
    };
    let connecting_s = started.elapsed().as_secs_f64();
    eprintln!(
        "{answered} of {} streams answered in {connecting_s:.1} s; holding them",
        o.subscribers
    );

    // The hold: reads alongside, the writer's bookings, then a settle time.
    let hold_started = Instant::now();
    let writes = o.change_interval.mul_f64(o.changes as f64);
    let hold = o.duration.max(writes + SETTLE);
    let recorder = Arc::new(Recorder::default());
    let groups = if target.ensure_loopback().is_ok() {
        target.cpu_groups(std::process::id())
    } else {
        Vec::new()
    };
    let cpu_start = (!groups.is_empty()).then(|| cpu::sample(&groups, &cpu::Snapshot::take()));
    let reads = tokio::spawn(read_load(
        api.clone(),
        recorder.clone(),
        region.name.clone(),
        region.router.clone(),
        event.clone(),
        o.reads,
        hold_started + hold,
    ));
    let mut changes = Vec::new();
    let mut held = Vec::new();
    for k in 0..o.changes {
        let due = hold_started + Duration::from_millis(500) + o.change_interval.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        let sent = Instant::now();
        let sent_us = sent.duration_since(started).as_micros() as u64;
        let reply = api
            .reserve(
                &writer_router,
                &writer_token,
                &event.id,
                &[(tier.clone(), 1)],
            )
            .await;
        let key = Key {
            client: writer_region.clone(),
            home: event.home.clone(),
            op: Op::Reserve,
        };
        recorder.record(key, sent.elapsed(), &reply.answer);
        if let Some(id) = reply.body["bookingId"].as_str() {
            held.push(SeenBooking {
                booking_id: id.to_owned(),
                home: event.home.clone(),
                quantity: 1,
            });
        }
        changes.push(Change {
            sent_us,
            lsn: reply.body["consistencyToken"]
                .as_str()
                .and_then(token_lsn)
                .filter(|_| reply.answer.ok()),
            answer: format!(
                "{} {}",
                reply.answer.status,
                reply.answer.code.as_deref().unwrap_or("")
            )
            .trim()
            .to_owned(),
        });
    }
    tokio::time::sleep_until((hold_started + hold).into()).await;
    // Measured while the streams are still held.
    let resident = memory::routers_and_nodes(&target);
    let cpu_usage = cpu_start.map(|start| {
        let end = cpu::sample(&groups, &cpu::Snapshot::take());
        cpu::usage(
            &groups,
            &start,
            &end,
            hold_started.duration_since(started).as_secs_f64(),
            hold_started.elapsed().as_secs_f64(),
            recorder.requests.load(Ordering::Relaxed),
        )
    });
    let held_s = hold_started.elapsed().as_secs_f64();
    let _ = reads.await;
    let logs = holders.stop().await;
    let Tally {
        connected,
        failed,
        dropped,
        failures,
    } = tally(&logs);
    let deliveries = deliveries(&changes, &logs);
    drop(logs);
    let audit = if o.no_audit || !event.created {
        None
    } else {
        Some(crate::audit::run(&target, &[&event], &held, &[]).await?)
    };
    Ok(WatchReport {
        title: o.title.clone(),
        region: region.name.clone(),
        writer_region,
        event,
        subscribers: o.subscribers,
        connected,
        failed,
        dropped,
        failures,
        ramp_per_second: o.ramp,
        connecting_s,
        held_s,
        source_addresses: o.subscribers.div_ceil(o.per_address),
        routers: region.routers.len(),
        workers,
        open_file_limit,
        changes: deliveries,
        rows: recorder.rows(held_s, &target),
        memory: resident,
        cpu: cpu_usage,
        audit,
    })
}

/// Reads of the event page through `router` at `per_second` until `until`, each timed from
/// when it was due, each on its own task so a slow answer delays no other.
async fn read_load(
    api: Api,
    recorder: Arc<Recorder>,
    client: String,
    router: String,
    event: Event,
    per_second: f64,
    until: Instant,
) {
    if per_second <= 0.0 {
        return;
    }
    let start = Instant::now();
    let spacing = Duration::from_secs_f64(1.0 / per_second);
    let mut reads = tokio::task::JoinSet::new();
    for k in 0u64.. {
        let due = start + spacing.mul_f64(k as f64);
        if due >= until {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let (api, recorder) = (api.clone(), recorder.clone());
        let key = Key {
            client: client.clone(),
            home: event.home.clone(),
            op: Op::Event,
        };
        let (router, id) = (router.clone(), event.id.clone());
        reads.spawn(async move {
            let reply = api.event(&router, &id).await;
            recorder.record(key, due.elapsed(), &reply.answer);
        });
        while reads.try_join_next().is_some() {}
    }
    while reads.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(connected: Option<u64>, messages: &[(u64, u64)]) -> SubscriberLog {
        SubscriberLog {
            connected_us: connected,
            messages: messages.to_vec(),
            ..SubscriberLog::default()
        }
    }

    fn change(sent_us: u64, lsn: Option<u64>) -> Change {
        Change {
            sent_us,
            lsn,
            answer: "200".into(),
        }
    }

    #[test]
    fn tokens_give_their_commit_lsn() {
        assert_eq!(token_lsn("us-east:0/3A1B2C8"), Some(0x3A1B2C8));
        assert_eq!(token_lsn("eu-west:1/0"), Some(1 << 32));
        for bad in [
            "",
            "us-east",
            "us-east:",
            "us-east:3A1B2C8",
            "x:0/zz",
            "x:123456789/0",
        ] {
            assert_eq!(token_lsn(bad), None, "{bad}");
        }
        assert_eq!(lsn_text(0x1_0000_00FF), "1/FF");
    }

    #[test]
    fn a_change_is_delivered_by_the_first_message_at_or_past_its_lsn() {
        // Sent at 10 ms with LSN 100.
        let changes = [change(10_000, Some(100))];
        let logs = [
            // The initial state (LSN 50), then the change at 210 ms: 200 ms late.
            log(Some(1_000), &[(50, 1_000), (100, 210_000), (120, 400_000)]),
            // A later LSN carries it too: 1.5 s late.
            log(Some(2_000), &[(50, 2_000), (130, 1_510_000)]),
            // Never got it.
            log(Some(3_000), &[(50, 3_000)]),
            // Connected after the change was sent: not one of its subscribers.
            log(Some(20_000), &[(100, 20_000)]),
            // Never connected.
            log(None, &[]),
        ];
        let d = &deliveries(&changes, &logs)[0];
        assert_eq!(d.lsn.as_deref(), Some("0/64"));
        assert_eq!((d.subscribers, d.delivered, d.within_1s), (3, 2, 1));
        assert!((d.share_within_1s - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(d.p50_ms, Some(1500.0));
        // A third got nothing: p99 and max are not reached.
        assert_eq!((d.p99_ms, d.max_ms), (None, None));
    }

    #[test]
    fn percentiles_over_every_subscriber() {
        let changes = [change(0, Some(10))];
        let logs: Vec<SubscriberLog> = (1..=100u64)
            .map(|ms| log(Some(0), &[(10, ms * 1000)]))
            .collect();
        let d = &deliveries(&changes, &logs)[0];
        assert_eq!((d.subscribers, d.delivered, d.within_1s), (100, 100, 100));
        assert_eq!(d.share_within_1s, 1.0);
        assert_eq!(
            (d.p50_ms, d.p99_ms, d.max_ms),
            (Some(50.0), Some(99.0), Some(100.0))
        );
    }

    #[test]
    fn a_failed_booking_has_no_delivery_and_no_subscribers() {
        let d = &deliveries(&[change(0, None)], &[log(Some(0), &[(10, 5)])])[0];
        assert_eq!((d.lsn.as_deref(), d.subscribers, d.delivered), (None, 0, 0));
        assert_eq!(d.p50_ms, None);
    }

    #[test]
    fn workers_logs_merge_into_one_run_and_a_failed_worker_counts_all_its_streams() {
        let dropped = SubscriberLog {
            connected_us: Some(5),
            failure: Some((900, "closed".into())),
            ..SubscriberLog::default()
        };
        let outcomes = vec![
            // A worker whose two streams both got the change.
            (
                2,
                Ok(vec![
                    log(Some(1), &[(100, 300_010)]),
                    log(Some(2), &[(100, 700_010)]),
                ]),
            ),
            // One of three: a stream dropped and one whose task it lost.
            (3, Ok(vec![log(Some(3), &[(100, 1_400_010)]), dropped])),
            // A worker that died: its two streams never opened.
            (2, Err("exited (signal 9)".into())),
        ];
        let logs = merge_workers(outcomes);
        assert_eq!(logs.len(), 7);
        let t = tally(&logs);
        assert_eq!((t.connected, t.failed, t.dropped), (4, 3, 1));
        assert_eq!(
            t.failures,
            BTreeMap::from([
                ("dropped: closed".to_string(), 1),
                ("no answer".to_string(), 1),
                ("worker failed: exited (signal 9)".to_string(), 2),
            ])
        );
        // One delivery figure over every worker's subscribers (the dropped one included).
        let d = &deliveries(&[change(10, Some(100))], &logs)[0];
        assert_eq!((d.subscribers, d.delivered, d.within_1s), (4, 3, 2));
        assert_eq!(d.p50_ms, Some(700.0));
    }

    #[test]
    fn worker_lines_and_plans_round_trip_and_plans_split_the_subscribers() {
        let done = WorkerLine::Done {
            logs: vec![SubscriberLog {
                connected_us: Some(1),
                failure: Some((2, "x".into())),
                messages: vec![(3, 4)],
                bad_ids: 1,
            }],
        };
        let text = serde_json::to_string(&done).unwrap();
        assert_eq!(serde_json::from_str::<WorkerLine>(&text).unwrap(), done);
        let plan = |worker| WorkerPlan {
            routers: vec!["http://127.0.0.1:1".into()],
            path: "/s".into(),
            subscribers: 10,
            worker,
            workers: 3,
            ramp: 100.0,
            per_address: 30,
            connect_timeout_ms: 1000,
            epoch_us: 0,
        };
        // Every subscriber in exactly one worker, counts agreeing with the indices.
        let mut all: Vec<usize> = (0..3)
            .flat_map(|w| plan(w).indices().collect::<Vec<_>>())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(
            (plan(0).count(), plan(1).count(), plan(2).count()),
            (4, 3, 3)
        );
        let text = serde_json::to_string(&plan(1)).unwrap();
        assert_eq!(serde_json::from_str::<WorkerPlan>(&text).unwrap(), plan(1));
    }

    #[test]
    fn a_wall_clock_time_maps_to_this_process_instant() {
        let now = unix_micros();
        let at = instant_at(now - 2_000_000);
        let ago = at.elapsed().as_secs_f64();
        assert!((1.9..2.5).contains(&ago), "{ago}");
    }

    #[test]
    fn routers_resolve_to_a_socket_and_host() {
        let (addr, host) = socket_of("http://127.0.0.1:18800").unwrap();
        assert_eq!(addr, "127.0.0.1:18800".parse().unwrap());
        assert_eq!(host, "127.0.0.1:18800");
        let (addr, _) = socket_of("http://localhost:80/api").unwrap();
        assert!(addr.ip().is_loopback());
    }
}
