//! Deciding where a request goes: pure functions of the request and the region table, so every
//! rule is unit-tested without a network.
//!
//! Reads stay in the region. A write goes to its home region, which the router finds without a
//! lookup: it is in the Snowflake id's region bits (DESIGN section 1), or named by the body.

use axum::http::Method;
use id_gen::Id;
use serde::Deserialize;
use serde_json::Value;

use crate::error::RouterError;
use crate::regions::{Region, Regions};

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan<'a> {
    /// GET/HEAD: the own region's node, falling back to other regions' nodes when it is down.
    /// `home` is the region of the id the path names, if any (reported, not routed on: every
    /// region holds a replica of every shard).
    Read { home: Option<&'a Region> },
    /// Anything else: the home region and only the home region.
    Write { home: &'a Region, via: Via },
}

/// How a write reaches its home region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Home is this region: straight to the local node.
    LocalNode,
    /// Home is elsewhere: to the home region's router, which sends it to its own node. One WAN
    /// round trip, and the locked transaction runs next to its primary.
    PeerRouter,
}

/// What names a write's home region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteRule {
    /// An event id in the body (`eventId`).
    EventId,
    /// A booking id in the body (`bookingId`): bookings are minted in their event's home
    /// region, so their region bits name it.
    BookingId,
    /// A region name in the body (`homeRegion`): creating an event.
    HomeRegion,
    /// The caller's region: creating a user (users live where they signed up).
    ClientRegion,
    /// Anything else: the local node decides (and refuses what is not its own).
    Local,
}

pub fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Which rule homes a write to `path`.
pub fn write_rule(method: &Method, path: &str) -> WriteRule {
    if method != Method::POST {
        return WriteRule::Local;
    }
    match path {
        "/api/v1/booking/reserve" | "/api/v1/tickets/create" => WriteRule::EventId,
        "/api/v1/booking/confirm" | "/api/v1/booking/cancel" => WriteRule::BookingId,
        "/api/v1/events" => WriteRule::HomeRegion,
        "/api/v1/users" => WriteRule::ClientRegion,
        _ => WriteRule::Local,
    }
}

/// The request as routing sees it.
pub struct RouteInput<'r> {
    pub method: &'r Method,
    pub path: &'r str,
    pub query: Option<&'r str>,
    pub body: &'r [u8],
    /// The caller's region, from `client_region`.
    pub client_region: &'r str,
    /// The request came from another region's router (it carries the hop header).
    pub from_peer_router: bool,
}

/// Decides where a request goes. A write whose home cannot be told from its body is refused
/// (`400`), never forwarded on a guess.
pub fn plan<'a>(input: &RouteInput<'_>, regions: &'a Regions) -> Result<Plan<'a>, RouterError> {
    if is_read(input.method) {
        return Ok(Plan::Read {
            home: read_home(input.path, input.query, regions),
        });
    }
    let home = match write_rule(input.method, input.path) {
        WriteRule::EventId => home_of_id(input.body, "eventId", regions)?,
        WriteRule::BookingId => home_of_id(input.body, "bookingId", regions)?,
        WriteRule::HomeRegion => home_named(input.body, "homeRegion", regions)?,
        WriteRule::ClientRegion => regions
            .by_name(input.client_region)
            .unwrap_or(regions.own()),
        WriteRule::Local => regions.own(),
    };
    if regions.is_own(home) {
        return Ok(Plan::Write {
            home,
            via: Via::LocalNode,
        });
    }
    if input.from_peer_router {
        // A peer thought this write was ours; forwarding it again could ping-pong.
        return Err(RouterError::Misdirected {
            home: home.name.clone(),
            local: regions.own().name.clone(),
        });
    }
    Ok(Plan::Write {
        home,
        via: Via::PeerRouter,
    })
}

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

type Object = serde_json::Map<String, Value>;

/// The body as a JSON object; anything else cannot be routed.
fn object(body: &[u8]) -> Result<Object, RouterError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RouterError::InvalidJson("the body is empty".into()));
    }
    serde_json::from_slice(body).map_err(|e| RouterError::InvalidJson(e.to_string()))
}

