//! `loadgen`: virtual users in every region, each talking only to its own region's router,
//! browsing, buying in an on-sale and booking across regions; latency per (client region, home
//! region, operation) in HDR histograms; CPU per request of every process over the steady part
//! of the load; then an audit of the primaries. See [`options`] for the knobs and
//! `bench/report.sh` for the benchmark report built from its JSON.

pub mod api;
pub mod audit;
pub mod benchmarks;
pub mod chart;
pub mod cpu;
pub mod descriptors;
pub mod fixture;
pub mod load;
pub mod memory;
pub mod minted;
pub mod options;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod sse;
pub mod stats;
pub mod target;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use reqwest::Method;

use crate::api::Api;
use crate::fixture::Fixture;
use crate::load::{Arrivals, Bounds, Steady};
use crate::options::{parse_quantity, parse_tiers, EventOptions, Options, TargetArgs};
use crate::report::{NodeCounters, Report, Totals};
use crate::scenario::{parse_mix, parse_reads, Context, Plan, Scenario};
use crate::stats::Recorder;
use crate::target::Target;

/// A virtual user's account count is capped: sign-ups are set-up time, not load.
const MAX_ACCOUNTS_PER_REGION: usize = 5_000;

pub fn target(options: &TargetArgs) -> anyhow::Result<Target> {
    let target = match &options.cluster {
        Some(path) => Target::from_cluster_json(path)?,
        None if !options.router.is_empty() => Target::from_urls(
            &options.router,
            &options.primary,
            options.admin_token.clone().unwrap_or_default(),
        )?,
        None => bail!("say where the cluster is: --cluster cluster.json, or --router region=url"),
    };
    if !options.allow_remote {
        target.ensure_loopback()?;
    }
    Ok(target)
}

fn plan(options: &Options) -> anyhow::Result<Plan> {
    let (min_quantity, max_quantity) = parse_quantity(&options.quantity)?;
    Ok(Plan {
        scenario: options.scenario,
        mix: parse_mix(&options.mix)?,
        min_quantity,
        max_quantity,
        outcomes: options.outcomes.parse()?,
        reads: parse_reads(&options.reads)?,
    })
}

fn arrivals(options: &Options) -> anyhow::Result<Arrivals> {
    match options.rate {
        Some(rate) if !(rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0) => {
            bail!("--rate is journeys per second, above 0 and at most 1,000,000")
        }
        Some(per_second) => Ok(Arrivals::Open {
            per_second,
            max_in_flight: options.max_in_flight.max(1),
        }),
        None if options.users == 0 || options.users > 100_000 => {
            bail!("--users is 1 to 100,000")
        }
        None => Ok(Arrivals::Closed {
            users: options.users,
        }),
    }
}

/// Sets up, drives the load, audits: the whole of `loadgen run`.
pub async fn execute(options: &Options) -> anyhow::Result<Report> {
    let target = target(&options.target)?;
    let plan = plan(options)?;
    let arrivals = arrivals(options)?;
    let api = Api::new(options.request_timeout)?;
    let clients: Vec<String> = if options.clients.is_empty() {
        target.regions.iter().map(|r| r.name.clone()).collect()
    } else {
        options.clients.clone()
    };
    let mut routers = Vec::new();
    for name in &clients {
        routers.push((name.clone(), target.region(name)?.router.clone()));
    }

    let fixture = build_fixture(&api, &target, &plan, options, &clients, arrivals).await?;
    let before = node_counters(&api, &target).await;
    let recorder = Arc::new(Recorder::default());
    let ctx = Arc::new(Context {
        api: api.clone(),
        fixture,
        plan,
        recorder: recorder.clone(),
        routers,
    });
    let bounds = Bounds {
        duration: options.duration,
        max_journeys: options.max_journeys,
        drain: options.drain,
        warmup: options.warmup,
    };
    let groups = Arc::new(cpu_groups(&target));
    let probe = {
        let (recorder, groups) = (recorder.clone(), groups.clone());
        move || Mark::now(&recorder, &groups)
    };
    let (run, steady) = load::run(ctx.clone(), arrivals, bounds, options.seed, probe).await;
    let after = node_counters(&api, &target).await;
    let cpu = steady
        .filter(|_| !groups.is_empty())
        .map(|steady| cpu_usage(&groups, &steady, options.warmup.as_secs_f64()));

    let seconds = run.elapsed.as_secs_f64();
    let rows = recorder.rows(seconds, &target);
    let requests: u64 = rows.iter().map(|r| r.count).sum();
    let totals = Totals {
        journeys: recorder.journeys.load(Ordering::Relaxed),
        requests,
        ok: rows.iter().map(|r| r.ok).sum(),
        refused: rows.iter().map(|r| r.refused).sum(),
        errors: rows.iter().map(|r| r.errors).sum(),
        per_second: requests as f64 / seconds,
    };
    let nodes = before
        .iter()
        .filter_map(|(region, (hits0, misses0))| {
            let (hits1, misses1) = after.get(region)?;
            let (hits, misses) = (
                hits1.saturating_sub(*hits0),
                misses1.saturating_sub(*misses0),
            );
            Some(NodeCounters {
                region: region.clone(),
                cache_hits: hits,
                cache_misses: misses,
                hit_ratio: if hits + misses == 0 {
                    0.0
                } else {
                    hits as f64 / (hits + misses) as f64
                },
                database_reads_per_second: misses as f64 / seconds,
            })
        })
        .collect();
    let events: Vec<fixture::Event> = ctx.fixture.events().into_iter().cloned().collect();
    let audit = if options.no_audit {
        None
    } else {
        let events: Vec<&fixture::Event> = events.iter().collect();
        let audit = audit::run(&target, &events, &recorder.held(), &recorder.confirmed()).await?;
        Some(audit)
    };
    Ok(Report {
        title: options.title.clone(),
        plan: ctx.plan.clone(),
        arrivals: match arrivals {
            Arrivals::Closed { users } => format!("closed loop, {users} users"),
            Arrivals::Open { per_second, .. } => format!("open loop, {per_second} journeys/s"),
        },
        client_regions: clients,
        duration_s: options.duration.as_secs_f64(),
        elapsed_s: seconds,
        cut_off: run.cut_off,
        late_arrivals: run.late_arrivals,
        events,
        totals,
        rows,
        client_region_rows: recorder.client_region_rows(seconds),
        nodes,
        cpu,
        audit,
    })
}

