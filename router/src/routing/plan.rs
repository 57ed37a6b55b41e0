//! The routing decision: reads stay in the region; a write goes to its home region and only
//! there, straight to the local node or through the home region's router.

use axum::http::Method;

use crate::error::RouterError;
use crate::routing::home::{
    home_named, home_of_email, home_of_id, home_of_path_id, home_of_session, read_home,
};
use crate::routing::regions::{Region, Regions};

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

impl<'a> Plan<'a> {
    /// The home region of the id the request named (a write's is always known).
    pub fn home(&self) -> Option<&'a Region> {
        match self {
            Plan::Read { home } => *home,
            Plan::Write { home, .. } => Some(*home),
        }
    }
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
    /// The event id in the path, `/api/v1/events/{id}/queue`: joining a waiting room and
    /// setting one up run on the event's home primary (issue 11).
    PathEventId,
    /// A booking id in the body (`bookingId`): bookings are minted in their event's home
    /// region, so their region bits name it.
    BookingId,
    /// A region name in the body (`homeRegion`): creating an event.
    HomeRegion,
    /// The shard the body's `email` hashes to: signing up (one primary decides whether an
    /// email is taken).
    EmailShard,
    /// The region of the session in the body's `refreshToken`: refresh and logout.
    Session,
    /// The caller's region: logging in (the session lives near its user).
    ClientRegion,
    /// Anything else: the local node decides (and refuses what is not its own).
    Local,
}

pub fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Which rule homes a write to `path`.
pub fn write_rule(method: &Method, path: &str) -> WriteRule {
    if (method == Method::POST || method == Method::PUT) && queue_event(path).is_some() {
        return WriteRule::PathEventId;
    }
    if method != Method::POST {
        return WriteRule::Local;
    }
    match path {
        "/api/v1/booking/reserve" | "/api/v1/tickets/create" => WriteRule::EventId,
        "/api/v1/booking/confirm" | "/api/v1/booking/cancel" => WriteRule::BookingId,
        "/api/v1/events" => WriteRule::HomeRegion,
        "/api/v1/users" => WriteRule::EmailShard,
        "/api/v1/auth/login" => WriteRule::ClientRegion,
        "/api/v1/auth/refresh" | "/api/v1/auth/logout" => WriteRule::Session,
        _ => WriteRule::Local,
    }
}

