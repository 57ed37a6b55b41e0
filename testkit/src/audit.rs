//! The oversell audit, run against a home primary: the one every test and loadgen use. Over a
//! set of events it checks that
//! - no ticket is promised to two live bookings (held and unexpired, or confirmed);
//! - no live booking lost a ticket: each one it lists points back to it, with a matching status;
//! - every held or sold ticket is accounted for by the booking it points to;
//! - every confirmed booking has exactly its tickets sold;
//! - available + held + sold = created, per tier;
//! - the available count the writes keep (`tier_stock`) equals a full count, per tier;
//!
//! and, given the bookings a load saw, that each one seen held is there and each one seen
//! confirmed is confirmed with all its tickets sold (nothing lost).
//!
//! Each check counts what it found and says each problem in words: loadgen reports the counts
//! ([`audit`]), tests assert that one event has no problem ([`audit_event`]). It only reads, so
//! it may run while traffic flows, though the counts then move.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgPool;

/// What to audit on one primary.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The events, all homed on this primary.
    pub events: Vec<i64>,
    /// Tickets the caller itself created, by (event, tier): checked instead of the tier's own
    /// record, so that a record moving along with its tickets cannot hide a loss.
    pub created: BTreeMap<(i64, String), i64>,
    /// The bookings a load saw, when there was one.
    pub seen: Option<Seen>,
}

/// The bookings a load was answered about, to be found in the database afterwards.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Bookings answered as held.
    pub held: Vec<i64>,
    /// Bookings answered as confirmed, with their ticket counts.
    pub confirmed: Vec<(i64, i64)>,
}

/// One tier's tickets by status.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct TierCounts {
    pub event_id: i64,
    pub tier: String,
    pub created: i64,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
    /// The available count the writes keep, summed over its stripes.
    pub kept_available: i64,
}

/// One check: what it expected, what it found, and each problem in words.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub expected: i64,
    pub found: i64,
    /// Empty when the check passed, and for checks that only compare counts.
    pub problems: Vec<String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.expected == self.found
    }

    /// A check that expects no offending row; each row found is a problem.
    fn none_of(name: &str, problems: Vec<String>) -> Check {
        Check {
            name: name.to_owned(),
            expected: 0,
            found: problems.len() as i64,
            problems,
        }
    }

    fn counted(name: &str, expected: i64, found: i64) -> Check {
        Check {
            name: name.to_owned(),
            expected,
            found,
            problems: Vec::new(),
        }
    }
}

/// Every check over a [`Scope`], in a fixed order, and the tiers' tickets by status.
#[derive(Debug, Clone)]
pub struct Audit {
    pub checks: Vec<Check>,
    pub tiers: Vec<TierCounts>,
}

impl Audit {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }

    /// Each problem in words: a failed check's own, or its counts when it names none.
    pub fn violations(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.passed())
            .flat_map(|c| {
                if c.problems.is_empty() {
                    vec![format!(
                        "{}: expected {}, found {}",
                        c.name, c.expected, c.found
                    )]
                } else {
                    c.problems.clone()
                }
            })
            .collect()
    }
}

/// One event's audit, as tests assert on it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    pub event_id: i64,
    pub tiers: Vec<TierCounts>,
    /// Each problem found, in words; empty when the event is sound.
    pub violations: Vec<String>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Audits one event on its home primary.
pub async fn audit_event(db: &PgPool, event_id: i64) -> Result<AuditReport, sqlx::Error> {
    let scope = Scope {
        events: vec![event_id],
        ..Scope::default()
    };
    let audit = audit(db, &scope).await?;
    Ok(AuditReport {
        event_id,
        violations: audit.violations(),
        tiers: audit.tiers,
    })
}

