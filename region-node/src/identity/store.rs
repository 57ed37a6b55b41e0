//! All account SQL, each statement once: users (sign-up, lookup, login) and sessions (open,
//! rotate, revoke). A refresh secret is stored only as its SHA-256.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

/// A user as the API shows it.
#[derive(Debug, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub home_region: String,
    pub email: Option<String>,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// A user and their password hash, for a login.
#[derive(Debug, sqlx::FromRow)]
pub struct LoginRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub password_hash: Option<String>,
}

/// A new account, its email normalised and its password hashed.
pub struct NewAccount<'a> {
    pub id: i64,
    pub name: &'a str,
    pub home_region: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
}

/// The account, or `None` when its email is taken.
pub async fn insert_user(
    conn: &mut PgConnection,
    new: &NewAccount<'_>,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO users (id, name, home_region, email, password_hash)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (email) DO NOTHING
         RETURNING id, name, home_region, email, role, created_at",
    )
    .bind(new.id)
    .bind(new.name)
    .bind(new.home_region)
    .bind(new.email)
    .bind(new.password_hash)
    .fetch_optional(conn)
    .await
}

pub async fn user_by_id(pool: &PgPool, id: i64) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, home_region, email, role, created_at FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn login_by_email(pool: &PgPool, email: &str) -> Result<Option<LoginRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, home_region, email, role, created_at, password_hash
         FROM users WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(pool)
    .await
}

/// Opens a session; returns when its refresh token expires.
pub async fn insert_session(
    conn: &mut PgConnection,
    id: i64,
    user_id: i64,
    refresh_hash: &[u8],
    ttl_seconds: i64,
) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO sessions (id, user_id, refresh_hash, expires_at)
         VALUES ($1, $2, $3, now() + $4::bigint * interval '1 second')
         RETURNING expires_at",
    )
    .bind(id)
    .bind(user_id)
    .bind(refresh_hash)
    .bind(ttl_seconds)
    .fetch_one(conn)
    .await
}

/// The user of a live session whose current refresh secret hashes to `refresh_hash`.
pub async fn live_session_user(
    pool: &PgPool,
    id: i64,
    refresh_hash: &[u8],
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT user_id FROM sessions
         WHERE id = $1 AND refresh_hash = $2 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(id)
    .bind(refresh_hash)
    .fetch_optional(pool)
    .await
}

/// Replaces the current refresh secret `old` by `new`, keeping `old` as the previous one;
/// `None` when `old` is no longer current (a concurrent refresh won) or the session ended.
pub async fn rotate_session(
    pool: &PgPool,
    id: i64,
    old: &[u8],
    new: &[u8],
    ttl_seconds: i64,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE sessions
         SET previous_hash = refresh_hash, refresh_hash = $3, rotated_at = now(),
             expires_at = now() + $4::bigint * interval '1 second'
         WHERE id = $1 AND refresh_hash = $2 AND revoked_at IS NULL AND expires_at > now()
         RETURNING expires_at",
    )
    .bind(id)
    .bind(old)
    .bind(new)
    .bind(ttl_seconds)
    .fetch_optional(pool)
    .await
}

/// Revokes the session when `refresh_hash` is its previous secret: a rotated token presented
/// again. Whether it was.
pub async fn revoke_if_reused(
    pool: &PgPool,
    id: i64,
    refresh_hash: &[u8],
) -> Result<bool, sqlx::Error> {
    let revoked: Option<i64> = sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = coalesce(revoked_at, now())
         WHERE id = $1 AND previous_hash = $2
         RETURNING id",
    )
    .bind(id)
    .bind(refresh_hash)
    .fetch_optional(pool)
    .await?;
    Ok(revoked.is_some())
}

/// Logout: revokes the session whose current secret hashes to `refresh_hash` (again, if it
/// already was). Whether there is such a session.
pub async fn revoke_session(
    pool: &PgPool,
    id: i64,
    refresh_hash: &[u8],
) -> Result<bool, sqlx::Error> {
    let revoked: Option<i64> = sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = coalesce(revoked_at, now())
         WHERE id = $1 AND refresh_hash = $2
         RETURNING id",
    )
    .bind(id)
    .bind(refresh_hash)
    .fetch_optional(pool)
    .await?;
    Ok(revoked.is_some())
}
