//! After the load, against each home region's primary, for the events the run touched:
//! - no ticket is promised to two live bookings, and every held or sold ticket is listed by the
//!   booking it points to, with a status that matches;
//! - held + sold + available equals the tickets created, per tier;
//! - every booking the load saw held is in the database, and every one it saw confirmed is
//!   confirmed there with all its tickets sold (nothing lost).

use std::collections::BTreeMap;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::fixture::Event;
use crate::stats::SeenBooking;
use crate::target::Target;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub region: String,
    pub name: String,
    pub expected: i64,
    pub found: i64,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.expected == self.found
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    pub checks: Vec<Check>,
    /// Regions whose primary was not given, so nothing there was checked.
    pub skipped_regions: Vec<String>,
    /// Tickets per status over the run's events, for the report.
    pub tickets: BTreeMap<String, i64>,
}

impl Audit {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }
}

pub async fn run(
    target: &Target,
    events: &[&Event],
    held: &[SeenBooking],
    confirmed: &[SeenBooking],
) -> anyhow::Result<Audit> {
    let mut audit = Audit {
        checks: Vec::new(),
        skipped_regions: Vec::new(),
        tickets: BTreeMap::new(),
    };
    for region in &target.regions {
        let here: Vec<&Event> = events
            .iter()
            .copied()
            .filter(|e| e.home == region.name)
            .collect();
        if here.is_empty() {
            continue;
        }
        let Some(url) = &region.primary else {
            audit.skipped_regions.push(region.name.clone());
            continue;
        };
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .with_context(|| format!("connecting to {}'s primary", region.name))?;
        let at_home = |seen: &[SeenBooking]| -> Vec<SeenBooking> {
            seen.iter()
                .filter(|b| b.home == region.name)
                .cloned()
                .collect()
        };
        audit_region(
            &pool,
            &region.name,
            &here,
            &at_home(held),
            &at_home(confirmed),
            &mut audit,
        )
        .await
        .with_context(|| format!("auditing {}", region.name))?;
        pool.close().await;
    }
    Ok(audit)
}

fn ids(bookings: &[SeenBooking]) -> anyhow::Result<Vec<i64>> {
    bookings
        .iter()
        .map(|b| {
            b.booking_id
                .parse()
                .with_context(|| format!("booking id {:?}", b.booking_id))
        })
        .collect()
}

async fn count(pool: &PgPool, sql: &str, events: &[i64]) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).bind(events).fetch_one(pool).await?)
}

async fn audit_region(
    pool: &PgPool,
    region: &str,
    events: &[&Event],
    held: &[SeenBooking],
    confirmed: &[SeenBooking],
    audit: &mut Audit,
) -> anyhow::Result<()> {
    let event_ids: Vec<i64> = events
        .iter()
        .map(|e| e.id.parse().context("event id"))
        .collect::<anyhow::Result<_>>()?;
    let mut check = |name: &str, expected: i64, found: i64| {
        audit.checks.push(Check {
            region: region.into(),
            name: name.into(),
            expected,
            found,
        })
    };

    let promised_twice = count(
        pool,
        "SELECT count(*) FROM (
           SELECT tid FROM bookings b, unnest(b.ticket_ids) tid
           WHERE b.event_id = ANY($1)
             AND (b.status = 'confirmed' OR (b.status = 'held' AND b.expires_at > now()))
           GROUP BY tid HAVING count(*) > 1) twice",
        &event_ids,
    )
    .await?;
    check("tickets promised to two live bookings", 0, promised_twice);

    let strays = count(
        pool,
        "SELECT count(*) FROM tickets t LEFT JOIN bookings b ON b.id = t.booking_id
         WHERE t.event_id = ANY($1) AND t.status <> 'available'
           AND (b.id IS NULL OR NOT t.id = ANY(b.ticket_ids)
                OR (t.status = 'sold' AND b.status <> 'confirmed')
                OR (t.status = 'held' AND b.status <> 'held'))",
        &event_ids,
    )
    .await?;
    check(
        "held or sold tickets their booking does not account for",
        0,
        strays,
    );

    let sold_unpaid = count(
        pool,
        "SELECT count(*) FROM bookings b
         WHERE b.event_id = ANY($1) AND b.status = 'confirmed'
           AND (SELECT count(*) FROM tickets t
                WHERE t.booking_id = b.id AND t.status = 'sold') <> b.quantity",
        &event_ids,
    )
    .await?;
    check(
        "confirmed bookings without exactly their tickets sold",
        0,
        sold_unpaid,
    );

    // Conservation, per tier: every ticket created is available, held or sold, once.
    let tiers: Vec<(i64, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT tr.event_id, tr.name, tr.ticket_count,
                count(*) FILTER (WHERE t.status = 'available'),
                count(*) FILTER (WHERE t.status = 'held'),
                count(*) FILTER (WHERE t.status = 'sold')
         FROM tiers tr LEFT JOIN tickets t ON t.event_id = tr.event_id AND t.tier = tr.name
         WHERE tr.event_id = ANY($1)
         GROUP BY tr.event_id, tr.name, tr.ticket_count",
    )
    .bind(&event_ids)
    .fetch_all(pool)
    .await?;
    for (event_id, tier, recorded, available, held_now, sold) in tiers {
        let event = events
            .iter()
            .find(|e| e.id == event_id.to_string())
            .expect("queried by these ids");
        // For events this run created, the count it asked for; otherwise the tier's own record.
        let created = event
            .tiers
            .iter()
            .find(|(name, _)| event.created && *name == tier)
            .map_or(recorded, |(_, n)| *n as i64);
        check(
            &format!("event {event_id} {tier}: available + held + sold = created"),
            created,
            available + held_now + sold,
        );
        for (status, n) in [("available", available), ("held", held_now), ("sold", sold)] {
            *audit.tickets.entry(status.into()).or_default() += n;
        }
    }

    let held_ids = ids(held)?;
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings WHERE id = ANY($1)")
        .bind(&held_ids)
        .fetch_one(pool)
        .await?;
    check(
        "bookings the load saw held, found",
        held_ids.len() as i64,
        found,
    );

    let confirmed_ids = ids(confirmed)?;
    let (bookings, tickets): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM bookings WHERE id = ANY($1) AND status = 'confirmed'),
                (SELECT count(*) FROM tickets WHERE booking_id = ANY($1) AND status = 'sold')",
    )
    .bind(&confirmed_ids)
    .fetch_one(pool)
    .await?;
    check(
        "bookings the load saw confirmed, confirmed",
        confirmed_ids.len() as i64,
        bookings,
    );
    check(
        "tickets of those bookings, sold",
        confirmed.iter().map(|b| i64::from(b.quantity)).sum(),
        tickets,
    );
    Ok(())
}
