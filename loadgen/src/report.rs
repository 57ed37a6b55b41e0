//! A run's report: what was asked, what each (client region, home region, operation) saw, the
//! same per client region, the nodes' cache counters, the CPU each process spent per request,
//! and the audit. Printed as a table, written as JSON (which `BENCHMARKS.md` is built from) and
//! drawn as SVG.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::cpu::{Figure, Usage};
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
    /// Each operation per client region, over every home region (home `*`).
    #[serde(default)]
    pub client_region_rows: Vec<Row>,
    pub nodes: Vec<NodeCounters>,
    /// CPU per request per process over the steady window; none without the processes' PIDs.
    #[serde(default)]
    pub cpu: Option<Usage>,
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

/// A node's read cache over the run, from its `/cluster` (operations listener) before and after.
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

    /// The client-region rows that merge more than one home region (the others repeat a row).
    fn merged_client_rows(&self) -> impl Iterator<Item = &Row> {
        self.client_region_rows.iter().filter(|merged| {
            merged.home == crate::stats::ALL_REGIONS
                && self
                    .rows
                    .iter()
                    .filter(|r| r.op == merged.op && r.client == merged.client)
                    .count()
                    > 1
        })
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
            row_line(&mut out, r);
        }
        let merged: Vec<&Row> = self.merged_client_rows().collect();
        if !merged.is_empty() {
            let _ = writeln!(out, "per client region, over every home region (→ *):");
            for r in merged {
                row_line(&mut out, r);
            }
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
        if let Some(cpu) = &self.cpu {
            cpu_table(&mut out, cpu);
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

/// One (operation, client → home) line of the terminal table.
fn row_line(out: &mut String, r: &Row) {
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

/// CPU per process over the steady window: each region's router, node and PostgreSQL and
/// their sum, then devcluster, loadgen and the total.
fn cpu_table(out: &mut String, cpu: &Usage) {
    let _ = writeln!(
        out,
        "\nCPU from {:.1} s into the load to its end ({:.1} s, {} requests, {:.0}/s):",
        cpu.window_start_s, cpu.window_s, cpu.requests, cpu.per_second
    );
    let _ = writeln!(
        out,
        "  {:<12} {:<14} {:>8} {:>12} {:>12}",
        "process", "region", "CPU s", "µs/request", "% of a core"
    );
    let line = |out: &mut String, process: &str, region: &str, f: &Figure| {
        let per_request = f.us_per_request.map_or("-".into(), |us| format!("{us:.1}"));
        let _ = writeln!(
            out,
            "  {process:<12} {region:<14} {:>8.2} {per_request:>12} {:>12.1}",
            f.cpu_s, f.core_percent
        );
    };
    for region in &cpu.regions {
        for p in cpu
            .processes
            .iter()
            .filter(|p| p.region.as_ref() == Some(&region.region))
        {
            line(out, p.process.name(), &region.region, &p.figure);
        }
        line(out, "all", &region.region, &region.figure);
    }
    for p in cpu.processes.iter().filter(|p| p.region.is_none()) {
        line(out, p.process.name(), "-", &p.figure);
    }
    line(out, "total", "-", &cpu.total);
    if !cpu.missing.is_empty() {
        let _ = writeln!(
            out,
            "  not counted (ended or restarted during the window): {}",
            cpu.missing.join(", ")
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::scenario::{Outcomes, Scenario};
    use crate::stats::Op;

    /// A report of no load, for tests of what is made from reports.
    pub fn empty() -> Report {
        Report {
            title: "test".into(),
            plan: Plan {
                scenario: Scenario::Browse,
                mix: vec![(Scenario::Browse, 1)],
                min_quantity: 1,
                max_quantity: 1,
                outcomes: Outcomes {
                    confirm: 1,
                    fail: 0,
                    cancel: 0,
                    abandon: 0,
                },
                reads: vec![Op::Availability],
            },
            arrivals: "closed loop, 16 users".into(),
            client_regions: vec!["us-east".into()],
            duration_s: 10.0,
            elapsed_s: 10.0,
            cut_off: 0,
            late_arrivals: 0,
            events: Vec::new(),
            totals: Totals {
                journeys: 0,
                requests: 0,
                ok: 0,
                refused: 0,
                errors: 0,
                per_second: 0.0,
            },
            rows: Vec::new(),
            client_region_rows: Vec::new(),
            nodes: Vec::new(),
            cpu: None,
            audit: None,
        }
    }

    /// A row of `count` answers, all ok, with these percentiles.
    pub fn row(op: Op, client: &str, home: &str, count: u64, p50: f64, p95: f64, p99: f64) -> Row {
        Row {
            client: client.into(),
            home: home.into(),
            op,
            count,
            ok: count,
            refused: 0,
            errors: 0,
            per_second: count as f64 / 10.0,
            p50_ms: p50,
            p95_ms: p95,
            p99_ms: p99,
            max_ms: p99,
            codes: Default::default(),
            cache_hits: 0,
            cache_misses: 0,
            rtt_ms: None,
        }
    }

    #[test]
    fn a_report_from_before_cpu_accounting_still_reads() {
        let mut old = serde_json::to_value(empty()).unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("cpu");
        fields.remove("clientRegionRows");
        let back: Report = serde_json::from_value(old).unwrap();
        assert!(back.cpu.is_none() && back.client_region_rows.is_empty());
    }
}
