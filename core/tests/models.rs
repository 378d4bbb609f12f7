//! The flight protocol under the shuttle model checker: the real code, run many times under
//! random and PCT (probabilistic concurrency testing) schedules of its threads. A schedule in
//! which every thread is blocked is reported as a deadlock, so "no caller ever hangs" is
//! checked along with each model's assertions.
//!
//! Run with `make test-models` (`cargo test -p coopcache --release --features shuttle --test
//! models`). `COOPCACHE_MODEL_ITERATIONS` sets the schedules per model and scheduler (default
//! 20000). A failure prints the schedule to pass to `shuttle::replay`.
#![cfg(feature = "shuttle")]

use std::sync::Arc;

use coopcache::{Begin, Cache, CallOptions, Error, MemoryLimit, WhenFull};
use shuttle::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use shuttle::thread;

/// Runs `model` under random schedules, then under PCT schedules of depth 3.
fn explore(model: impl Fn() + Send + Sync + 'static) {
    let n = std::env::var("COOPCACHE_MODEL_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let model = Arc::new(model);
    let m = model.clone();
    shuttle::check_random(move || m(), n);
    shuttle::check_pct(move || model(), n, 3);
}

fn cache() -> Cache<u32, u64> {
    Cache::builder().build().unwrap()
}

/// A value from "the database", for read-your-writes models: the version it holds.
fn read(db: &AtomicU64) -> u64 {
    db.load(SeqCst)
}

/// A caller that starts after `invalidate` returned sees the write made before it, whatever
/// computation of the key was running.
#[test]
fn a_read_after_invalidate_sees_the_write() {
    explore(|| {
        let (c, db) = (cache(), Arc::new(AtomicU64::new(1)));
        let reader = {
            let (c, db) = (c.clone(), db.clone());
            thread::spawn(move || c.get_or_compute(0, || read(&db)))
        };
        db.store(2, SeqCst);
        c.invalidate(&0);
        assert_eq!(c.get_or_compute(0, || read(&db)), 2);
        assert!(reader.join().unwrap() >= 1);
    });
}

/// The same after `clear`.
#[test]
fn a_read_after_clear_sees_the_write() {
    explore(|| {
        let (c, db) = (cache(), Arc::new(AtomicU64::new(1)));
        let reader = {
            let (c, db) = (c.clone(), db.clone());
            thread::spawn(move || c.get_or_compute(0, || read(&db)))
        };
        db.store(2, SeqCst);
        c.clear();
        assert_eq!(c.get_or_compute(0, || read(&db)), 2);
        reader.join().unwrap();
    });
}

/// The same after `invalidate_tag` of a tag the value is stored with; a value stored with
/// another tag is not held back.
#[test]
fn a_read_after_invalidate_tag_sees_the_write() {
    explore(|| {
        let (c, db) = (cache(), Arc::new(AtomicU64::new(1)));
        let tagged = CallOptions::new().tags(["user:1"]);
        let compute = |c: &Cache<u32, u64>, db: &AtomicU64| {
            c.compute(0, &tagged, || Ok::<_, Error>(read(db).into())).unwrap()
        };
        let reader = {
            let (c, db, other) = (c.clone(), db.clone(), CallOptions::new().tags(["team:2"]));
            thread::spawn(move || {
                c.compute(1, &other, || Ok::<_, Error>(7.into())).unwrap();
                c.compute(0, &CallOptions::new().tags(["user:1"]), || Ok::<_, Error>(read(&db).into()))
                    .unwrap()
            })
        };
        db.store(2, SeqCst);
        c.invalidate_tag("user:1");
        assert_eq!(compute(&c, &db), 2);
        reader.join().unwrap();
        assert_eq!(c.get(&1), Some(7), "an untouched tag's value is stored");
    });
}

/// A leader that drops its lease unfinished hands the key over: every caller still gets a
/// value, from one of them computing it.
#[test]
fn a_dropped_lease_hands_the_key_over() {
    explore(|| {
        let (c, runs) = (cache(), Arc::new(AtomicUsize::new(0)));
        let dropper = {
            let c = c.clone();
            thread::spawn(move || match c.begin(&0).unwrap() {
                Begin::Lease(lease) => drop(lease),
                Begin::Wait(w) => drop(w),
                Begin::Hit(_) => {}
            })
        };
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let (c, runs) = (c.clone(), runs.clone());
                thread::spawn(move || {
                    c.get_or_compute(0, || {
                        runs.fetch_add(1, SeqCst);
                        5
                    })
                })
            })
            .collect();
        dropper.join().unwrap();
        for h in callers {
            assert_eq!(h.join().unwrap(), 5);
        }
        assert_eq!(runs.load(SeqCst), 1, "one computation, whoever led");
        assert_eq!(c.stats().in_flight, 0);
    });
}

