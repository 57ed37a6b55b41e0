//! The generator: strictly increasing IDs for one (region, machine), waiting out small clock
//! steps backwards and a sequence exhausted within a millisecond.

use std::hint;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::id::{compose, node_bits, unix_ms_to_offset};
use crate::{
    Clock, Id, IdError, RegionId, SystemClock, DEFAULT_MAX_BACKWARD_WAIT, MAX_MACHINE,
    MAX_SEQUENCE, SEQUENCE_BITS, SEQUENCE_MASK,
};

/// Issues unique, strictly increasing [`Id`]s for one `(region, machine)`.
///
/// Share one generator per process (e.g. in an `Arc`): it is `Send + Sync`
/// and [`next_id`](Self::next_id) takes `&self`. Uniqueness across processes
/// comes from giving each running generator its own `(region, machine)`
/// pair; two live generators with the same pair *will* collide.
///
/// Lock-free: the last issued `(millisecond, sequence)` lives in one
/// `AtomicU64` that threads advance with compare-and-swap, so a stalled
/// thread never blocks others and there is no mutex on the hot path.
///
/// Restart caveat: the last issued value is not persisted. A restarted
/// process is safe as long as the restart takes longer than any backward
/// clock step it lands in, which is true in practice (milliseconds of NTP
/// slew vs. seconds to restart).
#[derive(Debug)]
pub struct IdGenerator<C: Clock = SystemClock> {
    clock: C,
    region: RegionId,
    machine: u8,
    /// Region and machine fields, pre-shifted, OR-ed into every ID.
    node_bits: u64,
    max_backward_wait: Duration,
    /// `(ms since epoch << SEQUENCE_BITS) | sequence` of the last issued ID.
    ///
    /// Packing both into one word is what lets a single CAS both claim a
    /// sequence number and move to a new millisecond atomically. Starts at 0,
    /// i.e. "sequence 0 at the epoch was issued", which only costs one ID at
    /// an instant that is already in the past.
    last: AtomicU64,
}

impl IdGenerator<SystemClock> {
    /// A generator on the system clock that waits out backward clock steps of
    /// up to [`DEFAULT_MAX_BACKWARD_WAIT`].
    pub fn new(region: RegionId, machine: u8) -> Result<Self, IdError> {
        Self::with_clock(region, machine, SystemClock, DEFAULT_MAX_BACKWARD_WAIT)
    }
}

impl<C: Clock> IdGenerator<C> {
    /// A generator on a custom clock (mainly for tests).
    ///
    /// `max_backward_wait` bounds how far behind the last issued ID the clock
    /// may read before [`next_id`](Self::next_id) errors instead of waiting;
    /// `Duration::ZERO` refuses any backward step.
    pub fn with_clock(
        region: RegionId,
        machine: u8,
        clock: C,
        max_backward_wait: Duration,
    ) -> Result<Self, IdError> {
        if machine > MAX_MACHINE {
            return Err(IdError::InvalidMachine { machine });
        }
        Ok(IdGenerator {
            clock,
            region,
            machine,
            node_bits: node_bits(region, machine),
            max_backward_wait,
            last: AtomicU64::new(0),
        })
    }

    /// The region stamped into every ID.
    pub fn region(&self) -> RegionId {
        self.region
    }

    /// The machine number stamped into every ID.
    pub fn machine(&self) -> u8 {
        self.machine
    }

    /// The largest backward clock step this generator waits out.
    pub fn max_backward_wait(&self) -> Duration {
        self.max_backward_wait
    }

    /// The clock this generator reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Issues the next ID.
    ///
    /// Each ID is greater than every ID this generator issued before, and
    /// never carries a timestamp ahead of the clock. It may block briefly:
    /// * when 4,096 IDs were already issued this millisecond, until the
    ///   clock reaches the next millisecond;
    /// * when the clock reads behind the last issued ID by at most
    ///   [`max_backward_wait`](Self::max_backward_wait), until it catches up.
    ///
    /// # Errors
    /// * [`IdError::ClockMovedBackwards`] if the clock is further behind than
    ///   that bound. Nothing is issued, so IDs stay unique; later calls
    ///   succeed once the clock catches up.
    /// * [`IdError::TimestampOutOfRange`] if the clock reads before the epoch
    ///   or past the 41-bit range.
    pub fn next_id(&self) -> Result<Id, IdError> {
        let mut backoff = Backoff::default();
        loop {
            // Load before reading the clock: whatever state we see was built
            // from a clock reading taken before ours, so losing a race to
            // another thread never looks like the clock going backwards.
            let last = self.last.load(Ordering::Acquire);
            let now = unix_ms_to_offset(self.clock.now_ms())?;
            let last_ms = last >> SEQUENCE_BITS;

            let next = if now > last_ms {
                now << SEQUENCE_BITS
            } else if now == last_ms {
                if last & SEQUENCE_MASK == u64::from(MAX_SEQUENCE) {
                    // Sequence exhausted: the next ID needs the next ms. Less
                    // than 1 ms to go, so spin/yield briefly rather than sleep
                    // a whole timer tick, then re-read the clock.
                    backoff.snooze();
                    continue;
                }
                last + 1
            } else {
                let by_ms = last_ms - now;
                if Duration::from_millis(by_ms) > self.max_backward_wait {
                    return Err(IdError::ClockMovedBackwards { by_ms });
                }
                // Sleep in 1 ms steps, re-reading the clock each time, so a
                // correction that jumps the clock forward is noticed at once.
                thread::sleep(Duration::from_millis(1));
                continue;
            };

            if self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let id = compose(next >> SEQUENCE_BITS, self.node_bits, next & SEQUENCE_MASK);
                return Ok(Id::from_u64_unchecked(id));
            }
            // Lost the race; another thread took this slot. Retry at once:
            // the winner made progress, so contention clears quickly.
            hint::spin_loop();
        }
    }
}

