//! The faults issue 12 found in the shared tier on a single Redis, each reproduced against a
//! real `redis-server` on loopback (items 1 to 9 of its list). Faults that need Redis to
//! misbehave make it: `maxmemory 1` under `noeviction` refuses writes (OOM), SIGSTOP stalls it,
//! and a kill and a restart on the same port is an outage.
//!
//! Each `SharedTier` (or cache) stands for a process. Ordering comes from the protocol itself
//! (a waiter counted before the holder finishes, messages on one channel in order); conditions
//! are polled with a bound, never waited out with a sleep.
#![cfg(all(feature = "redis", feature = "json"))]

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use coopcache::shared::{Invalidation, Remote, SharedSettings, SharedTier};
use coopcache::{Event, Key, Listener};

mod support;
use support::redis::{
    Certs, Server, blob, payload, shared_cache, start, start_with, tagged, tier, until, wait, wait_bool,
};
use support::{Gate, within};

/// Well under every lease TTL these tests use: a waiter answered within this was woken, not
/// left to wait the lease out.
const AT_ONCE: Duration = Duration::from_secs(4);

/// The name of one of a cache's Redis keys (`v` value, `l` lease, `t` tag set) as the tier
/// writes it for a plain cache name.
fn rkey(cache: &str, kind: char, rest: &[u8]) -> Vec<u8> {
    let mut k = format!("coopcache:{cache}:{kind}:").into_bytes();
    k.extend_from_slice(rest);
    k
}

/// Stores `v` under `key` through `t`, which must get the lease.
fn store(t: &SharedTier, key: &Key, v: &str, tags: &[&str]) {
    let Remote::Compute(lease) = wait(&t.fetch(key)) else { panic!("{key} is not in Redis yet: computes") };
    assert!(wait_bool(lease.store(&tagged(v, tags))), "{key} written");
}

/// What a process that starts now reads for `key` in cache `name`.
fn read(s: &Server, name: &str, key: &Key) -> String {
    payload(wait(&tier(s, name, |_| {}).fetch(key)))
}

/// Lets a stalled server go on when the test ends, even by a failure.
struct Resume<'a>(&'a Server);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

/// Item 1: a final write that Redis refuses (a tag key of the wrong type, OOM under
/// `noeviction`) releases the lease and wakes the other processes' waiters at once.
#[test]
fn a_publish_that_redis_refuses_releases_the_lease_and_wakes_the_waiters() {
    let s = Server::start();
    let long = |st: &mut SharedSettings| st.lease_ttl = Duration::from_secs(30);
    let (a, b) = (tier(&s, "f1", long), tier(&s, "f1", long));

    let key = Key::from("wrong type");
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!("a computes") };
    let waiting = b.fetch(&key);
    s.until(|| b.stats().remote_waits == 1);
    assert_eq!(s.cli(&["SET", "coopcache:f1:t:team", "not a set"]), "OK");
    assert!(!wait_bool(lease.store(&tagged("v", &["team"]))), "Redis refused the write");
    let answer = waiting.wait_timeout(AT_ONCE).expect("the waiter woken at once, not after the 30 s lease");
    assert_ne!(payload(answer), "v", "not stored: no waiter reads it as stored");
    assert_eq!(s.cli_bytes(&[b"EXISTS", &rkey("f1", 'l', key.as_bytes())]), "0", "the lease is released");
    assert_eq!(s.cli_bytes(&[b"EXISTS", &rkey("f1", 'v', key.as_bytes())]), "0", "nothing half written");

    let key = Key::from("oom");
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!("a computes") };
    let waiting = b.fetch(&key);
    s.until(|| b.stats().remote_waits == 2);
    assert_eq!(s.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]), "OK");
    assert_eq!(s.cli(&["CONFIG", "SET", "maxmemory", "1"]), "OK");
    assert!(!wait_bool(lease.store(&blob("v"))), "OOM: not written");
    let answer = waiting.wait_timeout(AT_ONCE).expect("the waiter woken at once, not after the 30 s lease");
    assert_ne!(payload(answer), "v");
    assert_eq!(s.cli(&["CONFIG", "SET", "maxmemory", "0"]), "OK");
    assert_eq!(s.cli_bytes(&[b"EXISTS", &rkey("f1", 'l', key.as_bytes())]), "0", "the lease is released");
}

