//! The shared tier's read cost against a bare Redis read (issue 5; `make bench-shared` runs it):
//!
//! ```text
//! bench_shared REDIS_URL [--json PATH] [--reads N] [--rounds N] [--callers N]
//! ```
//!
//! With a `redis+cluster://host:port,...` URL it measures the same on a Redis Cluster (issue 12):
//! the raw reads then go through the cluster client the tier uses (`redis::cluster_async`), and
//! the sync ones through the `redis` crate's sync cluster connection.
//!
//! A *shared-tier hit* is a local miss that Redis answers: a cache whose local tier is empty reads
//! a key another cache already wrote to Redis (`GETEX .. PX`, the blob's check, the JSON decode,
//! the local store). Each round builds a fresh reader cache on the same name, so every read is
//! one, and compares it with bare reads of values of the same stored size, on the same server, in
//! the same rounds (interleaved, the order rotating, so drift hits every case alike):
//!
//! * `shared tier's fetch alone`: `SharedTier::fetch` (the `GETEX` and the blob's check,
//!   on the tier's runtime), without the local flight, the decode and the store around it.
//! * `raw GET (ConnectionManager)`: the `redis` crate's async `ConnectionManager`, the connection
//!   the tier itself uses, driven by a one-worker tokio runtime like the tier's, the caller
//!   blocking in `block_on`. Both sides pay one hop to the runtime thread and back, so this is
//!   the comparison the 1.2x goal is about.
//! * `raw GETEX (ConnectionManager)`: the same with the command the tier sends, to tell the
//!   command's cost from the tier's.
//! * `raw GET (sync Connection)`: a blocking connection on the caller's thread, no runtime: the
//!   floor for a read from Rust, shown for scale.
//!
//! Values are JSON strings of 64 B and 4 KiB, unsigned and signed (`secret`, HMAC-SHA256). With
//! `--callers N` (default 8) the unsigned cases also run with N threads reading at once through
//! one cache (one multiplexed connection) against N threads sharing one `ConnectionManager`, and
//! the tier's fetch alone with N threads.
//! Per case: the median over rounds of the mean per read, the p50 and p99 of every read, and
//! `vs raw GET`, the median over rounds of the case's mean over the raw GET's in the same round
//! (on this shared two-core machine a noisy stretch then weighs on both sides of a ratio).
//! Prints a Markdown table; `--json` writes the figures for `bench/shared/report.py`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use coopcache::shared::{Remote, SharedSettings};
use coopcache::{Cache, JsonCodec, Key};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::json;

const COOP: &str = "coopcache shared-tier hit";
const TIER: &str = "shared tier's fetch alone";
const RAW_GET: &str = "raw GET (ConnectionManager)";
const RAW_GETEX: &str = "raw GETEX (ConnectionManager)";
const RAW_SYNC: &str = "raw GET (sync Connection)";
/// The idle TTL of the bench caches; `GETEX` refreshes it, so the raw `GETEX` uses it too.
const IDLE: Duration = Duration::from_secs(600);

struct Args {
    url: String,
    json: Option<String>,
    reads: usize,
    rounds: usize,
    callers: usize,
}

fn args() -> Result<Args, String> {
    let usage = "usage: bench_shared REDIS_URL [--json PATH] [--reads N] [--rounds N] [--callers N]";
    let mut it = std::env::args().skip(1);
    let mut a = Args { url: it.next().ok_or(usage)?, json: None, reads: 1000, rounds: 15, callers: 8 };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(usage)?;
        let num = || value.parse::<usize>().map_err(|_| format!("{flag}: not a number: {value}"));
        match flag.as_str() {
            "--json" => a.json = Some(value.clone()),
            "--reads" => a.reads = num()?.max(1),
            "--rounds" => a.rounds = num()?.max(1),
            "--callers" => a.callers = num()?.max(1),
            _ => return Err(usage.into()),
        }
    }
    Ok(a)
}

/// One case's figures: the mean of each round, and every read's latency.
#[derive(Default)]
struct Samples {
    round_ns: Vec<f64>,
    reads_ns: Vec<u64>,
}

impl Samples {
    fn add(&mut self, wall: Duration, reads: usize, mut lat: Vec<u64>) {
        self.round_ns.push(wall.as_nanos() as f64 / reads as f64);
        self.reads_ns.append(&mut lat);
    }

