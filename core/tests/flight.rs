//! Single flight: one computation per key, whatever happens to the callers.
//! Concurrency is coordinated with barriers, channels and counters, never with sleeps.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use coopcache::{Begin, Cache, CallOptions, Completion, Error, nocache};

fn cache() -> Cache<u64, Arc<String>> {
    Cache::builder().name("t").build().unwrap()
}

/// Blocks until `cond` holds (a condition, not a duration: the bound only stops a broken test).
fn wait_until(mut cond: impl FnMut() -> bool) {
    for _ in 0..20_000 {
        if cond() {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
    panic!("condition not reached");
}

#[derive(Debug, PartialEq)]
struct DbDown(u32);
impl std::fmt::Display for DbDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "db down #{}", self.0)
    }
}
impl std::error::Error for DbDown {}

#[test]
fn sixty_four_threads_on_one_cold_key_compute_once() {
    let c = cache();
    let runs = AtomicU32::new(0);
    let barrier = Barrier::new(64);
    let values: Vec<Arc<String>> = thread::scope(|s| {
        let hs: Vec<_> = (0..64)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    c.get_or_compute(1, || {
                        runs.fetch_add(1, SeqCst);
                        // Hold the flight open until every other thread has joined or hit it.
                        wait_until(|| c.stats().coalesced + c.stats().hits >= 63);
                        Arc::new("v".to_string())
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs.load(SeqCst), 1);
    assert!(values.iter().all(|v| Arc::ptr_eq(v, &values[0])), "everyone got the same value");
    let st = c.stats();
    assert_eq!(st.computations, 1);
    assert_eq!(st.in_flight, 0);
    assert_eq!(st.entries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_compute_once() {
    let c = cache();
    let runs = Arc::new(AtomicU32::new(0));
    let (release, gate) = tokio::sync::watch::channel(false);
    let mut hs = Vec::new();
    for _ in 0..10_000 {
        let (c, runs, mut gate) = (c.clone(), runs.clone(), gate.clone());
        hs.push(tokio::spawn(async move {
            c.get_or_compute_async(7, async move {
                runs.fetch_add(1, SeqCst);
                gate.wait_for(|open| *open).await.unwrap();
                Arc::new("seven".to_string())
            })
            .await
        }));
    }
    while c.stats().coalesced < 9_999 {
        tokio::task::yield_now().await;
    }
    release.send(true).unwrap();
    for h in hs {
        assert_eq!(*h.await.unwrap(), "seven");
    }
    assert_eq!(runs.load(SeqCst), 1);
    assert_eq!(c.stats().computations, 1);
}

#[test]
fn an_error_reaches_every_waiter_and_is_not_stored() {
    let c = cache();
    let barrier = Barrier::new(16);
    let results: Vec<Result<Arc<String>, Error>> = thread::scope(|s| {
        let hs: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    c.try_get_or_compute(3, || {
                        wait_until(|| c.stats().coalesced >= 15);
                        Err(DbDown(3))
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(c.stats().computations, 1);
    assert_eq!(c.stats().errors, 1);
    for r in &results {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.downcast_ref::<DbDown>(), Some(&DbDown(3)), "{e}");
    }
    assert_eq!(c.get(&3), None, "errors are not stored");
    let v = c.get_or_compute(3, || Arc::new("ok".into()));
    assert_eq!(*v, "ok");
    assert_eq!(c.stats().computations, 2, "the next call computes again");
}

#[test]
fn a_panic_reaches_every_waiter_as_an_error_and_the_leader_as_a_panic() {
    let c = cache();
    let (started_tx, started_rx) = mpsc::channel();
    let leader = {
        let c = c.clone();
        thread::spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                c.get_or_compute(5, || {
                    started_tx.send(()).unwrap();
                    wait_until(|| c.stats().coalesced >= 4);
                    panic!("boom");
                })
            }))
        })
    };
    started_rx.recv().unwrap();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            thread::spawn(move || c.try_get_or_compute(5, || Ok::<_, DbDown>(Arc::new("no".into()))))
        })
        .collect();
    for w in waiters {
        match w.join().unwrap() {
            Err(Error::Panicked(msg)) => assert_eq!(&*msg, "boom"),
            other => panic!("expected the panic as an error, got {other:?}"),
        }
    }
    assert!(leader.join().unwrap().is_err(), "the leader's own call panics");
    assert_eq!(c.get(&5), None);
    assert_eq!(c.stats().in_flight, 0);
}

#[test]
fn nocache_values_reach_waiters_but_are_not_stored() {
    let c = cache();
    let opts = CallOptions::default();
    let v = c.compute(9, &opts, || Ok::<_, DbDown>(nocache(Arc::new("once".into())))).unwrap();
    assert_eq!(*v, "once");
    assert_eq!(c.get(&9), None);
    assert_eq!(c.stats().nocache, 1);
    let v = c.get_or_compute(9, || Arc::new("twice".into()));
    assert_eq!(*v, "twice");
}

/// A leader thread computing `key` that has started and returns `value` once `go` is sent.
fn gated_leader(
    c: &Cache<u64, Arc<String>>,
    key: u64,
    value: &'static str,
) -> (mpsc::Sender<()>, thread::JoinHandle<Arc<String>>) {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let c = c.clone();
    let leader = thread::spawn(move || {
        c.get_or_compute(key, || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            Arc::new(value.to_string())
        })
    });
    started_rx.recv().unwrap();
    (go_tx, leader)
}

