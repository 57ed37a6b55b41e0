//! `loadgen queue`: a queued on-sale. The admin makes an event of T tickets homed in one
//! region and its waiting room (`PUT /events/{id}/queue`, opening a few seconds after the
//! first join is due, so that early joiners wait in the lobby and are drawn); N users join
//! within the join window, taking turns over the client regions' routers; each follows its own
//! region's live stream for the serving counter (one stream per region in loadgen, as the
//! design has a client compute its distance from its position and the counter), reads its
//! place once the lobby is drawn (or polls it, `--poll`), takes its pass in its own region when
//! the counter passes it, reserves 1-2 tickets with it and confirms. Users still waiting when
//! the stream shows no ticket left give up. A few users also try to reserve without a pass
//! (each must be refused with 403). Meanwhile the home node's `queue_active` is scraped from
//! its `/metrics`. The report: join latency per region, what became of the users, the
//! in-flight figure against the target, the wait users were shown against the wait they had,
//! the database's admission order checks and the usual audit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::{Api, Reply};
use crate::audit::{Audit, Check};
use crate::cpu::{self, Usage};
use crate::fixture::{self, Event};
use crate::options::{parse_quantity, QueueOptions};
use crate::stats::{Key, Op, Recorder, Row, SeenBooking};
use crate::target::Target;
use crate::{minted, sse, watch as streams};

/// The most users one run drives.
const MAX_USERS: usize = 200_000;
/// Without the deployment's secret, users are signed up: at most this many per region.
const MAX_SIGNUPS_PER_REGION: usize = 5_000;
/// Lobby members read their drawn place spread over this long after the draw, not all at once.
const LOBBY_SPREAD: Duration = Duration::from_secs(3);
/// How often the home node's `/metrics` is scraped.
const SCRAPE_EVERY: Duration = Duration::from_millis(500);
/// The home node's in-flight gauge, as its `/metrics` names it (the registry's `ticketing_`
/// prefix on the contract's `queue_active`).
const ACTIVE_METRIC: &str = "ticketing_queue_active";
/// The one tier of the run's event.
const TIER: &str = "GA";

/// What a region's stream says, as the users of that region follow it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Live {
    /// A message came.
    pub seen: bool,
    /// The lobby was drawn.
    pub open: bool,
    pub serving: i64,
    pub available: Option<u64>,
}

/// A stream message's `data` (`StreamState`), read for the users.
pub fn live_of(data: &str) -> Option<Live> {
    let state: Value = serde_json::from_str(data).ok()?;
    let queue = &state["queue"];
    Some(Live {
        seen: true,
        open: queue["open"].as_bool().unwrap_or(false),
        serving: queue["serving"].as_i64().unwrap_or(0),
        available: state["totalAvailable"].as_u64(),
    })
}

/// The value of `metric{event="<event>"}` in a Prometheus text exposition.
pub fn metric_value(text: &str, metric: &str, event: &str) -> Option<f64> {
    let label = format!("event=\"{event}\"");
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(metric)?;
        let (labels, value) = rest.strip_prefix('{')?.split_once('}')?;
        if !labels.split(',').any(|l| l.trim() == label) {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The wait a user was shown (`estimatedWait`), in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shown {
    pub min_s: f64,
    pub max_s: Option<f64>,
}

impl Shown {
    fn of(place: &Value) -> Option<Shown> {
        let wait = &place["estimatedWait"];
        Some(Shown {
            min_s: wait["minSeconds"].as_f64()?,
            max_s: wait["maxSeconds"].as_f64(),
        })
    }

    /// The middle of the range (its floor when it has no ceiling).
    fn point(&self) -> f64 {
        self.max_s
            .map_or(self.min_s, |max| (self.min_s + max) / 2.0)
    }
}

/// The estimates shown against the waits had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitAccuracy {
    pub users: u64,
    /// Median of |the shown range's middle - the wait had|.
    pub median_abs_error_s: Option<f64>,
    pub p90_abs_error_s: Option<f64>,
    /// Waits that fell inside the shown range (1 s of slack: the shown figures are whole
    /// seconds).
    pub within_range_share: f64,
    pub median_wait_s: Option<f64>,
}

fn median_of(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[rank])
}

