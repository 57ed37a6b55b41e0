//! Rate limits at the node: booking writes per user and reserves per event each trip with a
//! JSON `429` (with `Retry-After` and the `RateLimit` fields) that changes nothing, leave other
//! users, events and reads alone, and refill after their window. One a second, so the waits
//! stay near a second.

mod common;

use std::time::Duration;

use common::{Answer, Api};
use reqwest::StatusCode;
use wire::limits::Rate;

fn assert_limited(answer: &Answer, policy: &str) {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    assert_eq!(answer.code(), "rate_limited");
    assert_eq!(answer.body["error"]["policy"], policy);
    let header = |name: &str| answer.headers[name].to_str().unwrap().to_owned();
    let retry_after: u64 = header("retry-after").parse().unwrap();
    assert_eq!(answer.body["error"]["retryAfterSeconds"], retry_after);
    assert!(
        header("ratelimit-policy").starts_with(&format!("\"{policy}\";q=")),
        "{}",
        header("ratelimit-policy")
    );
    assert_eq!(
        header("ratelimit"),
        format!("\"{policy}\";r=0;t={retry_after}")
    );
}

fn booking_id(answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.body["bookingId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_users_booking_writes_are_limited_per_user_and_refill() {
    let api = Api::start_with(|c| c.limits.user_writes = Rate::new(1.0, 3)).await;
    let event = api.seeded_event(0, 0, 100, 600).await;
    let ann = api.signup("ann").await;
    let bob = api.signup("bob").await;

    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(booking_id(&api.reserve(&ann, &event, &[("GA", 1)]).await));
    }
    let refused = api.reserve(&ann, &event, &[("GA", 1)]).await;
    assert_limited(&refused, "user_writes");
    assert_eq!(
        refused.body["error"]["message"],
        "too many requests: the user_writes limit allows 3 per 3 s; retry in 1 s"
    );
    // Confirm and cancel spend the same budget; a refused one changes nothing.
    assert_limited(&api.confirm(&ann, &held[0], "success").await, "user_writes");
    assert_limited(&api.cancel(&ann, &held[1]).await, "user_writes");
    assert_eq!(api.available(&event, "GA").await, 97);
    let booking = api
        .get(&format!("/booking/{}", held[0]), Some(&ann.token))
        .await;
    assert_eq!(booking.status, StatusCode::OK, "reads are not limited");
    assert_eq!(booking.body["status"], "held");
    // Identity comes first: no token is a 401, not a 429.
    let anonymous = api
        .post(
            "/booking/reserve",
            None,
            serde_json::json!({"eventId": event, "tickets": [{"tier": "GA", "quantity": 1}]}),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    // Another user has a budget of their own.
    booking_id(&api.reserve(&bob, &event, &[("GA", 1)]).await);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let confirmed = api.confirm(&ann, &held[0], "success").await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    assert_eq!(confirmed.body["status"], "confirmed");
    assert_limited(&api.cancel(&ann, &held[1]).await, "user_writes");
    assert_eq!(api.available(&event, "GA").await, 96);
    assert!(api.audit(&event).await.is_clean());
}

#[tokio::test]
async fn reserves_are_limited_per_event_and_refill() {
    let api = Api::start_with(|c| c.limits.event_reserves = Rate::new(1.0, 4)).await;
    let hot = api.seeded_event(0, 0, 100, 600).await;
    let other = api.seeded_event(0, 0, 100, 600).await;
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(api.signup(&format!("fan {i}")).await);
    }

    let mut held = Vec::new();
    for user in &users[..4] {
        held.push(booking_id(&api.reserve(user, &hot, &[("GA", 1)]).await));
    }
    // A fifth buyer of the same event is refused, whoever they are, and holds nothing.
    let refused = api.reserve(&users[4], &hot, &[("GA", 1)]).await;
    assert_limited(&refused, "event_reserves");
    assert_eq!(api.available(&hot, "GA").await, 96);
    // Other events, and the event's other writes, are not held back.
    booking_id(&api.reserve(&users[4], &other, &[("GA", 1)]).await);
    let confirmed = api.confirm(&users[0], &held[0], "success").await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    booking_id(&api.reserve(&users[5], &hot, &[("GA", 1)]).await);
    assert_limited(
        &api.reserve(&users[5], &hot, &[("GA", 1)]).await,
        "event_reserves",
    );
    assert_eq!(api.available(&hot, "GA").await, 95);
    assert!(api.audit(&hot).await.is_clean());
}
