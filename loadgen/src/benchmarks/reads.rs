//! Reads: section 2 (availability of one hot event while it sells, through the node cache),
//! section 3 (availability on a cache miss, for a small and a huge event: the read must cost
//! the same) and section 4 (cached availability reads through one router, flat out).

use std::fmt::Write;
use std::path::Path;

use super::cpu;
use super::format::{audit_line, ms, thousands, verdict};
use super::results::{optional_report, report};
use super::targets::{Outcome, Verdict};
use super::Section;
use crate::report::Report;
use crate::stats::{Op, Row};

/// Issue 9: a cache miss costs the same for 1,000 tickets as for 1,000,000, and is fast.
const MISS_RATIO_TARGET: f64 = 1.5;
const MISS_P50_TARGET_MS: f64 = 2.0;
/// Issue 9: cached availability reads through one region's router, per second.
const CACHED_READS_TARGET: f64 = 40_000.0;

/// Section 2: availability reads of the hot event while it sells, through the node cache.
pub(super) fn hot_reads(dir: &Path) -> anyhow::Result<Section> {
    let mut md = String::new();
    let reads = report(dir, "reads.json")?;
    let _ = writeln!(
        md,
        "## 2. Reads of one hot event\n\n\
         Three-region devcluster. Users in us-east ({}), 90% reading the hot \
         event's availability through the us-east router, 10% buying it (reserve 1 to 4 across \
         VIP, Front Row and GA, then confirm, fail payment, cancel or abandon): every purchase \
         invalidates the cached availability, as in a real on-sale.\n\n\
         | operation | count | per second | p50 | p95 | p99 | max | cache hits / misses | errors |\n\
         |---|---|---|---|---|---|---|---|---|",
        reads.arrivals
    );
    for r in &reads.rows {
        let _ = writeln!(
            md,
            "| {} {} → {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.op.name(),
            r.client,
            r.home,
            r.count,
            thousands(r.per_second),
            ms(r.p50_ms),
            ms(r.p95_ms),
            ms(r.p99_ms),
            ms(r.max_ms),
            cache_line(r),
            r.errors
        );
    }
    for n in reads
        .nodes
        .iter()
        .filter(|n| n.cache_hits + n.cache_misses > 0)
    {
        let _ = writeln!(
            md,
            "\nNode cache in {} over the run: **hit ratio {:.4}** ({} hits, {} misses); \
             **{:.1} queries per second reached the database** (the local replica, or the \
             primary while the replica lags behind a consistency token).",
            n.region, n.hit_ratio, n.cache_hits, n.cache_misses, n.database_reads_per_second
        );
    }
    let _ = writeln!(md, "\nAudit: {}.\n", audit_line(&reads));
    cpu::regions_table(&mut md, &reads);
    Ok(Section::untargeted(md))
}

fn cache_line(r: &Row) -> String {
    if r.cache_hits + r.cache_misses > 0 {
        format!("{} / {}", r.cache_hits, r.cache_misses)
    } else {
        "-".into()
    }
}

fn availability(report: &Report) -> Option<&Row> {
    report.op_rows(Op::Availability).next()
}

/// Tickets of the run's event when it began (the reads' event).
fn tickets(report: &Report) -> u64 {
    report
        .events
        .first()
        .map_or(0, |e| e.tiers.iter().map(|(_, n)| n).sum())
}

const MISS_FILES: [&str; 2] = ["cache-miss-1000.json", "cache-miss-1000000.json"];

