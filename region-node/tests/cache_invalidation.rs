//! Every write that changes a cached view drops it: with a cache TTL far longer than the test,
//! the event page and its availability read right after each write (event creation, ticket
//! creation, reserve, cancel, failed and successful payment, the sweeper's expiry) show that
//! write, and are read again from the database (`X-Cache: miss`). The event list is dropped by
//! changes to the listing (event and ticket creation); after a booking, a list read carrying
//! the booking's consistency token shows it.

mod common;

use std::time::Duration;

use common::{Answer, Api};
use reqwest::StatusCode;
use serde_json::Value;

/// What the three cached views of one event say: (event page, availability, event list), each
/// as tier -> available, plus whether every one of them was a cache hit.
struct Views {
    page: Vec<(String, i64)>,
    availability: Vec<(String, i64)>,
    listed: Option<Vec<(String, i64)>>,
    all_hits: bool,
    page_hit: bool,
    availability_hit: bool,
    list_hit: bool,
}

fn tiers(value: &Value) -> Vec<(String, i64)> {
    value["tiers"]
        .as_array()
        .map(|tiers| {
            tiers
                .iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap().to_owned(),
                        t["available"].as_i64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn cache_hit(answer: &Answer) -> bool {
    answer.headers.get("x-cache").is_some_and(|v| v == "hit")
}

/// What a write does to the cached event list.
enum List {
    /// The write drops it: the next plain read is fresh.
    Dropped,
    /// It ages out within the TTL; a read with the write's consistency token is fresh.
    After(String),
    /// It ages out within the TTL, and the reader holds no token (the sweeper's writes).
    AgesOut,
}

/// The three views; the list is read with `token` when given.
async fn views(api: &Api, event: &str, token: Option<&str>) -> Views {
    let page = api.get(&format!("/events/{event}"), None).await;
    let availability = api.get(&format!("/tickets?eventId={event}"), None).await;
    let list = match token {
        Some(token) => api.get_after("/events?limit=500", token).await,
        None => api.get("/events?limit=500", None).await,
    };
    for answer in [&page, &availability, &list] {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    let listed = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == event)
        .map(tiers);
    let hits = [&page, &availability, &list].map(cache_hit);
    Views {
        page: tiers(&page.body),
        availability: tiers(&availability.body),
        listed,
        all_hits: hits.iter().all(|h| *h),
        page_hit: hits[0],
        availability_hit: hits[1],
        list_hit: hits[2],
    }
}

/// Reads the views twice (the second read must come from the cache, so the cache is really in
/// play), then runs `write`, then checks the next read is fresh: a miss showing `expected`.
async fn assert_fresh_after<F, Fut>(
    api: &Api,
    event: &str,
    what: &str,
    write: F,
    expected: &[(&str, i64)],
) where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = List>,
{
    views(api, event, None).await;
    let cached = views(api, event, None).await;
    assert!(
        cached.all_hits,
        "{what}: the views were not cached before the write"
    );
    let list = write().await;
    let token = match &list {
        List::After(token) => Some(token.as_str()),
        List::Dropped | List::AgesOut => None,
    };
    let after = views(api, event, token).await;
    let expected: Vec<(String, i64)> = expected.iter().map(|(t, n)| (t.to_string(), *n)).collect();
    assert!(
        !after.page_hit && !after.availability_hit,
        "{what}: the event page or availability was answered from the cache after the write"
    );
    assert_eq!(after.page, expected, "{what}: event page");
    assert_eq!(after.availability, expected, "{what}: availability");
    match list {
        List::Dropped | List::After(_) => {
            assert!(
                !after.list_hit,
                "{what}: the event list was answered from the cache"
            );
            assert_eq!(after.listed.as_ref(), Some(&expected), "{what}: event list");
        }
        // No token to read after: the old figures may be served until the TTL.
        List::AgesOut => {}
    }
}

/// The consistency token of a write's answer.
fn token_of(answer: &Answer) -> String {
    answer.headers["x-consistency-token"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_write_s_views_are_fresh_on_the_next_read() {
    let api = Api::start_with(|config| {
        config.reads.cache_ttl_ms = 600_000;
        config.booking.sweep_interval_ms = 100;
    })
    .await;
    let user = api.signup("fresh reader").await;

    // Event creation: the list (cached before) shows the new event at once.
    let warm = api.get("/events?limit=500", None).await;
    assert_eq!(warm.status, StatusCode::OK);
    assert!(cache_hit(&api.get("/events?limit=500", None).await));
    let event = api.create_event(&[("VIP", 10_000), ("GA", 1_000)], 1).await;
    let list = api.get("/events?limit=500", None).await;
    assert!(
        !cache_hit(&list),
        "the event list was answered from the cache"
    );
    assert!(
        list.body
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == event),
        "a new event is missing from the list: {}",
        list.body
    );

    let tickets = api.create_tickets(&event, serde_json::json!({"VIP": 4, "GA": 10}));
    assert_fresh_after(
        &api,
        &event,
        "ticket creation",
        || async {
            tickets.await;
            List::Dropped
        },
        &[("VIP", 4), ("GA", 10)],
    )
    .await;

    let mut booking = String::new();
    assert_fresh_after(
        &api,
        &event,
        "reserve",
        || async {
            let held = api.reserve(&user, &event, &[("VIP", 2), ("GA", 1)]).await;
            assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
            booking = held.body["bookingId"].as_str().unwrap().to_owned();
            List::After(token_of(&held))
        },
        &[("VIP", 2), ("GA", 9)],
    )
    .await;

    assert_fresh_after(
        &api,
        &event,
        "cancel",
        || async {
            let cancelled = api.cancel(&user, &booking).await;
            assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
            List::After(token_of(&cancelled))
        },
        &[("VIP", 4), ("GA", 10)],
    )
    .await;

    let held = api.reserve(&user, &event, &[("GA", 3)]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    let booking = held.body["bookingId"].as_str().unwrap().to_owned();
    assert_fresh_after(
        &api,
        &event,
        "failed payment",
        || async {
            let failed = api.confirm(&user, &booking, "fail").await;
            assert_eq!(failed.body["status"], "payment_failed", "{}", failed.body);
            List::After(token_of(&failed))
        },
        &[("VIP", 4), ("GA", 10)],
    )
    .await;

    let held = api.reserve(&user, &event, &[("VIP", 1)]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    let booking = held.body["bookingId"].as_str().unwrap().to_owned();
    assert_fresh_after(
        &api,
        &event,
        "successful payment",
        || async {
            let sold = api.confirm(&user, &booking, "success").await;
            assert_eq!(sold.body["status"], "confirmed", "{}", sold.body);
            List::After(token_of(&sold))
        },
        &[("VIP", 3), ("GA", 10)],
    )
    .await;

    // The sweeper's expiry: a one-second hold, cached while live, is available again once the
    // sweeper has ended it (a lapsed hold is available by itself; the cached view is not).
    let held = api.reserve(&user, &event, &[("GA", 2)]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    assert_fresh_after(
        &api,
        &event,
        "expiry",
        || async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let (expired,): (i64,) =
                    sqlx::query_as("SELECT count(*) FROM bookings WHERE status = 'expired'")
                        .fetch_one(&api.node.db)
                        .await
                        .unwrap();
                if expired == 1 {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the sweeper did not run"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            List::AgesOut
        },
        &[("VIP", 3), ("GA", 10)],
    )
    .await;
}
