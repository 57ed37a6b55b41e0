//! Section 1: one hot event homed in one region: reserves before and after group commit, the
//! open loop, the primary's own claim ceiling measured by pgbench, and the target on their
//! ratio.

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;

use super::cpu;
use super::format::{audit_line, audit_passed, ms, thousands, verdict};
use super::results::{pgbench_tps, report, text};
use super::targets::{Outcome, Verdict};
use super::Section;
use crate::report::Report;
use crate::stats::{Op, Row};

/// Issue 9: reserves through the router at 256 users against pgbench's single-ticket claim at
/// 16 clients, with p99 under 50 ms, no errors and the audit passed.
const RATIO_TARGET: f64 = 1.5;
const P99_TARGET_MS: f64 = 50.0;

fn reserve_row(report: &Report) -> anyhow::Result<&Row> {
    report
        .op_rows(Op::Reserve)
        .next()
        .with_context(|| format!("{}: no reserve row", report.title))
}

pub(super) fn hot_event(dir: &Path) -> anyhow::Result<Section> {
    let mut md = String::new();
    let before: Vec<Report> = ["hot-before-64.json", "hot-before-256.json"]
        .iter()
        .map(|n| report(dir, n))
        .collect::<anyhow::Result<_>>()?;
    let after: Vec<Report> = ["hot-64.json", "hot-256.json"]
        .iter()
        .map(|n| report(dir, n))
        .collect::<anyhow::Result<_>>()?;
    let open = report(dir, "hot-open.json")?;
    let three = report(dir, "hot-three-regions-256.json")?;
    let _ = writeln!(
        md,
        "## 1. Hot event, one home region\n\n\
         One event homed in us-east with **200,000 GA** tickets (a fresh event per run, so none \
         runs into sold out). Virtual users in us-east reserve 1 GA each **through the us-east \
         router**, closed loop, each with its own account; the router gives every write an \
         `Idempotency-Key`. A one-region devcluster (`--regions us-east`: router, node, durable \
         primary, one replica) unless said otherwise.\n\n\
         | reserves | users | per second | p50 | p95 | p99 | max | errors | audit | CPU per request |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    const BEFORE: &str = "one transaction each (group commit off: before)";
    const AFTER: &str = "group commit (after)";
    const THREE: &str = "group commit, three-region devcluster";
    for r in &before {
        hot_event_row(&mut md, BEFORE, r)?;
    }
    for r in &after {
        hot_event_row(&mut md, AFTER, r)?;
    }
    hot_event_row(&mut md, THREE, &three)?;
    md.push('\n');
    let labels = [
        format!("before, {}", users(&before[0])),
        format!("before, {}", users(&before[1])),
        format!("after, {}", users(&after[0])),
        format!("after, {}", users(&after[1])),
        format!("three regions, {}", users(&three)),
        format!(
            "open loop, {}",
            open.arrivals.trim_start_matches("open loop, ")
        ),
    ];
    let runs: Vec<(&str, &Report)> = labels
        .iter()
        .map(String::as_str)
        .zip(before.iter().chain(&after).chain([&three, &open]))
        .collect();
    cpu::runs_table(&mut md, &runs);
    hot_event_open_loop(&mut md, &open)?;
    let verdict = hot_event_against_the_claim(&mut md, dir, &before, &after)?;
    Ok(Section {
        markdown: md,
        verdicts: vec![verdict],
    })
}

fn users(report: &Report) -> &str {
    report.arrivals.trim_start_matches("closed loop, ")
}

/// Reserves arriving at a fixed rate, timed from their scheduled arrival.
fn hot_event_open_loop(md: &mut String, open: &Report) -> anyhow::Result<()> {
    let open_row = reserve_row(open)?;
    let _ = writeln!(
        md,
        "Open loop, same setup: {} arriving at a fixed rate, each timed from its scheduled \
         arrival, so a queue cannot hide (no coordinated omission): **{} reserves/s served, p50 {}, p95 {}, p99 {}, max \
         {}**; {} arrivals waited for the in-flight cap; {} errors; audit {}; CPU per request, \
         every process: {}.\n",
        open.arrivals.trim_start_matches("open loop, "),
        thousands(open_row.per_second),
        ms(open_row.p50_ms),
        ms(open_row.p95_ms),
        ms(open_row.p99_ms),
        ms(open_row.max_ms),
        open.late_arrivals,
        open.totals.errors,
        audit_line(open),
        cpu::total(open)
    );
    Ok(())
}

/// The reserve rates against what one primary claims alone (pgbench), the target on the ratio
/// at 256 users, and group commit's gain over one transaction per reserve; `before` and
/// `after` are the 64- and 256-user runs.
fn hot_event_against_the_claim(
    md: &mut String,
    dir: &Path,
    before: &[Report],
    after: &[Report],
) -> anyhow::Result<Verdict> {
    let single_16 = pgbench_tps(&text(dir, "pgbench-1-16.txt")?)?;
    let single_64 = pgbench_tps(&text(dir, "pgbench-1-64.txt")?)?;
    let batch_64 = pgbench_tps(&text(dir, "pgbench-32-64.txt")?)?;
    let at_256 = reserve_row(&after[1])?;
    let at_64 = reserve_row(&after[0])?;
    let _ = writeln!(
        md,
        "PostgreSQL alone, same run, same primary, a fresh 200,000-ticket event: pgbench \
         (`-M prepared`, 15 s) running only the claim statement \
         `UPDATE tickets … WHERE id = (SELECT id … FOR UPDATE SKIP LOCKED LIMIT 1)` \
         (`bench/claim-1.sql`); pgbench is not loadgen, so these rows have no CPU per request:\n\n\
         | pgbench | clients | statements/s | tickets/s |\n|---|---|---|---|\n\
         | 1 ticket per statement | 16 | {} | {} |\n\
         | 1 ticket per statement | 64 | {} | {} |\n\
         | 32 tickets per statement (`bench/claim-32.sql`) | 64 | {} | {} |\n",
        thousands(single_16),
        thousands(single_16),
        thousands(single_64),
        thousands(single_64),
        thousands(batch_64),
        thousands(batch_64 * 32.0),
    );
    let ratio = at_256.per_second / single_16;
    let errors = after[1].totals.errors;
    let audit = audit_passed(&after[1]);
    let met = ratio >= RATIO_TARGET && at_256.p99_ms < P99_TARGET_MS && errors == 0 && audit;
    let measured = format!(
        "{ratio:.2} ({} / {} per second); p99 {}; {errors} errors; audit {}",
        thousands(at_256.per_second),
        thousands(single_16),
        ms(at_256.p99_ms),
        audit_line(&after[1])
    );
    let _ = writeln!(
        md,
        "**Reserves through the router at 256 users ÷ pgbench's single-ticket claim at 16 \
         clients, same run: {} / {} = {ratio:.2}** (at 64 users: {:.2}). \
         Target: at least {RATIO_TARGET}, with p99 under {P99_TARGET_MS} ms, 0 errors and the \
         audit passed: {} (p99 {}, {errors} errors, audit {}). Each reservation through the \
         router is an HTTP request through two hops, a JWT check, validation, an idempotency \
         lookup and a booking row as well as the claim; group commit shares one transaction and \
         one durable commit among a batch, which is how it can pass the \
         one-statement-per-commit ceiling.\n",
        thousands(at_256.per_second),
        thousands(single_16),
        at_64.per_second / single_16,
        verdict(met),
        ms(at_256.p99_ms),
        audit_line(&after[1]),
    );
    let before_256 = reserve_row(&before[1])?.per_second;
    let before_64 = reserve_row(&before[0])?.per_second;
    let _ = writeln!(
        md,
        "Group commit against one transaction per reserve: **{:.1}× at 64 users, {:.1}× at 256**. \
         Chart: [bench/charts/hot-256.svg](bench/charts/hot-256.svg).\n",
        at_64.per_second / before_64,
        at_256.per_second / before_256
    );
    Ok(Verdict {
        figure: "Hot-event reserves through the router at 256 users ÷ pgbench's single-ticket \
                 claim at 16 clients (section 1)"
            .into(),
        target: format!("≥ {RATIO_TARGET}, p99 < {P99_TARGET_MS} ms, 0 errors, audit passed"),
        outcome: Some(Outcome {
            measured,
            met,
            cpu: cpu::total(&after[1]),
        }),
    })
}

/// A row of the hot event's table: one run's reserves.
fn hot_event_row(md: &mut String, label: &str, r: &Report) -> anyhow::Result<()> {
    let row = reserve_row(r)?;
    let _ = writeln!(
        md,
        "| {label} | {} | **{}** | {} | {} | {} | {} | {} | {} | {} |",
        users(r),
        thousands(row.per_second),
        ms(row.p50_ms),
        ms(row.p95_ms),
        ms(row.p99_ms),
        ms(row.max_ms),
        r.totals.errors,
        audit_line(r),
        cpu::total(r)
    );
    Ok(())
}