pub fn wait_accuracy(samples: &[(Shown, f64)]) -> WaitAccuracy {
    let mut errors: Vec<f64> = samples
        .iter()
        .map(|(shown, had)| (shown.point() - had).abs())
        .collect();
    errors.sort_by(f64::total_cmp);
    let mut waits: Vec<f64> = samples.iter().map(|(_, had)| *had).collect();
    waits.sort_by(f64::total_cmp);
    let within = samples
        .iter()
        .filter(|(shown, had)| {
            *had + 1.0 >= shown.min_s && shown.max_s.is_none_or(|max| *had <= max + 1.0)
        })
        .count();
    WaitAccuracy {
        users: samples.len() as u64,
        median_abs_error_s: median_of(&errors, 0.5),
        p90_abs_error_s: median_of(&errors, 0.9),
        within_range_share: within as f64 / samples.len().max(1) as f64,
        median_wait_s: median_of(&waits, 0.5),
    }
}

/// The home node's in-flight figure (`queue_active`) over the sale against its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Active {
    pub target: u32,
    pub samples: u64,
    pub mean: Option<f64>,
    pub max: Option<f64>,
    /// Seconds into the run and the value, each sample.
    pub series: Vec<(f64, f64)>,
}

pub fn active_summary(target: u32, series: Vec<(f64, f64)>) -> Active {
    let values: Vec<f64> = series.iter().map(|(_, v)| *v).collect();
    Active {
        target,
        samples: values.len() as u64,
        mean: (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64),
        max: values.iter().copied().reduce(f64::max),
        series,
    }
}

/// What became of the users.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcomes {
    pub joined: u64,
    pub join_failed: u64,
    /// Joined before the draw.
    pub lobby: u64,
    pub admitted: u64,
    pub passes: u64,
    pub pass_failed: u64,
    pub ordered: u64,
    pub tickets_ordered: u64,
    pub confirmed: u64,
    pub tickets_confirmed: u64,
    /// Admitted, but every ticket was gone by their reserve.
    pub sold_out: u64,
    /// Still waiting when the stream showed no ticket left: left the queue.
    pub gave_up: u64,
    /// Still waiting when the run's time was up.
    pub unfinished: u64,
    /// Any other failure after the join.
    pub failed: u64,
}

/// Reserves tried without a pass, deliberately.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Passless {
    pub tried: u64,
    /// Refused with 403 queue_pass_required, as they must be.
    pub refused: u64,
    /// Booked: must be 0.
    pub succeeded: u64,
    pub answers: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueReport {
    pub title: String,
    pub event: Event,
    pub client_regions: Vec<String>,
    pub users: usize,
    pub tickets: u64,
    pub join_window_s: f64,
    pub opens_in_s: f64,
    pub target_active: u32,
    pub max_admit_per_second: f64,
    pub pass_seconds: u32,
    /// Users' tokens minted with the deployment's secret (else signed up).
    pub minted_users: bool,
    pub elapsed_s: f64,
    /// From the draw to the last user done.
    pub selling_s: Option<f64>,
    pub outcomes: Outcomes,
    pub passless: Passless,
    pub active: Active,
    pub waits: WaitAccuracy,
    /// Per (client region, home region, operation): join, place, pass, reserve, confirm.
    pub rows: Vec<Row>,
    pub cpu: Option<Usage>,
    /// The database's admission-order and pass checks on the home primary.
    pub queue_checks: Vec<Check>,
    pub audit: Option<Audit>,
}

