//! The oversell audit, run against a home primary: no ticket held or sold for two bookings, and
//! held + sold + available = created for every tier. Tests and loadgen use it.

use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct TierCounts {
    pub tier: String,
    pub created: i64,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
}

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

/// Audits one event. Reads only; safe to run while traffic flows, though counts then move.
pub async fn audit_event(db: &PgPool, event_id: i64) -> Result<AuditReport, sqlx::Error> {
    let mut violations = Vec::new();

    // A ticket promised to two live bookings (held and unexpired, or confirmed).
    let doubled: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT tid, count(*) FROM bookings b, unnest(b.ticket_ids) AS tid
         WHERE b.event_id = $1
           AND ((b.status = 'held' AND b.expires_at > now()) OR b.status = 'confirmed')
         GROUP BY tid HAVING count(*) > 1",
    )
    .bind(event_id)
    .fetch_all(db)
    .await?;
    for (ticket, n) in doubled {
        violations.push(format!("ticket {ticket} belongs to {n} live bookings"));
    }

    // A live booking whose tickets no longer point back to it: someone else took them.
    let stolen: Vec<(i64, i64, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT b.id, tid, t.booking_id, t.status
         FROM bookings b CROSS JOIN LATERAL unnest(b.ticket_ids) AS tid
         LEFT JOIN tickets t ON t.id = tid
         WHERE b.event_id = $1
           AND ((b.status = 'held' AND b.expires_at > now()) OR b.status = 'confirmed')
           AND (t.booking_id IS DISTINCT FROM b.id
                OR t.status IS DISTINCT FROM
                   (CASE WHEN b.status = 'confirmed' THEN 'sold' ELSE 'held' END))",
    )
    .bind(event_id)
    .fetch_all(db)
    .await?;
    for (booking, ticket, holder, status) in stolen {
        violations.push(format!(
            "booking {booking} lost ticket {ticket} (now {} for booking {})",
            status.as_deref().unwrap_or("missing"),
            holder.map_or("none".into(), |h| h.to_string())
        ));
    }

    // Sold tickets outside a confirmed booking, held tickets of a booking that ended.
    let orphans: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT t.id, t.status, b.status FROM tickets t LEFT JOIN bookings b ON b.id = t.booking_id
         WHERE t.event_id = $1
           AND ((t.status = 'sold' AND b.status IS DISTINCT FROM 'confirmed')
             OR (t.status = 'held' AND b.status IS DISTINCT FROM 'held'))",
    )
    .bind(event_id)
    .fetch_all(db)
    .await?;
    for (ticket, status, booking_status) in orphans {
        violations.push(format!(
            "ticket {ticket} is {status} but its booking is {}",
            booking_status.as_deref().unwrap_or("missing")
        ));
    }

    let tiers: Vec<TierCounts> = sqlx::query_as(
        "SELECT tr.name AS tier, tr.ticket_count AS created,
                count(t.id) FILTER (WHERE t.status = 'available') AS available,
                count(t.id) FILTER (WHERE t.status = 'held') AS held,
                count(t.id) FILTER (WHERE t.status = 'sold') AS sold
         FROM tiers tr LEFT JOIN tickets t ON t.event_id = tr.event_id AND t.tier = tr.name
         WHERE tr.event_id = $1
         GROUP BY tr.name, tr.ticket_count ORDER BY tr.name",
    )
    .bind(event_id)
    .fetch_all(db)
    .await?;
    for t in &tiers {
        if t.available + t.held + t.sold != t.created {
            violations.push(format!(
                "tier {}: available {} + held {} + sold {} != created {}",
                t.tier, t.available, t.held, t.sold, t.created
            ));
        }
    }
    Ok(AuditReport {
        event_id,
        tiers,
        violations,
    })
}
