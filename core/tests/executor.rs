//! A blocking call on the thread that runs an event loop, for a key a task of that loop is
//! computing: blocking the thread stops the loop, so the wait would never end. It is an error
//! at once (issue 14, item 3), as a recursion is.

use std::sync::mpsc;
use std::thread;

use coopcache::{Begin, Cache, Caller, Error, RunsExecutor};

fn cache() -> Cache<u64, u64> {
    Cache::builder().name("loop").build().unwrap()
}

#[test]
fn a_blocking_caller_on_the_loop_that_computes_the_key_gets_an_error() {
    let cache = cache();
    let Begin::Lease(lease) = cache.begin(&1).unwrap() else { panic!("no lease") };
    let on_loop = lease.frame().runs_on(7); // a task of loop 7 computes key 1 (between polls)
    {
        let _runs = RunsExecutor::enter(7); // a callback of loop 7 makes a blocking call
        let e = cache.begin_with(&1, &[], Caller::Blocking).err().expect("an error, not a wait");
        assert!(matches!(e, Error::BlocksExecutor { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("event loop") && text.contains("loop"), "{text}");
        // A future of the same loop waits without blocking it: an ordinary wait.
        assert!(matches!(cache.begin_with(&1, &[], Caller::NonBlocking), Ok(Begin::Wait(_))));
    }
    {
        let _runs = RunsExecutor::enter(8); // another loop's thread: the computation goes on
        assert!(matches!(cache.begin_with(&1, &[], Caller::Blocking), Ok(Begin::Wait(_))));
    }
    // Outside the loop (another thread blocking): an ordinary wait.
    assert!(matches!(cache.begin_with(&1, &[], Caller::Blocking), Ok(Begin::Wait(_))));
    drop(on_loop);
    {
        let _runs = RunsExecutor::enter(7); // the computation no longer runs on loop 7
        assert!(matches!(cache.begin_with(&1, &[], Caller::Blocking), Ok(Begin::Wait(_))));
    }
    lease.store(1);
}

#[test]
fn a_blocking_caller_on_the_loop_waiting_through_another_thread_gets_an_error() {
    let cache = cache();
    let Begin::Lease(on_loop_lease) = cache.begin(&1).unwrap() else { panic!("no lease") };
    let _on_loop = on_loop_lease.frame().runs_on(7);
    // Another thread computes key 2 and, inside that computation, waits for key 1.
    let (waiting_tx, waiting_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let other = {
        let cache = cache.clone();
        thread::spawn(move || {
            let Begin::Lease(lease2) = cache.begin(&2).unwrap() else { panic!("no lease") };
            let inside = lease2.enter();
            let Ok(Begin::Wait(w)) = cache.begin_with(&1, &[], Caller::Blocking) else { panic!("no wait") };
            waiting_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            drop((w, inside));
            lease2.store(2);
        })
    };
    waiting_rx.recv().unwrap();
    {
        let _runs = RunsExecutor::enter(7);
        let r = cache.begin_with(&2, &[], Caller::Blocking);
        assert!(matches!(r, Err(Error::BlocksExecutor { .. })), "key 2 waits for loop 7's key 1");
    }
    done_tx.send(()).unwrap();
    other.join().unwrap();
    on_loop_lease.store(1);
}
