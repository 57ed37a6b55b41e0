//! The per-user ticket cap per event, across all of a user's orders: a concurrent burst of one
//! user's orders gets exactly what fits (in shared group-commit batches and in transactions of
//! their own; the negative control without the holder locks must break it), concurrent repeats
//! of a keyed order are not refused by the cap they filled, separate orders over time add up,
//! released, failed and lapsed tickets stop counting, and the cap in force shows in the event
//! view.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Answer, Api, User};
use reqwest::StatusCode;
use serde_json::json;

/// Tickets `holder` holds (live) or bought of `event`, counted in the database.
async fn holdings(api: &Api, holder: &str, event: &str) -> i64 {
    let (count,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM tickets
         WHERE event_id = $1 AND user_id = $2
           AND (status = 'sold' OR (status = 'held' AND hold_expires_at > now()))",
    )
    .bind(event.parse::<i64>().unwrap())
    .bind(holder.parse::<i64>().unwrap())
    .fetch_one(&api.node.db)
    .await
    .unwrap();
    count
}

/// A GA event with `tickets` tickets, holds of `hold_seconds` and a cap of `cap`.
async fn capped_event(api: &Api, tickets: i64, hold_seconds: i64, cap: i64) -> String {
    let event = api
        .create_event_with(
            &[("GA", 1_000)],
            hold_seconds,
            json!({ "maxTicketsPerUser": cap }),
        )
        .await;
    api.create_tickets(&event, json!({ "GA": tickets })).await;
    event
}

/// A refusal for the cap, with what it says the user may still take.
fn assert_ticket_limit(answer: &Answer, cap: i64, may_add: i64) {
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    assert_eq!(answer.code(), "ticket_limit", "{}", answer.body);
    assert_eq!(answer.body["error"]["maxTicketsPerUser"], cap);
    assert_eq!(answer.body["error"]["mayAdd"], may_add);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("at most {cap} tickets"))
            && message.contains(&format!("you may take {may_add} more")),
        "{message}"
    );
}

const CAP: i64 = 6;
const BURST: usize = 20;

/// What a burst of one user's orders came to.
struct Burst {
    /// Tickets the 201 answers gave.
    granted: i64,
    /// Tickets the user holds by the database.
    counted: i64,
    /// (asked, mayAdd) of each `ticket_limit` refusal.
    refused: Vec<(i64, i64)>,
    /// Any other answer.
    other: Vec<String>,
    audit: testkit::audit::AuditReport,
}

impl Burst {
    /// What the cap promises; `Err` lists every broken promise.
    fn check(&self) -> Result<(), String> {
        let mut broken = Vec::new();
        if self.counted != self.granted {
            broken.push(format!(
                "the answers gave {} tickets, the database has {}",
                self.granted, self.counted
            ));
        }
        // Seven of the orders are for one ticket: unless the cap was reached, none of them
        // could have been refused, and seven fill it anyway.
        if self.counted != CAP {
            broken.push(format!("the user holds {} of a cap of {CAP}", self.counted));
        }
        for (asked, may_add) in &self.refused {
            if asked <= may_add {
                broken.push(format!("refused {asked} while {may_add} more were allowed"));
            }
        }
        if !self.other.is_empty() {
            broken.push(format!("unexpected answers: {:?}", self.other));
        }
        if !self.audit.is_clean() {
            broken.push(format!("audit: {:?}", self.audit.violations));
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(broken.join("; "))
        }
    }
}

