//! The on-sale front door (issue 11): section 8 (live streams: tens of thousands of
//! subscribers in one region, each change's delivery, memory, fresh reads while held) and
//! section 9 (a queued on-sale: users joining from three regions, the in-flight figure against
//! its target, the estimated waits, passes and the audit), judged against the issue's figures.

use std::fmt::Write;
use std::path::Path;

use super::cpu;
use super::format::{ms, thousands, verdict};
use super::results::optional;
use super::targets::{Outcome, Verdict};
use super::Section;
use crate::queue::QueueReport;
use crate::stats::Op;
use crate::watch::WatchReport;

/// Issue 11: router and node of the subscribers' region together, 1.5 GiB.
const MEMORY_TARGET_BYTES: u64 = 1536 * 1024 * 1024;
/// Issue 11: each change reaches this share of the subscribers within 1 s.
const DELIVERY_TARGET: f64 = 0.99;
/// Issue 11: a fresh read's p99 while the streams are held.
const FRESH_READ_P99_MS: f64 = 20.0;
/// Issue 11: a join's p99 within one round trip to the home region plus this.
const JOIN_MARGIN_MS: f64 = 50.0;
/// The in-flight figure counts as held near the target when it never passed it by more.
const ACTIVE_SLACK: f64 = 1.1;

const WATCH_FIGURES: [&str; 3] = [
    "Memory of the router and node holding the streams (section 8)",
    "Delivery of each change to the stream subscribers (section 8)",
    "Fresh reads while the streams are held (section 8)",
];
const QUEUE_FIGURES: [&str; 3] = [
    "Tickets of the queued on-sale, and reserves without a pass (section 9)",
    "The home node's in-flight bookings in the queued on-sale (section 9)",
    "Joins of the queued on-sale, per region (section 9)",
];

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("not reached".into(), ms)
}

