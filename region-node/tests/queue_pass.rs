//! Places and passes of a queued event (issue 11): `GET /events/{id}/queue/me` and
//! `POST /events/{id}/queue/pass` in each state of a place, reserve refusing every bad pass
//! (missing, forged, tampered, another event's or user's, expired, used) with nothing booked,
//! one order per pass even when sent concurrently (the rest of a shared batch still books),
//! idempotent retries, non-queued events unchanged, and the database's own refusals.
//!
//! The queue's state is set up with direct SQL on the node's primary (this file's helpers), so
//! these tests need neither the join endpoint nor the serving loop.

mod common;

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{Answer, Api, User};
use region_node::queue::pass::{PassClaims, PassKeys};
use reqwest::StatusCode;
use serde_json::{json, Value};

// ---- the queue's state, by SQL ----

fn id(text: &str) -> i64 {
    text.parse().expect("a decimal id")
}

/// Makes `event` queued with a window of `pass_seconds`, drawn an hour ago (`drawn`) or
/// opening in an hour; then drops the node's cached terms, as setting a queue does.
/// A node without the serving loop: these tests set each queue's counters and admissions by
/// hand, and the loop would move them on.
async fn start() -> Api {
    Api::start_with(|c| c.queue.serving_loop = false).await
}

async fn queue_event(api: &Api, event: &str, drawn: bool, pass_seconds: i32) {
    sqlx::query(
        "INSERT INTO event_queues (event_id, opens_at, target_active, max_admit_per_second,
                                   pass_seconds, drawn_at)
         VALUES ($1, now() + CASE WHEN $2 THEN interval '-1 hour' ELSE interval '1 hour' END,
                 100, 10, $3, CASE WHEN $2 THEN now() - interval '1 hour' END)",
    )
    .bind(id(event))
    .bind(drawn)
    .bind(pass_seconds)
    .execute(&api.node.db)
    .await
    .expect("queue the event");
    api.node.node.terms.invalidate(id(event)).await;
}

/// Places `user` in `event`'s queue at `position` (`None`: the lobby).
async fn place(api: &Api, event: &str, user: &User, position: Option<i64>) {
    sqlx::query(
        "WITH m AS (INSERT INTO queue_members (event_id, user_id, position) VALUES ($1, $2, $3))
         UPDATE event_queues SET last_position = greatest(last_position, coalesce($3, 0))
         WHERE event_id = $1",
    )
    .bind(id(event))
    .bind(id(&user.id))
    .bind(position)
    .execute(&api.node.db)
    .await
    .expect("place the user");
}

/// Advances `event`'s serving counter to `through`, admitted `ago_seconds` ago.
async fn admit(api: &Api, event: &str, through: i64, ago_seconds: i64) {
    sqlx::query(
        "WITH a AS (
             INSERT INTO queue_admissions (event_id, first_position, last_position, admitted_at)
             SELECT event_id, serving + 1, $2, now() - make_interval(secs => $3)
             FROM event_queues WHERE event_id = $1)
         UPDATE event_queues SET serving = $2 WHERE event_id = $1",
    )
    .bind(id(event))
    .bind(through)
    .bind(ago_seconds as f64)
    .execute(&api.node.db)
    .await
    .expect("admit positions");
}

/// Bookings of `event` in the database.
async fn bookings(api: &Api, event: &str) -> i64 {
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM bookings WHERE event_id = $1")
        .bind(id(event))
        .fetch_one(&api.node.db)
        .await
        .unwrap();
    count
}

// ---- requests ----

async fn reserve(api: &Api, user: &User, event: &str, pass: Option<&str>) -> Answer {
    reserve_keyed(api, user, event, pass, None).await
}

async fn reserve_keyed(
    api: &Api,
    user: &User,
    event: &str,
    pass: Option<&str>,
    key: Option<&str>,
) -> Answer {
    let mut body = json!({"eventId": event, "tickets": [{"tier": "GA", "quantity": 1}]});
    if let Some(pass) = pass {
        body["queuePass"] = json!(pass);
    }
    api.send(
        reqwest::Method::POST,
        "/booking/reserve",
        Some(&user.token),
        Some(body),
        key,
    )
    .await
}

