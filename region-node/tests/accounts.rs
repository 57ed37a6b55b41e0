//! Accounts end to end on one node over real PostgreSQL: sign-up, login, refresh with rotation
//! and reuse detection, logout; one account per email whatever its case; one answer for a wrong
//! password and an unknown email; the role in a token comes from the users row; rows from
//! before accounts survive the migration.

mod common;

use common::{Api, User, PASSWORD};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::migrate::Migrate;
use sqlx::{Connection, PgConnection};

async fn login(api: &Api, email: &str, password: &str) -> common::Answer {
    api.post(
        "/auth/login",
        None,
        json!({ "email": email, "password": password }),
    )
    .await
}

async fn refresh(api: &Api, refresh_token: &str) -> common::Answer {
    api.post(
        "/auth/refresh",
        None,
        json!({ "refreshToken": refresh_token }),
    )
    .await
}

/// (revoked, previous hash set) of the session a refresh token names.
async fn session_state(api: &Api, refresh_token: &str) -> (bool, bool) {
    let id: i64 = refresh_token
        .split('.')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("session id");
    sqlx::query_as(
        "SELECT revoked_at IS NOT NULL, previous_hash IS NOT NULL FROM sessions WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&api.node.db)
    .await
    .expect("the session row")
}

fn assert_signed_in(answer: &common::Answer, user: &User) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let body = &answer.body;
    assert_eq!(body["user"]["id"], user.id.as_str());
    assert_eq!(body["user"]["email"], user.email.as_str());
    for field in [
        "token",
        "tokenExpiresAt",
        "refreshToken",
        "refreshTokenExpiresAt",
    ] {
        assert!(body[field].is_string(), "{field} in {body}");
    }
}

#[tokio::test]
async fn sign_up_login_refresh_logout() {
    let api = Api::start().await;
    let user = api.signup("Ada Lovelace").await;
    // The sign-up's access token works at once, and carries a session.
    let own = api
        .get(&format!("/users/{}", user.id), Some(&user.token))
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.body["role"], "user");
    assert_eq!(own.body["email"], user.email.as_str());
    let stored: (String, String) =
        sqlx::query_as("SELECT email, password_hash FROM users WHERE id = $1")
            .bind(user.id.parse::<i64>().unwrap())
            .fetch_one(&api.node.db)
            .await
            .unwrap();
    assert_eq!(stored.0, user.email);
    assert!(stored.1.starts_with("$argon2id$"), "{}", stored.1);

    // Login with the email in another case and spaces: a second session.
    let answer = login(&api, &format!(" {} ", user.email.to_uppercase()), PASSWORD).await;
    assert_signed_in(&answer, &user);
    let session = User::signed_in(&answer.body);
    assert_ne!(session.refresh_token, user.refresh_token);
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(answer.body["tokenExpiresAt"].clone()).unwrap();
    let ttl = expires - chrono::Utc::now();
    assert!(ttl <= chrono::Duration::minutes(15) && ttl > chrono::Duration::minutes(14));

    // Refresh: a new pair; the old refresh token stops working.
    let answer = refresh(&api, &session.refresh_token).await;
    assert_signed_in(&answer, &user);
    let rotated = User::signed_in(&answer.body);
    assert_ne!(rotated.refresh_token, session.refresh_token);
    assert_eq!(
        rotated.refresh_token.split('.').next(),
        session.refresh_token.split('.').next(),
        "the same session"
    );
    let reserve_ok = api
        .get(&format!("/booking/user/{}", user.id), Some(&rotated.token))
        .await;
    assert_eq!(reserve_ok.status, StatusCode::OK, "{}", reserve_ok.body);
    assert_eq!(
        session_state(&api, &rotated.refresh_token).await,
        (false, true)
    );

    // Logout: 204, the session is revoked and its refresh token refused.
    let out = api
        .send(
            reqwest::Method::POST,
            "/auth/logout",
            None,
            Some(json!({ "refreshToken": rotated.refresh_token })),
            None,
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(
        session_state(&api, &rotated.refresh_token).await.0,
        "revoked"
    );
    let after = refresh(&api, &rotated.refresh_token).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.body);
    // The sign-up's own session is untouched by that logout.
    let other = refresh(&api, &user.refresh_token).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
}

