//! Synthetic users for runs of tens of thousands of users (`queue`): signing 50,000 accounts up
//! would cost 50,000 password hashes, so when `cluster.json` carries the deployment's JWT
//! secret loadgen mints access tokens itself (`wire::token::TokenKeys::issue`, what nodes sign
//! with) for user ids it makes: id-gen ids with the user's region bits, machine 31 (no node
//! runs as it) and the run's start time, so they collide with no real user nor another run.
//! Users live in their region's shard and bookings hold no foreign key to them, so a minted
//! user books like a signed-up one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use id_gen::{Id, IdParts, RegionId, MAX_MACHINE, MAX_SEQUENCE};
use wire::token::{Grant, Role, TokenKeys};

/// The machine number of minted ids.
pub const MINTING_MACHINE: u8 = MAX_MACHINE;

/// Makes users' ids and tokens for one run.
pub struct Mint {
    keys: TokenKeys,
    started_ms: u64,
    ttl: Duration,
}

impl Mint {
    /// A mint with the deployment's `secret`, tokens valid for `ttl`.
    pub fn new(secret: &str, ttl: Duration) -> anyhow::Result<Mint> {
        wire::token::check_secret("jwtSecret", secret).context("cluster.json's jwtSecret")?;
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_millis() as u64;
        Ok(Mint {
            keys: TokenKeys::new(secret.as_bytes(), wire::token::DEFAULT_LEEWAY_SECONDS),
            started_ms,
            ttl,
        })
    }

    /// The `n`-th user's id, in region `region` (its number in ids): 4,096 a millisecond
    /// from the run's start.
    pub fn user_id(&self, region: u8, n: u64) -> anyhow::Result<Id> {
        let per_ms = u64::from(MAX_SEQUENCE) + 1;
        let parts = IdParts {
            timestamp_ms: self.started_ms + n / per_ms,
            region: RegionId::new(region)?,
            machine: MINTING_MACHINE,
            sequence: (n % per_ms) as u16,
        };
        Ok(parts.encode()?)
    }

    /// An access token for `user`.
    pub fn token(&self, user: Id) -> anyhow::Result<String> {
        let grant = Grant {
            user,
            role: Role::User,
            session: None,
        };
        Ok(self.keys.issue(grant, self.ttl)?.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-long-enough";

    #[test]
    fn minted_tokens_verify_as_their_user_in_their_region() {
        let mint = Mint::new(SECRET, Duration::from_secs(600)).unwrap();
        let checker = TokenKeys::new(SECRET.as_bytes(), 5);
        let mut seen = std::collections::HashSet::new();
        for n in [0, 1, 4095, 4096, 49_999] {
            let id = mint.user_id(3, n).unwrap();
            assert_eq!(id.region().get(), 3);
            assert_eq!(id.machine(), MINTING_MACHINE);
            assert!(seen.insert(id), "{n} repeats an id");
            let caller = checker.verify(&mint.token(id).unwrap()).unwrap();
            assert_eq!(caller.id, id);
            assert_eq!(caller.role, Role::User);
            assert_eq!(caller.session, None);
        }
        // 50,000 users take 13 ms of id time; all distinct.
        let all: std::collections::HashSet<Id> =
            (0..50_000).map(|n| mint.user_id(1, n).unwrap()).collect();
        assert_eq!(all.len(), 50_000);
        // Another deployment's secret does not check them.
        let other = TokenKeys::new(b"another-secret-entirely", 5);
        assert!(other
            .verify(&mint.token(mint.user_id(1, 0).unwrap()).unwrap())
            .is_err());
    }

    #[test]
    fn bad_secrets_and_regions_are_refused() {
        assert!(Mint::new("short", Duration::from_secs(60)).is_err());
        let mint = Mint::new(SECRET, Duration::from_secs(60)).unwrap();
        assert!(mint.user_id(32, 0).is_err());
    }
}
