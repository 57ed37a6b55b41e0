//! Rate limits, written once for router and node: a keyed GCRA limiter per class of request
//! (`Limiter`, on the `governor` crate), a class's configuration (`Rate`), the one `429` answer
//! (`Limited`: the JSON error envelope with `Retry-After` and the `RateLimit-Policy` and
//! `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers), and the loop that keeps the
//! keyed state bounded (`prune_loop`).
//!
//! GCRA is a token bucket kept as one timestamp per key: `burst` requests at once, refilled at
//! `per_second`. A key whose bucket is full again behaves exactly like a key never seen, so
//! pruning it forgets nothing; what is kept is at most the keys active within one refill window
//! (`burst / per_second`) plus one pruning interval.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::ConfigError;
use crate::error::ErrorEnvelope;
use crate::headers::{RATELIMIT, RATELIMIT_POLICY};

/// Bounds on a class's sustained rate: one request in about eleven days, and one a nanosecond
/// (governor's finest period).
const MIN_PER_SECOND: f64 = 1e-6;
const MAX_PER_SECOND: f64 = 1e9;

/// One class's limit, applied per key (client address, user, event): a bucket of `burst`
/// requests refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// `false`: this class is not limited.
    pub enabled: bool,
    /// Sustained requests per second per key; fractions allowed (`0.2` is one every 5 s).
    pub per_second: f64,
    /// Requests a key may make at once, before the sustained rate applies.
    pub burst: u32,
}

impl Rate {
    /// A class with no limit.
    pub const OFF: Rate = Rate {
        enabled: false,
        per_second: 1.0,
        burst: 1,
    };

    pub const fn new(per_second: f64, burst: u32) -> Rate {
        Rate {
            enabled: true,
            per_second,
            burst,
        }
    }

    /// Rate and burst times `factor` (a burst of one at least); `0` turns the limit off. How
    /// devcluster raises every limit for load tests that all come from one address.
    pub fn scaled(self, factor: f64) -> Rate {
        if factor == 0.0 {
            return Rate {
                enabled: false,
                ..self
            };
        }
        let burst = (f64::from(self.burst) * factor)
            .round()
            .clamp(1.0, f64::from(u32::MAX));
        Rate {
            per_second: (self.per_second * factor).min(MAX_PER_SECOND),
            // In range by the clamp above.
            burst: burst as u32,
            ..self
        }
    }

    /// Checks `limits.<name>`: a rate governor can keep and a burst of one at least.
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if !(MIN_PER_SECOND..=MAX_PER_SECOND).contains(&self.per_second) {
            return Err(ConfigError::Invalid(format!(
                "limits.{name}.per_second must be {MIN_PER_SECOND} to {MAX_PER_SECOND:e}"
            )));
        }
        if self.burst == 0 {
            return Err(ConfigError::Invalid(format!(
                "limits.{name}.burst must be at least 1"
            )));
        }
        Ok(())
    }

    /// The window the policy advertises: the seconds a whole burst takes to refill, one at
    /// least (the draft's windows are whole seconds).
    pub fn window_secs(&self) -> u64 {
        // A float to integer cast saturates; the value is positive and finite once validated.
        (f64::from(self.burst) / self.per_second).ceil().max(1.0) as u64
    }

    /// governor's form: one request every `1 / per_second`, `burst` at once. `None` when off
    /// or invalid.
    fn quota(&self) -> Option<Quota> {
        if !self.enabled {
            return None;
        }
        let period = Duration::try_from_secs_f64(self.per_second.recip()).ok()?;
        Some(Quota::with_period(period)?.allow_burst(NonZeroU32::new(self.burst)?))
    }
}

/// A class's limiter: one GCRA state per key, in a concurrent map. Off, it admits everything
/// and keeps nothing.
pub struct Limiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    /// The policy's name in the `RateLimit` fields and the error (the class's configuration key).
    name: &'static str,
    rate: Rate,
    gcra: Option<Gcra<K, C>>,
}