async fn me(api: &Api, user: &User, event: &str) -> Answer {
    api.get(&format!("/events/{event}/queue/me"), Some(&user.token))
        .await
}

async fn ask_pass(api: &Api, user: &User, event: &str) -> Answer {
    api.send(
        reqwest::Method::POST,
        &format!("/events/{event}/queue/pass"),
        Some(&user.token),
        None,
        None,
    )
    .await
}

/// `GET /events/{id}/queue/me` presenting a write's consistency token.
async fn me_after(api: &Api, user: &User, event: &str, token: &str) -> Answer {
    api.get_after_as(
        &format!("/events/{event}/queue/me"),
        Some(&user.token),
        token,
    )
    .await
}

/// The pass of an admitted place.
async fn pass_of(api: &Api, user: &User, event: &str) -> String {
    let answer = ask_pass(api, user, event).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["pass"].as_str().expect("a pass").to_owned()
}

fn assert_refused(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.code(), code, "{}", answer.body);
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `pass` with its payload's `field` set to `value`, the signature left as it was.
fn tampered(pass: &str, field: &str, value: Value) -> String {
    let parts: Vec<&str> = pass.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims[field] = value;
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

// ---- tests ----

#[tokio::test]
async fn reserve_of_a_queued_event_refuses_every_bad_pass_and_books_with_a_good_one() {
    let api = start().await;
    let event = api.seeded_event(0, 0, 20, 600).await;
    let other_event = api.seeded_event(0, 0, 20, 600).await;
    let (ann, bob) = (api.signup("ann").await, api.signup("bob").await);
    queue_event(&api, &event, true, 600).await;
    queue_event(&api, &other_event, true, 600).await;
    for (queue, users) in [(&event, [&ann, &bob]), (&other_event, [&ann, &bob])] {
        for (i, user) in users.into_iter().enumerate() {
            place(&api, queue, user, Some(i as i64 + 1)).await;
        }
        admit(&api, queue, 2, 0).await;
    }
    let pass = pass_of(&api, &ann, &event).await;
    let ann_id = id(&ann.id);
    let foreign_keys = PassKeys::new(b"not-the-deployment-secret-at-all");
    let expired = api
        .node
        .node
        .passes
        .sign(&PassClaims::new(
            ann_id,
            id(&event),
            1,
            now() - 700,
            now() - 100,
        ))
        .unwrap();
    let refusals = [
        (None, "queue_pass_required"),
        (
            Some(
                foreign_keys
                    .sign(&PassClaims::new(ann_id, id(&event), 1, now(), now() + 600))
                    .unwrap(),
            ),
            "queue_pass_invalid",
        ),
        (Some(tampered(&pass, "pos", json!(2))), "queue_pass_invalid"),
        (
            Some(tampered(&pass, "exp", json!(now() + 86_400))),
            "queue_pass_invalid",
        ),
        (Some(ann.token.clone()), "queue_pass_invalid"),
        (Some("not a pass".to_owned()), "queue_pass_invalid"),
        (
            Some(pass_of(&api, &ann, &other_event).await),
            "queue_pass_wrong_event",
        ),
        (Some(expired), "queue_pass_expired"),
    ];
    for (bad, code) in &refusals {
        let answer = reserve(&api, &ann, &event, bad.as_deref()).await;
        assert_refused(&answer, StatusCode::FORBIDDEN, code);
    }
    // Bob with Ann's pass.
    let answer = reserve(&api, &bob, &event, Some(&pass)).await;
    assert_refused(&answer, StatusCode::FORBIDDEN, "queue_pass_wrong_user");
    assert_eq!(bookings(&api, &event).await, 0, "a refused pass booked");
    assert_eq!(api.available(&event, "GA").await, 20);

    let booked = reserve(&api, &ann, &event, Some(&pass)).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.body);
    let (position,): (Option<i64>,) =
        sqlx::query_as("SELECT queue_position FROM bookings WHERE id = $1")
            .bind(id(booked.body["bookingId"].as_str().unwrap()))
            .fetch_one(&api.node.db)
            .await
            .unwrap();
    assert_eq!(position, Some(1));
    let again = reserve(&api, &ann, &event, Some(&pass)).await;
    assert_refused(&again, StatusCode::FORBIDDEN, "queue_pass_used");
    assert_eq!(bookings(&api, &event).await, 1);
    assert_eq!(api.available(&event, "GA").await, 19);
    assert!(api.audit(&event).await.is_clean());
}

