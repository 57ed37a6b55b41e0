//! What the load saw, per (client region, home region, operation): an HDR histogram of latency,
//! answers by status and error code, and cache hits; the same merged over home regions, per
//! (client region, operation). Plus running totals for the progress line and the bookings the
//! audit must find.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The operations a virtual user performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Op {
    Events,
    Event,
    Availability,
    Reserve,
    Confirm,
    Cancel,
    /// Join an event's waiting room (`POST /events/{id}/queue`).
    Join,
    /// Read one's place (`GET /events/{id}/queue/me`).
    Place,
    /// Take one's pass once admitted (`POST /events/{id}/queue/pass`).
    Pass,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Events => "events",
            Op::Event => "event",
            Op::Availability => "availability",
            Op::Reserve => "reserve",
            Op::Confirm => "confirm",
            Op::Cancel => "cancel",
            Op::Join => "join",
            Op::Place => "place",
            Op::Pass => "pass",
        }
    }

    /// Answers that are the platform doing its job, not failing: a sold-out tier, or a user at
    /// the event's per-user ticket cap (an event loadgen did not make may have a low one).
    fn expected_refusal(self, code: &str) -> bool {
        self == Op::Reserve && matches!(code, "sold_out" | "ticket_limit")
    }
}

/// Home region of an operation that reads every region (`/events`).
pub const ALL_REGIONS: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub client: String,
    pub home: String,
    pub op: Op,
}

/// How one request ended.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status; 0 when no answer came (connect failure, timeout).
    pub status: u16,
    /// The JSON error code, or the transport failure.
    pub code: Option<String>,
    /// `X-Cache: hit|miss` on reads.
    pub cache_hit: Option<bool>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// "409 sold_out", "503 unavailable", "0 timeout".
    fn label(&self) -> String {
        format!("{} {}", self.status, self.code.as_deref().unwrap_or("-"))
    }
}

struct OpStats {
    latency_us: Histogram<u64>,
    ok: u64,
    refused: u64,
    errors: u64,
    codes: BTreeMap<String, u64>,
    cache_hits: u64,
    cache_misses: u64,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            // 1 µs to 10 minutes at 3 significant figures: ~200 KB per row, a few dozen rows.
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            ok: 0,
            refused: 0,
            errors: 0,
            codes: BTreeMap::new(),
            cache_hits: 0,
            cache_misses: 0,
        }
    }

    /// Adds `other`'s answers to these, latency histogram included.
    fn add(&mut self, other: &OpStats) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms of one shape");
        self.ok += other.ok;
        self.refused += other.refused;
        self.errors += other.errors;
        for (code, n) in &other.codes {
            *self.codes.entry(code.clone()).or_default() += n;
        }
        self.cache_hits += other.cache_hits;
        self.cache_misses += other.cache_misses;
    }

    fn row(&self, key: &Key, seconds: f64, rtt_ms: Option<f64>) -> Row {
        let h = &self.latency_us;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let count = h.len();
        Row {
            client: key.client.clone(),
            home: key.home.clone(),
            op: key.op,
            count,
            ok: self.ok,
            refused: self.refused,
            errors: self.errors,
            per_second: count as f64 / seconds.max(1e-9),
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            max_ms: h.max() as f64 / 1000.0,
            codes: self.codes.clone(),
            cache_hits: self.cache_hits,
            cache_misses: self.cache_misses,
            rtt_ms,
        }
    }
}

/// A booking the load saw confirmed, for the audit to find.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeenBooking {
    pub booking_id: String,
    pub home: String,
    pub quantity: u32,
}

#[derive(Default)]
pub struct Recorder {
    rows: Mutex<HashMap<Key, OpStats>>,
    confirmed: Mutex<Vec<SeenBooking>>,
    held: Mutex<Vec<SeenBooking>>,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub journeys: AtomicU64,
}

