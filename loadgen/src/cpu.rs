//! CPU time of the processes behind a run, from Linux's `/proc`: for each group (a region's
//! router, node or PostgreSQL servers, devcluster, loadgen) the user and system time of its
//! processes and of their reaped children, sampled at both ends of the steady window and divided
//! by the requests completed in between. Without `/proc` or PIDs there is nothing to report.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// What a group of processes is, in the order reports list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    Router,
    Node,
    Postgres,
    /// devcluster's own process, which also runs the WAN delay lines and the DNS servers.
    Devcluster,
    Loadgen,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Router,
        Kind::Node,
        Kind::Postgres,
        Kind::Devcluster,
        Kind::Loadgen,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Router => "router",
            Kind::Node => "node",
            Kind::Postgres => "PostgreSQL",
            Kind::Devcluster => "devcluster",
            Kind::Loadgen => "loadgen",
        }
    }
}

/// Processes measured together.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The region of a router, node or PostgreSQL group; none for devcluster and loadgen.
    pub region: Option<String>,
    pub kind: Kind,
    pub pids: Vec<u32>,
    /// With every descendant (a postmaster's backends), or the process alone: devcluster's
    /// descendants are the other groups.
    pub descendants: bool,
}

impl Group {
    fn label(&self) -> String {
        match &self.region {
            Some(region) => format!("{region} {}", self.kind.name()),
            None => self.kind.name().to_owned(),
        }
    }
}

/// The fields of `/proc/<pid>/stat` that CPU accounting needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// utime + stime + cutime + cstime: the process's own time and that of the children it has
    /// reaped (a postmaster's ended backends), in clock ticks.
    pub ticks: u64,
    /// When the process started, in ticks after boot: with the pid, it names one process even
    /// if the pid is reused.
    pub start_time: u64,
}

/// One `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let (_, rest) = line.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Numbered as in proc(5): field 3 (state) is the first after the name.
    let field = |n: usize| -> Option<u64> {
        let value: i64 = fields.get(n.checked_sub(3)?)?.parse().ok()?;
        Some(value.max(0) as u64)
    };
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        ticks: field(14)? + field(15)? + field(16)? + field(17)?,
        start_time: field(22)?,
    })
}

/// Every process on the machine at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    stats: HashMap<u32, Stat>,
}

impl Snapshot {
    /// Reads `/proc`; processes that end while it reads are simply not in it.
    pub fn take() -> Snapshot {
        let mut stats = HashMap::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Snapshot { stats };
        };
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let text = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            if let Some(stat) = parse_stat(&text) {
                stats.insert(pid, stat);
            }
        }
        Snapshot { stats }
    }

    pub fn from_stats(stats: impl IntoIterator<Item = (u32, Stat)>) -> Snapshot {
        Snapshot {
            stats: stats.into_iter().collect(),
        }
    }
}

/// Each group's ticks at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    groups: Vec<Option<GroupTicks>>,
}

#[derive(Debug, Clone, PartialEq)]
struct GroupTicks {
    ticks: u64,
    /// (pid, start time) of the group's processes, to tell a restarted one from the same one.
    roots: Vec<(u32, u64)>,
}

/// Ticks of each group in `snapshot`, or none for a group one of whose processes is not there.
/// A process is counted in the first group that reaches it, so a process never counts twice
/// (tests run the cluster inside loadgen's own process).
pub fn sample(groups: &[Group], snapshot: &Snapshot) -> Sample {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, stat) in &snapshot.stats {
        children.entry(stat.ppid).or_default().push(*pid);
    }
    let mut counted = HashSet::new();
    let groups = groups
        .iter()
        .map(|group| {
            let roots = group
                .pids
                .iter()
                .map(|pid| Some((*pid, snapshot.stats.get(pid)?.start_time)))
                .collect::<Option<Vec<_>>>()?;
            let mut ticks = 0;
            let mut stack = group.pids.clone();
            while let Some(pid) = stack.pop() {
                if !counted.insert(pid) {
                    continue;
                }
                ticks += snapshot.stats.get(&pid).map_or(0, |s| s.ticks);
                if group.descendants {
                    stack.extend(children.get(&pid).into_iter().flatten());
                }
            }
            Some(GroupTicks { ticks, roots })
        })
        .collect();
    Sample { groups }
}

/// Clock ticks per second of `/proc`'s times (USER_HZ).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// CPU over a window: seconds, per request, and as a share of one core.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Figure {
    pub cpu_s: f64,
    /// Microseconds of CPU per request completed in the window; none when none completed.
    pub us_per_request: Option<f64>,
    /// 100 is one core busy for the whole window.
    pub core_percent: f64,
}

