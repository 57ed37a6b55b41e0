//! What a run needs before the clock starts: its own events (a hot on-sale event and one event
//! homed in each region), or existing ones by id, and user accounts in every client region.
//! Also an event on its own (`loadgen create-event`), once every region's router shows it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{stream, StreamExt, TryStreamExt};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::Api;
use crate::target::Target;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    pub home: String,
    /// Tiers with the tickets they had when the run began.
    pub tiers: Vec<(String, u64)>,
    /// Created by this run, so that the audit can count every ticket of it.
    pub created: bool,
}

#[derive(Debug, Clone)]
pub struct User {
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct Fixture {
    /// The on-sale event, when the run has one.
    pub hot: Option<Event>,
    /// One event homed in each region, for `global`.
    pub spread: Vec<Event>,
    pub users: BTreeMap<String, Vec<User>>,
}

impl Fixture {
    /// Every distinct event the run touches.
    pub fn events(&self) -> Vec<&Event> {
        let mut all: Vec<&Event> = self.hot.iter().collect();
        for e in &self.spread {
            if all.iter().all(|known| known.id != e.id) {
                all.push(e);
            }
        }
        all
    }
}

/// A tier price by position, so that tiers listed first cost more.
fn price_cents(position: usize) -> u64 {
    [10_000, 5_000, 1_000]
        .get(position)
        .copied()
        .unwrap_or(1_000)
}

/// The largest per-user ticket cap an event may set (`maxTicketsPerUser`, the node's limit).
const MAX_TICKETS_PER_USER: u64 = 1_000_000;

/// Tickets per creation request: a million in one request (the node's limit) can outlast the
/// router's and loadgen's 10 s deadline on a busy machine.
const TICKETS_PER_REQUEST: u64 = 100_000;

/// `tiers` as creation requests of at most `max` tickets each, tiers in order.
fn ticket_batches(tiers: &[(String, u64)], max: u64) -> Vec<Vec<(String, u64)>> {
    let mut batches: Vec<Vec<(String, u64)>> = Vec::new();
    let mut room = 0;
    for (tier, count) in tiers {
        let mut left = *count;
        while left > 0 {
            if room == 0 {
                batches.push(Vec::new());
                room = max;
            }
            let n = left.min(room);
            batches.last_mut().expect("a batch").push((tier.clone(), n));
            left -= n;
            room -= n;
        }
    }
    batches
}

/// Creates an event homed in `home` with `tiers` tickets, through `home`'s router.
pub async fn create_event(
    api: &Api,
    target: &Target,
    home: &str,
    name: &str,
    tiers: &[(String, u64)],
    hold_seconds: u32,
) -> anyhow::Result<Event> {
    let router = &target.region(home)?.router;
    let admin = Some(target.admin_token.as_str());
    let tier_list: Vec<Value> = tiers
        .iter()
        .enumerate()
        .map(|(i, (tier, _))| json!({"name": tier, "priceCents": price_cents(i)}))
        .collect();
    let event = api
        .must(
            Method::POST,
            &format!("{router}/api/v1/events"),
            admin,
            Some(&json!({
                "name": name,
                "venue": "Loadgen Arena",
                "startsAt": "2031-06-01T19:30:00Z",
                "homeRegion": home,
                "holdSeconds": hold_seconds,
                // A few hundred accounts make every journey, so the load would run into the
                // per-user cap, not the platform's limits: the most the API allows. The cap's
                // check still runs on every reserve, so its cost stays in the figures.
                "maxTicketsPerUser": MAX_TICKETS_PER_USER,
                "tiers": tier_list,
            })),
        )
        .await
        .context("creating an event (is the admin token right?)")?;
    let id = event["id"].as_str().context("event id")?.to_owned();
    for batch in ticket_batches(tiers, TICKETS_PER_REQUEST) {
        let counts: serde_json::Map<String, Value> = batch
            .into_iter()
            .map(|(tier, n)| (tier, json!(n)))
            .collect();
        api.must(
            Method::POST,
            &format!("{router}/api/v1/tickets/create"),
            admin,
            Some(&json!({"eventId": id, "tiers": counts})),
        )
        .await
        .context("creating tickets")?;
    }
    Ok(Event {
        id,
        home: home.into(),
        tiers: tiers.to_vec(),
        created: true,
    })
}

/// Waits until every region's router shows all of `event`'s tickets available: its replicas
/// have replayed them, so reads of it anywhere find it whole.
pub async fn wait_until_visible(
    api: &Api,
    target: &Target,
    event: &Event,
    within: Duration,
) -> anyhow::Result<()> {
    let tickets: u64 = event.tiers.iter().map(|(_, n)| n).sum();
    let deadline = Instant::now() + within;
    for region in &target.regions {
        loop {
            let reply = api.availability(&region.router, &event.id).await;
            let shown = reply.body["totalAvailable"].as_u64();
            if reply.answer.ok() && shown == Some(tickets) {
                break;
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{}'s router still shows {} of event {}'s {tickets} tickets after {within:?}",
                    region.name,
                    shown.map_or("none".into(), |n| n.to_string()),
                    event.id
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// An event that already exists: its home region and what is left of each tier.
pub async fn existing_event(api: &Api, target: &Target, id: &str) -> anyhow::Result<Event> {
    let router = &target.regions[0].router;
    let event = api
        .must(
            Method::GET,
            &format!("{router}/api/v1/events/{id}"),
            None,
            None,
        )
        .await?;
    let home = event["homeRegion"]
        .as_str()
        .context("event homeRegion")?
        .to_owned();
    let tiers = event["tiers"]
        .as_array()
        .context("event tiers")?
        .iter()
        .map(|t| {
            let name = t["name"].as_str().context("tier name")?.to_owned();
            let left = t["available"].as_u64().unwrap_or(0);
            Ok((name, left))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    target.region(&home)?;
    Ok(Event {
        id: id.into(),
        home,
        tiers,
        created: false,
    })
}

/// `count` user accounts signed up in `region`, sixteen sign-ups at a time.
pub async fn create_users(
    api: &Api,
    target: &Target,
    region: &str,
    count: usize,
) -> anyhow::Result<Vec<User>> {
    let router = target.region(region)?.router.clone();
    stream::iter(0..count)
        .map(|n| {
            let router = router.clone();
            async move {
                let body = api
                    .must(
                        Method::POST,
                        &format!("{router}/api/v1/users"),
                        None,
                        Some(&json!({"name": format!("loadgen {region} {n}")})),
                    )
                    .await?;
                let token = body["token"].as_str().context("user token")?.to_owned();
                anyhow::Ok(User { token })
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn tickets_are_created_in_bounded_requests() {
        assert_eq!(
            ticket_batches(&tiers(&[("VIP", 20), ("GA", 70)]), 100),
            vec![tiers(&[("VIP", 20), ("GA", 70)])]
        );
        assert_eq!(
            ticket_batches(&tiers(&[("VIP", 30), ("GA", 250)]), 100),
            vec![
                tiers(&[("VIP", 30), ("GA", 70)]),
                tiers(&[("GA", 100)]),
                tiers(&[("GA", 80)])
            ]
        );
        assert_eq!(
            ticket_batches(&tiers(&[("GA", 1_000_000)]), TICKETS_PER_REQUEST).len(),
            10
        );
        assert_eq!(
            ticket_batches(&tiers(&[("Gone", 0), ("GA", 5)]), 100),
            vec![tiers(&[("GA", 5)])]
        );
    }
}
