//! Refresh ahead across processes, against a real `redis-server` on loopback: one refresh of a
//! key for the whole fleet. Each cache with a shared tier of its own stands for a process; they
//! share one manual clock, as processes share the wall clock.
#![cfg(all(feature = "redis", feature = "json"))]

use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use coopcache::shared::{SharedSettings, SharedTier};
use coopcache::{Cache, CallOptions, Caller, Clock, Computed, JsonCodec, Key, LeadStep, Outcome};

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

    // Once the value in Redis is older than refresh_after too, the next refresh computes.
    clock.advance(AFTER);
    assert_eq!(fleet[0].get_or_compute(key.clone(), || "v3".into()), "v3");
    assert_eq!(fleet[1].get(&key).as_deref(), Some("v2"), "a refresh is not pushed to other processes");
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
    let mut computed = false;
    loop {
        match lead.step() {
            LeadStep::Wait(r) | LeadStep::Confirm(r) => drop(r.wait_deadline(None)),
            LeadStep::Compute => {
                computed = true;
                lead.computed(Outcome::Store { value: "v2".into(), weight: 0 });
            }
            LeadStep::Encode(v) => lead.encoded(Ok(serde_json::to_vec(&v).unwrap())),
            LeadStep::Decode(b) => lead.decoded(Ok((serde_json::from_slice(&b).unwrap(), 0))),
            LeadStep::Done => break,
            _ => unreachable!("no other step in this version"),
        }
    }
    assert!(computed, "the value in Redis is older than the call's refresh_after");
    assert_eq!(reader.get(&key).as_deref(), Some("v2"));
}
