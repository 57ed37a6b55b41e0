//! `loadgen watch`: N subscribers each hold one live stream (`GET /events/{id}/stream`) through
//! one region's router, opened by the lean client (`sse`) from many loopback source addresses
//! at a ramped rate; then a writer books K times, and each subscriber notes when the first
//! message whose id (`wire::stream::StreamId`) is at or past the booking's commit LSN (from its
//! consistency token) reaches it. A delivery's delay is counted from when the writer SENT the
//! booking: an upper bound on the time since its commit. Alongside, a small read load measures
//! fresh reads while the streams are held; at the end, the routers' and nodes' resident memory
//! and every process's CPU.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
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
#[derive(Debug, Clone, Default, PartialEq)]
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
            "{} streams of event {} (home {}) through {}'s router: {} connected, {} failed, {} \
             dropped; connecting took {:.1} s at {:.0}/s from {} source addresses; held {:.1} s; \
             open-file limit {}",
            self.subscribers,
            self.event.id,
            self.event.home,
            self.region,
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
    let open_file_limit = descriptors::raise_open_files(o.subscribers as u64 + 4096)
        .context("raising the open-file limit")?;
    if open_file_limit < o.subscribers as u64 + 1024 {
        // Without CAP_SYS_RESOURCE not even root raises the hard limit: the streams past it
        // fail with "Too many open files", and the report says so.
        eprintln!(
            "loadgen's open-file limit is {open_file_limit} and could not be raised: at most              about {} of the {} streams can open",
            open_file_limit.saturating_sub(1024),
            o.subscribers
        );
    }

    let (server, host) = socket_of(&region.router)?;
    let started = Instant::now();
    let stream = Arc::new(Stream {
        server,
        host,
        path: format!("/api/v1/events/{}/stream", event.id),
        timeout: o.connect_timeout,
        started,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let settled = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let spacing = Duration::from_secs_f64(1.0 / o.ramp);
    eprintln!(
        "opening {} streams to {} at {:.0}/s",
        o.subscribers, region.router, o.ramp
    );
    for i in 0..o.subscribers {
        tokio::time::sleep_until((started + spacing.mul_f64(i as f64)).into()).await;
        tasks.spawn(subscriber(
            stream.clone(),
            sse::source_address(i, o.per_address),
            stop_rx.clone(),
            settled.clone(),
        ));
    }
    let all_settled = started + spacing.mul_f64(o.subscribers as f64) + o.connect_timeout;
    while settled.load(Ordering::Relaxed) < o.subscribers as u64 && Instant::now() < all_settled {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connecting_s = started.elapsed().as_secs_f64();
    eprintln!(
        "{} of {} streams answered in {connecting_s:.1} s; holding them",
        settled.load(Ordering::Relaxed),
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
    let _ = stop_tx.send(true);
    let mut logs = Vec::with_capacity(o.subscribers);
    while let Some(log) = tasks.join_next().await {
        if let Ok(log) = log {
            logs.push(log);
        }
    }

    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let (mut connected, mut failed, mut dropped) = (0, 0, 0);
    for log in &logs {
        match (&log.connected_us, &log.failure) {
            (Some(_), None) => connected += 1,
            (Some(_), Some((_, why))) => {
                connected += 1;
                dropped += 1;
                *failures.entry(format!("dropped: {why}")).or_default() += 1;
            }
            (None, failure) => {
                failed += 1;
                let why = failure.as_ref().map_or("no answer", |(_, w)| w.as_str());
                *failures.entry(why.to_owned()).or_default() += 1;
            }
        }
        if log.bad_ids > 0 {
            *failures
                .entry("messages without a stream id".into())
                .or_default() += log.bad_ids;
        }
    }
    failed += (o.subscribers - logs.len()) as u64;
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
    fn routers_resolve_to_a_socket_and_host() {
        let (addr, host) = socket_of("http://127.0.0.1:18800").unwrap();
        assert_eq!(addr, "127.0.0.1:18800".parse().unwrap());
        assert_eq!(host, "127.0.0.1:18800");
        let (addr, _) = socket_of("http://localhost:80/api").unwrap();
        assert!(addr.ip().is_loopback());
    }
}
