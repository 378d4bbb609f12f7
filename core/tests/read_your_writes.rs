//! Read-your-writes and settings that change under the cache's feet: a caller that begins after
//! `invalidate`, `clear` or `invalidate_tag` has returned never gets a value computed before it;
//! a memory limit lowered while values are being stored holds once they are; a longer
//! `cache_duration` does not bring back entries that had already expired.
//!
//! Concurrency is coordinated with gates, barriers, channels and counters, never with sleeps;
//! a caller that hangs is turned into a failure by a watchdog (`finish`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Barrier, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use coopcache::{Cache, CallOptions, Clock, ENTRY_OVERHEAD, MemoryLimit, WhenFull};

mod support;
use support::{Gate, HANG, finish, start, wait_until};

/// How long a stress test may look for a violation.
const STRESS: Duration = Duration::from_secs(3);

fn tagged(tags: &[&str]) -> CallOptions {
    CallOptions::new().tags(tags.iter().copied())
}

/// A leader computes key 1 with `tags` (returning "old" once the gate opens); `invalidate` runs
/// while it computes; then a new caller asks for key 1. Returns what the new caller got.
fn caller_after_invalidation(tags: &[&str], invalidate: impl FnOnce(&Cache<u64, String>)) -> String {
    let c: Cache<u64, String> = Cache::builder().build().unwrap();
    let gate = Gate::default();
    let (started_tx, started_rx) = mpsc::channel();
    let leader = {
        let (c, gate, opts) = (c.clone(), gate.clone(), tagged(tags));
        start(move || {
            c.compute(1, &opts, || {
                started_tx.send(()).unwrap();
                gate.wait();
                Ok::<_, std::convert::Infallible>("old".to_string().into())
            })
        })
    };
    started_rx.recv_timeout(HANG).expect("the leader started computing");

    invalidate(&c);

    let after = {
        let c = c.clone();
        start(move || c.get_or_compute(1, || "new".to_string()))
    };
    // The new caller has begun: it either joined the old flight or started its own.
    wait_until("the new caller began", || {
        let st = c.stats();
        st.coalesced + st.computations >= 2
    });
    gate.open();
    assert_eq!(finish("the leader that began before the invalidation", leader).unwrap(), "old");
    finish("the caller that began after the invalidation", after)
}

/// A caller that begins after `invalidate(k)` returned gets a new value, not the one of the
/// flight that began before the invalidation.
#[test]
fn a_caller_after_invalidate_does_not_join_the_older_flight() {
    let got = caller_after_invalidation(&[], |c| {
        c.invalidate(&1);
    });
    assert_eq!(got, "new", "the caller that began after invalidate() got the pre-invalidation value");
}

/// Same after `clear()`.
#[test]
fn a_caller_after_clear_does_not_join_the_older_flight() {
    let got = caller_after_invalidation(&[], |c| c.clear());
    assert_eq!(got, "new", "the caller that began after clear() got the pre-clear value");
}

/// Same after `invalidate_tag(t)`, the older flight computing with tag `t`.
#[test]
fn a_caller_after_invalidate_tag_does_not_join_the_older_flight() {
    let got = caller_after_invalidation(&["t"], |c| {
        c.invalidate_tag("t");
    });
    assert_eq!(got, "new", "the caller that began after invalidate_tag() got the pre-invalidation value");
}

/// Stress: a writer bumps a version, invalidates the key (with `invalidate`), then publishes
/// the version; readers compute the key from the current version. A reader that saw version `v`
/// published (so the invalidation after the bump had returned before it began) must never get a
/// value older than `v`.
fn readers_see_their_writes(invalidate: impl Fn(&Cache<u64, u64>) + Sync) {
    const READERS: usize = 3;
    let c: Cache<u64, u64> = Cache::builder().build().unwrap();
    let version = AtomicU64::new(0);
    let published = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + STRESS;
    let violation: Mutex<Option<String>> = Mutex::new(None);
    let reads = AtomicUsize::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(SeqCst) {
                let v = version.fetch_add(1, SeqCst) + 1;
                invalidate(&c);
                published.store(v, SeqCst);
                thread::yield_now();
            }
        });
        for _ in 0..READERS {
            s.spawn(|| {
                while !stop.load(SeqCst) {
                    let seen = published.load(SeqCst);
                    let got = c.get_or_compute(1, || {
                        let v = version.load(SeqCst);
                        // Stay in flight a moment, so others can arrive while it runs.
                        thread::yield_now();
                        v
                    });
                    reads.fetch_add(1, SeqCst);
                    if got < seen {
                        violation.lock().unwrap().get_or_insert_with(|| {
                            format!("a reader began after the invalidation of version {seen} returned, got version {got}")
                        });
                        stop.store(true, SeqCst);
                    }
                    if Instant::now() > deadline {
                        stop.store(true, SeqCst);
                    }
                }
            });
        }
    });
    eprintln!("{} reads", reads.load(SeqCst));
    if let Some(v) = violation.into_inner().unwrap() {
        panic!("{v}");
    }
}