/// Escalating wait for the sub-millisecond gap after sequence exhaustion:
/// spin first (cheapest when the ms is about to tick), then yield (so other
/// threads, on a box with few cores, get the CPU), then short sleeps so a
/// stuck clock costs little CPU.
#[derive(Default)]
struct Backoff {
    step: u32,
}

impl Backoff {
    const SPIN_STEPS: u32 = 6;
    const YIELD_STEPS: u32 = 16;

    fn snooze(&mut self) {
        if self.step < Self::SPIN_STEPS {
            for _ in 0..(1u32 << self.step) {
                hint::spin_loop();
            }
        } else if self.step < Self::YIELD_STEPS {
            thread::yield_now();
        } else {
            thread::sleep(Duration::from_micros(50));
        }
        self.step = self.step.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, EPOCH_UNIX_MS};

    fn region(r: u8) -> RegionId {
        RegionId::new(r).unwrap()
    }

    #[test]
    fn generator_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<IdGenerator>();
        assert_send_sync::<IdGenerator<ManualClock>>();
        assert_send_sync::<IdGenerator<std::sync::Arc<ManualClock>>>();
    }

    #[test]
    fn rejects_invalid_machine() {
        assert_eq!(
            IdGenerator::new(region(1), 32).unwrap_err(),
            IdError::InvalidMachine { machine: 32 }
        );
        let generator = IdGenerator::new(region(1), 31).unwrap();
        assert_eq!(generator.machine(), 31);
        assert_eq!(generator.region(), region(1));
        assert_eq!(generator.max_backward_wait(), DEFAULT_MAX_BACKWARD_WAIT);
    }

    #[test]
    fn stamps_fields_and_counts_sequence() {
        let t = EPOCH_UNIX_MS + 123_456;
        let clock = ManualClock::new(t);
        let generator = IdGenerator::with_clock(region(5), 9, &clock, Duration::ZERO).unwrap();
        for seq in 0..10u16 {
            let parts = generator.next_id().unwrap().decode();
            assert_eq!(parts.timestamp_ms, t);
            assert_eq!(parts.region, region(5));
            assert_eq!(parts.machine, 9);
            assert_eq!(parts.sequence, seq);
        }
        clock.advance(Duration::from_millis(1));
        let parts = generator.next_id().unwrap().decode();
        assert_eq!((parts.timestamp_ms, parts.sequence), (t + 1, 0));
    }

    #[test]
    fn clock_before_epoch_or_past_range_is_an_error() {
        let clock = ManualClock::new(EPOCH_UNIX_MS - 1);
        let generator = IdGenerator::with_clock(region(1), 1, &clock, Duration::ZERO).unwrap();
        assert_eq!(
            generator.next_id(),
            Err(IdError::TimestampOutOfRange {
                timestamp_ms: EPOCH_UNIX_MS - 1
            })
        );
        clock.set(crate::MAX_TIMESTAMP_UNIX_MS + 1);
        assert!(matches!(
            generator.next_id(),
            Err(IdError::TimestampOutOfRange { .. })
        ));
        clock.set(crate::MAX_TIMESTAMP_UNIX_MS);
        assert_eq!(
            generator.next_id().unwrap().timestamp_ms(),
            crate::MAX_TIMESTAMP_UNIX_MS
        );
    }

    #[test]
    fn zero_bound_refuses_any_backward_step() {
        let clock = ManualClock::new(EPOCH_UNIX_MS + 10);
        let generator = IdGenerator::with_clock(region(1), 1, &clock, Duration::ZERO).unwrap();
        let first = generator.next_id().unwrap();
        clock.set(EPOCH_UNIX_MS + 9);
        assert_eq!(
            generator.next_id(),
            Err(IdError::ClockMovedBackwards { by_ms: 1 })
        );
        clock.set(EPOCH_UNIX_MS + 10);
        assert!(generator.next_id().unwrap() > first);
    }
}
