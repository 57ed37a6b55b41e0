//! Reading shards in this region: one reader per shard on this region's streaming replica of it,
//! with the replay lag watched. A read goes to the replica when it is fresh enough (and has
//! replayed the read's consistency token), else to the shard's home primary, and when that is
//! unreachable too, to the replica anyway, marked with how stale it may be.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::reads::consistency::Lsn;

/// Where a read was served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Replica,
    Primary,
}

/// A pool to read one shard from, and what the answer will be worth.
pub struct ReadSource {
    pub pool: PgPool,
    pub source: Source,
    pub shard: String,
    /// Upper bound on how old the data may be.
    pub data_age_ms: u64,
    /// The reader had to use a replica past the lag bound (its primary was unreachable).
    pub stale: bool,
}

/// What the watcher knows about one shard's replica.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardHealth {
    pub shard: String,
    pub replica_up: bool,
    pub primary_up: bool,
    pub replay_lsn: Option<String>,
    /// Bytes of WAL the primary has that the replica has not replayed, at the last check.
    pub lag_bytes: Option<u64>,
    /// Upper bound on the replica's staleness: the replica holds everything the primary had
    /// this long ago.
    pub lag_ms: Option<u64>,
    pub lagging: bool,
}

#[derive(Default)]
struct LagState {
    replay_lsn: Option<Lsn>,
    replica_up: bool,
    primary_up: bool,
    lag_bytes: Option<u64>,
    /// (primary LSN, instant the primary was asked): the replica is as fresh as the newest
    /// sample whose LSN it has replayed. Measured this way round, lag cannot be computed with
    /// primary and replica swapped.
    samples: VecDeque<(Lsn, Instant)>,
    fresh_as_of: Option<Instant>,
}

pub struct ShardReader {
    pub name: String,
    pub region_id: u8,
    replica: Option<PgPool>,
    primary: Option<PgPool>,
    state: Mutex<LagState>,
}

const MAX_SAMPLES: usize = 256;

impl ShardReader {
    fn health(&self, max_lag: Duration) -> ShardHealth {
        let state = self.state.lock().expect("lag state");
        let lag_ms = self.lag(&state).map(|d| d.as_millis() as u64);
        ShardHealth {
            shard: self.name.clone(),
            replica_up: state.replica_up,
            primary_up: state.primary_up,
            replay_lsn: state.replay_lsn.map(|l| l.to_string()),
            lag_bytes: state.lag_bytes,
            lag_ms,
            lagging: self.replica.is_some()
                && lag_ms.is_none_or(|ms| ms > max_lag.as_millis() as u64),
        }
    }

    fn lag(&self, state: &LagState) -> Option<Duration> {
        state.fresh_as_of.map(|t| t.elapsed())
    }

    /// One check: ask the primary for its position first, then the replica for its replay
    /// position; the replica is fresh as of the newest primary sample it has replayed.
    async fn check(&self, timeout: Duration) {
        let Some(replica) = &self.replica else {
            return;
        };
        let asked = Instant::now();
        let primary_lsn = match &self.primary {
            Some(primary) => {
                lsn_query(primary, "SELECT pg_current_wal_insert_lsn()::text", timeout).await
            }
            None => None,
        };
        let replay_lsn = lsn_query(replica, "SELECT pg_last_wal_replay_lsn()::text", timeout).await;
        let mut state = self.state.lock().expect("lag state");
        state.primary_up = primary_lsn.is_some();
        state.replica_up = replay_lsn.is_some();
        if let Some(lsn) = replay_lsn {
            state.replay_lsn = Some(lsn);
        }
        if let Some(lsn) = primary_lsn {
            state.samples.push_back((lsn, asked));
            if state.samples.len() > MAX_SAMPLES {
                state.samples.pop_front();
            }
        }
        if let (Some(replay), Some((newest, _))) = (state.replay_lsn, state.samples.back()) {
            state.lag_bytes = Some(newest.0.saturating_sub(replay.0));
            if let Some((_, at)) = state.samples.iter().rev().find(|(lsn, _)| *lsn <= replay) {
                let at = *at;
                state.fresh_as_of = Some(state.fresh_as_of.map_or(at, |old| old.max(at)));
            }
            // Samples the replica has passed are no longer needed, bar the newest of them.
            while state.samples.len() > 1 && state.samples[1].0 <= replay {
                state.samples.pop_front();
            }
        }
    }
}

async fn lsn_query(pool: &PgPool, sql: &str, timeout: Duration) -> Option<Lsn> {
    let answer = tokio::time::timeout(
        timeout,
        sqlx::query_as::<_, (Option<String>,)>(sql).fetch_one(pool),
    )
    .await;
    match answer {
        Ok(Ok((Some(text),))) => text.parse().ok(),
        _ => None,
    }
}

/// Every shard this node reads.
pub struct Readers {
    shards: Vec<ShardReader>,
    max_lag: Duration,
    token_wait: Duration,
    poll: Duration,
}

