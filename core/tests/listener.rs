//! Listeners and the process-wide sweeper: a slow listener of one cache must not stall the
//! reclaiming of every other cache's idle entries.
//!
//! Coordinated with a gate and counters, never with sleeps for ordering; the waits are bounded
//! only to stop a broken test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

use coopcache::{Cache, Clock, Event, EvictionReason};

mod support;
use support::Gate;

/// True once `cond` holds, polled for at most `bound` (the bound only stops a broken test).
fn eventually(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + bound;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Cache A's listener blocks on its idle evictions (the background sweeper calls it); cache B's
/// idle entries must still be reclaimed by the background sweeper meanwhile.
#[test]
fn a_blocked_listener_does_not_stall_the_sweeper_for_other_caches() {
    const D: Duration = Duration::from_secs(1);
    let gate = Gate::default();
    let entered = Arc::new(AtomicBool::new(false));
    let (clock_a, clock_b) = (Clock::manual(), Clock::manual());
    let a: Cache<u64, u64> = {
        let (gate, entered) = (gate.clone(), entered.clone());
        Cache::builder()
            .name("a")
            .cache_duration(D)
            .clock(clock_a.clone())
            .listener(move |e| {
                if matches!(e, Event::Evicted { reason: EvictionReason::Idle, .. }) {
                    entered.store(true, SeqCst);
                    gate.wait();
                }
            })
            .build()
            .unwrap()
    };
    let b: Cache<u64, u64> =
        Cache::builder().name("b").cache_duration(D).clock(clock_b.clone()).build().unwrap();
    for k in 0..100 {
        a.get_or_compute(k, || k);
        b.get_or_compute(k, || k);
    }

    clock_a.advance(D * 10);
    let blocked = eventually(Duration::from_secs(10), || entered.load(SeqCst));
    assert!(blocked, "the sweeper never reclaimed cache A's idle entries (listener not called)");

    clock_b.advance(D * 10);
    let reclaimed = eventually(Duration::from_secs(10), || b.is_empty());
    let left = b.stats().entries;
    gate.open();
    assert!(
        reclaimed,
        "cache B's idle entries were not reclaimed by the background sweeper while cache A's \
         listener was blocked ({left} of 100 left)"
    );
}
