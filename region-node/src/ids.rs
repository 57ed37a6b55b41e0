//! What an id tells: its home region (the shard it was minted in, so where its writes run) and
//! its checked conversion from the database's BIGINT.

use id_gen::Id;

use crate::config::Config;
use crate::error::{ApiError, ApiResult};

/// An id read back from the database; one that does not decode is a bug, not bad input.
pub fn id_from_db(raw: i64) -> ApiResult<Id> {
    Id::try_from(raw).map_err(|e| ApiError::Internal(anyhow::anyhow!("bad id {raw} in db: {e}")))
}

/// The home-region decision: a write for an event (or a booking, minted in its event's home
/// region) runs only on a node of the region its id names. Another configured region gets
/// `421` naming it; a region no one configured means the id is not one of ours.
pub fn ensure_home(config: &Config, id: Id) -> ApiResult<()> {
    let home = id.region().get();
    if config.region_id(&config.region) == Some(home) {
        return Ok(());
    }
    match config.region_name(home) {
        Some(name) => Err(ApiError::Misdirected {
            home: name.to_owned(),
            local: config.region.clone(),
        }),
        // Id 0, or an id minted by no region of this deployment: not an id of ours at all.
        None => Err(ApiError::InvalidId(format!(
            "{id} is not an id of this deployment (it names no known region)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use id_gen::{IdParts, RegionId, EPOCH_UNIX_MS};

    fn minted_in(region: u8) -> Id {
        IdParts {
            timestamp_ms: EPOCH_UNIX_MS + 1_000,
            region: RegionId::new(region).unwrap(),
            machine: 0,
            sequence: 0,
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn writes_run_only_in_the_region_the_id_names() {
        let config = Config {
            region: "eu-west".into(),
            ..Config::default()
        };
        assert!(ensure_home(&config, minted_in(2)).is_ok());
        match ensure_home(&config, minted_in(1)) {
            Err(ApiError::Misdirected { home, local }) => {
                assert_eq!((home.as_str(), local.as_str()), ("us-east", "eu-west"));
            }
            other => panic!("expected 421, got {other:?}"),
        }
        assert!(matches!(
            ensure_home(&config, minted_in(9)),
            Err(ApiError::InvalidId(_))
        ));
    }
}
