//! What a virtual user does, one journey at a time:
//! - `browse`: the event list, an event page, its availability;
//! - `onsale`: reserve 1 to 4 tickets of the hot event across its tiers, then confirm, fail the
//!   payment, cancel or abandon the hold, in configurable shares;
//! - `global`: check availability of an event homed in any region, then book it the same way;
//! - `mix`: each journey one of the above, by weight.
//!
//! The first request of a journey is timed from when the journey was due (open loop: its
//! scheduled arrival), so a server that falls behind cannot hide its queue; the requests after it
//! depend on its answer and are timed from when they were sent.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use rand::rngs::SmallRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::api::{Api, Reply};
use crate::fixture::{Event, Fixture};
use crate::stats::{Key, Op, Recorder, SeenBooking, ALL_REGIONS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum Scenario {
    Browse,
    Onsale,
    Global,
    Mix,
}

/// What a held booking becomes, as weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcomes {
    pub confirm: u32,
    pub fail: u32,
    pub cancel: u32,
    pub abandon: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Confirm,
    Fail,
    Cancel,
    Abandon,
}

impl FromStr for Outcomes {
    type Err = anyhow::Error;

    /// `confirm=60,fail=10,cancel=0,abandon=30`; names left out weigh 0.
    fn from_str(text: &str) -> anyhow::Result<Outcomes> {
        let mut o = Outcomes {
            confirm: 0,
            fail: 0,
            cancel: 0,
            abandon: 0,
        };
        for (name, weight) in weights(text)? {
            match name {
                "confirm" => o.confirm = weight,
                "fail" => o.fail = weight,
                "cancel" => o.cancel = weight,
                "abandon" => o.abandon = weight,
                other => bail!("unknown outcome {other:?}: confirm, fail, cancel or abandon"),
            }
        }
        if o.confirm + o.fail + o.cancel + o.abandon == 0 {
            bail!("at least one outcome needs a weight above 0");
        }
        Ok(o)
    }
}

impl Outcomes {
    fn pick(&self, rng: &mut SmallRng) -> Outcome {
        let total = self.confirm + self.fail + self.cancel + self.abandon;
        let mut n = rng.gen_range(0..total);
        for (weight, outcome) in [
            (self.confirm, Outcome::Confirm),
            (self.fail, Outcome::Fail),
            (self.cancel, Outcome::Cancel),
        ] {
            if n < weight {
                return outcome;
            }
            n -= weight;
        }
        Outcome::Abandon
    }
}

/// `browse=80,onsale=15,global=5`.
pub fn parse_mix(text: &str) -> anyhow::Result<Vec<(Scenario, u32)>> {
    let mut mix = Vec::new();
    for (name, weight) in weights(text)? {
        let scenario = match name {
            "browse" => Scenario::Browse,
            "onsale" => Scenario::Onsale,
            "global" => Scenario::Global,
            other => bail!("unknown scenario in --mix {other:?}: browse, onsale or global"),
        };
        if weight > 0 {
            mix.push((scenario, weight));
        }
    }
    if mix.is_empty() {
        bail!("--mix needs at least one scenario with a weight above 0");
    }
    Ok(mix)
}

