//! The Rust part of `make demo`: a stampede of threads, then of tokio tasks, on one cold key.
//! Each prints how many times the value was computed, the wall time and the cache's stats
//! (the Python and Node demos print the same lines). Run: `cargo run --release --example stampede`

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use coopcache::{Cache, Stats};

/// What the slow backend returns; an `Arc`, so that every caller gets the very same value.
type Report = Arc<String>;
type Key = &'static str;
const KEY: Key = "user:42";

fn main() {
    // 1,000 threads, released together, ask for one cold key.
    let cache: Cache<Key, Report> = Cache::builder().name("demo-threads").build().unwrap();
    let computed = Arc::new(AtomicU32::new(0));
    let threads = 1_000;
    let barrier = Arc::new(Barrier::new(threads));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (cache, computed, barrier) = (cache.clone(), computed.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                cache.get_or_compute(KEY, || {
                    computed.fetch_add(1, SeqCst);
                    std::thread::sleep(Duration::from_millis(100)); // an expensive computation
                    Arc::new("Ada, plan pro".to_string())
                })
            })
        })
        .collect();
    let results: Vec<Report> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut ok = report("1,000 threads", &computed, start, &results, &cache.stats());

    // 10,000 tokio tasks ask for one cold key.
    let cache: Cache<Key, Report> = Cache::builder().name("demo-tasks").build().unwrap();
    let computed = Arc::new(AtomicU32::new(0));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = Instant::now();
    let results: Vec<Report> = rt.block_on(async {
        let tasks: Vec<_> = (0..10_000)
            .map(|_| {
                let (cache, computed) = (cache.clone(), computed.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_compute_async(KEY, async move {
                            computed.fetch_add(1, SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await; // a slow backend
                            Arc::new("Ada, plan pro".to_string())
                        })
                        .await
                })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    });
    ok &= report("10,000 tokio tasks", &computed, start, &results, &cache.stats());

    if !ok {
        std::process::exit(1);
    }
}

/// Two lines, as in the Python and Node demos: the count and time, then the stats.
/// Returns whether the value was computed once and shared by every caller.
fn report(what: &str, computed: &AtomicU32, start: Instant, results: &[Report], s: &Stats) -> bool {
    let n = computed.load(SeqCst);
    let same = results.iter().all(|r| Arc::ptr_eq(r, &results[0]));
    println!(
        "rust: {what} on one cold key: computed {n} time{} in {:.0} ms; every caller got the same value: {same}",
        if n == 1 { "" } else { "s" },
        start.elapsed().as_secs_f64() * 1e3,
    );
    let fields: Vec<String> = s.fields().iter().map(|(name, n)| format!("{name}={n}")).collect();
    println!("  stats: {}", fields.join(" "));
    n == 1 && same
}