impl Recorder {
    pub fn record(&self, key: Key, latency: Duration, answer: &Answer) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let op = key.op;
        let mut rows = self.rows.lock().expect("stats lock");
        let stats = rows.entry(key).or_insert_with(OpStats::new);
        stats.latency_us.saturating_record(micros);
        match answer.cache_hit {
            Some(true) => stats.cache_hits += 1,
            Some(false) => stats.cache_misses += 1,
            None => {}
        }
        if answer.ok() {
            stats.ok += 1;
            return;
        }
        *stats.codes.entry(answer.label()).or_default() += 1;
        if answer
            .code
            .as_deref()
            .is_some_and(|code| op.expected_refusal(code))
        {
            stats.refused += 1;
        } else {
            stats.errors += 1;
            drop(rows);
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every row, sorted, with its percentiles; `seconds` is the measured span.
    pub fn rows(&self, seconds: f64, target: &crate::target::Target) -> Vec<Row> {
        let rows = self.rows.lock().expect("stats lock");
        let mut out: Vec<Row> = rows
            .iter()
            .map(|(key, s)| {
                let rtt = if key.home == ALL_REGIONS {
                    None
                } else {
                    target.rtt_ms(&key.client, &key.home)
                };
                s.row(key, seconds, rtt)
            })
            .collect();
        sort(&mut out);
        out
    }

    /// A row per (client region, operation) over every home region (home `*`): what a region's
    /// users saw of an operation, wherever the data lives.
    pub fn client_region_rows(&self, seconds: f64) -> Vec<Row> {
        let rows = self.rows.lock().expect("stats lock");
        let mut merged: BTreeMap<Key, OpStats> = BTreeMap::new();
        for (key, s) in rows.iter() {
            let key = Key {
                client: key.client.clone(),
                home: ALL_REGIONS.to_owned(),
                op: key.op,
            };
            merged.entry(key).or_insert_with(OpStats::new).add(s);
        }
        let mut out: Vec<Row> = merged
            .iter()
            .map(|(key, s)| s.row(key, seconds, None))
            .collect();
        sort(&mut out);
        out
    }

    pub fn saw_held(&self, booking: SeenBooking) {
        self.held.lock().expect("held lock").push(booking);
    }

    pub fn saw_confirmed(&self, booking: SeenBooking) {
        self.confirmed.lock().expect("confirmed lock").push(booking);
    }

    pub fn held(&self) -> Vec<SeenBooking> {
        self.held.lock().expect("held lock").clone()
    }

    pub fn confirmed(&self) -> Vec<SeenBooking> {
        self.confirmed.lock().expect("confirmed lock").clone()
    }
}

/// By operation, then client region, then home region.
fn sort(rows: &mut [Row]) {
    rows.sort_by(|a, b| (a.op, &a.client, &a.home).cmp(&(b.op, &b.client, &b.home)));
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub client: String,
    pub home: String,
    pub op: Op,
    pub count: u64,
    pub ok: u64,
    /// Refusals that are the platform working (a sold-out tier), not errors.
    pub refused: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Non-2xx answers by "status code".
    pub codes: BTreeMap<String, u64>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// The simulated round trip between the two regions, when the cluster says.
    pub rtt_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(client: &str, home: &str, op: Op) -> Key {
        Key {
            client: client.into(),
            home: home.into(),
            op,
        }
    }

    fn answer(status: u16, code: Option<&str>, cache_hit: Option<bool>) -> Answer {
        Answer {
            status,
            code: code.map(str::to_owned),
            cache_hit,
        }
    }

    #[test]
    fn client_region_rows_merge_every_home_region() {
        let recorder = Recorder::default();
        let ms = Duration::from_millis;
        for _ in 0..90 {
            recorder.record(
                key("us-east", "us-east", Op::Availability),
                ms(1),
                &answer(200, None, Some(true)),
            );
        }
        for _ in 0..10 {
            recorder.record(
                key("us-east", "eu-west", Op::Availability),
                ms(50),
                &answer(200, None, Some(false)),
            );
        }
        recorder.record(
            key("us-east", "eu-west", Op::Availability),
            ms(60),
            &answer(503, Some("unavailable"), None),
        );
        recorder.record(
            key("eu-west", "eu-west", Op::Availability),
            ms(2),
            &answer(200, None, None),
        );
        let rows = recorder.client_region_rows(10.0);
        assert_eq!(rows.len(), 2);
        let us = rows.iter().find(|r| r.client == "us-east").unwrap();
        assert_eq!(us.home, ALL_REGIONS);
        assert_eq!((us.count, us.ok, us.errors), (101, 100, 1));
        assert_eq!((us.cache_hits, us.cache_misses), (90, 10));
        assert_eq!(us.codes["503 unavailable"], 1);
        // The slow tenth of the answers came from the remote home: p95 sees them, p50 not.
        assert!(us.p50_ms < 2.0 && us.p95_ms >= 50.0, "{us:?}");
        assert!((us.per_second - 10.1).abs() < 1e-9);
        assert_eq!(us.rtt_ms, None);
    }
}
