//! What a hit costs while its value is being refreshed (issue 16; `make bench-rust` runs it):
//!
//! 10,000 keys are read round-robin, 200 times each, by one thread, in three caches side by side
//! in one run: without `refresh_after`; with it, no value due; and with every value due and its
//! refresh running (each taken by a hit and held open, as a binding's detached refresh is while
//! it computes). It prints the best of five passes per case (the cases take turns), in ns per
//! hit, and each case's ratio to the first. A hit during a refresh gets the stored value as any
//! hit does; the only extra work is counting it as stale.

use std::hint::black_box;
use std::time::{Duration, Instant};

use coopcache::{Cache, CallOptions, Caller, Clock};

/// One pass over every key, `rounds` times, in ns per hit.
fn pass(cache: &Cache<u64, u64>, keys: u64, rounds: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..rounds {
        for k in 0..keys {
            black_box(cache.get_or_compute(black_box(k), || unreachable!("every key is stored")));
        }
    }
    start.elapsed().as_nanos() as f64 / (keys as f64 * rounds as f64)
}

fn main() {
    let (keys, rounds) = (10_000u64, 200);
    let after = Duration::from_secs(60);
    let clock = Clock::manual();
    let build = |refresh: bool| {
        let b = Cache::builder().clock(clock.clone());
        let cache: Cache<u64, u64> = if refresh { b.refresh_after(after) } else { b }.build().unwrap();
        for k in 0..keys {
            cache.insert(k, k);
        }
        cache
    };
    let (plain, not_due, refreshing) = (build(false), build(true), build(true));
    clock.advance(after);
    // Take every refresh of the last cache and hold it open.
    let opts = CallOptions::new();
    let leads: Vec<_> = (0..keys)
        .map(|k| {
            let (_, lead) = refreshing.hit_refresh_with(&k, &opts, Caller::NonBlocking, |v| *v).unwrap();
            lead.expect("the first hit on a due value takes its refresh")
        })
        .collect();
    assert_eq!(refreshing.stats().in_flight, keys);
    // The second cache's values are not due: its clock is the same, so its entries get a
    // later refresh time instead.
    for k in 0..keys {
        not_due.insert(k, k);
    }
    // The cases take turns, five passes each (the best counts), so none gets a quieter moment.
    let caches = [
        ("no refresh_after", &plain),
        ("refresh_after, not due", &not_due),
        ("refresh_after, refresh running", &refreshing),
    ];
    let mut best = [f64::MAX; 3];
    for _ in 0..5 {
        for (i, (_, cache)) in caches.iter().enumerate() {
            best[i] = best[i].min(pass(cache, keys, rounds));
        }
    }
    println!("| case ({keys} keys, 1 thread) | ns per hit | vs no refresh_after |");
    println!("|---|---|---|");
    for ((name, _), ns) in caches.iter().zip(best) {
        println!("| {name} | {ns:.1} | {:.2}x |", ns / best[0]);
    }
    assert_eq!(not_due.stats().refreshes_started, 0, "nothing was due there");
    drop(leads);
}
