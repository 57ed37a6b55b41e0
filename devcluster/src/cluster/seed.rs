//! The demo data a fresh cluster starts with: an admin account and three demo users homed in
//! each region, all with known passwords (printed at start and listed in `cluster.json`), one
//! event homed in each region with the seed's tiers and prices and its tickets, and an
//! operator-minted admin token for tools.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use sqlx::Connection;
use wire::accounts::email_homed_in;
use wire::token::{Grant, Role, TokenKeys};

use super::Region;

/// Every demo user's password.
pub const DEMO_PASSWORD: &str = "demo-password";
/// The admin account's email and password.
pub const ADMIN_EMAIL: &str = "admin@ticketing.example";
pub const ADMIN_PASSWORD: &str = "admin-password";
/// The operator-minted admin token lives this long: the length of a working session with the
/// cluster, far past an access token's 15 minutes, so loadgen and tools need no login.
pub const ADMIN_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Demo users, events and the admin token, as `cluster.json`'s `demo` and `adminToken`.
pub(super) async fn seed_demo_data(
    http: &reqwest::Client,
    regions: &[Region],
    tokens: &TokenKeys,
) -> anyhow::Result<Value> {
    let ids: Vec<u8> = regions.iter().map(|r| r.config.id).collect();
    let admin = make_admin(http, regions, &ids).await?;
    let admin_token = tokens
        .issue(
            Grant {
                user: admin.0,
                role: Role::Admin,
                session: None,
            },
            ADMIN_TOKEN_TTL,
        )
        .context("signing the admin token")?
        .token;
    let mut events = Vec::new();
    let mut users = Vec::new();
    for r in regions {
        let api = format!("{}/api/v1", r.node_url);
        let event = post(
            http,
            &format!("{api}/events"),
            Some(&admin_token),
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
            Some(&admin_token),
            json!({"eventId": event_id, "tiers": {"VIP": 100, "Front Row": 400, "GA": 2500}}),
        )
        .await?;
        events.push(json!({"id": event_id, "homeRegion": r.config.name, "name": event["name"]}));
        for n in 1..=3 {
            // An address of the region's own domain that hashes to its shard.
            let email = email_homed_in(
                &format!("demo{n}"),
                &format!("{}.example", r.config.name),
                r.config.id,
                &ids,
            )
            .context("a demo email for the region")?;
            let name = format!("Demo {} {n}", r.config.name);
            let signed = sign_up(http, r, &name, &email, DEMO_PASSWORD).await?;
            users.push(json!({
                "id": signed["user"]["id"],
                "name": name,
                "email": email,
                "password": DEMO_PASSWORD,
                "homeRegion": r.config.name,
                "token": signed["token"],
                "refreshToken": signed["refreshToken"],
            }));
        }
    }
    Ok(json!({
        "adminToken": admin_token,
        "admin": {"id": admin.0.to_string(), "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                  "homeRegion": admin.1},
        "events": events,
        "users": users,
    }))
}

/// The admin account: signed up in the shard its email hashes to, then made an admin the way
/// an operator does, in that shard's primary:
/// `UPDATE users SET role = 'admin' WHERE email = '...'`. Its id and home region.
async fn make_admin(
    http: &reqwest::Client,
    regions: &[Region],
    ids: &[u8],
) -> anyhow::Result<(id_gen::Id, String)> {
    let shard = wire::accounts::email_shard(ADMIN_EMAIL, ids).context("no regions")?;
    let home = regions
        .iter()
        .find(|r| r.config.id == shard)
        .context("the admin email's region")?;
    let signed = sign_up(http, home, "Admin", ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let id: id_gen::Id = signed["user"]["id"]
        .as_str()
        .context("admin user id")?
        .parse()?;
    let mut db = sqlx::PgConnection::connect(&home.primary_url).await?;
    sqlx::query("UPDATE users SET role = 'admin' WHERE email = $1")
        .bind(ADMIN_EMAIL)
        .execute(&mut db)
        .await
        .context("making the admin an admin")?;
    Ok((id, home.config.name.clone()))
}

/// Signs up on `region`'s node, which must own the email's shard.
async fn sign_up(
    http: &reqwest::Client,
    region: &Region,
    name: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<Value> {
    post(
        http,
        &format!("{}/api/v1/users", region.node_url),
        None,
        json!({"name": name, "email": email, "password": password}),
    )
    .await
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