impl Figure {
    fn new(cpu_s: f64, window_s: f64, requests: u64) -> Figure {
        Figure {
            cpu_s,
            us_per_request: (requests > 0).then(|| cpu_s * 1e6 / requests as f64),
            core_percent: 100.0 * cpu_s / window_s.max(1e-9),
        }
    }
}

/// One group's CPU over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessFigure {
    pub region: Option<String>,
    pub process: Kind,
    #[serde(flatten)]
    pub figure: Figure,
}

/// A region's router, node and PostgreSQL together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionFigure {
    pub region: String,
    #[serde(flatten)]
    pub figure: Figure,
}

/// One kind of process over every region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KindFigure {
    pub process: Kind,
    #[serde(flatten)]
    pub figure: Figure,
}

/// The CPU the run cost, over its steady window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Seconds into the load when the window began.
    pub window_start_s: f64,
    pub window_s: f64,
    /// Requests completed in the window.
    pub requests: u64,
    pub per_second: f64,
    /// Each region's router, node and PostgreSQL, then devcluster and loadgen.
    pub processes: Vec<ProcessFigure>,
    /// Each region's processes together.
    pub regions: Vec<RegionFigure>,
    /// Each kind of process over every region.
    pub kinds: Vec<KindFigure>,
    /// Every process measured.
    pub total: Figure,
    /// Groups whose process ended or was replaced during the window, left out of every sum.
    #[serde(default)]
    pub missing: Vec<String>,
}

impl Usage {
    /// The figure of one kind of process over every region, when it was measured.
    pub fn kind(&self, kind: Kind) -> Option<&Figure> {
        self.kinds
            .iter()
            .find(|k| k.process == kind)
            .map(|k| &k.figure)
    }
}

/// The CPU each group used between two samples, over `window_s` seconds in which `requests`
/// completed.
pub fn usage(
    groups: &[Group],
    start: &Sample,
    end: &Sample,
    window_start_s: f64,
    window_s: f64,
    requests: u64,
) -> Usage {
    usage_at(
        groups,
        start,
        end,
        Window {
            start_s: window_start_s,
            seconds: window_s,
            requests,
        },
        ticks_per_second(),
    )
}

struct Window {
    start_s: f64,
    seconds: f64,
    requests: u64,
}

