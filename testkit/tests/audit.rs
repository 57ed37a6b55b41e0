//! The audit on the real schema: a sound event passes every check, and each kind of damage
//! (planted with the guard trigger and foreign keys off) fails the check that names it.

use std::collections::BTreeMap;

use sqlx::PgPool;
use testkit::audit::{audit, audit_event, Audit, Scope, Seen};
use testkit::postgres::shared_test_cluster;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

const EVENT: i64 = 1;

/// Event 1: VIP tickets 1-4, GA tickets 5-6; booking 100 holds 1 and 2 (live), booking 101 has
/// bought 3. Then `damage` runs with the guard trigger and foreign keys switched off.
async fn event_with(damage: &str) -> PgPool {
    let url = shared_test_cluster()
        .await
        .create_unique_database("audit")
        .await
        .unwrap();
    let db = PgPool::connect(&url).await.unwrap();
    MIGRATOR.run(&db).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO events (id, name, venue, starts_at, home_region)
           VALUES (1, 'Audit Night', 'Hall', '2030-01-01T20:00:00Z', 'us-east');
         INSERT INTO tiers (event_id, name, price_cents, ticket_count)
           VALUES (1, 'VIP', 100, 4), (1, 'GA', 10, 2);
         INSERT INTO bookings (id, event_id, user_id, status, quantity, lines, ticket_ids,
                               total_cents, expires_at, confirmed_at)
           VALUES (100, 1, 7, 'held', 2, '[]', '{1,2}', 200, now() + interval '1 hour', NULL),
                  (101, 1, 8, 'confirmed', 1, '[]', '{3}', 100, now() + interval '1 hour', now());
         INSERT INTO tickets (id, event_id, tier, status, booking_id, user_id, hold_expires_at,
                              sold_at)
           VALUES (1, 1, 'VIP', 'held', 100, 7, now() + interval '1 hour', NULL),
                  (2, 1, 'VIP', 'held', 100, 7, now() + interval '1 hour', NULL),
                  (3, 1, 'VIP', 'sold', 101, 8, now(), now()),
                  (4, 1, 'VIP', 'available', NULL, NULL, NULL, NULL),
                  (5, 1, 'GA', 'available', NULL, NULL, NULL, NULL),
                  (6, 1, 'GA', 'available', NULL, NULL, NULL, NULL);",
    )
    .execute(&db)
    .await
    .unwrap();
    if !damage.is_empty() {
        let mut tx = db.begin().await.unwrap();
        sqlx::raw_sql("SET LOCAL session_replication_role = replica")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::raw_sql(damage).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    db
}

async fn audit_with(db: &PgPool, scope: &Scope) -> Audit {
    audit(db, scope).await.unwrap()
}

/// Every check over event 1, with nothing but the database to go by.
async fn audit_of(db: &PgPool) -> Audit {
    let scope = Scope {
        events: vec![EVENT],
        ..Scope::default()
    };
    audit_with(db, &scope).await
}

/// (expected, found) of the check named `name`.
fn counts(audit: &Audit, name: &str) -> (i64, i64) {
    let check = audit
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {:?}", audit.checks));
    (check.expected, check.found)
}

#[tokio::test]
async fn a_sound_event_passes_every_check() {
    let db = event_with("").await;
    let audit = audit_of(&db).await;
    let names: Vec<&str> = audit.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "tickets promised to two live bookings",
            "tickets taken from live bookings",
            "held or sold tickets their booking does not account for",
            "confirmed bookings without exactly their tickets sold",
            "event 1 GA: available + held + sold = created",
            "event 1 VIP: available + held + sold = created",
            "event 1 GA: kept available count = full count",
            "event 1 VIP: kept available count = full count",
        ]
    );
    assert!(audit.passed(), "{:?}", audit.violations());
    let vip = audit.tiers.iter().find(|t| t.tier == "VIP").unwrap();
    assert_eq!(
        (vip.created, vip.available, vip.held, vip.sold),
        (4, 1, 2, 1)
    );

    let report = audit_event(&db, EVENT).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(report.event_id, EVENT);
    assert_eq!(report.tiers.len(), 2);
}

#[tokio::test]
async fn a_ticket_in_two_live_bookings_is_found() {
    let db = event_with(
        "INSERT INTO bookings (id, event_id, user_id, status, quantity, lines, ticket_ids,
                               total_cents, expires_at)
           VALUES (102, 1, 9, 'held', 1, '[]', '{1}', 100, now() + interval '1 hour')",
    )
    .await;
    let audit = audit_of(&db).await;
    assert_eq!(
        counts(&audit, "tickets promised to two live bookings"),
        (0, 1)
    );
    let report = audit_event(&db, EVENT).await.unwrap();
    assert!(report
        .violations
        .contains(&"ticket 1 belongs to 2 live bookings".to_owned()));
}

