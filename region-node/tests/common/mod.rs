//! What the integration tests share: in-process nodes (`node`), a node with a local replica of
//! its shard (`replica`) and a small client for the node's API.
#![allow(dead_code)]

pub mod node;
pub mod replica;

use std::sync::atomic::{AtomicUsize, Ordering};

use node::TestNode;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

pub struct Api {
    pub node: TestNode,
    pub http: Client,
    pub admin: String,
}

/// The password every test account signs up with.
pub const PASSWORD: &str = "test-password";

/// A signed-up user, their credentials and tokens.
#[derive(Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub token: String,
    pub refresh_token: String,
}

impl User {
    /// The user of a sign-up, login or refresh answer.
    pub fn signed_in(body: &Value) -> User {
        let text = |v: &Value| v.as_str().expect("a string").to_owned();
        User {
            id: text(&body["user"]["id"]),
            email: body["user"]["email"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            token: text(&body["token"]),
            refresh_token: text(&body["refreshToken"]),
        }
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// The error code of a JSON error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

impl Api {
    pub async fn start() -> Api {
        Api::from(TestNode::start().await.expect("test node starts"))
    }

    pub async fn start_with(adjust: impl FnOnce(&mut region_node::Config)) -> Api {
        Api::from(
            TestNode::start_with(adjust)
                .await
                .expect("test node starts"),
        )
    }

    /// A node whose claims take no row locks: the race tests' negative control.
    pub async fn start_without_row_locks(adjust: impl FnOnce(&mut region_node::Config)) -> Api {
        Api::from(
            TestNode::start_without_row_locks(adjust)
                .await
                .expect("test node starts"),
        )
    }

    pub fn from(node: TestNode) -> Api {
        let admin = node.admin_token();
        Api {
            node,
            http: Client::builder()
                .pool_max_idle_per_host(1024)
                .build()
                .expect("http client"),
            admin,
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Answer {
        let mut request = self.http.request(method, self.node.api(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request reaches the node");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        // No body at all (a 204) is `null`; anything else must be JSON.
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{status} answer is not JSON ({e}): {text:?}"))
        };
        Answer {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(reqwest::Method::GET, path, token, None, None)
            .await
    }

    /// A read that must include a write: it carries the write's consistency token.
    pub async fn get_after(&self, path: &str, consistency_token: &str) -> Answer {
        self.get_after_as(path, None, consistency_token).await
    }

    /// `get_after`, as the caller `token` names.
    pub async fn get_after_as(
        &self,
        path: &str,
        token: Option<&str>,
        consistency_token: &str,
    ) -> Answer {
        let mut request = self
            .http
            .get(self.node.api(path))
            .header("x-consistency-token", consistency_token);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request reaches the node");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.expect("a JSON answer");
        Answer {
            status,
            body,
            headers,
        }
    }

    /// `GET path` on the operations listener (`/cluster`, `/metrics`), as text.
    pub async fn ops(&self, path: &str) -> (StatusCode, String) {
        let answer = self
            .http
            .get(format!("{}{path}", self.node.ops_url))
            .send()
            .await
            .expect("the operations listener answers");
        let status = answer.status();
        (status, answer.text().await.expect("a text body"))
    }

    /// `GET /cluster` on the operations listener.
    pub async fn cluster(&self) -> Value {
        let (status, text) = self.ops("/cluster").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        serde_json::from_str(&text).expect("cluster view is JSON")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.send(reqwest::Method::POST, path, token, Some(body), None)
            .await
    }

    /// A new account named `name`, with an email of this node's shard and `PASSWORD`.
    pub async fn signup(&self, name: &str) -> User {
        static SIGNUPS: AtomicUsize = AtomicUsize::new(0);
        let slug: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        let email = self
            .node
            .email(&slug, SIGNUPS.fetch_add(1, Ordering::Relaxed));
        let answer = self
            .post(
                "/users",
                None,
                json!({ "name": name, "email": email, "password": PASSWORD }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        User {
            email,
            ..User::signed_in(&answer.body)
        }
    }

    /// An event homed here with the given tiers (name, price in cents) and hold length.
    pub async fn create_event(&self, tiers: &[(&str, i64)], hold_seconds: i64) -> String {
        self.create_event_with(tiers, hold_seconds, json!({})).await
    }

    /// As [`Api::create_event`], with the fields of `extra` added to the body (for instance
    /// `{"maxTicketsPerUser": 6}`).
    pub async fn create_event_with(
        &self,
        tiers: &[(&str, i64)],
        hold_seconds: i64,
        extra: Value,
    ) -> String {
        let tiers: Vec<Value> = tiers
            .iter()
            .map(|(name, price)| json!({ "name": name, "priceCents": price }))
            .collect();
        let mut body = json!({
            "name": "Test Night",
            "description": "an event under test",
            "venue": "Test Arena",
            "startsAt": "2030-06-01T20:00:00Z",
            "homeRegion": "us-east",
            "tiers": tiers,
            "holdSeconds": hold_seconds,
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let answer = self.post("/events", Some(&self.admin), body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.body["id"].as_str().expect("event id").to_owned()
    }

    pub async fn create_tickets(&self, event: &str, tiers: Value) {
        let answer = self
            .post(
                "/tickets/create",
                Some(&self.admin),
                json!({ "eventId": event, "tiers": tiers }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }

    /// The seed's tiers with `counts` tickets each, holds of `hold_seconds`.
    pub async fn seeded_event(
        &self,
        vip: i64,
        front_row: i64,
        ga: i64,
        hold_seconds: i64,
    ) -> String {
        self.seeded_event_with(vip, front_row, ga, hold_seconds, json!({}))
            .await
    }

    /// As [`Api::seeded_event`], with the fields of `extra` added to the event's body.
    pub async fn seeded_event_with(
        &self,
        vip: i64,
        front_row: i64,
        ga: i64,
        hold_seconds: i64,
        extra: Value,
    ) -> String {
        let event = self
            .create_event_with(
                &[("VIP", 10_000), ("Front Row", 5_000), ("GA", 1_000)],
                hold_seconds,
                extra,
            )
            .await;
        self.create_tickets(
            &event,
            json!({ "VIP": vip, "Front Row": front_row, "GA": ga }),
        )
        .await;
        event
    }

    pub async fn reserve(&self, user: &User, event: &str, tickets: &[(&str, i64)]) -> Answer {
        self.reserve_with_key(user, event, tickets, None).await
    }

    pub async fn reserve_with_key(
        &self,
        user: &User,
        event: &str,
        tickets: &[(&str, i64)],
        key: Option<&str>,
    ) -> Answer {
        let tickets: Vec<Value> = tickets
            .iter()
            .map(|(tier, quantity)| json!({ "tier": tier, "quantity": quantity }))
            .collect();
        self.send(
            reqwest::Method::POST,
            "/booking/reserve",
            Some(&user.token),
            Some(json!({ "eventId": event, "tickets": tickets })),
            key,
        )
        .await
    }

    pub async fn confirm(&self, user: &User, booking: &str, payment: &str) -> Answer {
        self.post(
            "/booking/confirm",
            Some(&user.token),
            json!({ "bookingId": booking, "paymentSimulation": payment }),
        )
        .await
    }

    pub async fn cancel(&self, user: &User, booking: &str) -> Answer {
        self.post(
            "/booking/cancel",
            Some(&user.token),
            json!({ "bookingId": booking }),
        )
        .await
    }

    /// Tickets left per tier, from `GET /tickets?eventId=`.
    pub async fn available(&self, event: &str, tier: &str) -> i64 {
        let answer = self.get(&format!("/tickets?eventId={event}"), None).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body["tiers"]
            .as_array()
            .expect("tiers")
            .iter()
            .find(|t| t["name"] == tier)
            .and_then(|t| t["available"].as_i64())
            .expect("tier in availability")
    }

    /// Sum and count of the reserve batch-size histogram, from /metrics (operations listener).
    pub async fn batch_stats(&self) -> (f64, f64) {
        let (_, text) = self.ops("/metrics").await;
        let value = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (
            value("ticketing_reserve_batch_size_sum"),
            value("ticketing_reserve_batch_size_count"),
        )
    }

    pub async fn audit(&self, event: &str) -> testkit::audit::AuditReport {
        testkit::audit::audit_event(&self.node.db, event.parse().expect("event id"))
            .await
            .expect("audit query")
    }
}
