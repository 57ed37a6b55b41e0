//! Two live nodes never share a (region, machine); a node that loses its lease stops minting.

mod common;

use std::time::Duration;

use common::node::TestNode;
use region_node::identity::lease::{LeaseError, MachineLease};

#[tokio::test]
async fn nodes_on_one_primary_lease_different_machine_numbers() {
    let first = TestNode::start().await.unwrap();
    let url = first.database_url.clone();
    let second = TestNode::start_with(|c| {
        c.database.url = url;
        c.database.migrate = true;
        c.node_name = "node-2".into();
    })
    .await
    .unwrap();
    let (a, b) = (
        first.node.ids.next().unwrap(),
        second.node.ids.next().unwrap(),
    );
    assert_ne!(a.machine(), b.machine());
    assert_eq!(a.region(), b.region());

    // A graceful stop gives the number back for the next node.
    let freed = first.node.ids.lease().machine();
    first.stop().await.unwrap();
    let third = TestNode::start_with(|c| c.database.url = second.database_url.clone())
        .await
        .unwrap();
    assert_eq!(third.node.ids.lease().machine(), freed);
}

#[tokio::test]
async fn all_thirty_two_numbers_taken_means_no_lease_and_a_stolen_lease_stops_minting() {
    let node = TestNode::start().await.unwrap();
    let pool = &node.db;
    let ttl = Duration::from_secs(30);
    let mut leases = Vec::new();
    for i in 0..31 {
        leases.push(
            MachineLease::acquire(pool, "us-east", &format!("holder-{i}"), ttl)
                .await
                .unwrap(),
        );
    }
    let full = MachineLease::acquire(pool, "us-east", "one-too-many", ttl).await;
    assert!(matches!(full, Err(LeaseError::Exhausted(_))));
    // Other regions' numbers are their own.
    assert!(MachineLease::acquire(pool, "eu-west", "elsewhere", ttl)
        .await
        .is_ok());

    // Another holder takes over a number (as after a lapse): the old holder's renewal fails
    // and it refuses to mint.
    let victim = &leases[0];
    sqlx::query(
        "UPDATE machine_leases SET holder = 'thief' WHERE region = 'us-east' AND machine = $1",
    )
    .bind(victim.machine() as i16)
    .execute(pool)
    .await
    .unwrap();
    assert!(victim.is_valid());
    assert!(!victim.renew(pool).await.unwrap());
    assert!(!victim.is_valid());

    // The node itself: a lost lease turns id minting (and so every write) into 503.
    sqlx::query(
        "UPDATE machine_leases SET holder = 'thief' WHERE region = 'us-east' AND machine = $1",
    )
    .bind(node.node.ids.lease().machine() as i16)
    .execute(pool)
    .await
    .unwrap();
    assert!(!node.node.ids.lease().renew(pool).await.unwrap());
    assert!(node.node.ids.next().is_err());
    let answer = reqwest::Client::new()
        .post(node.api("/users"))
        .json(&serde_json::json!({
            "name": "late",
            "email": node.email("late", 0),
            "password": common::PASSWORD,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers().contains_key("retry-after"));
    let ready = reqwest::get(format!("{}/readyz", node.base_url))
        .await
        .unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
}
