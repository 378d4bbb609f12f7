//! Idle expiry, driven by a manual clock: exact on read, reclaimed by the sweeper.

use std::time::Duration;

use coopcache::{Cache, Clock};

const D: Duration = Duration::from_secs(10);

fn cache(clock: &Clock) -> Cache<u64, u64> {
    Cache::builder().cache_duration(D).clock(clock.clone()).build().unwrap()
}

#[test]
fn an_entry_idle_for_the_duration_is_never_returned() {
    let clock = Clock::manual();
    let c = cache(&clock);
    c.get_or_compute(1, || 1);
    clock.advance(D - Duration::from_nanos(1));
    assert_eq!(c.get(&1), Some(1), "one nanosecond short of the duration");
    clock.advance(D);
    assert_eq!(c.get(&1), None, "idle for exactly the duration since that read");
    assert_eq!(c.get_or_compute(1, || 2), 2, "computed again");
    assert_eq!(c.stats().evicted_idle, 1);
}

#[test]
fn reads_keep_an_entry_alive() {
    let clock = Clock::manual();
    let c = cache(&clock);
    c.get_or_compute(1, || 1);
    for _ in 0..10 {
        clock.advance(D / 2);
        assert_eq!(c.get_or_compute(1, || 99), 1);
    }
    assert_eq!(c.stats().computations, 1);
}

#[test]
fn the_sweeper_reclaims_idle_entries_and_keeps_touched_ones() {
    let clock = Clock::manual();
    let c = cache(&clock);
    for k in 0..1_000 {
        c.get_or_compute(k, || k);
    }
    clock.advance(D / 2);
    for k in 0..100 {
        c.get(&k);
    }
    // Past the untouched entries' expiry and the sweeper's tick, before the touched ones'.
    clock.advance(D / 2 + Duration::from_secs(2));
    c.sweep();
    let st = c.stats();
    assert_eq!(st.entries, 100);
    assert_eq!(st.evicted_idle, 900);
    assert!((0..100).all(|k| c.get(&k).is_some()));
    clock.advance(D + Duration::from_secs(2));
    c.sweep();
    assert_eq!(c.stats().entries, 0);
    assert_eq!(c.stats().bytes_used, 0);
}

#[test]
fn a_sweep_with_nothing_due_removes_nothing() {
    let clock = Clock::manual();
    let c = cache(&clock);
    for k in 0..100 {
        c.get_or_compute(k, || k);
    }
    clock.advance(D - Duration::from_secs(1));
    c.sweep();
    assert_eq!(c.stats().entries, 100);
}

#[test]
fn the_background_sweeper_reclaims_without_being_asked() {
    let clock = Clock::manual();
    let c = cache(&clock);
    for k in 0..50 {
        c.get_or_compute(k, || k);
    }
    clock.advance(D + Duration::from_secs(2));
    // The process-wide sweeper runs every 250 ms; wait for its effect, not for a duration.
    for _ in 0..400 {
        if c.stats().entries == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.stats().entries, 0);
    assert_eq!(c.stats().evicted_idle, 50);
}

#[test]
fn a_shorter_duration_takes_effect_at_once() {
    let clock = Clock::manual();
    let c = cache(&clock);
    c.get_or_compute(1, || 1);
    clock.advance(Duration::from_secs(3));
    c.reconfigure(c.settings().cache_duration(Duration::from_secs(2))).unwrap();
    assert_eq!(c.get(&1), None, "idle 3 s against a new duration of 2 s");

    c.get_or_compute(2, || 2);
    clock.advance(Duration::from_secs(4));
    c.sweep();
    assert_eq!(c.stats().entries, 0, "swept on the new duration's schedule");
}
