//! What exact idle expiry costs a hit (issue 15; `make bench-rust` runs it).
//!
//! The anchor harness's hit row (100,000 warm keys, 64-byte values behind an `Arc`, uniform random
//! keys, one thread) in two caches side by side in one run, the same in all but the clock:
//!
//! * the system clock, as every cache has: each hit reads the kernel's coarse monotonic clock,
//!   so an entry idle for `cache_duration` is never returned;
//! * a manual clock: each hit reads one atomic instead, which is what a process-wide tick kept
//!   by a background thread would cost. Such a tick is not exact (a late tick makes entries look
//!   younger than they are), so the cache does not use one; this row shows what it would save.
//!
//! The difference is the clock read in the hit, and on a hit that waits on memory it is larger
//! than the read's cost in a loop of reads alone. It prints the best of seven passes per case
//! (the cases take turns), in ns per hit, and the manual clock's ratio to the system clock's.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coopcache::{Cache, Clock, WhenFull};

const KEYS: u64 = 100_000;
const LOOKUPS: usize = 2_000_000;

type Value = Arc<Vec<u8>>;

/// One pass over the key stream, in ns per hit.
fn pass(cache: &Cache<u64, Value>, stream: &[u64]) -> f64 {
    let start = Instant::now();
    for &k in stream {
        black_box(cache.get_or_compute(k, || unreachable!("every key is stored")));
    }
    start.elapsed().as_nanos() as f64 / stream.len() as f64
}

fn main() {
    let build = |clock: Clock| {
        let cache: Cache<u64, Value> = Cache::builder()
            .memory_limit(1 << 30)
            .weigher(|_k: &u64, v: &Value| v.len() as u64)
            .cache_duration(Duration::from_secs(300))
            .when_full(WhenFull::Evict)
            .clock(clock)
            .build()
            .expect("valid settings");
        for k in 0..KEYS {
            cache.insert(k, Arc::new(vec![k as u8; 64]));
        }
        cache
    };
    let caches = [
        ("system clock (exact)", build(Clock::system())),
        ("manual clock (one atomic)", build(Clock::manual())),
    ];
    let mut rng = fastrand::Rng::with_seed(1);
    let stream: Vec<u64> = (0..LOOKUPS).map(|_| rng.u64(0..KEYS)).collect();
    let mut best = [f64::MAX; 2];
    for _ in 0..7 {
        for (i, (_, cache)) in caches.iter().enumerate() {
            best[i] = best[i].min(pass(cache, &stream));
        }
    }
    println!("### A hit's clock: {KEYS} warm keys, uniform, 1 thread, best of 7 passes of {LOOKUPS}\n");
    println!("| clock | ns per hit | vs the system clock |");
    println!("|---|---:|---:|");
    for (i, (name, _)) in caches.iter().enumerate() {
        println!("| {name} | {:.1} | {:.2}x |", best[i], best[i] / best[0]);
    }
}