/// Runs every check over `scope` on its primary.
pub async fn audit(db: &PgPool, scope: &Scope) -> Result<Audit, sqlx::Error> {
    let events = &scope.events;
    let mut checks = vec![
        promised_twice(db, events).await?,
        lost_tickets(db, events).await?,
        unaccounted_tickets(db, events).await?,
        confirmed_without_their_tickets(db, events).await?,
    ];
    let tiers = tier_counts(db, events).await?;
    checks.extend(tiers.iter().map(|t| conservation(t, &scope.created)));
    checks.extend(tiers.iter().map(kept_count));
    if let Some(seen) = &scope.seen {
        checks.extend(seen_bookings(db, seen).await?);
    }
    Ok(Audit { checks, tiers })
}

async fn promised_twice(db: &PgPool, events: &[i64]) -> Result<Check, sqlx::Error> {
    let doubled: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT tid, count(*) FROM bookings b, unnest(b.ticket_ids) AS tid
         WHERE b.event_id = ANY($1)
           AND ((b.status = 'held' AND b.expires_at > now()) OR b.status = 'confirmed')
         GROUP BY tid HAVING count(*) > 1",
    )
    .bind(events)
    .fetch_all(db)
    .await?;
    Ok(Check::none_of(
        "tickets promised to two live bookings",
        doubled
            .into_iter()
            .map(|(ticket, n)| format!("ticket {ticket} belongs to {n} live bookings"))
            .collect(),
    ))
}

/// A live booking whose tickets no longer point back to it: someone else took them.
async fn lost_tickets(db: &PgPool, events: &[i64]) -> Result<Check, sqlx::Error> {
    let lost: Vec<(i64, i64, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT b.id, tid, t.booking_id, t.status
         FROM bookings b CROSS JOIN LATERAL unnest(b.ticket_ids) AS tid
         LEFT JOIN tickets t ON t.id = tid
         WHERE b.event_id = ANY($1)
           AND ((b.status = 'held' AND b.expires_at > now()) OR b.status = 'confirmed')
           AND (t.booking_id IS DISTINCT FROM b.id
                OR t.status IS DISTINCT FROM
                   (CASE WHEN b.status = 'confirmed' THEN 'sold' ELSE 'held' END))",
    )
    .bind(events)
    .fetch_all(db)
    .await?;
    Ok(Check::none_of(
        "tickets taken from live bookings",
        lost.into_iter()
            .map(|(booking, ticket, holder, status)| {
                format!(
                    "booking {booking} lost ticket {ticket} (now {} for booking {})",
                    status.as_deref().unwrap_or("missing"),
                    holder.map_or("none".into(), |h| h.to_string())
                )
            })
            .collect(),
    ))
}

/// Sold tickets outside a confirmed booking, held tickets of a booking that ended, and tickets
/// pointing to a booking that does not list them.
async fn unaccounted_tickets(db: &PgPool, events: &[i64]) -> Result<Check, sqlx::Error> {
    let strays: Vec<(i64, String, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT t.id, t.status, t.booking_id, b.status
         FROM tickets t LEFT JOIN bookings b ON b.id = t.booking_id
         WHERE t.event_id = ANY($1) AND t.status <> 'available'
           AND (b.id IS NULL OR NOT t.id = ANY(b.ticket_ids)
                OR (t.status = 'sold' AND b.status <> 'confirmed')
                OR (t.status = 'held' AND b.status <> 'held'))",
    )
    .bind(events)
    .fetch_all(db)
    .await?;
    Ok(Check::none_of(
        "held or sold tickets their booking does not account for",
        strays
            .into_iter()
            .map(|(ticket, status, booking, booking_status)| {
                let owner = if status == "sold" {
                    "confirmed"
                } else {
                    "held"
                };
                match (booking, booking_status) {
                    (Some(booking), Some(s)) if s == owner => format!(
                        "ticket {ticket} is {status} for booking {booking}, which does not list it"
                    ),
                    (_, s) => format!(
                        "ticket {ticket} is {status} but its booking is {}",
                        s.as_deref().unwrap_or("missing")
                    ),
                }
            })
            .collect(),
    ))
}

