//! A run's report: what was asked, what each (client region, home region, operation) saw, the
//! nodes' cache counters, and the audit. Printed as a table, written as JSON (which
//! `BENCHMARKS.md` is built from) and drawn as SVG.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::fixture::Event;
use crate::scenario::Plan;
use crate::stats::Row;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub title: String,
    pub plan: Plan,
    /// "closed loop, 256 users" or "open loop, 5000 journeys/s".
    pub arrivals: String,
    pub client_regions: Vec<String>,
    pub duration_s: f64,
    pub elapsed_s: f64,
    pub cut_off: u64,
    pub late_arrivals: u64,
    pub events: Vec<Event>,
    pub totals: Totals,
    pub rows: Vec<Row>,
    pub nodes: Vec<NodeCounters>,
    pub audit: Option<Audit>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub journeys: u64,
    pub requests: u64,
    pub ok: u64,
    pub refused: u64,
    pub errors: u64,
    pub per_second: f64,
}

/// A node's read cache over the run, from its `/api/v1/cluster` before and after.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCounters {
    pub region: String,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub hit_ratio: f64,
    /// Misses go to the database (the local replica, or the primary while it lags).
    pub database_reads_per_second: f64,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.totals.errors == 0
            && self.cut_off == 0
            && self.audit.as_ref().is_none_or(Audit::passed)
    }

    /// The rows of one operation.
    pub fn op_rows(&self, op: crate::stats::Op) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(move |r| r.op == op)
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title);
        let _ = writeln!(
            out,
            "{}; {:.1} s; {} journeys, {} requests, {:.0}/s; {} ok, {} refused (sold out), {} errors",
            self.arrivals,
            self.elapsed_s,
            self.totals.journeys,
            self.totals.requests,
            self.totals.per_second,
            self.totals.ok,
            self.totals.refused,
            self.totals.errors
        );
        if self.late_arrivals > 0 || self.cut_off > 0 {
            let _ = writeln!(
                out,
                "{} arrivals waited for the in-flight cap; {} journeys cut off at the end",
                self.late_arrivals, self.cut_off
            );
        }
        let _ = writeln!(
            out,
            "\n{:<13} {:<28} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6}  answers other than 2xx",
            "operation",
            "client → home",
            "count",
            "per s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "RTT ms",
            "p50/RTT"
        );
        for r in &self.rows {
            let (rtt, ratio) = match r.rtt_ms.filter(|rtt| *rtt > 0.0) {
                Some(rtt) => (format!("{rtt:.0}"), format!("{:.2}", r.p50_ms / rtt)),
                None => ("-".into(), "-".into()),
            };
            let codes: Vec<String> = r.codes.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
            let _ = writeln!(
                out,
                "{:<13} {:<28} {:>8} {:>8.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>6}  {}",
                r.op.name(),
                format!("{} → {}", r.client, r.home),
                r.count,
                r.per_second,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
                r.max_ms,
                rtt,
                ratio,
                codes.join(", ")
            );
        }
        for n in self
            .nodes
            .iter()
            .filter(|n| n.cache_hits + n.cache_misses > 0)
        {
            let _ = writeln!(
                out,
                "\ncache {}: {} hits, {} misses, hit ratio {:.4}, {:.1} database reads/s",
                n.region, n.cache_hits, n.cache_misses, n.hit_ratio, n.database_reads_per_second
            );
        }
        match &self.audit {
            None => {
                let _ = writeln!(out, "\naudit: not run (no primaries given)");
            }
            Some(audit) => {
                let verdict = if audit.passed() { "passed" } else { "FAILED" };
                let _ = writeln!(out, "\naudit {verdict}; tickets now {:?}", audit.tickets);
                for c in &audit.checks {
                    let mark = if c.passed() { "ok  " } else { "FAIL" };
                    let _ = writeln!(
                        out,
                        "  {mark} {:<13} {}: expected {}, found {}",
                        c.region, c.name, c.expected, c.found
                    );
                }
                if !audit.skipped_regions.is_empty() {
                    let _ = writeln!(
                        out,
                        "  not checked (no primary given): {}",
                        audit.skipped_regions.join(", ")
                    );
                }
            }
        }
        out
    }
}