#[tokio::test]
async fn an_idempotent_retry_with_its_pass_answers_the_first_booking() {
    let api = start().await;
    let event = api.seeded_event(0, 0, 10, 600).await;
    let cat = api.signup("cat").await;
    queue_event(&api, &event, true, 600).await;
    place(&api, &event, &cat, Some(1)).await;
    admit(&api, &event, 1, 0).await;
    let pass = pass_of(&api, &cat, &event).await;
    let first = reserve_keyed(&api, &cat, &event, Some(&pass), Some("retry-1")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let retry = reserve_keyed(&api, &cat, &event, Some(&pass), Some("retry-1")).await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
    assert_eq!(retry.body["bookingId"], first.body["bookingId"]);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    // Also once the pass has expired, or without it: the key's booking is the answer.
    let expired = api
        .node
        .node
        .passes
        .sign(&PassClaims::new(
            id(&cat.id),
            id(&event),
            1,
            now() - 700,
            now() - 100,
        ))
        .unwrap();
    for late in [Some(expired.as_str()), None] {
        let retry = reserve_keyed(&api, &cat, &event, late, Some("retry-1")).await;
        assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
        assert_eq!(retry.body["bookingId"], first.body["bookingId"]);
    }
    // A new key is a new order: the pass made one already.
    let other = reserve_keyed(&api, &cat, &event, Some(&pass), Some("retry-2")).await;
    assert_refused(&other, StatusCode::FORBIDDEN, "queue_pass_used");
    let other = reserve_keyed(&api, &cat, &event, Some(&expired), Some("retry-3")).await;
    assert_refused(&other, StatusCode::FORBIDDEN, "queue_pass_expired");
    assert_eq!(bookings(&api, &event).await, 1);
}

#[tokio::test]
async fn concurrent_orders_with_one_pass_book_once_and_their_batch_mates_still_book() {
    const SAME_PASS: usize = 8;
    const OTHERS: usize = 8;
    let api = Arc::new(start().await);
    let event = api.seeded_event(0, 0, 100, 600).await;
    queue_event(&api, &event, true, 600).await;
    let mut users = Vec::new();
    for i in 0..=OTHERS {
        let user = api.signup(&format!("fan{i}")).await;
        place(&api, &event, &user, Some(i as i64 + 1)).await;
        users.push(user);
    }
    admit(&api, &event, OTHERS as i64 + 1, 0).await;
    let mut passes = Vec::new();
    for user in &users {
        passes.push(pass_of(&api, user, &event).await);
    }
    // The first user sends their one pass eight times, with the others' single orders.
    let mut orders: Vec<(User, String, bool)> = (0..SAME_PASS)
        .map(|_| (users[0].clone(), passes[0].clone(), true))
        .collect();
    for (user, pass) in users.iter().zip(&passes).skip(1) {
        orders.push((user.clone(), pass.clone(), false));
    }
    let start = Arc::new(tokio::sync::Barrier::new(orders.len()));
    let tasks: Vec<_> = orders
        .into_iter()
        .map(|(user, pass, shared)| {
            let (api, event, start) = (api.clone(), event.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                (shared, reserve(&api, &user, &event, Some(&pass)).await)
            })
        })
        .collect();
    let (mut shared_booked, mut shared_used, mut others_booked) = (0, 0, 0);
    for task in tasks {
        let (shared, answer) = task.await.unwrap();
        match (shared, answer.status) {
            (true, StatusCode::CREATED) => shared_booked += 1,
            (true, _) => {
                assert_refused(&answer, StatusCode::FORBIDDEN, "queue_pass_used");
                shared_used += 1;
            }
            (false, status) => {
                assert_eq!(status, StatusCode::CREATED, "{}", answer.body);
                others_booked += 1;
            }
        }
    }
    assert_eq!((shared_booked, shared_used), (1, SAME_PASS - 1));
    assert_eq!(others_booked, OTHERS);
    assert_eq!(bookings(&api, &event).await, OTHERS as i64 + 1);
    assert!(api.audit(&event).await.is_clean());
    // They met in shared batches: a refused pass failed its batch, whose others then booked
    // alone.
    let (reserves, batches) = api.batch_stats().await;
    assert_eq!(reserves, (SAME_PASS + OTHERS) as f64);
    assert!(
        batches < reserves,
        "{batches} batches for {reserves} reserves"
    );
}

