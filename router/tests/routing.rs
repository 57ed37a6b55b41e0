//! Where requests go and what the router adds to them: reads stay local, writes go to their
//! home region (and nowhere else), bad bodies are refused, headers are carried both ways.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stay_local_and_report_the_home_region() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let client = client();
    let mut events = Vec::new();
    for (region, id) in REGIONS {
        let event = id_in(id);
        events.push(event);
        let response = client
            .get(router.url(&format!("/api/v1/events/{event}?x=1")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-served-by").unwrap(), "us-east/node-1");
        assert_eq!(header(&response, "x-home-region").unwrap(), region);
        assert!(header(&response, "x-read-fallback").is_none());
    }
    let response = client
        .get(router.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(header(&response, "x-home-region").is_none());
    let head = client
        .head(router.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    // An HTTP error from the node is the answer: passed through, not "fixed".
    let missing = client
        .get(router.url("/api/v1/missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(json_of(missing).await["error"]["code"], "not_found");

    let local = fakes.nodes["us-east"].api();
    assert_eq!(local.len(), 6);
    for (seen, event) in local.iter().zip(&events) {
        assert_eq!(seen.uri, format!("/api/v1/events/{event}?x=1"));
    }
    for (name, fake) in fakes.nodes.iter().chain(fakes.routers.iter()) {
        if fake.addr != fakes.nodes["us-east"].addr {
            assert!(fake.api().is_empty(), "a read reached {name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_to_the_home_region_and_nowhere_else() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let client = client();
    for (region, id) in REGIONS {
        let event = id_in(id);
        let booking = id_in(id);
        let writes = [
            (
                "/api/v1/booking/reserve",
                json!({"eventId": event.to_string(), "tickets": [{"tier": "VIP", "quantity": 2}]}),
            ),
            // An integer id is accepted too.
            (
                "/api/v1/tickets/create",
                json!({"eventId": event.as_u64(), "tiers": {"VIP": 10}}),
            ),
            (
                "/api/v1/booking/confirm",
                json!({"bookingId": booking.to_string(), "paymentSimulation": "success"}),
            ),
            (
                "/api/v1/booking/cancel",
                json!({"bookingId": booking.to_string()}),
            ),
            (
                "/api/v1/events",
                json!({"name": "Gig", "homeRegion": region, "tiers": []}),
            ),
        ];
        for (path, body) in writes {
            let response = client
                .post(router.url(path))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path} for {region}");
            assert_eq!(header(&response, "x-home-region").unwrap(), region);
            assert_eq!(
                header(&response, "x-served-by").unwrap(),
                format!("{region}/node-1")
            );
            let echoed = json_of(response).await;
            assert_eq!(echoed["uri"], path);
            let sent: serde_json::Value =
                serde_json::from_str(echoed["body"].as_str().unwrap()).unwrap();
            assert_eq!(sent, body, "the body is forwarded unchanged");
        }
        // Home here: the local node. Home elsewhere: that region's router, with the hop mark.
        let (target, other_fakes) = if region == "us-east" {
            (&fakes.nodes["us-east"], "node")
        } else {
            (&fakes.routers[region], "router")
        };
        let got = target.api_writes();
        assert_eq!(got.len(), 5, "{region} {other_fakes}");
        for seen in &got {
            let hop = seen.header("x-router-hop");
            if region == "us-east" {
                assert!(hop.is_none());
            } else {
                assert_eq!(hop.as_deref(), Some("us-east/router-test"));
            }
        }
    }
    // 15 writes, each received exactly once, each by its home region.
    let all = fakes.all_api_writes();
    assert_eq!(all.len(), 15, "{all:?}");
    for (who, seen) in all {
        let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        let home = body["homeRegion"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let id: id_gen::Id = serde_json::from_value(
                    body.get("eventId")
                        .or(body.get("bookingId"))
                        .unwrap()
                        .clone(),
                )
                .unwrap();
                REGIONS
                    .iter()
                    .find(|(_, n)| *n == id.region().get())
                    .unwrap()
                    .0
                    .to_owned()
            });
        assert!(
            who.starts_with(&home),
            "{who} received a write homed in {home}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_room_writes_go_to_the_home_of_the_event_in_the_path() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let client = client();
    let settings = json!({"opensAt": "2030-01-01T00:00:00Z", "targetActive": 100,
        "maxAdmitPerSecond": 10.0, "passSeconds": 300});
    for (region, id) in REGIONS {
        let queue = format!("/api/v1/events/{}/queue", id_in(id));
        // Setting the queue up (PUT, with its body) and joining it (POST, no body).
        let put = client
            .put(router.url(&queue))
            .json(&settings)
            .send()
            .await
            .unwrap();
        let join = client.post(router.url(&queue)).send().await.unwrap();
        for (method, response) in [("PUT", put), ("POST", join)] {
            assert_eq!(response.status(), 200, "{method} {queue}");
            assert_eq!(header(&response, "x-home-region").unwrap(), region);
            assert!(header(&response, "idempotency-key").is_some());
            let echoed = json_of(response).await;
            assert_eq!(echoed["method"], method);
            assert_eq!(echoed["uri"], queue.as_str());
        }
        let target = if region == "us-east" {
            &fakes.nodes["us-east"]
        } else {
            &fakes.routers[region]
        };
        let got = target.api_writes();
        assert_eq!(got.len(), 2, "{region}");
        let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(body, settings, "the settings are forwarded unchanged");
    }
    // A pass is the caller's own node's to issue, whatever the event's home.
    let pass = format!("/api/v1/events/{}/queue/pass", id_in(3));
    let response = client.post(router.url(&pass)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-served-by").unwrap(), "us-east/node-1");
    assert_eq!(fakes.all_api_writes().len(), 7);
    // A path id that names no region: a JSON 400, forwarded nowhere.
    for bad in ["nope", "99999999999999999999"] {
        let response = client
            .post(router.url(&format!("/api/v1/events/{bad}/queue")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(json_of(response).await["error"]["code"], "invalid_id");
    }
    assert_eq!(fakes.all_api_writes().len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_stay_local_and_only_trusted_proxies_may_say_otherwise() {
    let fakes = Fakes::start().await;
    let proxy: IpAddr = "127.0.0.2".parse().unwrap();
    let mut config = fakes.config();
    config.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
    let router = RouterUnderTest::start(config).await;
    let login = json!({"email": "ann@example.com", "password": "long enough"});

    // No header: local.
    let response = anonymous_client()
        .post(router.url("/api/v1/auth/login"))
        .json(&login)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-home-region").unwrap(), "us-east");
    // An untrusted client naming another region: ignored, still local.
    let response = anonymous_client()
        .post(router.url("/api/v1/auth/login"))
        .header("x-client-region", "eu-west")
        .json(&login)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-home-region").unwrap(), "us-east");
    let local = fakes.nodes["us-east"].api_writes();
    assert_eq!(local.len(), 2);
    // What the node is told is the router's decision, not the client's claim.
    assert_eq!(
        local[1].header("x-client-region").as_deref(),
        Some("us-east")
    );

    // A trusted proxy naming eu-west: the login (and its session) happens there.
    let response = client_from(proxy)
        .post(router.url("/api/v1/auth/login"))
        .header("x-client-region", "eu-west")
        .json(&login)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-home-region").unwrap(), "eu-west");
    let remote = fakes.routers["eu-west"].api_writes();
    assert_eq!(remote.len(), 1);
    assert_eq!(
        remote[0].header("x-client-region").as_deref(),
        Some("eu-west")
    );
    // The trusted proxy naming an unknown region is ignored.
    let response = client_from(proxy)
        .post(router.url("/api/v1/auth/login"))
        .header("x-client-region", "atlantis")
        .json(&login)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-home-region").unwrap(), "us-east");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_go_to_the_email_shard_and_refreshes_to_the_session() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let ids: Vec<u8> = REGIONS.iter().map(|(_, id)| *id).collect();
    for (region, id) in REGIONS {
        // Wherever the client is, and whatever case the email is in.
        let email = wire::accounts::email_homed_in("ann", "example.com", id, &ids)
            .unwrap()
            .to_uppercase();
        let response = anonymous_client()
            .post(router.url("/api/v1/users"))
            .json(&json!({"name": "Ann", "email": email, "password": "long enough"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{email}");
        assert_eq!(header(&response, "x-home-region").unwrap(), region);
        assert_eq!(
            header(&response, "x-served-by").unwrap(),
            format!("{region}/node-1")
        );
        let token = format!("{}.{}", id_in(id), "A".repeat(43));
        for path in ["/api/v1/auth/refresh", "/api/v1/auth/logout"] {
            let response = anonymous_client()
                .post(router.url(path))
                .json(&json!({"refreshToken": token}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(header(&response, "x-home-region").unwrap(), region);
        }
    }
    // A refresh token that names no session of ours is refused here, as the node would.
    let response = anonymous_client()
        .post(router.url("/api/v1/auth/refresh"))
        .json(&json!({"refreshToken": "not-a-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(json_of(response).await["error"]["code"], "unauthorized");
    let response = anonymous_client()
        .post(router.url("/api/v1/users"))
        .json(&json!({"name": "Ann", "email": "no email", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(fakes.all_api_writes().len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_comes_first_a_protected_route_without_a_good_token_gets_401() {
    let fakes = Fakes::start().await;
    let mut config = fakes.config();
    // No leeway, so that a token that lapsed a second ago is expired.
    config.auth.leeway_seconds = 0;
    let router = RouterUnderTest::start(config).await;
    let anonymous = anonymous_client();
    let expired = {
        let keys = wire::token::TokenKeys::new(TEST_JWT_SECRET.as_bytes(), 0);
        let grant = wire::token::Grant {
            user: id_in(1),
            role: wire::token::Role::Admin,
            session: None,
        };
        let token = keys.issue(grant, Duration::ZERO).unwrap().token;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        token
    };
    let forged = {
        let keys = wire::token::TokenKeys::new(b"some-other-secret-entirely", 5);
        let grant = wire::token::Grant {
            user: id_in(1),
            role: wire::token::Role::Admin,
            session: None,
        };
        keys.issue(grant, Duration::from_secs(600)).unwrap().token
    };
    let reserve = router.url("/api/v1/booking/reserve");
    // No token, and a body that is not even JSON: 401, not 400.
    for body in ["{", "", r#"{"eventId": "nope"}"#] {
        let response = anonymous
            .post(&reserve)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{body:?}");
        assert_eq!(header(&response, "www-authenticate").unwrap(), "Bearer");
        let json = json_of(response).await;
        assert_eq!(json["error"]["code"], "unauthorized");
        assert_eq!(json["error"]["status"], 401);
    }
    // A body over the limit too: refused for who sends it, before it is read.
    let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(70 * 1024));
    let response = anonymous.post(&reserve).body(big).send().await.unwrap();
    assert_eq!(response.status(), 401);
    // Answered before its body was read, the connection cannot be reused: the client is told,
    // so its next request does not go into a closed socket.
    assert_eq!(header(&response, "connection").unwrap(), "close");
    // Bad tokens get our own messages.
    for (token, message) in [
        (expired.as_str(), "the bearer token has expired"),
        (forged.as_str(), "invalid bearer token"),
        ("a.b.c", "invalid bearer token"),
    ] {
        let response = anonymous
            .post(router.url("/api/v1/events"))
            .bearer_auth(token)
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{message}");
        assert_eq!(json_of(response).await["error"]["message"], message);
    }
    // The reads a node keeps to their owner, too; public reads and preflights need nothing.
    for path in [
        format!("/api/v1/users/{}", id_in(2)),
        format!("/api/v1/booking/user/{}", id_in(2)),
        format!("/api/v1/booking/{}", id_in(2)),
    ] {
        let response = anonymous.get(router.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
    assert!(fakes.all_api_writes().is_empty());
    assert!(fakes.nodes["us-east"].api().is_empty());
    let response = anonymous
        .get(router.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // With a good token the same bad body reaches routing, which judges it.
    let response = client()
        .post(&reserve)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_added_when_missing_and_kept_when_present() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let body = json!({"eventId": id_in(2).to_string(), "tickets": []});
    let response = client()
        .post(router.url("/api/v1/booking/reserve"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let minted = header(&response, "idempotency-key").expect("returned to the client");
    assert_eq!(minted.len(), 32);
    assert!(minted.bytes().all(|b| b.is_ascii_hexdigit()));
    let response = client()
        .post(router.url("/api/v1/booking/reserve"))
        .header("Idempotency-Key", "order-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "idempotency-key").unwrap(), "order-42");
    let seen = fakes.routers["eu-west"].api_writes();
    assert_eq!(seen[0].header("idempotency-key").unwrap(), minted);
    assert_eq!(seen[1].header("idempotency-key").unwrap(), "order-42");
    // Local writes get one too, and reads do not.
    client()
        .post(router.url("/api/v1/auth/login"))
        .json(&json!({"email": "x@example.com", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    client()
        .get(router.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    let local = fakes.nodes["us-east"].api();
    assert!(local[0].header("idempotency-key").is_some());
    assert!(local[1].header("idempotency-key").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_headers_and_timing_are_carried() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let client = client();

    // Nothing sent: the router mints a request id and a traceparent, forwards and returns them.
    let response = client
        .post(router.url("/api/v1/booking/reserve"))
        .json(&json!({"eventId": id_in(3).to_string()}))
        .send()
        .await
        .unwrap();
    let request_id = header(&response, "x-request-id").unwrap();
    let traceparent = header(&response, "traceparent").unwrap();
    assert!(
        router::trace::is_valid_traceparent(&traceparent),
        "{traceparent}"
    );
    let timing = header(&response, "server-timing").unwrap();
    assert!(
        timing.starts_with("db;dur=1.0, router;dur="),
        "the node's timing comes first: {timing}"
    );
    assert!(
        timing.contains(r#"upstream;desc="ap-southeast";dur="#),
        "{timing}"
    );
    let seen = &fakes.routers["ap-southeast"].api_writes()[0];
    assert_eq!(seen.header("x-request-id").unwrap(), request_id);
    assert_eq!(seen.header("traceparent").unwrap(), traceparent);
    assert_eq!(seen.header("x-forwarded-for").unwrap(), "127.0.0.1");

    // Sent: passed through unchanged.
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = client
        .get(router.url("/api/v1/events"))
        .header("x-request-id", "req-123")
        .header("traceparent", given)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-request-id").unwrap(), "req-123");
    assert_eq!(header(&response, "traceparent").unwrap(), given);
    assert_eq!(header(&response, "x-served-by").unwrap(), "us-east/node-1");
    let seen = fakes.nodes["us-east"].api().pop().unwrap();
    assert_eq!(seen.header("x-request-id").unwrap(), "req-123");
    assert_eq!(seen.header("traceparent").unwrap(), given);

    // A malformed traceparent starts a new trace.
    let response = client
        .get(router.url("/api/v1/events"))
        .header("traceparent", "garbage")
        .send()
        .await
        .unwrap();
    let fresh = header(&response, "traceparent").unwrap();
    assert_ne!(fresh, "garbage");
    assert!(router::trace::is_valid_traceparent(&fresh));

    // The router's own answers carry the headers too.
    let response = client.get(router.url("/healthz")).send().await.unwrap();
    assert!(header(&response, "x-request-id").is_some());
    assert_eq!(
        header(&response, "x-served-by").unwrap(),
        "us-east/router-test"
    );
    assert!(header(&response, "server-timing")
        .unwrap()
        .starts_with("router;dur="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_a_json_400_and_are_never_forwarded() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let client = client();
    let cases: Vec<(&str, String, &str)> = vec![
        ("/api/v1/booking/reserve", "".into(), "invalid_json"),
        (
            "/api/v1/booking/reserve",
            "{not json".into(),
            "invalid_json",
        ),
        ("/api/v1/booking/reserve", "[1, 2]".into(), "invalid_json"),
        ("/api/v1/booking/reserve", "{}".into(), "validation"),
        (
            "/api/v1/booking/reserve",
            r#"{"eventId": "12ab"}"#.into(),
            "invalid_id",
        ),
        (
            "/api/v1/booking/reserve",
            r#"{"eventId": -5}"#.into(),
            "invalid_id",
        ),
        (
            "/api/v1/booking/reserve",
            r#"{"eventId": true}"#.into(),
            "invalid_id",
        ),
        (
            "/api/v1/booking/reserve",
            format!(r#"{{"eventId": "{}"}}"#, id_in(17)),
            "invalid_id",
        ),
        (
            "/api/v1/tickets/create",
            r#"{"vipCount": 5}"#.into(),
            "validation",
        ),
        (
            "/api/v1/booking/confirm",
            r#"{"bookingId": ""}"#.into(),
            "invalid_id",
        ),
        (
            "/api/v1/booking/cancel",
            "\"just a string\"".into(),
            "invalid_json",
        ),
        (
            "/api/v1/events",
            r#"{"homeRegion": "mars"}"#.into(),
            "validation",
        ),
        (
            "/api/v1/events",
            r#"{"homeRegion": null}"#.into(),
            "validation",
        ),
    ];
    for (path, body, code) in cases {
        let response = client
            .post(router.url(path))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path} {body}");
        let json = json_of(response).await;
        assert_eq!(json["error"]["code"], code, "{path} {body}: {json}");
        assert_eq!(json["error"]["status"], 400);
        assert!(json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    // Too large: 413 JSON, declared or not.
    let big = format!(r#"{{"eventId": "1", "pad": "{}"}}"#, "x".repeat(70 * 1024));
    let response = client
        .post(router.url("/api/v1/booking/reserve"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        json_of(response).await["error"]["code"],
        "payload_too_large"
    );
    // Undeclared (chunked) bodies are counted as they arrive.
    let addr = router.addr;
    let status_line = tokio::task::spawn_blocking(move || chunked_post(addr, &big))
        .await
        .unwrap();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line:?}");
    assert!(
        fakes.all_api_writes().is_empty(),
        "{:?}",
        fakes.all_api_writes()
    );

    // Outside /api/v1 the router answers 404 itself; inside, the node decides.
    let response = client.get(router.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(json_of(response).await["error"]["code"], "not_found");
    let response = client.get(router.url("/api/v1/nope")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(fakes.nodes["us-east"].api().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_from_a_peer_router_runs_here_or_is_refused() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let client = client();
    // Homed here: to the local node.
    let response = client
        .post(router.url("/api/v1/booking/reserve"))
        .header("x-router-hop", "eu-west/router-1")
        .json(&json!({"eventId": id_in(1).to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(fakes.nodes["us-east"].api_writes().len(), 1);
    // Homed elsewhere: refused, not forwarded a second time.
    let response = client
        .post(router.url("/api/v1/booking/reserve"))
        .header("x-router-hop", "eu-west/router-1")
        .json(&json!({"eventId": id_in(3).to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 421);
    assert_eq!(json_of(response).await["error"]["code"], "misdirected");
    assert_eq!(fakes.all_api_writes().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let client = client();
    let health = client.get(router.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(json_of(health).await["region"], "us-east");
    let ready = client.get(router.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready = json_of(ready).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["localNode"]["ok"], true);
    assert_eq!(ready["checks"]["peerRouters"]["eu-west"]["ok"], true);

    client
        .get(router.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    let public = client.get(router.url("/metrics")).send().await.unwrap();
    assert_eq!(
        public.status(),
        404,
        "metrics only on the operations listener"
    );
    let metrics = client.get(router.ops_url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("ticketing_router_http_requests_total"),
        "{text}"
    );
    assert!(text.contains(r#"outcome="answered""#), "{text}");
    assert!(text.ends_with("# EOF\n"));

    // Local node down, another region up: degraded but still ready (reads can fall back).
    let mut config = fakes.config();
    config.regions[0].node = refused_url().await;
    let degraded = RouterUnderTest::start(config).await;
    let ready = client.get(degraded.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready = json_of(ready).await;
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["checks"]["localNode"]["ok"], false);
    assert_eq!(ready["checks"]["fallbackNodes"]["eu-west"]["ok"], true);

    // Nothing reachable: not ready.
    let dead = refused_url().await;
    let config = config_with(|_| (dead.clone(), dead.clone()));
    let isolated = RouterUnderTest::start(config).await;
    let ready = client.get(isolated.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(json_of(ready).await["status"], "not_ready");
}

/// Every router serves the OpenAPI document by forwarding it to its own region's node, like
/// any read (so it is the document of the nodes' code, never a stale copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_comes_from_the_local_node() {
    let fakes = Fakes::start().await;
    let router = RouterUnderTest::start(fakes.config()).await;
    let response = client()
        .get(router.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-served-by").unwrap(), "us-east/node-1");
    let seen = fakes.nodes["us-east"].api();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].uri, "/api/v1/openapi.json");
}

/// POSTs `body` with `Transfer-Encoding: chunked` over a raw socket; the answer's status line.
fn chunked_post(addr: std::net::SocketAddr, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let head = format!(
        "POST /api/v1/booking/reserve HTTP/1.1\r\nhost: router\r\n\
         authorization: Bearer {}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        user_token()
    );
    let _ = stream.write_all(head.as_bytes());
    for chunk in body.as_bytes().chunks(8192) {
        // The router may answer and close before the whole body is sent.
        if stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || stream.write_all(chunk).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}