/// A waiter that gives up stops alone: the computation goes on and is stored, and callers
/// still waiting get it. The leader's abandonment hook runs only once the last waiter gave up
/// before the value arrived.
#[test]
fn waiters_that_give_up_stop_alone() {
    explore(|| {
        let c = cache();
        let Ok(Begin::Lease(lease)) = c.begin(&0) else { unreachable!("the first caller leads") };
        let Ok(Begin::Wait(other)) = c.begin(&0) else { unreachable!("the second caller waits") };
        let gone = Arc::new(AtomicUsize::new(0));
        let (g, abandoned) = (gone.clone(), Arc::new(AtomicUsize::new(0)));
        let a = abandoned.clone();
        lease.on_abandoned(move || {
            // Each waiter is counted just before it is dropped: both must be.
            assert_eq!(g.load(SeqCst), 2, "abandoned while a waiter still waited");
            a.fetch_add(1, SeqCst);
        });
        let quitters: Vec<_> = [lease.waiter(), other]
            .into_iter()
            .map(|w| {
                let gone = gone.clone();
                thread::spawn(move || {
                    gone.fetch_add(1, SeqCst);
                    drop(w);
                })
            })
            .collect();
        let stayer = {
            let c = c.clone();
            thread::spawn(move || c.get_or_compute(0, || 9))
        };
        let leader = thread::spawn(move || lease.store(3));
        for h in quitters {
            h.join().unwrap();
        }
        assert_eq!(stayer.join().unwrap(), 3, "the lease existed before it asked");
        assert_eq!(leader.join().unwrap(), 3);
        assert!(abandoned.load(SeqCst) <= 1);
        assert_eq!(c.get(&0), Some(3), "the computation was stored");
    });
}

/// Lowering `max_concurrency` while leaders queue for a slot: every one of them is granted a
/// slot in turn (none is dropped), and nobody hangs.
#[test]
fn slots_survive_a_lower_limit() {
    explore(|| {
        let c: Cache<u32, u64> = Cache::builder().max_concurrency(2).build().unwrap();
        let callers: Vec<_> = (0..3)
            .map(|i| {
                let c = c.clone();
                thread::spawn(move || c.get_or_compute(i, || i as u64))
            })
            .collect();
        c.reconfigure(c.settings().max_concurrency(Some(1))).unwrap();
        for (i, h) in callers.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), i as u64);
        }
    });
}

/// A computation that asks another key of the same cache under `max_concurrency(1)` runs in
/// its caller's slot instead of waiting for one.
#[test]
fn nested_computations_share_their_callers_slot() {
    explore(|| {
        let c: Cache<u32, u64> = Cache::builder().max_concurrency(1).build().unwrap();
        let callers: Vec<_> = (0..2)
            .map(|i| {
                let c = c.clone();
                thread::spawn(move || c.get_or_compute(i, || c.get_or_compute(10 + i, || 1) + 1))
            })
            .collect();
        for h in callers {
            assert_eq!(h.join().unwrap(), 2);
        }
    });
}

/// Two computations that ask each other's key on two threads: one of them fails with the
/// recursion error instead of both waiting forever.
#[test]
fn a_wait_cycle_across_threads_is_an_error() {
    explore(|| {
        let c = cache();
        let ask = |c: Cache<u32, u64>, mine: u32, theirs: u32| {
            thread::spawn(move || {
                c.try_get_or_compute(mine, || {
                    c.try_get_or_compute(theirs, || Ok::<_, Error>(1)).map(|v| v + 1)
                })
            })
        };
        let (a, b) = (ask(c.clone(), 1, 2), ask(c.clone(), 2, 1));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        // Each gets its key's value (2, or 1 if the other computed it as its inner call) or the
        // recursion error.
        let fine = |r: &Result<u64, Error>| matches!(r, Ok(1 | 2) | Err(Error::Recursion { .. }));
        assert!(fine(&a) && fine(&b), "{a:?} {b:?}");
    });
}