/// Item 2: a waiter already waiting for another process's completion falls back to the local
/// tier as soon as the tier is marked down (Redis stalled), not after the holder's lease.
#[test]
fn a_remote_waiter_falls_back_at_once_when_redis_stalls() {
    let s = Server::start();
    let st = |st: &mut SharedSettings| {
        st.timeout = Duration::from_millis(300);
        st.lease_ttl = Duration::from_secs(10);
    };
    let (a, b) = (tier(&s, "f2", st), tier(&s, "f2", st));
    let key = Key::from("k");
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!("a computes") };
    let waiting = b.fetch(&key);
    s.until(|| b.stats().remote_waits == 1);
    let _resume = Resume(&s);
    s.pause();
    let answer =
        waiting.wait_timeout(AT_ONCE).expect("the waiter fell back at once, not after the 10 s lease");
    assert_eq!(payload(answer), "unavailable");
    assert!(!b.is_up());
    s.resume();
    s.until(|| b.is_up());
    drop(lease);
}

/// Item 3: timeouts alone are reported down, and back when calls succeed again; `is_up()` is
/// false while every call times out; a later real outage is reported again.
#[test]
fn down_and_back_are_reported_for_a_stall_and_again_for_a_later_outage() {
    let s = Server::start();
    let events = Arc::new(Mutex::new(Vec::<&str>::new()));
    let log = events.clone();
    let listener: Listener = Arc::new(move |e: &Event| match e {
        Event::SharedDown { .. } => log.lock().unwrap().push("down"),
        Event::SharedUp { .. } => log.lock().unwrap().push("up"),
        _ => {}
    });
    let settings = SharedSettings::new(s.url()).timeout(Duration::from_millis(200));
    let a = start_with("f3", settings, Duration::from_secs(60), Some(listener)).unwrap();
    s.until(|| a.is_up());
    let key = Key::from("k");
    let seen = || events.lock().unwrap().clone();
    {
        let _resume = Resume(&s);
        s.pause();
        until("a stall reported down, is_up() false", || {
            drop(wait(&a.fetch(&key)));
            seen() == ["down"] && !a.is_up()
        });
    }
    until("reported back once calls succeed", || {
        drop(wait(&a.fetch(&key)));
        seen() == ["down", "up"] && a.is_up()
    });
    let port = s.stop();
    until("a later outage reported down again", || {
        drop(wait(&a.fetch(&key)));
        seen() == ["down", "up", "down"] && !a.is_up()
    });
    let _s = Server::on(port);
    until("and back again", || {
        drop(wait(&a.fetch(&key)));
        seen() == ["down", "up", "down", "up"] && a.is_up()
    });
}

/// Item 4: no cache name reaches another cache's data: `clear()` of `users` or of `*`, a tag
/// of `x` that spells another cache's tag key, a name with control bytes that spells another
/// cache's value key.
#[test]
fn cache_names_cannot_reach_each_others_data() {
    let s = Server::start();
    let k = Key::from("k");
    let (users, archive) = (tier(&s, "users", |_| {}), tier(&s, "users:v:archive", |_| {}));
    store(&archive, &k, "archived", &[]);
    store(&users, &k, "user", &[]);
    assert!(wait_bool(users.clear()));
    assert_eq!(read(&s, "users:v:archive", &k), "archived", "clear() of users reached users:v:archive");
    assert!(wait_bool(tier(&s, "*", |_| {}).clear()));
    assert_eq!(read(&s, "users:v:archive", &k), "archived", "clear() of * reached another cache");

    store(&tier(&s, "x:t:a", |_| {}), &k, "tagged b", &["b"]);
    assert!(wait_bool(tier(&s, "x", |_| {}).invalidate_tag("a:t:b")));
    assert_eq!(read(&s, "x:t:a", &k), "tagged b", "x's tag a:t:b is x:t:a's tag b");

    // Cache `a`'s key ":v:" + K spells, after `coopcache:a:v:`, what cache `a:v:` + (that
    // key's two head bytes) spells for key K.
    let inner = Key::from("abcdefg");
    let text = format!(":v:{}", std::str::from_utf8(inner.as_bytes()).unwrap());
    let outer = Key::from(text.as_str());
    let head = std::str::from_utf8(&outer.as_bytes()[..outer.as_bytes().len() - text.len()]).unwrap();
    let alias = format!("a:v:{head}");
    assert_eq!(rkey("a", 'v', outer.as_bytes()), rkey(&alias, 'v', inner.as_bytes()), "the raw keys collide");
    store(&tier(&s, "a", |_| {}), &outer, "a's value", &[]);
    assert_eq!(read(&s, &alias, &inner), "compute", "cache {alias:?} read cache a's value");
}