/// Section 8: subscribers holding live streams in one region while a writer books.
pub(super) fn live_streams(dir: &Path) -> anyhow::Result<Section> {
    let mut md = String::new();
    let targets = [
        "router(s) + node memory under 1.5 GiB together".to_owned(),
        format!(
            "every change delivered to {:.0}% of the subscribers within 1 s of its commit",
            100.0 * DELIVERY_TARGET
        ),
        format!("a fresh read's p99 under {FRESH_READ_P99_MS} ms while the streams are held"),
    ];
    let _ = writeln!(
        md,
        "## 8. Live streams: subscribers held in one region\n\n\
         Three-region devcluster with three routers per region (`--routers-per-region 3`): \
         this machine caps every process at 20,000 open files (no CAP_SYS_RESOURCE, so not \
         even root raises the hard limit), one held stream is one descriptor, so no single \
         router can hold 50,000 streams; the design runs one or more routers per region, all \
         in front of the region's node, each with one upstream stream per event. \
         `loadgen watch`: each subscriber holds one live stream \
         (`GET /events/{{id}}/stream`) through one of the region's routers (round robin), \
         opened by loadgen's lean client (raw TCP, a few KiB each) from many loopback source \
         addresses at a ramped rate, held by `loadgen watch-worker` child processes of at \
         most 16,000 streams each for the same reason; once all are connected a writer books one ticket at a time, and each subscriber \
         notes when the first message whose id carries a WAL position at or past the booking's \
         commit LSN (from its consistency token) reaches it. A delay is counted from when the \
         writer sent the booking: an upper bound on the time since its commit. Alongside, 50 \
         reads per second of the event page through the region's first router. Memory is the \
         resident size of the region's routers and node together at the end, streams still \
         held. **Targets: {}; \
         {}; {}.**\n",
        targets[0], targets[1], targets[2]
    );
    let Some(w) = optional::<WatchReport>(dir, "watch.json")? else {
        let _ = writeln!(md, "Not measured in this run.\n");
        return Ok(Section {
            markdown: md,
            verdicts: verdicts(WATCH_FIGURES, &targets, None),
        });
    };
    let _ = writeln!(
        md,
        "{} subscribers to event {} (home {}) through {}'s {} router(s), held by {} loadgen \
         process(es), opened at {}/s from {} source addresses: **{} connected**, {} failed, {} \
         dropped; connecting took {:.1} s; held {:.1} s. Bookings through {}'s router.\n",
        thousands(w.subscribers as f64),
        w.event.id,
        w.event.home,
        w.region,
        w.routers,
        w.workers,
        thousands(w.ramp_per_second),
        thousands(w.source_addresses as f64),
        thousands(w.connected as f64),
        w.failed,
        w.dropped,
        w.connecting_s,
        w.held_s,
        w.writer_region
    );
    for (why, n) in &w.failures {
        let _ = writeln!(md, "- {n} × {why}");
    }
    if !w.failures.is_empty() {
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "| change | commit LSN | booking | subscribers | delivered | within 1 s | p50 | p99 | max |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for (i, c) in w.changes.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | **{:.2}%** | {} | {} | {} |",
            i + 1,
            c.lsn.as_deref().unwrap_or("-"),
            c.answer,
            c.subscribers,
            c.delivered,
            100.0 * c.share_within_1s,
            opt_ms(c.p50_ms),
            opt_ms(c.p99_ms),
            opt_ms(c.max_ms)
        );
    }
    md.push('\n');
    let memory = w.region_memory();
    let _ = writeln!(
        md,
        "Resident memory at the end: {}.\n",
        w.memory
            .iter()
            .map(|m| format!("{} {} {}", m.region, m.process.name(), mib(m.bytes)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let read = w.reads();
    if let Some(r) = read {
        let _ = writeln!(
            md,
            "Fresh reads while held ({} → {}): {} reads, p50 {}, p99 {}, max {}, {} errors.\n",
            r.client,
            r.home,
            r.count,
            ms(r.p50_ms),
            ms(r.p99_ms),
            ms(r.max_ms),
            r.errors
        );
    }
    let worst = w
        .changes
        .iter()
        .map(|c| c.share_within_1s)
        .fold(f64::INFINITY, f64::min);
    let cpu_cell = cpu::total_of(w.cpu.as_ref());
    let outcomes = [
        Outcome {
            measured: mib(memory),
            met: memory > 0 && memory < MEMORY_TARGET_BYTES,
            cpu: cpu_cell.clone(),
        },
        Outcome {
            measured: format!("worst change {:.2}% within 1 s", 100.0 * worst.min(1.0)),
            met: !w.changes.is_empty()
                && w.changes.iter().all(|c| c.lsn.is_some())
                && worst >= DELIVERY_TARGET,
            cpu: cpu_cell.clone(),
        },
        Outcome {
            measured: read.map_or("no reads".into(), |r| format!("p99 {}", ms(r.p99_ms))),
            met: read.is_some_and(|r| r.p99_ms < FRESH_READ_P99_MS && r.errors == 0),
            cpu: cpu_cell,
        },
    ];
    Ok(measured_section(
        md,
        WATCH_FIGURES,
        targets,
        outcomes,
        "CPU of each process over the hold (µs per fresh read · share of one core):",
        w.cpu.as_ref(),
    ))
}

/// Section 9: a queued on-sale, users joining from three regions.
pub(super) fn queued_onsale(dir: &Path) -> anyhow::Result<Section> {
    let mut md = String::new();
    let targets = [
        "every ticket sold or held by an admitted user, and 0 reserves without a pass".to_owned(),
        format!("the home node's in-flight bookings never past {ACTIVE_SLACK}× the target"),
        format!("join p99 under one round trip to the home region + {JOIN_MARGIN_MS} ms"),
    ];
    let _ = writeln!(
        md,
        "## 9. Queued on-sale: users joining from three regions\n\n\
         Three-region devcluster. `loadgen queue`: the admin makes an event homed in us-east \
         and its waiting room, opening a few seconds after the first join (early joiners wait \
         in the lobby and are drawn at opening); users join spread over the join window, taking \
         turns over the three regions' routers (access tokens minted with the deployment's \
         secret from `cluster.json`, not signed up); each follows its region's live stream for \
         the serving counter, reads its drawn place once the lobby opens, takes its pass in \
         its own region when admitted, reserves 1 to 2 tickets with it and confirms; users \
         still waiting when no ticket is left give up. A few users also try to reserve without \
         a pass. `queue_active` is scraped from the home node's `/metrics` every 0.5 s. \
         **Targets: {}; {}; {}.**\n",
        targets[0], targets[1], targets[2]
    );
    let Some(q) = optional::<QueueReport>(dir, "queue.json")? else {
        let _ = writeln!(md, "Not measured in this run.\n");
        return Ok(Section {
            markdown: md,
            verdicts: verdicts(QUEUE_FIGURES, &targets, None),
        });
    };
    let o = &q.outcomes;
    let _ = writeln!(
        md,
        "{} users within {:.0} s from {} for {} tickets (event {}, home {}); the queue opened \
         {:.0} s after the first join; target {} active, at most {}/s admitted, passes of {} \
         s. The sale took {} from the draw to the last user done.\n\n\
         | joined | in the lobby | admitted | passes | orders | tickets confirmed | sold out at reserve | gave up (sold out) | unfinished | failures |\n\
         |---|---|---|---|---|---|---|---|---|---|\n\
         | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        thousands(q.users as f64),
        q.join_window_s,
        q.client_regions.join(", "),
        thousands(q.tickets as f64),
        q.event.id,
        q.event.home,
        q.opens_in_s,
        q.target_active,
        q.max_admit_per_second,
        q.pass_seconds,
        q.selling_s.map_or("-".into(), |s| format!("{s:.1} s")),
        thousands(o.joined as f64),
        thousands(o.lobby as f64),
        thousands(o.admitted as f64),
        thousands(o.passes as f64),
        thousands(o.ordered as f64),
        thousands(o.tickets_confirmed as f64),
        o.sold_out,
        thousands(o.gave_up as f64),
        o.unfinished,
        o.failed + o.join_failed + o.pass_failed
    );
    let _ = writeln!(
        md,
        "| operation | client → home | count | p50 | p95 | p99 | max | RTT | errors |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for r in &q.rows {
        let _ = writeln!(
            md,
            "| {} | {} → {} | {} | {} | {} | {} | {} | {} | {} |",
            r.op.name(),
            r.client,
            r.home,
            r.count,
            ms(r.p50_ms),
            ms(r.p95_ms),
            ms(r.p99_ms),
            ms(r.max_ms),
            r.rtt_ms.map_or("-".into(), ms),
            r.errors
        );
    }
    md.push('\n');
    let a = &q.active;
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    let _ = writeln!(
        md,
        "Home node's `queue_active` (admitted, pass neither used nor lapsed, plus live holds \
         made with a pass): mean **{}**, max **{}** against a target of {} ({} samples).\n",
        f(a.mean),
        f(a.max),
        a.target,
        a.samples
    );
    let w = &q.waits;
    let g = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1} s"));
    let _ = writeln!(
        md,
        "Estimated wait shown (at the join, or at the first read of a drawn place) against the \
         wait had until admission, {} users: **median absolute error {}** (of the range's \
         middle), p90 {}, {:.0}% within the shown range; median wait {}.\n",
        thousands(w.users as f64),
        g(w.median_abs_error_s),
        g(w.p90_abs_error_s),
        100.0 * w.within_range_share,
        g(w.median_wait_s)
    );
    let p = &q.passless;
    let _ = writeln!(
        md,
        "Reserves without a pass: {} tried, {} refused with 403 `queue_pass_required`, **{} \
         succeeded**.\n",
        p.tried, p.refused, p.succeeded
    );
    if !q.queue_checks.is_empty() {
        let _ = writeln!(md, "Checks on the home primary:\n");
        for c in &q.queue_checks {
            let mark = if c.passed() { "ok" } else { "**FAILED**" };
            let _ = writeln!(
                md,
                "- {mark}: {} (expected {}, found {})",
                c.name, c.expected, c.found
            );
        }
        md.push('\n');
    }
    let audit = q.audit.as_ref();
    let available = audit.and_then(|a| a.tickets.get("available").copied());
    let _ = writeln!(
        md,
        "Audit: {}; tickets now {}.\n",
        match audit {
            None => "not run".to_owned(),
            Some(a) if a.passed() => format!("passed ({} checks)", a.checks.len()),
            Some(_) => "**FAILED**".to_owned(),
        },
        audit.map_or("-".into(), |a| format!("{:?}", a.tickets))
    );
    let passless_db = q
        .queue_checks
        .iter()
        .find(|c| c.name == "queue: bookings without a pass")
        .map(|c| c.found);
    let joins: Vec<_> = q.rows.iter().filter(|r| r.op == Op::Join).collect();
    let join_margin = joins
        .iter()
        .map(|r| (r, r.p99_ms - r.rtt_ms.unwrap_or(0.0)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let cpu_cell = cpu::total_of(q.cpu.as_ref());
    let outcomes = [
        Outcome {
            measured: format!(
                "{} tickets left, {} bookings without a pass, {} passless reserves succeeded",
                available.map_or("?".into(), |n| n.to_string()),
                passless_db.map_or("?".into(), |n| n.to_string()),
                p.succeeded
            ),
            met: available == Some(0)
                && passless_db == Some(0)
                && p.succeeded == 0
                && audit.is_some_and(|a| a.passed()),
            cpu: cpu_cell.clone(),
        },
        Outcome {
            measured: format!("mean {}, max {} of {}", f(a.mean), f(a.max), a.target),
            met: a
                .max
                .is_some_and(|max| max <= ACTIVE_SLACK * f64::from(a.target)),
            cpu: cpu_cell.clone(),
        },
        Outcome {
            measured: join_margin.map_or("no joins".into(), |(r, _)| {
                format!(
                    "worst p99 {} in {} (RTT {})",
                    ms(r.p99_ms),
                    r.client,
                    r.rtt_ms.map_or("-".into(), ms)
                )
            }),
            met: !joins.is_empty()
                && joins
                    .iter()
                    .all(|r| r.p99_ms < r.rtt_ms.unwrap_or(0.0) + JOIN_MARGIN_MS),
            cpu: cpu_cell,
        },
    ];
    Ok(measured_section(
        md,
        QUEUE_FIGURES,
        targets,
        outcomes,
        "CPU of each process over the run (µs per request · share of one core):",
        q.cpu.as_ref(),
    ))
}

/// A measured section's end: each target's verdict, the CPU table under `cpu_caption`, and the
/// verdicts for the targets table.
fn measured_section(
    mut md: String,
    figures: [&str; 3],
    targets: [String; 3],
    outcomes: [Outcome; 3],
    cpu_caption: &str,
    cpu: Option<&crate::cpu::Usage>,
) -> Section {
    for (t, o) in targets.iter().zip(&outcomes) {
        let _ = writeln!(md, "Target ({t}): {} ({}).", verdict(o.met), o.measured);
    }
    let _ = writeln!(md, "\n{cpu_caption}\n");
    cpu::regions_table_of(&mut md, cpu);
    Section {
        markdown: md,
        verdicts: verdicts(figures, &targets, Some(outcomes)),
    }
}

/// A section's three verdicts: each figure with its target and, when measured, its outcome.
fn verdicts(
    figures: [&str; 3],
    targets: &[String; 3],
    outcomes: Option<[Outcome; 3]>,
) -> Vec<Verdict> {
    let mut outcomes = outcomes.map(|o| o.map(Some)).unwrap_or([None, None, None]);
    figures
        .iter()
        .zip(targets)
        .enumerate()
        .map(|(i, (figure, target))| Verdict {
            figure: (*figure).into(),
            target: target.clone(),
            outcome: outcomes[i].take(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Audit, Check};
    use crate::cpu::Kind;
    use crate::fixture::Event;
    use crate::memory::Resident;
    use crate::queue::{active_summary, wait_accuracy, Outcomes, Passless, Shown};
    use crate::report::tests::row;
    use crate::watch::Delivery;

    fn event() -> Event {
        Event {
            id: "42".into(),
            home: "us-east".into(),
            tiers: vec![("GA".into(), 10_000)],
            created: true,
        }
    }

    fn delivery(share: f64, p99: Option<f64>) -> Delivery {
        Delivery {
            lsn: Some("0/16B3A28".into()),
            answer: "200".into(),
            subscribers: 50_000,
            delivered: 50_000,
            within_1s: (share * 50_000.0) as u64,
            share_within_1s: share,
            p50_ms: Some(180.0),
            p99_ms: p99,
            max_ms: Some(1400.0),
        }
    }

    fn watch_report() -> WatchReport {
        let resident = |process, bytes| Resident {
            region: "us-east".into(),
            process,
            pid: 1,
            bytes,
        };
        WatchReport {
            title: "watch".into(),
            region: "us-east".into(),
            writer_region: "ap-southeast".into(),
            event: event(),
            subscribers: 50_000,
            connected: 50_000,
            failed: 0,
            dropped: 0,
            failures: Default::default(),
            ramp_per_second: 2000.0,
            connecting_s: 26.0,
            held_s: 20.0,
            source_addresses: 1667,
            routers: 3,
            workers: 4,
            open_file_limit: 1_048_576,
            changes: vec![delivery(1.0, Some(600.0)), delivery(0.995, Some(950.0))],
            rows: vec![row(Op::Event, "us-east", "us-east", 1000, 1.0, 4.0, 12.0)],
            memory: vec![
                resident(Kind::Router, 700 << 20),
                resident(Kind::Node, 300 << 20),
            ],
            cpu: None,
            audit: None,
        }
    }

    fn queue_report() -> QueueReport {
        let mut join = row(Op::Join, "eu-west", "us-east", 16_000, 80.0, 95.0, 120.0);
        join.rtt_ms = Some(76.0);
        let local = row(Op::Join, "us-east", "us-east", 17_000, 3.0, 9.0, 20.0);
        let check = |name: &str, found| Check {
            region: "us-east".into(),
            name: name.into(),
            expected: 0,
            found,
        };
        QueueReport {
            title: "queue".into(),
            event: event(),
            client_regions: vec!["us-east".into(), "eu-west".into()],
            users: 50_000,
            tickets: 10_000,
            join_window_s: 10.0,
            opens_in_s: 3.0,
            target_active: 500,
            max_admit_per_second: 1000.0,
            pass_seconds: 60,
            minted_users: true,
            elapsed_s: 40.0,
            selling_s: Some(25.0),
            outcomes: Outcomes {
                joined: 50_000,
                ..Outcomes::default()
            },
            passless: Passless {
                tried: 5,
                refused: 5,
                ..Passless::default()
            },
            active: active_summary(500, vec![(1.0, 420.0), (1.5, 510.0)]),
            waits: wait_accuracy(&[(
                Shown {
                    min_s: 10.0,
                    max_s: Some(14.0),
                },
                13.0,
            )]),
            rows: vec![local, join],
            cpu: None,
            queue_checks: vec![check("queue: bookings without a pass", 0)],
            audit: Some(Audit {
                checks: Vec::new(),
                skipped_regions: Vec::new(),
                tickets: [("available".to_owned(), 0), ("sold".to_owned(), 10_000)].into(),
            }),
        }
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("loadgen-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn live_streams_are_judged_against_the_issue() {
        let dir = dir("front-door-watch");
        std::fs::write(
            dir.join("watch.json"),
            serde_json::to_vec(&watch_report()).unwrap(),
        )
        .unwrap();
        let section = live_streams(&dir).unwrap();
        let md = section.markdown;
        assert!(md.contains("**50,000 connected**"), "{md}");
        assert!(
            md.contains(
                "| 2 | 0/16B3A28 | 200 | 50000 | 50000 | **99.50%** | 180 ms | 950 ms | 1400 ms |"
            ),
            "{md}"
        );
        let met: Vec<bool> = section
            .verdicts
            .iter()
            .map(|v| v.outcome.as_ref().unwrap().met)
            .collect();
        assert_eq!(met, vec![true, true, true], "{md}");
        assert!(md.contains("(1000 MiB)"), "{md}");
        // A change that reached fewer than 99% in a second misses the target.
        let mut late = watch_report();
        late.changes[1] = delivery(0.97, None);
        std::fs::write(dir.join("watch.json"), serde_json::to_vec(&late).unwrap()).unwrap();
        let section = live_streams(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!section.verdicts[1].outcome.as_ref().unwrap().met);
        assert!(section.markdown.contains("not reached"));
    }

    #[test]
    fn the_queued_onsale_is_judged_against_the_issue() {
        let dir = dir("front-door-queue");
        std::fs::write(
            dir.join("queue.json"),
            serde_json::to_vec(&queue_report()).unwrap(),
        )
        .unwrap();
        let section = queued_onsale(&dir).unwrap();
        let md = section.markdown;
        let met: Vec<bool> = section
            .verdicts
            .iter()
            .map(|v| v.outcome.as_ref().unwrap().met)
            .collect();
        // 0 left, 0 without a pass; max 510 ≤ 550; eu-west's 120 ms < 76 + 50.
        assert_eq!(met, vec![true, true, true], "{md}");
        assert!(md.contains("mean **465**, max **510**"), "{md}");
        assert!(md.contains("median absolute error 1.0 s"), "{md}");
        // A join p99 past one round trip + 50 ms misses.
        let mut slow = queue_report();
        slow.rows[1].p99_ms = 130.0;
        slow.active = active_summary(500, vec![(1.0, 600.0)]);
        std::fs::write(dir.join("queue.json"), serde_json::to_vec(&slow).unwrap()).unwrap();
        let section = queued_onsale(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let met: Vec<bool> = section
            .verdicts
            .iter()
            .map(|v| v.outcome.as_ref().unwrap().met)
            .collect();
        assert_eq!(met, vec![true, false, false], "{}", section.markdown);
    }
}