/// Twenty orders of 1, 2 or 3 tickets from one user at once, for an event with plenty.
async fn burst(api: Arc<Api>) -> Burst {
    let event = capped_event(&api, 100, 600, CAP).await;
    let user = api.signup("eager").await;
    let start = Arc::new(tokio::sync::Barrier::new(BURST));
    let orders = (0..BURST).map(|i| {
        let (api, user, event, start) = (api.clone(), user.clone(), event.clone(), start.clone());
        let quantity = i as i64 % 3 + 1;
        tokio::spawn(async move {
            start.wait().await;
            (
                quantity,
                api.reserve(&user, &event, &[("GA", quantity)]).await,
            )
        })
    });
    let answers = futures::future::join_all(orders).await;
    let mut outcome = Burst {
        granted: 0,
        counted: holdings(&api, &user.id, &event).await,
        refused: Vec::new(),
        other: Vec::new(),
        audit: api.audit(&event).await,
    };
    for order in answers {
        let (quantity, answer) = order.expect("order task");
        match (answer.status, answer.code()) {
            (StatusCode::CREATED, _) => outcome.granted += quantity,
            (StatusCode::CONFLICT, "ticket_limit") => outcome
                .refused
                .push((quantity, answer.body["error"]["mayAdd"].as_i64().unwrap())),
            (status, _) => outcome.other.push(format!("{status} {}", answer.body)),
        }
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_one_users_orders_in_shared_batches_gets_exactly_what_fits() {
    let api = Arc::new(Api::start().await);
    let outcome = burst(api.clone()).await;
    outcome.check().unwrap();
    let (reserves, batches) = api.batch_stats().await;
    assert_eq!(reserves, BURST as f64);
    assert!(
        batches < reserves,
        "the burst shared batches ({batches} batches for {reserves} reserves)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_one_users_orders_in_transactions_of_their_own_gets_exactly_what_fits() {
    let api = Api::start_with(|c| c.booking.batch_reserves = false).await;
    burst(Arc::new(api)).await.check().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_without_the_holder_locks_the_burst_breaks_the_cap() {
    let api = Api::start_without_row_locks(|_| {}).await;
    let outcome = burst(Arc::new(api)).await;
    let verdict = outcome.check();
    assert!(
        verdict.is_err(),
        "without the locks the burst must break the cap, but it held"
    );
    eprintln!("negative control caught: {}", verdict.unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_of_a_keyed_order_that_fills_the_cap_all_get_its_booking() {
    // A retried request (the router retries with the same key) must not meet the cap its own
    // first attempt just filled.
    let api = Arc::new(Api::start().await);
    let event = capped_event(&api, 20, 600, 4).await;
    let user = api.signup("retrier").await;
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let repeats = (0..8).map(|_| {
        let (api, user, event, start) = (api.clone(), user.clone(), event.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            api.reserve_with_key(&user, &event, &[("GA", 4)], Some("fill-up"))
                .await
        })
    });
    let mut bookings = Vec::new();
    let mut firsts = 0;
    for answer in futures::future::join_all(repeats).await {
        let answer = answer.unwrap();
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        bookings.push(answer.body["bookingId"].as_str().unwrap().to_owned());
        if !answer.headers.contains_key("idempotent-replayed") {
            firsts += 1;
        }
    }
    bookings.sort();
    bookings.dedup();
    assert_eq!(bookings.len(), 1, "one booking for every repeat");
    assert_eq!(firsts, 1, "the others are replays of it");
    assert_eq!(holdings(&api, &user.id, &event).await, 4);
}

#[tokio::test]
async fn separate_orders_add_up_and_released_or_failed_tickets_stop_counting() {
    let api = Api::start().await;
    let event = capped_event(&api, 20, 600, 4).await;
    let (user, other) = (api.signup("collector").await, api.signup("other").await);

    let first = api.reserve(&user, &event, &[("GA", 2)]).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let second = api.reserve(&user, &event, &[("GA", 2)]).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    let paid = api
        .confirm(&user, second.body["bookingId"].as_str().unwrap(), "success")
        .await;
    assert_eq!(paid.body["status"], "confirmed", "{}", paid.body);

    // Held and bought both count: a third order is refused, and changes nothing.
    let bookings = |api: &Api| {
        let db = api.node.db.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM bookings")
                .fetch_one(&db)
                .await
                .unwrap();
            n
        }
    };
    let before = (bookings(&api).await, api.available(&event, "GA").await);
    assert_ticket_limit(&api.reserve(&user, &event, &[("GA", 1)]).await, 4, 0);
    assert_eq!(
        (bookings(&api).await, api.available(&event, "GA").await),
        before
    );
    // The cap is per user.
    let theirs = api.reserve(&other, &event, &[("GA", 4)]).await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);

    // A cancelled hold stops counting.
    let cancelled = api
        .cancel(&user, first.body["bookingId"].as_str().unwrap())
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_ticket_limit(&api.reserve(&user, &event, &[("GA", 3)]).await, 4, 2);
    let third = api.reserve(&user, &event, &[("GA", 2)]).await;
    assert_eq!(third.status, StatusCode::CREATED, "{}", third.body);

    // So does a failed payment's.
    let failed = api
        .confirm(&user, third.body["bookingId"].as_str().unwrap(), "fail")
        .await;
    assert_eq!(failed.body["status"], "payment_failed", "{}", failed.body);
    let fourth = api.reserve(&user, &event, &[("GA", 2)]).await;
    assert_eq!(fourth.status, StatusCode::CREATED, "{}", fourth.body);
    assert_eq!(holdings(&api, &user.id, &event).await, 4);

    // Admins are held to it too.
    let admin = User {
        id: String::new(),
        token: api.admin.clone(),
    };
    let bought = api.reserve(&admin, &event, &[("GA", 4)]).await;
    assert_eq!(bought.status, StatusCode::CREATED, "{}", bought.body);
    assert_ticket_limit(&api.reserve(&admin, &event, &[("GA", 1)]).await, 4, 0);

    let report = api.audit(&event).await;
    assert!(report.is_clean(), "{:?}", report.violations);
}

#[tokio::test]
async fn a_lapsed_hold_stops_counting_before_and_after_the_sweeper() {
    // The sweeper only runs when the test says.
    let api = Api::start_with(|c| c.booking.sweep_interval_ms = 3_600_000).await;
    let event = capped_event(&api, 20, 1, 3).await;
    let user = api.signup("forgetful").await;

    let held = api.reserve(&user, &event, &[("GA", 3)]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    assert_ticket_limit(&api.reserve(&user, &event, &[("GA", 1)]).await, 3, 0);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // Lapsed, not yet swept: its tickets no longer count.
    let again = api.reserve(&user, &event, &[("GA", 3)]).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let swept = region_node::ops::sweeper::sweep_once(&api.node.node).await;
    assert_eq!(swept, 2, "both lapsed holds are recorded expired");
    let after = api.reserve(&user, &event, &[("GA", 3)]).await;
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.body);
}

#[tokio::test]
async fn the_event_view_shows_the_cap_in_force_the_events_own_or_the_nodes_default() {
    let api = Api::start_with(|c| c.booking.default_max_tickets_per_user = 2).await;
    let own = capped_event(&api, 10, 600, 5).await;
    let default = api.create_event(&[("GA", 1_000)], 600).await;
    api.create_tickets(&default, json!({ "GA": 10 })).await;
    for (event, cap) in [(&own, 5), (&default, 2)] {
        let view = api.get(&format!("/events/{event}"), None).await;
        assert_eq!(view.body["maxTicketsPerUser"], cap, "{}", view.body);
    }
    let user = api.signup("defaulted").await;
    let held = api.reserve(&user, &default, &[("GA", 2)]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    assert_ticket_limit(&api.reserve(&user, &default, &[("GA", 1)]).await, 2, 0);
    let (stored,): (Option<i32>,) =
        sqlx::query_as("SELECT max_tickets_per_user FROM events WHERE id = $1")
            .bind(default.parse::<i64>().unwrap())
            .fetch_one(&api.node.db)
            .await
            .unwrap();
    assert_eq!(
        stored, None,
        "an event without a cap of its own follows the default"
    );
}
