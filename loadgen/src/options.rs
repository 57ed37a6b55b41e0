//! The command lines of `loadgen run`, `watch`, `queue` and `create-event`, and the cluster they
//! share.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use crate::scenario::Scenario;

/// Where the cluster is.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// devcluster's cluster.json: routers, nodes, primaries, admin token, link delays, PIDs.
    #[arg(long, conflicts_with = "router")]
    pub cluster: Option<PathBuf>,
    /// Instead of --cluster: a region's router, as region=url (repeat per region).
    #[arg(long, value_name = "REGION=URL", requires = "admin_token")]
    pub router: Vec<String>,
    /// With --router: a region's primary for the audit, as region=postgres-url.
    #[arg(long, value_name = "REGION=URL")]
    pub primary: Vec<String>,
    /// With --router: an admin JWT, to create the run's events.
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Allow routers and primaries that are not on this machine.
    #[arg(long)]
    pub allow_remote: bool,
}

#[derive(Debug, Clone, Args)]
pub struct Options {
    #[command(flatten)]
    pub target: TargetArgs,

    #[arg(long, value_enum, default_value = "mix")]
    pub scenario: Scenario,
    /// Weights of the scenarios in a mix.
    #[arg(long, default_value = "browse=80,onsale=15,global=5")]
    pub mix: String,
    /// Closed loop: this many virtual users, each starting a journey when its last one ends.
    #[arg(long, default_value_t = 64)]
    pub users: usize,
    /// Open loop: journeys arriving per second whatever the platform does (replaces --users).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: journeys in flight at most; later arrivals wait and their wait is counted.
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,
    /// How long arrivals go on: 30s, 2m, or seconds.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many journeys even if time is left.
    #[arg(long)]
    pub max_journeys: Option<u64>,
    /// How long journeys running at the end may take to finish before they are cut off.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Deadline of each request.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// The steady window (CPU per request) starts this long into the load and ends with it.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Client regions, comma-separated (default: every region). Users talk to their own router.
    #[arg(long, value_delimiter = ',')]
    pub clients: Vec<String>,
    /// Home region of the hot event (default: the first region).
    #[arg(long)]
    pub home: Option<String>,
    /// Use this existing event as the hot event instead of creating one.
    #[arg(long)]
    pub event: Option<String>,
    /// Tiers and tickets of the hot event the run creates.
    #[arg(long, default_value = "VIP=2000,Front Row=8000,GA=200000")]
    pub tiers: String,
    /// Tiers and tickets of the event the run creates in each region for `global` and `browse`.
    #[arg(long, default_value = "VIP=500,GA=20000")]
    pub spread_tiers: String,
    /// Tickets per booking, as min-max.
    #[arg(long, default_value = "1-4")]
    pub quantity: String,
    /// What a held booking becomes, as weights.
    #[arg(long, default_value = "confirm=60,fail=10,cancel=5,abandon=25")]
    pub outcomes: String,
    /// The reads of a browse journey, in order.
    #[arg(long, default_value = "events,event,availability")]
    pub reads: String,
    /// How long a hold lasts on the run's events, in seconds.
    #[arg(long, default_value_t = 600)]
    pub hold_seconds: u32,
    /// User accounts per client region (default: one per virtual user, at least 50).
    #[arg(long)]
    pub accounts: Option<usize>,
    /// Seed of the virtual users' choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Skip the audit of the primaries.
    #[arg(long)]
    pub no_audit: bool,