#[tokio::test]
async fn an_event_that_is_not_queued_books_as_before_with_or_without_a_pass() {
    let api = start().await;
    let plain = api.seeded_event(0, 0, 10, 600).await;
    let queued = api.seeded_event(0, 0, 10, 600).await;
    let dan = api.signup("dan").await;
    queue_event(&api, &queued, true, 600).await;
    place(&api, &queued, &dan, Some(1)).await;
    admit(&api, &queued, 1, 0).await;
    let pass = pass_of(&api, &dan, &queued).await;
    for given in [None, Some(pass.as_str()), Some("anything at all")] {
        let answer = reserve(&api, &dan, &plain, given).await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{given:?}: {}",
            answer.body
        );
    }
    assert_eq!(bookings(&api, &plain).await, 3);
    // The pass for the queued event was not spent by them.
    let answer = reserve(&api, &dan, &queued, Some(&pass)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}

/// A booking inserted straight into the database (no node), with `queue_position`.
async fn insert_booking(
    api: &Api,
    event: &str,
    user: &User,
    position: Option<i64>,
) -> Result<(), String> {
    let booking = api.node.node.ids.next().unwrap();
    sqlx::query(
        "INSERT INTO bookings (id, event_id, user_id, status, quantity, lines, ticket_ids,
                               total_cents, expires_at, queue_position)
         VALUES ($1, $2, $3, 'expired', 1, '[]', ARRAY[1::int8], 0, now(), $4)",
    )
    .bind(booking.as_i64())
    .bind(id(event))
    .bind(id(&user.id))
    .bind(position)
    .execute(&api.node.db)
    .await
    .map(|_| ())
    .map_err(|e| match e {
        sqlx::Error::Database(e) => e.constraint().unwrap_or("<none>").to_owned(),
        other => panic!("not a database refusal: {other}"),
    })
}

#[tokio::test]
async fn the_database_alone_refuses_bookings_without_an_admitted_place_or_with_a_used_one() {
    let api = start().await;
    let event = api.seeded_event(0, 0, 10, 600).await;
    let (eve, fay) = (api.signup("eve").await, api.signup("fay").await);
    queue_event(&api, &event, true, 600).await;
    place(&api, &event, &eve, Some(1)).await;
    place(&api, &event, &fay, Some(2)).await;
    admit(&api, &event, 1, 0).await;
    let need = Err("bookings_need_an_admitted_place".to_owned());
    assert_eq!(insert_booking(&api, &event, &eve, None).await, need);
    // Fay's place is still waiting.
    assert_eq!(insert_booking(&api, &event, &fay, Some(2)).await, need);
    // Eve's place is admitted, but it is not Fay's.
    assert_eq!(
        insert_booking(&api, &event, &fay, Some(1)).await,
        Err("bookings_pass_is_the_users_place".to_owned())
    );
    assert_eq!(insert_booking(&api, &event, &eve, Some(1)).await, Ok(()));
    assert_eq!(
        insert_booking(&api, &event, &eve, Some(1)).await,
        Err("bookings_one_per_pass".to_owned())
    );
    assert_eq!(bookings(&api, &event).await, 1);
}

