//! After `fork()` only the forking thread exists in the child: the computations, waits and
//! slots of the parent's other threads must not strand the child's callers (issue 14, item 4).
//! A process of its own (this test binary) stands for the child: the threads that hold leases
//! and slots here are the parent's, which `after_fork_in_child` must forget. The real fork is
//! tested from Python (tests/python/test_fork.py).

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use coopcache::{Begin, Cache, Completion};

#[test]
fn after_fork_the_child_computes_keys_the_parent_was_computing_and_gets_slots_back() {
    let cache: Cache<u64, u64> = Cache::builder().name("fork").max_concurrency(1).build().unwrap();
    let (held_tx, held_rx) = mpsc::channel();
    let (_forever_tx, forever_rx) = mpsc::channel::<()>();
    // A "parent thread" leads key 1 and holds the only slot, and never finishes.
    let parent = {
        let cache = cache.clone();
        thread::spawn(move || {
            let Begin::Lease(lease) = cache.begin(&1).unwrap() else { panic!("no lease") };
            let permit = lease.slot().wait();
            held_tx.send(()).unwrap();
            let _ = forever_rx.recv(); // until the test process ends
            drop((permit, lease));
        })
    };
    held_rx.recv().unwrap();
    assert!(matches!(cache.begin(&1).unwrap(), Begin::Wait(_)), "before: the child would wait");

    coopcache::after_fork_in_child();

    let Begin::Lease(lease) = cache.begin(&1).unwrap() else { panic!("the child must compute key 1") };
    assert!(lease.slot().wait_timeout(Duration::from_secs(10)).is_some(), "the parent's slot is free");
    let Begin::Wait(w) = cache.begin(&1).unwrap() else { panic!("a second child caller waits") };
    lease.store(11);
    assert!(matches!(w.pending().wait(), Completion::Value(11)));
    assert_eq!(cache.get(&1), Some(11));
    assert_eq!(cache.stats().in_flight, 0);
    drop(parent); // detached: it ends with the process
}
