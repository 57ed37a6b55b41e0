//! The platform's HTTP API as a virtual user calls it: through its own region's router, with
//! keep-alive connections and a deadline on every request, so a stuck server shows up as a
//! timeout in the report rather than a hung load generator.

use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::stats::Answer;

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
}

/// An answer and its body, when it was JSON.
pub struct Reply {
    pub answer: Answer,
    pub body: Value,
}

impl Api {
    pub fn new(request_timeout: Duration) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(Api { http })
    }

    pub async fn call(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Reply::failed(&e),
        };
        let status = response.status();
        let cache_hit = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .map(|v| v == "hit");
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return Reply::failed(&e),
        };
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let code = (!status.is_success()).then(|| {
            body["error"]["code"]
                .as_str()
                .map_or_else(|| reason(status), str::to_owned)
        });
        Reply {
            answer: Answer {
                status: status.as_u16(),
                code,
                cache_hit,
            },
            body,
        }
    }

    /// Set-up calls, which must succeed: the body, or what went wrong.
    pub async fn must(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let reply = self.call(method.clone(), url, token, body).await;
        if !reply.answer.ok() {
            anyhow::bail!(
                "{method} {url}: {} {}: {}",
                reply.answer.status,
                reply.answer.code.unwrap_or_default(),
                reply.body
            );
        }
        Ok(reply.body)
    }

    pub async fn reserve(
        &self,
        router: &str,
        token: &str,
        event_id: &str,
        lines: &[(String, u32)],
    ) -> Reply {
        self.reserve_with_pass(router, token, event_id, lines, None)
            .await
    }

    /// A reserve that carries a queue pass (`queuePass`), as a queued event requires.
    pub async fn reserve_with_pass(
        &self,
        router: &str,
        token: &str,
        event_id: &str,
        lines: &[(String, u32)],
        pass: Option<&str>,
    ) -> Reply {
        let tickets: Vec<Value> = lines
            .iter()
            .map(|(tier, quantity)| json!({"tier": tier, "quantity": quantity}))
            .collect();
        let mut body = json!({"eventId": event_id, "tickets": tickets});
        if let Some(pass) = pass {
            body["queuePass"] = json!(pass);
        }
        self.call(
            Method::POST,
            &format!("{router}/api/v1/booking/reserve"),
            Some(token),
            Some(&body),
        )
        .await
    }

    /// A text answer (Prometheus `/metrics`), when it came with a 2xx.
    pub async fn text(&self, url: &str) -> Option<String> {
        let response = self.http.get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }

    pub async fn confirm(&self, router: &str, token: &str, booking_id: &str, pay: bool) -> Reply {
        let simulation = if pay { "success" } else { "fail" };
        self.call(
            Method::POST,
            &format!("{router}/api/v1/booking/confirm"),
            Some(token),
            Some(&json!({"bookingId": booking_id, "paymentSimulation": simulation})),
        )
        .await
    }

    pub async fn cancel(&self, router: &str, token: &str, booking_id: &str) -> Reply {
        self.call(
            Method::POST,
            &format!("{router}/api/v1/booking/cancel"),
            Some(token),
            Some(&json!({"bookingId": booking_id})),
        )
        .await
    }

    pub async fn availability(&self, router: &str, event_id: &str) -> Reply {
        self.call(
            Method::GET,
            &format!("{router}/api/v1/tickets?eventId={event_id}"),
            None,
            None,
        )
        .await
    }

    pub async fn event(&self, router: &str, event_id: &str) -> Reply {
        self.call(
            Method::GET,
            &format!("{router}/api/v1/events/{event_id}"),
            None,
            None,
        )
        .await
    }

    pub async fn events(&self, router: &str) -> Reply {
        self.call(Method::GET, &format!("{router}/api/v1/events"), None, None)
            .await
    }
}

impl Reply {
    fn failed(error: &reqwest::Error) -> Reply {
        let code = if error.is_timeout() {
            "timeout"
        } else if error.is_connect() {
            "connect"
        } else {
            "transport"
        };
        Reply {
            answer: Answer {
                status: 0,
                code: Some(code.into()),
                cache_hit: None,
            },
            body: Value::Null,
        }
    }
}

fn reason(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("unknown")
        .to_lowercase()
        .replace(' ', "_")
}
