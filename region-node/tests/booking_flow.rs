//! The booking flow on one node: all-or-nothing reserves, payment outcomes, expiry, cancel,
//! idempotency and ownership.

mod common;

use std::time::Duration;

use common::Api;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_request_that_cannot_be_filled_whole_holds_nothing() {
    let api = Api::start().await;
    let event = api.seeded_event(1, 0, 10, 600).await;
    let user = api.signup("grace").await;

    let answer = api.reserve(&user, &event, &[("VIP", 2), ("GA", 3)]).await;

    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    assert_eq!(answer.code(), "sold_out");
    assert_eq!(answer.body["error"]["available"]["VIP"], 1);
    assert_eq!(answer.body["error"]["available"]["GA"], 10);
    assert_eq!(api.available(&event, "VIP").await, 1);
    assert_eq!(api.available(&event, "GA").await, 10);
    let held: (i64,) = sqlx::query_as("SELECT count(*) FROM tickets WHERE status <> 'available'")
        .fetch_one(&api.node.db)
        .await
        .unwrap();
    assert_eq!(held.0, 0);
    let bookings: (i64,) = sqlx::query_as("SELECT count(*) FROM bookings")
        .fetch_one(&api.node.db)
        .await
        .unwrap();
    assert_eq!(bookings.0, 0);
    assert!(api.audit(&event).await.is_clean());
}

