//! The home region a request names, found without a lookup: the region bits of a Snowflake id
//! (DESIGN section 1) in the path, the query or a JSON body field, or a region named in the body.

use id_gen::Id;
use serde::Deserialize;
use serde_json::Value;
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