/// Stress version of the `invalidate` case: see [`readers_see_their_writes`].
#[test]
fn readers_see_their_writes_under_concurrent_invalidate() {
    readers_see_their_writes(|c| {
        c.invalidate(&1);
    });
}

/// Stress version of the `clear` case: see [`readers_see_their_writes`].
#[test]
fn readers_see_their_writes_under_concurrent_clear() {
    readers_see_their_writes(|c| c.clear());
}

/// Stress: writers store new keys while one of them lowers the memory limit from large to less
/// than one entry, at a random point of its own stores; once every store of the round has
/// finished, `bytes_used <= memory_limit` must hold. Many more writers than cores, so that when
/// the limit drops some of them are in the middle of a store, on the other core or descheduled.
/// Every few rounds the cache and the writer threads are new (how they happen to be laid out
/// can make the race rare for a while).
fn the_lowered_limit_holds_after_concurrent_stores(mode: WhenFull) {
    const WRITERS: u64 = 16;
    const PER_ROUND: u64 = 200;
    const ROUNDS_PER_CACHE: u64 = 50;
    const ENTRY: u64 = 100 + ENTRY_OVERHEAD;
    // One such stress test at a time: they would only share the two cores.
    static ALONE: Mutex<()> = Mutex::new(());
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let large = MemoryLimit::Bytes(1 << 40);
    let small = MemoryLimit::Bytes(ENTRY - 1);
    let deadline = Instant::now() + STRESS;
    let mut rounds = 0u64;
    let mut violation = None;
    while violation.is_none() && Instant::now() < deadline {
        let c: Cache<u64, u64> = Cache::builder().when_full(mode).weigher(|_, _| 100).build().unwrap();
        let settings = |limit| c.settings().memory_limit(limit).when_full(mode);
        let barrier = Barrier::new(WRITERS as usize + 1);
        let lower_at = AtomicU64::new(0);
        let lowered = AtomicBool::new(false);
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            for w in 0..WRITERS {
                let (c, settings, barrier, lower_at, lowered, stop) =
                    (&c, &settings, &barrier, &lower_at, &lowered, &stop);
                s.spawn(move || {
                    for round in 0.. {
                        barrier.wait(); // the round begins
                        if stop.load(SeqCst) {
                            return;
                        }
                        for i in 0..PER_ROUND {
                            if w == 0 && i == lower_at.load(SeqCst) {
                                c.reconfigure(settings(small)).unwrap();
                                lowered.store(true, SeqCst);
                            }
                            // Stores after the limit dropped are rejected: the round is over.
                            if lowered.load(SeqCst) {
                                break;
                            }
                            c.get_or_compute((round << 32) | (w << 16) | i, || i);
                        }
                        barrier.wait(); // the round is over
                    }
                });
            }
            for _ in 0..ROUNDS_PER_CACHE {
                if Instant::now() > deadline {
                    break;
                }
                rounds += 1;
                c.reconfigure(settings(large)).unwrap();
                lowered.store(false, SeqCst);
                lower_at.store(random_below(PER_ROUND), SeqCst);
                barrier.wait();
                barrier.wait();
                let st = c.stats();
                if st.bytes_used > st.memory_limit {
                    violation = Some(format!(
                        "round {rounds}: after every store finished, bytes_used {} > memory_limit {} ({} entries)",
                        st.bytes_used, st.memory_limit, st.entries
                    ));
                    break;
                }
            }
            stop.store(true, SeqCst);
            barrier.wait();
        });
    }
    eprintln!("{rounds} rounds");
    if let Some(v) = violation {
        panic!("{v}");
    }
}

/// A small pseudo-random number below `n` (no extra dependency needed).
fn random_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) % n.max(1)
}

/// Evict mode: see [`the_lowered_limit_holds_after_concurrent_stores`].
#[test]
fn a_limit_lowered_during_stores_holds_in_evict_mode() {
    the_lowered_limit_holds_after_concurrent_stores(WhenFull::Evict);
}

/// Reject mode: see [`the_lowered_limit_holds_after_concurrent_stores`].
#[test]
fn a_limit_lowered_during_stores_holds_in_reject_mode() {
    the_lowered_limit_holds_after_concurrent_stores(WhenFull::Reject);
}

/// A longer `cache_duration` does not revive an entry that had already expired (but was not yet
/// swept): it stays gone.
#[test]
fn a_longer_duration_does_not_revive_expired_entries() {
    let clock = Clock::manual();
    let c: Cache<u64, u64> =
        Cache::builder().cache_duration(Duration::from_secs(10)).clock(clock.clone()).build().unwrap();
    c.get_or_compute(1, || 1);
    clock.advance(Duration::from_secs(11));
    assert_eq!(c.get(&1), None, "expired after 11 s idle with a 10 s duration");
    c.reconfigure(c.settings().cache_duration(Duration::from_secs(100))).unwrap();
    assert_eq!(c.get(&1), None, "an entry that had expired came back when the duration grew");
}
