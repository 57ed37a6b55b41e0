//! The waiting room on real PostgreSQL: a fair draw of the lobby at opening and first come,
//! first served after it; the serving counter's closed loop (active users held at the target,
//! abandoned places never stalling the queue); settings, joins and their refusals; the gauges.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Answer, Api};
use region_node::identity::auth::{Grant, Role};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A node whose serving loop and gauges tick fast.
async fn node() -> Arc<Api> {
    Arc::new(
        Api::start_with(|config| {
            config.queue.tick_ms = 50;
            config.queue.metrics_interval_ms = 100;
        })
        .await,
    )
}

/// A user with a token minted by the node (sign-ups would only slow thousands of joins).
#[derive(Clone)]
struct Fan {
    id: String,
    token: String,
}

fn fans(api: &Api, n: usize) -> Vec<Fan> {
    (0..n)
        .map(|_| {
            let user = api.node.node.ids.next().expect("an id for a fan");
            let grant = Grant {
                user,
                role: Role::User,
                session: None,
            };
            let issued = api
                .node
                .node
                .tokens
                .issue(grant, Duration::from_secs(3600))
                .expect("sign a fan's token");
            Fan {
                id: user.to_string(),
                token: issued.token,
            }
        })
        .collect()
}

fn settings(opens_at: DateTime<Utc>, target: i64, rate: f64, pass: i64) -> Value {
    json!({"opensAt": opens_at, "targetActive": target, "maxAdmitPerSecond": rate,
           "passSeconds": pass})
}

fn in_seconds(seconds: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(seconds)
}

async fn put_queue(api: &Api, event: &str, token: &str, body: Value) -> Answer {
    api.send(
        Method::PUT,
        &format!("/events/{event}/queue"),
        Some(token),
        Some(body),
        None,
    )
    .await
}

async fn join(api: &Api, event: &str, fan: &Fan) -> Answer {
    api.send(
        Method::POST,
        &format!("/events/{event}/queue"),
        Some(&fan.token),
        None,
        None,
    )
    .await
}

async fn figures(api: &Api, event: &str) -> Answer {
    api.get(&format!("/events/{event}/queue"), None).await
}

/// Joins `fans` 50 at a time, all of a wave at once; the answers in `fans`' order.
async fn join_in_waves(api: &Arc<Api>, event: &str, fans: &[Fan]) -> Vec<Value> {
    let mut places = Vec::with_capacity(fans.len());
    for wave in fans.chunks(50) {
        let joins = wave.iter().map(|fan| {
            let (api, event, fan) = (api.clone(), event.to_owned(), fan.clone());
            tokio::spawn(async move { join(&api, &event, &fan).await })
        });
        for answer in futures::future::join_all(joins).await {
            let answer = answer.unwrap();
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            places.push(answer.body);
        }
    }
    places
}

