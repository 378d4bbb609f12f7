//! Benchmark: does a sweep of millions of expiring entries stall readers?
//!
//! Fills a cache with N entries (default 10 million; `sweep_stall N` for another count), moves a
//! manual clock past their expiry, and sweeps them all on one thread while another thread reads
//! fresh keys in a loop. Prints the reader's latency percentiles during the sweep beside the same
//! reader with no sweep running.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use coopcache::{Cache, Clock};

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let clock = Clock::manual();
    let d = Duration::from_secs(60);
    let cache: Cache<u64, u64> =
        Cache::builder().memory_limit(u64::MAX).cache_duration(d).clock(clock.clone()).build().unwrap();
    let t = Instant::now();
    for k in 0..n {
        cache.get_or_compute(k, || k);
    }
    println!("filled {n} entries in {:.1} s", t.elapsed().as_secs_f64());
    // Fresh keys the reader will use: inserted later, so they do not expire with the rest.
    clock.advance(d / 2);
    for k in 0..1_000u64 {
        cache.get_or_compute(u64::MAX - k, || k);
    }
    let baseline = read_while(&cache, || std::thread::sleep(Duration::from_millis(500)));
    clock.advance(d / 2 + Duration::from_secs(7));
    let t = Instant::now();
    let during = read_while(&cache, || cache.sweep());
    let sweep = t.elapsed();
    assert_eq!(cache.len(), 1_000, "the expired entries are gone, the fresh ones stay");
    println!(
        "swept {n} idle entries in {:.2} s ({:.0} ns per entry)",
        sweep.as_secs_f64(),
        sweep.as_nanos() as f64 / n as f64
    );
    println!("reader without a sweep: {baseline}");
    println!("reader during the sweep: {during}");
}

/// Runs `work` on this thread while another thread reads fresh keys; the reader's latencies.
fn read_while(cache: &Cache<u64, u64>, work: impl FnOnce()) -> String {
    let stop = AtomicBool::new(false);
    let mut lat = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut lat = Vec::with_capacity(1 << 20);
            let mut k = 0u64;
            while !stop.load(SeqCst) {
                k = (k + 7) % 1_000;
                let t = Instant::now();
                assert!(cache.get(&(u64::MAX - k)).is_some());
                lat.push(t.elapsed().as_nanos() as u64);
            }
            lat
        });
        work();
        stop.store(true, SeqCst);
        reader.join().unwrap()
    });
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    format!(
        "{} reads, p50 {} ns, p99 {} ns, p99.9 {} ns, max {:.1} µs",
        lat.len(),
        p(0.5),
        p(0.99),
        p(0.999),
        *lat.last().unwrap() as f64 / 1e3
    )
}
