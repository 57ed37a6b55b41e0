//! Group commit of a hot event's reserves: batches really form under concurrency, each request
//! in a batch is still all or nothing on its own, and arrival order decides who gets the last
//! ticket.

mod common;

use std::sync::Arc;

use common::Api;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mixed_requests_share_batches_and_stay_all_or_nothing() {
    let api = Arc::new(Api::start().await);
    // One VIP left, plenty of GA.
    let event = api.seeded_event(1, 0, 100, 600).await;
    let mut users = Vec::new();
    for i in 0..60 {
        users.push(api.signup(&format!("fan {i}")).await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(users.len()));
    let tasks = users.into_iter().enumerate().map(|(i, user)| {
        let (api, event, start) = (api.clone(), event.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            // Half want the last VIP with a GA; half only a GA.
            let wants: &[(&str, i64)] = if i % 2 == 0 {
                &[("VIP", 1), ("GA", 1)]
            } else {
                &[("GA", 1)]
            };
            (i % 2 == 0, api.reserve(&user, &event, wants).await)
        })
    });
    let mut vip_held = 0;
    let mut ga_only_held = 0;
    let mut refused = 0;
    for result in futures::future::join_all(tasks).await {
        let (wants_vip, answer) = result.unwrap();
        match (wants_vip, answer.status) {
            (true, StatusCode::CREATED) => vip_held += 1,
            (false, StatusCode::CREATED) => ga_only_held += 1,
            (true, StatusCode::CONFLICT) => {
                assert_eq!(answer.code(), "sold_out");
                refused += 1;
            }
            (wants, status) => panic!("wants VIP {wants}: unexpected {status} {}", answer.body),
        }
    }
    assert_eq!(vip_held, 1, "one request gets the last VIP");
    assert_eq!(refused, 29, "the others asking for it get nothing at all");
    assert_eq!(
        ga_only_held, 30,
        "GA-only requests are not failed by their batch-mates"
    );
    assert_eq!(api.available(&event, "GA").await, 100 - 30 - 1);
    assert_eq!(api.available(&event, "VIP").await, 0);
    let report = api.audit(&event).await;
    assert!(report.is_clean(), "{:?}", report.violations);

    let (reserves, batches) = api.batch_stats().await;
    assert_eq!(reserves, 60.0, "every reserve went through the batcher");
    assert!(
        batches < reserves,
        "concurrent reserves of one event shared transactions ({batches} batches for {reserves})"
    );
}
