//! The Rust hit as the anchor harness drives it (`get_or_compute` on a warm cache of 100k
//! keys, 64-byte `Arc<Vec<u8>>` values, a memory limit, a weigher, an idle duration, evicting
//! when full), for counting instructions per hit under callgrind:
//!
//! ```text
//! valgrind --tool=callgrind target/release/examples/hit_instructions 0
//! valgrind --tool=callgrind target/release/examples/hit_instructions 1000000
//! ```
//!
//! The difference of the two totals over 1,000,000 is the instructions per hit.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use coopcache::{Cache, WhenFull};

const KEYS: u64 = 100_000;

fn main() {
    let hits: u64 = std::env::args().nth(1).map_or(1_000_000, |n| n.parse().expect("a count of hits"));
    let cache: Cache<u64, Arc<Vec<u8>>> = Cache::builder()
        .memory_limit(1 << 30)
        .weigher(|_k: &u64, v: &Arc<Vec<u8>>| v.len() as u64)
        .cache_duration(Duration::from_secs(300))
        .when_full(WhenFull::Evict)
        .build()
        .expect("valid settings");
    for k in 0..KEYS {
        cache.get_or_compute(k, || Arc::new(vec![k as u8; 64]));
    }
    // A cheap fixed key stream (an LCG), the same whatever the count.
    let mut x: u64 = 1;
    for _ in 0..hits {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let k = (x >> 33) % KEYS;
        black_box(cache.get_or_compute(k, || unreachable!("a warm cache")));
    }
    assert_eq!(cache.stats().hits, hits);
}