/// Item 5: with a secret, a value signed for cache `public` is refused by cache `admin`, and
/// forged control messages (`Failed`, `Clear`) are ignored.
#[test]
fn signatures_cover_the_cache_name_and_the_control_messages() {
    let s = Server::start();
    let signed = |st: &mut SharedSettings| st.secret = Some(b"s3cret".to_vec());
    let k = Key::from("k");
    store(&tier(&s, "public", signed), &k, "public value", &[]);
    let copied =
        s.cli_bytes(&[b"COPY", &rkey("public", 'v', k.as_bytes()), &rkey("admin", 'v', k.as_bytes())]);
    assert_eq!(copied, "1");
    let admin = tier(&s, "admin", signed);
    assert_eq!(payload(wait(&admin.fetch(&k))), "compute", "cache admin accepted cache public's value");
    assert_eq!(admin.stats().rejected_values, 1);

    let (a, b) = (tier(&s, "admin", signed), tier(&s, "admin", signed));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    b.on_invalidation(move |inv| {
        log.lock().unwrap().push(match inv {
            Invalidation::Key(_) => "key".into(),
            Invalidation::Tag(t) => format!("tag {t}"),
            Invalidation::All => "all".into(),
            Invalidation::Refreshed { .. } => "refreshed".into(),
            _ => "other".into(),
        })
    });
    let f = Key::from("f");
    let Remote::Compute(lease) = wait(&a.fetch(&f)) else { panic!("a computes") };
    let waiting = b.fetch(&f);
    s.until(|| b.stats().remote_waits == 1);
    // The holder's `Failed` as a cache without a secret sends it: kind, key, the lease's
    // token, type name, message. Only the signature is missing.
    let token = s.cli_bytes(&[b"GET", &rkey("admin", 'l', f.as_bytes())]);
    let mut forged = vec![b'E', f.as_bytes().len() as u8];
    forged.extend_from_slice(f.as_bytes());
    forged.push(token.len() as u8);
    forged.extend_from_slice(token.as_bytes());
    forged.push(10);
    forged.extend_from_slice(b"ValueErrorforged");
    assert_ne!(s.cli_bytes(&[b"PUBLISH", b"coopcache:admin", &forged]), "0");
    assert!(wait_bool(lease.store(&blob("genuine"))));
    assert_eq!(payload(wait(&waiting)), "genuine", "a forged Failed reached the waiter");

    assert_ne!(s.cli_bytes(&[b"PUBLISH", b"coopcache:admin", b"C"]), "0");
    assert!(wait_bool(a.invalidate(&f)));
    until("the genuine invalidation arrives", || !seen.lock().unwrap().is_empty());
    assert_eq!(*seen.lock().unwrap(), ["key"], "a forged Clear cleared");
}

