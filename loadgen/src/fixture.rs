//! What a run needs before the clock starts: its own events (a hot on-sale event and one event
//! homed in each region), or existing ones by id, and user accounts in every client region.

use std::collections::BTreeMap;

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
                "tiers": tier_list,
            })),
        )
        .await
        .context("creating an event (is the admin token right?)")?;
    let id = event["id"].as_str().context("event id")?.to_owned();
    let counts: serde_json::Map<String, Value> = tiers
        .iter()
        .map(|(tier, n)| (tier.clone(), json!(n)))
        .collect();
    api.must(
        Method::POST,
        &format!("{router}/api/v1/tickets/create"),
        admin,
        Some(&json!({"eventId": id, "tiers": counts})),
    )
    .await
    .context("creating tickets")?;
    Ok(Event {
        id,
        home: home.into(),
        tiers: tiers.to_vec(),
        created: true,
    })
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