    /// The report's heading.
    #[arg(long, default_value = "loadgen")]
    pub title: String,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw latency percentiles per operation and region pair here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// `loadgen create-event`: an event and its tickets, with no load, for runs given `--event`.
#[derive(Debug, Clone, Args)]
pub struct EventOptions {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Home region (default: the first region).
    #[arg(long)]
    pub home: Option<String>,
    /// Tiers and their tickets.
    #[arg(long, default_value = "GA=1000")]
    pub tiers: String,
    #[arg(long, default_value = "loadgen event")]
    pub name: String,
    /// How long a hold lasts on the event, in seconds.
    #[arg(long, default_value_t = 600)]
    pub hold_seconds: u32,
    /// How long every region's router may take to show all the tickets.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub visible_within: Duration,
}

/// `loadgen watch`: subscribers holding one live stream each in one region while a writer
/// books, and when each change reaches each of them.
#[derive(Debug, Clone, Args)]
pub struct WatchOptions {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Streams to hold, one per subscriber.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// The region whose router the subscribers connect to (default: the first region).
    #[arg(long)]
    pub region: Option<String>,
    /// Watch this existing event instead of creating one.
    #[arg(long)]
    pub event: Option<String>,
    /// Home region of the event the run creates (default: --region).
    #[arg(long)]
    pub home: Option<String>,
    /// Tiers and tickets of the event the run creates.
    #[arg(long, default_value = "GA=100000")]
    pub tiers: String,
    /// The region whose router the writer books through (default: the event's home).
    #[arg(long)]
    pub writer: Option<String>,
    /// How long the streams are held once every subscriber is connected (at least long
    /// enough for the changes and 3 s after the last).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Bookings the writer makes, each one change of the stream.
    #[arg(long, default_value_t = 5)]
    pub changes: usize,
    /// Time between two of the writer's bookings.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub change_interval: Duration,
    /// New streams opened per second while connecting.
    #[arg(long, default_value_t = 2000.0)]
    pub ramp: f64,
    /// Streams per loopback source address (127.200.x.y), under the router's per-address cap.
    #[arg(long, default_value_t = 30)]
    pub per_address: usize,
    /// Streams one process holds: past it loadgen re-executes itself as `watch-worker`
    /// processes, each holding its share (a process holds at most its open-file limit of
    /// streams, 20,000 where it cannot be raised).
    #[arg(long, default_value_t = 16_000)]
    pub per_worker: usize,
    /// Reads of the event page per second while the streams are held (0: none).
    #[arg(long, default_value_t = 50.0)]
    pub reads: f64,
    /// Deadline of opening one stream (connect and answer head).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Skip the audit of the event's primary.
    #[arg(long)]
    pub no_audit: bool,
    #[arg(long, default_value = "loadgen watch")]
    pub title: String,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `loadgen queue`: a queued on-sale, users joining from every region, waiting, taking their
/// pass, booking.
#[derive(Debug, Clone, Args)]
pub struct QueueOptions {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Users joining the queue.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// GA tickets of the event the run creates.
    #[arg(long, default_value_t = 500)]
    pub tickets: u64,
    /// Users join spread evenly over this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub join_window: Duration,
    /// The queue opens (the lobby is drawn) this long after the first join is due.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub opens_in: Duration,
    /// Client regions, comma-separated (default: every region); users take turns.
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Home region of the event (default: the first region).
    #[arg(long)]
    pub home: Option<String>,
    /// The queue's target of admitted users not yet done.
    #[arg(long, default_value_t = 500)]
    pub target_active: u32,
    /// The queue's highest admission rate, per second.
    #[arg(long, default_value_t = 1000.0)]
    pub max_admit_per_second: f64,
    /// How long an admitted user's pass window lasts, in seconds.
    #[arg(long, default_value_t = 60)]
    pub pass_seconds: u32,
    /// Tickets per order, as min-max.
    #[arg(long, default_value = "1-2")]
    pub quantity: String,
    /// Waiting users also poll their place (`GET /events/{id}/queue/me`) this often, with
    /// jitter (default: they follow their region's stream only).
    #[arg(long, value_parser = parse_duration)]
    pub poll: Option<Duration>,
    /// Users who try to reserve without a pass (each must get 403 queue_pass_required).
    #[arg(long, default_value_t = 5)]
    pub passless: usize,
    /// The most the run waits, after the join window, for every user to finish.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub max_wait: Duration,
    /// Deadline of each request.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Seed of the users' choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Skip the audit of the primaries.
    #[arg(long)]
    pub no_audit: bool,
    #[arg(long, default_value = "loadgen queue")]
    pub title: String,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `30s`, `2m`, `500ms` or plain seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration like 30s, 2m or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => bail!("{text:?}: the unit is ms, s, m or h"),
    };
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 24.0 * 3600.0 {
        bail!("{text:?}: a duration is above 0 and at most a day");
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `VIP=2000,Front Row=8000,GA=200000`.
pub fn parse_tiers(text: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let tiers = text
        .split(',')
        .map(|part| {
            let (name, count) = part
                .split_once('=')
                .with_context(|| format!("expected tier=tickets, got {part:?}"))?;
            let count: u64 = count
                .trim()
                .parse()
                .with_context(|| format!("tickets of {name} is not a whole number"))?;
            Ok((name.trim().to_owned(), count))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if tiers.is_empty() || tiers.iter().all(|(_, n)| *n == 0) {
        bail!("an event needs at least one tier with tickets");
    }
    Ok(tiers)
}

/// `1-4` or `2`.
pub fn parse_quantity(text: &str) -> anyhow::Result<(u32, u32)> {
    let (min, max) = text.split_once('-').unwrap_or((text, text));
    let min: u32 = min
        .trim()
        .parse()
        .context("--quantity is min-max, like 1-4")?;
    let max: u32 = max
        .trim()
        .parse()
        .context("--quantity is min-max, like 1-4")?;
    if min == 0 || min > max {
        bail!("--quantity {text}: at least 1, and min no more than max");
    }
    Ok((min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        for bad in ["", "0s", "-1s", "3d", "forever", "NaNs", "90000s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tiers_and_quantities() {
        assert_eq!(
            parse_tiers("VIP=2,Front Row=3").unwrap(),
            vec![("VIP".into(), 2), ("Front Row".into(), 3)]
        );
        assert!(parse_tiers("VIP").is_err());
        assert!(parse_tiers("VIP=0").is_err());
        assert!(parse_tiers("VIP=-3").is_err());
        assert_eq!(parse_quantity("1-4").unwrap(), (1, 4));
        assert_eq!(parse_quantity("2").unwrap(), (2, 2));
        assert!(parse_quantity("0-2").is_err());
        assert!(parse_quantity("4-1").is_err());
    }
}
