//! The blocking driver: a [`Call`] (or a [`Lead`] nobody waits for, a refresh) stepped to its
//! end on the calling thread, which blocks while it waits. The order of the steps, which waits
//! the caller's timeout bounds (a slot, the shared tier's answer, another caller's
//! computation) and which it does not (the tier confirming a write it bounds itself), and that
//! the computation runs marked as this thread's are decided here, once, for the Rust sync
//! forms and every binding's thread; the [`Host`] runs the computation, (de)serializes, and
//! waits in its own way (a binding without its interpreter's lock, checking for interrupts).

use std::hash::Hash;
use std::time::{Duration, Instant};

use super::call::{Call, Lead, LeadStep, Outcome, Step};
use crate::error::Error;
use crate::wait::Ready;

/// What a thread that blocks on a call does for it.
pub trait Host<V> {
    /// Why the host stops early (an interrupt while it waits): the call (and its lead) is
    /// dropped, so a waiter takes the computation over.
    type Stop;

    /// Blocks until `ready` is ready: true; false: `deadline` passed first.
    fn wait(&mut self, ready: &Ready, deadline: Option<Instant>) -> Result<bool, Self::Stop>;

    /// Runs the computation (marked as running on this thread meanwhile) and says how it ended.
    fn compute(&mut self) -> Outcome<V>;

    /// A value (and its weight) from the shared tier's bytes, or why there is none.
    fn decode(&mut self, bytes: &[u8]) -> Result<(V, u64), String>;

    /// A computed value's bytes for the shared tier, or the type name and message of why there
    /// are none.
    fn encode(&mut self, value: &V) -> Result<Vec<u8>, (String, String)>;
}

impl<K, V> Call<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Steps the call to its end on this thread: its outcome, or [`Error::Timeout`] once
    /// `timeout` passed while it waited (this caller gives up alone: the others go on).
    ///
    /// ```
    /// use std::time::Instant;
    /// use coopcache::{Cache, CallOptions, Caller, Host, Outcome, Ready};
    ///
    /// struct Answer;
    /// impl Host<u64> for Answer {
    ///     type Stop = std::convert::Infallible;
    ///     fn wait(&mut self, ready: &Ready, deadline: Option<Instant>) -> Result<bool, Self::Stop> {
    ///         Ok(ready.wait_deadline(deadline).is_some())
    ///     }
    ///     fn compute(&mut self) -> Outcome<u64> {
    ///         Outcome::Store { value: 42, weight: 0 }
    ///     }
    ///     fn decode(&mut self, _: &[u8]) -> Result<(u64, u64), String> {
    ///         Err("no shared tier".into())
    ///     }
    ///     fn encode(&mut self, _: &u64) -> Result<Vec<u8>, (String, String)> {
    ///         Err(("none".into(), "no shared tier".into()))
    ///     }
    /// }
    ///
    /// let cache: Cache<&str, u64> = Cache::builder().build().unwrap();
    /// let call = cache.call("answer", &CallOptions::new(), Caller::Blocking);
    /// assert_eq!(call.block(&mut Answer, None).unwrap().unwrap(), 42);
    /// ```
    pub fn block<H: Host<V>>(
        mut self,
        host: &mut H,
        timeout: Option<Duration>,
    ) -> Result<Result<V, Error>, H::Stop> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let ready = match self.step() {
                Step::Done(r) => return Ok(r),
                Step::Wait(ready) => host.wait(&ready, deadline)?,
                Step::Lead(mut lead) => lead.block(host, deadline)?,
            };
            if !ready {
                return Ok(Err(Error::Timeout(timeout.unwrap_or_default())));
            }
        }
    }
}

impl<K, V> Lead<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Steps the lead to its end on this thread (a refresh: `deadline` None). False:
    /// `deadline` passed while it waited for a slot or the shared tier's answer; drop the lead
    /// then (a waiter takes over).
    pub fn block<H: Host<V>>(&mut self, host: &mut H, deadline: Option<Instant>) -> Result<bool, H::Stop> {
        loop {
            match self.step() {
                LeadStep::Wait(ready) => {
                    if !host.wait(&ready, deadline)? {
                        return Ok(false);
                    }
                }
                // The tier bounds its confirmation itself: a caller past its timeout waits.
                LeadStep::Confirm(ready) => drop(host.wait(&ready, None)?),
                LeadStep::Decode(bytes) => {
                    let value = host.decode(&bytes);
                    self.decoded(value);
                }
                LeadStep::Encode(value) => {
                    let bytes = host.encode(&value);
                    self.encoded(bytes);
                }
                LeadStep::Compute => {
                    let outcome = {
                        let _computing = self.enter();
                        host.compute()
                    };
                    self.computed(outcome);
                }
                LeadStep::Done => return Ok(true),
            }
        }
    }
}
