//! Async callers with a timeout: the timeout bounds each caller's wait, never the computation,
//! which runs once and stores its value.
//!
//! Concurrency is coordinated with a gate and channels, never with sleeps for ordering; a
//! scenario that hangs is turned into a failure by a watchdog.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use coopcache::{Cache, CallOptions, Error};

/// How long the whole scenario may take before it counts as hung.
const HANG: Duration = Duration::from_secs(10);

fn with_timeout(t: Duration) -> CallOptions {
    CallOptions::new().timeout(t)
}

/// Four tasks ask for one key with a 100 ms timeout while its computation takes longer (it
/// waits on a gate opened once three callers have returned): the computation runs exactly once,
/// and its value is stored once it finishes.
#[test]
fn an_async_leaders_timeout_does_not_drop_the_computation() {
    let c: Cache<u64, String> = Cache::builder().build().unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let (tx, rx) = mpsc::channel();
    {
        let (c, runs) = (c.clone(), runs.clone());
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
            let results = rt.block_on(async move {
                let (open, gate) = tokio::sync::watch::channel(false);
                let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
                for _ in 0..4 {
                    let (c, runs, mut gate, done_tx) =
                        (c.clone(), runs.clone(), gate.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let opts = with_timeout(Duration::from_millis(100));
                        let r = c
                            .compute_async(1, &opts, async move {
                                runs.fetch_add(1, SeqCst);
                                let _ = gate.wait_for(|open| *open).await;
                                Ok::<_, Infallible>("computed".to_string().into())
                            })
                            .await;
                        done_tx.send(r).unwrap();
                    });
                }
                drop(gate);
                let mut results = Vec::new();
                for _ in 0..3 {
                    results.push(done_rx.recv().await.unwrap());
                }
                open.send_replace(true);
                results.push(done_rx.recv().await.unwrap());
                results
            });
            let _ = tx.send(results);
            // Keep the runtime (and any computation it still drives) alive for the checks.
            thread::park();
        });
    }
    let results = rx.recv_timeout(HANG).unwrap_or_else(|_| panic!("caller hung: the four async callers"));
    eprintln!("results: {results:?}");
    for r in &results {
        assert!(matches!(r, Ok(_) | Err(Error::Timeout(_))), "{r:?}");
    }
    assert_eq!(runs.load(SeqCst), 1, "the computation ran more than once: each timed-out leader dropped it");
    let mut stored = c.get(&1);
    for _ in 0..2_000 {
        if stored.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(1));
        stored = c.get(&1);
    }
    assert_eq!(stored.as_deref(), Some("computed"), "the computation's value was not stored");
}
