//! Bad input, table-driven: every case goes through real HTTP to an in-process node, must get its
//! 4xx JSON error `{"error": {"code", "message", "status"}}` (DESIGN section 5), and must leave the
//! database exactly as it was. All failures are reported together at the end.

mod common;

use common::node::TEST_JWT_SECRET;
use common::{Api, User};
use id_gen::{IdParts, RegionId, EPOCH_UNIX_MS};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// The table's vocabulary
// ---------------------------------------------------------------------------------------------

/// Who the request claims to be.
#[derive(Clone)]
enum Auth {
    None,
    /// The setup user, who owns the held and the confirmed booking.
    User,
    /// A second, ordinary user.
    Other,
    Admin,
    /// This exact `Authorization` header value.
    Header(HeaderValue),
}

#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    /// Sent as is, labelled `application/json`.
    Raw(Vec<u8>),
}

struct Case {
    name: String,
    method: Method,
    /// Under `/api/v1`, unless `at_root`.
    path: String,
    at_root: bool,
    auth: Auth,
    body: Body,
    headers: Vec<(HeaderName, HeaderValue)>,
    status: u16,
    /// The expected `error.code`; `a|b` accepts either.
    code: &'static str,
}

fn case(method: Method, name: impl Into<String>, path: impl Into<String>) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        at_root: false,
        auth: Auth::None,
        body: Body::None,
        headers: Vec::new(),
        status: 0,
        code: "",
    }
}

fn get(name: impl Into<String>, path: impl Into<String>) -> Case {
    case(Method::GET, name, path)
}

fn post(name: impl Into<String>, path: impl Into<String>) -> Case {
    case(Method::POST, name, path)
}

impl Case {
    fn user(self) -> Case {
        self.auth(Auth::User)
    }
    fn other(self) -> Case {
        self.auth(Auth::Other)
    }
    fn admin(self) -> Case {
        self.auth(Auth::Admin)
    }
    fn auth(mut self, auth: Auth) -> Case {
        self.auth = auth;
        self
    }
    fn json(mut self, body: Value) -> Case {
        self.body = Body::Json(body);
        self
    }
    fn raw(mut self, body: impl Into<Vec<u8>>) -> Case {
        self.body = Body::Raw(body.into());
        self
    }
    fn header(mut self, name: &'static str, value: HeaderValue) -> Case {
        self.headers.push((HeaderName::from_static(name), value));
        self
    }
    fn at_root(mut self) -> Case {
        self.at_root = true;
        self
    }
    fn expect(mut self, status: u16, code: &'static str) -> Case {
        self.status = status;
        self.code = code;
        self
    }
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("a valid header value")
}

/// `{"a": {"b": 1}}` patched with `{"a": {"c": 2}}` is `{"a": {"b": 1, "c": 2}}`; `null` removes.
fn patched(mut base: Value, patch: Value) -> Value {
    fn merge(base: &mut Value, patch: Value) {
        match (base, patch) {
            (Value::Object(base), Value::Object(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        base.remove(&key);
                    } else {
                        merge(base.entry(key).or_insert(Value::Null), value);
                    }
                }
            }
            (base, patch) => *base = patch,
        }
    }
    merge(&mut base, patch);
    base
}

// ---------------------------------------------------------------------------------------------
// Hand-made tokens
// ---------------------------------------------------------------------------------------------

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims like the node's own: `sub` is the user id as a string.
fn claims(sub: &str, role: &str, exp: i64) -> Value {
    json!({ "sub": sub, "role": role, "iat": now(), "exp": exp })
}

fn signed(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .expect("sign a token")
}

/// `header.claims.` with no signature, as a token of `alg: none` is.
fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    )
}

/// Signs `header.claims` by hand, as `unsigned` builds them: the control that shows the
/// hand-made tokens differ from an accepted one only where each case says.
fn hand_signed(claims: &Value) -> String {
    let unsigned = unsigned(&json!({ "alg": "HS256", "typ": "JWT" }), claims);
    let message = unsigned.trim_end_matches('.');
    let key = EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes());
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
    format!("{message}.{signature}")
}

fn bearer(token: &str) -> Auth {
    Auth::Header(header(&format!("Bearer {token}")))
}

// ---------------------------------------------------------------------------------------------
// The database snapshot
// ---------------------------------------------------------------------------------------------

/// Row counts and fingerprints of everything a request could change.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Snapshot {
    users: i64,
    events: i64,
    tiers: i64,
    tickets: i64,
    bookings: i64,
    idempotency_keys: i64,
    tickets_md5: String,
    bookings_md5: String,
    tiers_md5: String,
    events_md5: String,
    users_md5: String,
}

async fn snapshot(api: &Api) -> Snapshot {
    sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM users) AS users,
           (SELECT count(*) FROM events) AS events,
           (SELECT count(*) FROM tiers) AS tiers,
           (SELECT count(*) FROM tickets) AS tickets,
           (SELECT count(*) FROM bookings) AS bookings,
           (SELECT count(*) FROM idempotency_keys) AS idempotency_keys,
           (SELECT coalesce(md5(string_agg(
                concat_ws(':', id, status, coalesce(booking_id::text, '-')), ',' ORDER BY id)), '')
              FROM tickets) AS tickets_md5,
           (SELECT coalesce(md5(string_agg(concat_ws(':', id, status), ',' ORDER BY id)), '')
              FROM bookings) AS bookings_md5,
           (SELECT coalesce(md5(string_agg(concat_ws(':', event_id, name, price_cents, ticket_count),
                                           ',' ORDER BY event_id, name)), '')
              FROM tiers) AS tiers_md5,
           (SELECT coalesce(md5(string_agg(concat_ws(':', id, name, status, hold_seconds,
                                                     max_per_order, max_tickets_per_user),
                                           ',' ORDER BY id)), '')
              FROM events) AS events_md5,
           (SELECT coalesce(md5(string_agg(concat_ws(':', id, name), ',' ORDER BY id)), '')
              FROM users) AS users_md5",
    )
    .fetch_one(&api.node.db)
    .await
    .expect("snapshot query")
}

// ---------------------------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------------------------

struct Tokens {
    user: String,
    other: String,
    admin: String,
}

