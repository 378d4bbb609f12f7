//! The shared tier against a real `redis-server` on loopback. Each `SharedTier` has its own
//! leases, waits and counters, so two tiers with one cache name behave as two processes (they
//! share this process's two connections to the server, as every cache of a process does).
#![cfg(all(feature = "redis", feature = "json"))]

use std::time::{Duration, Instant};

use coopcache::Key;
use coopcache::shared::{
    Blob, Invalidation, Moment, Remote, RemoteError, SharedMode, SharedSettings, SharedTier,
};

mod support;
use support::redis::{Server, blob, payload, shared_cache, start, tier, wait, wait_bool};

#[test]
fn one_process_computes_the_others_wait_and_get_its_value() {
    let s = Server::start();
    let (a, b) = (tier(&s, "c1", |_| {}), tier(&s, "c1", |_| {}));
    let key = Key::from(("user", 42));
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!("a computes") };
    let waiting = b.fetch(&key);
    s.until(|| b.stats().remote_waits == 1);
    assert!(lease.store(&blob("Ada")).wait_timeout(Duration::from_secs(5)).unwrap(), "written as owner");
    assert_eq!(payload(wait(&waiting)), "Ada");
    // A process that starts later reads it without computing.
    let c = tier(&s, "c1", |_| {});
    assert_eq!(payload(wait(&c.fetch(&key))), "Ada");
    assert_eq!((a.stats().leases_won, b.stats().leases_lost, c.stats().remote_hits), (1, 1, 1));
    let keys = s.cli(&["--scan", "--pattern", "coopcache:c1:v:*"]);
    assert_eq!(keys.lines().count(), 1);
}

#[test]
fn a_dead_holders_lease_expires_and_another_process_takes_over() {
    let s = Server::start();
    let b = tier(&s, "c2", |_| {});
    let key = Key::from("k");
    // A holder that took the lease and died: nobody renews it.
    let lkey = "coopcache:c2:l:\x04\x01k";
    assert_eq!(s.cli(&["SET", lkey, "dead-token", "NX", "PX", "300"]), "OK");
    let r = wait(&b.fetch(&key));
    assert_eq!(payload(r), "compute");
    assert_eq!(b.stats().leases_lost, 1, "it waited for the dead holder first");
}

#[test]
fn a_computation_longer_than_the_lease_is_not_duplicated() {
    let s = Server::start();
    let short = |st: &mut SharedSettings| st.lease_ttl = Duration::from_millis(300);
    let (a, b) = (tier(&s, "c3", short), tier(&s, "c3", short));
    let key = Key::from(7);
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!() };
    let waiting = b.fetch(&key);
    // Several lease lifetimes pass while A computes; A renews, so B keeps waiting.
    std::thread::sleep(Duration::from_millis(1_200));
    assert!(waiting.try_get().is_none(), "B did not take over a lease that is being renewed");
    lease.store(&blob("slow")).wait_timeout(Duration::from_secs(5));
    assert_eq!(payload(wait(&waiting)), "slow");
    assert_eq!(b.stats().leases_won, 0);
}

#[test]
fn errors_and_nocache_reach_the_waiting_processes_and_are_not_stored() {
    let s = Server::start();
    let (a, b) = (tier(&s, "c4", |_| {}), tier(&s, "c4", |_| {}));
    let key = Key::from("e");
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!() };
    let waiting = b.fetch(&key);
    s.until(|| b.stats().remote_waits == 1);
    let err = RemoteError { type_name: "ValueError".into(), message: "bad input".into() };
    lease.fail(&err).wait_timeout(Duration::from_secs(5));
    match wait(&waiting) {
        Remote::Failed(e) => assert_eq!(e, err),
        other => panic!("expected the error, got {}", payload(other)),
    }
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!("not stored: computes again") };
    let waiting = b.fetch(&key);
    s.until(|| b.stats().remote_waits == 2);
    lease.nocache(&blob("temp")).wait_timeout(Duration::from_secs(5));
    assert_eq!(payload(wait(&waiting)), "nocache");
    assert_eq!(payload(wait(&a.fetch(&key))), "compute");
}