/// `events,event,availability`: the reads of a browse journey, in order.
pub fn parse_reads(text: &str) -> anyhow::Result<Vec<Op>> {
    let reads = text
        .split(',')
        .map(|name| match name.trim() {
            "events" => Ok(Op::Events),
            "event" => Ok(Op::Event),
            "availability" => Ok(Op::Availability),
            other => bail!("unknown read {other:?}: events, event or availability"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if reads.is_empty() {
        bail!("--reads needs at least one read");
    }
    Ok(reads)
}

fn weights(text: &str) -> anyhow::Result<Vec<(&str, u32)>> {
    text.split(',')
        .map(|part| {
            let (name, weight) = part
                .split_once('=')
                .with_context(|| format!("expected name=weight, got {part:?}"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .with_context(|| format!("weight of {name} is not a whole number"))?;
            Ok((name.trim(), weight))
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub scenario: Scenario,
    pub mix: Vec<(Scenario, u32)>,
    pub min_quantity: u32,
    pub max_quantity: u32,
    pub outcomes: Outcomes,
    pub reads: Vec<Op>,
}

impl Plan {
    /// The scenarios a run may pick from: the one asked for, or the mix.
    pub fn uses(&self, scenario: Scenario) -> bool {
        match self.scenario {
            Scenario::Mix => self.mix.iter().any(|(s, _)| *s == scenario),
            s => s == scenario,
        }
    }

    fn pick(&self, rng: &mut SmallRng) -> Scenario {
        if self.scenario != Scenario::Mix {
            return self.scenario;
        }
        let total: u32 = self.mix.iter().map(|(_, w)| w).sum();
        let mut n = rng.gen_range(0..total);
        for (scenario, weight) in &self.mix {
            if n < *weight {
                return *scenario;
            }
            n -= weight;
        }
        self.mix[self.mix.len() - 1].0
    }
}

/// Everything a journey needs, shared by all virtual users.
pub struct Context {
    pub api: Api,
    pub fixture: Fixture,
    pub plan: Plan,
    pub recorder: Arc<Recorder>,
    /// Router URL by client region.
    pub routers: Vec<(String, String)>,
}

/// One virtual user: an account in a region, talking to that region's router.
pub struct VirtualUser {
    pub region: String,
    pub router: String,
    pub token: String,
}

impl Context {
    /// One journey; `due` is when it should have started.
    pub async fn journey(&self, user: &VirtualUser, rng: &mut SmallRng, due: Instant) {
        match self.plan.pick(rng) {
            Scenario::Browse => self.browse(user, rng, due).await,
            Scenario::Onsale => {
                let event = self
                    .fixture
                    .hot
                    .as_ref()
                    .expect("fixture has the hot event");
                self.book(user, rng, event, due).await;
            }
            Scenario::Global => {
                let event = &self.fixture.spread[rng.gen_range(0..self.fixture.spread.len())];
                let availability = self.api.availability(&user.router, &event.id);
                let reply = self.timed(user, &event.home, Op::Availability, due, availability);
                reply.await;
                self.book(user, rng, event, Instant::now()).await;
            }
            Scenario::Mix => unreachable!("a mix picks one of the others"),
        }
        self.recorder
            .journeys
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn browse(&self, user: &VirtualUser, rng: &mut SmallRng, due: Instant) {
        let events = self.fixture.events();
        let event = events[rng.gen_range(0..events.len())];
        let mut started = due;
        for op in &self.plan.reads {
            match op {
                Op::Events => {
                    let call = self.api.events(&user.router);
                    self.timed(user, ALL_REGIONS, *op, started, call).await;
                }
                Op::Event => {
                    let call = self.api.event(&user.router, &event.id);
                    self.timed(user, &event.home, *op, started, call).await;
                }
                _ => {
                    let call = self.api.availability(&user.router, &event.id);
                    self.timed(user, &event.home, *op, started, call).await;
                }
            }
            started = Instant::now();
        }
    }

    async fn book(&self, user: &VirtualUser, rng: &mut SmallRng, event: &Event, due: Instant) {
        let lines = pick_lines(rng, event, self.plan.min_quantity, self.plan.max_quantity);
        let quantity: u32 = lines.iter().map(|(_, q)| q).sum();
        let call = self
            .api
            .reserve(&user.router, &user.token, &event.id, &lines);
        let held = self.timed(user, &event.home, Op::Reserve, due, call).await;
        if !held.answer.ok() {
            return;
        }
        let Some(booking_id) = held.body["bookingId"].as_str() else {
            return;
        };
        let seen = SeenBooking {
            booking_id: booking_id.to_owned(),
            home: event.home.clone(),
            quantity,
        };
        self.recorder.saw_held(seen.clone());
        let now = Instant::now();
        match self.plan.outcomes.pick(rng) {
            Outcome::Confirm | Outcome::Fail if quantity == 0 => {}
            outcome @ (Outcome::Confirm | Outcome::Fail) => {
                let pay = outcome == Outcome::Confirm;
                let call = self.api.confirm(&user.router, &user.token, booking_id, pay);
                let reply = self.timed(user, &event.home, Op::Confirm, now, call).await;
                if reply.answer.ok() && reply.body["status"] == "confirmed" {
                    self.recorder.saw_confirmed(seen);
                }
            }
            Outcome::Cancel => {
                let call = self.api.cancel(&user.router, &user.token, booking_id);
                self.timed(user, &event.home, Op::Cancel, now, call).await;
            }
            Outcome::Abandon => {}
        }
    }

    async fn timed(
        &self,
        user: &VirtualUser,
        home: &str,
        op: Op,
        started: Instant,
        call: impl std::future::Future<Output = Reply>,
    ) -> Reply {
        let reply = call.await;
        let key = Key {
            client: user.region.clone(),
            home: home.to_owned(),
            op,
        };
        self.recorder.record(key, started.elapsed(), &reply.answer);
        reply
    }
}

/// 1 to `max` tickets, each of a tier picked at random among those the event started with.
fn pick_lines(rng: &mut SmallRng, event: &Event, min: u32, max: u32) -> Vec<(String, u32)> {
    let tiers: Vec<&str> = event
        .tiers
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, _)| t.as_str())
        .collect();
    let tiers = if tiers.is_empty() {
        event.tiers.iter().map(|(t, _)| t.as_str()).collect()
    } else {
        tiers
    };
    let mut lines: Vec<(String, u32)> = Vec::new();
    for _ in 0..rng.gen_range(min..=max) {
        let tier = tiers[rng.gen_range(0..tiers.len())];
        match lines.iter_mut().find(|(t, _)| t == tier) {
            Some((_, q)) => *q += 1,
            None => lines.push((tier.to_owned(), 1)),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn outcome_weights() {
        let o: Outcomes = "confirm=60,fail=10,abandon=30".parse().unwrap();
        assert_eq!((o.confirm, o.fail, o.cancel, o.abandon), (60, 10, 0, 30));
        assert!("confirm=0".parse::<Outcomes>().is_err());
        assert!("refund=5".parse::<Outcomes>().is_err());
        assert!("confirm".parse::<Outcomes>().is_err());
        assert!("confirm=-1".parse::<Outcomes>().is_err());
        let mut rng = SmallRng::seed_from_u64(7);
        let only: Outcomes = "cancel=1".parse().unwrap();
        assert!((0..100).all(|_| only.pick(&mut rng) == Outcome::Cancel));
        let split: Outcomes = "confirm=1,abandon=1".parse().unwrap();
        let confirms = (0..10_000)
            .filter(|_| split.pick(&mut rng) == Outcome::Confirm)
            .count();
        assert!((4_500..5_500).contains(&confirms), "{confirms}");
    }

    #[test]
    fn mix_and_reads() {
        assert_eq!(
            parse_mix("browse=8,onsale=0,global=2").unwrap(),
            vec![(Scenario::Browse, 8), (Scenario::Global, 2)]
        );
        assert!(parse_mix("onsale=0").is_err());
        assert!(parse_mix("mix=1").is_err());
        assert_eq!(parse_reads("availability").unwrap(), vec![Op::Availability]);
        assert!(parse_reads("events,seats").is_err());
    }

    #[test]
    fn lines_cover_the_quantity_across_tiers() {
        let event = Event {
            id: "1".into(),
            home: "us-east".into(),
            tiers: vec![("VIP".into(), 10), ("GA".into(), 100), ("Gone".into(), 0)],
            created: true,
        };
        let mut rng = SmallRng::seed_from_u64(1);
        let mut seen_two_tiers = false;
        for _ in 0..200 {
            let lines = pick_lines(&mut rng, &event, 1, 4);
            let total: u32 = lines.iter().map(|(_, q)| q).sum();
            assert!((1..=4).contains(&total));
            assert!(lines.iter().all(|(t, q)| t != "Gone" && *q > 0));
            seen_two_tiers |= lines.len() == 2;
        }
        assert!(seen_two_tiers);
    }
}