#[tokio::test]
async fn a_refresh_token_used_twice_revokes_its_session() {
    let api = Api::start().await;
    let user = api.signup("Grace").await;
    let first = refresh(&api, &user.refresh_token).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let newest = User::signed_in(&first.body);

    // The rotated token again: refused, and the whole session with it.
    let reused = refresh(&api, &user.refresh_token).await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED, "{}", reused.body);
    assert!(
        reused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{}",
        reused.body
    );
    assert!(
        session_state(&api, &newest.refresh_token).await.0,
        "revoked"
    );
    let newest_refused = refresh(&api, &newest.refresh_token).await;
    assert_eq!(newest_refused.status, StatusCode::UNAUTHORIZED);

    // Two refreshes racing with one token: one wins; the other is a second use.
    let answer = login(&api, &user.email, PASSWORD).await;
    let session = User::signed_in(&answer.body);
    let (a, b) = tokio::join!(
        refresh(&api, &session.refresh_token),
        refresh(&api, &session.refresh_token)
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401], "{} / {}", a.body, b.body);
    assert!(
        session_state(&api, &session.refresh_token).await.0,
        "revoked"
    );
}

#[tokio::test]
async fn one_account_per_email_and_one_answer_for_bad_credentials() {
    let api = Api::start().await;
    let user = api.signup("Ann").await;
    let taken = api
        .post(
            "/users",
            None,
            json!({ "name": "Ann again", "email": user.email.to_uppercase(),
                    "password": "another password" }),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    assert_eq!(taken.code(), "email_taken");

    let wrong = login(&api, &user.email, "not the password").await;
    let unknown = login(&api, &api.node.email("nobody", 0), PASSWORD).await;
    for answer in [&wrong, &unknown] {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
        assert_eq!(answer.body["error"]["message"], "wrong email or password");
    }
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&api.node.db)
        .await
        .unwrap();
    assert_eq!(sessions, 1, "only the sign-up's session");
}

#[tokio::test]
async fn the_role_comes_from_the_users_row_at_login_and_refresh() {
    let api = Api::start().await;
    let user = api.signup("Operator").await;
    let event = json!({"name": "Admin Night", "venue": "Hall", "startsAt": "2031-01-01T20:00:00Z",
                       "homeRegion": "us-east", "tiers": [{"name": "GA", "priceCents": 100}]});
    let refused = api.post("/events", Some(&user.token), event.clone()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // What the README tells operators to run.
    sqlx::query("UPDATE users SET role = 'admin' WHERE email = $1")
        .bind(&user.email)
        .execute(&api.node.db)
        .await
        .unwrap();
    let refreshed = refresh(&api, &user.refresh_token).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_eq!(refreshed.body["user"]["role"], "admin");
    let admin = User::signed_in(&refreshed.body);
    let created = api.post("/events", Some(&admin.token), event.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    sqlx::query("UPDATE users SET role = 'user' WHERE email = $1")
        .bind(&user.email)
        .execute(&api.node.db)
        .await
        .unwrap();
    let demoted = User::signed_in(&login(&api, &user.email, PASSWORD).await.body);
    let refused = api.post("/events", Some(&demoted.token), event).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn users_from_before_accounts_survive_the_migration() {
    let cluster = testkit::postgres::shared_test_cluster().await;
    let url = cluster.create_unique_database("legacy").await.unwrap();
    let mut db = PgConnection::connect(&url).await.unwrap();
    db.ensure_migrations_table().await.unwrap();
    for migration in region_node::MIGRATOR.iter().filter(|m| m.version < 3) {
        db.apply(migration).await.unwrap();
    }
    sqlx::query("INSERT INTO users (id, name, home_region) VALUES (4242, 'Old Timer', 'us-east')")
        .execute(&mut db)
        .await
        .unwrap();
    region_node::MIGRATOR.run(&mut db).await.unwrap();
    let (name, email, role): (String, Option<String>, String) =
        sqlx::query_as("SELECT name, email, role FROM users WHERE id = 4242")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(
        (name.as_str(), email, role.as_str()),
        ("Old Timer", None, "user")
    );
    // Stored emails are normal and hashes argon2id, whoever writes them.
    for (email, hash) in [
        ("Mixed@Example.com", "$argon2id$v=19$x"),
        ("ok@example.com", "plain"),
    ] {
        let refused = sqlx::query(
            "INSERT INTO users (id, name, home_region, email, password_hash)
             VALUES (4343, 'x', 'us-east', $1, $2)",
        )
        .bind(email)
        .bind(hash)
        .execute(&mut db)
        .await;
        assert!(refused.is_err(), "{email} {hash}");
    }
}