#[test]
fn a_dropped_lease_is_released_at_once() {
    let s = Server::start();
    let (a, b) = (tier(&s, "c5", |_| {}), tier(&s, "c5", |_| {}));
    let key = Key::from("d");
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!() };
    let waiting = b.fetch(&key);
    s.until(|| b.stats().remote_waits == 1);
    drop(lease); // the default lease TTL is 10 s: B would wait that long without the release
    assert_eq!(payload(wait(&waiting)), "compute");
}

#[test]
fn a_holder_that_lost_its_lease_does_not_overwrite_a_newer_value() {
    let s = Server::start();
    let (a, b) = (tier(&s, "c6", |_| {}), tier(&s, "c6", |_| {}));
    let key = Key::from("o");
    let Remote::Compute(old) = wait(&a.fetch(&key)) else { panic!() };
    assert_eq!(s.cli(&["DEL", "coopcache:c6:l:\x04\x01o"]), "1"); // A's lease expired
    let Remote::Compute(new) = wait(&b.fetch(&key)) else { panic!() };
    assert!(new.store(&blob("new")).wait_timeout(Duration::from_secs(5)).unwrap());
    assert!(!old.store(&blob("old")).wait_timeout(Duration::from_secs(5)).unwrap(), "not the owner");
    let c = tier(&s, "c6", |_| {});
    assert_eq!(payload(wait(&c.fetch(&key))), "new");
}

#[test]
fn invalidations_reach_every_process() {
    let s = Server::start();
    let (a, b) = (tier(&s, "c7", |_| {}), tier(&s, "c7", |_| {}));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    b.on_invalidation(move |inv| {
        log.lock().unwrap().push(match inv {
            Invalidation::Key(k) => format!("key {}", Key::from_bytes(k).unwrap()),
            Invalidation::Tag(t) => format!("tag {t}"),
            Invalidation::All => "all".into(),
            Invalidation::Refreshed { key, written } => format!("refreshed {key:?} at {written}"),
            _ => "other".into(),
        })
    });
    let key = Key::from("i");
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!() };
    lease
        .store(&Blob { tags: vec!["team".into()], payload: b"v".to_vec() })
        .wait_timeout(Duration::from_secs(5));
    assert!(a.invalidate(&key).wait_timeout(Duration::from_secs(5)).unwrap());
    assert_eq!(payload(wait(&b.fetch(&key))), "compute", "deleted in Redis");
    assert!(a.invalidate_tag("team").wait_timeout(Duration::from_secs(5)).unwrap());
    assert!(a.clear().wait_timeout(Duration::from_secs(5)).unwrap());
    s.until(|| seen.lock().unwrap().len() == 3);
    assert_eq!(*seen.lock().unwrap(), ["key \"i\"", "tag team", "all"]);
}

#[test]
fn tag_invalidation_deletes_the_tagged_values_in_redis() {
    let s = Server::start();
    let a = tier(&s, "c8", |_| {});
    for (k, tags) in [("x", vec!["t1"]), ("y", vec!["t1", "t2"]), ("z", vec!["t2"])] {
        let Remote::Compute(lease) = wait(&a.fetch(&Key::from(k))) else { panic!() };
        let b = Blob { tags: tags.into_iter().map(String::from).collect(), payload: k.as_bytes().to_vec() };
        lease.store(&b).wait_timeout(Duration::from_secs(5));
    }
    a.invalidate_tag("t1").wait_timeout(Duration::from_secs(5));
    assert_eq!(payload(wait(&a.fetch(&Key::from("x")))), "compute");
    assert_eq!(payload(wait(&a.fetch(&Key::from("z")))), "z");
}