#[tokio::test]
async fn failed_payment_returns_the_tickets_at_once_and_success_sells_them() {
    let api = Api::start().await;
    let event = api.seeded_event(10, 0, 0, 600).await;
    let user = api.signup("alan").await;

    let held = api.reserve(&user, &event, &[("VIP", 2)]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    assert_eq!(api.available(&event, "VIP").await, 8);
    let failed = api
        .confirm(&user, held.body["bookingId"].as_str().unwrap(), "fail")
        .await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.body);
    assert_eq!(failed.body["status"], "payment_failed");
    assert_eq!(api.available(&event, "VIP").await, 10);

    let held = api.reserve(&user, &event, &[("VIP", 3)]).await;
    let booking = held.body["bookingId"].as_str().unwrap();
    let sold = api.confirm(&user, booking, "success").await;
    assert_eq!(sold.status, StatusCode::OK, "{}", sold.body);
    assert_eq!(sold.body["status"], "confirmed");
    assert!(sold.headers.contains_key("x-consistency-token"));
    assert_eq!(api.available(&event, "VIP").await, 7);
    for ticket in sold.body["tickets"].as_array().unwrap() {
        let t = api
            .get(
                &format!("/tickets/{}", ticket["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(t.body["status"], "sold");
    }
    // A sale is final: confirming or cancelling again changes nothing.
    assert_eq!(
        api.confirm(&user, booking, "success").await.code(),
        "not_held"
    );
    assert_eq!(api.cancel(&user, booking).await.code(), "not_held");
    let report = api.audit(&event).await;
    assert!(report.is_clean(), "{:?}", report.violations);
    let vip = report.tiers.iter().find(|t| t.tier == "VIP").unwrap();
    assert_eq!((vip.sold, vip.held, vip.available), (3, 0, 7));
}

#[tokio::test]
async fn a_lapsed_hold_is_bookable_at_once_and_can_no_longer_be_confirmed() {
    // The sweeper is slowed right down: only the claim query can free the tickets here.
    let api = Api::start_with(|c| c.booking.sweep_interval_ms = 3_600_000).await;
    let event = api.seeded_event(2, 0, 0, 1).await;
    let (first, second) = (api.signup("first").await, api.signup("second").await);

    let held = api.reserve(&first, &event, &[("VIP", 2)]).await;
    assert_eq!(held.status, StatusCode::CREATED);
    assert_eq!(
        api.reserve(&second, &event, &[("VIP", 1)]).await.code(),
        "sold_out"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    assert_eq!(api.available(&event, "VIP").await, 2);
    let taken = api.reserve(&second, &event, &[("VIP", 2)]).await;
    assert_eq!(taken.status, StatusCode::CREATED, "{}", taken.body);
    let late = api
        .confirm(&first, held.body["bookingId"].as_str().unwrap(), "success")
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
    assert_eq!(late.code(), "hold_expired");
    let mine = api
        .get(&format!("/booking/user/{}", first.id), Some(&first.token))
        .await;
    assert_eq!(mine.body[0]["status"], "expired");
    assert_eq!(mine.body[0]["tickets"], json!([]));
    let report = api.audit(&event).await;
    assert!(report.is_clean(), "{:?}", report.violations);
}

#[tokio::test]
async fn the_sweeper_records_lapsed_holds_as_expired_and_frees_their_tickets() {
    let api = Api::start().await;
    let event = api.seeded_event(3, 0, 0, 1).await;
    let user = api.signup("sleepy").await;
    let held = api.reserve(&user, &event, &[("VIP", 3)]).await;
    let booking: i64 = held.body["bookingId"].as_str().unwrap().parse().unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, freed): (String, i64) = sqlx::query_as(
            "SELECT b.status, (SELECT count(*) FROM tickets WHERE status = 'available')
             FROM bookings b WHERE b.id = $1",
        )
        .bind(booking)
        .fetch_one(&api.node.db)
        .await
        .unwrap();
        if status == "expired" && freed == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {status}, {freed} free"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn cancel_gives_a_hold_back_at_once() {
    let api = Api::start().await;
    let event = api.seeded_event(5, 0, 0, 600).await;
    let user = api.signup("quitter").await;
    let held = api.reserve(&user, &event, &[("VIP", 5)]).await;
    let booking = held.body["bookingId"].as_str().unwrap();
    assert_eq!(api.available(&event, "VIP").await, 0);

    let cancelled = api.cancel(&user, booking).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "released");
    assert_eq!(api.available(&event, "VIP").await, 5);
    assert_eq!(api.cancel(&user, booking).await.code(), "not_held");
    assert_eq!(
        api.confirm(&user, booking, "success").await.code(),
        "not_held"
    );
    assert!(api.audit(&event).await.is_clean());
}

#[tokio::test]
async fn the_same_idempotency_key_twice_books_once_and_answers_the_same() {
    let api = Api::start().await;
    let event = api.seeded_event(10, 0, 0, 600).await;
    let user = api.signup("twice").await;

    let first = api
        .reserve_with_key(&user, &event, &[("VIP", 2)], Some("order-1"))
        .await;
    let again = api
        .reserve_with_key(&user, &event, &[("VIP", 2)], Some("order-1"))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(again.status, StatusCode::CREATED);
    // The same booking; only the consistency token is fresh (a position at or past it).
    let without_token = |body: &serde_json::Value| {
        let mut body = body.clone();
        body.as_object_mut().unwrap().remove("consistencyToken");
        body
    };
    assert_eq!(without_token(&first.body), without_token(&again.body));
    assert!(again.body["consistencyToken"].is_string());
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(api.available(&event, "VIP").await, 8);

    // The same key for a different request is refused, not silently replayed.
    let other = api
        .reserve_with_key(&user, &event, &[("VIP", 3)], Some("order-1"))
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.code(), "idempotency_key_reused");

    // Keys belong to their user: another user's same key is a new request.
    let stranger = api.signup("stranger").await;
    let theirs = api
        .reserve_with_key(&stranger, &event, &[("VIP", 2)], Some("order-1"))
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_ne!(theirs.body["bookingId"], first.body["bookingId"]);
    assert_eq!(api.available(&event, "VIP").await, 6);
    assert!(api.audit(&event).await.is_clean());
}

#[tokio::test]
async fn a_sold_out_answer_is_not_recorded_so_the_retry_can_succeed() {
    let api = Api::start().await;
    let event = api.seeded_event(1, 0, 0, 600).await;
    let (holder, waiting) = (api.signup("holder").await, api.signup("waiting").await);
    let held = api.reserve(&holder, &event, &[("VIP", 1)]).await;
    let refused = api
        .reserve_with_key(&waiting, &event, &[("VIP", 1)], Some("k"))
        .await;
    assert_eq!(refused.code(), "sold_out");
    api.cancel(&holder, held.body["bookingId"].as_str().unwrap())
        .await;
    let retried = api
        .reserve_with_key(&waiting, &event, &[("VIP", 1)], Some("k"))
        .await;
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.body);
}

#[tokio::test]
async fn a_repeat_while_the_first_is_running_gets_409_then_the_first_answer() {
    let api = Api::start_with(|c| c.booking.payment_delay_ms = 1_500).await;
    let event = api.seeded_event(4, 0, 0, 600).await;
    let user = api.signup("impatient").await;
    let held = api.reserve(&user, &event, &[("VIP", 1)]).await;
    let body = json!({ "bookingId": held.body["bookingId"], "paymentSimulation": "success" });
    let confirm = || {
        api.send(
            Method::POST,
            "/booking/confirm",
            Some(&user.token),
            Some(body.clone()),
            Some("pay-1"),
        )
    };

    let (first, second) = tokio::join!(confirm(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        confirm().await
    });
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.body);
    assert_eq!(second.code(), "idempotency_in_progress");
    let later = confirm().await;
    assert_eq!(later.status, StatusCode::OK);
    assert_eq!(later.body, first.body);
    let sold: (i64,) = sqlx::query_as("SELECT count(*) FROM tickets WHERE status = 'sold'")
        .fetch_one(&api.node.db)
        .await
        .unwrap();
    assert_eq!(sold.0, 1);
}

