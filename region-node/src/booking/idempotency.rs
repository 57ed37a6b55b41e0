//! `Idempotency-Key` for writes: scoped to the user, kept for a configured time. A repeat returns
//! the first response; a repeat while the first still runs gets `409`; failures that a retry may
//! cure (409 conflicts, 429, 5xx) are not recorded, so the retry really runs. Confirm and cancel
//! keep their record in `idempotency_keys`; a reserve's record is its booking (see
//! `booking::reserve`), and [`key_uses`] looks up both.

use std::future::Future;
use std::hash::Hasher;

use axum::http::{HeaderMap, StatusCode};
use id_gen::Id;
use serde::Serialize;
use wire::headers::IDEMPOTENCY_KEY;

use crate::error::{ApiError, ApiResult};
use crate::state::Node;

/// A write's answer: its status and JSON body, and whether it replays the answer to an earlier
/// request with the same key. (`http` sends it, with the body's consistency token as a header.)
#[derive(Debug)]
pub struct WriteAnswer {
    pub status: StatusCode,
    pub body: serde_json::Value,
    pub replayed: bool,
}

impl WriteAnswer {
    pub fn new<T: Serialize>(
        status: StatusCode,
        value: T,
        replayed: bool,
    ) -> ApiResult<WriteAnswer> {
        Ok(WriteAnswer {
            status,
            body: to_json(value)?,
            replayed,
        })
    }
}

/// The request's `Idempotency-Key`, if it sent one: 1 to 255 visible ASCII characters.
pub fn key_from_headers(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::Validation("Idempotency-Key must be visible ASCII".into()))?
        .trim();
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::Validation(
            "Idempotency-Key must be 1 to 255 characters".into(),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// A stable fingerprint of the operation and its request (FNV-1a; std's hasher may change
/// between Rust releases and fingerprints outlive a deploy).
fn fingerprint(operation: &str, request: &impl Serialize) -> i64 {
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    hasher.write(operation.as_bytes());
    hasher.write(&serde_json::to_vec(request).unwrap_or_default());
    hasher.finish() as i64
}

enum Start {
    Proceed,
    Replay(StatusCode, serde_json::Value),
}

/// What a key was used for before.
pub enum KeyUse {
    Unused,
    /// A reserve: its record is the booking that carries the key (`booking::reserve`).
    Reserve(i64),
    /// Another operation, recorded here.
    Recorded,
}

/// One round trip. (A batch of keyed reserves asks for all its keys at once: [`key_uses`].)
pub async fn key_use(conn: &mut sqlx::PgConnection, user: Id, key: &str) -> ApiResult<KeyUse> {
    let mut uses = key_uses(conn, &[(user.as_i64(), key.to_owned())]).await?;
    Ok(uses.pop().unwrap_or(KeyUse::Unused))
}

/// [`key_use`] for many (user, key) pairs in one statement, in their order.
pub async fn key_uses(
    conn: &mut sqlx::PgConnection,
    keys: &[(i64, String)],
) -> ApiResult<Vec<KeyUse>> {
    let users: Vec<i64> = keys.iter().map(|(u, _)| *u).collect();
    let names: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
    let rows: Vec<(Option<i64>, bool)> = sqlx::query_as(
        "SELECT (SELECT b.id FROM bookings b
                 WHERE b.user_id = k.user_id AND b.idempotency_key = k.key),
                EXISTS (SELECT 1 FROM idempotency_keys i
                        WHERE i.user_id = k.user_id AND i.key = k.key)
         FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS k(user_id, key, n)
         ORDER BY k.n",
    )
    .bind(users)
    .bind(names)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(booking, recorded)| KeyUse::from_columns(booking, recorded))
        .collect())
}

impl KeyUse {
    fn from_columns(booking: Option<i64>, recorded: bool) -> KeyUse {
        match (booking, recorded) {
            (Some(id), _) => KeyUse::Reserve(id),
            (None, true) => KeyUse::Recorded,
            (None, false) => KeyUse::Unused,
        }
    }
}

