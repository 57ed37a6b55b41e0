//! CPU per request per process, as BENCHMARKS.md shows it beside each throughput figure: a row
//! per run (every region's processes of a kind together), or a row per region of one run; each
//! cell microseconds of CPU per request and the share of one core.

use std::fmt::Write;

use crate::cpu::{Figure, Kind, Usage};
use crate::report::Report;

/// What every CPU table says about its figures; `cpu` is one of the table's runs.
fn legend(md: &mut String, cpu: &Usage) {
    let _ = writeln!(
        md,
        "CPU per request (µs of CPU per request completed · share of one core), per process, \
         over the steady window: from {} s into the load to its end, measured by loadgen from \
         `/proc`.\n",
        cpu.window_start_s
    );
}

/// Microseconds of CPU per request and the share of a core: `31 µs · 12%`.
pub fn cell(figure: &Figure) -> String {
    let per_request = figure
        .us_per_request
        .map_or("-".into(), |us| format!("{us:.0} µs"));
    format!("{per_request} · {:.0}%", figure.core_percent)
}

/// The run's CPU per request over every process, for a throughput table's own column.
pub fn total(report: &Report) -> String {
    total_of(report.cpu.as_ref())
}

/// The same for a run whose report is not a `loadgen run` one (`watch`, `queue`).
pub fn total_of(cpu: Option<&Usage>) -> String {
    match cpu.and_then(|c| c.total.us_per_request) {
        Some(us) => format!("{us:.0} µs"),
        None => "not measured".into(),
    }
}

fn header(md: &mut String, first: &str) {
    let _ = write!(md, "| {first} |");
    for kind in Kind::ALL {
        let _ = write!(md, " {} |", kind.name());
    }
    let _ = writeln!(md, " total |");
    let _ = writeln!(md, "|---|{}---|", "---|".repeat(Kind::ALL.len()));
}

fn row(md: &mut String, label: &str, cpu: &Usage) {
    let _ = write!(md, "| {label} |");
    for kind in Kind::ALL {
        let _ = write!(md, " {} |", cpu.kind(kind).map_or("-".into(), cell));
    }
    let _ = writeln!(md, " **{}** |", cell(&cpu.total));
}

fn not_measured(md: &mut String) {
    let _ = writeln!(
        md,
        "CPU per request: not measured in this run (its results predate loadgen's CPU \
         accounting, or the cluster's PIDs were not known).\n"
    );
}

fn missing(md: &mut String, label: &str, cpu: &Usage) {
    if !cpu.missing.is_empty() {
        let _ = writeln!(
            md,
            "\n{label}: not counted, having ended or restarted during the window: {}.",
            cpu.missing.join(", ")
        );
    }
}

/// One row per run, each kind of process over every region.
pub fn runs_table(md: &mut String, runs: &[(&str, &Report)]) {
    let Some(first) = runs.iter().find_map(|(_, r)| r.cpu.as_ref()) else {
        return not_measured(md);
    };
    legend(md, first);
    header(md, "run");
    for (label, report) in runs {
        match &report.cpu {
            Some(cpu) => row(md, label, cpu),
            None => {
                let _ = writeln!(
                    md,
                    "| {label} | not measured |{}",
                    " - |".repeat(Kind::ALL.len())
                );
            }
        }
    }
    for (label, report) in runs {
        if let Some(cpu) = &report.cpu {
            missing(md, label, cpu);
        }
    }
    md.push('\n');
}

/// One row per region of one run (its router, node and PostgreSQL), then every process.
pub fn regions_table(md: &mut String, report: &Report) {
    regions_table_of(md, report.cpu.as_ref());
}

/// The same for a run whose report is not a `loadgen run` one (`watch`, `queue`).
pub fn regions_table_of(md: &mut String, cpu: Option<&Usage>) {
    let Some(cpu) = cpu else {
        return not_measured(md);
    };
    legend(md, cpu);
    header(md, "region");
    for region in &cpu.regions {
        let _ = write!(md, "| {} |", region.region);
        for kind in Kind::ALL {
            let figure = cpu
                .processes
                .iter()
                .find(|p| p.process == kind && p.region.as_ref() == Some(&region.region));
            let _ = write!(md, " {} |", figure.map_or("-".into(), |p| cell(&p.figure)));
        }
        let _ = writeln!(md, " {} |", cell(&region.figure));
    }
    row(md, "all", cpu);
    missing(md, "this run", cpu);
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{KindFigure, ProcessFigure, RegionFigure};

    fn figure(cpu_s: f64) -> Figure {
        Figure {
            cpu_s,
            us_per_request: Some(cpu_s * 100.0),
            core_percent: cpu_s * 10.0,
        }
    }

    fn usage() -> Usage {
        let process = |region: &str, kind, cpu_s| ProcessFigure {
            region: Some(region.into()),
            process: kind,
            figure: figure(cpu_s),
        };
        Usage {
            window_start_s: 1.0,
            window_s: 10.0,
            requests: 1000,
            per_second: 100.0,
            processes: vec![
                process("us-east", Kind::Router, 1.0),
                process("us-east", Kind::Node, 2.0),
                process("eu-west", Kind::Router, 0.5),
                ProcessFigure {
                    region: None,
                    process: Kind::Loadgen,
                    figure: figure(3.0),
                },
            ],
            regions: vec![
                RegionFigure {
                    region: "us-east".into(),
                    figure: figure(3.0),
                },
                RegionFigure {
                    region: "eu-west".into(),
                    figure: figure(0.5),
                },
            ],
            kinds: vec![
                KindFigure {
                    process: Kind::Router,
                    figure: figure(1.5),
                },
                KindFigure {
                    process: Kind::Node,
                    figure: figure(2.0),
                },
                KindFigure {
                    process: Kind::Loadgen,
                    figure: figure(3.0),
                },
            ],
            total: figure(6.5),
            missing: vec!["us-east PostgreSQL".into()],
        }
    }

    #[test]
    fn cells_and_tables() {
        assert_eq!(cell(&figure(1.5)), "150 µs · 15%");
        let none = Figure {
            cpu_s: 0.2,
            us_per_request: None,
            core_percent: 2.0,
        };
        assert_eq!(cell(&none), "- · 2%");

        let mut md = String::new();
        let mut report = crate::report::tests::empty();
        report.cpu = Some(usage());
        regions_table(&mut md, &report);
        assert!(md.contains(
            "| region | router | node | PostgreSQL | devcluster | loadgen | total |\n\
             |---|---|---|---|---|---|---|\n"
        ));
        assert!(md.contains("| us-east | 100 µs · 10% | 200 µs · 20% | - | - | - | 300 µs · 30% |"));
        assert!(md.contains("| eu-west | 50 µs · 5% | - | - | - | - | 50 µs · 5% |"));
        assert!(md.contains(
            "| all | 150 µs · 15% | 200 µs · 20% | - | - | 300 µs · 30% | **650 µs · 65%** |"
        ));
        assert!(md.contains("ended or restarted during the window: us-east PostgreSQL"));

        let mut md = String::new();
        let without = crate::report::tests::empty();
        runs_table(&mut md, &[("before", &without), ("after", &report)]);
        assert!(md.contains("| before | not measured | - | - | - | - | - |\n"));
        assert!(md.contains("| after | 150 µs · 15% |"));
        assert_eq!(total(&report), "650 µs");
        assert_eq!(total(&without), "not measured");

        let mut md = String::new();
        runs_table(&mut md, &[("before", &without)]);
        assert!(md.starts_with("CPU per request: not measured in this run"));
    }
}