#[test]
fn a_timed_out_waiter_does_not_stop_the_computation() {
    let c = cache();
    let (go_tx, leader) = gated_leader(&c, 11, "late");
    let opts = CallOptions::new().timeout(Duration::from_millis(20));
    let r = c.compute(11, &opts, || Ok::<_, DbDown>(Arc::new(String::from("mine")).into()));
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    go_tx.send(()).unwrap();
    assert_eq!(*leader.join().unwrap(), "late");
    assert_eq!(c.get(&11).as_deref().map(String::as_str), Some("late"));
    assert_eq!(c.stats().computations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_leader_future_hands_over_to_one_waiter() {
    let c = cache();
    let runs = Arc::new(AtomicU32::new(0));
    let leader = {
        let (c, runs) = (c.clone(), runs.clone());
        tokio::spawn(async move {
            c.get_or_compute_async(13, async move {
                runs.fetch_add(1, SeqCst);
                std::future::pending::<Arc<String>>().await
            })
            .await
        })
    };
    while runs.load(SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let (c, runs) = (c.clone(), runs.clone());
            tokio::spawn(async move {
                c.get_or_compute_async(13, async move {
                    runs.fetch_add(1, SeqCst);
                    Arc::new("second".to_string())
                })
                .await
            })
        })
        .collect();
    while c.stats().coalesced < 20 {
        tokio::task::yield_now().await;
    }
    leader.abort();
    let values: Vec<_> = futures_join(waiters).await;
    assert!(values.iter().all(|v| **v == "second"));
    assert!(values.iter().all(|v| Arc::ptr_eq(v, &values[0])), "one new leader, one value");
    assert_eq!(runs.load(SeqCst), 2);
    assert_eq!(c.stats().in_flight, 0);
}

async fn futures_join<T>(hs: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in hs {
        out.push(h.await.unwrap());
    }
    out
}

#[test]
fn asking_for_your_own_key_is_an_error_not_a_deadlock() {
    let c = cache();
    let inner = c.get_or_compute(21, || {
        let r = c.try_get_or_compute(21, || Ok::<_, DbDown>(Arc::new("inner".into())));
        Arc::new(format!("{}", r.unwrap_err()))
    });
    assert!(inner.contains("asked for that same key"), "{inner}");

    // Indirectly: 30 -> 31 -> 30.
    let r = c.try_get_or_compute(30, || {
        c.try_get_or_compute(31, || c.try_get_or_compute(30, || Ok::<_, DbDown>(Arc::new("x".into()))))
            // 31 failed with 30's recursion error, passed on as it is (not wrapped again).
            .map_err(|e| DbDown(matches!(e, Error::Recursion { .. }) as u32))
    });
    assert_eq!(r.unwrap_err().downcast_ref::<DbDown>(), Some(&DbDown(1)));
}

#[tokio::test]
async fn asking_for_your_own_key_in_a_task_is_an_error() {
    let c = cache();
    let r = c
        .try_get_or_compute_async(40, async {
            match c.try_get_or_compute_async(40, async { Ok::<_, DbDown>(Arc::new("x".into())) }).await {
                Err(Error::Recursion { .. }) => Err(DbDown(40)),
                other => panic!("expected a recursion error, got {other:?}"),
            }
        })
        .await;
    assert_eq!(r.unwrap_err().downcast_ref::<DbDown>(), Some(&DbDown(40)));
}

#[test]
fn the_protocol_counts_waiters_and_reports_abandonment() {
    let c = cache();
    let Begin::Lease(lease) = c.begin(&50).unwrap() else { panic!("expected the lease") };
    let abandoned = Arc::new(AtomicUsize::new(0));
    let a = abandoned.clone();
    lease.on_abandoned(move || {
        a.fetch_add(1, SeqCst);
    });
    let own = lease.waiter();
    let Begin::Wait(other) = c.begin(&50).unwrap() else { panic!("expected a waiter") };
    assert_eq!(other.id(), lease.id());
    assert_eq!(lease.waiters(), 2);
    drop(other);
    assert_eq!(abandoned.load(SeqCst), 0);
    drop(own);
    assert_eq!(abandoned.load(SeqCst), 1, "the last waiter gave up");
    // A caller arriving later still joins, and gets the value.
    let Begin::Wait(late) = c.begin(&50).unwrap() else { panic!("expected a waiter") };
    lease.store(Arc::new("v".into()));
    assert!(matches!(late.pending().try_get(), Some(Completion::Value(v)) if *v == "v"));
}

#[test]
fn callbacks_run_on_completion_and_a_dropped_lease_hands_over() {
    let c = cache();
    let Begin::Lease(lease) = c.begin(&60).unwrap() else { panic!() };
    let Begin::Wait(w) = c.begin(&60).unwrap() else { panic!() };
    let (tx, rx) = mpsc::channel();
    w.pending().on_ready(move |c| tx.send(matches!(c, Completion::HandedOver)).unwrap());
    drop(lease);
    assert!(rx.recv().unwrap(), "handed over");
    // The waiter calls begin again and now leads.
    assert!(matches!(c.begin(&60).unwrap(), Begin::Lease(_)));
}

#[test]
fn invalidating_a_key_while_it_computes_serves_waiters_but_stores_nothing() {
    let c = cache();
    let Begin::Lease(lease) = c.begin(&70).unwrap() else { panic!() };
    let Begin::Wait(w) = c.begin(&70).unwrap() else { panic!() };
    c.invalidate(&70);
    lease.store(Arc::new("stale".into()));
    assert!(matches!(w.pending().wait(), Completion::Value(v) if *v == "stale"));
    assert_eq!(c.get(&70), None);

    let Begin::Lease(lease) = c.begin(&71).unwrap() else { panic!() };
    c.clear();
    lease.store(Arc::new("stale".into()));
    assert_eq!(c.get(&71), None);

    let Begin::Lease(lease) = c.begin(&72).unwrap() else { panic!() };
    c.invalidate_tag("t1");
    lease.store_with(Arc::new("stale".into()), 0, &["t1"]);
    assert_eq!(c.get(&72), None);
    let Begin::Lease(lease) = c.begin(&72).unwrap() else { panic!() };
    lease.store_with(Arc::new("fresh".into()), 0, &["t1"]);
    assert!(c.get(&72).is_some(), "a flight begun after the invalidation stores");
}

#[test]
fn max_concurrency_queues_leaders_of_distinct_keys() {
    let c: Cache<u64, u64> = Cache::builder().max_concurrency(2).build().unwrap();
    let running = AtomicU32::new(0);
    let peak = AtomicU32::new(0);
    let done = AtomicU32::new(0);
    let barrier = Barrier::new(8);
    thread::scope(|s| {
        for k in 0..8u64 {
            let (c, running, peak, done, barrier) = (&c, &running, &peak, &done, &barrier);
            s.spawn(move || {
                barrier.wait();
                c.get_or_compute(k, || {
                    let now = running.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(now, SeqCst);
                    // Stay in the slot until two leaders have run at once (or the rest are done).
                    wait_until(|| peak.load(SeqCst) >= 2 || done.load(SeqCst) >= 6);
                    running.fetch_sub(1, SeqCst);
                    done.fetch_add(1, SeqCst);
                    k
                });
            });
        }
    });
    assert_eq!(peak.load(SeqCst), 2);
    assert_eq!(c.stats().computations, 8);
}

#[test]
fn a_queued_leader_that_times_out_gives_its_turn_away() {
    let c: Cache<u64, u64> = Cache::builder().max_concurrency(1).build().unwrap();
    let Begin::Lease(first) = c.begin(&1).unwrap() else { panic!() };
    let permit = first.slot().try_get().expect("a free slot is granted at once");
    let opts = CallOptions::new().timeout(Duration::from_millis(10));
    let r = c.compute(2, &opts, || Ok::<_, DbDown>(2.into()));
    assert!(matches!(r, Err(Error::Timeout(_))));
    drop(permit);
    first.store(1);
    assert_eq!(c.get_or_compute(3, || 3), 3, "the slot was not lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_async_waiter_does_not_stop_the_computation() {
    let c = cache();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let leader = {
        let c = c.clone();
        tokio::spawn(async move {
            c.get_or_compute_async(80, async move {
                go_rx.await.unwrap();
                Arc::new("late".to_string())
            })
            .await
        })
    };
    while c.stats().in_flight == 0 {
        tokio::task::yield_now().await;
    }
    let opts = CallOptions::new().timeout(Duration::from_millis(20));
    let r =
        c.compute_async(80, &opts, async { Ok::<_, DbDown>(Arc::new(String::from("mine")).into()) }).await;
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    go_tx.send(()).unwrap();
    assert_eq!(*leader.await.unwrap(), "late");
    assert_eq!(c.stats().computations, 1);
}

/// A minimal executor: polls on this thread, parks until woken. No runtime at all.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

#[test]
fn waiting_needs_no_runtime() {
    let c = cache();
    let (go_tx, leader) = gated_leader(&c, 90, "from a thread");
    let waiter = {
        let c = c.clone();
        thread::spawn(move || block_on(c.get_or_compute_async(90, async { unreachable!() })))
    };
    wait_until(|| c.stats().coalesced == 1);
    go_tx.send(()).unwrap();
    assert_eq!(*waiter.join().unwrap(), "from a thread");
    leader.join().unwrap();
}
