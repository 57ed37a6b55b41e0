//! After the load, testkit's oversell audit against each home region's primary, for the events
//! the run touched and the bookings it saw held and confirmed there; here only which primary
//! to ask, and the report's shape: each check with its region, and the tickets by status.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use testkit::audit::{Scope, Seen};

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

/// What testkit's audit needs on one primary: the run's events homed there (with the tickets
/// the run itself created), and the bookings the load saw held and confirmed there.
fn scope(
    events: &[&Event],
    held: &[SeenBooking],
    confirmed: &[SeenBooking],
) -> anyhow::Result<Scope> {
    let mut scope = Scope::default();
    for event in events {
        let id: i64 = event.id.parse().context("event id")?;
        scope.events.push(id);
        if event.created {
            for (tier, n) in &event.tiers {
                scope.created.insert((id, tier.clone()), *n as i64);
            }
        }
    }
    scope.seen = Some(Seen {
        held: held.iter().map(booking_id).collect::<anyhow::Result<_>>()?,
        confirmed: confirmed
            .iter()
            .map(|b| Ok((booking_id(b)?, i64::from(b.quantity))))
            .collect::<anyhow::Result<_>>()?,
    });
    Ok(scope)
}

fn booking_id(booking: &SeenBooking) -> anyhow::Result<i64> {
    booking
        .booking_id
        .parse()
        .with_context(|| format!("booking id {:?}", booking.booking_id))
}

async fn audit_region(
    pool: &PgPool,
    region: &str,
    events: &[&Event],
    held: &[SeenBooking],
    confirmed: &[SeenBooking],
    audit: &mut Audit,
) -> anyhow::Result<()> {
    let found = testkit::audit::audit(pool, &scope(events, held, confirmed)?).await?;
    audit.checks.extend(found.checks.into_iter().map(|c| Check {
        region: region.into(),
        name: c.name,
        expected: c.expected,
        found: c.found,
    }));
    for t in &found.tiers {
        for (status, n) in [
            ("available", t.available),
            ("held", t.held),
            ("sold", t.sold),
        ] {
            *audit.tickets.entry(status.into()).or_default() += n;
        }
    }
    Ok(())
}
