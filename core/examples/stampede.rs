//! The Rust part of `make demo`: a stampede of threads and tasks on one cold key.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use coopcache::Cache;

fn main() {
    let cache: Cache<&'static str, Arc<String>> = Cache::builder().name("demo").build().unwrap();
    let computed = Arc::new(AtomicU32::new(0));

    let threads = 1_000;
    let barrier = Arc::new(Barrier::new(threads));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (cache, computed, barrier) = (cache.clone(), computed.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                cache.get_or_compute("report", || {
                    computed.fetch_add(1, SeqCst);
                    std::thread::sleep(Duration::from_millis(100)); // an expensive computation
                    Arc::new("the report".to_string())
                })
            })
        })
        .collect();
    handles.into_iter().for_each(|h| drop(h.join().unwrap()));
    report("1,000 threads", &computed, start, &cache);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let computed = Arc::new(AtomicU32::new(0));
    let cache: Cache<&'static str, Arc<String>> = Cache::builder().name("demo-async").build().unwrap();
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..10_000)
            .map(|_| {
                let (cache, computed) = (cache.clone(), computed.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_compute_async("report", async move {
                            computed.fetch_add(1, SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Arc::new("the report".to_string())
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    report("10,000 tokio tasks", &computed, start, &cache);
}

fn report(what: &str, computed: &AtomicU32, start: Instant, cache: &Cache<&'static str, Arc<String>>) {
    let n = computed.load(SeqCst);
    let s = cache.stats();
    println!(
        "rust: {what} on one cold key: computed {n} time{} in {:.0} ms \
         (hits {}, coalesced waits {}, computations {}, entries {}, bytes_used {})",
        if n == 1 { "" } else { "s" },
        start.elapsed().as_secs_f64() * 1e3,
        s.hits,
        s.coalesced,
        s.computations,
        s.entries,
        s.bytes_used
    );
}
