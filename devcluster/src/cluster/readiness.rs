//! Waiting until a started cluster is usable: each node and router answers its health check,
//! and every replica has replayed what its primary had.

use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{Cluster, Region};

impl Cluster {
    /// Every node answers `/readyz`, then every router `/healthz`.
    pub(super) async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        for r in &mut self.regions {
            let what = format!("the {} node", r.config.name);
            wait_healthy(http, &mut r.node, &format!("{}/readyz", r.node_url), &what).await?;
        }
        for r in &mut self.regions {
            for (k, (router, url)) in r.routers.iter_mut().zip(&r.router_urls).enumerate() {
                let what = format!("the {} router {}", r.config.name, k + 1);
                wait_healthy(http, router, &format!("{url}/healthz"), &what).await?;
            }
        }
        Ok(())
    }
}

/// Polls `url` until it answers 2xx, failing early if `child` exits.
async fn wait_healthy(
    http: &reqwest::Client,
    child: &mut Child,
    url: &str,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}); see its log in the state folder's logs/");
        }
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not become ready in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every replica has replayed its primary's WAL as of now, so that the demo data
/// reads the same in every region once the cluster is announced (a read without a consistency
/// token may otherwise still miss it on a far replica).
pub(super) async fn wait_replicated(regions: &[Region]) -> anyhow::Result<()> {
    use sqlx::Connection;
    let deadline = Instant::now() + Duration::from_secs(30);
    for home in regions {
        let mut primary = sqlx::PgConnection::connect(&home.primary_url).await?;
        let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
            .fetch_one(&mut primary)
            .await?;
        for (shard, _, url) in regions.iter().flat_map(|r| &r.replicas) {
            if *shard != home.config.name {
                continue;
            }
            let mut replica = sqlx::PgConnection::connect(url).await?;
            loop {
                let replayed: Option<bool> =
                    sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
                        .bind(&lsn)
                        .fetch_one(&mut replica)
                        .await?;
                if replayed == Some(true) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("a replica of {shard} did not replay {lsn} within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    Ok(())
}
