//! Bytes: the limit holds under any interleaving; reject and evict modes; limit 0.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use coopcache::{Cache, Clock, ENTRY_OVERHEAD, Event, EvictionReason, MemoryLimit, WhenFull};

/// Entries of exactly 100 bytes (key and value) + the overhead.
fn cache(limit_entries: u64, mode: WhenFull, clock: Clock) -> Cache<u64, u64> {
    Cache::builder()
        .memory_limit(limit_entries * (100 + ENTRY_OVERHEAD))
        .when_full(mode)
        .weigher(|_, _| 100)
        .clock(clock)
        .build()
        .unwrap()
}

fn concurrent_inserts_never_exceed_the_limit(mode: WhenFull) {
    let c = cache(500, mode, Clock::system());
    let limit = c.stats().memory_limit;
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(8);
    thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut seen = 0;
            while !stop.load(SeqCst) {
                seen = seen.max(c.stats().bytes_used);
            }
            seen
        });
        let writers: Vec<_> = (0..8u64)
            .map(|t| {
                let (c, barrier) = (&c, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..5_000 {
                        c.get_or_compute(t * 1_000_000 + i, || i);
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        stop.store(true, SeqCst);
        assert!(watcher.join().unwrap() <= limit);
    });
    let st = c.stats();
    assert!(st.bytes_used <= limit);
    assert_eq!(st.bytes_used, st.entries * (100 + ENTRY_OVERHEAD), "accounting matches the entries");
    match mode {
        WhenFull::Reject => {
            assert_eq!(st.entries, 500);
            assert_eq!(st.rejected_full, 40_000 - 500);
        }
        WhenFull::Evict => {
            assert_eq!(st.entries, 500);
            assert_eq!(st.evicted_lru, 40_000 - 500);
        }
    }
}

#[test]
fn the_byte_limit_holds_under_concurrent_inserts_in_reject_mode() {
    concurrent_inserts_never_exceed_the_limit(WhenFull::Reject);
}

#[test]
fn the_byte_limit_holds_under_concurrent_inserts_in_evict_mode() {
    concurrent_inserts_never_exceed_the_limit(WhenFull::Evict);
}

#[test]
fn reject_mode_returns_new_values_keeps_serving_old_ones_and_warns_once() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let c: Cache<u64, u64> = Cache::builder()
        .memory_limit(10 * (100 + ENTRY_OVERHEAD))
        .weigher(|_, _| 100)
        .listener(move |e| ev.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    for k in 0..10 {
        c.get_or_compute(k, || k);
    }
    assert_eq!(c.get_or_compute(100, || 100), 100, "returned");
    assert_eq!(c.get(&100), None, "not stored");
    assert_eq!(c.get(&3), Some(3), "old ones still served");
    c.get_or_compute(101, || 101);
    let fulls = |evs: &Vec<Event>| evs.iter().filter(|e| matches!(e, Event::Full { .. })).count();
    assert_eq!(fulls(&events.lock().unwrap()), 1, "warned once");
    // Drain below 90% and fill up again: a second warning.
    c.invalidate(&0);
    c.invalidate(&1);
    c.get_or_compute(200, || 1);
    c.get_or_compute(201, || 1);
    c.get_or_compute(202, || 1);
    assert_eq!(fulls(&events.lock().unwrap()), 2);
    assert_eq!(c.stats().rejected_full, 3);
}

#[test]
fn evict_mode_drops_least_recently_used_entries_first() {
    let clock = Clock::manual();
    let c = cache(1_000, WhenFull::Evict, clock.clone());
    for k in 0..1_000 {
        c.get_or_compute(k, || k);
    }
    clock.advance(Duration::from_secs(1));
    for k in 0..500 {
        assert_eq!(c.get(&k), Some(k)); // the hot half, read later
    }
    clock.advance(Duration::from_secs(1));
    for k in 10_000..10_250 {
        c.get_or_compute(k, || k);
    }
    let hot = (0..500).filter(|k| c.get(k).is_some()).count();
    let cold = (500..1_000).filter(|k| c.get(k).is_some()).count();
    assert_eq!(c.stats().evicted_lru, 250);
    assert!(hot >= 420 && cold <= 330, "hot kept {hot}/500, cold kept {cold}/500");
}

#[test]
fn a_limit_of_zero_stores_nothing_but_still_coalesces() {
    let c: Cache<u64, u64> = Cache::builder().memory_limit(0).build().unwrap();
    for _ in 0..3 {
        c.get_or_compute(1, || 1);
    }
    assert_eq!(c.stats().computations, 3);
    assert_eq!(c.stats().entries, 0);

    let runs = AtomicU32::new(0);
    let barrier = Barrier::new(8);
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                barrier.wait();
                c.get_or_compute(2, || {
                    runs.fetch_add(1, SeqCst);
                    while c.stats().coalesced < 7 {
                        thread::yield_now();
                    }
                    2
                })
            });
        }
    });
    assert_eq!(runs.load(SeqCst), 1);
}

#[test]
fn a_lower_limit_takes_effect_at_once() {
    let c = cache(100, WhenFull::Reject, Clock::system());
    for k in 0..100 {
        c.get_or_compute(k, || k);
    }
    let s = c.settings().memory_limit(MemoryLimit::Bytes(10 * (100 + ENTRY_OVERHEAD)));
    c.reconfigure(s).unwrap();
    let st = c.stats();
    assert_eq!(st.entries, 10);
    assert!(st.bytes_used <= st.memory_limit);
    assert_eq!(st.evicted_lru, 90);
}

#[test]
fn an_entry_larger_than_the_limit_is_returned_not_stored() {
    let c: Cache<u64, Vec<u8>> = Cache::builder()
        .memory_limit(1_000)
        .when_full(WhenFull::Evict)
        .weigher(|_, v: &Vec<u8>| v.len() as u64)
        .build()
        .unwrap();
    c.get_or_compute(1, || vec![0; 100]);
    assert_eq!(c.get_or_compute(2, || vec![0; 5_000]).len(), 5_000);
    assert_eq!(c.get(&2), None);
    assert!(c.get(&1).is_some(), "nothing was evicted for a value that can never fit");
}

#[test]
fn eviction_events_carry_their_reason() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let c: Cache<u64, u64> = Cache::builder()
        .memory_limit(2 * (16 + ENTRY_OVERHEAD))
        .when_full(WhenFull::Evict)
        .listener(move |e| ev.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    for k in 0..3 {
        c.get_or_compute(k, || k);
    }
    c.clear();
    let evs = events.lock().unwrap();
    let reasons: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Evicted { reason, count, .. } => Some((*reason, *count)),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![(EvictionReason::Lru, 1), (EvictionReason::Invalidated, 2)]);
}
