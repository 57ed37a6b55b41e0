//! Generator behaviour under awkward clocks: backward steps and sequence
//! exhaustion, driven by deterministic test clocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use id_gen::{Clock, Id, IdError, IdGenerator, ManualClock, RegionId, EPOCH_UNIX_MS, MAX_SEQUENCE};

const T0: u64 = EPOCH_UNIX_MS + 1_000_000;

fn region() -> RegionId {
    RegionId::new(4).unwrap()
}

/// Returns the current time, then moves it forward 1 ms: a clock that only
/// progresses if the generator keeps re-reading it.
struct TickingClock {
    now: AtomicU64,
    reads: AtomicU64,
}

impl TickingClock {
    fn new(now: u64) -> Self {
        TickingClock {
            now: AtomicU64::new(now),
            reads: AtomicU64::new(0),
        }
    }

    fn set(&self, now: u64) {
        self.now.store(now, Ordering::SeqCst);
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Clock for TickingClock {
    fn now_ms(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.now.fetch_add(1, Ordering::SeqCst)
    }
}

/// Frozen at `start` for the first `frozen_reads` reads, then 1 ms later.
struct FrozenClock {
    start: u64,
    frozen_reads: u64,
    reads: AtomicU64,
}

impl Clock for FrozenClock {
    fn now_ms(&self) -> u64 {
        let read = self.reads.fetch_add(1, Ordering::SeqCst);
        if read < self.frozen_reads {
            self.start
        } else {
            self.start + 1
        }
    }
}

#[test]
fn ids_strictly_increase() {
    let generator = IdGenerator::new(region(), 1).unwrap();
    let mut prev = generator.next_id().unwrap();
    for _ in 0..200_000 {
        let id = generator.next_id().unwrap();
        assert!(id > prev, "{id} not greater than {prev}");
        prev = id;
    }
}

#[test]
fn small_backward_step_is_waited_out() {
    let clock = TickingClock::new(T0);
    let generator =
        IdGenerator::with_clock(region(), 2, &clock, Duration::from_millis(100)).unwrap();
    let before = generator.next_id().unwrap();
    assert_eq!(before.timestamp_ms(), T0);

    // NTP steps the clock back 5 ms.
    clock.set(T0 - 5);
    let reads_before = clock.reads();
    let after = generator.next_id().unwrap();

    assert!(after > before, "{after} not greater than {before}");
    assert!(after.timestamp_ms() >= before.timestamp_ms());
    // It must have re-read the clock until it caught up, not guessed.
    assert!(
        clock.reads() - reads_before >= 6,
        "reads: {}",
        clock.reads() - reads_before
    );
}

#[test]
fn backward_step_at_the_bound_is_waited_out() {
    let clock = TickingClock::new(T0);
    let generator =
        IdGenerator::with_clock(region(), 2, &clock, Duration::from_millis(20)).unwrap();
    let before = generator.next_id().unwrap();
    clock.set(T0 - 20);
    assert!(generator.next_id().unwrap() > before);
}

#[test]
fn large_backward_step_is_refused_without_duplicates() {
    let clock = ManualClock::new(T0);
    let generator =
        IdGenerator::with_clock(region(), 3, &clock, Duration::from_millis(100)).unwrap();
    let issued: Vec<Id> = (0..10).map(|_| generator.next_id().unwrap()).collect();

    clock.set(T0 - 500);
    for _ in 0..3 {
        assert_eq!(
            generator.next_id(),
            Err(IdError::ClockMovedBackwards { by_ms: 500 })
        );
    }
    // Still too far behind by one ms more than the bound.
    clock.set(T0 - 101);
    assert_eq!(
        generator.next_id(),
        Err(IdError::ClockMovedBackwards { by_ms: 101 })
    );

    // Once the clock is back where it was, numbering resumes after the last
    // issued ID instead of reusing anything.
    clock.set(T0);
    let next = generator.next_id().unwrap();
    assert!(next > *issued.last().unwrap());
    assert!(!issued.contains(&next));
    assert_eq!(next.sequence(), 10);
}

#[test]
fn error_message_names_the_step() {
    let msg = IdError::ClockMovedBackwards { by_ms: 250 }.to_string();
    assert!(msg.contains("250 ms"), "{msg}");
}

#[test]
fn sequence_exhaustion_waits_for_next_millisecond() {
    let per_ms = u64::from(MAX_SEQUENCE) + 1;
    let clock = FrozenClock {
        start: T0,
        // Enough reads for a full millisecond of IDs plus some spinning.
        frozen_reads: per_ms + 500,
        reads: AtomicU64::new(0),
    };
    let generator = IdGenerator::with_clock(region(), 5, &clock, Duration::ZERO).unwrap();

    for expected_seq in 0..=MAX_SEQUENCE {
        let id = generator.next_id().unwrap();
        assert_eq!(id.timestamp_ms(), T0);
        assert_eq!(id.sequence(), expected_seq);
    }
    let overflow = generator.next_id().unwrap();
    assert_eq!(overflow.timestamp_ms(), T0 + 1);
    assert_eq!(overflow.sequence(), 0);
    // The 4,097th call had to keep polling until the clock moved.
    assert!(clock.reads.load(Ordering::SeqCst) > per_ms + 500);
}
