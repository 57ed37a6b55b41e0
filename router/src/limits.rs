//! The router's rate limits, per client address: which budgets a request spends (`Class`,
//! decided from its method and path alone), the limiters (`RouterLimits`), and the key an
//! address counts under (`address_key`: an IPv6 client by its /64).
//!
//! Every API request spends the generic `per_address` budget, and a sign-up the tighter
//! `sign_ups` one too. Event streams and the waiting room (issue 11) spend budgets of their own
//! instead of the generic one, so a client that browsed its generic budget away still keeps its
//! live updates and its place in the queue. Operations endpoints (`/healthz`, `/readyz`,
//! `/metrics`) are not API requests and spend nothing.

use std::net::{IpAddr, Ipv6Addr};

use axum::http::Method;
use wire::limits::{Limited, Limiter};
use wire::ConfigError;

use crate::config::LimitsConfig;

/// The budgets an API request spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Everything else: `per_address`.
    Api,
    /// `POST /api/v1/users`: `per_address` and `sign_ups`.
    SignUp,
    /// `/api/v1/events/{id}/stream`: `streams` only.
    Stream,
    /// `/api/v1/events/{id}/queue` and below: `queue` only.
    Queue,
}

/// The class of an API request from its method and path.
pub fn classify(method: &Method, path: &str) -> Class {
    if path == "/api/v1/users" && method == Method::POST {
        return Class::SignUp;
    }
    let Some((_event, tail)) = path
        .strip_prefix("/api/v1/events/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Class::Api;
    };
    if tail == "stream" {
        Class::Stream
    } else if tail == "queue" || tail.starts_with("queue/") {
        Class::Queue
    } else {
        Class::Api
    }
}

/// What a client address counts under: itself for IPv4, its /64 for IPv6, since one host
/// commonly holds a whole /64 and could otherwise take a fresh budget with every address.
pub fn address_key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128))),
        v4 => v4,
    }
}

/// One keyed limiter per budget, keyed by `address_key`.
pub struct RouterLimits {
    per_address: Limiter<IpAddr>,
    sign_ups: Limiter<IpAddr>,
    streams: Limiter<IpAddr>,
    queue: Limiter<IpAddr>,
}

impl RouterLimits {
    pub fn new(config: &LimitsConfig) -> Result<RouterLimits, ConfigError> {
        Ok(RouterLimits {
            per_address: Limiter::new("per_address", config.per_address)?,
            sign_ups: Limiter::new("sign_ups", config.sign_ups)?,
            streams: Limiter::new("streams", config.streams)?,
            queue: Limiter::new("queue", config.queue)?,
        })
    }

    /// Spends one request of `client`'s budgets for `class`, or says which one is spent.
    pub fn admit(&self, client: IpAddr, class: Class) -> Result<(), Limited> {
        let key = address_key(client);
        match class {
            Class::Api => self.per_address.check(&key),
            Class::SignUp => {
                self.per_address.check(&key)?;
                self.sign_ups.check(&key)
            }
            Class::Stream => self.streams.check(&key),
            Class::Queue => self.queue.check(&key),
        }
    }

    /// Forgets idle addresses (see `wire::limits::prune_loop`); returns the addresses kept.
    pub fn prune(&self) -> usize {
        [
            &self.per_address,
            &self.sign_ups,
            &self.streams,
            &self.queue,
        ]
        .into_iter()
        .map(Limiter::prune)
        .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::limits::Rate;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn requests_are_classed_by_method_and_path() {
        let post = Method::POST;
        let get = Method::GET;
        assert_eq!(classify(&post, "/api/v1/users"), Class::SignUp);
        assert_eq!(classify(&get, "/api/v1/users/123"), Class::Api);
        assert_eq!(classify(&get, "/api/v1/users"), Class::Api);
        assert_eq!(classify(&get, "/api/v1/events/42/stream"), Class::Stream);
        assert_eq!(classify(&post, "/api/v1/events/42/queue"), Class::Queue);
        assert_eq!(
            classify(&post, "/api/v1/events/42/queue/pass"),
            Class::Queue
        );
        assert_eq!(classify(&get, "/api/v1/events/42"), Class::Api);
        assert_eq!(classify(&get, "/api/v1/events"), Class::Api);
        assert_eq!(classify(&get, "/api/v1/events/42/streams"), Class::Api);
        assert_eq!(classify(&post, "/api/v1/events/42/queued"), Class::Api);
        assert_eq!(classify(&post, "/api/v1/booking/reserve"), Class::Api);
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:2::2"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(address_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn sign_ups_spend_both_budgets_and_streams_and_queue_only_their_own() {
        let config = LimitsConfig {
            per_address: Rate::new(0.001, 3),
            sign_ups: Rate::new(0.001, 1),
            streams: Rate::new(0.001, 1),
            queue: Rate::new(0.001, 1),
            ..LimitsConfig::default()
        };
        let limits = RouterLimits::new(&config).unwrap();
        let client = ip("192.0.2.1");
        limits.admit(client, Class::SignUp).unwrap();
        let refused = limits.admit(client, Class::SignUp).unwrap_err();
        assert_eq!(refused.policy, "sign_ups");
        limits.admit(client, Class::Api).unwrap();
        let refused = limits.admit(client, Class::Api).unwrap_err();
        assert_eq!(refused.policy, "per_address");
        // The generic budget is spent; the stream and the queue still have theirs.
        limits.admit(client, Class::Stream).unwrap();
        limits.admit(client, Class::Queue).unwrap();
        assert_eq!(
            limits.admit(client, Class::Stream).unwrap_err().policy,
            "streams"
        );
        // Another address is another budget.
        limits.admit(ip("192.0.2.2"), Class::Api).unwrap();
        assert_eq!(
            limits.prune(),
            5,
            "kept: two addresses generic, one each in the others"
        );
    }
}
