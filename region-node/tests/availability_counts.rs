//! Availability in O(tiers): the per-tier counts the writes keep equal a full count after
//! reserve, confirm, failed payment, cancel, expiry, the sweeper and ticket creation run in a
//! random interleaving; and the availability of a 1,000,000-ticket event reads no ticket rows.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Api, User};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::json;

const TIERS: [&str; 3] = ["VIP", "Front Row", "GA"];

/// One buyer's random journeys until `until`: reserve 1-3 tiers, then pay, fail to pay, cancel
/// or walk away (the one-second hold lapses, is claimed again or swept).
async fn buyer(api: Arc<Api>, user: User, event: String, seed: u64, until: Instant) -> usize {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut journeys = 0;
    while Instant::now() < until {
        let mut wanted: Vec<(&str, i64)> = Vec::new();
        for tier in TIERS {
            if rng.gen_bool(0.5) {
                wanted.push((tier, rng.gen_range(1..=3)));
            }
        }
        if wanted.is_empty() {
            wanted.push(("GA", 1));
        }
        let held = api.reserve(&user, &event, &wanted).await;
        journeys += 1;
        match (held.status, held.code()) {
            (StatusCode::CREATED, _) => {}
            (StatusCode::CONFLICT, "sold_out") => continue,
            (status, _) => panic!("reserve answered {status}: {}", held.body),
        }
        let booking = held.body["bookingId"].as_str().unwrap().to_owned();
        let answer = match rng.gen_range(0..4) {
            0 => api.confirm(&user, &booking, "success").await,
            1 => api.confirm(&user, &booking, "fail").await,
            2 => api.cancel(&user, &booking).await,
            _ => continue,
        };
        // A confirm or cancel may meet its own hold lapsed: that is an answer, not an error.
        assert!(
            answer.status == StatusCode::OK
                || (answer.status == StatusCode::CONFLICT
                    && ["hold_expired", "not_held"].contains(&answer.code())),
            "{}",
            answer.body
        );
    }
    journeys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_counts_equal_a_full_count_after_a_random_interleaving() {
    let api = Arc::new(
        Api::start_with(|config| {
            config.booking.sweep_interval_ms = 150;
            config.booking.payment_delay_ms = 5;
        })
        .await,
    );
    // Every buyer buys again and again: the per-user cap is not what is under test.
    let event = api
        .create_event_with(
            &[("VIP", 10_000), ("Front Row", 5_000), ("GA", 1_000)],
            1,
            json!({ "maxTicketsPerUser": 1_000 }),
        )
        .await;
    api.create_tickets(&event, json!({"VIP": 20, "Front Row": 40, "GA": 120}))
        .await;
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("interleaving seed {seed}");
    let until = Instant::now() + Duration::from_secs(4);
    let mut buyers = Vec::new();
    for i in 0..16 {
        let user = api.signup(&format!("buyer {i}")).await;
        buyers.push(tokio::spawn(buyer(
            api.clone(),
            user,
            event.clone(),
            seed.wrapping_add(i),
            until,
        )));
    }
    // Ticket creation in the middle of it all.
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.create_tickets(&event, json!({"GA": 30})).await;
    let mut journeys = 0;
    for b in buyers {
        journeys += b.await.expect("buyer task");
    }
    assert!(journeys > 50, "only {journeys} journeys ran");

    // Every hold has lapsed and the sweeper has tidied them: the API's availability, the kept
    // counts and a full count must all agree.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let report = api.audit(&event).await;
    assert!(report.is_clean(), "seed {seed}: {:?}", report.violations);
    for t in &report.tiers {
        assert_eq!(
            api.available(&event, &t.tier).await,
            t.available + t.held,
            "seed {seed}: tier {} (held ones have lapsed)",
            t.tier
        );
    }
}

#[tokio::test]
async fn a_million_ticket_event_s_availability_reads_no_ticket_rows() {
    // Making a million tickets takes a while in a debug build on two busy cores.
    let api = Api::start_with(|config| config.http.request_timeout_ms = 120_000).await;
    let event = api.create_event(&[("GA", 1_000)], 600).await;
    let started = Instant::now();
    api.create_tickets(&event, json!({"GA": 1_000_000})).await;
    eprintln!("1,000,000 tickets made in {:?}", started.elapsed());
    let user = api.signup("one buyer").await;
    let held = api.reserve(&user, &event, &[("GA", 2)]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    assert_eq!(api.available(&event, "GA").await, 999_998);
    sqlx::query("ANALYZE tickets")
        .execute(&api.node.db)
        .await
        .unwrap();
    let plan: Vec<(String,)> = sqlx::query_as(&format!(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}",
        region_node::catalog::store::AVAILABILITY
    ))
    .bind(vec![event.parse::<i64>().unwrap()])
    .fetch_all(&api.node.db)
    .await
    .unwrap();
    let plan: String = plan.into_iter().map(|(l,)| l + "\n").collect();
    assert!(!plan.contains("Seq Scan on tickets"), "{plan}");
    assert!(!plan.contains("Bitmap Heap Scan on tickets"), "{plan}");
    // A million tickets fill thousands of pages; the read touches a handful. (The top node's
    // buffers count the whole execution; planning's own come later.)
    let buffers: u64 = plan
        .lines()
        .find_map(|l| l.trim().strip_prefix("Buffers: shared hit="))
        .map(|n| n.split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .expect("the plan reports buffers");
    assert!(buffers < 100, "{buffers} buffers read:\n{plan}");
}