    /// Median, min and max of the rounds' means; p50 and p99 of the reads; and the median over
    /// rounds of this case's mean over `base`'s in the same round (paired, so a noisy stretch of
    /// the shared machine weighs on both sides of a ratio).
    fn summary(&self, base: &Samples) -> serde_json::Value {
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let mut rounds = self.round_ns.clone();
        rounds.sort_by(f64::total_cmp);
        let mut reads = self.reads_ns.clone();
        reads.sort_unstable();
        let pct = |v: &[u64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        let mut base_reads = base.reads_ns.clone();
        base_reads.sort_unstable();
        let paired = self.round_ns.iter().zip(&base.round_ns).map(|(a, b)| a / b).collect();
        json!({
            "ns_per_read": median(self.round_ns.clone()),
            "ns_per_read_min": rounds[0],
            "ns_per_read_max": rounds[rounds.len() - 1],
            "p50_ns": pct(&reads, 0.5),
            "p99_ns": pct(&reads, 0.99),
            "vs_raw_get": median(paired),
            "p50_vs_raw_get": pct(&reads, 0.5) as f64 / pct(&base_reads, 0.5) as f64,
        })
    }
}

/// What every case of one value size and signing reads: the same keys, values of one stored size.
struct Setup {
    name: String,
    settings: SharedSettings,
    keys: Vec<Key>,
    raw_keys: Vec<Vec<u8>>,
    stored_len: usize,
}

/// A cache on the setup's name, connected to its shared tier, with an empty local tier.
fn reader(s: &Setup) -> Result<Cache<Key, String>, Box<dyn std::error::Error>> {
    let cache = Cache::builder()
        .name(s.name.clone())
        .cache_duration(IDLE)
        .shared(s.settings.clone(), JsonCodec)
        .build()?;
    // A tier that is not connected yet answers "unavailable" and the read would be computed here.
    let start = Instant::now();
    while !cache.shared().is_some_and(|t| t.is_up()) {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("the shared tier did not connect within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(cache)
}

/// Writes every key through a coopcache writer (as another process would) and the raw copies
/// with the same stored length.
fn prepare(
    a: &Args,
    conn: &mut dyn redis::ConnectionLike,
    cluster: bool,
    size: usize,
    secret: bool,
) -> Result<Setup, Box<dyn std::error::Error>> {
    let name =
        format!("bench-shared-{}-{size}-{}", std::process::id(), if secret { "signed" } else { "plain" });
    let mut settings = SharedSettings::new(a.url.clone());
    if secret {
        settings = settings.secret(b"bench-shared-secret".to_vec());
    }
    let payload = "x".repeat(size - 2); // a JSON string of `size` bytes with its quotes
    let keys: Vec<Key> = (0..a.reads as i64).map(|i| Key::from(("k", i))).collect();
    let setup = Setup { name, settings, keys, raw_keys: Vec::new(), stored_len: 0 };
    let writer = reader(&setup)?;
    let writers = 4;
    std::thread::scope(|sc| {
        for t in 0..writers {
            let (writer, keys, payload) = (&writer, &setup.keys, &payload);
            sc.spawn(move || {
                for k in keys.iter().skip(t).step_by(writers) {
                    writer.get_or_compute(k.clone(), || payload.clone());
                }
            });
        }
    });
    let written = writer.shared().map(|t| t.stats().leases_won).unwrap_or(0);
    if written != a.reads as u64 {
        return Err(format!("{}: wrote {written} of {} values to Redis", setup.name, a.reads).into());
    }
    let stored_len: usize =
        redis::cmd("STRLEN").arg(key_name(&setup.name, 'v', &setup.keys[0], cluster)).query(conn)?;
    // Same stored size, and a key of the same length beside the tier's (on a cluster, in the
    // same slot as the tier's).
    let raw_keys: Vec<Vec<u8>> = setup.keys.iter().map(|k| key_name(&setup.name, 'r', k, cluster)).collect();
    let value = vec![b'x'; stored_len];
    for k in &raw_keys {
        redis::cmd("SET").arg(k).arg(&value).arg("PX").arg(IDLE.as_millis() as u64).query::<()>(conn)?;
    }
    Ok(Setup { raw_keys, stored_len, ..setup })
}

/// The name of `key`'s Redis key of `kind` (`v`: the tier's value) in cache `name`: the tier's
/// layout (`coopcache::shared`), with on a cluster the key's hash tag (FNV-1a of its bytes).
fn key_name(name: &str, kind: char, key: &Key, cluster: bool) -> Vec<u8> {
    let tag = match cluster {
        true => {
            let h = key
                .as_bytes()
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
            format!("{{{h:016x}}}")
        }
        false => String::new(),
    };
    [format!("coopcache:{name}:{kind}:{tag}").as_bytes(), key.as_bytes()].concat()
}

/// The seeds of a `redis+cluster://[user:password@]host:port,...` URL as `redis://` URLs, or
/// `None` for another URL.
fn cluster_seeds(url: &str) -> Option<Vec<String>> {
    let rest = url.strip_prefix("redis+cluster://")?;
    let (auth, hosts) = rest.rsplit_once('@').unwrap_or(("", rest));
    let auth = if auth.is_empty() { String::new() } else { format!("{auth}@") };
    Some(hosts.split('/').next()?.split(',').map(|h| format!("redis://{auth}{h}")).collect())
}

/// Times `read` over `n` items split among `callers` threads (item i to thread i % callers):
/// the wall time and every read's latency.
fn timed(n: usize, callers: usize, read: impl Fn(usize) + Sync) -> (Duration, Vec<u64>) {
    let read = &read;
    let start = Instant::now();
    let lat = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..callers)
            .map(|t| {
                sc.spawn(move || {
                    let mut lat = Vec::with_capacity(n / callers + 1);
                    for i in (t..n).step_by(callers) {
                        let t0 = Instant::now();
                        read(i);
                        lat.push(t0.elapsed().as_nanos() as u64);
                    }
                    lat
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a reader thread panicked")).collect::<Vec<_>>()
    });
    (start.elapsed(), lat)
}

struct Raw {
    rt: tokio::runtime::Runtime,
    conn: AsyncConn,
    sync: std::sync::Mutex<Box<dyn redis::ConnectionLike + Send>>,
}

/// The raw reads' async connection: the kind the tier uses for the URL.
enum AsyncConn {
    One(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// One round of one case; `Err` if a shared-tier read was not a hit.
fn round(
    case: &str,
    s: &Setup,
    raw: &Raw,
    callers: usize,
) -> Result<(Duration, Vec<u64>), Box<dyn std::error::Error>> {
    let n = s.keys.len();
    Ok(match case {
        COOP => {
            let cache = reader(s)?;
            let computed = AtomicU64::new(0);
            let r = timed(n, callers, |i| {
                let v = cache.get_or_compute(s.keys[i].clone(), || {
                    computed.fetch_add(1, Relaxed);
                    String::new()
                });
                std::hint::black_box(v);
            });
            let hits = cache.shared().map(|t| t.stats().remote_hits).unwrap_or(0);
            if computed.load(Relaxed) != 0 || hits != n as u64 {
                return Err(format!("{case}: {hits} of {n} reads were shared-tier hits").into());
            }
            r
        }
        TIER => {
            let cache = reader(s)?;
            let tier = cache.shared().ok_or("no shared tier")?;
            timed(n, callers, |i| {
                assert!(matches!(tier.fetch(&s.keys[i]).wait(), Remote::Value(_)), "{case}: not a hit");
            })
        }
        RAW_GET | RAW_GETEX => {
            let rt = &raw.rt;
            let getex = case == RAW_GETEX;
            timed(n, callers, |i| {
                let mut cmd = redis::cmd(if getex { "GETEX" } else { "GET" });
                cmd.arg(&s.raw_keys[i]);
                if getex {
                    cmd.arg("PX").arg(IDLE.as_millis() as u64);
                }
                let v: redis::RedisResult<Vec<u8>> = match &raw.conn {
                    AsyncConn::One(cm) => rt.block_on(cmd.query_async(&mut cm.clone())),
                    AsyncConn::Cluster(cc) => rt.block_on(cmd.query_async(&mut cc.clone())),
                };
                let v = v.expect("raw read");
                assert_eq!(v.len(), s.stored_len);
            })
        }
        RAW_SYNC => {
            let conn = &raw.sync;
            timed(n, 1, |i| {
                let mut c = conn.lock().expect("the sync connection");
                let v: Vec<u8> = redis::cmd("GET").arg(&s.raw_keys[i]).query(&mut **c).expect("raw read");
                assert_eq!(v.len(), s.stored_len);
            })
        }
        _ => unreachable!("unknown case {case}"),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    // Like the tier's own runtime and connection (coopcache::shared): one worker, same timeouts.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let seeds = cluster_seeds(&a.url);
    let cluster = seeds.is_some();
    let (mut conn, raw): (Box<dyn redis::ConnectionLike + Send>, Raw) = match seeds {
        Some(seeds) => {
            let client = redis::cluster::ClusterClient::new(seeds)?;
            let cc = rt.block_on(client.get_async_connection())?;
            let sync = std::sync::Mutex::new(Box::new(client.get_connection()?) as Box<_>);
            (Box::new(client.get_connection()?), Raw { rt, conn: AsyncConn::Cluster(cc), sync })
        }
        None => {
            let client = redis::Client::open(a.url.as_str())?;
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(Duration::from_secs(1)))
                .set_number_of_retries(1);
            let cm = rt.block_on(ConnectionManager::new_with_config(client.clone(), cfg))?;
            let sync = std::sync::Mutex::new(Box::new(client.get_connection()?) as Box<_>);
            (Box::new(client.get_connection()?), Raw { rt, conn: AsyncConn::One(cm), sync })
        }
    };
    // One node's version (on a cluster, INFO would go to every node).
    let first = cluster_seeds(&a.url).and_then(|s| s.into_iter().next()).unwrap_or_else(|| a.url.clone());
    let info: String =
        redis::cmd("INFO").arg("server").query(&mut redis::Client::open(first)?.get_connection()?)?;
    let version =
        info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_owned();

    let mut rows = Vec::new();
    let mut plan: Vec<(usize, bool, usize, Vec<&str>)> = Vec::new();
    for size in [64, 4096] {
        for secret in [false, true] {
            plan.push((size, secret, 1, vec![COOP, RAW_GET, TIER, RAW_GETEX, RAW_SYNC]));
        }
        if a.callers > 1 {
            plan.push((size, false, a.callers, vec![COOP, RAW_GET, TIER]));
        }
    }
    println!(
        "redis {version}, {} reads a round, {} rounds; ns per read: median of the rounds' means [min-max], \
         per-read p50 / p99; vs raw GET: median of the rounds' ratios\n",
        a.reads, a.rounds
    );
    println!(
        "| case | value | signed | callers | ns/read | rounds' range | p50 | p99 | vs raw GET | p50 vs raw |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut setups: Vec<((usize, bool), Arc<Setup>)> = Vec::new();
    for (size, secret, callers, cases) in plan {
        let s = match setups.iter().find(|(k, _)| *k == (size, secret)) {
            Some((_, s)) => s.clone(),
            None => {
                let s = Arc::new(prepare(&a, &mut *conn, cluster, size, secret)?);
                setups.push(((size, secret), s.clone()));
                s
            }
        };
        let mut samples: Vec<Samples> = cases.iter().map(|_| Samples::default()).collect();
        for r in 0..a.rounds {
            for j in 0..cases.len() {
                let c = (r + j) % cases.len();
                let (wall, lat) = round(cases[c], &s, &raw, callers)?;
                samples[c].add(wall, s.keys.len(), lat);
            }
        }
        // The goal's comparison: each case against the raw GET on the tier's kind of connection.
        let summaries: Vec<serde_json::Value> = samples.iter().map(|c| c.summary(&samples[1])).collect();
        for (case, mut sm) in cases.iter().zip(summaries) {
            let f = |k: &str| sm[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "| {case} | {size} B ({} B stored) | {} | {callers} | {:.0} | {:.0}-{:.0} | {:.0} | {:.0} | {:.2}x | {:.2}x |",
                s.stored_len,
                if secret { "yes" } else { "no" },
                f("ns_per_read"),
                f("ns_per_read_min"),
                f("ns_per_read_max"),
                f("p50_ns"),
                f("p99_ns"),
                f("vs_raw_get"),
                f("p50_vs_raw_get"),
            );
            let extra = json!({
                "case": case, "payload_bytes": size, "stored_bytes": s.stored_len, "signed": secret,
                "callers": callers,
            });
            if let (Some(o), Some(e)) = (sm.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            rows.push(sm);
        }
    }
    if let Some(path) = &a.json {
        let out = json!({
            "redis_version": version,
            "reads_per_round": a.reads,
            "rounds": a.rounds,
            "client": match cluster {
                true => "redis crate 1.8, async cluster connection on a one-worker tokio runtime (as the tier)",
                false => "redis crate 1.8, async ConnectionManager on a one-worker tokio runtime (as the tier)",
            },
            "results": rows,
        });
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")?;
    }
    Ok(())
}
