//! Throughput of `IdGenerator::next_id`.
//!
//! With the system clock a generator is capped at 4,096 IDs per ms, i.e. a
//! floor of ~244 ns/ID, so those figures mostly show the cap. The
//! `ticking_clock` variants use a clock that advances 1 ms per read, so the
//! cap never binds and they show the raw cost of the CAS path.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use id_gen::{Clock, IdGenerator, RegionId, SystemClock, EPOCH_UNIX_MS};

const THREADS: u64 = 8;

/// Advances 1 ms on every read, so sequence exhaustion never happens.
struct TickingClock(AtomicU64);

impl Clock for TickingClock {
    fn now_ms(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

fn ticking_generator() -> IdGenerator<TickingClock> {
    IdGenerator::with_clock(
        RegionId::new(1).unwrap(),
        1,
        TickingClock(AtomicU64::new(EPOCH_UNIX_MS)),
        Duration::ZERO,
    )
    .unwrap()
}

fn system_generator() -> IdGenerator<SystemClock> {
    IdGenerator::new(RegionId::new(1).unwrap(), 1).unwrap()
}

/// Time for `iters` IDs split over `THREADS` threads sharing `generator`;
/// criterion divides by `iters`, so the report is wall time per ID.
fn contended<C: Clock + 'static>(generator: &Arc<IdGenerator<C>>, iters: u64) -> Duration {
    let start = Arc::new(Barrier::new(THREADS as usize + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let generator = Arc::clone(generator);
            let start = Arc::clone(&start);
            // Spread the remainder so exactly `iters` IDs are generated.
            let n = iters / THREADS + u64::from(t < iters % THREADS);
            thread::spawn(move || {
                start.wait();
                for _ in 0..n {
                    black_box(generator.next_id().unwrap());
                }
            })
        })
        .collect();
    // Threads are already spawned and parked on the barrier: spawn cost is
    // excluded from the measurement.
    start.wait();
    let began = Instant::now();
    for handle in handles {
        handle.join().unwrap();
    }
    began.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("next_id");

    let generator = system_generator();
    group.bench_function("1_thread/system_clock", |b| {
        b.iter(|| black_box(generator.next_id().unwrap()))
    });

    let generator = ticking_generator();
    group.bench_function("1_thread/ticking_clock", |b| {
        b.iter(|| black_box(generator.next_id().unwrap()))
    });

    let generator = Arc::new(system_generator());
    group.bench_function("8_threads/system_clock", |b| {
        b.iter_custom(|iters| contended(&generator, iters))
    });

    let generator = Arc::new(ticking_generator());
    group.bench_function("8_threads/ticking_clock", |b| {
        b.iter_custom(|iters| contended(&generator, iters))
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