/// Item 6: an invalidation (of the key, of one of its tags, or a clear) that reaches Redis
/// while another process computes that key wins over the computation's publish.
#[test]
fn an_invalidation_during_a_computation_wins_over_its_publish() {
    let s = Server::start();
    let (a, b) = (tier(&s, "f6", |_| {}), tier(&s, "f6", |_| {}));

    let k = Key::from("key");
    let Remote::Compute(lease) = wait(&a.fetch(&k)) else { panic!("a computes") };
    assert!(wait_bool(b.invalidate(&k)));
    assert!(!wait_bool(lease.store(&blob("stale"))), "written over the key's invalidation");
    assert_eq!(read(&s, "f6", &k), "compute");

    let (kt, ku) = (Key::from("tagged t"), Key::from("tagged u"));
    let Remote::Compute(lt) = wait(&a.fetch(&kt)) else { panic!("a computes") };
    let Remote::Compute(lu) = wait(&a.fetch(&ku)) else { panic!("a computes") };
    assert!(wait_bool(b.invalidate_tag("t")));
    assert!(!wait_bool(lt.store(&tagged("stale", &["t"]))), "written over its tag's invalidation");
    assert!(wait_bool(lu.store(&tagged("fresh", &["u"]))), "another tag's invalidation stopped the write");
    assert_eq!(read(&s, "f6", &kt), "compute");
    assert_eq!(read(&s, "f6", &ku), "fresh");

    let kc = Key::from("cleared");
    let Remote::Compute(lease) = wait(&a.fetch(&kc)) else { panic!("a computes") };
    assert!(wait_bool(b.clear()));
    assert!(!wait_bool(lease.store(&blob("stale"))), "written over a clear");
    assert_eq!(read(&s, "f6", &kc), "compute");
}

/// Item 6: after an invalidation of a key (or a clear) that reached Redis while the key was
/// being computed, a process asking for the key computes it afresh instead of waiting for the
/// stale computation; a process that was already waiting gets that computation's value, not
/// stored (as on the local tier).
#[test]
fn after_an_invalidation_the_next_caller_computes_afresh_and_earlier_waiters_get_the_old_value() {
    let s = Server::start();
    let (a, b, c) = (tier(&s, "f6t", |_| {}), tier(&s, "f6t", |_| {}), tier(&s, "f6t", |_| {}));
    for (i, invalidate) in [|t: &SharedTier, k: &Key| t.invalidate(k), |t: &SharedTier, _: &Key| t.clear()]
        .into_iter()
        .enumerate()
    {
        let k = Key::from(i as i64);
        let Remote::Compute(old) = wait(&a.fetch(&k)) else { panic!("a computes") };
        let waiting = b.fetch(&k);
        s.until(|| b.stats().remote_waits == i as u64 + 1);
        assert!(wait_bool(invalidate(&c, &k)));
        let Remote::Compute(fresh) = wait(&c.fetch(&k)) else { panic!("c waits for the stale computation") };
        assert!(!wait_bool(old.store(&blob("old"))));
        assert_eq!(payload(wait(&waiting)), "nocache", "b, waiting before, gets the old value unstored");
        assert!(wait_bool(fresh.store(&blob("fresh"))));
        assert_eq!(read(&s, "f6t", &k), "fresh");
    }
}

/// Item 6, through caches: the computing process's callers still get their value; Redis does
/// not keep it, so a process that starts later computes the key afresh.
#[test]
fn the_callers_get_a_value_whose_write_an_invalidation_refused() {
    let s = Server::start();
    let (a, b) = (shared_cache(&s, "f6c"), shared_cache(&s, "f6c"));
    let k = Key::from("k");
    let (gate, (started_tx, started_rx)) = (Gate::default(), std::sync::mpsc::channel());
    let leader = {
        let (a, k, gate) = (a.clone(), k.clone(), gate.clone());
        support::start(move || {
            a.get_or_compute(k, || {
                started_tx.send(()).unwrap();
                gate.wait();
                "old".to_string()
            })
        })
    };
    started_rx.recv().unwrap();
    assert!(wait_bool(b.shared().unwrap().invalidate(&k)));
    gate.open();
    assert_eq!(support::finish("the computing caller", leader), "old");
    let late = shared_cache(&s, "f6c");
    assert_eq!(late.get_or_compute(k, || "new".to_string()), "new", "Redis kept the pre-invalidation value");
}