impl QueueReport {
    pub fn passed(&self) -> bool {
        self.outcomes.join_failed == 0
            && self.outcomes.unfinished == 0
            && self.outcomes.failed == 0
            && self.passless.succeeded == 0
            && self.passless.refused == self.passless.tried
            && self.rows.iter().all(|r| r.errors == 0)
            && self.queue_checks.iter().all(Check::passed)
            && self.audit.as_ref().is_none_or(Audit::passed)
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let o = &self.outcomes;
        let _ = writeln!(out, "{}", self.title);
        let _ = writeln!(
            out,
            "{} users joining within {:.0} s from {} for {} tickets (event {}, home {}); queue \
             opens {:.0} s after the first join, target {} active, at most {}/s, passes {} s; \
             users {}; {:.1} s",
            self.users,
            self.join_window_s,
            self.client_regions.join(", "),
            self.tickets,
            self.event.id,
            self.event.home,
            self.opens_in_s,
            self.target_active,
            self.max_admit_per_second,
            self.pass_seconds,
            if self.minted_users {
                "minted"
            } else {
                "signed up"
            },
            self.elapsed_s
        );
        let _ = writeln!(
            out,
            "joined {} ({} failed, {} in the lobby); admitted {}; passes {} ({} failed); orders \
             {} ({} tickets), confirmed {} ({} tickets); sold out at reserve {}; gave up when \
             sold out {}; unfinished {}; other failures {}",
            o.joined,
            o.join_failed,
            o.lobby,
            o.admitted,
            o.passes,
            o.pass_failed,
            o.ordered,
            o.tickets_ordered,
            o.confirmed,
            o.tickets_confirmed,
            o.sold_out,
            o.gave_up,
            o.unfinished,
            o.failed
        );
        let p = &self.passless;
        let _ = writeln!(
            out,
            "reserves without a pass: {} tried, {} refused 403 queue_pass_required, {} \
             succeeded {:?}",
            p.tried, p.refused, p.succeeded, p.answers
        );
        let a = &self.active;
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        let _ = writeln!(
            out,
            "home node queue_active: mean {}, max {} (target {}) over {} samples",
            f(a.mean),
            f(a.max),
            a.target,
            a.samples
        );
        let w = &self.waits;
        let _ = writeln!(
            out,
            "estimated wait vs wait had ({} users): median error {} s, p90 {} s, {:.0}% within \
             the range; median wait {} s",
            w.users,
            f(w.median_abs_error_s),
            f(w.p90_abs_error_s),
            100.0 * w.within_range_share,
            f(w.median_wait_s)
        );
        let _ = writeln!(
            out,
            "\n{:<9} {:<28} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}  answers other than 2xx",
            "operation", "client → home", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "RTT ms"
        );
        for r in &self.rows {
            let codes: Vec<String> = r.codes.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
            let _ = writeln!(
                out,
                "{:<9} {:<28} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}  {}",
                r.op.name(),
                format!("{} → {}", r.client, r.home),
                r.count,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
                r.max_ms,
                r.rtt_ms.map_or("-".into(), |v| format!("{v:.0}")),
                codes.join(", ")
            );
        }
        if !self.queue_checks.is_empty() {
            let _ = writeln!(out, "\nqueue checks on the home primary:");
            for c in &self.queue_checks {
                let mark = if c.passed() { "ok  " } else { "FAIL" };
                let _ = writeln!(
                    out,
                    "  {mark} {}: expected {}, found {}",
                    c.name, c.expected, c.found
                );
            }
        }
        match &self.audit {
            None => {
                let _ = writeln!(out, "\naudit: not run");
            }
            Some(audit) => {
                let verdict = if audit.passed() { "passed" } else { "FAILED" };
                let _ = writeln!(out, "\naudit {verdict}; tickets now {:?}", audit.tickets);
                for c in audit.checks.iter().filter(|c| !c.passed()) {
                    let _ = writeln!(
                        out,
                        "  FAIL {} {}: expected {}, found {}",
                        c.region, c.name, c.expected, c.found
                    );
                }
            }
        }
        out
    }
}

/// A user of the run.
struct User {
    n: usize,
    region: String,
    router: String,
    token: String,
}

/// Everything the users share.
struct Run {
    api: Api,
    event: Event,
    recorder: Recorder,
    live: BTreeMap<String, watch::Receiver<Live>>,
    min_quantity: u32,
    max_quantity: u32,
    poll: Option<Duration>,
    deadline: Instant,
    seed: u64,
    /// When the first user saw the lobby drawn, µs after `started`.
    drawn_us: AtomicU64,
    started: Instant,
}

/// How one user's journey ended.
#[derive(Debug, Default)]
struct Journey {
    joined: bool,
    lobby: bool,
    admitted: bool,
    pass: bool,
    pass_failed: bool,
    ordered: u32,
    confirmed: u32,
    sold_out: bool,
    gave_up: bool,
    unfinished: bool,
    failed: bool,
    wait: Option<(Shown, f64)>,
    held: Option<SeenBooking>,
    booked: Option<SeenBooking>,
}

impl Run {
    async fn timed(&self, user: &User, op: Op, started: Instant, reply: Reply) -> Reply {
        let key = Key {
            client: user.region.clone(),
            home: self.event.home.clone(),
            op,
        };
        self.recorder.record(key, started.elapsed(), &reply.answer);
        reply
    }

    fn url(&self, router: &str, tail: &str) -> String {
        format!("{router}/api/v1/events/{}/queue{tail}", self.event.id)
    }

    async fn place(&self, user: &User) -> Reply {
        let sent = Instant::now();
        let reply = self
            .api
            .call(
                Method::GET,
                &self.url(&user.router, "/me"),
                Some(&user.token),
                None,
            )
            .await;
        self.timed(user, Op::Place, sent, reply).await
    }

