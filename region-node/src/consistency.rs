//! Consistency tokens, for read-your-writes on replicas: `<home shard>:<commit LSN>`, e.g.
//! `us-east:0/3A1B2C8`. A read presenting one is never answered from data older than it.

use std::fmt;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

pub const HEADER: &str = "x-consistency-token";

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

impl<S: Send + Sync> FromRequestParts<S> for ReadAfter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut tokens = Vec::new();
        for value in parts.headers.get_all(HEADER) {
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
}