/// Item 7: the TLS settings are checked when the cache is configured, each error naming its
/// setting: `#insecure` (refused: certificates are always checked), files that are missing,
/// not PEM, a key that is not the certificate's, a certificate without its key, TLS files
/// with a `redis://` URL.
#[test]
fn tls_settings_are_checked_at_configure_time() {
    let certs = Certs::make("configure");
    let tls = "rediss://127.0.0.1:1";
    let setting =
        |settings: SharedSettings| start("t", settings, Duration::from_secs(1)).err().map(|e| e.setting);
    let e = start("t", SharedSettings::new("rediss://:pw@127.0.0.1:1/#insecure"), Duration::from_secs(1))
        .err()
        .expect("#insecure refused at configure time");
    assert_eq!(e.setting, "redis_url");
    assert!(e.to_string().contains("#insecure") && !e.to_string().contains("pw"), "{e}");

    let (ca, cert, key) = (certs.path("ca.pem"), certs.path("client.pem"), certs.path("client.key"));
    let garbage = certs.path("garbage.pem");
    std::fs::write(&garbage, "not a PEM file").unwrap();
    let missing = certs.path("missing.pem");
    assert_eq!(setting(SharedSettings::new(tls).tls_ca_file(&missing)), Some("tls_ca_file"));
    assert_eq!(setting(SharedSettings::new(tls).tls_ca_file(&garbage)), Some("tls_ca_file"));
    assert_eq!(
        setting(SharedSettings::new(tls).tls_ca_file(&ca).tls_client_cert(&garbage, &key)),
        Some("tls_cert_file")
    );
    assert_eq!(setting(SharedSettings::new(tls).tls_client_cert(&cert, &missing)), Some("tls_key_file"));
    assert_eq!(setting(SharedSettings::new(tls).tls_client_cert(&cert, &garbage)), Some("tls_key_file"));
    let not_its_key = certs.path("server.key");
    assert_eq!(setting(SharedSettings::new(tls).tls_client_cert(&cert, &not_its_key)), Some("tls_key_file"));
    let mut alone = SharedSettings::new(tls);
    alone.tls_cert_file = Some(cert.clone());
    assert_eq!(setting(alone), Some("tls_key_file"));
    assert_eq!(setting(SharedSettings::new("redis://127.0.0.1:1").tls_ca_file(&ca)), Some("tls_ca_file"));
    assert_eq!(setting(SharedSettings::new(tls).tls_ca_file(&ca).tls_client_cert(&cert, &key)), None);
    let text = format!("{:?}", SharedSettings::new(tls).tls_client_cert(&cert, &key));
    assert!(text.contains("client.key"), "the paths are shown: {text}");
}

/// Item 7: a real TLS server with a private CA: trusted through `tls_ca_file` (not without
/// it), and with mutual TLS, reached only with the client certificate.
#[test]
fn tls_with_a_private_ca_and_a_client_certificate() {
    let certs = Certs::make("connect");
    let (ca, cert, key) = (certs.path("ca.pem"), certs.path("client.pem"), certs.path("client.key"));
    let reported = |settings: SharedSettings| {
        let events = Arc::new(Mutex::new(Vec::<String>::new()));
        let log = events.clone();
        let listener: Listener = Arc::new(move |e: &Event| match e {
            Event::SharedDown { reason, .. } => log.lock().unwrap().push(format!("down: {reason}")),
            Event::SharedUp { .. } => log.lock().unwrap().push("up".into()),
            _ => {}
        });
        let t = start_with("tls", settings, Duration::from_secs(60), Some(listener)).unwrap();
        until("the first attempt to connect ends", || t.is_up() || !events.lock().unwrap().is_empty());
        (t, events)
    };
    let roundtrip = |a: &SharedTier, b: &SharedTier, k: &str| {
        store(a, &Key::from(k), "over TLS", &[]);
        assert_eq!(payload(wait(&b.fetch(&Key::from(k)))), "over TLS");
    };

    let s = Server::tls(&certs, false);
    let with_ca = || SharedSettings::new(s.url()).tls_ca_file(&ca);
    let (a, _) = reported(with_ca());
    // Another timeout: connections of its own.
    let (b, _) = reported(with_ca().timeout(Duration::from_millis(900)));
    assert!(a.is_up() && b.is_up(), "a CA file lets the tier trust the server");
    roundtrip(&a, &b, "k");
    let (untrusted, events) = reported(SharedSettings::new(s.url()));
    assert!(!untrusted.is_up(), "the system's roots do not trust the test CA");
    assert!(events.lock().unwrap()[0].starts_with("down"), "{:?}", events.lock().unwrap());

    let m = Server::tls(&certs, true);
    let (no_cert, events) = reported(SharedSettings::new(m.url()).tls_ca_file(&ca));
    assert!(!no_cert.is_up(), "a server that requires a client certificate refuses a client without one");
    assert!(events.lock().unwrap()[0].starts_with("down"), "{:?}", events.lock().unwrap());
    let mtls = || SharedSettings::new(m.url()).tls_ca_file(&ca).tls_client_cert(&cert, &key);
    let (a, _) = reported(mtls());
    let (b, _) = reported(mtls().timeout(Duration::from_millis(900)));
    assert!(a.is_up() && b.is_up(), "mutual TLS");
    roundtrip(&a, &b, "m");
    assert_eq!(m.cli(&["DBSIZE"]), "1");
}