    /// One user: join at `due`, wait, pass, reserve, confirm.
    async fn journey(&self, user: User, due: Instant) -> Journey {
        let mut j = Journey::default();
        let mut rng = SmallRng::seed_from_u64(self.seed ^ user.n as u64);
        tokio::time::sleep_until(due.into()).await;
        let reply = self
            .api
            .call(
                Method::POST,
                &self.url(&user.router, ""),
                Some(&user.token),
                None,
            )
            .await;
        let joined = self.timed(&user, Op::Join, due, reply).await;
        if !joined.answer.ok() {
            return j;
        }
        j.joined = true;
        let mut place = joined.body;
        let mut shown = Shown::of(&place).map(|s| (s, Instant::now()));
        let mut live = self.live[&user.region].clone();
        // The lobby: wait for the draw, then read the drawn place.
        if place["position"].is_null() {
            j.lobby = true;
            let Some(drawn) = self.wait_for_draw(&user, &mut live, &mut rng).await else {
                j.unfinished = true;
                return j;
            };
            place = drawn;
            shown = Shown::of(&place).map(|s| (s, Instant::now()));
        }
        let Some(position) = place["position"].as_i64() else {
            j.failed = true;
            return j;
        };
        // Waiting: until the counter passes the place, or nothing is left to buy.
        let admitted = place["state"] == "admitted";
        if !admitted
            && !self
                .wait_for_turn(&user, &mut live, position, &mut rng)
                .await
        {
            let now = *live.borrow();
            if now.available == Some(0) && now.serving < position {
                j.gave_up = true;
            } else {
                j.unfinished = true;
            }
            return j;
        }
        j.admitted = true;
        j.wait = shown.map(|(s, at)| (s, at.elapsed().as_secs_f64()));
        // The pass, from the user's own region.
        let mut pass = None;
        for _ in 0..20 {
            let sent = Instant::now();
            let reply = self
                .api
                .call(
                    Method::POST,
                    &self.url(&user.router, "/pass"),
                    Some(&user.token),
                    None,
                )
                .await;
            let reply = self.timed(&user, Op::Pass, sent, reply).await;
            if reply.answer.ok() {
                pass = reply.body["pass"].as_str().map(str::to_owned);
                break;
            }
            if reply.answer.code.as_deref() != Some("queue_not_admitted") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let Some(pass) = pass else {
            j.pass_failed = true;
            return j;
        };
        j.pass = true;
        let mut quantity = rng.gen_range(self.min_quantity..=self.max_quantity);
        let held = loop {
            let sent = Instant::now();
            let lines = [(TIER.to_owned(), quantity)];
            let reply = self
                .api
                .reserve_with_pass(
                    &user.router,
                    &user.token,
                    &self.event.id,
                    &lines,
                    Some(&pass),
                )
                .await;
            let reply = self.timed(&user, Op::Reserve, sent, reply).await;
            if reply.answer.ok() {
                break reply;
            }
            // The last tickets: fewer than asked may be left.
            if reply.answer.code.as_deref() == Some("sold_out") && quantity > 1 {
                quantity = 1;
                continue;
            }
            if reply.answer.code.as_deref() == Some("sold_out") {
                j.sold_out = true;
            } else {
                j.failed = true;
            }
            return j;
        };
        let Some(booking) = held.body["bookingId"].as_str() else {
            j.failed = true;
            return j;
        };
        let seen = SeenBooking {
            booking_id: booking.to_owned(),
            home: self.event.home.clone(),
            quantity,
        };
        j.ordered = quantity;
        j.held = Some(seen.clone());
        let sent = Instant::now();
        let reply = self
            .api
            .confirm(&user.router, &user.token, booking, true)
            .await;
        let reply = self.timed(&user, Op::Confirm, sent, reply).await;
        if reply.answer.ok() && reply.body["status"] == "confirmed" {
            j.confirmed = quantity;
            j.booked = Some(seen);
        } else {
            j.failed = true;
        }
        j
    }

    /// A lobby member's drawn place: once its region's stream shows the lobby drawn, read
    /// (at a random moment within `LOBBY_SPREAD`, not all at once) until the replica has it;
    /// with `--poll`, also read every poll interval meanwhile. None when time is up.
    async fn wait_for_draw(
        &self,
        user: &User,
        live: &mut watch::Receiver<Live>,
        rng: &mut SmallRng,
    ) -> Option<Value> {
        loop {
            let poll_at = self
                .poll
                .map(|p| Instant::now() + p.mul_f64(rng.gen_range(0.5..1.5)))
                .unwrap_or(self.deadline);
            // The guard `wait_for` gives is not `Send`: copy the state out of it.
            let open = async { live.wait_for(|l| l.open).await.map(|l| *l) };
            tokio::select! {
                seen = tokio::time::timeout_at(self.deadline.into(), open) => {
                    if !matches!(seen, Ok(Ok(_))) {
                        return None;
                    }
                    break;
                }
                _ = tokio::time::sleep_until(poll_at.min(self.deadline).into()),
                    if self.poll.is_some() => {
                    let reply = self.place(user).await;
                    if reply.answer.ok() && !reply.body["position"].is_null() {
                        self.saw_draw();
                        return Some(reply.body);
                    }
                    if Instant::now() >= self.deadline {
                        return None;
                    }
                }
            }
        }
        self.saw_draw();
        tokio::time::sleep(LOBBY_SPREAD.mul_f64(rng.gen::<f64>())).await;
        loop {
            let reply = self.place(user).await;
            if reply.answer.ok() && !reply.body["position"].is_null() {
                return Some(reply.body);
            }
            if Instant::now() >= self.deadline {
                return None;
            }
            // The region's replica has not replayed the draw yet.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn saw_draw(&self) {
        self.drawn_us
            .fetch_min(self.started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// Waits until the region's counter reaches `position` (true), or no ticket is left, or
    /// time is up (false); polling the place too when asked.
    async fn wait_for_turn(
        &self,
        user: &User,
        live: &mut watch::Receiver<Live>,
        position: i64,
        rng: &mut SmallRng,
    ) -> bool {
        loop {
            let poll_at = self
                .poll
                .map(|p| Instant::now() + p.mul_f64(rng.gen_range(0.5..1.5)))
                .unwrap_or(self.deadline);
            // The guard `wait_for` gives is not `Send`: copy the state out of it.
            let turn = async {
                live.wait_for(|l| l.serving >= position || l.available == Some(0))
                    .await
                    .map(|l| *l)
            };
            tokio::select! {
                seen = tokio::time::timeout_at(self.deadline.into(), turn) => {
                    return match seen {
                        Ok(Ok(l)) => l.serving >= position,
                        _ => false,
                    };
                }
                _ = tokio::time::sleep_until(poll_at.min(self.deadline).into()),
                    if self.poll.is_some() => {
                    let reply = self.place(user).await;
                    if reply.body["state"] == "admitted" {
                        return true;
                    }
                    if Instant::now() >= self.deadline {
                        return false;
                    }
                }
            }
        }
    }
}

/// Follows one region's stream of the event, reopening it when it ends, until `stop`.
async fn follow(
    router: String,
    path: String,
    source: std::net::IpAddr,
    tx: watch::Sender<Live>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok((server, host)) = streams::socket_of(&router) else {
        return;
    };
    while !*stop.borrow() {
        let opened = sse::open(server, source, &host, &path, Duration::from_secs(10)).await;
        let Ok(mut stream) = opened else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        loop {
            let mut on_message = |m: sse::Message| {
                if let Some(live) = live_of(&m.data) {
                    tx.send_if_modified(|old| {
                        let changed = *old != live;
                        *old = live;
                        changed
                    });
                }
            };
            tokio::select! {
                _ = stop.changed() => return,
                read = stream.read(&mut on_message) => if read.is_err() { break },
            }
        }
    }
}

/// Scrapes the home node's `queue_active` for the event every half second until `stop`.
async fn scrape(
    api: Api,
    metrics: String,
    event: String,
    started: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<(f64, f64)> {
    let mut series = Vec::new();
    let mut tick = tokio::time::interval(SCRAPE_EVERY);
    loop {
        tokio::select! {
            _ = stop.changed() => return series,
            _ = tick.tick() => {}
        }
        if let Some(text) = api.text(&metrics).await {
            if let Some(v) = metric_value(&text, ACTIVE_METRIC, &event) {
                series.push((started.elapsed().as_secs_f64(), v));
            }
        }
    }
}

/// Users' tokens, minted or signed up, per user in turn over the regions.
async fn user_tokens(
    api: &Api,
    target: &Target,
    regions: &[String],
    count: usize,
) -> anyhow::Result<(Vec<String>, bool)> {
    if let Some(secret) = &target.jwt_secret {
        let ids: Vec<u8> = regions
            .iter()
            .map(|r| {
                target
                    .region(r)?
                    .id
                    .with_context(|| format!("cluster.json gives no id for region {r}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let mint = minted::Mint::new(secret, Duration::from_secs(3600))?;
        let tokens = (0..count)
            .map(|n| mint.token(mint.user_id(ids[n % ids.len()], n as u64)?))
            .collect::<anyhow::Result<_>>()?;
        return Ok((tokens, true));
    }
    let per_region = count.div_ceil(regions.len());
    if per_region > MAX_SIGNUPS_PER_REGION {
        bail!(
            "{count} users need cluster.json's jwtSecret (minted tokens): without it loadgen \
             signs up at most {MAX_SIGNUPS_PER_REGION} per region"
        );
    }
    let mut by_region = Vec::new();
    for region in regions {
        by_region.push(fixture::create_users(api, target, region, per_region).await?);
    }
    let tokens = (0..count)
        .map(|n| {
            by_region[n % regions.len()][n / regions.len()]
                .token
                .clone()
        })
        .collect();
    Ok((tokens, false))
}

/// The whole of `loadgen queue`.
pub async fn run(o: &QueueOptions) -> anyhow::Result<QueueReport> {
    if o.users == 0 || o.users > MAX_USERS {
        bail!("--users is 1 to {MAX_USERS}");
    }
    if o.tickets == 0 || o.tickets > 1_000_000 {
        bail!("--tickets is 1 to 1,000,000");
    }
    let (min_quantity, max_quantity) = parse_quantity(&o.quantity)?;
    let target = crate::target(&o.target)?;
    let regions: Vec<String> = if o.regions.is_empty() {
        target.regions.iter().map(|r| r.name.clone()).collect()
    } else {
        o.regions.clone()
    };
    let home = o
        .home
        .clone()
        .unwrap_or_else(|| target.regions[0].name.clone());
    let routers: Vec<String> = regions
        .iter()
        .map(|r| Ok(target.region(r)?.router.clone()))
        .collect::<anyhow::Result<_>>()?;
    let api = Api::new(o.request_timeout)?;
    let setup = Api::new(Duration::from_secs(30))?;
    let name = format!("{} on-sale", o.title);
    let tiers = vec![(TIER.to_owned(), o.tickets)];
    let event = fixture::create_event(&setup, &target, &home, &name, &tiers, 600).await?;
    fixture::wait_until_visible(&setup, &target, &event, Duration::from_secs(120)).await?;
    let (tokens, minted_users) = user_tokens(&setup, &target, &regions, o.users + o.passless)
        .await
        .context("users' tokens")?;

    // The queue opens `opens_in` after the first join is due, which is now.
    let opens_at =
        chrono::Utc::now() + chrono::Duration::from_std(o.opens_in).context("--opens-in")?;
    let home_router = &target.region(&home)?.router;
    setup
        .must(
            Method::PUT,
            &format!("{home_router}/api/v1/events/{}/queue", event.id),
            Some(&target.admin_token),
            Some(&json!({
                "opensAt": opens_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "targetActive": o.target_active,
                "maxAdmitPerSecond": o.max_admit_per_second,
                "passSeconds": o.pass_seconds,
            })),
        )
        .await
        .context("setting the event's queue (PUT /events/{id}/queue)")?;
    let started = Instant::now();

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut live = BTreeMap::new();
    let path = format!("/api/v1/events/{}/stream", event.id);
    let mut followers = Vec::new();
    for (i, (region, router)) in regions.iter().zip(&routers).enumerate() {
        let (tx, rx) = watch::channel(Live::default());
        followers.push(tokio::spawn(follow(
            router.clone(),
            path.clone(),
            sse::source_address(i, 1),
            tx,
            stop_rx.clone(),
        )));
        live.insert(region.clone(), rx);
    }
    let scraper = target.region(&home)?.node_ops.clone().map(|ops| {
        tokio::spawn(scrape(
            api.clone(),
            format!("{ops}/metrics"),
            event.id.clone(),
            started,
            stop_rx.clone(),
        ))
    });
    let groups = if target.ensure_loopback().is_ok() {
        target.cpu_groups(std::process::id())
    } else {
        Vec::new()
    };
    let cpu_start = (!groups.is_empty()).then(|| cpu::sample(&groups, &cpu::Snapshot::take()));

    let deadline = started + o.join_window + o.max_wait;
    let run = Arc::new(Run {
        api: api.clone(),
        event: event.clone(),
        recorder: Recorder::default(),
        live,
        min_quantity,
        max_quantity,
        poll: o.poll,
        deadline,
        seed: o.seed,
        drawn_us: AtomicU64::new(u64::MAX),
        started,
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut tokens = tokens.into_iter();
    for n in 0..o.users {
        let due = started + o.join_window.mul_f64(n as f64 / o.users as f64);
        let user = User {
            n,
            region: regions[n % regions.len()].clone(),
            router: routers[n % regions.len()].clone(),
            token: tokens.next().context("a token per user")?,
        };
        let run = run.clone();
        tasks.spawn(async move { run.journey(user, due).await });
    }
    // Reserves without a pass, once the queue is open: each must be refused.
    let passless_users: Vec<(String, String)> = (0..o.passless)
        .map(|n| {
            (
                routers[n % routers.len()].clone(),
                tokens.next().unwrap_or_default(),
            )
        })
        .collect();
    let passless = {
        let (api, event) = (api.clone(), event.clone());
        let at = started + o.opens_in + Duration::from_secs(1);
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let mut p = Passless::default();
            for (router, token) in passless_users {
                let lines = [(TIER.to_owned(), 1)];
                let reply = api.reserve(&router, &token, &event.id, &lines).await;
                p.tried += 1;
                let code = reply.answer.code.clone().unwrap_or_default();
                if reply.answer.ok() {
                    p.succeeded += 1;
                } else if reply.answer.status == 403 && code == "queue_pass_required" {
                    p.refused += 1;
                }
                *p.answers
                    .entry(format!("{} {code}", reply.answer.status).trim().to_owned())
                    .or_default() += 1;
            }
            p
        })
    };

    let mut outcomes = Outcomes::default();
    let mut waits = Vec::new();
    let (mut held, mut confirmed) = (Vec::new(), Vec::new());
    let progress = tokio::spawn(progress(run.clone(), o.users));
    let ended = tokio::time::timeout_at((deadline + Duration::from_secs(15)).into(), async {
        while let Some(done) = tasks.join_next().await {
            let Ok(j) = done else { continue };
            tally(&mut outcomes, &j);
            waits.extend(j.wait);
            held.extend(j.held);
            confirmed.extend(j.booked);
        }
    })
    .await;
    progress.abort();
    eprintln!();
    if ended.is_err() {
        outcomes.unfinished += tasks.len() as u64;
        tasks.abort_all();
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let drawn_us = run.drawn_us.load(Ordering::Relaxed);
    let selling_s = (drawn_us != u64::MAX).then(|| elapsed_s - drawn_us as f64 / 1e6);
    let cpu_usage = cpu_start.map(|start| {
        let end = cpu::sample(&groups, &cpu::Snapshot::take());
        cpu::usage(
            &groups,
            &start,
            &end,
            0.0,
            elapsed_s,
            run.recorder.requests.load(Ordering::Relaxed),
        )
    });
    let _ = stop_tx.send(true);
    let series = match scraper {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    };
    for f in followers {
        let _ = f.await;
    }
    let passless = passless.await.unwrap_or_default();
    let (queue_checks, audit) = if o.no_audit {
        (Vec::new(), None)
    } else {
        (
            crate::audit::queue_checks(&target, &event).await?,
            Some(crate::audit::run(&target, &[&event], &held, &confirmed).await?),
        )
    };
    Ok(QueueReport {
        title: o.title.clone(),
        client_regions: regions,
        users: o.users,
        tickets: o.tickets,
        join_window_s: o.join_window.as_secs_f64(),
        opens_in_s: o.opens_in.as_secs_f64(),
        target_active: o.target_active,
        max_admit_per_second: o.max_admit_per_second,
        pass_seconds: o.pass_seconds,
        minted_users,
        elapsed_s,
        selling_s,
        outcomes,
        passless,
        active: active_summary(o.target_active, series),
        waits: wait_accuracy(&waits),
        rows: run.recorder.rows(elapsed_s, &target),
        cpu: cpu_usage,
        queue_checks,
        audit,
        event,
    })
}

fn tally(o: &mut Outcomes, j: &Journey) {
    let count = |b: bool| u64::from(b);
    o.joined += count(j.joined);
    o.join_failed += count(!j.joined);
    o.lobby += count(j.lobby);
    o.admitted += count(j.admitted);
    o.passes += count(j.pass);
    o.pass_failed += count(j.pass_failed);
    o.ordered += count(j.ordered > 0);
    o.tickets_ordered += u64::from(j.ordered);
    o.confirmed += count(j.confirmed > 0);
    o.tickets_confirmed += u64::from(j.confirmed);
    o.sold_out += count(j.sold_out);
    o.gave_up += count(j.gave_up);
    o.unfinished += count(j.unfinished);
    o.failed += count(j.failed);
}

/// A line on stderr every five seconds: requests so far, errors, the counter in each region.
async fn progress(run: Arc<Run>, users: usize) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tick.tick().await;
        let serving: Vec<String> = run
            .live
            .iter()
            .map(|(region, rx)| {
                let l = *rx.borrow();
                format!("{region} serving {} left {:?}", l.serving, l.available)
            })
            .collect();
        eprintln!(
            "[{:>5.1}s] {users} users: {} requests, {} errors; {}",
            run.started.elapsed().as_secs_f64(),
            run.recorder.requests.load(Ordering::Relaxed),
            run.recorder.errors.load(Ordering::Relaxed),
            serving.join("; ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_states_give_the_counter_and_what_is_left() {
        let data = r#"{"eventId":"7","tiers":[{"name":"GA","available":12}],"totalAvailable":12,
                      "queue":{"eventId":"7","open":true,"serving":40,"lastPosition":90}}"#;
        assert_eq!(
            live_of(data),
            Some(Live {
                seen: true,
                open: true,
                serving: 40,
                available: Some(12)
            })
        );
        let unqueued = r#"{"eventId":"7","tiers":[],"totalAvailable":0,"queue":null}"#;
        assert_eq!(
            live_of(unqueued),
            Some(Live {
                seen: true,
                open: false,
                serving: 0,
                available: Some(0)
            })
        );
        assert_eq!(live_of("not json"), None);
    }

    #[test]
    fn metrics_by_event() {
        // As a node exposes them (checked against queue-core's node).
        let text = "# HELP ticketing_queue_active Waiting room admitted users not yet done.\n\
                    # TYPE ticketing_queue_active gauge\n\
                    ticketing_queue_active{event=\"12\"} 3\n\
                    ticketing_queue_active{event=\"123\"} 480\n\
                    ticketing_queue_active_total{event=\"123\"} 9\n\
                    ticketing_queue_target{event=\"123\"} 500\n";
        assert_eq!(metric_value(text, ACTIVE_METRIC, "123"), Some(480.0));
        assert_eq!(metric_value(text, ACTIVE_METRIC, "12"), Some(3.0));
        assert_eq!(
            metric_value(text, "ticketing_queue_target", "123"),
            Some(500.0)
        );
        assert_eq!(metric_value(text, ACTIVE_METRIC, "1"), None);
        assert_eq!(
            metric_value("m{region=\"a\",event=\"5\"} 2.5", "m", "5"),
            Some(2.5)
        );
    }

    #[test]
    fn estimates_against_waits() {
        let shown = |min: f64, max: Option<f64>| Shown {
            min_s: min,
            max_s: max,
        };
        let samples = [
            (shown(10.0, Some(20.0)), 15.0), // error 0, inside
            (shown(10.0, Some(20.0)), 25.0), // error 10, outside
            (shown(4.0, None), 6.0),         // error 2, inside (no ceiling)
            (shown(0.0, Some(0.0)), 0.5),    // error 0.5, inside with slack
        ];
        let a = wait_accuracy(&samples);
        assert_eq!(a.users, 4);
        assert_eq!(a.median_abs_error_s, Some(0.5));
        assert_eq!(a.p90_abs_error_s, Some(10.0));
        assert!((a.within_range_share - 0.75).abs() < 1e-9);
        assert_eq!(a.median_wait_s, Some(6.0));
        let none = wait_accuracy(&[]);
        assert_eq!((none.users, none.median_abs_error_s), (0, None));
    }

    #[test]
    fn the_in_flight_summary() {
        let a = active_summary(500, vec![(1.0, 100.0), (1.5, 500.0), (2.0, 450.0)]);
        assert_eq!((a.samples, a.max), (3, Some(500.0)));
        assert!((a.mean.unwrap() - 350.0).abs() < 1e-9);
        let empty = active_summary(500, Vec::new());
        assert_eq!((empty.mean, empty.max), (None, None));
    }

    #[test]
    fn journeys_add_up() {
        let mut o = Outcomes::default();
        tally(
            &mut o,
            &Journey {
                joined: true,
                lobby: true,
                admitted: true,
                pass: true,
                ordered: 2,
                confirmed: 2,
                ..Journey::default()
            },
        );
        tally(
            &mut o,
            &Journey {
                joined: true,
                gave_up: true,
                ..Journey::default()
            },
        );
        tally(&mut o, &Journey::default());
        assert_eq!(
            (o.joined, o.join_failed, o.lobby, o.admitted, o.gave_up),
            (2, 1, 1, 1, 1)
        );
        assert_eq!(
            (o.ordered, o.tickets_ordered, o.tickets_confirmed),
            (1, 2, 2)
        );
    }
}
