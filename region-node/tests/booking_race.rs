//! 1,000 buyers, 100 tickets, all at once: exactly 100 holds and a clean audit. The negative
//! control runs the same race with row locking switched off and must see the oversell, which
//! proves the race test can fail.

mod common;

use std::sync::Arc;

use common::{Api, User};
use futures::{stream, StreamExt};
use reqwest::StatusCode;

const BUYERS: usize = 1_000;
const TICKETS: i64 = 100;

struct RaceOutcome {
    held: usize,
    sold_out: usize,
    other: Vec<String>,
    audit: testkit::audit::AuditReport,
}

impl RaceOutcome {
    /// What the platform promises; `Err` lists every broken promise.
    fn check(&self) -> Result<(), String> {
        let mut broken = Vec::new();
        if self.held != TICKETS as usize {
            broken.push(format!("{} holds for {TICKETS} tickets", self.held));
        }
        if self.sold_out != BUYERS - TICKETS as usize {
            broken.push(format!("{} sold_out answers", self.sold_out));
        }
        if !self.other.is_empty() {
            broken.push(format!("unexpected answers: {:?}", self.other));
        }
        if !self.audit.is_clean() {
            broken.push(format!(
                "audit: {} violations, e.g. {:?}",
                self.audit.violations.len(),
                self.audit.violations.iter().take(3).collect::<Vec<_>>()
            ));
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(broken.join("; "))
        }
    }
}

async fn race(api: Api) -> RaceOutcome {
    let api = Arc::new(api);
    let event = api.seeded_event(TICKETS, 0, 0, 600).await;
    let users: Vec<User> = stream::iter(0..BUYERS)
        .map(|i| {
            let api = api.clone();
            async move { api.signup(&format!("buyer {i}")).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;

    let start = Arc::new(tokio::sync::Barrier::new(BUYERS));
    let requests = users.into_iter().map(|user| {
        let (api, event, start) = (api.clone(), event.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            api.reserve(&user, &event, &[("VIP", 1)]).await
        })
    });
    let answers = futures::future::join_all(requests).await;

    let mut outcome = RaceOutcome {
        held: 0,
        sold_out: 0,
        other: Vec::new(),
        audit: api.audit(&event).await,
    };
    for answer in answers {
        let answer = answer.expect("request task");
        match (answer.status, answer.code()) {
            (StatusCode::CREATED, _) => outcome.held += 1,
            (StatusCode::CONFLICT, "sold_out") => outcome.sold_out += 1,
            (status, _) => outcome.other.push(format!("{status} {}", answer.body)),
        }
    }
    outcome
}

/// Generous pool waits: 1,000 requests queue for 16 connections on two cores.
fn patient(config: &mut region_node::Config) {
    config.database.acquire_timeout_ms = 60_000;
    config.http.request_timeout_ms = 120_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_buyers_for_hundred_tickets_get_exactly_hundred_holds() {
    let outcome = race(Api::start_with(patient).await).await;
    outcome.check().unwrap();
    let vip = &outcome
        .audit
        .tiers
        .iter()
        .find(|t| t.tier == "VIP")
        .unwrap();
    assert_eq!((vip.held, vip.available, vip.sold), (TICKETS, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_without_row_locks_the_race_test_sees_the_oversell() {
    let outcome = race(Api::start_without_row_locks(patient).await).await;
    let verdict = outcome.check();
    assert!(
        verdict.is_err(),
        "with locking off the race test must fail, but it passed"
    );
    eprintln!("negative control caught: {}", verdict.unwrap_err());
}