/// Sends the case; `Err` describes how the answer missed the expectation.
async fn check(api: &Api, tokens: &Tokens, case: &Case) -> Result<(), String> {
    let url = if case.at_root {
        format!("{}{}", api.node.base_url, case.path)
    } else {
        api.node.api(&case.path)
    };
    let mut request = api.http.request(case.method.clone(), url);
    request = match &case.auth {
        Auth::None => request,
        Auth::User => request.bearer_auth(&tokens.user),
        Auth::Other => request.bearer_auth(&tokens.other),
        Auth::Admin => request.bearer_auth(&tokens.admin),
        Auth::Header(value) => request.header(AUTHORIZATION, value.clone()),
    };
    for (name, value) in &case.headers {
        request = request.header(name.clone(), value.clone());
    }
    request = match &case.body {
        Body::None => request,
        Body::Json(body) => request.json(body),
        Body::Raw(bytes) => request
            .header(CONTENT_TYPE, "application/json")
            .body(bytes.clone()),
    };
    let response = request
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<none>")
        .to_owned();
    let text = response
        .text()
        .await
        .map_err(|e| format!("{status}, body unreadable: {e}"))?;
    let shown: String = text.chars().take(300).collect();
    let got = || format!("got {status} {shown:?}");
    let body: Value = serde_json::from_str(&text).map_err(|_| {
        format!(
            "expected {} {}, {} (not JSON)",
            case.status,
            case.code,
            got()
        )
    })?;
    let error = &body["error"];
    let code = error["code"].as_str().unwrap_or("<no code>");
    let mut problems = Vec::new();
    if status != case.status {
        problems.push("wrong status");
    }
    if !case.code.split('|').any(|c| c == code) {
        problems.push("wrong code");
    }
    if error["status"].as_u64() != Some(u64::from(status)) {
        problems.push("error.status differs from the HTTP status");
    }
    if error["message"].as_str().is_none_or(str::is_empty) {
        problems.push("no error.message");
    }
    if !content_type.starts_with("application/json") {
        problems.push("content-type is not application/json");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "expected {} {}, {} ({})",
            case.status,
            case.code,
            got(),
            problems.join(", ")
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_input_gets_a_json_4xx_and_changes_nothing() {
    let api = Api::start().await;

    // Setup: one event with tickets, one user with one held booking (and one confirmed booking
    // for the conflict cases), a second user to trespass with.
    let event = api.seeded_event(5, 5, 20, 600).await;
    let user = api.signup("ada").await;
    let other = api.signup("mallory").await;
    let held = api.reserve(&user, &event, &[("GA", 2)]).await;
    assert_eq!(held.status, 201, "{}", held.body);
    let held = held.body["bookingId"]
        .as_str()
        .expect("booking id")
        .to_owned();
    let sold = api.reserve(&user, &event, &[("VIP", 1)]).await;
    assert_eq!(sold.status, 201, "{}", sold.body);
    let confirmed = sold.body["bookingId"].as_str().expect("id").to_owned();
    let answer = api.confirm(&user, &confirmed, "success").await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let details = api.get(&format!("/events/{event}"), None).await;
    let max = details.body["maxPerOrder"].as_i64().expect("maxPerOrder");
    let (ticket,): (i64,) = sqlx::query_as("SELECT id FROM tickets ORDER BY id LIMIT 1")
        .fetch_one(&api.node.db)
        .await
        .expect("a ticket id");
    let limit = api.node.node.config.http.body_limit_bytes;

    // Well-formed ids: one of this region that nothing has, one of another region.
    let id_in = |region: u8| {
        IdParts {
            timestamp_ms: EPOCH_UNIX_MS + 1_000,
            region: RegionId::new(region).expect("region"),
            machine: 31,
            sequence: 4_095,
        }
        .encode()
        .expect("id")
        .to_string()
    };
    let missing = id_in(1);
    let foreign = id_in(2);
    let tokens = Tokens {
        user: user.token.clone(),
        other: other.token.clone(),
        admin: api.admin.clone(),
    };
    let cases = table(&Ids {
        event: &event,
        held: &held,
        confirmed: &confirmed,
        ticket: &ticket.to_string(),
        missing: &missing,
        foreign: &foreign,
        user: &user,
        other: &other,
        max,
        limit,
    });

    // Controls: a hand-made token with the node's secret and an admin-role token are accepted,
    // so the bad tokens below fail for what is wrong with them alone.
    let control = hand_signed(&claims(&user.id, "user", now() + 3_600));
    let answer = api
        .get(&format!("/booking/user/{}", user.id), Some(&control))
        .await;
    assert_eq!(
        answer.status, 200,
        "hand-made token refused: {}",
        answer.body
    );
    let answer = api
        .get(&format!("/users/{}", other.id), Some(&api.admin))
        .await;
    assert_eq!(answer.status, 200, "admin token refused: {}", answer.body);

    let before = snapshot(&api).await;
    let mut baseline = snapshot(&api).await;
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(problem) = check(&api, &tokens, case).await {
            failures.push(format!(
                "[{}] {} {}: {problem}",
                case.name, case.method, case.path
            ));
        }
        let now = snapshot(&api).await;
        if now != baseline {
            failures.push(format!(
                "[{}] {} {}: changed the database\n    before: {baseline:?}\n    after:  {now:?}",
                case.name, case.method, case.path
            ));
            baseline = now;
        }
    }
    let after = snapshot(&api).await;
    if after != before {
        failures.push(format!(
            "the database changed over the run\n    before: {before:?}\n    after:  {after:?}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// What the table refers to, made by the setup.
struct Ids<'a> {
    event: &'a str,
    /// The setup user's live hold.
    held: &'a str,
    /// The setup user's confirmed booking.
    confirmed: &'a str,
    ticket: &'a str,
    /// Well-formed, this region's, exists nowhere.
    missing: &'a str,
    /// Well-formed, another region's.
    foreign: &'a str,
    user: &'a User,
    other: &'a User,
    max: i64,
    limit: usize,
}

fn table(ids: &Ids) -> Vec<Case> {
    let Ids {
        event,
        held,
        confirmed,
        ticket,
        missing,
        foreign,
        max,
        limit,
        ..
    } = *ids;
    let (user_id, other_id) = (ids.user.id.as_str(), ids.other.id.as_str());

    // Valid bodies, which the cases spoil one way at a time.
    let reserve_ok = json!({ "eventId": event, "tickets": [{ "tier": "GA", "quantity": 1 }] });
    let reserve = |tickets: Value| json!({ "eventId": event, "tickets": tickets });
    let line = |tier: &str, quantity: i64| json!({ "tier": tier, "quantity": quantity });
    let event_ok = json!({
        "name": "Bad Input Night",
        "description": "never created",
        "venue": "Nowhere Hall",
        "startsAt": "2031-01-01T20:00:00Z",
        "homeRegion": "us-east",
        "tiers": [{ "name": "VIP", "priceCents": 10_000 }, { "name": "GA", "priceCents": 1_000 }],
        "holdSeconds": 300,
    });
    let new_event = |patch: Value| patched(event_ok.clone(), patch);
    let new_tickets = |tiers: Value| json!({ "eventId": event, "tiers": tiers });

    // Tokens made by hand: for the setup user, mostly claiming to be admin.
    let soon = now() + 3_600;
    let forged = signed(
        Algorithm::HS256,
        b"another-secret-that-is-not-the-nodes",
        &claims(user_id, "admin", soon),
    );
    let expired = signed(
        Algorithm::HS256,
        TEST_JWT_SECRET.as_bytes(),
        &claims(user_id, "user", now() - 3_600),
    );
    let alg_none = unsigned(
        &json!({ "alg": "none", "typ": "JWT" }),
        &claims(user_id, "admin", soon),
    );
    let alg_none_no_dot = alg_none.trim_end_matches('.').to_owned();
    let hs512 = signed(
        Algorithm::HS512,
        TEST_JWT_SECRET.as_bytes(),
        &claims(user_id, "admin", soon),
    );
    let no_exp = signed(
        Algorithm::HS256,
        TEST_JWT_SECRET.as_bytes(),
        &json!({ "sub": user_id, "role": "user", "iat": now() }),
    );
    let bad_sub = signed(
        Algorithm::HS256,
        TEST_JWT_SECRET.as_bytes(),
        &claims("ada", "user", soon),
    );
    let bad_role = signed(
        Algorithm::HS256,
        TEST_JWT_SECRET.as_bytes(),
        &claims(user_id, "root", soon),
    );
    // The user's own valid token with its signature altered.
    let garbled = {
        let (rest, signature) = ids.user.token.rsplit_once('.').expect("a JWT");
        let flipped: String = signature
            .chars()
            .rev()
            .map(|c| if c == 'A' { 'B' } else { 'A' })
            .collect();
        format!("{rest}.{flipped}")
    };

    let long = |n: usize| "x".repeat(n);
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let oversized = |body: Value| {
        // Valid JSON, just over the limit.
        let mut text = body.to_string();
        text.insert_str(1, &format!("\"padding\": \"{}\", ", long(limit)));
        text
    };

    let mut cases = vec![
        // --- Bodies that are not the JSON asked for -----------------------------------------
        post("malformed JSON", "/booking/reserve")
            .user()
            .raw(format!(r#"{{"eventId": "{event}", "tickets": ["#))
            .expect(400, "invalid_json"),
        post("trailing garbage", "/booking/reserve")
            .user()
            .raw(format!("{reserve_ok} x"))
            .expect(400, "invalid_json"),
        post("form-encoded body", "/booking/reserve")
            .user()
            .raw(format!("eventId={event}&tier=GA&quantity=1"))
            .expect(400, "invalid_json"),
        post("empty body", "/booking/reserve")
            .user()
            .expect(400, "invalid_json"),
        post("whitespace body", "/booking/reserve")
            .user()
            .raw("  \n ")
            .expect(400, "invalid_json"),
        post("invalid UTF-8", "/booking/reserve")
            .user()
            .raw(b"{\"eventId\": \"\xff\xfe\"}".to_vec())
            .expect(400, "invalid_json"),
        post("JSON null", "/booking/reserve")
            .user()
            .raw("null")
            .expect(400, "invalid_json"),
        post("JSON array", "/booking/reserve")
            .user()
            .json(json!([]))
            .expect(400, "invalid_json"),
        post("JSON string", "/booking/reserve")
            .user()
            .json(json!("reserve please"))
            .expect(400, "invalid_json"),
        post("deeply nested", "/booking/reserve")
            .user()
            .raw(nested.clone())
            .expect(400, "invalid_json"),
        post("duplicate field", "/booking/reserve")
            .user()
            .raw(format!(
                r#"{{"eventId": "{event}", "eventId": "{event}", "tickets": []}}"#
            ))
            .expect(400, "invalid_json"),
        post("lone surrogate", "/booking/reserve")
            .user()
            .raw(format!(
                r#"{{"eventId": "{event}", "tickets": [{{"tier": "\ud800", "quantity": 1}}]}}"#
            ))
            .expect(400, "invalid_json"),
        post("empty body: users", "/users").expect(400, "invalid_json"),
        post("empty body: confirm", "/booking/confirm")
            .user()
            .expect(400, "invalid_json"),
        post("empty body: cancel", "/booking/cancel")
            .user()
            .expect(400, "invalid_json"),
        post("empty body: events", "/events")
            .admin()
            .expect(400, "invalid_json"),
        post("empty body: tickets/create", "/tickets/create")
            .admin()
            .expect(400, "invalid_json"),
        post("malformed JSON: events", "/events")
            .admin()
            .raw(r#"{"name": "x",}"#)
            .expect(400, "invalid_json"),
        // --- Wrong JSON types ------------------------------------------------------------------
        post("eventId: bool", "/booking/reserve")
            .user()
            .json(patched(reserve_ok.clone(), json!({ "eventId": true })))
            .expect(400, "invalid_json"),
        post("eventId: float", "/booking/reserve")
            .user()
            .json(patched(reserve_ok.clone(), json!({ "eventId": 1.5 })))
            .expect(400, "invalid_json"),
        post("eventId: object", "/booking/reserve")
            .user()
            .json(patched(reserve_ok.clone(), json!({ "eventId": { "id": event } })))
            .expect(400, "invalid_json"),
        post("tickets: string", "/booking/reserve")
            .user()
            .json(reserve(json!("GA:1")))
            .expect(400, "invalid_json"),
        post("tickets: map", "/booking/reserve")
            .user()
            .json(reserve(json!({ "GA": 1 })))
            .expect(400, "invalid_json"),
        post("tickets: list of strings", "/booking/reserve")
            .user()
            .json(reserve(json!(["GA"])))
            .expect(400, "invalid_json"),
        post("tier: number", "/booking/reserve")
            .user()
            .json(reserve(json!([{ "tier": 5, "quantity": 1 }])))
            .expect(400, "invalid_json"),
        post("tier: null", "/booking/reserve")
            .user()
            .json(reserve(json!([{ "tier": null, "quantity": 1 }])))
            .expect(400, "invalid_json"),
        post("quantity: string", "/booking/reserve")
            .user()
            .json(reserve(json!([{ "tier": "GA", "quantity": "1" }])))
            .expect(400, "invalid_json"),
        post("quantity: float", "/booking/reserve")
            .user()
            .json(reserve(json!([{ "tier": "GA", "quantity": 1.5 }])))
            .expect(400, "invalid_json"),
        post("quantity: bool", "/booking/reserve")
            .user()
            .json(reserve(json!([{ "tier": "GA", "quantity": true }])))
            .expect(400, "invalid_json"),
        post("quantity: null", "/booking/reserve")
            .user()
            .json(reserve(json!([{ "tier": "GA", "quantity": null }])))
            .expect(400, "invalid_json"),
        post("bookingId: list", "/booking/confirm")
            .user()
            .json(json!({ "bookingId": [held], "paymentSimulation": "success" }))
            .expect(400, "invalid_json"),
        post("paymentSimulation: bool", "/booking/confirm")
            .user()
            .json(json!({ "bookingId": held, "paymentSimulation": true }))
            .expect(400, "invalid_json"),
        post("paymentSimulation: null", "/booking/confirm")
            .user()
            .json(json!({ "bookingId": held, "paymentSimulation": null }))
            .expect(400, "invalid_json"),
        post("name: number", "/users")
            .json(json!({ "name": 42 }))
            .expect(400, "invalid_json"),
        post("name: list", "/users")
            .json(json!({ "name": ["ada"] }))
            .expect(400, "invalid_json"),
        // --- Missing fields --------------------------------------------------------------------
        post("missing eventId", "/booking/reserve")
            .user()
            .json(json!({ "tickets": [line("GA", 1)] }))
            .expect(400, "invalid_json"),
        post("missing tickets", "/booking/reserve")
            .user()
            .json(json!({ "eventId": event }))
            .expect(400, "invalid_json"),
        post("missing tier", "/booking/reserve")
            .user()
            .json(reserve(json!([{ "quantity": 1 }])))
            .expect(400, "invalid_json"),
        post("missing quantity", "/booking/reserve")
            .user()
            .json(reserve(json!([{ "tier": "GA" }])))
            .expect(400, "invalid_json"),
        post("missing bookingId: confirm", "/booking/confirm")
            .user()
            .json(json!({ "paymentSimulation": "success" }))
            .expect(400, "invalid_json"),
        post("missing paymentSimulation", "/booking/confirm")
            .user()
            .json(json!({ "bookingId": held }))
            .expect(400, "invalid_json"),
        post("missing bookingId: cancel", "/booking/cancel")
            .user()
            .json(json!({}))
            .expect(400, "invalid_json"),
        post("missing name: users", "/users")
            .json(json!({}))
            .expect(400, "invalid_json"),
        post("missing name: events", "/events")
            .admin()
            .json(new_event(json!({ "name": null })))
            .expect(400, "invalid_json"),
        post("missing eventId: tickets/create", "/tickets/create")
            .admin()
            .json(json!({ "tiers": { "GA": 1 } }))
            .expect(400, "invalid_json"),
        // --- Unknown fields --------------------------------------------------------------------
        post("unknown field: userId in reserve", "/booking/reserve")
            .user()
            .json(patched(reserve_ok.clone(), json!({ "userId": other_id })))
            .expect(400, "invalid_json"),
        post("unknown field in a ticket line", "/booking/reserve")
            .user()
            .json(reserve(
                json!([{ "tier": "GA", "quantity": 1, "priceCents": 0 }]),
            ))
            .expect(400, "invalid_json"),
        post("unknown field: confirm", "/booking/confirm")
            .user()
            .json(json!({ "bookingId": held, "paymentSimulation": "success", "amount": 0 }))
            .expect(400, "invalid_json"),
        post("unknown field: cancel", "/booking/cancel")
            .user()
            .json(json!({ "bookingId": held, "reason": "changed my mind" }))
            .expect(400, "invalid_json"),
        post("unknown field: role in sign-up", "/users")
            .json(json!({ "name": "eve", "role": "admin" }))
            .expect(400, "invalid_json"),
        post("unknown field: events", "/events")
            .admin()
            .json(new_event(json!({ "status": "on_sale" })))
            .expect(400, "invalid_json"),
        post("unknown field: tiers of events", "/events")
            .admin()
            .json(new_event(
                json!({ "tiers": [{ "name": "VIP", "priceCents": 1, "seats": 5 }] }),
            ))
            .expect(400, "invalid_json"),
        post("unknown field: tickets/create", "/tickets/create")
            .admin()
            .json(patched(new_tickets(json!({ "GA": 1 })), json!({ "price": 5 })))
            .expect(400, "invalid_json"),
        // --- Quantities ------------------------------------------------------------------------
        post("quantity 0", "/booking/reserve")
            .user()
            .json(reserve(json!([line("GA", 0)])))
            .expect(400, "validation"),
        post("quantity -1", "/booking/reserve")
            .user()
            .json(reserve(json!([line("GA", -1)])))
            .expect(400, "validation"),
        post("quantity 10^9", "/booking/reserve")
            .user()
            .json(reserve(json!([line("GA", 1_000_000_000)])))
            .expect(400, "validation"),
        post("quantity i64::MAX", "/booking/reserve")
            .user()
            .json(reserve(json!([line("GA", i64::MAX)])))
            .expect(400, "validation"),
        post("quantity 2^64 (overflows)", "/booking/reserve")
            .user()
            .raw(format!(
                r#"{{"eventId": "{event}", "tickets": [{{"tier": "GA", "quantity": 18446744073709551616}}]}}"#
            ))
            .expect(400, "invalid_json"),
        post("quantity over the per-order max", "/booking/reserve")
            .user()
            .json(reserve(json!([line("GA", max + 1)])))
            .expect(400, "validation"),
        post("total over the max across tiers", "/booking/reserve")
            .user()
            .json(reserve(json!([line("GA", max), line("Front Row", 1)])))
            .expect(400, "validation"),
        post("total over the max in one tier twice", "/booking/reserve")
            .user()
            .json(reserve(json!([line("GA", max), line("GA", 1)])))
            .expect(400, "validation"),
        post("empty tickets list", "/booking/reserve")
            .user()
            .json(reserve(json!([])))
            .expect(400, "validation"),
        post("unknown tier", "/booking/reserve")
            .user()
            .json(reserve(json!([line("Balcony", 1)])))
            .expect(400, "validation"),
        post("tier in the wrong case", "/booking/reserve")
            .user()
            .json(reserve(json!([line("ga", 1)])))
            .expect(400, "validation"),
        post("empty tier name", "/booking/reserve")
            .user()
            .json(reserve(json!([line("", 1)])))
            .expect(400, "validation"),
        post("NUL in tier name", "/booking/reserve")
            .user()
            .json(reserve(json!([line("G\u{0}A", 1)])))
            .expect(400, "validation"),
        post("a good tier and an unknown one", "/booking/reserve")
            .user()
            .json(reserve(json!([line("GA", 1), line("Balcony", 1)])))
            .expect(400, "validation"),
        post("more than are left (sold out)", "/booking/reserve")
            .user()
            .json(reserve(json!([line("VIP", 5)])))
            .expect(409, "sold_out"),
        // --- Unknown event, ids in the body ----------------------------------------------------
        post("unknown event", "/booking/reserve")
            .user()
            .json(patched(reserve_ok.clone(), json!({ "eventId": missing })))
            .expect(404, "not_found"),
        post("a ticket's id as eventId", "/booking/reserve")
            .user()
            .json(patched(reserve_ok.clone(), json!({ "eventId": ticket })))
            .expect(404, "not_found"),
        post("another region's event", "/booking/reserve")
            .user()
            .json(patched(reserve_ok.clone(), json!({ "eventId": foreign })))
            .expect(421, "misdirected"),
    ];

    // Ids that are not ids, in the body of every request that takes one.
    let bad_ids: Vec<(&str, Value)> = vec![
        ("non-numeric", json!("abc")),
        ("negative string", json!("-1")),
        ("negative number", json!(-1)),
        ("overflowing string", json!("99999999999999999999")),
        ("overflowing number", json!(99_999_999_999_999_999_999.0)),
        ("sign bit set", json!("9223372036854775808")),
        ("empty string", json!("")),
        ("leading plus", json!("+1")),
        ("exponent", json!("1e3")),
        ("zero string", json!("0")),
        ("zero number", json!(0)),
    ];
    for (what, id) in &bad_ids {
        // Id 0 names no region: refused as an id, not misdirected to a region that doesn't exist.
        cases.push(
            post(format!("eventId {what} (reserve)"), "/booking/reserve")
                .user()
                .json(patched(reserve_ok.clone(), json!({ "eventId": id })))
                .expect(400, "invalid_json|invalid_id|validation"),
        );
        cases.push(
            post(format!("bookingId {what} (confirm)"), "/booking/confirm")
                .user()
                .json(json!({ "bookingId": id, "paymentSimulation": "success" }))
                .expect(400, "invalid_json|invalid_id|validation"),
        );
        cases.push(
            post(format!("bookingId {what} (cancel)"), "/booking/cancel")
                .user()
                .json(json!({ "bookingId": id }))
                .expect(400, "invalid_json|invalid_id|validation"),
        );
        cases.push(
            post(
                format!("eventId {what} (tickets/create)"),
                "/tickets/create",
            )
            .admin()
            .json(json!({ "eventId": id, "tiers": { "GA": 1 } }))
            .expect(400, "invalid_json|invalid_id|validation"),
        );
    }

    // Ids that are not ids, in paths and queries.
    let bad_path_ids = [
        "abc",
        "-1",
        "0",
        "99999999999999999999",
        "9223372036854775808",
        "1.5",
        "+1",
        "%20",
        "%FF",
        "1e3",
    ];
    for id in bad_path_ids {
        cases.push(
            get(format!("path id {id:?}"), format!("/events/{id}")).expect(400, "invalid_id"),
        );
        cases.push(
            get(format!("path id {id:?}"), format!("/tickets/{id}")).expect(400, "invalid_id"),
        );
        cases.push(
            get(format!("path id {id:?}"), format!("/users/{id}"))
                .user()
                .expect(400, "invalid_id"),
        );
        cases.push(
            get(format!("path id {id:?}"), format!("/booking/{id}"))
                .user()
                .expect(400, "invalid_id"),
        );
        cases.push(
            get(format!("path id {id:?}"), format!("/booking/user/{id}"))
                .user()
                .expect(400, "invalid_id"),
        );
        cases.push(
            get(format!("query id {id:?}"), format!("/tickets?eventId={id}"))
                .expect(400, "invalid_id"),
        );
    }

    cases.extend([
        get("path id: xyz", "/booking/user/xyz")
            .user()
            .expect(400, "invalid_id"),
        get("query: empty eventId", "/tickets?eventId=").expect(400, "invalid_id"),
        get("query: missing eventId", "/tickets").expect(400, "validation"),
        get(
            "query: eventid in the wrong case",
            format!("/tickets?eventid={event}"),
        )
        .expect(400, "validation"),
        get(
            "query: eventId twice",
            format!("/tickets?eventId={event}&eventId={event}"),
        )
        .expect(400, "validation"),
        get(
            "query: unknown event",
            format!("/tickets?eventId={missing}"),
        )
        .expect(404, "not_found"),
        get("query: limit 0", "/events?limit=0").expect(400, "validation"),
        get("query: limit 501", "/events?limit=501").expect(400, "validation"),
        get("query: limit -1", "/events?limit=-1").expect(400, "validation"),
        get("query: limit abc", "/events?limit=abc").expect(400, "validation"),
        get(
            "query: limit overflowing",
            "/events?limit=99999999999999999999",
        )
        .expect(400, "validation"),
        get("query: unknown parameter", "/events?sort=price").expect(400, "validation"),
        get(
            "query: bad limit on a user's bookings",
            format!("/booking/user/{user_id}?limit=0"),
        )
        .user()
        .expect(400, "validation"),
        // --- Well-formed ids of nothing --------------------------------------------------------
        get("unknown event", format!("/events/{missing}")).expect(404, "not_found"),
        get("a ticket's id as an event", format!("/events/{ticket}")).expect(404, "not_found"),
        get("unknown ticket", format!("/tickets/{missing}")).expect(404, "not_found"),
        get("an event's id as a ticket", format!("/tickets/{event}")).expect(404, "not_found"),
        get("unknown user", format!("/users/{missing}"))
            .admin()
            .expect(404, "not_found"),
        get("unknown booking", format!("/booking/{missing}"))
            .user()
            .expect(404, "not_found"),
        // --- Body over the limit -------------------------------------------------------------
        post("body over the limit: users", "/users")
            .raw(oversized(json!({ "name": "big" })))
            .expect(413, "payload_too_large"),
        post("body over the limit: reserve", "/booking/reserve")
            .user()
            .raw(oversized(reserve_ok.clone()))
            .expect(413, "payload_too_large"),
        post("body over the limit: events", "/events")
            .admin()
            .raw(oversized(event_ok.clone()))
            .expect(413, "payload_too_large"),
        // --- Who is asking ---------------------------------------------------------------------
        post("no token: reserve", "/booking/reserve")
            .json(reserve_ok.clone())
            .expect(401, "unauthorized"),
        post("no token: confirm", "/booking/confirm")
            .json(json!({ "bookingId": held, "paymentSimulation": "success" }))
            .expect(401, "unauthorized"),
        post("no token: cancel", "/booking/cancel")
            .json(json!({ "bookingId": held }))
            .expect(401, "unauthorized"),
        post("no token: events", "/events")
            .json(event_ok.clone())
            .expect(401, "unauthorized"),
        post("no token: tickets/create", "/tickets/create")
            .json(new_tickets(json!({ "GA": 1 })))
            .expect(401, "unauthorized"),
        get("no token: a user", format!("/users/{user_id}")).expect(401, "unauthorized"),
        get("no token: a booking", format!("/booking/{held}")).expect(401, "unauthorized"),
        get(
            "no token: a user's bookings",
            format!("/booking/user/{user_id}"),
        )
        .expect(401, "unauthorized"),
        post("no token, bad body: auth comes first", "/booking/reserve")
            .raw("{")
            .expect(401, "unauthorized"),
    ]);

    let bad_auth: Vec<(&str, Auth)> = vec![
        (
            "Basic scheme",
            Auth::Header(header("Basic YWRhOnNlY3JldA==")),
        ),
        ("Bearer without a token", Auth::Header(header("Bearer"))),
        ("Bearer and spaces", Auth::Header(header("Bearer    "))),
        (
            "Token scheme",
            Auth::Header(header(&format!("Token {}", ids.user.token))),
        ),
        ("bare token", Auth::Header(header(&ids.user.token))),
        ("not a JWT", bearer("not-a-jwt")),
        ("three garbage parts", bearer("a.b.c")),
        (
            "non-ASCII header",
            Auth::Header(HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("obs-text")),
        ),
        ("forged (another secret)", bearer(&forged)),
        ("garbled signature", bearer(&garbled)),
        ("expired", bearer(&expired)),
        ("alg none", bearer(&alg_none)),
        ("alg none, no trailing dot", bearer(&alg_none_no_dot)),
        ("HS512 instead of HS256", bearer(&hs512)),
        ("no exp claim", bearer(&no_exp)),
        ("non-numeric sub", bearer(&bad_sub)),
        ("unknown role", bearer(&bad_role)),
    ];
    for (what, auth) in bad_auth {
        cases.push(
            post(format!("{what}: reserve"), "/booking/reserve")
                .auth(auth.clone())
                .json(reserve_ok.clone())
                .expect(401, "unauthorized"),
        );
        cases.push(
            post(format!("{what}: events"), "/events")
                .auth(auth.clone())
                .json(event_ok.clone())
                .expect(401, "unauthorized"),
        );
        cases.push(
            get(
                format!("{what}: a user's bookings"),
                format!("/booking/user/{user_id}"),
            )
            .auth(auth)
            .expect(401, "unauthorized"),
        );
    }

    cases.extend([
        // --- Not allowed -----------------------------------------------------------------------
        post("non-admin creates an event", "/events")
            .user()
            .json(event_ok.clone())
            .expect(403, "forbidden"),
        post("non-admin creates tickets", "/tickets/create")
            .user()
            .json(new_tickets(json!({ "GA": 1 })))
            .expect(403, "forbidden"),
        post("confirms another user's hold", "/booking/confirm")
            .other()
            .json(json!({ "bookingId": held, "paymentSimulation": "success" }))
            .expect(403, "forbidden"),
        post("cancels another user's hold", "/booking/cancel")
            .other()
            .json(json!({ "bookingId": held }))
            .expect(403, "forbidden"),
        get("reads another user's booking", format!("/booking/{held}"))
            .other()
            .expect(403, "forbidden"),
        get(
            "lists another user's bookings",
            format!("/booking/user/{user_id}"),
        )
        .other()
        .expect(403, "forbidden"),
        get("reads another user", format!("/users/{other_id}"))
            .user()
            .expect(403, "forbidden"),
        // --- Event creation --------------------------------------------------------------------
        post("event: empty name", "/events")
            .admin()
            .json(new_event(json!({ "name": "" })))
            .expect(400, "validation"),
        post("event: blank name", "/events")
            .admin()
            .json(new_event(json!({ "name": "   " })))
            .expect(400, "validation"),
        post("event: name of 201 characters", "/events")
            .admin()
            .json(new_event(json!({ "name": long(201) })))
            .expect(400, "validation"),
        // PostgreSQL cannot store NUL in text: refused before it gets there.
        post("event: NUL in the name", "/events")
            .admin()
            .json(new_event(json!({ "name": "Bad\u{0}Night" })))
            .expect(400, "validation"),
        post("event: empty venue", "/events")
            .admin()
            .json(new_event(json!({ "venue": "" })))
            .expect(400, "validation"),
        post("event: description of 5001 characters", "/events")
            .admin()
            .json(new_event(json!({ "description": long(5001) })))
            .expect(400, "validation"),
        post("event: startsAt in the past", "/events")
            .admin()
            .json(new_event(json!({ "startsAt": "2001-01-01T20:00:00Z" })))
            .expect(400, "validation"),
        post("event: startsAt not a date", "/events")
            .admin()
            .json(new_event(json!({ "startsAt": "next friday" })))
            .expect(400, "invalid_json"),
        post("event: startsAt without a zone", "/events")
            .admin()
            .json(new_event(json!({ "startsAt": "2031-01-01T20:00:00" })))
            .expect(400, "invalid_json"),
        post("event: startsAt a number", "/events")
            .admin()
            .json(new_event(json!({ "startsAt": 1_924_000_000 })))
            .expect(400, "invalid_json"),
        post("event: unknown homeRegion", "/events")
            .admin()
            .json(new_event(json!({ "homeRegion": "mars-north" })))
            .expect(400, "validation"),
        post("event: homeRegion in the wrong case", "/events")
            .admin()
            .json(new_event(json!({ "homeRegion": "US-EAST" })))
            .expect(400, "validation"),
        post("event: empty homeRegion", "/events")
            .admin()
            .json(new_event(json!({ "homeRegion": "" })))
            .expect(400, "validation"),
        post("event: homed in another region", "/events")
            .admin()
            .json(new_event(json!({ "homeRegion": "eu-west" })))
            .expect(421, "misdirected"),
        post("event: no tiers", "/events")
            .admin()
            .json(new_event(json!({ "tiers": [] })))
            .expect(400, "validation"),
        post("event: tiers missing", "/events")
            .admin()
            .json(new_event(json!({ "tiers": null })))
            .expect(400, "invalid_json"),
        post("event: 21 tiers", "/events")
            .admin()
            .json(new_event(json!({
                "tiers": (0..21)
                    .map(|i| json!({ "name": format!("T{i}"), "priceCents": 100 }))
                    .collect::<Vec<_>>()
            })))
            .expect(400, "validation"),
        post("event: duplicate tier names", "/events")
            .admin()
            .json(new_event(json!({ "tiers": [
                { "name": "VIP", "priceCents": 100 }, { "name": "VIP", "priceCents": 200 }
            ] })))
            .expect(400, "validation"),
        post("event: duplicate tier names after trimming", "/events")
            .admin()
            .json(new_event(json!({ "tiers": [
                { "name": "VIP", "priceCents": 100 }, { "name": " VIP ", "priceCents": 200 }
            ] })))
            .expect(400, "validation"),
        post("event: empty tier name", "/events")
            .admin()
            .json(new_event(
                json!({ "tiers": [{ "name": " ", "priceCents": 100 }] }),
            ))
            .expect(400, "validation"),
        post("event: tier name of 51 characters", "/events")
            .admin()
            .json(new_event(
                json!({ "tiers": [{ "name": long(51), "priceCents": 100 }] }),
            ))
            .expect(400, "validation"),
        post("event: NUL in a tier name", "/events")
            .admin()
            .json(new_event(
                json!({ "tiers": [{ "name": "V\u{0}IP", "priceCents": 100 }] }),
            ))
            .expect(400, "validation"),
        post("event: negative price", "/events")
            .admin()
            .json(new_event(
                json!({ "tiers": [{ "name": "VIP", "priceCents": -1 }] }),
            ))
            .expect(400, "validation"),
        post("event: price over the maximum", "/events")
            .admin()
            .json(new_event(
                json!({ "tiers": [{ "name": "VIP", "priceCents": 1_000_000_001 }] }),
            ))
            .expect(400, "validation"),
        post("event: price as a string", "/events")
            .admin()
            .json(new_event(
                json!({ "tiers": [{ "name": "VIP", "priceCents": "100" }] }),
            ))
            .expect(400, "invalid_json"),
        post("event: holdSeconds 0", "/events")
            .admin()
            .json(new_event(json!({ "holdSeconds": 0 })))
            .expect(400, "validation"),
        post("event: holdSeconds 99999", "/events")
            .admin()
            .json(new_event(json!({ "holdSeconds": 99_999 })))
            .expect(400, "validation"),
        post("event: holdSeconds negative", "/events")
            .admin()
            .json(new_event(json!({ "holdSeconds": -1 })))
            .expect(400, "validation"),
        post("event: maxPerOrder 0", "/events")
            .admin()
            .json(new_event(json!({ "maxPerOrder": 0 })))
            .expect(400, "validation"),
        post("event: maxPerOrder 101", "/events")
            .admin()
            .json(new_event(json!({ "maxPerOrder": 101 })))
            .expect(400, "validation"),
        post("event: maxTicketsPerUser 0", "/events")
            .admin()
            .json(new_event(json!({ "maxTicketsPerUser": 0 })))
            .expect(400, "validation"),
        post("event: maxTicketsPerUser over a million", "/events")
            .admin()
            .json(new_event(json!({ "maxTicketsPerUser": 1_000_001 })))
            .expect(400, "validation"),
        post("event: maxTicketsPerUser past i32", "/events")
            .admin()
            .json(new_event(json!({ "maxTicketsPerUser": 1_i64 << 40 })))
            .expect(400, "validation"),
        post("event: maxTicketsPerUser text", "/events")
            .admin()
            .json(new_event(json!({ "maxTicketsPerUser": "8" })))
            .expect(400, "invalid_json"),
        // --- Ticket creation -------------------------------------------------------------------
        post("tickets: negative count", "/tickets/create")
            .admin()
            .json(new_tickets(json!({ "GA": -1 })))
            .expect(400, "validation"),
        post("tickets: negative seed-shape count", "/tickets/create")
            .admin()
            .json(json!({ "eventId": event, "vipCount": -5, "gaCount": 10 }))
            .expect(400, "validation"),
        post("tickets: both shapes at once", "/tickets/create")
            .admin()
            .json(json!({ "eventId": event, "tiers": { "GA": 1 }, "vipCount": 1 }))
            .expect(400, "validation"),
        post("tickets: neither shape", "/tickets/create")
            .admin()
            .json(json!({ "eventId": event }))
            .expect(400, "validation"),
        post("tickets: a count over 1,000,000", "/tickets/create")
            .admin()
            .json(new_tickets(json!({ "GA": 1_000_001 })))
            .expect(400, "validation"),
        post("tickets: a total over 1,000,000", "/tickets/create")
            .admin()
            .json(new_tickets(json!({ "GA": 600_000, "VIP": 600_000 })))
            .expect(400, "validation"),
        post(
            "tickets: seed-shape total over 1,000,000",
            "/tickets/create",
        )
        .admin()
        .json(json!({ "eventId": event, "vipCount": 600_000, "gaCount": 600_000 }))
        .expect(400, "validation"),
        post("tickets: no tiers", "/tickets/create")
            .admin()
            .json(new_tickets(json!({})))
            .expect(400, "validation"),
        post("tickets: all counts 0", "/tickets/create")
            .admin()
            .json(new_tickets(json!({ "GA": 0, "VIP": 0 })))
            .expect(400, "validation"),
        post("tickets: unknown tier", "/tickets/create")
            .admin()
            .json(new_tickets(json!({ "Balcony": 5 })))
            .expect(400, "validation"),
        post("tickets: a good tier and an unknown one", "/tickets/create")
            .admin()
            .json(new_tickets(json!({ "GA": 5, "Balcony": 5 })))
            .expect(400, "validation"),
        post("tickets: NUL in a tier name", "/tickets/create")
            .admin()
            .json(new_tickets(json!({ "G\u{0}A": 5 })))
            .expect(400, "validation"),
        post("tickets: count as a string", "/tickets/create")
            .admin()
            .json(new_tickets(json!({ "GA": "5" })))
            .expect(400, "invalid_json"),
        post("tickets: count as a float", "/tickets/create")
            .admin()
            .json(new_tickets(json!({ "GA": 1.5 })))
            .expect(400, "invalid_json"),
        post("tickets: count overflowing i64", "/tickets/create")
            .admin()
            .raw(format!(
                r#"{{"eventId": "{event}", "tiers": {{"GA": 99999999999999999999}}}}"#
            ))
            .expect(400, "invalid_json"),
        post("tickets: unknown event", "/tickets/create")
            .admin()
            .json(json!({ "eventId": missing, "tiers": { "GA": 1 } }))
            .expect(404, "not_found"),
        post("tickets: another region's event", "/tickets/create")
            .admin()
            .json(json!({ "eventId": foreign, "tiers": { "GA": 1 } }))
            .expect(421, "misdirected"),
        // --- Sign-up ---------------------------------------------------------------------------
        post("sign-up: empty name", "/users")
            .json(json!({ "name": "" }))
            .expect(400, "validation"),
        post("sign-up: blank name", "/users")
            .json(json!({ "name": " \t " }))
            .expect(400, "validation"),
        post("sign-up: name of 201 characters", "/users")
            .json(json!({ "name": long(201) }))
            .expect(400, "validation"),
        post("sign-up: NUL in the name", "/users")
            .json(json!({ "name": "a\u{0}da" }))
            .expect(400, "validation"),
        // --- Confirm and cancel ----------------------------------------------------------------
        post("paymentSimulation maybe", "/booking/confirm")
            .user()
            .json(json!({ "bookingId": held, "paymentSimulation": "maybe" }))
            .expect(400, "invalid_json"),
        post("paymentSimulation in capitals", "/booking/confirm")
            .user()
            .json(json!({ "bookingId": held, "paymentSimulation": "SUCCESS" }))
            .expect(400, "invalid_json"),
        post("paymentSimulation empty", "/booking/confirm")
            .user()
            .json(json!({ "bookingId": held, "paymentSimulation": "" }))
            .expect(400, "invalid_json"),
        post("confirm a nonexistent booking", "/booking/confirm")
            .user()
            .json(json!({ "bookingId": missing, "paymentSimulation": "success" }))
            .expect(404, "not_found"),
        post("cancel a nonexistent booking", "/booking/cancel")
            .user()
            .json(json!({ "bookingId": missing }))
            .expect(404, "not_found"),
        post("confirm an event's id", "/booking/confirm")
            .user()
            .json(json!({ "bookingId": event, "paymentSimulation": "success" }))
            .expect(404, "not_found"),
        post("confirm another region's booking", "/booking/confirm")
            .user()
            .json(json!({ "bookingId": foreign, "paymentSimulation": "success" }))
            .expect(421, "misdirected"),
        post("confirm a confirmed booking", "/booking/confirm")
            .user()
            .json(json!({ "bookingId": confirmed, "paymentSimulation": "success" }))
            .expect(409, "not_held"),
        post("cancel a confirmed booking", "/booking/cancel")
            .user()
            .json(json!({ "bookingId": confirmed }))
            .expect(409, "not_held"),
        // --- Idempotency-Key -------------------------------------------------------------------
        post(
            "Idempotency-Key of 300 characters: reserve",
            "/booking/reserve",
        )
        .user()
        .header("idempotency-key", header(&long(300)))
        .json(reserve_ok.clone())
        .expect(400, "validation"),
        post(
            "Idempotency-Key of 300 characters: confirm",
            "/booking/confirm",
        )
        .user()
        .header("idempotency-key", header(&long(300)))
        .json(json!({ "bookingId": held, "paymentSimulation": "success" }))
        .expect(400, "validation"),
        post(
            "Idempotency-Key of 300 characters: cancel",
            "/booking/cancel",
        )
        .user()
        .header("idempotency-key", header(&long(300)))
        .json(json!({ "bookingId": held }))
        .expect(400, "validation"),
        post("empty Idempotency-Key", "/booking/reserve")
            .user()
            .header("idempotency-key", header(""))
            .json(reserve_ok.clone())
            .expect(400, "validation"),
        post("non-ASCII Idempotency-Key", "/booking/reserve")
            .user()
            .header(
                "idempotency-key",
                HeaderValue::from_bytes(b"key-\xe9").expect("obs-text"),
            )
            .json(reserve_ok.clone())
            .expect(400, "validation"),
        post("good Idempotency-Key, malformed body", "/booking/reserve")
            .user()
            .header("idempotency-key", header("bad-input-key-1"))
            .raw("{")
            .expect(400, "invalid_json"),
        // --- Routes and methods ----------------------------------------------------------------
        get("unknown route", "/nope").expect(404, "not_found"),
        get(
            "unknown route under a known one",
            format!("/events/{event}/seats"),
        )
        .expect(404, "not_found"),
        get("trailing slash", "/events/").expect(404, "not_found"),
        get("unknown route outside the API", "/nope")
            .at_root()
            .expect(404, "not_found"),
        get("unknown API version", "/api/v2/events")
            .at_root()
            .expect(404, "not_found"),
        post("POST to a collection with no POST", "/booking")
            .user()
            .json(reserve_ok.clone())
            .expect(404, "not_found"),
        case(Method::DELETE, "wrong method: DELETE /events", "/events")
            .admin()
            .expect(405, "method_not_allowed"),
        case(
            Method::PUT,
            "wrong method: PUT /events/:id",
            format!("/events/{event}"),
        )
        .admin()
        .json(event_ok.clone())
        .expect(405, "method_not_allowed"),
        get("wrong method: GET /booking/reserve", "/booking/reserve")
            .user()
            .expect(405, "method_not_allowed"),
        get("wrong method: GET /booking/confirm", "/booking/confirm")
            .user()
            .expect(405, "method_not_allowed"),
        case(
            Method::DELETE,
            "wrong method: DELETE /booking/:id",
            format!("/booking/{held}"),
        )
        .user()
        .expect(405, "method_not_allowed"),
        case(Method::PATCH, "wrong method: PATCH /users", "/users")
            .json(json!({ "name": "ada" }))
            .expect(405, "method_not_allowed"),
        post(
            "wrong method: POST /tickets/:id",
            format!("/tickets/{ticket}"),
        )
        .admin()
        .json(json!({}))
        .expect(405, "method_not_allowed"),
        post("wrong method: POST /healthz", "/healthz")
            .at_root()
            .expect(405, "method_not_allowed"),
    ]);
    cases
}
