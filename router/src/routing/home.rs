//! The home region a request names, found without a lookup: the region bits of a Snowflake id
//! (DESIGN section 1) in the path, the query or a JSON body field (a refresh token's session
//! id too), a region named in the body, or the shard an email hashes to.

use id_gen::Id;
use serde::Deserialize;
use serde_json::Value;
use wire::accounts::{email_shard, normalize_email, RefreshToken};
use wire::error::public_parse_message;

use crate::error::RouterError;
use crate::routing::body::top_level_field;
use crate::routing::regions::{Region, Regions};

/// The region of the id a read names: the first path segment that is a Snowflake id from a
/// configured region, else the `eventId` query parameter.
pub fn read_home<'a>(path: &str, query: Option<&str>, regions: &'a Regions) -> Option<&'a Region> {
    let from_id = |s: &str| {
        let id: Id = s.parse().ok()?;
        regions.by_id(id.region().get())
    };
    path.split('/')
        .filter(|s| !s.is_empty())
        .find_map(from_id)
        .or_else(|| {
            query?
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == "eventId")
                .and_then(|(_, v)| from_id(v))
        })
}

/// The body's field `name`, which must be there and not null; the body must be a JSON object.
fn field(body: &[u8], name: &str) -> Result<Value, RouterError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RouterError::InvalidJson("the body is empty".into()));
    }
    top_level_field(body, name)
        .map_err(|e| RouterError::InvalidJson(public_parse_message(&e.to_string())))?
        .filter(|v| !v.is_null())
        .ok_or_else(|| RouterError::Validation(format!("{name} is required")))
}

/// The home region of the id in the body's field `name`: a decimal string, or a JSON integer.
pub fn home_of_id<'a>(
    body: &[u8],
    name: &str,
    regions: &'a Regions,
) -> Result<&'a Region, RouterError> {
    let id = Id::deserialize(&field(body, name)?).map_err(|e| {
        RouterError::InvalidId(format!("{name}: {}", public_parse_message(&e.to_string())))
    })?;
    let bits = id.region().get();
    regions.by_id(bits).ok_or_else(|| {
        RouterError::InvalidId(format!(
            "{name} {id} was minted in region {bits}, which is not a configured region"
        ))
    })
}

/// The home region of an id written in the path (`what` names it in the error).
pub fn home_of_path_id<'a>(
    segment: &str,
    what: &str,
    regions: &'a Regions,
) -> Result<&'a Region, RouterError> {
    let id: Id = segment
        .parse()
        .map_err(|_| RouterError::InvalidId(format!("{what} must be a decimal Snowflake id")))?;
    let bits = id.region().get();
    regions.by_id(bits).ok_or_else(|| {
        RouterError::InvalidId(format!(
            "{what} {id} was minted in region {bits}, which is not a configured region"
        ))
    })
}

/// The region the body's field `name` names.
pub fn home_named<'a>(
    body: &[u8],
    name: &str,
    regions: &'a Regions,
) -> Result<&'a Region, RouterError> {
    let value = field(body, name)?;
    let Some(region) = value.as_str() else {
        return Err(RouterError::Validation(format!(
            "{name} must be a region name (one of {})",
            regions.names().join(", ")
        )));
    };
    regions.by_name(region).ok_or_else(|| {
        let shown: String = region.chars().take(64).collect();
        RouterError::Validation(format!(
            "{name} {shown:?} is not a configured region (one of {})",
            regions.names().join(", ")
        ))
    })
}

/// The region whose shard owns the body's `email` (`wire::accounts::email_shard`).
pub fn home_of_email<'a>(body: &[u8], regions: &'a Regions) -> Result<&'a Region, RouterError> {
    let value = field(body, "email")?;
    let email = value
        .as_str()
        .ok_or_else(|| RouterError::Validation("email must be a string".into()))?;
    let email = normalize_email(email)?;
    let ids: Vec<u8> = regions.all().iter().map(|r| r.id).collect();
    email_shard(&email, &ids)
        .and_then(|id| regions.by_id(id))
        .ok_or_else(|| RouterError::Internal(anyhow::anyhow!("no region to hold accounts")))
}

/// The region holding the session of the body's `refreshToken`, named by its id's region
/// bits. A token that names none is a bad credential (`401`), as at the node.
pub fn home_of_session<'a>(body: &[u8], regions: &'a Regions) -> Result<&'a Region, RouterError> {
    let value = field(body, "refreshToken")?;
    let token = value
        .as_str()
        .ok_or_else(|| RouterError::Validation("refreshToken must be a string".into()))?;
    let session = RefreshToken::parse(token)?.session;
    regions
        .by_id(session.region().get())
        .ok_or_else(|| RouterError::from(wire::accounts::AccountError::BadRefreshToken))
}
