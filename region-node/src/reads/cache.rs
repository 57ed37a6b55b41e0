//! The read cache in front of the shard readers: event details, availability and event list
//! pages, serialized once, kept for a short TTL (0 turns the cache off). Concurrent misses for
//! one key share one database read (single flight), and an entry read past half its TTL is
//! reloaded in the background while readers keep getting it (refresh ahead), so a key read
//! often never makes a reader wait on the database. Each entry remembers the WAL position it
//! was read at, so a read carrying a newer consistency token skips it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use moka::future::Cache;
use moka::ops::compute::Op;

use crate::error::{ApiError, ApiResult};
use crate::reads::consistency::Lsn;
use crate::reads::replica::Source;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheKey {
    Event(i64),
    Availability(i64),
    /// A page of one shard's event list: its region id, the shard's list generation (a write
    /// to the shard starts a new one, so dropping every page is one counter increment), the
    /// page's cursor and its length.
    EventList {
        shard: u8,
        generation: u64,
        after: Option<(i64, i64)>,
        limit: i64,
    },
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
    /// A background reload of this entry is under way (at most one at a time).
    pub refreshing: AtomicBool,
}

impl Cached {
    pub fn data_age_ms(&self) -> u64 {
        self.data_age_ms
            .saturating_add(self.read_at.elapsed().as_millis() as u64)
    }
}