/// The event id segment of `/api/v1/events/{id}/queue` (not of the paths below it: a pass is
/// issued by the local node).
pub fn queue_event(path: &str) -> Option<&str> {
    let (event, tail) = path.strip_prefix("/api/v1/events/")?.split_once('/')?;
    (tail == "queue").then_some(event)
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
        WriteRule::PathEventId => {
            // `write_rule` chose this rule because the path has the segment.
            let event = queue_event(input.path).unwrap_or_default();
            home_of_path_id(event, "the event id in the path", regions)?
        }
        WriteRule::BookingId => home_of_id(input.body, "bookingId", regions)?,
        WriteRule::HomeRegion => home_named(input.body, "homeRegion", regions)?,
        WriteRule::EmailShard => home_of_email(input.body, regions)?,
        WriteRule::Session => home_of_session(input.body, regions)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use id_gen::{Id, IdParts, RegionId, EPOCH_UNIX_MS};

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
    fn waiting_room_writes_go_to_the_home_of_the_path_event() {
        let r = regions();
        for (region, name, via) in [
            (1, "us-east", Via::LocalNode),
            (2, "eu-west", Via::PeerRouter),
            (3, "ap-southeast", Via::PeerRouter),
        ] {
            let path = format!("/api/v1/events/{}/queue", id(region));
            for method in [Method::POST, Method::PUT] {
                // The body plays no part: a join has none, the settings name no event.
                for body in ["", r#"{"opensAt": "2030-01-01T00:00:00Z"}"#] {
                    let got = write_home(route(&r, method.clone(), &path, body));
                    assert_eq!(got, (name.to_owned(), via), "{method} {path}");
                }
            }
            // A pass is issued by the caller's own node; reads stay local reads.
            let pass = format!("/api/v1/events/{}/queue/pass", id(region));
            let got = write_home(route(&r, Method::POST, &pass, ""));
            assert_eq!(got, ("us-east".to_owned(), Via::LocalNode));
            for read in [path.clone(), format!("{path}/me")] {
                assert!(matches!(
                    route(&r, Method::GET, &read, ""),
                    Ok(Plan::Read { .. })
                ));
            }
        }
        let code = |method: Method, path: &str| {
            route(&r, method, path, "")
                .map(|p| format!("{p:?}"))
                .unwrap_err()
                .code()
        };
        for bad in ["abc", "-1", "99999999999999999999", ""] {
            let path = format!("/api/v1/events/{bad}/queue");
            assert_eq!(code(Method::POST, &path), "invalid_id", "{path}");
            assert_eq!(code(Method::PUT, &path), "invalid_id", "{path}");
        }
        // Region bits 9: no such region.
        let stray = format!("/api/v1/events/{}/queue", id(9));
        assert_eq!(code(Method::POST, &stray), "invalid_id");
        // Only the queue itself: other paths keep their rules.
        assert_eq!(
            write_rule(&Method::PUT, "/api/v1/events/1/queued"),
            WriteRule::Local
        );
        assert_eq!(
            write_rule(&Method::DELETE, "/api/v1/events/1/queue"),
            WriteRule::Local
        );
        assert_eq!(queue_event("/api/v1/events/7/queue"), Some("7"));
        assert_eq!(queue_event("/api/v1/events/7/queue/pass"), None);
        assert_eq!(queue_event("/api/v1/events/7"), None);
    }

    #[test]
    fn logins_follow_the_client_region_and_other_writes_stay_local() {
        let r = regions();
        let login = |client_region: &str| {
            write_home(plan(
                &RouteInput {
                    method: &Method::POST,
                    path: "/api/v1/auth/login",
                    query: None,
                    body: b"{}",
                    client_region,
                    from_peer_router: false,
                },
                &r,
            ))
        };
        assert_eq!(login("us-east"), ("us-east".into(), Via::LocalNode));
        assert_eq!(login("eu-west"), ("eu-west".into(), Via::PeerRouter));
        let other = route(&r, Method::DELETE, "/api/v1/booking/reserve", "garbage");
        assert_eq!(write_home(other), ("us-east".into(), Via::LocalNode));
        let other = route(&r, Method::POST, "/api/v1/whatever", "");
        assert_eq!(write_home(other), ("us-east".into(), Via::LocalNode));
    }

    #[test]
    fn sign_ups_go_to_the_email_shard_and_refreshes_to_the_session() {
        let r = regions();
        let ids = [1, 2, 3];
        for (region, name) in [(1, "us-east"), (2, "eu-west"), (3, "ap-southeast")] {
            let email = wire::accounts::email_homed_in("ann", "example.com", region, &ids)
                .unwrap()
                .to_uppercase();
            let body = format!(r#"{{"name": "Ann", "email": " {email} ", "password": "x"}}"#);
            let (home, _) = write_home(route(&r, Method::POST, "/api/v1/users", &body));
            assert_eq!(home, name, "{email}");
            let token = format!(r#"{{"refreshToken": "{}.{}"}}"#, id(region), "A".repeat(43));
            for path in ["/api/v1/auth/refresh", "/api/v1/auth/logout"] {
                let (home, _) = write_home(route(&r, Method::POST, path, &token));
                assert_eq!(home, name, "{path}");
            }
        }
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
        let users = "/api/v1/users";
        assert_eq!(code(users, r#"{"name": "x"}"#), "validation");
        assert_eq!(code(users, r#"{"email": 5}"#), "validation");
        assert_eq!(code(users, r#"{"email": "not an email"}"#), "validation");
        assert_eq!(code(users, "{"), "invalid_json");
        let refresh = "/api/v1/auth/refresh";
        assert_eq!(code(refresh, "{}"), "validation");
        assert_eq!(code(refresh, r#"{"refreshToken": 1}"#), "validation");
        // A refresh token that names no session of ours is a bad credential, not bad input.
        assert_eq!(code(refresh, r#"{"refreshToken": "x.y"}"#), "unauthorized");
        let stray = format!(r#"{{"refreshToken": "{}.{}"}}"#, id(9), "A".repeat(43));
        assert_eq!(code(refresh, &stray), "unauthorized");
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
