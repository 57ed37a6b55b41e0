//! /healthz, /readyz, /metrics and /cluster (the last two only on the operations listener), the
//! OpenAPI document, and the headers every answer carries.

mod common;

use common::Api;
use reqwest::StatusCode;

#[tokio::test]
async fn health_readiness_and_metrics_report_the_node() {
    let api = Api::start().await;
    let event = api.seeded_event(5, 0, 0, 600).await;
    let user = api.signup("metered").await;
    let held = api.reserve(&user, &event, &[("VIP", 2)]).await;
    api.confirm(&user, held.body["bookingId"].as_str().unwrap(), "success")
        .await;
    // Three left: sold out, within the per-user cap.
    api.reserve(&user, &event, &[("VIP", 4)]).await;

    let base = &api.node.base_url;
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.headers()["x-served-by"], "us-east/node-1");
    let ready: serde_json::Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["primary"], true);

    let (status, metrics) = api.ops("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        r#"ticketing_http_requests_total{method="POST",route="/api/v1/booking/reserve",status="201"} 1"#,
        r#"ticketing_http_requests_total{method="POST",route="/api/v1/booking/reserve",status="409"} 1"#,
        r#"ticketing_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/api/v1/booking/confirm"} 1"#,
        "ticketing_tickets_held_total 2",
        "ticketing_tickets_sold_total 2",
        r#"ticketing_booking_outcomes_total{outcome="sold_out"} 1"#,
        r#"ticketing_db_pool_connections{state="idle"}"#,
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn metrics_and_the_cluster_view_are_only_on_the_operations_listener() {
    let api = Api::start().await;
    for path in ["/metrics", "/cluster", "/api/v1/cluster"] {
        let answer = reqwest::get(format!("{}{path}", api.node.base_url))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let (status, health) = api.ops("/healthz").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert!(api.cluster().await["shards"].is_array());
    let (status, nothing) = api.ops("/api/v1/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{nothing}");
}

#[tokio::test]
async fn request_ids_are_kept_when_plain_and_replaced_otherwise() {
    let api = Api::start().await;
    let http = reqwest::Client::new();
    let kept = http
        .get(api.node.api("/events"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "abc-123");
    let made = http.get(api.node.api("/events")).send().await.unwrap();
    assert!(made.headers().contains_key("x-request-id"));
    let long = "a".repeat(65);
    for bad in ["<script>alert(1)</script>", "has space", long.as_str()] {
        let answer = http
            .get(api.node.api("/events"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = answer.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert!(wire::trace::is_valid_request_id(id.as_bytes()), "{id}");
    }
}

#[tokio::test]
async fn a_request_that_outlives_the_timeout_gets_a_json_504_and_no_sale() {
    let api = Api::start_with(|c| {
        c.http.request_timeout_ms = 300;
        c.booking.payment_delay_ms = 2_000;
    })
    .await;
    let event = api.seeded_event(3, 0, 0, 600).await;
    let user = api.signup("slow payer").await;
    let held = api.reserve(&user, &event, &[("VIP", 1)]).await;
    let booking = held.body["bookingId"].as_str().unwrap();

    let answer = api.confirm(&user, booking, "success").await;
    assert_eq!(
        answer.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        answer.body
    );
    assert_eq!(answer.code(), "timeout");
    // The payment was cut off before the sale: the hold stands and nothing is sold.
    let sold: (i64,) = sqlx::query_as("SELECT count(*) FROM tickets WHERE status = 'sold'")
        .fetch_one(&api.node.db)
        .await
        .unwrap();
    assert_eq!(sold.0, 0);
    let mine = api
        .get(&format!("/booking/{booking}"), Some(&user.token))
        .await;
    assert_eq!(mine.body["status"], "held");
}

#[tokio::test]
async fn the_node_serves_its_openapi_document_with_its_regions() {
    let api = Api::start().await;
    let answer = api.get("/openapi.json", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(answer.body["openapi"], "3.1.0");
    let documented = answer.body["paths"].as_object().unwrap();
    for (method, path) in region_node::http::ROUTES {
        assert!(
            documented.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is not in the served document"
        );
    }
    let regions: Vec<&str> = api
        .node
        .node
        .config
        .regions
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        answer.body["components"]["schemas"]["NewEvent"]["properties"]["homeRegion"]["enum"],
        serde_json::json!(regions)
    );
}
