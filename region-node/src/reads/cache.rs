//! The read cache in front of the shard readers: event details, availability and event lists,
//! serialized once, kept for a short TTL. Concurrent misses for one key share one database read
//! (single flight). Each entry remembers the WAL position it was read at, so a read carrying a
//! newer consistency token skips it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use moka::future::Cache;

use crate::error::{ApiError, ApiResult};
use crate::reads::consistency::Lsn;
use crate::reads::replica::Source;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheKey {
    Event(i64),
    Availability(i64),
    /// One shard's event list, soonest first, as long as a list may be (the shard's region id).
    /// One entry per shard whatever `?limit=` asks, so a write drops exactly one key.
    EventList(u8),
}

/// A serialized answer and what it is worth.
#[derive(Debug)]
pub struct Cached {
    pub body: Bytes,
    /// The shard's WAL position the data includes at least.
    pub lsn: Lsn,
    pub source: Source,
    pub shard: String,
    /// Staleness bound when it was read; grows with the entry's age.
    pub data_age_ms: u64,
    /// Read from a replica past the lag bound because its primary was out of reach.
    pub stale: bool,
    pub read_at: Instant,
}

impl Cached {
    pub fn data_age_ms(&self) -> u64 {
        self.data_age_ms
            .saturating_add(self.read_at.elapsed().as_millis() as u64)
    }
}

pub struct ReadCache {
    entries: Cache<CacheKey, Arc<Cached>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Was the answer a cache hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

impl ReadCache {
    pub fn new(ttl: Duration, capacity: u64) -> ReadCache {
        ReadCache {
            entries: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The entry for `key`, loading it with `load` on a miss (once, however many wait). With
    /// `after`, an entry older than that position is reloaded.
    pub async fn get_or_load<F, Fut>(
        &self,
        key: CacheKey,
        after: Option<Lsn>,
        load: F,
    ) -> ApiResult<(Arc<Cached>, Lookup)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ApiResult<Cached>>,
    {
        if let Some(after) = after {
            if let Some(entry) = self.entries.get(&key).await.filter(|e| e.lsn >= after) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((entry, Lookup::Hit));
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
            let entry = Arc::new(load().await?);
            self.entries.insert(key, entry.clone()).await;
            return Ok((entry, Lookup::Miss));
        }
        let loaded = AtomicU64::new(0);
        let entry = self
            .entries
            .try_get_with(key, async {
                loaded.store(1, Ordering::Relaxed);
                load().await.map(Arc::new)
            })
            .await
            .map_err(|e: Arc<ApiError>| shared_error(&e))?;
        let lookup = if loaded.load(Ordering::Relaxed) == 1 {
            self.misses.fetch_add(1, Ordering::Relaxed);
            Lookup::Miss
        } else {
            self.hits.fetch_add(1, Ordering::Relaxed);
            Lookup::Hit
        };
        Ok((entry, lookup))
    }

    /// Drops every cached view a write to `event_id` (homed in shard `shard_region`) may have
    /// changed: its page, its availability and its shard's event list. Every write that
    /// changes an event's views calls this, on the home node that ran it; other regions' nodes
    /// keep theirs for at most the TTL, and a read carrying the write's token skips them.
    pub async fn invalidate_event_views(&self, event_id: i64, shard_region: u8) {
        for key in [
            CacheKey::Event(event_id),
            CacheKey::Availability(event_id),
            CacheKey::EventList(shard_region),
        ] {
            self.entries.invalidate(&key).await;
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    pub fn hit_ratio(&self) -> Option<f64> {
        let (h, m) = (self.hits(), self.misses());
        (h + m > 0).then(|| h as f64 / (h + m) as f64)
    }
}

/// A load error shared by every waiter of one flight, re-made for each of them.
pub fn shared_error(error: &ApiError) -> ApiError {
    match error {
        ApiError::NotFound(what) => ApiError::NotFound(what.clone()),
        ApiError::Unavailable => ApiError::Unavailable,
        ApiError::Timeout => ApiError::Timeout,
        ApiError::InvalidId(m) => ApiError::InvalidId(m.clone()),
        other => ApiError::Internal(anyhow::anyhow!("cached read failed: {other}")),
    }
}
