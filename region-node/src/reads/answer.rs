//! How a read is answered: the snapshot records the WAL position a read includes, and the
//! answer carries `X-Cache`, `X-Data-Age-Ms`, `X-Read-Source` and, for a gather over shards,
//! what it could not read.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres};
use wire::headers::{X_CACHE, X_DATA_AGE_MS, X_MISSING_SHARDS, X_READ_SOURCE, X_STALE};

use crate::error::{ApiError, ApiResult};
use crate::reads::cache::{Cached, Lookup};
use crate::reads::consistency::Lsn;
use crate::reads::replica::{ReadSource, Source};

/// A connection on `source` and the WAL position its reads will include at least (asked before
/// the data, and replay only moves forward).
pub async fn snapshot(source: &ReadSource) -> ApiResult<(PoolConnection<Postgres>, Lsn)> {
    let mut conn = source.pool.acquire().await?;
    let lsn = position(&mut conn, source).await?;
    Ok((conn, lsn))
}

/// Where `source` is in its shard's WAL now: a replica's replay position, a primary's insert
/// position. Read before a read, the data holds at least everything up to it; read after, at
/// most.
pub async fn position(conn: &mut PgConnection, source: &ReadSource) -> ApiResult<Lsn> {
    let sql = match source.source {
        Source::Replica => "SELECT pg_last_wal_replay_lsn()::text",
        Source::Primary => "SELECT pg_current_wal_insert_lsn()::text",
    };
    let (lsn,): (Option<String>,) = sqlx::query_as(sql).fetch_one(conn).await?;
    Ok(lsn.and_then(|l| l.parse().ok()).unwrap_or_default())
}

/// Serializes a value read from `source` into a cache entry.
pub fn entry<T: Serialize>(value: &T, source: &ReadSource, lsn: Lsn) -> ApiResult<Cached> {
    Ok(Cached {
        body: Bytes::from(serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.into()))?),
        lsn,
        source: source.source,
        shard: source.shard.clone(),
        data_age_ms: source.data_age_ms,
        stale: source.stale,
        read_at: Instant::now(),
        refreshing: AtomicBool::new(false),
    })
}

/// A read's JSON answer with its freshness headers.
pub struct ReadAnswer {
    pub body: Bytes,
    pub lookup: Option<Lookup>,
    pub data_age_ms: u64,
    pub stale: bool,
    pub sources: Vec<(String, Source)>,
    /// Shards a gather could not read at all (their answer is partial).
    pub missing: Vec<String>,
    /// For a page of a list: the path of the next page, sent as `Link: <…>; rel="next"`.
    pub next_page: Option<String>,
}

impl ReadAnswer {
    pub fn from_cached(entry: &Cached, lookup: Lookup) -> ReadAnswer {
        ReadAnswer {
            body: entry.body.clone(),
            lookup: Some(lookup),
            data_age_ms: entry.data_age_ms(),
            stale: entry.stale,
            sources: vec![(entry.shard.clone(), entry.source)],
            missing: Vec::new(),
            next_page: None,
        }
    }

    /// An empty answer that a gather over shards fills with [`ReadAnswer::add_shard`].
    pub fn gathering(lookup: Option<Lookup>) -> ReadAnswer {
        ReadAnswer {
            body: Bytes::new(),
            lookup,
            data_age_ms: 0,
            stale: false,
            sources: Vec::new(),
            missing: Vec::new(),
            next_page: None,
        }
    }

    /// One shard's part of a gather: the answer is as old and as stale as its worst part.
    pub fn add_shard(&mut self, shard: String, source: Source, data_age_ms: u64, stale: bool) {
        self.data_age_ms = self.data_age_ms.max(data_age_ms);
        self.stale |= stale;
        self.sources.push((shard, source));
    }

    pub fn uncached<T: Serialize>(value: &T, source: &ReadSource) -> ApiResult<ReadAnswer> {
        Ok(ReadAnswer {
            body: Bytes::from(serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.into()))?),
            lookup: None,
            data_age_ms: source.data_age_ms,
            stale: source.stale,
            sources: vec![(source.shard.clone(), source.source)],
            missing: Vec::new(),
            next_page: None,
        })
    }
}

impl IntoResponse for ReadAnswer {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::OK, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(lookup) = self.lookup {
            let value = if lookup == Lookup::Hit { "hit" } else { "miss" };
            headers.insert(X_CACHE, HeaderValue::from_static(value));
        }
        if let Ok(age) =
            HeaderValue::from_str(&self.data_age_ms.min(u64::from(u32::MAX)).to_string())
        {
            headers.insert(X_DATA_AGE_MS, age);
        }
        let sources = self
            .sources
            .iter()
            .map(|(shard, source)| {
                let source = if *source == Source::Replica {
                    "replica"
                } else {
                    "primary"
                };
                format!("{shard}={source}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = HeaderValue::from_str(&sources) {
            headers.insert(X_READ_SOURCE, value);
        }
        if self.stale {
            headers.insert(X_STALE, HeaderValue::from_static("true"));
        }
        if let Some(next) = &self.next_page {
            if let Ok(value) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
                headers.insert(header::LINK, value);
            }
        }
        if !self.missing.is_empty() {
            if let Ok(value) = HeaderValue::from_str(&self.missing.join(", ")) {
                headers.insert(X_MISSING_SHARDS, value);
            }
        }
        response
    }
}