#[tokio::test]
async fn a_live_booking_that_lost_a_ticket_is_found() {
    let db = event_with(
        "UPDATE tickets SET status = 'available', booking_id = NULL, user_id = NULL,
                            hold_expires_at = NULL
         WHERE id = 2",
    )
    .await;
    let audit = audit_of(&db).await;
    assert_eq!(counts(&audit, "tickets taken from live bookings"), (0, 1));
    // The damage bypassed the triggers, so the kept count missed the ticket coming back too.
    assert_eq!(
        audit.violations(),
        [
            "booking 100 lost ticket 2 (now available for booking none)",
            "event 1 tier VIP: the kept count says 1 available, a full count 2"
        ]
    );
}

#[tokio::test]
async fn tickets_their_booking_does_not_account_for_are_found() {
    // Ticket 4 held for a booking that does not list it; ticket 3 sold for a booking released.
    let db = event_with(
        "UPDATE tickets SET status = 'held', booking_id = 100, user_id = 7,
                            hold_expires_at = now() + interval '1 hour'
         WHERE id = 4;
         UPDATE bookings SET status = 'released', confirmed_at = NULL WHERE id = 101",
    )
    .await;
    let audit = audit_of(&db).await;
    assert_eq!(
        counts(
            &audit,
            "held or sold tickets their booking does not account for"
        ),
        (0, 2)
    );
    let violations = audit.violations();
    assert!(violations.contains(&"ticket 4 is held for booking 100, which does not list it".into()));
    assert!(violations.contains(&"ticket 3 is sold but its booking is released".into()));
}

#[tokio::test]
async fn a_confirmed_booking_short_of_sold_tickets_is_found() {
    let db =
        event_with("UPDATE bookings SET quantity = 2, ticket_ids = '{3,4}' WHERE id = 101").await;
    let audit = audit_of(&db).await;
    assert_eq!(
        counts(
            &audit,
            "confirmed bookings without exactly their tickets sold"
        ),
        (0, 1)
    );
    assert!(audit
        .violations()
        .contains(&"confirmed booking 101 has 1 tickets sold, not 2".into()));
}

#[tokio::test]
async fn tickets_created_must_add_up_per_tier_and_a_callers_count_comes_first() {
    // A ticket vanishes (its kept count follows, so only the sum to created is off).
    let db = event_with(
        "DELETE FROM tickets WHERE id = 6;
         UPDATE tier_stock SET available = available - 1
         WHERE event_id = 1 AND tier = 'GA' AND stripe = 0",
    )
    .await;
    let audit = audit_of(&db).await;
    assert_eq!(
        counts(&audit, "event 1 GA: available + held + sold = created"),
        (2, 1)
    );
    assert_eq!(
        audit.violations(),
        ["event 1 tier GA: available 1 + held 0 + sold 0 != created 2"]
    );

    // The caller created one GA ticket: its count is checked, not the tier's record.
    let scope = Scope {
        events: vec![EVENT],
        created: BTreeMap::from([((EVENT, "GA".to_owned()), 1)]),
        seen: None,
    };
    assert!(audit_with(&db, &scope).await.passed());
}

#[tokio::test]
async fn bookings_a_load_saw_must_be_there() {
    let db = event_with("").await;
    let scope = Scope {
        events: vec![EVENT],
        created: BTreeMap::new(),
        seen: Some(Seen {
            held: vec![100, 101, 999],
            confirmed: vec![(101, 1), (100, 2)],
        }),
    };
    let audit = audit_with(&db, &scope).await;
    assert_eq!(counts(&audit, "bookings the load saw held, found"), (3, 2));
    assert_eq!(
        counts(&audit, "bookings the load saw confirmed, confirmed"),
        (2, 1)
    );
    assert_eq!(counts(&audit, "tickets of those bookings, sold"), (3, 1));
    assert_eq!(
        audit.violations(),
        [
            "bookings the load saw held, found: expected 3, found 2",
            "bookings the load saw confirmed, confirmed: expected 2, found 1",
            "tickets of those bookings, sold: expected 3, found 1",
        ]
    );
}

#[tokio::test]
async fn a_kept_count_that_drifted_from_the_tickets_is_found() {
    // One stripe of VIP's count says one more than there is; the sum is what is checked.
    let db = event_with(
        "UPDATE tier_stock SET available = available + 1
         WHERE event_id = 1 AND tier = 'VIP' AND stripe = 7",
    )
    .await;
    let audit = audit_of(&db).await;
    assert_eq!(
        counts(&audit, "event 1 VIP: kept available count = full count"),
        (1, 2)
    );
    assert_eq!(
        audit.violations(),
        ["event 1 tier VIP: the kept count says 2 available, a full count 1"]
    );
}