#[tokio::test]
async fn another_user_cannot_confirm_cancel_or_read_someone_elses_booking() {
    let api = Api::start().await;
    let event = api.seeded_event(5, 0, 0, 600).await;
    let (owner, other) = (api.signup("owner").await, api.signup("other").await);
    let held = api.reserve(&owner, &event, &[("VIP", 1)]).await;
    let booking = held.body["bookingId"].as_str().unwrap();

    assert_eq!(
        api.confirm(&other, booking, "success").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.cancel(&other, booking).await.status,
        StatusCode::FORBIDDEN
    );
    let read = api
        .get(&format!("/booking/{booking}"), Some(&other.token))
        .await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
    let list = api
        .get(&format!("/booking/user/{}", owner.id), Some(&other.token))
        .await;
    assert_eq!(list.status, StatusCode::FORBIDDEN);
    assert_eq!(list.code(), "forbidden");
    let user = api
        .get(&format!("/users/{}", owner.id), Some(&other.token))
        .await;
    assert_eq!(user.status, StatusCode::FORBIDDEN);

    // The owner and an admin can; the hold is untouched by the refused attempts.
    let mine = api
        .get(&format!("/booking/user/{}", owner.id), Some(&owner.token))
        .await;
    assert_eq!(mine.body[0]["bookingId"], booking);
    assert_eq!(mine.body[0]["status"], "held");
    let as_admin = api
        .get(&format!("/booking/user/{}", owner.id), Some(&api.admin))
        .await;
    assert_eq!(as_admin.status, StatusCode::OK);
    assert_eq!(api.available(&event, "VIP").await, 4);
}

#[tokio::test]
async fn both_ticket_creation_shapes_and_a_hundred_thousand_tickets_in_one_request() {
    let api = Api::start().await;
    let event = api
        .create_event(&[("VIP", 10_000), ("Front Row", 5_000), ("GA", 1_000)], 600)
        .await;
    let seed = api
        .post(
            "/tickets/create",
            Some(&api.admin),
            json!({ "eventId": event, "vipCount": 10, "frontRowCount": 20, "gaCount": 30 }),
        )
        .await;
    assert_eq!(seed.status, StatusCode::CREATED, "{}", seed.body);
    assert_eq!(seed.body["totalAvailable"], 60);

    let started = std::time::Instant::now();
    api.create_tickets(&event, json!({ "GA": 100_000 })).await;
    eprintln!("100,000 tickets created in {:?}", started.elapsed());
    let availability = api.get(&format!("/tickets?eventId={event}"), None).await;
    assert_eq!(availability.body["totalAvailable"], 100_060);
    let ga = availability.body["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "GA")
        .unwrap()
        .clone();
    assert_eq!(ga["available"], 100_030);
    assert_eq!(ga["price"], 10.0);
    let event_view = api.get(&format!("/events/{event}"), None).await;
    assert_eq!(event_view.body["totalAvailable"], 100_060);
    assert!(api.audit(&event).await.is_clean());
}

#[tokio::test]
async fn a_write_for_another_regions_event_is_misdirected_and_changes_nothing() {
    let api = Api::start().await;
    // An id minted in eu-west (region 2): this us-east node must not write for it.
    let foreign = id_gen::IdParts {
        timestamp_ms: id_gen::EPOCH_UNIX_MS + 1_000,
        region: id_gen::RegionId::new(2).unwrap(),
        machine: 0,
        sequence: 0,
    }
    .encode()
    .unwrap();
    let user = api.signup("traveller").await;
    let answer = api
        .reserve(&user, &foreign.to_string(), &[("VIP", 1)])
        .await;
    assert_eq!(
        answer.status,
        StatusCode::MISDIRECTED_REQUEST,
        "{}",
        answer.body
    );
    assert_eq!(answer.code(), "misdirected");
    let create = api
        .post(
            "/events",
            Some(&api.admin),
            json!({ "name": "Elsewhere", "venue": "Far", "startsAt": "2030-01-01T00:00:00Z",
                    "homeRegion": "eu-west", "tiers": [{ "name": "GA", "priceCents": 100 }] }),
        )
        .await;
    assert_eq!(create.status, StatusCode::MISDIRECTED_REQUEST);
    let events: (i64,) = sqlx::query_as("SELECT count(*) FROM events")
        .fetch_one(&api.node.db)
        .await
        .unwrap();
    assert_eq!(events.0, 0);
}

#[tokio::test]
async fn the_claim_reads_only_the_claimable_index_however_many_are_sold() {
    let api = Api::start().await;
    let event = api.seeded_event(0, 0, 20_000, 600).await;
    // Sell most of the tickets, as late in an on-sale.
    sqlx::query(
        "WITH b AS (INSERT INTO bookings (id, event_id, user_id, status, quantity, lines,
                                          ticket_ids, total_cents, expires_at, confirmed_at)
                    VALUES (1, $1, 1, 'confirmed', 1, '[]', '{0}', 0, now(), now()))
         UPDATE tickets SET status = 'held', booking_id = 1, user_id = 1,
                            hold_expires_at = now() + interval '1 hour'
         WHERE id IN (SELECT id FROM tickets ORDER BY id LIMIT 19000)",
    )
    .bind(event.parse::<i64>().unwrap())
    .execute(&api.node.db)
    .await
    .unwrap();
    // The schema allows a sale only from a live hold of the same booking.
    sqlx::query("UPDATE tickets SET status = 'sold', sold_at = now() WHERE booking_id = 1")
        .execute(&api.node.db)
        .await
        .unwrap();
    sqlx::query("ANALYZE tickets")
        .execute(&api.node.db)
        .await
        .unwrap();
    // EXPLAIN ANALYZE runs the claim: do it in a transaction and roll it back.
    let mut tx = api.node.db.begin().await.unwrap();
    let plan: Vec<(String,)> = sqlx::query_as(&format!(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}",
        region_node::booking::store::CLAIM
    ))
    .bind(event.parse::<i64>().unwrap())
    .bind(vec!["GA"])
    .bind(vec![1i32])
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let plan: String = plan.into_iter().map(|(l,)| l + "\n").collect();
    assert!(plan.contains("tickets_claimable"), "{plan}");
    // One row read from the index, not the 19,000 sold ones before it.
    assert!(
        plan.lines()
            .any(|l| l.contains("Index Scan using tickets_claimable")),
        "{plan}"
    );
    assert!(!plan.contains("Seq Scan on tickets"), "{plan}");
}

