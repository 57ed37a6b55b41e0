//! Consistency tokens, for read-your-writes on replicas: `<home shard>:<commit LSN>`, e.g.
//! `us-east:0/3A1B2C8`. Every write answers with one; a read presenting one is never answered
//! from data older than it.

use std::fmt;
use std::str::FromStr;

use axum::http::HeaderMap;
use sqlx::PgConnection;
use wire::headers::CONSISTENCY_TOKEN;

use crate::error::{ApiError, ApiResult};

/// A WAL position, as PostgreSQL prints it (`X/Y`, two hex halves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = ();

    fn from_str(s: &str) -> Result<Lsn, ()> {
        let (high, low) = s.split_once('/').ok_or(())?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 8 {
                return Err(());
            }
            u32::from_str_radix(p, 16).map_err(|_| ())
        };
        Ok(Lsn((u64::from(part(high)?) << 32) | u64::from(part(low)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyToken {
    pub shard: String,
    pub lsn: Lsn,
}

impl FromStr for ConsistencyToken {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<ConsistencyToken, ApiError> {
        let bad = || {
            ApiError::Validation(format!(
                "X-Consistency-Token must look like us-east:0/3A1B2C8, got {:?}",
                s.chars().take(60).collect::<String>()
            ))
        };
        let (shard, lsn) = s.trim().split_once(':').ok_or_else(bad)?;
        if shard.is_empty() {
            return Err(bad());
        }
        Ok(ConsistencyToken {
            shard: shard.to_owned(),
            lsn: lsn.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.shard, self.lsn)
    }
}

/// The tokens a read presented (one per shard it wrote to; the header may repeat or hold a
/// comma-separated list).
#[derive(Debug, Clone, Default)]
pub struct ReadAfter(pub Vec<ConsistencyToken>);

impl ReadAfter {
    /// The newest position this read must see in `shard`, if any.
    pub fn lsn_for(&self, shard: &str) -> Option<Lsn> {
        self.0
            .iter()
            .filter(|t| t.shard == shard)
            .map(|t| t.lsn)
            .max()
    }
}

impl ReadAfter {
    /// The `X-Consistency-Token` headers of a read (repeated, or comma-separated), at most 16.
    pub fn from_headers(headers: &HeaderMap) -> Result<ReadAfter, ApiError> {
        let mut tokens = Vec::new();
        for value in headers.get_all(CONSISTENCY_TOKEN) {
            let value = value
                .to_str()
                .map_err(|_| ApiError::Validation("X-Consistency-Token must be ASCII".into()))?;
            for token in value.split(',').filter(|t| !t.trim().is_empty()) {
                tokens.push(token.parse()?);
            }
        }
        if tokens.len() > 16 {
            return Err(ApiError::Validation("at most 16 consistency tokens".into()));
        }
        Ok(ReadAfter(tokens))
    }
}

/// The token of a write just committed on `conn`, this node's primary of `shard`: a position
/// in the WAL at or past the commit record, so a replica that has replayed it shows everything
/// the write did. The insert position, not `pg_current_wal_lsn()`: with asynchronous commit the
/// write position can still be short of the commit record.
pub async fn token_after_write(conn: &mut PgConnection, shard: &str) -> ApiResult<String> {
    let (lsn,): (String,) = sqlx::query_as("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(conn)
        .await?;
    Ok(format!("{shard}:{lsn}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_print_and_order_like_postgres() {
        let a: Lsn = "0/3A1B2C8".parse().unwrap();
        let b: Lsn = "1/0".parse().unwrap();
        assert_eq!(a.to_string(), "0/3A1B2C8");
        assert!(a < b);
        assert_eq!(b.0, 1 << 32);
        for bad in ["", "0", "/1", "1/", "g/1", "1/2/3", "123456789/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
        let token: ConsistencyToken = "us-east:0/3A1B2C8".parse().unwrap();
        assert_eq!(token.to_string(), "us-east:0/3A1B2C8");
        assert!("us-east".parse::<ConsistencyToken>().is_err());
        assert!(":0/1".parse::<ConsistencyToken>().is_err());
    }

    #[test]
    fn a_read_may_present_several_tokens_and_each_shard_waits_for_its_newest() {
        let mut headers = HeaderMap::new();
        headers.append(
            CONSISTENCY_TOKEN,
            "us-east:0/10, eu-west:0/5".parse().unwrap(),
        );
        headers.append(CONSISTENCY_TOKEN, "us-east:0/20".parse().unwrap());
        let after = ReadAfter::from_headers(&headers).unwrap();
        assert_eq!(after.lsn_for("us-east"), Some(Lsn(0x20)));
        assert_eq!(after.lsn_for("eu-west"), Some(Lsn(0x5)));
        assert_eq!(after.lsn_for("ap-southeast"), None);
        headers.insert(CONSISTENCY_TOKEN, "garbage".parse().unwrap());
        assert!(ReadAfter::from_headers(&headers).is_err());
    }
}
