//! A node's machine number, leased in its region's primary so that no two live nodes mint IDs
//! with the same (region, machine). The node stops minting the moment its lease might have lapsed.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use id_gen::{Id, IdGenerator, RegionId, SystemClock};
use sqlx::PgPool;

use crate::error::ApiError;

pub struct MachineLease {
    region: String,
    machine: u8,
    holder: String,
    ttl: Duration,
    /// Local deadline, counted from the start of the last successful renewal, so it always falls
    /// before the database's own `expires_at`.
    valid_until: Mutex<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("all 32 machine numbers of region {0} are leased by live nodes")]
    Exhausted(String),
    #[error("lease query failed: {0}")]
    Database(#[from] sqlx::Error),
}

impl MachineLease {
    /// Takes the lowest machine number whose lease is free or lapsed.
    pub async fn acquire(
        pool: &PgPool,
        region: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Arc<MachineLease>, LeaseError> {
        let ttl_secs = ttl.as_secs_f64();
        // Two nodes racing for one number: one inserts, the other's upsert matches nothing
        // (the lease is live) and it tries the next round.
        for _ in 0..64 {
            let started = Instant::now();
            let machine: Option<(i16,)> = sqlx::query_as(
                "INSERT INTO machine_leases (region, machine, holder, expires_at)
                 SELECT $1, m, $2, now() + make_interval(secs => $3)
                 FROM generate_series(0, 31) AS m
                 WHERE NOT EXISTS (SELECT 1 FROM machine_leases l
                                   WHERE l.region = $1 AND l.machine = m AND l.expires_at > now())
                 ORDER BY m LIMIT 1
                 ON CONFLICT (region, machine) DO UPDATE
                     SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                     WHERE machine_leases.expires_at <= now()
                 RETURNING machine",
            )
            .bind(region)
            .bind(holder)
            .bind(ttl_secs)
            .fetch_optional(pool)
            .await?;
            if let Some((machine,)) = machine {
                tracing::info!(region, machine, holder, "machine number leased");
                return Ok(Arc::new(MachineLease {
                    region: region.to_owned(),
                    machine: machine as u8,
                    holder: holder.to_owned(),
                    ttl,
                    valid_until: Mutex::new(started + local_validity(ttl)),
                }));
            }
            let free: (i64,) = sqlx::query_as(
                "SELECT 32 - count(*) FROM machine_leases WHERE region = $1 AND expires_at > now()",
            )
            .bind(region)
            .fetch_one(pool)
            .await?;
            if free.0 <= 0 {
                return Err(LeaseError::Exhausted(region.to_owned()));
            }
        }
        Err(LeaseError::Exhausted(region.to_owned()))
    }

    pub fn machine(&self) -> u8 {
        self.machine
    }

    pub fn is_valid(&self) -> bool {
        Instant::now() < *self.valid_until.lock().expect("lease mutex")
    }

    /// Extends the lease; `Ok(false)` means another node holds it now and we must stop minting.
    pub async fn renew(&self, pool: &PgPool) -> Result<bool, sqlx::Error> {
        let started = Instant::now();
        let renewed = sqlx::query(
            "UPDATE machine_leases SET expires_at = now() + make_interval(secs => $4)
             WHERE region = $1 AND machine = $2 AND holder = $3",
        )
        .bind(&self.region)
        .bind(self.machine as i16)
        .bind(&self.holder)
        .bind(self.ttl.as_secs_f64())
        .execute(pool)
        .await?
        .rows_affected()
            == 1;
        let mut valid_until = self.valid_until.lock().expect("lease mutex");
        *valid_until = if renewed {
            started + local_validity(self.ttl)
        } else {
            Instant::now()
        };
        Ok(renewed)
    }

    /// Gives the number back at shutdown so a restart does not wait out the TTL.
    pub async fn release(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        *self.valid_until.lock().expect("lease mutex") = Instant::now();
        sqlx::query(
            "DELETE FROM machine_leases WHERE region = $1 AND machine = $2 AND holder = $3",
        )
        .bind(&self.region)
        .bind(self.machine as i16)
        .bind(&self.holder)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Renews every third of the TTL until the task is dropped.
    pub async fn keep_renewed(self: Arc<Self>, pool: PgPool) {
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match self.renew(&pool).await {
                Ok(true) => {}
                Ok(false) => tracing::error!(
                    machine = self.machine,
                    "machine lease lost to another node; id minting stopped"
                ),
                Err(error) => tracing::warn!(%error, "machine lease renewal failed"),
            }
        }
    }
}

/// A safety margin under the TTL for clock-rate differences between node and database.
fn local_validity(ttl: Duration) -> Duration {
    ttl.mul_f64(0.8)
}

/// Mints IDs for this node, only while its machine lease holds.
pub struct IdSource {
    generator: IdGenerator<SystemClock>,
    lease: Arc<MachineLease>,
}

impl IdSource {
    pub fn new(
        region: RegionId,
        lease: Arc<MachineLease>,
        max_backward: Duration,
    ) -> Result<IdSource, id_gen::IdError> {
        let generator =
            IdGenerator::with_clock(region, lease.machine(), SystemClock, max_backward)?;
        Ok(IdSource { generator, lease })
    }

    pub fn next(&self) -> Result<Id, ApiError> {
        if !self.lease.is_valid() {
            tracing::error!("machine lease not held; refusing to mint ids");
            return Err(ApiError::Unavailable);
        }
        Ok(self.generator.next_id()?)
    }

    /// `count` ids in one go, for bulk ticket creation.
    pub fn next_many(&self, count: usize) -> Result<Vec<i64>, ApiError> {
        (0..count)
            .map(|_| self.next().map(|id| id.as_i64()))
            .collect()
    }

    pub fn lease(&self) -> &MachineLease {
        &self.lease
    }

    pub fn lease_handle(&self) -> Arc<MachineLease> {
        self.lease.clone()
    }
}
