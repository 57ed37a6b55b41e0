//! Multi-region behaviour on a real three-region devcluster with WAN latency switched on
//! (DESIGN's round trips: us-east<->eu-west 76 ms, us-east<->ap-southeast 222 ms,
//! eu-west<->ap-southeast 160 ms). One cluster for the whole file: it takes seconds to start.

use std::time::{Duration, Instant};

use devcluster::cluster::{Cluster, ClusterSpec};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use testkit::audit::audit_event;
use testkit::TestService;

fn spec() -> ClusterSpec {
    ClusterSpec {
        regions: vec!["us-east".into(), "eu-west".into(), "ap-southeast".into()],
        latency_scale: 1.0,
        state_dir: std::env::temp_dir().join(format!("multi-region-{}", std::process::id())),
        base_port: 21_000 + (std::process::id() % 400) as u16 * 20,
        // A thousand sign-ups and reserves from 127.0.0.1.
        rate_limit_scale: 1000.0,
        program: env!("CARGO_BIN_EXE_devcluster").into(),
        routers_per_region: 1,
    }
}

/// An event homed in `home` with `tickets` GA tickets, created through that region's router.
async fn create_event(http: &Client, cluster: &Cluster, home: &str, tickets: i64) -> String {
    let router = &cluster.region("eu-west").router_url;
    let event: Value = http
        .post(format!("{router}/api/v1/events"))
        .bearer_auth(&cluster.admin_token)
        .json(
            &json!({"name": "Race", "venue": "Arena", "startsAt": "2031-01-01T20:00:00Z",
                      "homeRegion": home, "tiers": [{"name": "GA", "priceCents": 1000}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = event["id"].as_str().unwrap().to_owned();
    let created = http
        .post(format!("{router}/api/v1/tickets/create"))
        .bearer_auth(&cluster.admin_token)
        .json(&json!({"eventId": id, "tiers": {"GA": tickets}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    id
}

/// `n` users signed up across the regions' routers; their tokens.
async fn sign_up(http: &Client, cluster: &Cluster, n: usize) -> Vec<String> {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .map(|i| {
            let router = cluster.regions[i % cluster.regions.len()]
                .router_url
                .clone();
            async move {
                // Each account lives in the shard its email hashes to, wherever it signs up.
                let user: Value = http
                    .post(format!("{router}/api/v1/users"))
                    .json(&json!({"name": format!("buyer {i}"),
                                  "email": format!("buyer{i}@multi-region.example"),
                                  "password": "buyer-password"}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                user["token"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await
}

/// A second node for `region`, in this process, on an address of its own.
struct SecondNode {
    ip: std::net::Ipv4Addr,
    service: TestService,
}

impl SecondNode {
    async fn stop(self) {
        let _ = self.service.stop().await;
    }
}

async fn second_node(cluster: &Cluster, region: &str) -> SecondNode {
    let file = cluster.state_dir.join(format!("{region}-node.toml"));
    let mut config = <region_node::Config as wire::ServiceConfig>::load(Some(&file)).unwrap();
    let ip = std::net::Ipv4Addr::new(127, 0, 2, 1);
    config.node_name = "node-2".into();
    config.listen = std::net::SocketAddr::from((ip, config.listen.port()));
    config.database.migrate = false;
    config.ops_listen = std::net::SocketAddr::from((ip, 0));
    let listeners = wire::server::Listeners::bind(config.listen, config.ops_listen)
        .await
        .unwrap();
    let service = TestService::start_on(listeners, |listeners, shutdown| {
        region_node::serve(config, listeners, shutdown)
    })
    .unwrap();
    SecondNode { ip, service }
}

fn demo_event(cluster: &Cluster, home: &str) -> String {
    cluster.demo["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["homeRegion"] == home)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn demo_user(cluster: &Cluster, home: &str) -> (String, String) {
    let user = cluster.demo["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["homeRegion"] == home)
        .unwrap();
    (
        user["id"].as_str().unwrap().to_owned(),
        user["token"].as_str().unwrap().to_owned(),
    )
}

/// Accounts across regions: a sign-up lands in its email's shard wherever it is sent, a login
/// opens its session in the caller's region (reading the account from that region's replica),
/// and refresh and logout find the session from any region.
async fn accounts_work_across_regions(cluster: &Cluster, http: &Client) {
    let (us, eu, ap) = (
        cluster.region("us-east"),
        cluster.region("eu-west"),
        cluster.region("ap-southeast"),
    );
    let post = |url: String, body: Value| http.post(url).json(&body).send();
    let ids: Vec<u8> = cluster.regions.iter().map(|r| r.config.id).collect();
    let email = wire::accounts::email_homed_in("traveller", "example.com", 1, &ids).unwrap();
    let signed = post(
        format!("{}/api/v1/users", eu.router_url),
        json!({"name": "Traveller", "email": email, "password": "traveller-password"}),
    )
    .await
    .unwrap();
    assert_eq!(signed.status(), StatusCode::CREATED);
    assert_eq!(signed.headers()["x-home-region"], "us-east");
    let consistency = signed.headers()["x-consistency-token"].clone();
    let user: Value = signed.json().await.unwrap();
    let in_us =
        format!("SELECT count(*) FROM users WHERE email = '{email}' AND home_region = 'us-east'");
    assert_eq!(count(&us.primary_url, &in_us).await, 1);
    // The same email in capitals, through another region: taken.
    let again = post(
        format!("{}/api/v1/users", ap.router_url),
        json!({"name": "Twin", "email": email.to_uppercase(), "password": "traveller-password"}),
    )
    .await
    .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);

    // Log in at once in ap-southeast: its replica of us-east waits for the sign-up's token.
    let login = http
        .post(format!("{}/api/v1/auth/login", ap.router_url))
        .header("x-consistency-token", consistency)
        .json(&json!({"email": email, "password": "traveller-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    assert_eq!(login.headers()["x-served-by"], "ap-southeast/node-1");
    let session: Value = login.json().await.unwrap();
    assert_eq!(session["user"]["id"], user["user"]["id"]);
    let refresh_token = session["refreshToken"].as_str().unwrap().to_owned();
    let session_id = refresh_token.split('.').next().unwrap();
    let in_ap = format!("SELECT count(*) FROM sessions WHERE id = {session_id}");
    assert_eq!(count(&ap.primary_url, &in_ap).await, 1);

    // Refresh through eu-west: sent to ap-southeast, where the session lives.
    let refreshed = post(
        format!("{}/api/v1/auth/refresh", eu.router_url),
        json!({"refreshToken": refresh_token}),
    )
    .await
    .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_eq!(refreshed.headers()["x-home-region"], "ap-southeast");
    let reused = post(
        format!("{}/api/v1/auth/refresh", us.router_url),
        json!({"refreshToken": refresh_token}),
    )
    .await
    .unwrap();
    assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);

    // The demo admin logs in with the printed password and gets the admin role.
    let admin = &cluster.demo["admin"];
    let login: Value = post(
        format!("{}/api/v1/auth/login", us.router_url),
        json!({"email": admin["email"], "password": admin["password"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(login["user"]["role"], "admin", "{login}");

    // Identity first at the router: no token and a broken body is a 401.
    let refused = http
        .post(format!("{}/api/v1/booking/reserve", eu.router_url))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_regions_read_locally_write_at_home_and_survive_a_dark_region() {
    let cluster = Cluster::start(&spec()).await.expect("cluster starts");
    let http = Client::new();
    let us_event = demo_event(&cluster, "us-east");
    let ap = cluster.region("ap-southeast");
    let us = cluster.region("us-east");

    // Reads of a us-east event in ap-southeast are answered there, from its replica: far
    // quicker than the 222 ms round trip to us-east.
    let path = format!("{}/api/v1/events/{us_event}", ap.node_url);
    let mut timings = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let answer = http.get(&path).send().await.unwrap();
        timings.push(started.elapsed());
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()["x-served-by"], "ap-southeast/node-1");
        let source = answer.headers()["x-read-source"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            source == "us-east=replica" || source == "us-east=primary",
            "{source}"
        );
    }
    timings.sort();
    assert!(
        timings[2] < Duration::from_millis(100),
        "median local read {:?} suggests a WAN hop",
        timings[2]
    );

    // A write sent straight to the wrong region's node: 421, nothing changes anywhere.
    let (_, ap_token) = demo_user(&cluster, "ap-southeast");
    let held_before = count(
        &us.primary_url,
        "SELECT count(*) FROM tickets WHERE status <> 'available'",
    )
    .await;
    let wrong = http
        .post(format!("{}/api/v1/booking/reserve", ap.node_url))
        .bearer_auth(&ap_token)
        .json(&json!({"eventId": us_event, "tickets": [{"tier": "GA", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(
        count(
            &us.primary_url,
            "SELECT count(*) FROM tickets WHERE status <> 'available'"
        )
        .await,
        held_before
    );
    assert_eq!(
        count(&ap.primary_url, "SELECT count(*) FROM bookings").await,
        0
    );

    accounts_work_across_regions(&cluster, &http).await;

    // Read-your-writes: a booking made at home in us-east by an ap-southeast user is visible in
    // ap-southeast with its token, every time.
    let (ap_user, _) = demo_user(&cluster, "ap-southeast");
    for round in 0..10 {
        let held = http
            .post(format!("{}/api/v1/booking/reserve", us.node_url))
            .bearer_auth(&ap_token)
            .json(&json!({"eventId": us_event, "tickets": [{"tier": "GA", "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(held.status(), StatusCode::CREATED);
        let token = held.headers()["x-consistency-token"]
            .to_str()
            .unwrap()
            .to_owned();
        let booking: Value = held.json().await.unwrap();
        let mine: Value = http
            .get(format!("{}/api/v1/booking/user/{ap_user}", ap.node_url))
            .bearer_auth(&ap_token)
            .header("x-consistency-token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            mine.as_array()
                .unwrap()
                .iter()
                .any(|b| b["bookingId"] == booking["bookingId"]),
            "round {round}: the booking must be visible with its token"
        );
    }

    // Through the routers: a booking from eu-west for a us-east event runs on the us-east
    // primary in fewer than two round trips (76 ms each); a read in ap-southeast stays there.
    let eu = cluster.region("eu-west");
    let (_, eu_token) = demo_user(&cluster, "eu-west");
    let mut booking_times = Vec::new();
    let mut last_booking = Value::Null;
    for _ in 0..7 {
        let started = Instant::now();
        let held = http
            .post(format!("{}/api/v1/booking/reserve", eu.router_url))
            .bearer_auth(&eu_token)
            .json(&json!({"eventId": us_event, "tickets": [{"tier": "GA", "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        booking_times.push(started.elapsed());
        assert_eq!(held.status(), StatusCode::CREATED);
        assert_eq!(held.headers()["x-served-by"], "us-east/node-1");
        assert_eq!(held.headers()["x-home-region"], "us-east");
        last_booking = held.json().await.unwrap();
    }
    booking_times.sort();
    assert!(
        booking_times[3] < Duration::from_millis(2 * 76),
        "median cross-region booking {:?} is not under two round trips",
        booking_times[3]
    );
    let on_us_primary = count(
        &us.primary_url,
        &format!(
            "SELECT count(*) FROM bookings WHERE id = {}",
            last_booking["bookingId"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(
        on_us_primary, 1,
        "the booking row is on the us-east primary"
    );
    assert_eq!(
        count(&eu.primary_url, "SELECT count(*) FROM bookings").await,
        0
    );
    let read = http
        .get(format!("{}/api/v1/events/{us_event}", ap.router_url))
        .send()
        .await
        .unwrap();
    assert_eq!(read.headers()["x-served-by"], "ap-southeast/node-1");

    // Read-your-writes through the ap-southeast router, also with replay paused on its replica
    // of us-east, where the read must come from the primary instead.
    let mut replica_of_us = PgConnection::connect(
        &ap.replicas
            .iter()
            .find(|(s, _, _)| s == "us-east")
            .unwrap()
            .2,
    )
    .await
    .unwrap();
    for paused in [false, true] {
        if paused {
            sqlx::query("SELECT pg_wal_replay_pause()")
                .execute(&mut replica_of_us)
                .await
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while sqlx::query_scalar::<_, String>("SELECT pg_get_wal_replay_pause_state()")
                .fetch_one(&mut replica_of_us)
                .await
                .unwrap()
                != "paused"
            {
                assert!(Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for round in 0..10 {
            let held = http
                .post(format!("{}/api/v1/booking/reserve", ap.router_url))
                .bearer_auth(&ap_token)
                .json(&json!({"eventId": us_event, "tickets": [{"tier": "VIP", "quantity": 1}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(held.status(), StatusCode::CREATED);
            let token = held.headers()["x-consistency-token"]
                .to_str()
                .unwrap()
                .to_owned();
            let booking: Value = held.json().await.unwrap();
            let mine = http
                .get(format!("{}/api/v1/booking/user/{ap_user}", ap.router_url))
                .bearer_auth(&ap_token)
                .header("x-consistency-token", &token)
                .send()
                .await
                .unwrap();
            assert_eq!(mine.headers()["x-served-by"], "ap-southeast/node-1");
            let sources = mine.headers()["x-read-source"].to_str().unwrap().to_owned();
            if paused {
                assert!(sources.contains("us-east=primary"), "{sources}");
            }
            let mine: Value = mine.json().await.unwrap();
            assert!(
                mine.as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["bookingId"] == booking["bookingId"]),
                "paused {paused}, round {round}: the booking must be visible with its token"
            );
        }
    }
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut replica_of_us)
        .await
        .unwrap();

    // 1,000 concurrent reserves for 100 tickets, through all three regions' routers.
    let race_event = create_event(&http, &cluster, "us-east", 100).await;
    let users = sign_up(&http, &cluster, 1_000).await;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(users.len()));
    let tasks = users.into_iter().enumerate().map(|(i, token)| {
        let router = cluster.regions[i % 3].router_url.clone();
        let (http, event, start) = (http.clone(), race_event.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            http.post(format!("{router}/api/v1/booking/reserve"))
                .bearer_auth(token)
                .json(&json!({"eventId": event, "tickets": [{"tier": "GA", "quantity": 1}]}))
                .send()
                .await
                .map(|r| {
                    (
                        r.status(),
                        r.headers().get("x-served-by").cloned(),
                        router.clone(),
                        r,
                    )
                })
        })
    });
    let mut statuses = Vec::new();
    for task in futures::future::join_all(tasks).await {
        statuses.push(match task {
            Ok(Ok((code, served_by, router, response))) => {
                let body = if code.is_server_error() {
                    response.text().await.unwrap_or_default()
                } else {
                    String::new()
                };
                Ok(Ok((code, served_by, format!("{router} {body}"))))
            }
            Ok(Err(e)) => Ok(Err(e)),
            Err(e) => Err(e),
        });
    }
    let held = statuses
        .iter()
        .filter(|s| matches!(s, Ok(Ok((StatusCode::CREATED, _, _)))))
        .count();
    let sold_out = statuses
        .iter()
        .filter(|s| matches!(s, Ok(Ok((StatusCode::CONFLICT, _, _)))))
        .count();
    // Anything else, counted by status, answering node and router, for the failure message.
    let mut others = std::collections::BTreeMap::new();
    for status in &statuses {
        let key = match status {
            Ok(Ok((StatusCode::CREATED | StatusCode::CONFLICT, _, _))) => continue,
            Ok(Ok((code, served_by, router))) => format!("{code} from {served_by:?} via {router}"),
            other => format!("{other:?}"),
        };
        *others.entry(key).or_insert(0) += 1;
    }
    assert_eq!((held, sold_out), (100, 900), "other answers: {others:?}");
    let race_audit = audit_event(
        &sqlx::PgPool::connect(&us.primary_url).await.unwrap(),
        race_event.parse().unwrap(),
    )
    .await
    .unwrap();
    assert!(race_audit.is_clean(), "{:?}", race_audit.violations);

    // us-east goes dark (every link into or out of it black-holes).
    let bookings_before_dark = count(&us.primary_url, "SELECT count(*) FROM bookings").await;
    cluster.cut_region("us-east");
    let eu_event = demo_event(&cluster, "eu-west");
    // Writes for its events, from the other regions: a fast 503 with Retry-After.
    for region in ["eu-west", "ap-southeast"] {
        let started = Instant::now();
        let refused = http
            .post(format!(
                "{}/api/v1/booking/reserve",
                cluster.region(region).router_url
            ))
            .bearer_auth(&eu_token)
            .json(&json!({"eventId": us_event, "tickets": [{"tier": "GA", "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "from {region}"
        );
        assert!(refused.headers().contains_key("retry-after"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "503 took {:?}",
            started.elapsed()
        );
    }
    // Writes for another region's events are unaffected.
    let eu_write = http
        .post(format!(
            "{}/api/v1/booking/reserve",
            cluster.region("ap-southeast").router_url
        ))
        .bearer_auth(&eu_token)
        .json(&json!({"eventId": eu_event, "tickets": [{"tier": "GA", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(eu_write.status(), StatusCode::CREATED);
    // Reads of us-east's events still succeed in the other regions, from their replicas, and
    // once the lag bound passes they say they are stale.
    let availability = format!("/api/v1/tickets?eventId={us_event}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = http
            .get(format!("{}{availability}", ap.node_url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::OK,
            "reads survive a dark home region"
        );
        if answer.headers().get("x-stale").is_some() {
            assert_eq!(answer.headers()["x-read-source"], "us-east=replica");
            break;
        }
        assert!(Instant::now() < deadline, "never marked stale");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let eu_read = http
        .get(format!("{}{availability}", eu.node_url))
        .send()
        .await
        .unwrap();
    assert_eq!(eu_read.status(), StatusCode::OK);

    // Recovery: links back, replicas catch up, nothing lost or doubled.
    cluster.restore_region("us-east");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = http
            .get(format!("{}{availability}", ap.node_url))
            .send()
            .await
            .unwrap();
        if answer.headers().get("x-stale").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "still stale after recovery");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let audit = audit_event(
        &sqlx::PgPool::connect(&us.primary_url).await.unwrap(),
        us_event.parse().unwrap(),
    )
    .await
    .unwrap();
    assert!(audit.is_clean(), "{:?}", audit.violations);
    assert_eq!(
        count(&us.primary_url, "SELECT count(*) FROM bookings").await,
        bookings_before_dark,
        "nothing lost or doubled while dark"
    );
    let after = http
        .post(format!("{}/api/v1/booking/reserve", eu.router_url))
        .bearer_auth(&eu_token)
        .json(&json!({"eventId": us_event, "tickets": [{"tier": "GA", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::CREATED,
        "writes work again after recovery"
    );

    // A changed DNS record moves traffic within its TTL: a second eu-west node appears on
    // another address and eu-west's name for its node is pointed there.
    let second = second_node(&cluster, "eu-west").await;
    cluster
        .region("eu-west")
        .dns
        .set("node.eu-west", second.ip)
        .unwrap();
    let moved_at = Instant::now();
    loop {
        let answer = http
            .get(format!("{}/api/v1/events/{eu_event}", eu.router_url))
            .send()
            .await
            .unwrap();
        if answer.headers()["x-served-by"] == "eu-west/node-2" {
            break;
        }
        assert!(
            moved_at.elapsed() < Duration::from_secs(5),
            "traffic did not move within the 2 s TTL (plus margin)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.stop().await;
    cluster.stop().await;
}
