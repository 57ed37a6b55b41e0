//! The two ways of applying load, both bounded in time and in journeys:
//! - closed loop: a fixed number of virtual users, each starting its next journey when the last
//!   one ends (throughput is what the platform allows);
//! - open loop: journeys arrive at a fixed rate whatever the platform does, as fans do at 10:00,
//!   each timed from its scheduled arrival. In-flight journeys are capped to bound memory; an
//!   arrival that waits for the cap still counts its wait.
//!
//! Each run also has a steady window, from `warmup` into the load to the end of arrivals (or of
//! the last journey, if sooner), before the drain: a caller's probe is sampled at both ends.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::Semaphore;

use crate::scenario::{Context, VirtualUser};

#[derive(Debug, Clone, Copy)]
pub enum Arrivals {
    Closed {
        users: usize,
    },
    Open {
        per_second: f64,
        max_in_flight: usize,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub duration: Duration,
    pub max_journeys: Option<u64>,
    /// How long journeys still running at the end may take before they are cut off.
    pub drain: Duration,
    /// When the steady window starts, after the first arrival: connections are open and
    /// caches warm by then.
    pub warmup: Duration,
}

/// A probe's samples at both ends of the steady window.
#[derive(Debug, Clone)]
pub struct Steady<S> {
    pub start: S,
    pub end: S,
}

/// How the load went, beside the recorder's figures.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// From the first arrival to the last journey's end.
    pub elapsed: Duration,
    /// Journeys still running when the drain ran out, abandoned.
    pub cut_off: u64,
    /// Open loop: arrivals that started later than scheduled because the cap was reached.
    pub late_arrivals: u64,
}

/// The i-th virtual user: client regions take turns, each with its own account in turn.
fn user(ctx: &Context, i: usize) -> VirtualUser {
    let (region, router) = &ctx.routers[i % ctx.routers.len()];
    let accounts = &ctx.fixture.users[region];
    let token = accounts[(i / ctx.routers.len()) % accounts.len()]
        .token
        .clone();
    VirtualUser {
        region: region.clone(),
        router: router.clone(),
        token,
    }
}

/// Applies the load; `probe` is sampled at both ends of the steady window, which is none when
/// the load ended before the warm-up did.
pub async fn run<S: Send + 'static>(
    ctx: Arc<Context>,
    arrivals: Arrivals,
    bounds: Bounds,
    seed: u64,
    probe: impl Fn() -> S + Send + Sync + 'static,
) -> (Run, Option<Steady<S>>) {
    let started = Instant::now();
    let deadline = started + bounds.duration;
    let probe = Arc::new(probe);
    let window_start = {
        let probe = probe.clone();
        let at = started + bounds.warmup;
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            probe()
        })
    };
    let budget = Arc::new(Budget {
        max: bounds.max_journeys,
        taken: AtomicU64::new(0),
    });
    let progress = tokio::spawn(progress(ctx.clone(), started, bounds.duration));
    let mut tasks = tokio::task::JoinSet::new();
    let mut late_arrivals = 0;
    match arrivals {
        Arrivals::Closed { users } => {
            for i in 0..users {
                let ctx = ctx.clone();
                let budget = budget.clone();
                tasks.spawn(async move {
                    let user = user(&ctx, i);
                    let mut rng = SmallRng::seed_from_u64(seed ^ i as u64);
                    while Instant::now() < deadline && budget.take() {
                        ctx.journey(&user, &mut rng, Instant::now()).await;
                    }
                });
            }
        }
        Arrivals::Open {
            per_second,
            max_in_flight,
        } => {
            let in_flight = Arc::new(Semaphore::new(max_in_flight));
            let interval = Duration::from_secs_f64(1.0 / per_second);
            for k in 0u64.. {
                let due = started + interval.mul_f64(k as f64);
                if due >= deadline || !budget.take() {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let permit = match in_flight.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        late_arrivals += 1;
                        in_flight
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("semaphore is never closed")
                    }
                };
                let ctx = ctx.clone();
                tasks.spawn(async move {
                    let user = user(&ctx, k as usize);
                    let mut rng = SmallRng::seed_from_u64(seed ^ k);
                    ctx.journey(&user, &mut rng, due).await;
                    drop(permit);
                });
                // Finished journeys' results are not needed: keep the set from growing.
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    // The steady window ends with the arrivals: at the deadline, or when every journey has
    // ended (a journey budget spent) if that comes first.
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => break,
            next = tasks.join_next() => if next.is_none() { break },
        }
    }
    let window_end = probe();
    window_start.abort();
    let steady = window_start.await.ok().map(|start| Steady {
        start,
        end: window_end,
    });
    let drain_until = tokio::time::Instant::from(deadline.max(Instant::now())) + bounds.drain;
    while let Ok(Some(_)) = tokio::time::timeout_at(drain_until, tasks.join_next()).await {}
    let cut_off = tasks.len() as u64;
    tasks.abort_all();
    let elapsed = started.elapsed();
    progress.abort();
    eprintln!();
    let run = Run {
        elapsed,
        cut_off,
        late_arrivals,
    };
    (run, steady)
}

struct Budget {
    max: Option<u64>,
    taken: AtomicU64,
}

impl Budget {
    fn take(&self) -> bool {
        match self.max {
            None => true,
            Some(max) => self.taken.fetch_add(1, Ordering::Relaxed) < max,
        }
    }
}

/// A line on stderr each second: elapsed, requests, their rate over the last second, errors.
async fn progress(ctx: Arc<Context>, started: Instant, duration: Duration) {
    let terminal = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        tick.tick().await;
        let r = &ctx.recorder;
        let requests = r.requests.load(Ordering::Relaxed);
        let line = format!(
            "[{:>5.1}s / {:.0}s] {} journeys, {} requests, {}/s, {} errors",
            started.elapsed().as_secs_f64(),
            duration.as_secs_f64(),
            r.journeys.load(Ordering::Relaxed),
            requests,
            requests - last,
            r.errors.load(Ordering::Relaxed),
        );
        last = requests;
        let mut err = std::io::stderr().lock();
        // On a terminal the line rewrites itself; in a log, one line every five seconds.
        if terminal {
            let _ = write!(err, "\r{line}\x1b[K");
        } else if started.elapsed().as_secs().is_multiple_of(5) {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}