/// Section 3: availability of a 1,000-ticket and a 1,000,000-ticket event with the node's
/// cache off: each read reaches the replica, and must cost the same whatever the event's size.
pub(super) fn cache_miss(dir: &Path) -> anyhow::Result<Section> {
    let mut md = String::new();
    let target = format!(
        "p50 of both within {MISS_RATIO_TARGET}× of each other and under {MISS_P50_TARGET_MS} ms"
    );
    let _ = writeln!(
        md,
        "## 3. Availability on a cache miss, 1,000 vs 1,000,000 tickets\n\n\
         A one-region devcluster started with the node's read cache off \
         (`TICKETING_NODE_READS__CACHE_TTL_MS=0`), two events homed in us-east made with 1,000 \
         and 1,000,000 GA tickets (`loadgen create-event`), then availability reads of each \
         through the us-east router, one run per event: every read reaches the replica, and \
         counting ticket rows per read would make the big event's reads slower (DESIGN 9). \
         **Target: {target}.**\n"
    );
    let small = optional_report(dir, MISS_FILES[0])?;
    let large = optional_report(dir, MISS_FILES[1])?;
    let (Some(small), Some(large)) = (small, large) else {
        let _ = writeln!(md, "Not measured in this run.\n");
        return Ok(Section {
            markdown: md,
            verdicts: vec![miss_verdict(target, None)],
        });
    };
    let (Some(a), Some(b)) = (availability(&small), availability(&large)) else {
        anyhow::bail!(
            "{} or {} has no availability row",
            MISS_FILES[0],
            MISS_FILES[1]
        );
    };
    let _ = writeln!(
        md,
        "Each event's run: {}, {:.0} s.\n\n\
         | event | reads | per second | p50 | p95 | p99 | max | cache hits / misses | errors | CPU per request |\n\
         |---|---|---|---|---|---|---|---|---|---|",
        small.arrivals, small.duration_s
    );
    for (report, row) in [(&small, a), (&large, b)] {
        let _ = writeln!(
            md,
            "| {} GA tickets | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            thousands(tickets(report) as f64),
            row.count,
            thousands(row.per_second),
            ms(row.p50_ms),
            ms(row.p95_ms),
            ms(row.p99_ms),
            ms(row.max_ms),
            cache_line(row),
            row.errors,
            cpu::total(report)
        );
    }
    let ratio = |f: fn(&Row) -> f64| f(b) / f(a).max(1e-9);
    let p50_ratio = ratio(|r| r.p50_ms);
    let _ = writeln!(
        md,
        "| ratio, large ÷ small | | | **{p50_ratio:.2}×** | {:.2}× | {:.2}× | {:.2}× | | | |\n",
        ratio(|r| r.p95_ms),
        ratio(|r| r.p99_ms),
        ratio(|r| r.max_ms),
    );
    let within = p50_ratio <= MISS_RATIO_TARGET && 1.0 / p50_ratio <= MISS_RATIO_TARGET;
    let fast = a.p50_ms < MISS_P50_TARGET_MS && b.p50_ms < MISS_P50_TARGET_MS;
    // Reads answered from the cache say nothing about a miss.
    let hits = a.cache_hits + b.cache_hits;
    let met = within && fast && hits == 0;
    let mut measured = format!(
        "p50 {} and {}, ratio {p50_ratio:.2}",
        ms(a.p50_ms),
        ms(b.p50_ms)
    );
    if hits > 0 {
        let _ = write!(
            measured,
            "; but {hits} of {} reads were cache hits",
            a.count + b.count
        );
    }
    let _ = writeln!(md, "Target ({target}): {} ({measured}).", verdict(met));
    if hits > 0 {
        let _ = writeln!(
            md,
            "\nThe node's cache was not off (a node that does not yet read a TTL of 0 as \
             \"no cache\"), so these figures are mostly cache hits, not misses."
        );
    }
    md.push('\n');
    let labels = [&small, &large].map(|r| format!("{} tickets", thousands(tickets(r) as f64)));
    cpu::runs_table(&mut md, &[(&labels[0], &small), (&labels[1], &large)]);
    let outcome = Outcome {
        measured,
        met,
        cpu: format!("{} and {}", cpu::total(&small), cpu::total(&large)),
    };
    Ok(Section {
        markdown: md,
        verdicts: vec![miss_verdict(target, Some(outcome))],
    })
}

fn miss_verdict(target: String, outcome: Option<Outcome>) -> Verdict {
    Verdict {
        figure: "Availability on a cache miss, 1,000 vs 1,000,000 tickets (section 3)".into(),
        target,
        outcome,
    }
}

/// Section 4: availability of one event read flat out through one region's router, answered
/// from the node's cache.
pub(super) fn cached_reads(dir: &Path) -> anyhow::Result<Section> {
    let mut md = String::new();
    let target = format!("at least {} reads/s", thousands(CACHED_READS_TARGET));
    let _ = writeln!(
        md,
        "## 4. Cached availability reads through one region's router\n\n\
         A one-region devcluster with the node's read cache on, one event; virtual users in \
         us-east read its availability through the us-east router as fast as answers come \
         (closed loop), loadgen on the same machine, sharing its cores. **Target: {target}.**\n"
    );
    let Some(reads) = optional_report(dir, "cached-reads.json")? else {
        let _ = writeln!(md, "Not measured in this run.\n");
        return Ok(Section {
            markdown: md,
            verdicts: vec![cached_verdict(target, None)],
        });
    };
    let row = availability(&reads)
        .ok_or_else(|| anyhow::anyhow!("cached-reads.json has no availability row"))?;
    let met = row.per_second >= CACHED_READS_TARGET;
    let hit_ratio = row.cache_hits as f64 / (row.cache_hits + row.cache_misses).max(1) as f64;
    let _ = writeln!(
        md,
        "One run ({}, {:.0} s): **{} reads/s**, p50 {}, p95 {}, p99 {}, max {}; cache hits \
         {:.1}% ({}); {} errors; CPU per request {}. Target ({target}): {}.\n",
        reads.arrivals,
        reads.duration_s,
        thousands(row.per_second),
        ms(row.p50_ms),
        ms(row.p95_ms),
        ms(row.p99_ms),
        ms(row.max_ms),
        100.0 * hit_ratio,
        cache_line(row),
        reads.totals.errors,
        cpu::total(&reads),
        verdict(met)
    );
    cpu::runs_table(&mut md, &[(reads.arrivals.as_str(), &reads)]);
    let outcome = Outcome {
        measured: format!("{}/s", thousands(row.per_second)),
        met,
        cpu: cpu::total(&reads),
    };
    Ok(Section {
        markdown: md,
        verdicts: vec![cached_verdict(target, Some(outcome))],
    })
}

fn cached_verdict(target: String, outcome: Option<Outcome>) -> Verdict {
    Verdict {
        figure: "Cached availability reads through one region's router (section 4)".into(),
        target,
        outcome,
    }
}