/// Lowering the memory limit while values are being stored: once everything is done, the bytes
/// charged are within the new limit, in both full policies.
#[test]
fn a_lower_limit_holds_against_concurrent_stores() {
    for policy in [WhenFull::Evict, WhenFull::Reject] {
        explore(move || {
            let c: Cache<u32, u64> =
                Cache::builder().memory_limit(10_000).when_full(policy).weigher(|_, _| 100).build().unwrap();
            let writers: Vec<_> = (0..2)
                .map(|t| {
                    let c = c.clone();
                    thread::spawn(move || {
                        for k in 0..2 {
                            c.get_or_compute(t * 10 + k, || 1);
                        }
                    })
                })
                .collect();
            let one_entry = 100 + coopcache::ENTRY_OVERHEAD;
            c.reconfigure(c.settings().memory_limit(MemoryLimit::Bytes(one_entry))).unwrap();
            for h in writers {
                h.join().unwrap();
            }
            let s = c.stats();
            assert!(
                s.bytes_used <= s.memory_limit,
                "{} bytes over a limit of {}",
                s.bytes_used,
                s.memory_limit
            );
            assert!(s.entries <= 1);
        });
    }
}

/// Tagged values stored while the cache is cleared: none computed before the clear survives it.
#[test]
fn tagged_stores_do_not_outlive_clear() {
    explore(|| {
        let (c, db) = (cache(), Arc::new(AtomicU64::new(1)));
        let writers: Vec<_> = (0..2)
            .map(|k| {
                let (c, db) = (c.clone(), db.clone());
                thread::spawn(move || {
                    let opts = CallOptions::new().tags(["t"]);
                    c.compute(k, &opts, || Ok::<_, Error>(read(&db).into())).unwrap();
                })
            })
            .collect();
        db.store(2, SeqCst);
        c.clear();
        for k in 0..2 {
            assert_ne!(c.get(&k), Some(1), "a value computed before clear() was kept");
        }
        for h in writers {
            h.join().unwrap();
        }
        for k in 0..2 {
            assert_ne!(c.get(&k), Some(1), "a value computed before clear() was stored after it");
        }
    });
}

const AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// A cache whose value 1 of key 0 is due for refresh (`refresh_after`, on a manual clock).
fn due(value: impl FnOnce() -> u64) -> (Cache<u32, u64>, coopcache::Clock) {
    let clock = coopcache::Clock::manual();
    let c = Cache::builder().clock(clock.clone()).refresh_after(AFTER).build().unwrap();
    c.get_or_compute(0, value);
    clock.advance(AFTER);
    (c, clock)
}

/// Refresh ahead: the hits on a due value race; exactly one of them refreshes it, each gets the
/// old value or the new one, and the new one replaces the old.
#[test]
fn a_due_value_is_refreshed_once_while_hits_get_a_value() {
    explore(|| {
        let (c, _clock) = due(|| 1);
        let runs = Arc::new(AtomicUsize::new(0));
        let hit = |c: &Cache<u32, u64>, runs: &AtomicUsize| {
            c.get_or_compute(0, || {
                runs.fetch_add(1, SeqCst);
                2
            })
        };
        let others: Vec<_> = (0..2)
            .map(|_| {
                let (c, runs) = (c.clone(), runs.clone());
                thread::spawn(move || hit(&c, &runs))
            })
            .collect();
        let mut seen = vec![hit(&c, &runs)];
        seen.extend(others.into_iter().map(|h| h.join().unwrap()));
        assert!(seen.iter().all(|&v| v == 1 || v == 2), "{seen:?}");
        assert_eq!(runs.load(SeqCst), 1, "one refresh");
        assert_eq!(c.get(&0), Some(2));
        let s = c.stats();
        assert_eq!((s.refreshes_started, s.refreshes_succeeded, s.in_flight), (1, 1, 0));
    });
}

/// A caller that starts after `invalidate` returned sees the write made before it, whatever
/// refresh of the key was running; and that refresh, ending later, leaves the new value as it
/// is (stored, not due).
#[test]
fn a_read_after_invalidate_sees_the_write_during_a_refresh() {
    explore(|| {
        let db = Arc::new(AtomicU64::new(1));
        let (c, _clock) = due(|| read(&db));
        let refresher = {
            let (c, db) = (c.clone(), db.clone());
            thread::spawn(move || c.get_or_compute(0, || read(&db)))
        };
        db.store(2, SeqCst);
        c.invalidate(&0);
        assert_eq!(c.get_or_compute(0, || read(&db)), 2);
        refresher.join().unwrap();
        assert_eq!(c.get_or_compute(0, || 99), 2, "the value after the write, not due for refresh");
    });
}
