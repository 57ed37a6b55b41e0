//! Where the generator reads the time: the system clock, and a manual clock tests can step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in Unix milliseconds.
///
/// A trait rather than a direct `SystemTime` call so tests can drive the
/// generator through backwards steps and sequence exhaustion
/// deterministically. `Send + Sync` because one generator is shared by many
/// threads.
pub trait Clock: Send + Sync {
    /// Current time, Unix milliseconds.
    fn now_ms(&self) -> u64;
}

/// The operating system's wall clock.
///
/// Wall time (not `Instant`) because IDs must be comparable across machines
/// and restarts; the generator copes with the wall clock's backward steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            // Before 1970: report 0, which the generator rejects as out of range.
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to.
///
/// Public so dependent crates can test time-dependent code (expiry, ordering)
/// without sleeping. Share it with a generator through `&ManualClock` or
/// `Arc<ManualClock>`, both of which implement [`Clock`].
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// Starts the clock at `now_ms` (Unix milliseconds).
    pub const fn new(now_ms: u64) -> Self {
        ManualClock {
            now_ms: AtomicU64::new(now_ms),
        }
    }

    /// Sets the time; may move it backwards, to simulate NTP steps.
    pub fn set(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `by` (whole milliseconds).
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_after_epoch() {
        assert!(SystemClock.now_ms() > crate::EPOCH_UNIX_MS);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        fn read<C: Clock>(clock: C) -> u64 {
            clock.now_ms()
        }
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(Duration::from_millis(5));
        assert_eq!(read(&clock), 1_005);
        clock.set(990);
        assert_eq!(read(Arc::new(clock)), 990);
    }
}