pub struct ReadCache {
    /// `None` when the TTL is 0: every read goes to the database.
    entries: Option<Cache<CacheKey, Arc<Cached>>>,
    /// Age past which a hit also starts a background reload: half the TTL.
    refresh_after: Duration,
    /// Per shard (region id 0..=31), the generation of its event list pages.
    list_generations: [AtomicU64; 32],
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
        let entries = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build()
        });
        ReadCache {
            entries,
            refresh_after: ttl / 2,
            list_generations: std::array::from_fn(|_| AtomicU64::new(0)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The key of a page of `shard`'s event list, in the shard's current generation.
    pub fn event_list_key(&self, shard: u8, after: Option<(i64, i64)>, limit: i64) -> CacheKey {
        CacheKey::EventList {
            shard,
            generation: self.list_generations[usize::from(shard) % 32].load(Ordering::Acquire),
            after,
            limit,
        }
    }

    /// The entry for `key`, loading it with `load` on a miss (once, however many wait). With
    /// `after`, an entry older than that position is reloaded. Without it, a hit on an entry past
    /// half its TTL also reloads it in the background, so readers of a busy key do not wait for
    /// the database when it expires.
    pub async fn get_or_load<F, Fut>(
        &self,
        key: CacheKey,
        after: Option<Lsn>,
        load: F,
    ) -> ApiResult<(Arc<Cached>, Lookup)>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ApiResult<Cached>> + Send + 'static,
    {
        let Some(entries) = &self.entries else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Ok((Arc::new(load().await?), Lookup::Miss));
        };
        if let Some(after) = after {
            if let Some(entry) = entries.get(&key).await.filter(|e| e.lsn >= after) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((entry, Lookup::Hit));
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
            let entry = Arc::new(load().await?);
            entries.insert(key, entry.clone()).await;
            return Ok((entry, Lookup::Miss));
        }
        if let Some(entry) = entries.get(&key).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            if entry.read_at.elapsed() >= self.refresh_after
                && !entry.refreshing.swap(true, Ordering::AcqRel)
            {
                tokio::spawn(refresh(entries.clone(), key, entry.clone(), load));
            }
            return Ok((entry, Lookup::Hit));
        }
        let loaded = AtomicU64::new(0);
        let entry = entries
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

    /// Drops every cached view a change to `event_id`'s listing (its creation, its name, date or
    /// tiers) may have changed: its page, its availability and every page of its shard's event
    /// list (`shard_region`). Called on the home node that ran the write; other regions' nodes
    /// keep theirs for at most the TTL, and a read carrying the write's token skips them.
    pub async fn invalidate_event_views(&self, event_id: i64, shard_region: u8) {
        self.list_generations[usize::from(shard_region) % 32].fetch_add(1, Ordering::AcqRel);
        self.invalidate_counts(event_id).await;
    }

    /// Drops the views a change to `event_id`'s ticket counts (a claim, release, sale, expiry or
    /// new tickets) changed: its page and its availability. The event list's figures are left
    /// to age out within the TTL (a read carrying the write's token skips them): a hot event's
    /// bookings would otherwise empty every list page of its shard many times a second.
    pub async fn invalidate_counts(&self, event_id: i64) {
        if let Some(entries) = &self.entries {
            for key in [CacheKey::Event(event_id), CacheKey::Availability(event_id)] {
                // Through the key's lock, so a background refresh that read before the write
                // cannot put its answer back after this.
                entries
                    .entry(key)
                    .and_compute_with(|_| std::future::ready(Op::Remove))
                    .await;
            }
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

/// Reloads `stale` under `key` in the background and puts the new entry in its place, unless the
/// key has been dropped or reloaded meanwhile (a write's invalidation wins over a reload that
/// may have read before it). A failed reload leaves the entry to expire with its TTL.
async fn refresh<F, Fut>(
    entries: Cache<CacheKey, Arc<Cached>>,
    key: CacheKey,
    stale: Arc<Cached>,
    load: F,
) where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<Cached>>,
{
    match load().await {
        Ok(fresh) => {
            let fresh = Arc::new(fresh);
            entries
                .entry(key)
                .and_compute_with(|current| {
                    let op = match current {
                        Some(current) if Arc::ptr_eq(current.value(), &stale) => Op::Put(fresh),
                        _ => Op::Nop,
                    };
                    std::future::ready(op)
                })
                .await;
        }
        Err(error) => {
            stale.refreshing.store(false, Ordering::Release);
            tracing::debug!(%error, "read cache: background reload failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &'static str) -> Cached {
        Cached {
            body: Bytes::from_static(body.as_bytes()),
            lsn: Lsn(1),
            source: Source::Replica,
            shard: "us-east".into(),
            data_age_ms: 0,
            stale: false,
            read_at: Instant::now(),
            refreshing: AtomicBool::new(false),
        }
    }

    async fn read(cache: &ReadCache, key: CacheKey, body: &'static str) -> (Bytes, Lookup) {
        let (entry, lookup) = cache
            .get_or_load(key, None, || async { Ok(entry(body)) })
            .await
            .unwrap();
        (entry.body.clone(), lookup)
    }

    #[tokio::test]
    async fn a_write_drops_the_event_s_views_and_every_page_of_its_shard_s_list() {
        let cache = ReadCache::new(Duration::from_secs(60), 100);
        let page = |c: &ReadCache| c.event_list_key(1, Some((5, 6)), 10);
        assert_eq!(
            read(&cache, CacheKey::Event(7), "old").await.1,
            Lookup::Miss
        );
        assert_eq!(read(&cache, page(&cache), "old").await.1, Lookup::Miss);
        assert_eq!(
            read(&cache, page(&cache), "new").await,
            ("old".into(), Lookup::Hit)
        );
        let other_shard = cache.event_list_key(2, None, 10);
        read(&cache, other_shard.clone(), "theirs").await;

        cache.invalidate_event_views(7, 1).await;
        assert_eq!(
            read(&cache, CacheKey::Event(7), "new").await,
            ("new".into(), Lookup::Miss)
        );
        assert_eq!(
            read(&cache, page(&cache), "new").await,
            ("new".into(), Lookup::Miss)
        );
        // Another shard's list is not this write's business.
        assert_eq!(cache.event_list_key(2, None, 10), other_shard);
        assert_eq!(read(&cache, other_shard, "x").await.1, Lookup::Hit);
    }

    #[tokio::test]
    async fn a_ttl_of_zero_turns_the_cache_off() {
        let cache = ReadCache::new(Duration::ZERO, 100);
        assert_eq!(
            read(&cache, CacheKey::Availability(1), "a").await.1,
            Lookup::Miss
        );
        assert_eq!(
            read(&cache, CacheKey::Availability(1), "b").await,
            ("b".into(), Lookup::Miss)
        );
        assert_eq!((cache.hits(), cache.misses()), (0, 2));
    }

    /// Waits (briefly) until `key` reads as `body` from the cache.
    async fn until_cached(cache: &ReadCache, key: CacheKey, body: &str) {
        for _ in 0..200 {
            let current = cache.entries.as_ref().unwrap().get(&key).await;
            if current.is_some_and(|e| e.body == body.as_bytes()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{key:?} never became {body:?}");
    }

    #[tokio::test]
    async fn a_hit_past_half_the_ttl_is_served_and_reloaded_in_the_background() {
        let cache = ReadCache::new(Duration::from_millis(400), 100);
        let key = CacheKey::Availability(3);
        read(&cache, key.clone(), "old").await;
        // Young: a plain hit, no reload.
        assert_eq!(
            read(&cache, key.clone(), "new").await,
            ("old".into(), Lookup::Hit)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Past half the TTL: still answered at once from the cache...
        assert_eq!(
            read(&cache, key.clone(), "new").await,
            ("old".into(), Lookup::Hit)
        );
        // ...and the entry is replaced behind the reader's back, so it never expires while read.
        until_cached(&cache, key.clone(), "new").await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            read(&cache, key, "newer").await,
            ("new".into(), Lookup::Hit)
        );
        assert_eq!(cache.misses(), 1);
    }

    #[tokio::test]
    async fn a_write_s_invalidation_wins_over_a_reload_that_read_before_it() {
        let cache = ReadCache::new(Duration::from_millis(200), 100);
        let key = CacheKey::Event(9);
        read(&cache, key.clone(), "before the write").await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (entry, _) = cache
            .get_or_load(key.clone(), None, || async {
                released.await.ok();
                Ok(entry("read before the write"))
            })
            .await
            .unwrap();
        assert_eq!(entry.body, "before the write");
        // The write lands while the reload is out; then the reload comes back.
        cache.invalidate_counts(9).await;
        release.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            read(&cache, key, "after the write").await,
            ("after the write".into(), Lookup::Miss)
        );
    }

    #[tokio::test]
    async fn counts_changes_keep_the_event_list() {
        let cache = ReadCache::new(Duration::from_secs(60), 100);
        let page = cache.event_list_key(1, None, 10);
        read(&cache, page.clone(), "listed").await;
        read(&cache, CacheKey::Availability(4), "4 left").await;
        cache.invalidate_counts(4).await;
        assert_eq!(cache.event_list_key(1, None, 10), page);
        assert_eq!(read(&cache, page, "x").await.1, Lookup::Hit);
        assert_eq!(
            read(&cache, CacheKey::Availability(4), "3 left").await,
            ("3 left".into(), Lookup::Miss)
        );
    }
}
