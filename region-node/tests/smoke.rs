//! The shortest whole journey: reserve, see availability drop, confirm, audit.

mod common;

use common::Api;
use reqwest::StatusCode;

#[tokio::test]
async fn reserve_then_confirm_sells_the_tickets() {
    let api = Api::start().await;
    let event = api.seeded_event(10, 10, 10, 600).await;
    let user = api.signup("ada").await;
    let held = api.reserve(&user, &event, &[("VIP", 2), ("GA", 1)]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    assert_eq!(held.body["status"], "held");
    assert_eq!(held.body["tickets"].as_array().unwrap().len(), 3);
    assert!(held.headers.contains_key("x-consistency-token"));
    let booking = held.body["bookingId"].as_str().unwrap();
    assert_eq!(api.available(&event, "VIP").await, 8);
    let sold = api.confirm(&user, booking, "success").await;
    assert_eq!(sold.status, StatusCode::OK, "{}", sold.body);
    assert_eq!(sold.body["status"], "confirmed");
    let report = api.audit(&event).await;
    assert!(report.is_clean(), "{:?}", report.violations);
}