fn usage_at(groups: &[Group], start: &Sample, end: &Sample, w: Window, hz: f64) -> Usage {
    let figure = |cpu_s: f64| Figure::new(cpu_s, w.seconds, w.requests);
    let mut measured: Vec<(&Group, f64)> = Vec::new();
    let mut missing = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let before = start.groups.get(i).cloned().flatten();
        let after = end.groups.get(i).cloned().flatten();
        match (before, after) {
            (Some(before), Some(after)) if before.roots == after.roots => {
                let ticks = after.ticks.saturating_sub(before.ticks);
                measured.push((group, ticks as f64 / hz));
            }
            _ => missing.push(group.label()),
        }
    }
    let processes = measured
        .iter()
        .map(|(g, cpu_s)| ProcessFigure {
            region: g.region.clone(),
            process: g.kind,
            figure: figure(*cpu_s),
        })
        .collect();
    let mut regions: Vec<RegionFigure> = Vec::new();
    for (g, cpu_s) in &measured {
        let Some(region) = &g.region else { continue };
        match regions.iter_mut().find(|r| &r.region == region) {
            Some(r) => r.figure = figure(r.figure.cpu_s + cpu_s),
            None => regions.push(RegionFigure {
                region: region.clone(),
                figure: figure(*cpu_s),
            }),
        }
    }
    let kinds = Kind::ALL
        .iter()
        .filter(|kind| measured.iter().any(|(g, _)| g.kind == **kind))
        .map(|kind| KindFigure {
            process: *kind,
            figure: figure(
                measured
                    .iter()
                    .filter(|(g, _)| g.kind == *kind)
                    .map(|(_, s)| s)
                    .sum(),
            ),
        })
        .collect();
    Usage {
        window_start_s: w.start_s,
        window_s: w.seconds,
        requests: w.requests,
        per_second: w.requests as f64 / w.seconds.max(1e-9),
        processes,
        regions,
        kinds,
        total: figure(measured.iter().map(|(_, s)| s).sum()),
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(ppid: u32, ticks: u64, start_time: u64) -> Stat {
        Stat {
            ppid,
            ticks,
            start_time,
        }
    }

    #[test]
    fn parses_a_stat_line() {
        let line = "4242 (postgres) S 4100 4242 4242 0 -1 4194560 1805 4566 0 0 \
                    120 35 7 3 20 0 1 0 98765 229056512 4321 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 1260 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat(line), Some(stat(4100, 120 + 35 + 7 + 3, 98765)));
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let line = "77 (tokio-rt (worker) 1) R 1 77 77 0 -1 0 0 0 0 0 \
                    10 20 30 40 20 0 8 0 555 0 0";
        assert_eq!(parse_stat(line), Some(stat(1, 100, 555)));
    }

    #[test]
    fn negative_child_times_count_as_zero_and_short_lines_are_refused() {
        let line = "9 (x) S 2 9 9 0 -1 0 0 0 0 0 5 5 -1 -1 20 0 1 0 11 0 0";
        assert_eq!(parse_stat(line), Some(stat(2, 10, 11)));
        assert_eq!(parse_stat("9 (x) S 2 9 9"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn this_process_is_in_a_snapshot() {
        let snapshot = Snapshot::take();
        let me = snapshot.stats.get(&std::process::id()).expect("/proc/self");
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
    }

    fn groups() -> Vec<Group> {
        vec![
            Group {
                region: Some("us-east".into()),
                kind: Kind::Postgres,
                pids: vec![10, 20],
                descendants: true,
            },
            Group {
                region: Some("us-east".into()),
                kind: Kind::Node,
                pids: vec![30],
                descendants: true,
            },
            Group {
                region: None,
                kind: Kind::Devcluster,
                pids: vec![1],
                descendants: false,
            },
            Group {
                region: None,
                kind: Kind::Loadgen,
                pids: vec![1],
                descendants: true,
            },
        ]
    }

    #[test]
    fn trees_are_summed_and_each_process_counts_once() {
        let snapshot = Snapshot::from_stats([
            (1, stat(0, 5, 1)),
            (10, stat(1, 100, 2)),
            (11, stat(10, 7, 3)), // a backend of the primary
            (12, stat(11, 1, 4)), // and its child
            (20, stat(1, 50, 2)),
            (30, stat(1, 40, 2)),
            (99, stat(1, 1000, 2)), // not ours
        ]);
        let sample = sample(&groups(), &snapshot);
        let ticks: Vec<Option<u64>> = sample
            .groups
            .iter()
            .map(|g| g.as_ref().map(|g| g.ticks))
            .collect();
        // devcluster alone; loadgen, the same process here, adds nothing more.
        assert_eq!(ticks, vec![Some(158), Some(40), Some(5), Some(0)]);
    }

    #[test]
    fn usage_per_request_per_region_and_in_total() {
        let start = Snapshot::from_stats([
            (1, stat(0, 0, 1)),
            (10, stat(1, 100, 2)),
            (20, stat(1, 100, 2)),
            (30, stat(1, 100, 2)),
        ]);
        let end = Snapshot::from_stats([
            (1, stat(0, 50, 1)),
            // A backend ended and was reaped: its time is in the postmaster's child time.
            (10, stat(1, 300, 2)),
            (20, stat(1, 200, 2)),
            (30, stat(1, 500, 2)),
        ]);
        let window = Window {
            start_s: 1.0,
            seconds: 2.0,
            requests: 1000,
        };
        let g = groups();
        let u = usage_at(&g, &sample(&g, &start), &sample(&g, &end), window, 100.0);
        // PostgreSQL: 300 ticks = 3 s over 2 s and 1000 requests.
        let pg = &u.processes[0].figure;
        assert_eq!(u.processes[0].process, Kind::Postgres);
        assert!((pg.cpu_s - 3.0).abs() < 1e-9);
        assert!((pg.us_per_request.unwrap() - 3000.0).abs() < 1e-6);
        assert!((pg.core_percent - 150.0).abs() < 1e-9);
        assert_eq!(u.regions.len(), 1);
        assert!((u.regions[0].figure.cpu_s - 7.0).abs() < 1e-9);
        assert!((u.total.cpu_s - 7.5).abs() < 1e-9);
        assert!((u.kind(Kind::Devcluster).unwrap().cpu_s - 0.5).abs() < 1e-9);
        assert_eq!(u.per_second, 500.0);
        assert!(u.missing.is_empty());
    }

    #[test]
    fn a_process_that_ended_or_was_replaced_is_left_out() {
        let start = Snapshot::from_stats([
            (1, stat(0, 0, 1)),
            (10, stat(1, 100, 2)),
            (20, stat(1, 100, 2)),
            (30, stat(1, 100, 2)),
        ]);
        // The node's pid now names another process; a replica is gone.
        let end = Snapshot::from_stats([
            (1, stat(0, 10, 1)),
            (10, stat(1, 300, 2)),
            (30, stat(1, 5, 9)),
        ]);
        let g = groups();
        let window = Window {
            start_s: 1.0,
            seconds: 1.0,
            requests: 0,
        };
        let u = usage_at(&g, &sample(&g, &start), &sample(&g, &end), window, 100.0);
        assert_eq!(u.missing, vec!["us-east PostgreSQL", "us-east node"]);
        assert!(u.regions.is_empty());
        assert!((u.total.cpu_s - 0.1).abs() < 1e-9);
        assert_eq!(u.total.us_per_request, None);
    }
}