impl Readers {
    /// Lazily connected pools: a replica or remote primary that is down must not stop the node
    /// from starting or serving its other shards.
    pub fn new(config: &Config, own_primary: PgPool) -> anyhow::Result<Readers> {
        let lazy = |url: &str| -> anyhow::Result<PgPool> {
            Ok(PgPoolOptions::new()
                .max_connections(config.reads.pool_size)
                .acquire_timeout(Duration::from_secs(2))
                .connect_lazy(url)?)
        };
        let mut shards = Vec::new();
        let own = config.region.as_str();
        let configured = &config.reads.shards;
        if !configured.iter().any(|s| s.name == own) {
            shards.push(ShardReader {
                name: own.to_owned(),
                region_id: config.region_id(own).unwrap_or_default(),
                replica: None,
                primary: Some(own_primary.clone()),
                state: Mutex::default(),
            });
        }
        for shard in configured {
            let primary = if shard.name == own {
                Some(own_primary.clone())
            } else {
                shard.primary.as_deref().map(lazy).transpose()?
            };
            shards.push(ShardReader {
                name: shard.name.clone(),
                region_id: config.region_id(&shard.name).unwrap_or_default(),
                replica: shard.replica.as_deref().map(lazy).transpose()?,
                primary,
                state: Mutex::default(),
            });
        }
        Ok(Readers {
            shards,
            max_lag: Duration::from_millis(config.reads.max_replica_lag_ms),
            token_wait: Duration::from_millis(config.reads.token_wait_ms),
            poll: Duration::from_millis(config.reads.lag_poll_ms),
        })
    }

    pub fn shards(&self) -> impl Iterator<Item = &ShardReader> {
        self.shards.iter()
    }

    pub fn shard_by_region(&self, region_id: u8) -> Option<&ShardReader> {
        self.shards.iter().find(|s| s.region_id == region_id)
    }

    pub fn shard_by_name(&self, name: &str) -> Option<&ShardReader> {
        self.shards.iter().find(|s| s.name == name)
    }

    pub fn health(&self) -> Vec<ShardHealth> {
        self.shards.iter().map(|s| s.health(self.max_lag)).collect()
    }

    /// Checks every shard's lag, forever.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check_all().await;
        }
    }

    /// One lag check of every shard, in parallel (a dark region's timeout delays no other).
    pub async fn check_all(&self) {
        let timeout = Duration::from_secs(1);
        futures::future::join_all(self.shards.iter().map(|s| s.check(timeout))).await;
    }

    /// Chooses where to read `shard` from so that the answer is at least as new as `after`.
    pub async fn source(&self, shard: &ShardReader, after: Option<Lsn>) -> ApiResult<ReadSource> {
        let read = |pool: &PgPool, source, data_age_ms, stale| ReadSource {
            pool: pool.clone(),
            source,
            shard: shard.name.clone(),
            data_age_ms,
            stale,
        };
        let Some(replica) = &shard.replica else {
            return match &shard.primary {
                Some(primary) => Ok(read(primary, Source::Primary, 0, false)),
                None => Err(ApiError::Unavailable),
            };
        };
        let (replay, lag, replica_up, primary_up) = {
            let state = shard.state.lock().expect("lag state");
            (
                state.replay_lsn,
                shard.lag(&state),
                state.replica_up,
                state.primary_up,
            )
        };
        let lag_ms = lag.map(|d| d.as_millis() as u64);
        let fresh = replica_up && lag.is_some_and(|l| l <= self.max_lag);
        if fresh {
            match after {
                None => return Ok(read(replica, Source::Replica, lag_ms.unwrap_or(0), false)),
                Some(token) if replay.is_some_and(|r| r >= token) => {
                    return Ok(read(replica, Source::Replica, lag_ms.unwrap_or(0), false))
                }
                Some(token) => {
                    if self.wait_for_replay(replica, token).await {
                        return Ok(read(replica, Source::Replica, lag_ms.unwrap_or(0), false));
                    }
                }
            }
        }
        // The watcher's last look decides whether the primary is worth a WAN round trip; a dark
        // one is noticed within a poll plus its timeout.
        if let Some(primary) = shard.primary.as_ref().filter(|_| primary_up) {
            return Ok(read(primary, Source::Primary, 0, false));
        }
        // The home primary is out of reach. Without a token the replica still answers, marked
        // stale; with one it cannot be honoured from a replica that has not replayed it.
        match after {
            Some(token) if replay.is_none_or(|r| r < token) => Err(ApiError::Unavailable),
            _ if replica_up || replay.is_some() => Ok(read(
                replica,
                Source::Replica,
                lag_ms.unwrap_or(u64::MAX),
                true,
            )),
            _ => Err(ApiError::Unavailable),
        }
    }

    /// Where a live stream's watcher reads `shard`: this region's replica whenever it is up,
    /// however far behind (its positions only move forward, and every region's replica replays
    /// the same WAL, so a stream's ids compare across regions); when it is down or there is
    /// none, wherever a read without a consistency token goes.
    pub async fn stream_source(&self, shard: &ShardReader) -> ApiResult<ReadSource> {
        if let Some(replica) = &shard.replica {
            let (up, lag) = {
                let state = shard.state.lock().expect("lag state");
                (state.replica_up, shard.lag(&state))
            };
            if up {
                return Ok(ReadSource {
                    pool: replica.clone(),
                    source: Source::Replica,
                    shard: shard.name.clone(),
                    data_age_ms: lag.map_or(u64::MAX, |l| l.as_millis() as u64),
                    stale: lag.is_none_or(|l| l > self.max_lag),
                });
            }
        }
        self.source(shard, None).await
    }

    /// Polls the replica's replay position until it passes `token`, within the wait bound.
    async fn wait_for_replay(&self, replica: &PgPool, token: Lsn) -> bool {
        let deadline = Instant::now() + self.token_wait;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return false;
            }
            match lsn_query(replica, "SELECT pg_last_wal_replay_lsn()::text", remaining).await {
                Some(replayed) if replayed >= token => return true,
                Some(_) => tokio::time::sleep(Duration::from_millis(5).min(remaining)).await,
                None => return false,
            }
        }
    }
}