#[tokio::test]
async fn me_and_pass_answer_each_state_of_a_place() {
    let api = start().await;
    let event = api.seeded_event(0, 0, 10, 600).await;
    let lobby_event = api.seeded_event(0, 0, 10, 600).await;
    let plain = api.seeded_event(0, 0, 10, 600).await;
    let users = [
        api.signup("gil").await, // 1: admitted an hour ago: expired
        api.signup("hal").await, // 2: admitted now, then used
        api.signup("ida").await, // 3: admitted now
        api.signup("jay").await, // 4: waiting
        api.signup("kim").await, // not in the queue
    ];
    queue_event(&api, &event, true, 60).await;
    queue_event(&api, &lobby_event, false, 60).await;
    for (i, user) in users[..4].iter().enumerate() {
        place(&api, &event, user, Some(i as i64 + 1)).await;
    }
    place(&api, &lobby_event, &users[0], None).await;
    admit(&api, &event, 1, 3_600).await;
    admit(&api, &event, 3, 0).await;
    let [gil, hal, ida, jay, kim] = &users;

    // Lobby: no position yet, no pass.
    let answer = me(&api, gil, &lobby_event).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["state"], "lobby");
    assert_eq!(answer.body["position"], Value::Null);
    assert_eq!(answer.body["userId"], json!(gil.id));
    assert_refused(
        &ask_pass(&api, gil, &lobby_event).await,
        StatusCode::CONFLICT,
        "queue_not_admitted",
    );

    // Waiting: next in line (the counter is at 3, the place is 4), a wait from the rate.
    let answer = me(&api, jay, &event).await;
    assert_eq!(answer.body["state"], "waiting", "{}", answer.body);
    assert_eq!(answer.body["position"], 4);
    assert_eq!(answer.body["serving"], 3);
    assert_eq!(answer.body["aheadOfYou"], 0);
    assert!(answer.body["estimatedWait"].is_object(), "{}", answer.body);
    assert_eq!(answer.body["passExpiresAt"], Value::Null);
    assert_refused(
        &ask_pass(&api, jay, &event).await,
        StatusCode::CONFLICT,
        "queue_not_admitted",
    );

    // Admitted: a pass until the window's end.
    let answer = me(&api, ida, &event).await;
    assert_eq!(answer.body["state"], "admitted", "{}", answer.body);
    let window_end = answer.body["passExpiresAt"].clone();
    assert!(window_end.is_string());
    let issued = ask_pass(&api, ida, &event).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(issued.body["eventId"], json!(event));
    assert_eq!(issued.body["position"], 3);
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(issued.body["expiresAt"].clone()).unwrap();
    let window: chrono::DateTime<chrono::Utc> = serde_json::from_value(window_end).unwrap();
    assert_eq!(expires, window);
    assert!((expires.timestamp() - now() - 60).abs() <= 5, "{expires}");

    // Used: after an order with the pass.
    let pass = pass_of(&api, hal, &event).await;
    let booked = reserve(&api, hal, &event, Some(&pass)).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.body);
    let token = booked.body["consistencyToken"].as_str().unwrap().to_owned();
    let answer = me_after(&api, hal, &event, &token).await;
    assert_eq!(answer.body["state"], "used", "{}", answer.body);
    assert_refused(
        &ask_pass(&api, hal, &event).await,
        StatusCode::FORBIDDEN,
        "queue_pass_used",
    );

    // Expired: admitted an hour ago with a minute's window.
    let answer = me(&api, gil, &event).await;
    assert_eq!(answer.body["state"], "expired", "{}", answer.body);
    assert_eq!(answer.body["passExpiresAt"], Value::Null);
    assert_refused(
        &ask_pass(&api, gil, &event).await,
        StatusCode::FORBIDDEN,
        "queue_pass_expired",
    );

    // Not a member, no queue, no event; and no caller.
    for answer in [
        me(&api, kim, &event).await,
        ask_pass(&api, kim, &event).await,
    ] {
        assert_refused(&answer, StatusCode::NOT_FOUND, "not_in_queue");
    }
    for answer in [
        me(&api, kim, &plain).await,
        ask_pass(&api, kim, &plain).await,
    ] {
        assert_refused(&answer, StatusCode::NOT_FOUND, "queue_not_found");
    }
    let nowhere = api.node.node.ids.next().unwrap().to_string();
    for answer in [
        me(&api, kim, &nowhere).await,
        ask_pass(&api, kim, &nowhere).await,
    ] {
        assert_refused(&answer, StatusCode::NOT_FOUND, "not_found");
    }
    let anonymous = api.get(&format!("/events/{event}/queue/me"), None).await;
    assert_refused(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_refused(
        &api.get("/events/not-an-id/queue/me", Some(&kim.token))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );

    // Ida's and Hal's passes were issued.
    let (_, metrics) = api.ops("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "ticketing_queue_passes_issued_total 2"),
        "{metrics}"
    );
}