async fn start(node: &Node, user: Id, key: &str, operation: &str, print: i64) -> ApiResult<Start> {
    if let KeyUse::Reserve(_) = key_use(&mut *node.pool.acquire().await?, user, key).await? {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let lock_for = node.config.request_timeout().as_secs_f64() * 2.0;
    // A fresh key, or one whose owner crashed mid-request (its lock ran out) or whose record
    // aged out: take it.
    let taken = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, operation, fingerprint, locked_until)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
         ON CONFLICT (user_id, key) DO UPDATE
             SET operation = EXCLUDED.operation, fingerprint = EXCLUDED.fingerprint,
                 locked_until = EXCLUDED.locked_until, created_at = now(),
                 response_status = NULL, response_body = NULL
             WHERE (idempotency_keys.response_status IS NULL
                    AND idempotency_keys.locked_until <= now())
                OR idempotency_keys.created_at <= now() - make_interval(hours => $6)",
    )
    .bind(user.as_i64())
    .bind(key)
    .bind(operation)
    .bind(print)
    .bind(lock_for)
    .bind(node.config.booking.idempotency_ttl_hours as i32)
    .execute(&node.pool)
    .await?
    .rows_affected()
        == 1;
    if taken {
        return Ok(Start::Proceed);
    }
    let existing: Option<(String, i64, Option<i16>, Option<serde_json::Value>)> = sqlx::query_as(
        "SELECT operation, fingerprint, response_status, response_body
         FROM idempotency_keys WHERE user_id = $1 AND key = $2",
    )
    .bind(user.as_i64())
    .bind(key)
    .fetch_optional(&node.pool)
    .await?;
    match existing {
        Some((op, fp, _, _)) if op != operation || fp != print => {
            Err(ApiError::IdempotencyKeyReused)
        }
        Some((_, _, Some(status), Some(body))) => Ok(Start::Replay(
            StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK),
            body,
        )),
        Some(_) => Err(ApiError::IdempotencyInProgress),
        // Deleted between our two statements (aged out): the client may simply retry.
        None => Err(ApiError::IdempotencyInProgress),
    }
}

fn worth_recording(status: StatusCode) -> bool {
    status.is_success()
        || (status.is_client_error()
            && status != StatusCode::CONFLICT
            && status != StatusCode::TOO_MANY_REQUESTS)
}

async fn finish(node: &Node, user: Id, key: &str, status: StatusCode, body: &serde_json::Value) {
    let result = if worth_recording(status) {
        sqlx::query(
            "UPDATE idempotency_keys SET response_status = $3, response_body = $4, locked_until = NULL
             WHERE user_id = $1 AND key = $2",
        )
        .bind(user.as_i64())
        .bind(key)
        .bind(status.as_u16() as i16)
        .bind(body)
        .execute(&node.pool)
        .await
    } else {
        sqlx::query("DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2")
            .bind(user.as_i64())
            .bind(key)
            .execute(&node.pool)
            .await
    };
    if let Err(error) = result {
        // The key stays locked until `locked_until`; the write itself stands either way.
        tracing::warn!(%error, key, "could not record the idempotent response");
    }
}

/// Runs `operation` once per (user, key). Without a key it just runs. (Reserve keeps its
/// record in the booking instead: see `booking::reserve`.) An error is recorded too, when a
/// retry could not cure it, and returned as the error it is.
pub async fn run<R, T, F, Fut>(
    node: &Node,
    user: Id,
    key: Option<&str>,
    operation: &str,
    request: R,
    success: StatusCode,
    run_once: F,
) -> ApiResult<WriteAnswer>
where
    R: Serialize,
    T: Serialize,
    F: FnOnce(R) -> Fut,
    Fut: Future<Output = ApiResult<T>>,
{
    let Some(key) = key else {
        return WriteAnswer::new(success, run_once(request).await?, false);
    };
    let print = fingerprint(operation, &request);
    match start(node, user, key, operation, print).await? {
        Start::Replay(status, body) => Ok(WriteAnswer {
            status,
            body,
            replayed: true,
        }),
        Start::Proceed => match run_once(request).await.and_then(to_json) {
            Ok(body) => {
                finish(node, user, key, success, &body).await;
                Ok(WriteAnswer {
                    status: success,
                    body,
                    replayed: false,
                })
            }
            Err(e) => {
                finish(node, user, key, e.status(), &e.envelope().to_value()).await;
                Err(e)
            }
        },
    }
}

fn to_json<T: Serialize>(value: T) -> ApiResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| ApiError::Internal(e.into()))
}

/// Drops records older than the retention, a bounded batch at a time.
pub async fn purge_aged(
    conn: &mut sqlx::PgConnection,
    retention_hours: u32,
    batch: i64,
) -> ApiResult<u64> {
    Ok(sqlx::query(
        "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM idempotency_keys
             WHERE created_at <= now() - make_interval(hours => $1)
             LIMIT $2))",
    )
    .bind(retention_hours as i32)
    .bind(batch)
    .execute(conn)
    .await?
    .rows_affected())
}