fn field<'f>(object: &'f Object, name: &str) -> Result<&'f Value, RouterError> {
    object
        .get(name)
        .filter(|v| !v.is_null())
        .ok_or_else(|| RouterError::Validation(format!("{name} is required")))
}

/// The home region of the id in `name`: a decimal string, or a JSON integer.
fn home_of_id<'a>(
    body: &[u8],
    name: &str,
    regions: &'a Regions,
) -> Result<&'a Region, RouterError> {
    let object = object(body)?;
    let id = Id::deserialize(field(&object, name)?)
        .map_err(|e| RouterError::InvalidId(format!("{name}: {e}")))?;
    let bits = id.region().get();
    regions.by_id(bits).ok_or_else(|| {
        RouterError::InvalidId(format!(
            "{name} {id} was minted in region {bits}, which is not a configured region"
        ))
    })
}

fn home_named<'a>(
    body: &[u8],
    name: &str,
    regions: &'a Regions,
) -> Result<&'a Region, RouterError> {
    let object = object(body)?;
    let value = field(&object, name)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use id_gen::{IdParts, RegionId, EPOCH_UNIX_MS};

    fn regions() -> Regions {
        Regions::from_config(&Config::default()).unwrap()
    }

    fn id(region: u8) -> Id {
        IdParts {
            timestamp_ms: EPOCH_UNIX_MS + 86_400_000 * 400,
            region: RegionId::new(region).unwrap(),
            machine: 3,
            sequence: 7,
        }
        .encode()
        .unwrap()
    }

    fn route<'a>(
        regions: &'a Regions,
        method: Method,
        path: &str,
        body: &str,
    ) -> Result<Plan<'a>, RouterError> {
        plan(
            &RouteInput {
                method: &method,
                path,
                query: None,
                body: body.as_bytes(),
                client_region: "us-east",
                from_peer_router: false,
            },
            regions,
        )
    }

    fn write_home(plan: Result<Plan<'_>, RouterError>) -> (String, Via) {
        match plan.unwrap() {
            Plan::Write { home, via } => (home.name.clone(), via),
            other => panic!("not a write: {other:?}"),
        }
    }

    #[test]
    fn writes_go_to_the_region_in_the_id() {
        let r = regions();
        for (region, name, via) in [
            (1, "us-east", Via::LocalNode),
            (2, "eu-west", Via::PeerRouter),
            (3, "ap-southeast", Via::PeerRouter),
        ] {
            let event = format!(r#"{{"eventId": "{}", "tickets": []}}"#, id(region));
            for path in ["/api/v1/booking/reserve", "/api/v1/tickets/create"] {
                let got = write_home(route(&r, Method::POST, path, &event));
                assert_eq!(got, (name.to_owned(), via), "{path}");
            }
            let booking = format!(r#"{{"bookingId": {}}}"#, id(region).as_u64());
            for path in ["/api/v1/booking/confirm", "/api/v1/booking/cancel"] {
                let got = write_home(route(&r, Method::POST, path, &booking));
                assert_eq!(got, (name.to_owned(), via), "{path}");
            }
            let event = format!(r#"{{"name": "x", "homeRegion": "{name}"}}"#);
            let got = write_home(route(&r, Method::POST, "/api/v1/events", &event));
            assert_eq!(got, (name.to_owned(), via));
        }
    }

    #[test]
    fn users_follow_the_client_region_and_other_writes_stay_local() {
        let r = regions();
        let users = |client_region: &str| {
            write_home(plan(
                &RouteInput {
                    method: &Method::POST,
                    path: "/api/v1/users",
                    query: None,
                    body: b"{}",
                    client_region,
                    from_peer_router: false,
                },
                &r,
            ))
        };
        assert_eq!(users("us-east"), ("us-east".into(), Via::LocalNode));
        assert_eq!(users("eu-west"), ("eu-west".into(), Via::PeerRouter));
        let other = route(&r, Method::DELETE, "/api/v1/booking/reserve", "garbage");
        assert_eq!(write_home(other), ("us-east".into(), Via::LocalNode));
        let other = route(&r, Method::POST, "/api/v1/whatever", "");
        assert_eq!(write_home(other), ("us-east".into(), Via::LocalNode));
    }

    #[test]
    fn bad_bodies_are_refused_not_forwarded() {
        let r = regions();
        let code = |path: &str, body: &str| {
            route(&r, Method::POST, path, body)
                .map(|p| format!("{p:?}"))
                .unwrap_err()
                .code()
        };
        let reserve = "/api/v1/booking/reserve";
        assert_eq!(code(reserve, ""), "invalid_json");
        assert_eq!(code(reserve, "{"), "invalid_json");
        assert_eq!(code(reserve, "[1]"), "invalid_json");
        assert_eq!(code(reserve, "{}"), "validation");
        assert_eq!(code(reserve, r#"{"eventId": null}"#), "validation");
        assert_eq!(code(reserve, r#"{"eventId": "abc"}"#), "invalid_id");
        assert_eq!(code(reserve, r#"{"eventId": "-1"}"#), "invalid_id");
        assert_eq!(code(reserve, r#"{"eventId": -1}"#), "invalid_id");
        assert_eq!(code(reserve, r#"{"eventId": 1.5}"#), "invalid_id");
        assert_eq!(
            code(reserve, r#"{"eventId": "99999999999999999999"}"#),
            "invalid_id"
        );
        // Region bits 9: no such region.
        let stray = format!(r#"{{"eventId": "{}"}}"#, id(9));
        assert_eq!(code(reserve, &stray), "invalid_id");
        assert_eq!(
            code("/api/v1/booking/confirm", r#"{"eventId": "1"}"#),
            "validation"
        );
        assert_eq!(
            code("/api/v1/events", r#"{"homeRegion": "mars"}"#),
            "validation"
        );
        assert_eq!(code("/api/v1/events", r#"{"homeRegion": 2}"#), "validation");
        assert_eq!(code("/api/v1/events", r#"{"name": "x"}"#), "validation");
    }

    #[test]
    fn a_peer_router_never_makes_us_forward_again() {
        let r = regions();
        let body = format!(r#"{{"eventId": "{}"}}"#, id(2));
        let input = |from_peer_router| RouteInput {
            method: &Method::POST,
            path: "/api/v1/booking/reserve",
            query: None,
            body: body.as_bytes(),
            client_region: "us-east",
            from_peer_router,
        };
        assert_eq!(plan(&input(true), &r).unwrap_err().code(), "misdirected");
        let local = format!(r#"{{"eventId": "{}"}}"#, id(1));
        let got = plan(
            &RouteInput {
                body: local.as_bytes(),
                ..input(true)
            },
            &r,
        );
        assert_eq!(write_home(got), ("us-east".into(), Via::LocalNode));
    }

    #[test]
    fn reads_stay_local_and_report_the_id_region() {
        let r = regions();
        let read = |path: &str, query: Option<&str>| match plan(
            &RouteInput {
                method: &Method::GET,
                path,
                query,
                body: b"",
                client_region: "eu-west",
                from_peer_router: false,
            },
            &r,
        )
        .unwrap()
        {
            Plan::Read { home } => home.map(|h| h.name.clone()),
            other => panic!("not a read: {other:?}"),
        };
        assert_eq!(read("/api/v1/events", None), None);
        let ap = id(3);
        assert_eq!(
            read(&format!("/api/v1/events/{ap}"), None).as_deref(),
            Some("ap-southeast")
        );
        assert_eq!(
            read(&format!("/api/v1/events/{}/stream", id(2)), None).as_deref(),
            Some("eu-west")
        );
        assert_eq!(
            read("/api/v1/tickets", Some(&format!("limit=5&eventId={ap}"))).as_deref(),
            Some("ap-southeast")
        );
        assert_eq!(read("/api/v1/events/notanid", None), None);
        assert_eq!(read(&format!("/api/v1/events/{}", id(9)), None), None);
        assert!(matches!(
            route(&r, Method::HEAD, "/api/v1/events", ""),
            Ok(Plan::Read { .. })
        ));
    }
}
