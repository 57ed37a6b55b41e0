//! What the load saw, per (client region, home region, operation): an HDR histogram of latency,
//! answers by status and error code, and cache hits. Plus running totals for the progress line
//! and the bookings the audit must find.

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
        }
    }

    /// Answers that are the platform doing its job, not failing: a sold-out tier.
    fn expected_refusal(self, code: &str) -> bool {
        self == Op::Reserve && code == "sold_out"
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
                let h = &s.latency_us;
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                let count = h.len();
                Row {
                    client: key.client.clone(),
                    home: key.home.clone(),
                    op: key.op,
                    count,
                    ok: s.ok,
                    refused: s.refused,
                    errors: s.errors,
                    per_second: count as f64 / seconds.max(1e-9),
                    p50_ms: ms(0.50),
                    p95_ms: ms(0.95),
                    p99_ms: ms(0.99),
                    max_ms: h.max() as f64 / 1000.0,
                    codes: s.codes.clone(),
                    cache_hits: s.cache_hits,
                    cache_misses: s.cache_misses,
                    rtt_ms: if key.home == ALL_REGIONS {
                        None
                    } else {
                        target.rtt_ms(&key.client, &key.home)
                    },
                }
            })
            .collect();
        out.sort_by(|a, b| (a.op, &a.client, &a.home).cmp(&(b.op, &b.client, &b.home)));
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