/// The processes to account CPU to: those the target names, when it runs on this machine.
fn cpu_groups(target: &Target) -> Vec<cpu::Group> {
    if target.ensure_loopback().is_err() {
        return Vec::new();
    }
    target.cpu_groups(std::process::id())
}

/// What the steady window's probe reads at each end: when, the requests completed so far, and
/// the CPU the processes have used so far.
struct Mark {
    at: Instant,
    requests: u64,
    cpu: cpu::Sample,
}

impl Mark {
    fn now(recorder: &Recorder, groups: &[cpu::Group]) -> Mark {
        let cpu = if groups.is_empty() {
            cpu::Sample::default()
        } else {
            cpu::sample(groups, &cpu::Snapshot::take())
        };
        Mark {
            at: Instant::now(),
            requests: recorder.requests.load(Ordering::Relaxed),
            cpu,
        }
    }
}

fn cpu_usage(groups: &[cpu::Group], steady: &Steady<Mark>, warmup_s: f64) -> cpu::Usage {
    let Steady { start, end } = steady;
    cpu::usage(
        groups,
        &start.cpu,
        &end.cpu,
        warmup_s,
        end.at.duration_since(start.at).as_secs_f64(),
        end.requests.saturating_sub(start.requests),
    )
}

/// `loadgen create-event`: the event, once every region's router shows all its tickets.
pub async fn create_event(options: &EventOptions) -> anyhow::Result<fixture::Event> {
    let target = target(&options.target)?;
    // Longer than a run's request deadline: creating 100,000 tickets may take seconds.
    let api = Api::new(std::time::Duration::from_secs(30))?;
    let home = match &options.home {
        Some(home) => target.region(home)?.name.clone(),
        None => target.regions[0].name.clone(),
    };
    let tiers = parse_tiers(&options.tiers)?;
    let event = fixture::create_event(
        &api,
        &target,
        &home,
        &options.name,
        &tiers,
        options.hold_seconds,
    )
    .await?;
    fixture::wait_until_visible(&api, &target, &event, options.visible_within).await?;
    Ok(event)
}

async fn build_fixture(
    api: &Api,
    target: &Target,
    plan: &Plan,
    options: &Options,
    clients: &[String],
    arrivals: Arrivals,
) -> anyhow::Result<Fixture> {
    let hot = match (&options.event, plan.uses(Scenario::Onsale)) {
        (Some(id), _) => Some(fixture::existing_event(api, target, id).await?),
        (None, true) => {
            let home = options
                .home
                .clone()
                .unwrap_or_else(|| target.regions[0].name.clone());
            let tiers = parse_tiers(&options.tiers)?;
            let name = format!("{} on-sale", options.title);
            let event =
                fixture::create_event(api, target, &home, &name, &tiers, options.hold_seconds)
                    .await?;
            Some(event)
        }
        (None, false) => None,
    };
    let wants_spread =
        plan.uses(Scenario::Global) || (plan.uses(Scenario::Browse) && hot.is_none());
    let mut spread = Vec::new();
    if wants_spread {
        let tiers = parse_tiers(&options.spread_tiers)?;
        for region in &target.regions {
            let name = format!("{} in {}", options.title, region.name);
            spread.push(
                fixture::create_event(
                    api,
                    target,
                    &region.name,
                    &name,
                    &tiers,
                    options.hold_seconds,
                )
                .await?,
            );
        }
    }
    let per_region = match (options.accounts, arrivals) {
        (Some(n), _) => n,
        (None, Arrivals::Closed { users }) => users.div_ceil(clients.len()).max(50),
        (None, Arrivals::Open { .. }) => 200,
    }
    .clamp(1, MAX_ACCOUNTS_PER_REGION);
    let mut users = BTreeMap::new();
    for region in clients {
        let accounts = fixture::create_users(api, target, region, per_region)
            .await
            .with_context(|| format!("signing up users in {region}"))?;
        users.insert(region.clone(), accounts);
    }
    Ok(Fixture { hot, spread, users })
}

/// Each node's cache hits and misses so far, where the node is known and answers.
async fn node_counters(api: &Api, target: &Target) -> BTreeMap<String, (u64, u64)> {
    let mut counters = BTreeMap::new();
    for region in &target.regions {
        let Some(ops) = &region.node_ops else {
            continue;
        };
        let url = format!("{ops}/cluster");
        if let Ok(body) = api.must(Method::GET, &url, None, None).await {
            let cache = &body["cache"];
            if let (Some(hits), Some(misses)) = (cache["hits"].as_u64(), cache["misses"].as_u64()) {
                counters.insert(region.name.clone(), (hits, misses));
            }
        }
    }
    counters
}
