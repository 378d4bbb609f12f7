//! Waits that must not deadlock or fail falsely: two computations asking for each other's key
//! on two threads, and a sync computation that drives an async runtime whose task asks for the
//! same key.
//!
//! Concurrency is coordinated with barriers, channels and flags, never with sleeps; a caller
//! that hangs is turned into a failure by a watchdog (`finish`).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use coopcache::{Cache, CallOptions, Error};

mod support;
use support::{finish, start};

fn opts() -> CallOptions {
    CallOptions::new()
}

/// Computations of keys 1 and 2 on two threads, both computing before either asks for the
/// other's key, must not wait for each other forever: at least one of them gets
/// `Error::Recursion`, and both calls return.
#[test]
fn two_computations_asking_for_each_others_key_do_not_deadlock() {
    let c: Cache<u64, String> = Cache::builder().name("cycle").build().unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let caller = |own: u64, other: u64| {
        let (c, barrier) = (c.clone(), barrier.clone());
        start(move || {
            let mut inner = None;
            let outer = c.compute(own, &opts(), || {
                barrier.wait(); // both are computing now
                inner = Some(c.try_get_or_compute(other, || Ok::<_, Infallible>(format!("{other} alone"))));
                Ok::<_, Infallible>(format!("{own}").into())
            });
            (outer, inner.expect("the computation ran"))
        })
    };
    let a = caller(1, 2);
    let b = caller(2, 1);
    let (a_outer, a_inner) = finish("the computation of key 1, asking for key 2", a);
    let (b_outer, b_inner) = finish("the computation of key 2, asking for key 1", b);
    eprintln!("1: {a_outer:?} (inner {a_inner:?}); 2: {b_outer:?} (inner {b_inner:?})");
    assert!(
        matches!(a_inner, Err(Error::Recursion { .. })) || matches!(b_inner, Err(Error::Recursion { .. })),
        "one of the two inner calls should be a recursion error: {a_inner:?}, {b_inner:?}"
    );
}

/// A sync computation of key 1 that runs `block_on` of a current-thread runtime must not make
/// an unrelated task of that runtime, which asks for key 1 while being polled there, fail with
/// a false `Error::Recursion`: the task waits for the computation and gets its value.
#[test]
fn a_task_polled_inside_a_sync_computation_is_not_a_recursion() {
    let c: Cache<u64, String> = Cache::builder().name("block_on").build().unwrap();
    let r = finish(
        "a task asking for key 1 while a sync computation of key 1 drives its runtime",
        start(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let asked = Arc::new(AtomicBool::new(false));
            let task = {
                let (c, asked) = (c.clone(), asked.clone());
                rt.spawn(async move {
                    asked.store(true, SeqCst);
                    c.try_get_or_compute_async(1, async { Ok::<_, Infallible>("from the task".to_string()) })
                        .await
                })
            };
            let sync = c.compute(1, &opts(), || {
                // Drive the runtime until the task has asked for key 1 (it begins in that same
                // poll), then a little more; do not wait for the task itself.
                rt.block_on(async {
                    while !asked.load(SeqCst) {
                        tokio::task::yield_now().await;
                    }
                    for _ in 0..3 {
                        tokio::task::yield_now().await;
                    }
                });
                Ok::<_, Infallible>("from the sync computation".to_string().into())
            });
            assert_eq!(sync.unwrap(), "from the sync computation");
            rt.block_on(task).expect("the task ran to completion")
        }),
    );
    assert_eq!(
        r.expect("the task waiting for the sync computation got an error"),
        "from the sync computation"
    );
}
