//! Benchmark: do a cache's costs stay flat as it grows? For 10^4 to 10^7 entries (`u64` keys,
//! 16-byte values, as the memory row of `make bench-rust`): the hit latency on uniformly random
//! keys, the resident memory per entry, and the sweep's cost per expired entry, beside a plain
//! `HashMap` of the same entries (the floor: a hash table's lookups slow down once it leaves the
//! CPU caches, whatever is built on it). Each row runs in a process of its own, so memory one
//! row freed does not hide another's. Prints a Markdown table and, with `--json FILE`, writes
//! the figures for `bench/chart.py`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use coopcache::{Cache, Clock};

const LOOKUPS: usize = 2_000_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, row, n] = &args[..]
        && flag == "--row"
    {
        let n = n.parse().expect("a count of entries");
        let keys = random_keys(n);
        let figures = match row.as_str() {
            "coopcache" => coopcache_row(n, &keys),
            _ => hashmap_row(n, &keys),
        };
        return println!("{}", figures.map(|f| f.to_string()).join(" "));
    }
    let json = args.iter().skip_while(|a| *a != "--json").nth(1);
    println!(
        "| entries | coopcache hit (ns) | HashMap hit (ns) | coopcache bytes/entry | HashMap bytes/entry | sweep per expired entry (ns) | sweep of a tick, nothing due (µs) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for n in [10_000u64, 100_000, 1_000_000, 10_000_000] {
        let [hit, bytes, sweep, idle_tick] = row("coopcache", n);
        let [map_hit, map_bytes, ..] = row("hashmap", n);
        println!(
            "| {n} | {hit:.1} | {map_hit:.1} | {bytes:.1} | {map_bytes:.1} | {sweep:.1} | {:.1} |",
            idle_tick / 1e3
        );
        rows.push(format!(
            "{{\"entries\": {n}, \"hit_ns\": {hit:.2}, \"hashmap_hit_ns\": {map_hit:.2}, \"bytes_per_entry\": {bytes:.2}, \"hashmap_bytes_per_entry\": {map_bytes:.2}, \"sweep_ns_per_entry\": {sweep:.2}, \"idle_tick_ns\": {idle_tick:.0}}}"
        ));
    }
    if let Some(path) = json {
        std::fs::write(path, format!("[\n  {}\n]\n", rows.join(",\n  "))).expect("write the JSON");
    }
}

/// One row's figures, measured by a process of its own (this program with `--row ROW N`).
fn row(row: &str, n: u64) -> [f64; 4] {
    let out = std::process::Command::new(std::env::current_exe().expect("this program"))
        .args(["--row", row, &n.to_string()])
        .output()
        .expect("run a row");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let figures: Vec<f64> =
        String::from_utf8(out.stdout).unwrap().split_whitespace().map(|f| f.parse().unwrap()).collect();
    figures.try_into().expect("four figures")
}

/// Hit ns, bytes per entry, sweep ns per expired entry, ns of a sweep with nothing due.
fn coopcache_row(n: u64, keys: &[u64]) -> [f64; 4] {
    let clock = Clock::manual();
    let d = Duration::from_secs(60);
    let before = rss();
    let cache: Cache<u64, [u8; 16]> =
        Cache::builder().memory_limit(u64::MAX).cache_duration(d).clock(clock.clone()).build().unwrap();
    for k in 0..n {
        cache.insert(k, [k as u8; 16]);
    }
    let bytes = (rss() - before) as f64 / n as f64;
    let hit = per_lookup(keys, |k| cache.get(&k).map(|v| v[0]));
    let idle_tick = {
        let t = Instant::now();
        for _ in 0..100 {
            cache.sweep();
        }
        t.elapsed().as_nanos() as f64 / 100.0
    };
    clock.advance(d + Duration::from_secs(7));
    let t = Instant::now();
    cache.sweep();
    let sweep = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(cache.len(), 0, "every entry expired");
    [hit, bytes, sweep, idle_tick]
}

/// Hit ns, bytes per entry (and two zeros: a map neither expires nor sweeps).
fn hashmap_row(n: u64, keys: &[u64]) -> [f64; 4] {
    let before = rss();
    let mut map: HashMap<u64, [u8; 16]> = HashMap::new();
    for k in 0..n {
        map.insert(k, [k as u8; 16]);
    }
    let bytes = (rss() - before) as f64 / n as f64;
    [per_lookup(keys, |k| map.get(&k).map(|v| v[0])), bytes, 0.0, 0.0]
}

/// ns per lookup over `keys`, the best of three passes.
fn per_lookup(keys: &[u64], mut get: impl FnMut(u64) -> Option<u8>) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for &k in keys {
                black_box(get(black_box(k)).expect("a stored key"));
            }
            t.elapsed().as_nanos() as f64 / keys.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn random_keys(n: u64) -> Vec<u64> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..LOOKUPS).map(|_| rng.u64(0..n)).collect()
}

/// Resident bytes of this process (Linux).
fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: i64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
    pages * 4096
}