#[test]
fn a_tampered_value_is_refused_never_deserialized() {
    let s = Server::start();
    let signed = |st: &mut SharedSettings| st.secret = Some(b"s3cret".to_vec());
    let a = tier(&s, "c9", signed);
    let key = Key::from("t");
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!() };
    lease.store(&blob("genuine")).wait_timeout(Duration::from_secs(5));
    let b = tier(&s, "c9", signed);
    assert_eq!(payload(wait(&b.fetch(&key))), "genuine");
    // Overwrite the payload's last byte in Redis.
    let vkey = "coopcache:c9:v:\x04\x01t";
    assert!(s.cli(&["GET", vkey]).ends_with("genuine"));
    let len: usize = s.cli(&["STRLEN", vkey]).parse().unwrap();
    assert_eq!(s.cli(&["SETRANGE", vkey, &(len - 1).to_string(), "X"]), len.to_string());
    let c = tier(&s, "c9", signed);
    assert_eq!(payload(wait(&c.fetch(&key))), "compute", "refused: a miss");
    assert_eq!(c.stats().rejected_values, 1);
}

#[test]
fn reads_refresh_the_idle_ttl_and_unread_values_expire() {
    let s = Server::start();
    let settings = SharedSettings::new(s.url());
    let a = start("c10", settings.clone(), Duration::from_millis(800)).unwrap();
    s.until(|| a.is_up());
    let key = Key::from("ttl");
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!() };
    lease.store(&blob("v")).wait_timeout(Duration::from_secs(5));
    let vkey = "coopcache:c10:v:\x04\x03ttl";
    let pttl = || s.cli(&["PTTL", vkey]).parse::<i64>().unwrap();
    assert!(pttl() > 0 && pttl() <= 800);
    // Local hits touch it in batches: it stays alive well past its TTL while touched.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(300));
        a.touch(&key);
    }
    assert!(pttl() > 0, "kept alive by touches");
    // Untouched, it expires in Redis.
    s.until(|| pttl() == -2);
}

#[test]
fn redis_down_means_the_local_tier_then_recovery() {
    let s = Server::start();
    let a = tier(&s, "c11", |st| st.timeout = Duration::from_millis(300));
    let key = Key::from("down");
    let port = s.stop();
    // Once the loss is noticed, every step answers at once: compute locally.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if matches!(wait(&a.fetch(&key)), Remote::Unavailable) && !a.is_up() {
            break;
        }
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(a.stats().fallbacks >= 1);
    let s = Server::on(port);
    s.until(|| a.is_up());
    assert_eq!(payload(wait(&a.fetch(&key))), "compute", "the shared tier is used again");
}