#[tokio::test]
async fn a_lapsed_hold_is_hold_expired_to_confirm_before_and_after_the_sweeper() {
    let api = Api::start_with(|c| c.booking.sweep_interval_ms = 3_600_000).await;
    let event = api.seeded_event(1, 1, 2, 1).await;
    let user = api.signup("late payer").await;
    let early = api.reserve(&user, &event, &[("GA", 1)]).await;
    let swept = api.reserve(&user, &event, &[("GA", 1)]).await;
    let (early, swept) = (
        early.body["bookingId"].as_str().unwrap().to_owned(),
        swept.body["bookingId"].as_str().unwrap().to_owned(),
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    // Before the sweeper: the confirm itself records the lapse.
    let answer = api.confirm(&user, &early, "success").await;
    assert_eq!(answer.code(), "hold_expired", "{}", answer.body);
    // After the sweeper recorded the other one, and again for the one the confirm recorded.
    assert_eq!(
        region_node::ops::sweeper::sweep_once(&api.node.node).await,
        1
    );
    for booking in [&swept, &early] {
        let answer = api.confirm(&user, booking, "success").await;
        assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
        assert_eq!(answer.code(), "hold_expired", "{}", answer.body);
    }
    let statuses: Vec<(String,)> = sqlx::query_as("SELECT status FROM bookings ORDER BY id")
        .fetch_all(&api.node.db)
        .await
        .unwrap();
    assert_eq!(statuses, [("expired".into(),), ("expired".into(),)]);
    assert_eq!(api.available(&event, "GA").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_the_sweeper_ends_while_its_payment_runs_is_hold_expired() {
    // The payment outlasts the one-second hold by far, and the sweeper records the lapse
    // meanwhile: the confirm finds the booking already `expired`.
    let api = Api::start_with(|c| {
        c.booking.payment_delay_ms = 2_000;
        c.booking.sweep_interval_ms = 100;
    })
    .await;
    let event = api.seeded_event(1, 1, 2, 1).await;
    let user = api.signup("slow card").await;
    let held = api.reserve(&user, &event, &[("GA", 2)]).await;
    let booking = held.body["bookingId"].as_str().unwrap();
    let answer = api.confirm(&user, booking, "success").await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    assert_eq!(answer.code(), "hold_expired", "{}", answer.body);
    let (status,): (String,) = sqlx::query_as("SELECT status FROM bookings WHERE id = $1")
        .bind(booking.parse::<i64>().unwrap())
        .fetch_one(&api.node.db)
        .await
        .unwrap();
    assert_eq!(status, "expired");
    assert_eq!(api.available(&event, "GA").await, 2);
    let report = api.audit(&event).await;
    assert!(report.is_clean(), "{:?}", report.violations);
}
