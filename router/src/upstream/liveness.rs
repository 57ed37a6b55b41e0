//! What the forwarder remembers of each upstream's health, keyed by base URL: when it last
//! answered anything, when its last liveness probe went unanswered, until when it counts as
//! down (reads try it last), and the turn that keeps liveness probes single-flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use url::Url;

pub struct Liveness {
    down_for: Duration,
    /// Upstreams that were unreachable recently, until when.
    down_until: Stamps,
    /// When each upstream last answered anything. A request still waiting after others got
    /// answers is waiting on a slow upstream, not a dead one, and needs no probe of its own:
    /// under a burst, hundreds of probes would themselves miss their deadline.
    last_answer: Stamps,
    /// When each upstream's last probe went unanswered.
    last_probe_failure: Stamps,
    /// One liveness probe per upstream at a time; waiters share its outcome.
    probing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Liveness {
    /// An upstream found unreachable counts as down for `down_for`.
    pub fn new(down_for: Duration) -> Liveness {
        Liveness {
            down_for,
            down_until: Stamps::default(),
            last_answer: Stamps::default(),
            last_probe_failure: Stamps::default(),
            probing: Mutex::default(),
        }
    }

    pub fn record_answer(&self, base: &Url) {
        self.last_answer.set(base, Instant::now());
    }

    /// Has `base` answered anything (a request or a probe) since `since`?
    pub fn answered_since(&self, base: &Url, since: Instant) -> bool {
        self.last_answer.later_than(base, since)
    }

    pub fn record_probe_failure(&self, base: &Url) {
        self.last_probe_failure.set(base, Instant::now());
    }

    pub fn probe_failed_since(&self, base: &Url, since: Instant) -> bool {
        self.last_probe_failure.later_than(base, since)
    }

    pub fn mark_down(&self, base: &Url) {
        self.down_until.set(base, Instant::now() + self.down_for);
    }

    pub fn mark_up(&self, base: &Url) {
        self.down_until.clear(base);
    }

    pub fn is_down(&self, base: &Url) -> bool {
        self.down_until.later_than(base, Instant::now())
    }

    /// The lock a liveness probe of `base` holds: whoever holds it probes, the others wait
    /// and then read the outcome.
    pub fn probe_turn(&self, base: &Url) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.probing)
            .entry(base.as_str().to_owned())
            .or_default()
            .clone()
    }
}

/// One instant per upstream base URL.
#[derive(Default)]
struct Stamps(Mutex<HashMap<String, Instant>>);

impl Stamps {
    fn set(&self, base: &Url, at: Instant) {
        // Called on every answer: the key is copied only the first time.
        let mut stamps = lock(&self.0);
        match stamps.get_mut(base.as_str()) {
            Some(stamp) => *stamp = at,
            None => {
                stamps.insert(base.as_str().to_owned(), at);
            }
        }
    }

    fn clear(&self, base: &Url) {
        lock(&self.0).remove(base.as_str());
    }

    fn later_than(&self, base: &Url, instant: Instant) -> bool {
        lock(&self.0)
            .get(base.as_str())
            .is_some_and(|at| *at > instant)
    }
}

/// The maps stay consistent whatever a panicking holder did (each write is one insert or
/// remove), so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
