//! Uniqueness under concurrency: many threads on one generator, and many
//! generators (one per `(region, machine)`) side by side.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;

use id_gen::{Id, IdGenerator, RegionId};

fn assert_strictly_increasing(ids: &[Id]) {
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "per-thread sequence not strictly increasing"
    );
}

#[test]
fn threads_sharing_one_generator_never_collide() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 250_000;

    let generator = Arc::new(IdGenerator::new(RegionId::new(1).unwrap(), 1).unwrap());
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let generator = Arc::clone(&generator);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let ids: Vec<Id> = (0..PER_THREAD)
                    .map(|_| generator.next_id().unwrap())
                    .collect();
                // Calls on one thread are ordered, so their IDs must be too.
                assert_strictly_increasing(&ids);
                ids
            })
        })
        .collect();

    let mut all: Vec<u64> = Vec::with_capacity(THREADS * PER_THREAD);
    for handle in handles {
        all.extend(handle.join().unwrap().into_iter().map(Id::as_u64));
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), THREADS * PER_THREAD);
}

#[test]
fn generators_for_different_nodes_never_collide() {
    const GENERATORS: u8 = 32;
    const PER_GENERATOR: usize = 100_000;

    let barrier = Arc::new(Barrier::new(GENERATORS as usize));
    let handles: Vec<_> = (0..GENERATORS)
        .map(|i| {
            // Spread over regions and machines, including region 0 / machine 31.
            let region = RegionId::new(i % 4).unwrap();
            let machine = i * 7 % 32;
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let generator = IdGenerator::new(region, machine).unwrap();
                barrier.wait();
                let ids: Vec<Id> = (0..PER_GENERATOR)
                    .map(|_| generator.next_id().unwrap())
                    .collect();
                assert_strictly_increasing(&ids);
                assert!(ids
                    .iter()
                    .all(|id| id.region() == region && id.machine() == machine));
                ids
            })
        })
        .collect();

    let nodes: HashSet<(u8, u8)> = (0..GENERATORS).map(|i| (i % 4, i * 7 % 32)).collect();
    assert_eq!(
        nodes.len(),
        GENERATORS as usize,
        "test needs distinct nodes"
    );

    let mut all: Vec<u64> = Vec::with_capacity(GENERATORS as usize * PER_GENERATOR);
    for handle in handles {
        all.extend(handle.join().unwrap().into_iter().map(Id::as_u64));
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), GENERATORS as usize * PER_GENERATOR);
}
