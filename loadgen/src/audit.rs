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

/// The waiting room's own checks on the event's home primary, after a `queue` run: the
/// admission order and the lobby's draw, and that nothing was booked without a pass. The
/// service's SQL lives in the node; these are an outside checker's own reads.
pub async fn queue_checks(target: &Target, event: &Event) -> anyhow::Result<Vec<Check>> {
    let region = target.region(&event.home)?;
    let Some(url) = &region.primary else {
        return Ok(Vec::new());
    };
    let id: i64 = event.id.parse().context("event id")?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .with_context(|| format!("connecting to {}'s primary", region.name))?;
    let checks = queue_checks_on(&pool, &region.name, id).await;
    pool.close().await;
    checks
}

async fn queue_checks_on(pool: &PgPool, region: &str, event: i64) -> anyhow::Result<Vec<Check>> {
    let check = |name: &str, expected: i64, found: i64| Check {
        region: region.to_owned(),
        name: name.to_owned(),
        expected,
        found,
    };
    let (serving, lobby): (i64, i64) =
        sqlx::query_as("SELECT serving, lobby_size FROM event_queues WHERE event_id = $1")
            .bind(event)
            .fetch_one(pool)
            .await
            .context("the event's queue")?;
    // Admissions: consecutive ranges from 1, in time order, ending at the counter.
    let (gaps, out_of_order, covered): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE first_position <> coalesce(prev_last, 0) + 1),
                count(*) FILTER (WHERE admitted_at < prev_at),
                coalesce(sum(last_position - first_position + 1), 0)::bigint
         FROM (SELECT first_position, last_position, admitted_at,
                      lag(last_position) OVER w AS prev_last, lag(admitted_at) OVER w AS prev_at
               FROM queue_admissions WHERE event_id = $1
               WINDOW w AS (ORDER BY first_position)) a",
    )
    .bind(event)
    .fetch_one(pool)
    .await?;
    // The draw: lobby positions are exactly 1..lobby_size, not in join order; later joins
    // follow in arrival order.
    let (lobby_members, lobby_distinct_in_range, lobby_in_join_order): (i64, i64, i64) =
        sqlx::query_as(
            "SELECT count(*), count(DISTINCT position) FILTER (WHERE position BETWEEN 1 AND $2),
                    count(*) FILTER (WHERE position = join_rank)
             FROM (SELECT position, row_number() OVER (ORDER BY joined_at, user_id) AS join_rank
                   FROM queue_members WHERE event_id = $1 AND position <= $2) m",
        )
        .bind(event)
        .bind(lobby)
        .fetch_one(pool)
        .await?;
    let (late_out_of_order,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM (
             SELECT joined_at, lag(joined_at) OVER (ORDER BY position) AS prev
             FROM queue_members WHERE event_id = $1 AND position > $2) m
         WHERE joined_at < prev",
    )
    .bind(event)
    .bind(lobby)
    .fetch_one(pool)
    .await?;
    let (passless, past_counter): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE queue_position IS NULL),
                count(*) FILTER (WHERE queue_position > $2)
         FROM bookings WHERE event_id = $1",
    )
    .bind(event)
    .bind(serving)
    .fetch_one(pool)
    .await?;
    let mut checks = vec![
        check("queue: admissions in gaps or overlaps", 0, gaps),
        check("queue: admissions out of time order", 0, out_of_order),
        check(
            "queue: positions admitted = serving counter",
            serving,
            covered,
        ),
        check(
            "queue: lobby positions are 1..lobby size",
            lobby,
            lobby_distinct_in_range,
        ),
        check("queue: lobby members = lobby size", lobby, lobby_members),
        check(
            "queue: later joins out of arrival order",
            0,
            late_out_of_order,
        ),
        check("queue: bookings without a pass", 0, passless),
        check("queue: bookings past the serving counter", 0, past_counter),
    ];
    // A draw of more than a few members that kept join order is no draw.
    if lobby >= 10 {
        checks.push(Check {
            region: region.to_owned(),
            name: "queue: lobby drawn in join order (positions equal to join rank, of all)".into(),
            expected: 0,
            found: i64::from(lobby_in_join_order == lobby),
        });
    }
    Ok(checks)
}
