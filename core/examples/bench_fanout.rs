//! What a process receives from the shared tier's channels (issue 12; `make bench-shared` runs
//! it, see `bench/shared/fanout.sh`):
//!
//! ```text
//! bench_fanout REDIS_URL [--procs N] [--keys N] [--size BYTES] [--hot N] [--json PATH]
//! ```
//!
//! `--procs` processes (default 16, each this program again with `--worker`) each get or compute
//! `--hot` keys every process asks for at once (default 4), then `--keys` keys of their own
//! (default 200, disjoint from the others'), every value `--size` bytes (default 1024). Each
//! process then reports its shared tier's `message_bytes` (the bytes of the channel messages it
//! received) and its counters; the parent prints the minimum, mean and maximum over the
//! processes, and Redis's `total_net_output_bytes` over the run (every reply and message the
//! server sent, to every client) per process.
//!
//! The processes start together (each connects, says `ready`, and waits for the parent's `go`)
//! and report once every one is done (after a settle of 500 ms for the last messages in flight).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use coopcache::shared::{SharedSettings, SharedTier};
use coopcache::{Cache, JsonCodec, Key};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: a number, not {v:?}")))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("usage: bench_fanout REDIS_URL [--procs N] ...").clone();
    let (keys, size, hot) = (arg(&args, "--keys", 200), arg(&args, "--size", 1024), arg(&args, "--hot", 4));
    if let Some(i) = args.iter().position(|a| a == "--worker") {
        let me: usize = args[i + 1].parse().expect("--worker N");
        return worker(&url, me, keys, size, hot);
    }
    let procs = arg(&args, "--procs", 16);
    let json = args.iter().position(|a| a == "--json").map(|i| args[i + 1].clone());
    let mut children: Vec<_> = (0..procs)
        .map(|i| {
            Command::new(std::env::current_exe().unwrap())
                .args([&url, "--worker", &i.to_string()])
                .args(["--keys", &keys.to_string(), "--size", &size.to_string(), "--hot", &hot.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a worker")
        })
        .collect();
    let mut lines: Vec<_> =
        children.iter_mut().map(|c| BufReader::new(c.stdout.take().unwrap()).lines()).collect();
    let mut expect = |word: &str| {
        for l in lines.iter_mut() {
            let got = l.next().expect("a worker's line").unwrap();
            assert_eq!(got, word, "a worker said {got:?}");
        }
    };
    expect("ready");
    let before = net_out(&url);
    let say = |children: &mut Vec<std::process::Child>, word: &str| {
        for c in children.iter_mut() {
            writeln!(c.stdin.as_mut().unwrap(), "{word}").unwrap();
        }
    };
    say(&mut children, "go");
    expect("done");
    std::thread::sleep(Duration::from_millis(500));
    let after = net_out(&url);
    say(&mut children, "report");
    let reports: Vec<serde_json::Value> = lines
        .iter_mut()
        .map(|l| serde_json::from_str(&l.next().expect("a report").unwrap()).expect("a JSON report"))
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a worker failed");
    }
    let bytes: Vec<u64> = reports.iter().map(|r| r["message_bytes"].as_u64().unwrap()).collect();
    let sum = |f: &str| reports.iter().map(|r| r[f].as_u64().unwrap()).sum::<u64>();
    let (min, max) = (*bytes.iter().min().unwrap(), *bytes.iter().max().unwrap());
    let mean = bytes.iter().sum::<u64>() / procs as u64;
    let server = (after - before) / procs as u64;
    println!(
        "| processes | keys each + hot | value | message bytes per process (min / mean / max) | Redis output bytes per process | computations (all) | remote waits |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {procs} | {keys} + {hot} | {size} B | {} / {} / {} | {} | {} | {} |",
        kib(min),
        kib(mean),
        kib(max),
        kib(server),
        sum("computations"),
        sum("remote_waits")
    );
    if let Some(path) = json {
        let out = serde_json::json!({
            "url": url, "procs": procs, "keys": keys, "size": size, "hot": hot,
            "message_bytes": {"min": min, "mean": mean, "max": max, "each": bytes},
            "redis_output_bytes_per_process": server,
            "computations": sum("computations"), "remote_waits": sum("remote_waits"),
        });
        std::fs::write(path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    }
}

fn kib(n: u64) -> String {
    format!("{:.1} KiB", n as f64 / 1024.0)
}

/// Redis's `total_net_output_bytes`, summed over a cluster's masters and replicas.
fn net_out(url: &str) -> u64 {
    let seeds: Vec<String> = match url.strip_prefix("redis+cluster://") {
        Some(hosts) => hosts.split(',').map(|h| format!("redis://{h}")).collect(),
        None => vec![url.to_owned()],
    };
    let mut nodes = Vec::new();
    for s in &seeds {
        let mut c = redis::Client::open(s.as_str()).unwrap().get_connection().unwrap();
        if seeds.len() > 1 || url.contains("+cluster") {
            let all: String = redis::cmd("CLUSTER").arg("NODES").query(&mut c).unwrap();
            for l in all.lines() {
                if let Some(addr) = l.split_whitespace().nth(1) {
                    nodes.push(format!("redis://{}", addr.split('@').next().unwrap()));
                }
            }
            break;
        }
        nodes.push(s.clone());
    }
    nodes
        .iter()
        .map(|n| {
            let mut c = redis::Client::open(n.as_str()).unwrap().get_connection().unwrap();
            let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
                .map(|v| v.trim().parse::<u64>().unwrap())
                .unwrap_or(0)
        })
        .sum()
}

fn worker(url: &str, me: usize, keys: usize, size: usize, hot: usize) {
    let cache: Cache<Key, String> =
        Cache::builder().name("fanout").shared(SharedSettings::new(url), JsonCodec).build().unwrap();
    while !cache.shared().is_some_and(SharedTier::is_up) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock().lines();
    let mut wait_for = |word: &str| assert_eq!(input.next().unwrap().unwrap(), word);
    println!("ready");
    wait_for("go");
    let value = |k: &Key| format!("{k}:{}", "x".repeat(size.saturating_sub(16)));
    for h in 0..hot {
        let k = Key::from(("hot", h as u64));
        cache.get_or_compute(k.clone(), || value(&k));
    }
    for i in 0..keys {
        let k = Key::from(("own", me as u64, i as u64));
        cache.get_or_compute(k.clone(), || value(&k));
    }
    println!("done");
    wait_for("report");
    let (local, shared) = (cache.stats(), cache.shared().unwrap().stats());
    println!(
        "{}",
        serde_json::json!({
            "message_bytes": shared.message_bytes,
            "computations": local.computations,
            "remote_waits": shared.remote_waits,
        })
    );
}
