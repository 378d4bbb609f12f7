//! The blocking driver (`Call::block`, `Lead::block`) with a host of the test's own, as a
//! binding's thread drives it: the computation runs once and marked as this thread's, a waiter
//! past its timeout or stopped by its host gives up alone, and a refresh nobody waits for
//! stores its value.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use coopcache::{Cache, CallOptions, Caller, Clock, Error, Host, Outcome, Ready};

/// A host that computes `value` (after `during`), and waits as the host says: blocking until
/// the deadline, or stopping at once.
struct Thread<'a> {
    value: u32,
    computed: u32,
    during: &'a (dyn Fn() + Sync),
    stop: bool,
}

impl<'a> Thread<'a> {
    fn new(value: u32, during: &'a (dyn Fn() + Sync)) -> Self {
        Thread { value, computed: 0, during, stop: false }
    }
}

impl Host<u32> for Thread<'_> {
    type Stop = &'static str;

    fn wait(&mut self, ready: &Ready, deadline: Option<Instant>) -> Result<bool, Self::Stop> {
        if self.stop {
            return Err("interrupted");
        }
        Ok(ready.wait_deadline(deadline).is_some())
    }

    fn compute(&mut self) -> Outcome<u32> {
        self.computed += 1;
        (self.during)();
        Outcome::Store { value: self.value, weight: 0 }
    }

    fn decode(&mut self, _: &[u8]) -> Result<(u32, u64), String> {
        unreachable!("no shared tier")
    }

    fn encode(&mut self, _: &u32) -> Result<Vec<u8>, (String, String)> {
        unreachable!("no shared tier")
    }
}

fn call(c: &Cache<&'static str, u32>) -> coopcache::Call<&'static str, u32> {
    c.call("k", &CallOptions::new(), Caller::Blocking)
}

#[test]
fn the_leader_computes_once_marked_as_this_threads_and_stores_the_value() {
    let c: Cache<&'static str, u32> = Cache::builder().build().unwrap();
    let again = || {
        let inner = call(&c).block(&mut Thread::new(2, &|| ()), None).unwrap();
        assert!(matches!(inner, Err(Error::Recursion { .. })), "its own key inside: {inner:?}");
    };
    let mut host = Thread::new(1, &again);
    assert_eq!(call(&c).block(&mut host, None).unwrap().unwrap(), 1);
    assert_eq!((host.computed, c.get(&"k")), (1, Some(1)));
}

#[test]
fn a_waiter_past_its_timeout_or_stopped_by_its_host_gives_up_alone() {
    let c: Cache<&'static str, u32> = Cache::builder().build().unwrap();
    let (computing, release) = (Barrier::new(2), Barrier::new(2));
    let during = || {
        computing.wait();
        release.wait();
    };
    std::thread::scope(|s| {
        let leader = s.spawn(|| call(&c).block(&mut Thread::new(1, &during), None).unwrap().unwrap());
        computing.wait();
        let timed_out = call(&c).block(&mut Thread::new(9, &|| ()), Some(Duration::ZERO)).unwrap();
        assert!(matches!(timed_out, Err(Error::Timeout(_))), "{timed_out:?}");
        let mut stopped = Thread::new(9, &|| ());
        stopped.stop = true;
        assert_eq!(call(&c).block(&mut stopped, None).err(), Some("interrupted"));
        release.wait();
        assert_eq!(leader.join().unwrap(), 1);
    });
    assert_eq!((c.get(&"k"), c.stats().computations), (Some(1), 1));
}

#[test]
fn a_refresh_driven_by_lead_block_replaces_the_value() {
    let clock = Clock::manual();
    let after = Duration::from_secs(60);
    let c: Cache<&'static str, u32> =
        Cache::builder().clock(clock.clone()).refresh_after(after).build().unwrap();
    assert_eq!(call(&c).block(&mut Thread::new(1, &|| ()), None).unwrap().unwrap(), 1);
    clock.advance(after);
    let (v, lead) = c.hit_refresh_with(&"k", &CallOptions::new(), Caller::Blocking, |v| *v).unwrap();
    assert_eq!(v, 1, "the hit gets the stored value at once");
    let mut host = Thread::new(2, &|| ());
    assert!(lead.expect("this hit refreshes").block(&mut host, None).unwrap());
    assert_eq!((host.computed, c.get(&"k")), (1, Some(2)));
}
