//! Faults that must not strand a key or a caller: a panicking weigher or listener during a
//! store, a lowered `max_concurrency` while a leader is queued for a slot, a computation that
//! asks the same cache for another key while it holds the only slot, and a panicking flight
//! seen by the infallible `get_or_compute`.
//!
//! Concurrency is coordinated with gates, channels and counters, never with sleeps; a caller
//! that hangs is turned into a failure by a watchdog (`within`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use coopcache::{Begin, Cache, Event, WhenFull};

mod support;
use support::{Gate, HANG, finish, panic_message, start, wait_until, within};

/// A weigher that panics while a lease stores must not strand the key: the flight ends, the
/// caller already waiting gets a result, and a later caller of the key gets one too.
#[test]
fn a_panicking_weigher_does_not_strand_the_key() {
    let c: Cache<u64, String> = Cache::builder()
        .weigher(|_, v: &String| {
            if v == "poison" {
                panic!("the weigher cannot weigh this");
            }
            v.len() as u64
        })
        .build()
        .unwrap();
    let Begin::Lease(lease) = c.begin(&1).unwrap() else { panic!("expected the lease") };
    let waiter = {
        let c = c.clone();
        start(move || c.try_get_or_compute(1, || Ok::<_, std::convert::Infallible>("waiter's".to_string())))
    };
    wait_until("the waiter joined the flight", || c.stats().coalesced == 1);

    // The storing caller may see the weigher's panic; the test only needs it to end.
    let _ = catch_unwind(AssertUnwindSafe(|| lease.store("poison".to_string())));

    let waited = finish("the caller waiting on the flight whose store panicked", waiter);
    eprintln!("the waiter got {waited:?}");
    assert_eq!(c.stats().in_flight, 0, "the flight whose store panicked is still counted in flight");
    let later = {
        let c = c.clone();
        within("a later caller of the key whose store panicked", move || {
            c.try_get_or_compute(1, || Ok::<_, std::convert::Infallible>("later".to_string()))
        })
    };
    assert!(later.is_ok(), "{later:?}");
}

/// A listener that panics on the `Full` event emitted by a store must not strand the flight:
/// the caller already waiting gets the computed value, and nothing stays in flight.
#[test]
fn a_listener_panicking_on_full_does_not_strand_the_waiters() {
    let c: Cache<u64, String> = Cache::builder()
        .memory_limit(10) // smaller than any entry: every store is rejected
        .when_full(WhenFull::Reject)
        .listener(|e| {
            if matches!(e, Event::Full { .. }) {
                panic!("the listener fails on Full");
            }
        })
        .build()
        .unwrap();
    let gate = Gate::default();
    let (started_tx, started_rx) = mpsc::channel();
    let leader = {
        let (c, gate) = (c.clone(), gate.clone());
        start(move || {
            catch_unwind(AssertUnwindSafe(|| {
                c.get_or_compute(1, || {
                    started_tx.send(()).unwrap();
                    gate.wait();
                    "v".to_string()
                })
            }))
            .is_ok()
        })
    };
    started_rx.recv_timeout(HANG).expect("the leader started computing");
    let waiter = {
        let c = c.clone();
        start(move || c.try_get_or_compute(1, || Ok::<_, std::convert::Infallible>("waiter's".to_string())))
    };
    wait_until("the waiter joined the flight", || c.stats().coalesced == 1);
    gate.open();

    let leader_returned = finish("the leader whose store's listener panicked", leader);
    eprintln!("the leader's call returned normally: {leader_returned}");
    let waited = finish("the caller waiting on the flight whose listener panicked", waiter);
    assert_eq!(waited.unwrap(), "v", "the waiter gets the leader's value");
    assert_eq!(c.stats().in_flight, 0, "the flight whose listener panicked is still counted in flight");
    let later = {
        let c = c.clone();
        within("a later caller of the key", move || c.get_or_compute(1, || "later".to_string()))
    };
    assert_eq!(later, "later");
}