/// Item 8: `computations` counts the computations that ran here; a value from Redis (or from
/// another process's completion) is a remote hit, not a computation.
#[test]
fn computations_count_what_ran_not_what_came_from_redis() {
    let s = Server::start();
    let caches: Vec<_> = (0..3).map(|_| shared_cache(&s, "f8")).collect();
    let runs = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(15));
    let key = Key::from("report");
    let callers: Vec<_> = (0..15)
        .map(|i| {
            let (c, runs, barrier, key) = (caches[i % 3].clone(), runs.clone(), barrier.clone(), key.clone());
            support::start(move || {
                barrier.wait();
                c.get_or_compute(key, || {
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    "the report".to_string()
                })
            })
        })
        .collect();
    for c in callers {
        assert_eq!(support::finish("a caller", c), "the report");
    }
    let runs = runs.load(std::sync::atomic::Ordering::SeqCst);
    let counted: u64 = caches.iter().map(|c| c.stats().computations).sum();
    let won: u64 = caches.iter().map(|c| c.shared().unwrap().stats().leases_won).sum();
    assert_eq!((runs, won), (1, 1));
    assert_eq!(counted, runs, "computations summed over the processes");
    let late = shared_cache(&s, "f8");
    assert_eq!(late.get_or_compute(key, || unreachable!("stored in Redis")), "the report");
    assert_eq!(late.stats().computations, 0, "a value read from Redis is not a computation");
    assert_eq!(late.shared().unwrap().stats().remote_hits, 1);
}

/// Item 9: the caches of a process share one command connection and one subscriber per
/// Redis, whatever their number.
#[test]
fn caches_on_one_redis_share_two_connections() {
    let s = Server::start();
    let tiers: Vec<_> = (0..10).map(|i| tier(&s, &format!("conn{i}"), |_| {})).collect();
    for (i, t) in tiers.iter().enumerate() {
        store(t, &Key::from(i as i64), "v", &[]);
    }
    // Every cache still gets its own completions and invalidations.
    let other = tier(&s, "conn3", |_| {});
    assert_eq!(payload(wait(&other.fetch(&Key::from(3i64)))), "v");
    let clients = s.cli(&["CLIENT", "LIST"]);
    let ours: Vec<&str> = clients.lines().filter(|l| !l.contains("cmd=client|list")).collect();
    assert_eq!(ours.len(), 2, "this process's connections:\n{}", ours.join("\n"));
    within("dropping the tiers", move || drop(tiers));
}

/// Item 9: a cache whose channel goes (its last cache dropped) and comes back at once is
/// subscribed again: its completions arrive.
#[test]
fn a_channel_that_goes_and_comes_back_is_subscribed() {
    let s = Server::start();
    for i in 0..20 {
        drop(tier(&s, "again", |_| {}));
        let (a, b) = (tier(&s, "again", |_| {}), tier(&s, "again", |_| {}));
        let key = Key::from(i as i64);
        let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!("a computes") };
        let waiting = b.fetch(&key);
        s.until(|| b.stats().remote_waits == 1);
        assert!(wait_bool(lease.store(&blob("v"))));
        let answer = waiting.wait_timeout(AT_ONCE).expect("the completion arrived");
        assert_eq!(payload(answer), "v", "round {i}");
    }
}
