//! Helpers the fault tests share: callers on threads of their own with a bound that turns a
//! hang into a failure, conditions polled with a bound, and gates computations wait on.
//! Each test file uses some of them; `redis` starts a `redis-server` of the test's own.
#![allow(dead_code)]

pub mod cluster;
pub mod redis;

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::Duration;

/// How long a caller may take before it counts as hung.
pub const HANG: Duration = Duration::from_secs(10);

/// Runs `f` on its own thread and returns its result, panicking with "caller hung: `what`" if it
/// does not finish within [`HANG`] (the stuck thread is leaked) and re-raising its panic if it
/// panicked.
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let rx = start(f);
    finish(what, rx)
}

/// Starts `f` on its own thread; [`finish`] collects its result.
pub fn start<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<thread::Result<T>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    rx
}

/// The result of a [`start`]ed caller, or a "caller hung" failure after [`HANG`].
pub fn finish<T>(what: &str, rx: mpsc::Receiver<thread::Result<T>>) -> T {
    match rx.recv_timeout(HANG) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => {
            eprintln!("{what} panicked: {}", panic_message(&*panic));
            resume_unwind(panic)
        }
        Err(_) => panic!("caller hung: {what} (no result after {HANG:?})"),
    }
}

pub fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Blocks until `cond` holds (a condition, not a duration: the bound only stops a broken test).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
    panic!("condition not reached: {what}");
}

/// A gate computations wait on until the test opens it.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    pub fn wait(&self) {
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            open = self.0.1.wait(open).unwrap();
        }
    }
}