/// Lowering `max_concurrency` while a leader is queued for a slot must not drop that leader:
/// once the running computations finish, it computes, and its waiter gets the value.
#[test]
fn lowering_max_concurrency_keeps_a_queued_leader() {
    let c: Cache<u64, String> = Cache::builder().max_concurrency(2).build().unwrap();
    let gate = Gate::default();
    let (started_tx, started_rx) = mpsc::channel();
    let running: Vec<_> = (1..=2u64)
        .map(|k| {
            let (c, gate, started_tx) = (c.clone(), gate.clone(), started_tx.clone());
            start(move || {
                c.get_or_compute(k, || {
                    started_tx.send(()).unwrap();
                    gate.wait();
                    format!("v{k}")
                })
            })
        })
        .collect();
    for _ in 0..2 {
        started_rx.recv_timeout(HANG).expect("both slots taken");
    }
    let queued = {
        let c = c.clone();
        start(move || c.get_or_compute(3, || "v3".to_string()))
    };
    wait_until("the third leader took its lease", || c.stats().in_flight == 3);
    let waiter = {
        let c = c.clone();
        start(move || c.get_or_compute(3, || "waiter's".to_string()))
    };
    wait_until("a waiter joined the third key", || c.stats().coalesced == 1);

    c.reconfigure(c.settings().max_concurrency(Some(1))).unwrap();
    gate.open();

    for (k, r) in running.into_iter().enumerate() {
        assert_eq!(finish("a leader holding a slot", r), format!("v{}", k + 1));
    }
    assert_eq!(finish("the leader queued for a slot when max_concurrency was lowered", queued), "v3");
    assert_eq!(finish("the waiter on the queued leader's key", waiter), "v3");
    assert_eq!(c.stats().in_flight, 0);
}

/// With one slot, a computation that asks the same cache for another cold key must not wait
/// for the slot it holds itself: both values come back.
#[test]
fn a_computation_asking_another_key_does_not_wait_for_its_own_slot() {
    let c: Cache<u64, u64> = Cache::builder().max_concurrency(1).build().unwrap();
    let outer = {
        let c = c.clone();
        within("a computation of key 1 asking for cold key 2 with max_concurrency(1)", move || {
            c.get_or_compute(1, || 10 + c.get_or_compute(2, || 2))
        })
    };
    assert_eq!(outer, 12);
    assert_eq!(c.get(&2), Some(2));
    assert_eq!(c.get(&1), Some(12));
}

/// The infallible `get_or_compute` computes for itself when the flight it waited for panicked,
/// instead of panicking with the other caller's error.
#[test]
fn get_or_compute_computes_for_itself_after_another_callers_panic() {
    let c: Cache<u64, String> = Cache::builder().build().unwrap();
    let gate = Gate::default();
    let (started_tx, started_rx) = mpsc::channel();
    let leader = {
        let (c, gate) = (c.clone(), gate.clone());
        start(move || {
            catch_unwind(AssertUnwindSafe(|| {
                c.get_or_compute(1, || {
                    started_tx.send(()).unwrap();
                    gate.wait();
                    panic!("the leader's computation panics");
                })
            }))
            .is_err()
        })
    };
    started_rx.recv_timeout(HANG).expect("the leader started computing");
    let waiter = {
        let c = c.clone();
        start(move || {
            catch_unwind(AssertUnwindSafe(|| c.get_or_compute(1, || "mine".to_string())))
                .map_err(|p| panic_message(&*p))
        })
    };
    wait_until("the waiter joined the flight", || c.stats().coalesced == 1);
    gate.open();

    assert!(finish("the panicking leader", leader), "the leader's own call panics");
    match finish("the waiter on the panicking flight", waiter) {
        Ok(v) => assert_eq!(v, "mine"),
        Err(msg) => panic!("get_or_compute panicked with another caller's panic: {msg}"),
    }
}
