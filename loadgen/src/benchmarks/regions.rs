//! Across regions: section 5 (reserve, read and confirm latency for every client and home
//! region pair) and section 6 (the three-continent on-sale mix, with every read's p95 per
//! client region against its target).

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;

use super::cpu;
use super::format::{audit_line, ms, verdict};
use super::results::report;
use super::targets::{Outcome, Verdict};
use super::Section;
use crate::report::Report;
use crate::stats::{Op, Row};

/// DESIGN 2 and issue 9: every read's p95 at load, in every region.
const READ_P95_TARGET_MS: f64 = 10.0;
const READS: [Op; 3] = [Op::Events, Op::Event, Op::Availability];

/// Section 5: reserve, read and confirm latency for every (client region, home region) pair.
pub(super) fn cross_region_matrix(dir: &Path) -> anyhow::Result<Section> {
    let mut md = String::new();
    let global = report(dir, "global.json")?;
    let _ = writeln!(
        md,
        "## 5. Cross-region latency matrix\n\n\
         Three-region devcluster at the default latency scale. `global`: users in every region \
         ({}, spread evenly) check availability of an event homed in any region, reserve 1 to 2 tickets and \
         confirm (payment simulated: 200 ms in the home node). Each user talks only to its own \
         region's router. p50 / RTT is the median divided by the simulated round trip between \
         the two regions; a write crosses the ocean once, so it should be close to 1.\n\n\
         | client → home | RTT | reserve p50 | p95 | p99 | p50 / RTT | availability p50 | p99 | cache hit | confirm p50 |\n\
         |---|---|---|---|---|---|---|---|---|---|",
        global.arrivals
    );
    let mut pairs: Vec<(&str, &str)> = global
        .op_rows(Op::Reserve)
        .map(|r| (r.client.as_str(), r.home.as_str()))
        .collect();
    pairs.sort();
    for (client, home) in pairs {
        let find = |op: Op| {
            global
                .rows
                .iter()
                .find(|r| r.op == op && r.client == client && r.home == home)
        };
        let reserve = find(Op::Reserve).context("reserve row")?;
        let rtt = reserve.rtt_ms.unwrap_or(0.0);
        let ratio = if rtt > 0.0 {
            format!("**{:.2}**", reserve.p50_ms / rtt)
        } else {
            "local".into()
        };
        let (read_p50, read_p99, hit) = match find(Op::Availability) {
            Some(r) => (
                ms(r.p50_ms),
                ms(r.p99_ms),
                format!(
                    "{:.0}%",
                    100.0 * r.cache_hits as f64 / (r.cache_hits + r.cache_misses).max(1) as f64
                ),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let confirm = find(Op::Confirm).map_or("-".into(), |r| ms(r.p50_ms));
        let _ = writeln!(
            md,
            "| {client} → {home} | {} | {} | {} | {} | {ratio} | {read_p50} | {read_p99} | {hit} | {confirm} |",
            if rtt > 0.0 { ms(rtt) } else { "0".into() },
            ms(reserve.p50_ms),
            ms(reserve.p95_ms),
            ms(reserve.p99_ms),
        );
    }
    let _ = writeln!(
        md,
        "\nReads are answered in the client's own region (its replica of every shard, behind \
         the node's cache) whatever the home region. Errors: {}. Audit: {}. Chart: \
         [bench/charts/global.svg](bench/charts/global.svg).\n",
        global.totals.errors,
        audit_line(&global)
    );
    cpu::regions_table(&mut md, &global);
    Ok(Section::untargeted(md))
}

/// Section 6: the default mix spread over three regions, per operation and pair; every read's
/// p95 per client region against the target; CPU per region.
pub(super) fn onsale_three_continents(dir: &Path) -> anyhow::Result<Section> {
    let mut md = String::new();
    let onsale = report(dir, "onsale.json")?;
    let _ = writeln!(
        md,
        "## 6. On-sale across three continents\n\n\
         The default mix (browse 80%, on-sale 15%, global 5%), {} spread over the three \
         regions, each journey timed from its scheduled arrival. The hot event is homed in \
         us-east. {} requests, {} ok, {} refused as sold out, {} errors; audit {}. Chart: \
         [bench/charts/onsale.svg](bench/charts/onsale.svg).\n\n\
         Confirm includes the 200 ms simulated payment in the home node.\n\n\
         | operation | client → home | count | p50 | p95 | p99 | max | p50 / RTT |\n\
         |---|---|---|---|---|---|---|---|",
        onsale.arrivals,
        onsale.totals.requests,
        onsale.totals.ok,
        onsale.totals.refused,
        onsale.totals.errors,
        audit_line(&onsale)
    );
    for r in &onsale.rows {
        let ratio = match r.rtt_ms.filter(|v| *v > 0.0) {
            // Confirm's median includes the simulated payment (200 ms), so it has no ratio.
            Some(rtt) if matches!(r.op, Op::Reserve | Op::Cancel) => {
                format!("{:.2}", r.p50_ms / rtt)
            }
            _ => "-".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} → {} | {} | {} | {} | {} | {} | {ratio} |",
            r.op.name(),
            r.client,
            r.home,
            r.count,
            ms(r.p50_ms),
            ms(r.p95_ms),
            ms(r.p99_ms),
            ms(r.max_ms)
        );
    }
    md.push('\n');
    let verdict = reads_per_client_region(&mut md, &onsale);
    cpu::regions_table(&mut md, &onsale);
    Ok(Section {
        markdown: md,
        verdicts: vec![verdict],
    })
}

/// Every read operation's latency per client region, over every home region, against the p95
/// target.
fn reads_per_client_region(md: &mut String, onsale: &Report) -> Verdict {
    let target = format!("every read's p95 under {READ_P95_TARGET_MS} ms in every region");
    let figure = "Reads (`events`, `event`, `availability`) per client region during the \
                  three-continent on-sale (section 6)"
        .to_owned();
    let reads: Vec<&Row> = onsale
        .client_region_rows
        .iter()
        .filter(|r| READS.contains(&r.op))
        .collect();
    let _ = writeln!(
        md,
        "Reads per client region, over every home region (what a region's users saw). \
         **Target: {target}.**\n"
    );
    if reads.is_empty() {
        let _ = writeln!(md, "Not measured in this run.\n");
        return Verdict {
            figure,
            target,
            outcome: None,
        };
    }
    let _ = writeln!(
        md,
        "| operation | client region | count | p50 | p95 | p99 | max | p95 under {READ_P95_TARGET_MS} ms |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for r in &reads {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.op.name(),
            r.client,
            r.count,
            ms(r.p50_ms),
            ms(r.p95_ms),
            ms(r.p99_ms),
            ms(r.max_ms),
            if r.p95_ms < READ_P95_TARGET_MS {
                "yes"
            } else {
                "**no**"
            }
        );
    }
    let worst = reads
        .iter()
        .max_by(|a, b| a.p95_ms.total_cmp(&b.p95_ms))
        .expect("at least one read");
    let met = worst.p95_ms < READ_P95_TARGET_MS;
    let measured = format!(
        "worst p95 {} ({} in {})",
        ms(worst.p95_ms),
        worst.op.name(),
        worst.client
    );
    let _ = writeln!(md, "\nTarget ({target}): {}; {measured}.\n", verdict(met));
    Verdict {
        figure,
        target,
        outcome: Some(Outcome {
            measured,
            met,
            cpu: cpu::total(onsale),
        }),
    }
}
