//! The demo data a fresh cluster starts with: one event homed in each region with the seed's
//! tiers and prices, its tickets, three users per region, and an admin token.

use anyhow::{bail, Context};
use region_node::identity::auth::{Role, TokenKeys};
use serde_json::{json, Value};

use super::Region;

/// One event per region with the seed's tiers and prices, a few thousand tickets, a few users.
pub(super) async fn seed_demo_data(
    http: &reqwest::Client,
    regions: &[Region],
    tokens: &TokenKeys,
) -> anyhow::Result<Value> {
    let first = &regions[0];
    let admin_user = post(
        http,
        &format!("{}/api/v1/users", first.node_url),
        None,
        json!({"name": "Admin"}),
    )
    .await?;
    let admin_id: id_gen::Id = admin_user["user"]["id"]
        .as_str()
        .context("admin user id")?
        .parse()?;
    let admin = tokens
        .issue(admin_id, Role::Admin)
        .map_err(|e| anyhow::anyhow!("signing the admin token: {e}"))?;
    let mut events = Vec::new();
    let mut users = Vec::new();
    for r in regions {
        let api = format!("{}/api/v1", r.node_url);
        let event = post(
            http,
            &format!("{api}/events"),
            Some(&admin),
            json!({
                "name": format!("{} Arena Night", demo_city(&r.config.name)),
                "description": "Demo on-sale: VIP, Front Row and GA.",
                "venue": format!("{} Arena", demo_city(&r.config.name)),
                "startsAt": "2030-07-01T19:30:00Z",
                "homeRegion": r.config.name,
                // Above the default cap of 8: the three demo users of a region are who tries
                // (and tests) every cross-region booking, over and over.
                "maxTicketsPerUser": 100,
                "tiers": [
                    {"name": "VIP", "priceCents": 10_000},
                    {"name": "Front Row", "priceCents": 5_000},
                    {"name": "GA", "priceCents": 1_000},
                ],
            }),
        )
        .await?;
        let event_id = event["id"].as_str().context("event id")?.to_owned();
        post(
            http,
            &format!("{api}/tickets/create"),
            Some(&admin),
            json!({"eventId": event_id, "tiers": {"VIP": 100, "Front Row": 400, "GA": 2500}}),
        )
        .await?;
        events.push(json!({"id": event_id, "homeRegion": r.config.name, "name": event["name"]}));
        for n in 1..=3 {
            let user = post(
                http,
                &format!("{api}/users"),
                None,
                json!({"name": format!("Demo {} {n}", r.config.name)}),
            )
            .await?;
            users.push(json!({
                "id": user["user"]["id"],
                "name": user["user"]["name"],
                "homeRegion": r.config.name,
                "token": user["token"],
            }));
        }
    }
    Ok(json!({"adminToken": admin, "events": events, "users": users}))
}

/// A city to name the demo venue after.
fn demo_city(region: &str) -> String {
    match region {
        "us-east" => "New York".into(),
        "eu-west" => "Dublin".into(),
        "ap-southeast" => "Singapore".into(),
        other => other.to_owned(),
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut request = http.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("POST {url}: body"))?;
    if !status.is_success() {
        bail!("POST {url}: {status} {body}");
    }
    Ok(body)
}