/// Polls the queue's figures until `done` holds (at most `seconds`).
async fn wait_for(api: &Api, event: &str, seconds: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let answer = figures(api, event).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        if done(&answer.body) {
            return answer.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue never got there: {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn position(place: &Value) -> i64 {
    place["position"].as_i64().expect("a position")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lobby_is_drawn_at_random_then_later_joins_queue_in_order_and_all_are_admitted_once() {
    let api = node().await;
    let event = api.create_event(&[("GA", 1_000)], 600).await;
    let set = put_queue(
        &api,
        &event,
        &api.admin,
        settings(in_seconds(3600), 1_000_000, 2_000.0, 600),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);

    // The lobby: 2,000 fans, 50 at once, before the opening.
    let lobby = fans(&api, 2_000);
    for place in join_in_waves(&api, &event, &lobby).await {
        assert_eq!(place["state"], "lobby", "{place}");
        assert!(place["position"].is_null(), "{place}");
    }
    // Opening now: the next tick draws.
    let opened = put_queue(
        &api,
        &event,
        &api.admin,
        settings(in_seconds(-1), 1_000_000, 2_000.0, 600),
    )
    .await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.body);
    let drawn = wait_for(&api, &event, 10, |q| q["open"] == true).await;
    assert_eq!(drawn["lobbySize"], 2_000, "{drawn}");

    // 300 later fans: 50 one after another, then 250 in waves of 50 at once.
    let later = fans(&api, 300);
    let mut later_places = Vec::new();
    for fan in &later[..50] {
        let answer = join(&api, &event, fan).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        later_places.push(position(&answer.body));
    }
    assert_eq!(later_places, (2_001..=2_050).collect::<Vec<i64>>());
    for (n, wave) in later[50..].chunks(50).enumerate() {
        let mut positions: Vec<i64> = join_in_waves(&api, &event, wave)
            .await
            .iter()
            .map(position)
            .collect();
        positions.sort();
        let first = 2_051 + 50 * n as i64;
        assert_eq!(positions, (first..first + 50).collect::<Vec<i64>>());
    }

    // Every place admitted in the end.
    wait_for(&api, &event, 30, |q| q["serving"] == 2_300).await;

    // The draw: a permutation of 1..2000 that is not the joining order.
    let mut by_join_order = Vec::new();
    for fan in &lobby {
        // Joining again answers the same place.
        let again = join(&api, &event, fan).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        assert_eq!(again.body["userId"], fan.id.as_str());
        by_join_order.push(position(&again.body));
    }
    let mut drawn_positions = by_join_order.clone();
    drawn_positions.sort();
    assert_eq!(drawn_positions, (1..=2_000).collect::<Vec<i64>>());
    assert_ne!(
        by_join_order, drawn_positions,
        "the draw kept the join order"
    );

    // Admissions: contiguous from 1, disjoint, in position order and in time order.
    let admissions: Vec<(i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT first_position, last_position, admitted_at FROM queue_admissions
         WHERE event_id = $1 ORDER BY first_position",
    )
    .bind(event.parse::<i64>().unwrap())
    .fetch_all(&api.node.db)
    .await
    .unwrap();
    assert!(admissions.len() > 1, "one admission for the whole queue");
    let mut next = 1;
    let mut at = DateTime::<Utc>::MIN_UTC;
    for (first, last, admitted_at) in &admissions {
        assert_eq!(*first, next, "admissions not contiguous: {admissions:?}");
        assert!(last >= first);
        assert!(*admitted_at >= at, "a later position admitted earlier");
        next = last + 1;
        at = *admitted_at;
    }
    assert_eq!(next, 2_301);
    // Every member has one position, and no two share one.
    let (members, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT position) FROM queue_members WHERE event_id = $1",
    )
    .bind(event.parse::<i64>().unwrap())
    .fetch_one(&api.node.db)
    .await
    .unwrap();
    assert_eq!((members, distinct), (2_300, 2_300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_loop_holds_the_target_and_lapsed_passes_free_the_queue() {
    let api = node().await;
    let event = api.create_event(&[("GA", 1_000)], 600).await;
    let fans = fans(&api, 12);
    let created = put_queue(
        &api,
        &event,
        &api.admin,
        settings(in_seconds(3600), 5, 1_000.0, 10),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    join_in_waves(&api, &event, &fans).await;
    let opened = put_queue(
        &api,
        &event,
        &api.admin,
        settings(in_seconds(-1), 5, 1_000.0, 10),
    )
    .await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.body);
    wait_for(&api, &event, 10, |q| q["serving"] == 5).await;
    // Nobody uses a pass: five are active, so the counter stands for the window (10 s).
    for _ in 0..20 {
        let now = figures(&api, &event).await.body;
        assert_eq!(now["serving"], 5, "advanced past the target: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, metrics) = api.ops("/metrics").await;
    let gauge = |name: &str| format!("ticketing_{name}{{event=\"{event}\"}} 5");
    for name in ["queue_serving", "queue_active", "queue_target"] {
        assert!(
            metrics.contains(&gauge(name)),
            "no {name} of 5 in\n{metrics}"
        );
    }
    // Admitted and waiting places as their users see them.
    let mut admitted = 0;
    for fan in &fans {
        let place = join(&api, &event, fan).await.body;
        match position(&place) {
            p if p <= 5 => {
                assert_eq!(place["state"], "admitted", "{place}");
                assert!(place["passExpiresAt"].is_string(), "{place}");
                admitted += 1;
            }
            p => {
                assert_eq!(place["state"], "waiting", "{place}");
                assert_eq!(place["aheadOfYou"], p - 6, "{place}");
                assert!(place["estimatedWait"].is_object(), "{place}");
            }
        }
    }
    assert_eq!(admitted, 5);

    // A pass used for an order is done: one more place is admitted.
    let holder_of = |position: i64| {
        let fans = &fans;
        let api = &api;
        let event = event.clone();
        async move {
            for fan in fans {
                if self::position(&join(api, &event, fan).await.body) == position {
                    return fan.id.parse::<i64>().unwrap();
                }
            }
            panic!("nobody at position {position}");
        }
    };
    let event_id: i64 = event.parse().unwrap();
    book_with_pass(&api, event_id, holder_of(1).await, 1, "confirmed").await;
    wait_for(&api, &event, 5, |q| q["serving"] == 6).await;
    // A live hold made with a pass is not done: nothing more is admitted for it.
    book_with_pass(&api, event_id, holder_of(2).await, 2, "held").await;
    for _ in 0..10 {
        let now = figures(&api, &event).await.body;
        assert_eq!(now["serving"], 6, "a live hold was taken for done: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first windows lapse: those unused places count as done, the hold still counts, so
    // with position 6 active three more are admitted; then the rest as windows lapse.
    wait_for(&api, &event, 20, |q| q["serving"] == 9).await;
    let all = wait_for(&api, &event, 30, |q| q["serving"] == 12).await;
    assert_eq!(all["lastPosition"], 12);
}

/// An order made with the pass of `position` (as reserve with a pass will make it), written
/// straight to the database: `status` `confirmed` (the pass is used) or `held` for a minute.
async fn book_with_pass(api: &Api, event_id: i64, user_id: i64, position: i64, status: &str) {
    let booking = api.node.node.ids.next().unwrap().as_i64();
    sqlx::query(
        "INSERT INTO bookings (id, event_id, user_id, status, quantity, lines, ticket_ids,
                               total_cents, expires_at, confirmed_at, queue_position)
         VALUES ($1, $2, $3, $4, 1, '[]', ARRAY[$1], 1000, now() + interval '1 minute',
                 CASE WHEN $4 = 'confirmed' THEN now() END, $5)",
    )
    .bind(booking)
    .bind(event_id)
    .bind(user_id)
    .bind(status)
    .bind(position)
    .execute(&api.node.db)
    .await
    .expect("a booking with a pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_joins_and_their_refusals() {
    let api = node().await;
    let event = api.create_event(&[("GA", 1_000)], 600).await;
    let fan = fans(&api, 1).pop().unwrap();

    // No queue yet: the event is there, its queue is not.
    let answer = figures(&api, &event).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "queue_not_found")
    );
    let answer = join(&api, &event, &fan).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "queue_not_found")
    );

    // An event that does not exist.
    let unknown = api.node.node.ids.next().unwrap().to_string();
    let answer = figures(&api, &unknown).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let answer = join(&api, &unknown, &fan).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let answer = put_queue(
        &api,
        &unknown,
        &api.admin,
        settings(in_seconds(60), 5, 5.0, 60),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );

    // Only an admin sets a queue.
    let answer = put_queue(
        &api,
        &event,
        &fan.token,
        settings(in_seconds(60), 5, 5.0, 60),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let answer = figures(&api, &event).await;
    assert_eq!(
        answer.code(),
        "queue_not_found",
        "a refused PUT made a queue"
    );

    let opens_at = in_seconds(3600);
    let created = put_queue(&api, &event, &api.admin, settings(opens_at, 5, 5.0, 60)).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let token = created.body["consistencyToken"].as_str().expect("a token");
    assert_eq!(created.headers["x-consistency-token"], token);
    assert_eq!(created.body["targetActive"], 5);
    assert_eq!(created.body["open"], false);
    let read = api
        .get_after(&format!("/events/{event}/queue"), token)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["targetActive"], 5);

    // Bad settings: 400, and nothing changed.
    let mut unknown_field = settings(opens_at, 5, 5.0, 60);
    unknown_field["serving"] = json!(100);
    let mut no_opening = settings(opens_at, 5, 5.0, 60);
    no_opening.as_object_mut().unwrap().remove("opensAt");
    let mut closes_first = settings(opens_at, 5, 5.0, 60);
    closes_first["closesAt"] = json!(opens_at - chrono::Duration::seconds(1));
    for bad in [
        settings(opens_at, 0, 5.0, 60),
        settings(opens_at, 1_000_001, 5.0, 60),
        settings(opens_at, 5, 0.0, 60),
        settings(opens_at, 5, -1.0, 60),
        settings(opens_at, 5, 100_001.0, 60),
        settings(opens_at, 5, 5.0, 9),
        settings(opens_at, 5, 5.0, 86_401),
        json!({"opensAt": "tomorrow", "targetActive": 5, "maxAdmitPerSecond": 5, "passSeconds": 60}),
        json!({"opensAt": "-0100-01-01T00:00:00Z", "targetActive": 5,
               "maxAdmitPerSecond": 5, "passSeconds": 60}),
        json!([]),
        unknown_field,
        no_opening,
        closes_first,
    ] {
        let answer = put_queue(&api, &event, &api.admin, bad.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            answer.body
        );
    }
    let unchanged = figures(&api, &event).await.body;
    assert_eq!(unchanged["targetActive"], 5);
    assert_eq!(unchanged["maxAdmitPerSecond"], 5.0);
    assert_eq!(unchanged["passSeconds"], 60);

    // Joining again, in the lobby, answers the same place.
    let first = join(&api, &event, &fan).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["state"], "lobby");
    assert!(first.headers.contains_key("x-consistency-token"));
    let again = join(&api, &event, &fan).await;
    assert_eq!(again.body["state"], "lobby");
    assert_eq!(again.body["userId"], first.body["userId"]);

    // Opened: the place is drawn, and opensAt is fixed from then on.
    let opens_at = in_seconds(-1);
    let opened = put_queue(&api, &event, &api.admin, settings(opens_at, 5, 5.0, 60)).await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.body);
    wait_for(&api, &event, 10, |q| q["open"] == true).await;
    let drawn = join(&api, &event, &fan).await;
    assert_eq!(drawn.body["position"], 1, "{}", drawn.body);
    let moved = put_queue(
        &api,
        &event,
        &api.admin,
        settings(in_seconds(60), 5, 5.0, 60),
    )
    .await;
    assert_eq!(
        (moved.status, moved.code()),
        (StatusCode::CONFLICT, "queue_already_open"),
        "{}",
        moved.body
    );
    let retuned = put_queue(&api, &event, &api.admin, settings(opens_at, 7, 5.0, 60)).await;
    assert_eq!(retuned.status, StatusCode::OK, "{}", retuned.body);
    assert_eq!(retuned.body["targetActive"], 7);

    // Closed: no more joins; a member still sees their place.
    let mut closed = settings(opens_at, 7, 5.0, 60);
    closed["closesAt"] = json!(Utc::now().max(opens_at + chrono::Duration::milliseconds(500)));
    let answer = put_queue(&api, &event, &api.admin, closed).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let late = fans(&api, 1).pop().unwrap();
    let answer = join(&api, &event, &late).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::CONFLICT, "queue_closed")
    );
    assert_eq!(figures(&api, &event).await.body["closed"], true);

    // Every node shows the queue's figures.
    let (_, metrics) = api.ops("/metrics").await;
    for name in [
        "queue_serving",
        "queue_last_position",
        "queue_lobby_size",
        "queue_admit_rate",
    ] {
        assert!(
            metrics.contains(&format!("ticketing_{name}{{event=\"{event}\"}}")),
            "no {name} in\n{metrics}"
        );
    }
    assert!(
        metrics.contains("ticketing_queue_joins_total 1"),
        "{metrics}"
    );
}