async fn confirmed_without_their_tickets(
    db: &PgPool,
    events: &[i64],
) -> Result<Check, sqlx::Error> {
    let short: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT b.id, b.quantity::bigint, s.sold
         FROM bookings b CROSS JOIN LATERAL
              (SELECT count(*) AS sold FROM tickets t
               WHERE t.booking_id = b.id AND t.status = 'sold') s
         WHERE b.event_id = ANY($1) AND b.status = 'confirmed' AND s.sold <> b.quantity",
    )
    .bind(events)
    .fetch_all(db)
    .await?;
    Ok(Check::none_of(
        "confirmed bookings without exactly their tickets sold",
        short
            .into_iter()
            .map(|(booking, quantity, sold)| {
                format!("confirmed booking {booking} has {sold} tickets sold, not {quantity}")
            })
            .collect(),
    ))
}

async fn tier_counts(db: &PgPool, events: &[i64]) -> Result<Vec<TierCounts>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tr.event_id, tr.name AS tier, tr.ticket_count AS created,
                count(t.id) FILTER (WHERE t.status = 'available') AS available,
                count(t.id) FILTER (WHERE t.status = 'held') AS held,
                count(t.id) FILTER (WHERE t.status = 'sold') AS sold,
                (SELECT coalesce(sum(s.available), 0)::int8 FROM tier_stock s
                  WHERE s.event_id = tr.event_id AND s.tier = tr.name) AS kept_available
         FROM tiers tr LEFT JOIN tickets t ON t.event_id = tr.event_id AND t.tier = tr.name
         WHERE tr.event_id = ANY($1)
         GROUP BY tr.event_id, tr.name, tr.ticket_count ORDER BY tr.event_id, tr.name",
    )
    .bind(events)
    .fetch_all(db)
    .await
}

/// Every ticket created is available, held or sold, once.
fn conservation(t: &TierCounts, created: &BTreeMap<(i64, String), i64>) -> Check {
    let created = created
        .get(&(t.event_id, t.tier.clone()))
        .copied()
        .unwrap_or(t.created);
    let found = t.available + t.held + t.sold;
    let mut check = Check::counted(
        &format!(
            "event {} {}: available + held + sold = created",
            t.event_id, t.tier
        ),
        created,
        found,
    );
    if !check.passed() {
        check.problems.push(format!(
            "event {} tier {}: available {} + held {} + sold {} != created {created}",
            t.event_id, t.tier, t.available, t.held, t.sold
        ));
    }
    check
}

/// The count of available tickets the writes keep is the true count.
fn kept_count(t: &TierCounts) -> Check {
    let mut check = Check::counted(
        &format!(
            "event {} {}: kept available count = full count",
            t.event_id, t.tier
        ),
        t.available,
        t.kept_available,
    );
    if !check.passed() {
        check.problems.push(format!(
            "event {} tier {}: the kept count says {} available, a full count {}",
            t.event_id, t.tier, t.kept_available, t.available
        ));
    }
    check
}

async fn seen_bookings(db: &PgPool, seen: &Seen) -> Result<Vec<Check>, sqlx::Error> {
    let held_found: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings WHERE id = ANY($1)")
        .bind(&seen.held)
        .fetch_one(db)
        .await?;
    let confirmed: Vec<i64> = seen.confirmed.iter().map(|(id, _)| *id).collect();
    let (bookings, tickets): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM bookings WHERE id = ANY($1) AND status = 'confirmed'),
                (SELECT count(*) FROM tickets WHERE booking_id = ANY($1) AND status = 'sold')",
    )
    .bind(&confirmed)
    .fetch_one(db)
    .await?;
    Ok(vec![
        Check::counted(
            "bookings the load saw held, found",
            seen.held.len() as i64,
            held_found,
        ),
        Check::counted(
            "bookings the load saw confirmed, confirmed",
            confirmed.len() as i64,
            bookings,
        ),
        Check::counted(
            "tickets of those bookings, sold",
            seen.confirmed.iter().map(|(_, n)| n).sum(),
            tickets,
        ),
    ])
}