/// governor's keyed limiter: GCRA states in a `DashMap`, on clock `C`.
type Gcra<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// The limiter of class `name` (its key under `limits`), on the monotonic clock.
    pub fn new(name: &'static str, rate: Rate) -> Result<Limiter<K>, ConfigError> {
        Limiter::with_clock(name, rate, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock> Limiter<K, C> {
    /// As `new`, on `clock` (tests pass a clock they move by hand).
    pub fn with_clock(
        name: &'static str,
        rate: Rate,
        clock: C,
    ) -> Result<Limiter<K, C>, ConfigError> {
        rate.validate(name)?;
        let gcra = match rate.quota() {
            Some(quota) => Some(RateLimiter::dashmap_with_clock(quota, clock)),
            None if rate.enabled => {
                return Err(ConfigError::Invalid(format!(
                    "limits.{name}: no limiter can keep this rate"
                )))
            }
            None => None,
        };
        Ok(Limiter { name, rate, gcra })
    }

    /// Takes one request from `key`'s bucket, or says how long until there is one.
    pub fn check(&self, key: &K) -> Result<(), Limited> {
        let Some(gcra) = &self.gcra else {
            return Ok(());
        };
        gcra.check_key(key).map_err(|refused| Limited {
            policy: self.name,
            quota: self.rate.burst,
            window_secs: self.rate.window_secs(),
            retry_after_secs: whole_seconds_up(refused.wait_time_from(gcra.clock().now())),
        })
    }

    /// Forgets the keys whose bucket is full again and returns how many keys are still kept.
    pub fn prune(&self) -> usize {
        self.gcra.as_ref().map_or(0, |gcra| {
            gcra.retain_recent();
            gcra.shrink_to_fit();
            gcra.len()
        })
    }

    /// Keys with state now.
    pub fn keys(&self) -> usize {
        self.gcra.as_ref().map_or(0, |gcra| gcra.len())
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Whole seconds, rounded up, one at least: `Retry-After` and the draft's `t` are whole
/// seconds, and a client told 0 would retry at once and be refused again.
fn whole_seconds_up(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A request refused by a rate limit: `429`, the JSON error envelope (code `rate_limited`,
/// with `policy` and `retryAfterSeconds`), `Retry-After`, and the draft's fields:
/// `RateLimit-Policy: "<policy>";q=<burst>;w=<window>` and `RateLimit: "<policy>";r=0;t=<wait>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many requests: the {policy} limit allows {quota} per {window_secs} s; \
     retry in {retry_after_secs} s"
)]
pub struct Limited {
    pub policy: &'static str,
    /// The policy's quota (`q`): the burst.
    pub quota: u32,
    /// The policy's window (`w`): the seconds to refill the burst.
    pub window_secs: u64,
    /// Until the next request would pass (`Retry-After`, and `t`).
    pub retry_after_secs: u64,
}

impl Limited {
    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            self.to_string(),
        )
        .with("policy", json!(self.policy))
        .with("retryAfterSeconds", json!(self.retry_after_secs))
    }

    /// `RateLimit-Policy`: the quota policy, a Structured Field list of one string item.
    pub fn policy_field(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.policy, self.quota, self.window_secs
        )
    }

    /// `RateLimit`: nothing left (`r=0`) for `t` seconds.
    pub fn limit_field(&self) -> String {
        format!("\"{}\";r=0;t={}", self.policy, self.retry_after_secs)
    }
}

impl IntoResponse for Limited {
    fn into_response(self) -> Response {
        let mut response = self.envelope().into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after_secs),
        );
        // Policy names are our own identifiers, so both values are header-safe.
        for (name, value) in [
            (RATELIMIT_POLICY, self.policy_field()),
            (RATELIMIT, self.limit_field()),
        ] {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// The rate-limit pruner: every `every`, `prune` forgets the keys whose bucket is full again
/// and returns how many it kept, so keyed state stays bounded by recent activity. Runs until
/// its task is aborted.
pub async fn prune_loop(every: Duration, prune: impl Fn() -> usize + Send) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let kept = prune();
        tracing::debug!(kept, "rate-limit pruner: idle keys forgotten");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limiter(rate: Rate) -> (Limiter<u32, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock("test", rate, clock.clone()).unwrap();
        (limiter, clock)
    }

    #[test]
    fn a_burst_passes_then_one_request_per_period() {
        // 4 a second, 3 at once: 3 pass, the 4th waits a quarter second (1 s, rounded up).
        let (limiter, clock) = limiter(Rate::new(4.0, 3));
        for _ in 0..3 {
            limiter.check(&1).unwrap();
        }
        let refused = limiter.check(&1).unwrap_err();
        assert_eq!(
            refused,
            Limited {
                policy: "test",
                quota: 3,
                window_secs: 1,
                retry_after_secs: 1
            }
        );
        clock.advance(Duration::from_millis(249));
        assert!(limiter.check(&1).is_err(), "not yet a whole period");
        clock.advance(Duration::from_millis(1));
        limiter.check(&1).unwrap();
        assert!(limiter.check(&1).is_err(), "one refilled, one spent");
        // A full window later the whole burst is back.
        clock.advance(Duration::from_millis(750));
        for _ in 0..3 {
            limiter.check(&1).unwrap();
        }
        assert!(limiter.check(&1).is_err());
    }

    #[test]
    fn keys_have_buckets_of_their_own() {
        let (limiter, _clock) = limiter(Rate::new(1.0, 2));
        limiter.check(&1).unwrap();
        limiter.check(&1).unwrap();
        assert!(limiter.check(&1).is_err());
        limiter.check(&2).unwrap();
        limiter.check(&2).unwrap();
        assert!(limiter.check(&2).is_err());
    }

    #[test]
    fn slow_rates_wait_whole_seconds_and_advertise_their_refill_window() {
        // One every 5 s, 10 at once: the 11th waits 5 s; the burst refills in 50 s.
        let (limiter, clock) = limiter(Rate::new(0.2, 10));
        for _ in 0..10 {
            limiter.check(&7).unwrap();
        }
        let refused = limiter.check(&7).unwrap_err();
        assert_eq!((refused.retry_after_secs, refused.window_secs), (5, 50));
        clock.advance(Duration::from_millis(2_100));
        // 2.9 s left: rounded up, never down to a retry that would be refused.
        assert_eq!(limiter.check(&7).unwrap_err().retry_after_secs, 3);
        assert_eq!(whole_seconds_up(Duration::ZERO), 1);
        assert_eq!(whole_seconds_up(Duration::from_nanos(1_000_000_001)), 2);
    }

    #[test]
    fn an_off_class_admits_everything_and_keeps_nothing() {
        let (limiter, _clock) = limiter(Rate::OFF);
        for key in 0..1_000 {
            limiter.check(&key).unwrap();
            limiter.check(&key).unwrap();
        }
        assert_eq!(limiter.keys(), 0);
        assert_eq!(limiter.prune(), 0);
    }

    #[test]
    fn pruning_forgets_only_keys_whose_bucket_is_full_again() {
        // 10 a second, 5 at once: a key used once is full again 200 ms later (governor counts
        // a fresh key's first request from one period ahead); a drained one after 600 ms.
        let (limiter, clock) = limiter(Rate::new(10.0, 5));
        for key in 0..100 {
            limiter.check(&key).unwrap();
        }
        clock.advance(Duration::from_millis(250));
        for _ in 0..5 {
            limiter.check(&1000).unwrap();
        }
        assert_eq!(limiter.keys(), 101);
        clock.advance(Duration::from_millis(50));
        assert_eq!(
            limiter.prune(),
            1,
            "only the drained key is still remembered"
        );
        // Forgetting the others changed nothing for the drained one: it is still refused.
        assert!(limiter.check(&1000).is_err());
        clock.advance(Duration::from_millis(600));
        assert_eq!(limiter.prune(), 0);
    }

    #[test]
    fn the_answer_is_a_429_envelope_with_retry_after_and_the_ratelimit_fields() {
        let refused = Limited {
            policy: "sign_ups",
            quota: 10,
            window_secs: 50,
            retry_after_secs: 5,
        };
        assert_eq!(
            refused.envelope().to_value(),
            json!({"error": {
                "code": "rate_limited",
                "message": "too many requests: the sign_ups limit allows 10 per 50 s; retry in 5 s",
                "status": 429,
                "policy": "sign_ups",
                "retryAfterSeconds": 5
            }})
        );
        let response = refused.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let headers = response.headers();
        assert_eq!(headers[header::RETRY_AFTER], "5");
        assert_eq!(headers[RATELIMIT_POLICY], "\"sign_ups\";q=10;w=50");
        assert_eq!(headers[RATELIMIT], "\"sign_ups\";r=0;t=5");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn rates_are_checked_and_scaled() {
        assert!(Rate::new(0.0, 1).validate("x").is_err());
        assert!(Rate::new(-1.0, 1).validate("x").is_err());
        assert!(Rate::new(f64::NAN, 1).validate("x").is_err());
        assert!(Rate::new(f64::INFINITY, 1).validate("x").is_err());
        let error = Rate::new(1.0, 0).validate("sign_ups").unwrap_err();
        assert!(
            error.to_string().contains("limits.sign_ups.burst"),
            "{error}"
        );
        Rate::OFF.validate("x").unwrap();
        assert!(Limiter::<u32>::new("x", Rate::new(0.0, 1)).is_err());

        assert_eq!(Rate::new(0.2, 10).scaled(1000.0), Rate::new(200.0, 10_000));
        assert_eq!(Rate::new(10.0, 3).scaled(0.1), Rate::new(1.0, 1));
        assert!(!Rate::new(10.0, 3).scaled(0.0).enabled);
        assert_eq!(Rate::new(2.0, 5).window_secs(), 3);
        assert_eq!(Rate::new(1000.0, 5).window_secs(), 1);
    }
}