#[test]
fn bad_urls_are_configuration_errors_without_the_password() {
    let e = start("c12", SharedSettings::new("http://user:hunter2@host"), Duration::from_secs(1))
        .err()
        .expect("not a redis URL");
    let text = e.to_string();
    assert!(text.contains("redis_url") && !text.contains("hunter2"), "{text}");
    assert_eq!(coopcache::shared::redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
    assert_eq!(coopcache::shared::redact("rediss://u:pw@h"), "rediss://u:***@h");
}

#[test]
fn caches_in_several_processes_compute_a_cold_key_once() {
    let s = Server::start();
    let caches: Vec<_> = (0..3).map(|_| shared_cache(&s, "p1")).collect();
    let runs = std::sync::atomic::AtomicU32::new(0);
    let barrier = std::sync::Barrier::new(15);
    let key = Key::from(("report", 1));
    let values: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..15)
            .map(|i| {
                let (c, runs, barrier, key) = (&caches[i % 3], &runs, &barrier, key.clone());
                sc.spawn(move || {
                    barrier.wait();
                    c.get_or_compute(key, || {
                        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        "the report".to_string()
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(values.iter().all(|v| v == "the report"));
    // A process that starts afterwards reads it without computing.
    let late = shared_cache(&s, "p1");
    assert_eq!(late.get_or_compute(key.clone(), || unreachable!("stored in Redis")), "the report");
    assert_eq!(late.shared().unwrap().stats().remote_hits, 1);
    // Invalidation in one process reaches the local tiers of the others.
    assert!(caches[0].get(&key).is_some() && caches[1].get(&key).is_some());
    caches[0].invalidate(&key);
    s.until(|| caches[1].get(&key).is_none() && caches[2].get(&key).is_none() && late.get(&key).is_none());
}

#[test]
fn an_error_in_one_process_reaches_the_waiters_in_the_others() {
    let s = Server::start();
    let (a, b) = (shared_cache(&s, "p2"), shared_cache(&s, "p2"));
    let key = Key::from("boom");
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let leader = {
        let (a, key) = (a.clone(), key.clone());
        std::thread::spawn(move || {
            a.try_get_or_compute(key, || {
                started_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                Err::<String, _>(std::io::Error::other("db down"))
            })
        })
    };
    started_rx.recv().unwrap();
    let r = b.try_get_or_compute(key.clone(), || Ok::<_, std::io::Error>("mine".to_string()));
    match r {
        Err(coopcache::Error::Remote { type_name, message }) => {
            assert_eq!((type_name.as_str(), message.as_str()), ("std::io::error::Error", "db down"));
        }
        other => panic!("expected the remote error, got {other:?}"),
    }
    assert!(leader.join().unwrap().is_err());
    assert_eq!(b.get(&key), None, "not stored");
}

#[test]
fn caches_keep_working_when_redis_is_down() {
    let s = Server::start();
    let a = shared_cache(&s, "p3");
    s.stop();
    for i in 0..20 {
        assert_eq!(a.get_or_compute(Key::from(i), || format!("v{i}")), format!("v{i}"));
    }
    assert_eq!(a.stats().computations, 20);
}

#[test]
fn invalidate_reports_the_local_entry_it_removed() {
    let s = Server::start();
    let a = shared_cache(&s, "p4");
    for i in 0..50 {
        let key = Key::from(i);
        a.get_or_compute(key.clone(), || format!("v{i}"));
        // The echo of this process's own invalidation must not take the answer away.
        assert!(a.invalidate(&key), "round {i}");
    }
}

#[test]
fn a_bad_url_leaves_no_cache_behind() {
    let s = Server::start();
    let r: coopcache::Registry<u32> = coopcache::Registry::new();
    let bad = SharedSettings::new("http://nope");
    assert!(
        r.configure_shared("late", coopcache::Settings::default(), Some(SharedMode::Redis(bad))).is_err()
    );
    assert!(r.names().is_empty(), "nothing registered");
    let good = SharedSettings::new(s.url());
    let c =
        r.configure_shared("late", coopcache::Settings::default(), Some(SharedMode::Redis(good))).unwrap();
    assert!(c.shared().is_some());
}

#[test]
fn a_new_caches_first_calls_use_redis_without_waiting_for_it_to_connect() {
    let s = Server::start();
    let settings = || SharedSettings::new(s.url());
    let build =
        || coopcache::Cache::builder().name("p6").shared(settings(), coopcache::JsonCodec).build().unwrap();
    let (a, b) = (build(), build());
    // No wait for is_up: the first fetch of each waits (bounded) for its tier's first attempt.
    let key = Key::from("first");
    assert_eq!(a.get_or_compute(key.clone(), || "from a".to_string()), "from a");
    let b_value: String = b.get_or_compute(key, || "from b".to_string());
    assert_eq!(b_value, "from a", "b read a's value from Redis");
    let (sa, sb) = (a.shared().unwrap().stats(), b.shared().unwrap().stats());
    assert_eq!((sa.leases_won, sa.fallbacks, sb.remote_hits, sb.fallbacks), (1, 0, 1, 0));
}

/// Issue 12: a completion (with its value) reaches the processes waiting for that key, not
/// every process of the cache; invalidations still reach every process.
#[test]
fn a_value_reaches_the_processes_waiting_for_its_key_and_no_other() {
    let s = Server::start();
    // Three processes (a link each: another timeout is another link).
    let own = |ms| move |st: &mut SharedSettings| st.timeout = Duration::from_millis(ms);
    let (a, idle, waiter) =
        (tier(&s, "fan", own(1000)), tier(&s, "fan", own(1001)), tier(&s, "fan", own(1002)));
    let invalidated = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = invalidated.clone();
    idle.on_invalidation(move |inv| {
        if matches!(inv, Invalidation::Key(k) if k == Key::from("other").as_bytes()) {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let big = "x".repeat(64 * 1024);
    let key = Key::from("hot");
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!("a computes") };
    let waiting = waiter.fetch(&key);
    s.until(|| waiter.stats().remote_waits == 1);
    assert!(wait_bool(lease.store(&blob(&big))));
    assert_eq!(payload(wait(&waiting)), big);
    // An invalidation published after the completion reaches the idle process after it too.
    assert!(wait_bool(a.invalidate(&Key::from("other"))));
    s.until(|| invalidated.load(std::sync::atomic::Ordering::SeqCst));
    let (idle_bytes, waiter_bytes) = (idle.stats().message_bytes, waiter.stats().message_bytes);
    assert!(
        idle_bytes > 0 && idle_bytes < 1024,
        "the idle process got the invalidation only: {idle_bytes} bytes"
    );
    assert!(waiter_bytes > big.len() as u64, "the waiter got the value: {waiter_bytes} bytes");
}

/// Issue 12: a process that found a key's lease taken subscribes to the key's channel; a
/// completion published before that subscription is confirmed would never reach it, so once
/// subscribed it looks again. Here the holder finishes in that window: the hook (run when the
/// lease is found taken, before subscribing) stores the value and ends the lease, as a
/// holder's publish does, with its message published to nobody.
#[test]
fn a_completion_before_the_waiters_subscription_is_not_missed() {
    let s = Server::start();
    let (a, b) = (tier(&s, "race", |_| {}), tier(&s, "race", |st| st.timeout = Duration::from_millis(1001)));
    let publishes = holder_publishes_at(&s, &a, &b, "race", Moment::LeaseHeld);
    assert_eq!(payload(wait(&b.fetch(&Key::from("k")))), "published");
    assert_eq!(publishes.load(std::sync::atomic::Ordering::SeqCst), 1);
    let st = b.stats();
    assert_eq!((st.remote_waits, st.leases_won, st.remote_hits), (0, 0, 1), "{st:?}");
}

/// A holder that publishes between a fetch's read (no value) and its lease script leaves a
/// value and no lease: the fetch reads the value, it does not take the free lease and compute
/// the key a second time (`(runs, won)` was `(2, 2)` now and then in a stampede of three caches,
/// shared_faults.rs). A value the read refused is not taken for one
/// (a_tampered_value_is_refused_never_deserialized).
#[test]
fn a_publish_between_the_read_and_the_lease_script_is_read_not_computed_again() {
    let s = Server::start();
    let (a, b) = (tier(&s, "gap", |_| {}), tier(&s, "gap", |_| {}));
    let publishes = holder_publishes_at(&s, &a, &b, "gap", Moment::Missed);
    let got = wait(&b.fetch(&Key::from("k")));
    let st = b.stats();
    assert!(matches!(got, Remote::Value(_)), "the value the holder published, not a lease: {st:?}");
    assert_eq!(payload(got), "published");
    assert_eq!(publishes.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!((st.leases_won, st.remote_hits), (0, 1), "{st:?}");
}

/// Another process holds key `k`'s lease of cache `name` and publishes (its value, its lease
/// gone; done with redis-cli, as the hook runs on the tier's runtime) the first time `b`'s
/// fetch reaches `moment`: the moment a completion could slip by. Returns how often it did.
/// A refresh reads the key's value, finds it too old, and runs the lease script; another
/// process's refresh can take the lease, write the new value and end the lease in between.
/// The lease is then free, but the value there is not the one the read refused: the refresh
/// reads it (it was written lately), it does not take the lease and compute the key a second
/// time (the Python fleet test saw 3 computations for 2 values, now and then).
#[test]
fn a_refresh_that_finds_a_newer_value_at_its_lease_script_reads_it() {
    let s = Server::start();
    let clock = coopcache::Clock::manual();
    let local = coopcache::Settings::default().cache_duration(Duration::from_secs(60));
    let process = |ms| {
        let mut settings = SharedSettings::new(s.url());
        settings.timeout = Duration::from_millis(ms); // another link: another process
        let t = SharedTier::start("rgap", SharedMode::Redis(settings), &local, clock.clone(), None).unwrap();
        s.until(|| t.is_up());
        t
    };
    let (a, b) = (process(1000), process(1001));
    let (key, other) = (Key::from("k"), Key::from("other"));
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!("a computes") };
    assert!(wait_bool(lease.store(&blob("old"))));
    clock.advance(Duration::from_secs(10));
    let Remote::Compute(lease) = wait(&a.fetch(&other)) else { panic!("a computes") };
    assert!(wait_bool(lease.store(&blob("new"))));
    // Between b's read of "old" and its lease script, "new" replaces it (with no lease left).
    let port = s.port.to_string();
    let value_key = |k: &Key| [b"coopcache:rgap:v:".as_slice(), k.as_bytes()].concat();
    let (from, to) = (value_key(&other), value_key(&key));
    let copied = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = copied.clone();
    b.at(move |at, _| {
        if at != Moment::Missed || seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
            return;
        }
        use std::os::unix::ffi::OsStrExt;
        let mut c = std::process::Command::new("redis-cli");
        let args: [&[u8]; 4] = [b"COPY", &from, &to, b"REPLACE"];
        c.args(["-p", &port]).args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a)));
        assert!(c.output().unwrap().status.success());
    });
    let got = wait(&b.refetch(&key, Duration::from_secs(5)).expect("a Redis tier refetches"));
    let st = b.stats();
    assert_eq!(copied.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(matches!(got, Remote::Value(_)), "the value written lately, not a lease: {st:?}");
    assert_eq!(payload(got), "new");
    assert_eq!((st.leases_won, st.remote_hits), (0, 1), "{st:?}");
}

fn holder_publishes_at(
    s: &Server,
    a: &SharedTier,
    b: &SharedTier,
    name: &str,
    moment: Moment,
) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    let (key, other) = (Key::from("k"), Key::from("other"));
    let Remote::Compute(lease) = wait(&a.fetch(&other)) else { panic!("a computes") };
    assert!(wait_bool(lease.store(&blob("published"))));
    let redis_key =
        |kind: &str, k: &Key| [format!("coopcache:{name}:{kind}:").as_bytes(), k.as_bytes()].concat();
    // The holder: a lease that would outlast the test.
    assert_eq!(s.cli_bytes(&[b"SET", &redis_key("l", &key), b"holder:0", b"PX", b"600000"]), "OK");
    let port = s.port.to_string();
    let (lkey, from, to) = (redis_key("l", &key), redis_key("v", &other), redis_key("v", &key));
    let published = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = published.clone();
    b.at(move |at, _| {
        if at != moment || seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
            return;
        }
        use std::os::unix::ffi::OsStrExt;
        let cli = |args: &[&[u8]]| {
            let mut c = std::process::Command::new("redis-cli");
            c.args(["-p", &port]).args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a)));
            assert!(c.output().unwrap().status.success());
        };
        cli(&[b"COPY", &from, &to]);
        cli(&[b"DEL", &lkey]);
    });
    published
}
