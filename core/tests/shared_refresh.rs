//! Refresh ahead across processes, against a real `redis-server` on loopback: one refresh of a
//! key for the whole fleet. Each cache with a shared tier of its own stands for a process; they
//! share one manual clock, as processes share the wall clock.
#![cfg(all(feature = "redis", feature = "json"))]

use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use coopcache::shared::{SharedSettings, SharedTier};
use coopcache::{Cache, CallOptions, Caller, Clock, Computed, JsonCodec, Key, Lead, LeadStep, Outcome};

mod support;
use support::redis::Server;

const AFTER: Duration = Duration::from_secs(60);

fn process(s: &Server, clock: &Clock) -> Cache<Key, String> {
    let c = Cache::builder()
        .name("rf")
        .clock(clock.clone())
        .refresh_after(AFTER)
        .shared(SharedSettings::new(s.url()), JsonCodec)
        .build()
        .unwrap();
    s.until(|| c.shared().is_some_and(SharedTier::is_up));
    c
}

#[test]
fn a_value_due_in_every_process_is_refreshed_once_for_the_fleet() {
    let s = Server::start();
    let clock = Clock::manual();
    let fleet: Vec<_> = (0..4).map(|_| process(&s, &clock)).collect();
    let key = Key::from("report");
    assert_eq!(fleet[0].get_or_compute(key.clone(), || "v1".into()), "v1");
    for p in &fleet[1..] {
        assert_eq!(p.get_or_compute(key.clone(), || unreachable!("in Redis")), "v1");
    }
    // A process that reads the value half-way: its copy falls due later than the others'.
    clock.advance(AFTER / 2);
    let late = process(&s, &clock);
    assert_eq!(late.get_or_compute(key.clone(), || unreachable!("in Redis")), "v1");
    clock.advance(AFTER / 2);

    // Due in every process of the fleet at once: one of them recomputes it, the others wait
    // for its value (the refreshing callers return the new value).
    let runs = AtomicU32::new(0);
    let barrier = Barrier::new(fleet.len());
    let waits = || fleet.iter().map(|p| p.shared().unwrap().stats().remote_waits).sum::<u64>();
    std::thread::scope(|sc| {
        let hs: Vec<_> = fleet
            .iter()
            .map(|p| {
                let (runs, barrier, key, waits, s) = (&runs, &barrier, key.clone(), &waits, &s);
                sc.spawn(move || {
                    barrier.wait();
                    p.get_or_compute(key, || {
                        runs.fetch_add(1, SeqCst);
                        s.until(|| waits() == 3);
                        "v2".to_string()
                    })
                })
            })
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap(), "v2");
        }
    });
    assert_eq!(runs.load(SeqCst), 1, "one refresh for the fleet");
    for p in &fleet {
        assert_eq!(p.get(&key).as_deref(), Some("v2"), "every process keeps the new value");
        assert_eq!(p.stats().refreshes_succeeded, 1);
    }

    // The late process's copy falls due now: another process refreshed the value lately, so
    // it reads that one instead of computing.
    clock.advance(AFTER / 2);
    assert_eq!(late.get_or_compute(key.clone(), || unreachable!("refreshed lately in Redis")), "v2");
    let (local, shared) = (late.stats(), late.shared().unwrap().stats());
    assert_eq!((local.refreshes_succeeded, local.computations, shared.leases_won), (1, 0, 0));

    // Once the value in Redis is older than refresh_after too, the next refresh computes; the
    // copies of the other processes fall due then, and they take its value from Redis.
    clock.advance(AFTER);
    let before = heard(&fleet[1]);
    assert_eq!(fleet[0].get_or_compute(key.clone(), || "v3".into()), "v3");
    s.until(|| heard(&fleet[1]) > before);
    assert_eq!(fleet[1].get(&key).as_deref(), Some("v2"), "a copy stays until its next hit");
    assert_eq!(fleet[1].get_or_compute(key.clone(), || unreachable!("refreshed lately in Redis")), "v3");
}

/// A binding's hit path (Node's) learns a call's options only after the hit handed it the
/// refresh, and sets them on the lead: the shared tier's "written lately" window is then the
/// call's `refresh_after`, not the cache's.
#[test]
fn a_refresh_asks_the_fleet_with_the_calls_refresh_after() {
    let s = Server::start();
    let clock = Clock::manual();
    let (writer, reader) = (process(&s, &clock), process(&s, &clock));
    let opts = CallOptions::new().refresh_after(AFTER / 6);
    let key = Key::from("short");
    let ok = |v: &str| Ok::<_, std::convert::Infallible>(Computed::Store(v.to_string()));
    assert_eq!(writer.compute(key.clone(), &opts, || ok("v1")).unwrap(), "v1");
    let in_redis = || -> Result<Computed<String>, std::convert::Infallible> { unreachable!("in Redis") };
    assert_eq!(reader.compute(key.clone(), &opts, in_redis).unwrap(), "v1");
    clock.advance(AFTER / 3);

    // Due by the call's 10 s, and the value in Redis is 20 s old: older than the call's
    // refresh_after (though not the cache's 60 s), so this process recomputes it.
    let (v, lead) =
        reader.hit_refresh_with(&key, &CallOptions::new(), Caller::Blocking, Clone::clone).unwrap();
    assert_eq!(v, "v1");
    let mut lead = lead.expect("due: this hit refreshes");
    lead.set_options(&opts);
    assert!(drive(lead, "v2"), "the value in Redis is older than the call's refresh_after");
    assert_eq!(reader.get(&key).as_deref(), Some("v2"));
}

/// Drives a lead as a binding does (JSON for the bytes), computing `value` if asked to;
/// returns whether it computed.
fn drive(mut lead: Box<Lead<Key, String>>, value: &str) -> bool {
    let mut computed = false;
    loop {
        match lead.step() {
            LeadStep::Wait(r) | LeadStep::Confirm(r) => drop(r.wait_deadline(None)),
            LeadStep::Compute => {
                computed = true;
                lead.computed(Outcome::Store { value: value.into(), weight: 0 });
            }
            LeadStep::Encode(v) => lead.encoded(Ok(serde_json::to_vec(&v).unwrap())),
            LeadStep::Decode(b) => lead.decoded(Ok((serde_json::from_slice(&b).unwrap(), 0))),
            LeadStep::Done => return computed,
            _ => unreachable!("no other step in this version"),
        }
    }
}

/// Bytes of the messages a process received on its channels.
fn heard(p: &Cache<Key, String>) -> u64 {
    p.shared().unwrap().stats().message_bytes
}

/// A hit as a binding makes it: the value, and the lead of its refresh if this hit starts one.
fn hit(p: &Cache<Key, String>, key: &Key) -> (String, Option<Box<Lead<Key, String>>>) {
    p.hit_refresh_with(key, &CallOptions::new(), Caller::Blocking, Clone::clone).expect("held")
}

/// A refresh's value reaches every process that holds the key, not only the ones whose copy
/// was due at that moment: each is told on the cache's channel, its older copy falls due, and
/// its next hit returns that copy at once and refreshes it from Redis, without computing. The
/// process that refreshed does not refresh again on its own message.
#[test]
fn a_refresh_reaches_every_process_that_holds_the_key() {
    let s = Server::start();
    let clock = Clock::manual();
    let (a, b) = (process(&s, &clock), process(&s, &clock));
    let key = Key::from("rates");
    let runs = AtomicU32::new(0);
    let compute = |v: &str| {
        runs.fetch_add(1, SeqCst);
        v.to_string()
    };
    assert_eq!(a.get_or_compute(key.clone(), || compute("v1")), "v1");
    clock.advance(AFTER / 2);
    assert_eq!(b.get_or_compute(key.clone(), || unreachable!("in Redis")), "v1");
    clock.advance(AFTER / 2);

    // Due in A (stored AFTER ago), not in B (AFTER / 2): A refreshes it alone.
    let (a_heard, b_heard) = (heard(&a), heard(&b));
    assert_eq!(a.get_or_compute(key.clone(), || compute("v2")), "v2");
    s.until(|| heard(&a) > a_heard && heard(&b) > b_heard);

    let (v, lead) = hit(&b, &key);
    assert_eq!(v, "v1", "B's next hit returns its copy at once");
    let lead = lead.expect("B's copy fell due when A refreshed the key");
    assert!(!drive(lead, "computed in B"), "B takes A's value from Redis");
    assert_eq!(b.get(&key).as_deref(), Some("v2"));
    let (local, shared) = (b.stats(), b.shared().unwrap().stats());
    assert_eq!((local.computations, local.refreshes_succeeded, shared.leases_won), (0, 1, 0));
    assert_eq!(runs.load(SeqCst), 2, "v1, then one refresh for the fleet");

    let (v, lead) = hit(&a, &key);
    assert_eq!(v, "v2");
    assert!(lead.is_none(), "A does not refresh again on its own message");
    assert_eq!(a.stats().refreshes_succeeded, 1);
    assert!(hit(&b, &key).1.is_none(), "B's new copy is not due");
}

/// The message a refresh sends (see the protocol's docs), as a process without a secret sends
/// it: kind, key, when the value was written (ms, big-endian).
fn announce(s: &Server, key: &Key, written: u64) {
    use std::io::Write;
    let mut msg = vec![b'F', key.as_bytes().len() as u8];
    msg.extend_from_slice(key.as_bytes());
    msg.extend_from_slice(&written.to_be_bytes());
    let mut cli = std::process::Command::new("redis-cli")
        .args(["-p", &s.port.to_string(), "-x", "PUBLISH", "coopcache:rf"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    cli.stdin.take().unwrap().write_all(&msg).unwrap();
    assert!(cli.wait().unwrap().success());
}

/// A refresh's message that arrives after the process has that value or a newer one (it took
/// it, or computed one since) changes nothing; one about a value newer than the copy makes it
/// due; one that arrives while the copy is being refreshed leaves that refresh the only one.
#[test]
fn a_late_refresh_message_changes_nothing() {
    let s = Server::start();
    let clock = Clock::manual();
    let b = process(&s, &clock);
    let key = Key::from("late");
    let ms = || clock.now().as_millis() as u64;
    clock.advance(AFTER); // a wall clock long past 0
    assert_eq!(b.get_or_compute(key.clone(), || "v1".into()), "v1");
    let stored = ms();
    clock.advance(AFTER / 4);

    for written in [stored - 1, stored] {
        let before = heard(&b);
        announce(&s, &key, written);
        s.until(|| heard(&b) > before);
        assert!(hit(&b, &key).1.is_none(), "a message about a value written at {written} changed the copy");
    }
    assert_eq!(b.stats().stale_served, 0);

    let before = heard(&b);
    announce(&s, &key, ms());
    s.until(|| heard(&b) > before);
    let (v, lead) = hit(&b, &key);
    assert_eq!(v, "v1");
    let lead = lead.expect("a copy older than the announced value falls due");

    // While that refresh runs, another message starts no second one.
    let before = heard(&b);
    announce(&s, &key, ms() + 1);
    s.until(|| heard(&b) > before);
    assert!(hit(&b, &key).1.is_none(), "one refresh at a time");
    assert!(!drive(lead, "v2"), "the value in Redis was written lately (this one's): taken");
    assert_eq!(b.stats().refreshes_succeeded, 1);
}
