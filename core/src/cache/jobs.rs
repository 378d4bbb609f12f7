//! Calls driven by callbacks: a table of numbered misses ([`Jobs`]) for a binding whose host
//! never blocks (Node's event loop). The binding numbers each miss, hands the table its
//! [`Call`], and does only what the table's [`Action`]s ask of it (settle the caller, run the
//! user's function, decode or encode a value); the table drives the call and its [`Lead`],
//! waits through [`Ready`] callbacks that queue the job, and says when a job is over.
//!
//! A callback may fire on any thread: it queues the job and calls the binding's `wake`, which
//! must get the host thread to call [`Jobs::drain`]. Everything else runs on the host thread.
//! What marks a computation as running on the host thread (its synchronous part) is bound to
//! that thread, so it is kept apart from the table, in an [`Entered`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use super::call::{Call, Lead, LeadStep, Outcome, Step};
use super::many::{Batch, BatchStep};
use crate::error::Error;
use crate::flight::{Computing, FlightId, Frame};
use crate::sync::{AtomicU32, Mutex, Ordering::Relaxed};
use crate::wait::Ready;

/// What the binding does for a job.
pub enum Do<V> {
    /// Settle the caller with this outcome.
    Settle(Result<V, Error>),
    /// Run the user's function, then report it with [`Jobs::computed`] (its synchronous part
    /// between [`Entered::enter`] and [`Entered::exit`]).
    Compute,
    /// Deserialize [`Jobs::payload`], then report it with [`Jobs::decoded`].
    Decode,
    /// Serialize this value, then report it with [`Jobs::encoded`].
    Encode(V),
    /// Nothing (the caller gave up before): the job is over.
    Gone,
    /// Call the batch's loader with the keys at these indices (of the keys given), its
    /// synchronous part between [`Entered::enter`] and [`Entered::exit`], then report it with
    /// [`Jobs::loaded`].
    Load(Vec<usize>),
    /// Settle the batch's caller with every key's outcome, in the order given.
    SettleMany(Vec<Result<V, Error>>),
    /// Settle the caller with the outcome of this other job's caller, which waits for the same
    /// flight (see [`Jobs::start_patient`]); the job is over.
    Follow(u64),
}

/// One thing the binding does: `what` for job `job`; `last`: the job is over after it.
pub struct Action<V> {
    /// The job's number.
    pub job: u64,
    /// What to do.
    pub what: Do<V>,
    /// Whether this is the job's last action (the binding forgets the job).
    pub last: bool,
}

/// What a callback queues for the host thread.
enum Note {
    /// Something a job waits for is ready.
    Ready(u64),
    /// Every caller of the job's computation gave up.
    Abandoned(u64),
}

/// The queue callbacks fill (on any thread), and how they wake the host thread.
struct Notes {
    queue: Mutex<Vec<Note>>,
    wake: Box<dyn Fn() + Send + Sync>,
    /// How many computations of the table run their synchronous part now (held by
    /// [`Entered`]s): [`Jobs::drain`] waits until none does.
    entered: AtomicU32,
}

impl Notes {
    fn push(&self, n: Note) {
        self.queue.lock().push(n);
        (self.wake)();
    }
}

/// Where a job's lead is.
enum LeadAt {
    /// Ready for its next step.
    Ready,
    /// Waiting for a slot or the shared tier's answer (bounded by the caller's timeout).
    Waiting(Ready),
    /// Waiting for the shared tier to confirm a write (bounded by the tier).
    Confirming(Ready),
    /// The binding computes, decodes or encodes.
    Host,
}

/// One caller's miss: its call and, while it leads, the computation's lead, which outlives a
/// caller who gives up.
struct Job<K, V> {
    call: Option<Call<K, V>>,
    /// What the call waits for (its callback queues the job).
    call_wait: Option<Ready>,
    lead: Option<Box<Lead<K, V>>>,
    lead_at: LeadAt,
    /// Bytes from the shared tier, until [`Jobs::payload`] hands them out.
    bytes: Option<Vec<u8>>,
    /// The jobs whose computations the call was made from.
    ctx: Vec<u64>,
    /// Whether a lead waiting for the shared tier keeps the host alive.
    shared: bool,
    /// Whether this job keeps the host alive now (counted in [`Jobs::holds`]).
    held: bool,
    /// A batch's job: its batch, and whether its loader runs in the binding.
    batch: Option<(Batch<K, V>, bool)>,
    /// Whether the caller never gives up (see [`Jobs::start_patient`]).
    patient: bool,
    /// The flight other patient callers follow this job's caller for (see [`Followed`]).
    followed: Option<FlightId>,
}

impl<K, V> Job<K, V> {
    /// A job made from inside the computations of the jobs `ctx`, with nothing under way: each
    /// start sets what it drives (its call, lead or batch) over it, so the other fields' first
    /// values are written here alone.
    fn new(ctx: Vec<u64>, shared: bool) -> Self {
        Job {
            call: None,
            call_wait: None,
            lead: None,
            lead_at: LeadAt::Ready,
            bytes: None,
            ctx,
            shared,
            held: false,
            batch: None,
            patient: false,
            followed: None,
        }
    }

    /// Whether the job should keep the host alive now (a lead waiting for the shared tier).
    fn holds(&self) -> bool {
        self.shared
            && self.lead.is_some()
            && matches!(self.lead_at, LeadAt::Waiting(_) | LeadAt::Confirming(_))
    }
}

/// Job numbers (distinct integers from a counter) hash by one multiplication.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Ids = std::hash::BuildHasherDefault<IdHasher>;

/// For each flight, the patient job whose caller others follow for it: one that waits for it
/// from outside every computation and will get its outcome, whatever comes (it never gives up).
type Followed = HashMap<FlightId, u64, Ids>;

/// Job `id`'s caller no longer waits for flight `f`: nobody follows it for that flight.
fn unfollow(followed: &mut Followed, f: FlightId, id: u64) {
    if followed.get(&f) == Some(&id) {
        followed.remove(&f);
    }
}

/// The misses of one host thread, by number; see the module docs.
///
/// ```
/// use coopcache::{Cache, CallOptions, Caller, Do, Jobs, Outcome};
///
/// let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
/// let mut jobs = Jobs::new(|| {});
/// let mut out = Vec::new();
/// jobs.start(1, cache.call(7, &CallOptions::new(), Caller::Blocking), false, Vec::new(), &mut out);
/// assert!(matches!(out[0].what, Do::Compute));
/// out.clear();
/// jobs.computed(1, Outcome::Store { value: 49, weight: 0 }, &mut out);
/// assert!(matches!(out[0].what, Do::Settle(Ok(49))) && out[0].last);
/// assert_eq!(cache.get(&7), Some(49));
/// ```
pub struct Jobs<K, V> {
    jobs: HashMap<u64, Box<Job<K, V>>, Ids>,
    notes: Arc<Notes>,
    /// How many jobs keep the host alive.
    holds: usize,
    followed: Followed,
}

impl<K, V> Jobs<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty table; `wake` is called (on any thread) when queued jobs wait for
    /// [`Jobs::drain`].
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        let notes = Arc::new(Notes {
            queue: Mutex::new(Vec::new()),
            wake: Box::new(wake),
            entered: AtomicU32::new(0),
        });
        Jobs { jobs: HashMap::default(), notes, holds: 0, followed: HashMap::default() }
    }

    /// Starts job `id` with its call, made from inside the computations of the jobs `ctx`;
    /// `shared`: a lead waiting for the shared tier keeps the host alive ([`Jobs::holds`]).
    pub fn start(
        &mut self,
        id: u64,
        call: Call<K, V>,
        shared: bool,
        ctx: Vec<u64>,
        out: &mut Vec<Action<V>>,
    ) {
        self.start_call(id, call, shared, ctx, false, out);
    }

    /// [`Jobs::start`] for a caller that never gives up (it has no timeout and no way to be
    /// cancelled: the binding never calls [`Jobs::give_up`] for it). When its call waits, from
    /// outside every computation, for a flight that another patient job's caller already
    /// waits for, the job ends at once with [`Do::Follow`] of that job: both get the flight's
    /// outcome, so the binding settles the two callers with one outcome (a JS promise they
    /// share) and keeps no waiter, callback or job for the second. A caller inside a
    /// computation never follows: its wait is a record of the deadlock checks.
    pub fn start_patient(&mut self, id: u64, call: Call<K, V>, shared: bool, out: &mut Vec<Action<V>>) {
        self.start_call(id, call, shared, Vec::new(), true, out);
    }

    fn start_call(
        &mut self,
        id: u64,
        call: Call<K, V>,
        shared: bool,
        ctx: Vec<u64>,
        patient: bool,
        out: &mut Vec<Action<V>>,
    ) {
        self.begin(id, Job { call: Some(call), patient, ..Job::new(ctx, shared) }, out);
    }

    /// Starts job `id` with a batch (see [`Batch`]), made from inside the computations of the
    /// jobs `ctx`: its actions are [`Do::Load`] (as often as keys are left to load) and, last,
    /// [`Do::SettleMany`].
    pub fn start_batch(&mut self, id: u64, batch: Batch<K, V>, ctx: Vec<u64>, out: &mut Vec<Action<V>>) {
        self.begin(id, Job { batch: Some((batch, false)), ..Job::new(ctx, false) }, out);
    }

    /// Reports the outcome of a batch's loader (see [`Batch::loaded`]).
    pub fn loaded(&mut self, id: u64, result: Result<HashMap<K, (V, u64)>, Error>, out: &mut Vec<Action<V>>) {
        if let Some((batch, loading @ true)) = self.jobs.get_mut(&id).and_then(|j| j.batch.as_mut()) {
            batch.loaded(result);
            *loading = false;
        }
        self.advance(id, out);
    }

    /// Starts job `id` with a lead nobody waits for: the refresh [`Cache::hit_refresh_with`]
    /// handed out (the hit has its value already). Its actions are the lead's (compute, and in
    /// shared mode encode); its last is [`Do::Gone`].
    ///
    /// [`Cache::hit_refresh_with`]: super::Cache::hit_refresh_with
    pub fn start_lead(&mut self, id: u64, lead: Box<Lead<K, V>>, shared: bool, out: &mut Vec<Action<V>>) {
        self.begin(id, Job { lead: Some(lead), ..Job::new(Vec::new(), shared) }, out);
    }

    /// Adds job `id` and steps it (see [`Jobs::advance`]).
    fn begin(&mut self, id: u64, job: Job<K, V>, out: &mut Vec<Action<V>>) {
        self.jobs.insert(id, Box::new(job));
        self.advance(id, out);
    }

    /// Steps job `id` as far as it goes without the binding, appending what the binding does.
    fn advance(&mut self, id: u64, out: &mut Vec<Action<V>>) {
        let Some(job) = self.jobs.get(&id) else { return };
        // Each context job's computation: its lead's, or the keys its batch is loading.
        let frames: Vec<Frame> = job.ctx.iter().flat_map(|&l| self.frames(l)).collect();
        // The call was made from inside these computations: the core's checks see them.
        let _inside: Vec<Computing> = frames.into_iter().map(Frame::enter).collect();
        let first = out.len();
        let notes = &self.notes;
        let job = self.jobs.get_mut(&id).expect("looked up above");
        let act = |what| Action { job: id, what, last: false };
        while let Some((batch, false)) = job.batch.as_mut() {
            if job.call_wait.as_ref().is_some_and(|p| p.try_get().is_none()) {
                break;
            }
            job.call_wait = None;
            match batch.step() {
                BatchStep::Load(at) => {
                    job.batch.as_mut().expect("a batch").1 = true;
                    out.push(act(Do::Load(at)));
                }
                BatchStep::Wait(p) => job.call_wait = Some(notify(notes, p, id)),
                BatchStep::Done(values) => {
                    job.batch = None;
                    out.push(act(Do::SettleMany(values)));
                }
            }
        }
        loop {
            // The lead first: its steps end the flight the call waits for.
            if let Some(lead) = job.lead.as_mut() {
                let ready = match &job.lead_at {
                    LeadAt::Ready => true,
                    LeadAt::Waiting(p) | LeadAt::Confirming(p) => p.try_get().is_some(),
                    LeadAt::Host => false,
                };
                if ready {
                    job.lead_at = match lead.step() {
                        LeadStep::Wait(p) => LeadAt::Waiting(notify(notes, p, id)),
                        LeadStep::Confirm(p) => LeadAt::Confirming(notify(notes, p, id)),
                        LeadStep::Compute => {
                            out.push(act(Do::Compute));
                            LeadAt::Host
                        }
                        LeadStep::Decode(bytes) => {
                            job.bytes = Some(bytes);
                            out.push(act(Do::Decode));
                            LeadAt::Host
                        }
                        LeadStep::Encode(v) => {
                            out.push(act(Do::Encode(v)));
                            LeadAt::Host
                        }
                        LeadStep::Done => {
                            job.lead = None;
                            LeadAt::Ready
                        }
                    };
                }
            }
            let Some(call) = job.call.as_mut() else { break };
            if job.call_wait.as_ref().is_some_and(|p| p.try_get().is_none()) {
                break;
            }
            match call.step() {
                Step::Done(r) => {
                    (job.call, job.call_wait) = (None, None);
                    if let Some(f) = job.followed.take() {
                        unfollow(&mut self.followed, f, id);
                    }
                    out.push(act(Do::Settle(r)));
                    break;
                }
                Step::Wait(p) => {
                    let plain = call.waiting().filter(|w| w.is_plain()).map(|w| w.id());
                    if let Some(f) = plain.filter(|_| job.patient) {
                        match self.followed.get(&f) {
                            Some(&other) if other != id && job.lead.is_none() => {
                                (job.call, job.call_wait) = (None, None);
                                out.push(act(Do::Follow(other)));
                                break;
                            }
                            Some(_) => {}
                            None => {
                                if let Some(before) = job.followed.replace(f) {
                                    unfollow(&mut self.followed, before, id);
                                }
                                self.followed.insert(f, id);
                            }
                        }
                    }
                    job.call_wait = Some(notify(notes, p, id));
                    break;
                }
                Step::Lead(lead) => {
                    let notes = notes.clone();
                    lead.on_abandoned(move || notes.push(Note::Abandoned(id)));
                    (job.lead, job.lead_at, job.call_wait) = (Some(lead), LeadAt::Ready, None);
                }
            }
        }
        self.settle(id, first, out);
    }

    /// Counts the job in [`Jobs::holds`] if it needs it, and forgets the job once it has
    /// neither a call nor a lead (its last action, from `first` on in `out`, says so).
    fn settle(&mut self, id: u64, first: usize, out: &mut Vec<Action<V>>) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let done = job.call.is_none() && job.lead.is_none() && job.batch.is_none();
        let held = job.holds() && !done;
        if held != job.held {
            job.held = held;
            match held {
                true => self.holds += 1,
                false => self.holds -= 1,
            }
        }
        if done {
            self.jobs.remove(&id);
            match out[first..].last_mut() {
                Some(a) => a.last = true,
                None => out.push(Action { job: id, what: Do::Gone, last: true }),
            }
        }
    }

    /// Drives the jobs that callbacks queued, unless a computation's synchronous part runs now
    /// (those steps would run inside it: call again after [`Entered::exit`]).
    pub fn drain(&mut self, out: &mut Vec<Action<V>>) {
        while self.notes.entered.load(Relaxed) == 0 {
            let notes = std::mem::take(&mut *self.notes.queue.lock());
            if notes.is_empty() {
                break;
            }
            for n in notes {
                match n {
                    Note::Ready(id) => self.advance(id, out),
                    // Nobody waits any more: the computation goes on in the host, unheard.
                    Note::Abandoned(id) => self.abandon(id, out),
                }
            }
        }
    }

    /// Drops the job's lead (the host stopped its computation: a waiter takes over), and
    /// steps the job's call on if it has one.
    pub fn abandon(&mut self, id: u64, out: &mut Vec<Action<V>>) {
        if let Some(job) = self.jobs.get_mut(&id) {
            (job.lead, job.lead_at, job.bytes) = (None, LeadAt::Ready, None);
            self.advance(id, out);
        }
    }

    /// The frames of the job's computation, or of the keys its batch loads: for a host whose
    /// computations go on after their synchronous part, to carry in their context.
    pub fn frames(&self, id: u64) -> Vec<Frame> {
        let Some(job) = self.jobs.get(&id) else { return Vec::new() };
        let lead = job.lead.as_ref().map(|l| l.frame());
        lead.into_iter().chain(job.batch.iter().flat_map(|(b, _)| b.frames())).collect()
    }

    /// Whether a job keeps the host alive now (a lead waiting for the shared tier).
    pub fn holds(&self) -> bool {
        self.holds > 0
    }

    /// The job's caller gives up after `timeout`: its call is dropped, and its lead too while
    /// it waits for a slot or the shared tier (a waiter takes over); a computation goes on for
    /// the others. A leader whose write the shared tier is confirming waits for that (the tier
    /// bounds it).
    pub fn give_up(&mut self, id: u64, timeout: Duration, out: &mut Vec<Action<V>>) {
        let Some(j) = self.jobs.get_mut(&id) else { return };
        let confirming = j.lead.is_some() && matches!(j.lead_at, LeadAt::Confirming(_));
        if j.call.is_some() && !confirming {
            (j.call, j.call_wait) = (None, None);
            if let Some(f) = j.followed.take() {
                unfollow(&mut self.followed, f, id);
            }
            if matches!(j.lead_at, LeadAt::Waiting(_)) {
                (j.lead, j.lead_at) = (None, LeadAt::Ready);
            }
            let first = out.len();
            out.push(Action { job: id, what: Do::Settle(Err(Error::Timeout(timeout))), last: false });
            self.settle(id, first, out);
        }
    }

    /// An empty [`Entered`] for this table's computations, for the thread that runs them.
    pub fn entered(&self) -> Entered {
        Entered { notes: Arc::clone(&self.notes), computing: Vec::new() }
    }

    /// The bytes from the shared tier that a [`Do::Decode`] asks to deserialize.
    pub fn payload(&mut self, id: u64) -> Option<Vec<u8>> {
        self.jobs.get_mut(&id)?.bytes.take()
    }

    /// Reports how the job's computation ended. A batch's loader that failed is reported here
    /// too, as a computation is (every caller of its keys gets the error); its values go to
    /// [`Jobs::loaded`].
    pub fn computed(&mut self, id: u64, outcome: Outcome<V>, out: &mut Vec<Action<V>>) {
        if let Some(lead) = self.lead_host(id) {
            lead.computed(outcome);
        } else if let Outcome::Failed { error, .. } = outcome {
            return self.loaded(id, Err(error), out);
        }
        self.advance(id, out);
    }

    /// Reports the value (and its weight) deserialized from [`Jobs::payload`], or why it could
    /// not be (the value is then computed here).
    pub fn decoded(&mut self, id: u64, value: Result<(V, u64), String>, out: &mut Vec<Action<V>>) {
        if let Some(lead) = self.lead_host(id) {
            lead.decoded(value);
        }
        self.advance(id, out);
    }

    /// Reports the bytes of the value a [`Do::Encode`] asked to serialize, or the type name and
    /// message of why it could not be (the other processes are told so).
    pub fn encoded(&mut self, id: u64, bytes: Result<Vec<u8>, (String, String)>, out: &mut Vec<Action<V>>) {
        if let Some(lead) = self.lead_host(id) {
            lead.encoded(bytes);
        }
        self.advance(id, out);
    }

    /// The job's lead, if it waits for the binding.
    fn lead_host(&mut self, id: u64) -> Option<&mut Lead<K, V>> {
        let j = self.jobs.get_mut(&id)?;
        match j.lead_at {
            LeadAt::Host => {
                j.lead_at = LeadAt::Ready;
                j.lead.as_deref_mut()
            }
            _ => None,
        }
    }
}

/// Queues job `id` when `p` is ready (at once if it is), and keeps `p` to wait on.
fn notify(notes: &Arc<Notes>, p: Ready, id: u64) -> Ready {
    let notes = notes.clone();
    p.on_ready(move |()| notes.push(Note::Ready(id)));
    p
}

/// The computations of a [`Jobs`] table whose synchronous part runs now on this thread
/// ([`Entered::enter`] … [`Entered::exit`]), innermost last: the core's recursion checks see
/// them, and the table's [`Jobs::drain`] waits until none runs. Bound to its thread (it marks
/// this thread, and is not `Send`), so it is kept apart from the table, which may move: a
/// binding whose host thread runs the user's functions (Node) keeps one beside its table (made
/// by [`Jobs::entered`]); one that never enters a computation (Python) needs none.
pub struct Entered {
    notes: Arc<Notes>,
    computing: Vec<(u64, Computing)>,
}

impl Entered {
    /// Marks job `id`'s computation (a batch's: its keys being loaded) as running on this
    /// thread until [`Entered::exit`] (the synchronous part of the user's function). `jobs` is
    /// the table this was made by.
    pub fn enter<K, V>(&mut self, jobs: &Jobs<K, V>, id: u64)
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        debug_assert!(Arc::ptr_eq(&self.notes, &jobs.notes), "an Entered is used with its own table");
        let Some(job) = jobs.jobs.get(&id) else { return };
        let before = self.computing.len();
        if let Some(lead) = &job.lead {
            self.computing.push((id, lead.enter()));
        }
        if let Some((batch, _)) = &job.batch {
            self.computing.extend(batch.enter().into_iter().map(|c| (id, c)));
        }
        self.notes.entered.fetch_add((self.computing.len() - before) as u32, Relaxed);
    }

    /// Ends what [`Entered::enter`] started for job `id`.
    pub fn exit(&mut self, id: u64) {
        let before = self.computing.len();
        while let Some(pos) = self.computing.iter().rposition(|(j, _)| *j == id) {
            drop(self.computing.remove(pos));
        }
        self.notes.entered.fetch_sub((before - self.computing.len()) as u32, Relaxed);
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.notes.entered.fetch_sub(self.computing.len() as u32, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Cache, CallOptions};
    use crate::flight::Caller;

    /// A cache, an empty table, and the actions it asks for.
    type Fixture = (Cache<u32, u32>, Jobs<u32, u32>, Vec<Action<u32>>);

    fn jobs() -> Fixture {
        (Cache::builder().build().unwrap(), Jobs::new(|| {}), Vec::new())
    }

    fn call(c: &Cache<u32, u32>, key: u32) -> Call<u32, u32> {
        c.call(key, &CallOptions::new(), Caller::Blocking)
    }

    /// The table holds nothing bound to a thread (what marks a running computation is in an
    /// [`Entered`]), so a binding may keep it in an object that moves between threads, with no
    /// `unsafe impl` of its own (Python's jobs table).
    #[test]
    fn a_table_may_move_between_threads() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<Jobs<u32, u32>>();
    }

    #[test]
    fn drain_waits_while_a_computation_runs_its_synchronous_part() {
        let (c, mut jobs, mut out) = jobs();
        jobs.start(1, call(&c, 5), false, Vec::new(), &mut out);
        jobs.start(2, call(&c, 5), false, Vec::new(), &mut out);
        jobs.start(3, call(&c, 6), false, Vec::new(), &mut out);
        out.clear();
        jobs.computed(1, Outcome::Store { value: 25, weight: 0 }, &mut out);
        out.clear();
        // Job 2 is queued; job 3's computation runs: its steps would run inside it.
        let mut inside = jobs.entered();
        inside.enter(&jobs, 3);
        jobs.drain(&mut out);
        assert!(out.is_empty(), "nothing is driven inside a computation");
        inside.exit(3);
        jobs.drain(&mut out);
        assert!(matches!(&out[..], [Action { job: 2, what: Do::Settle(Ok(25)), last: true }]));
        // An `Entered` dropped while it holds a computation lets the table drain again.
        jobs.start(4, call(&c, 7), false, Vec::new(), &mut out);
        jobs.start(5, call(&c, 7), false, Vec::new(), &mut out);
        out.clear();
        let mut inside = jobs.entered();
        inside.enter(&jobs, 3);
        jobs.computed(4, Outcome::Store { value: 49, weight: 0 }, &mut out);
        out.clear();
        jobs.drain(&mut out);
        assert!(out.is_empty());
        drop(inside);
        jobs.drain(&mut out);
        assert!(matches!(&out[..], [Action { job: 5, what: Do::Settle(Ok(49)), last: true }]));
    }

    #[test]
    fn a_waiter_is_queued_and_settled_when_the_leader_stores() {
        let (c, mut jobs, mut out) = jobs();
        jobs.start(1, call(&c, 5), false, Vec::new(), &mut out);
        jobs.start(2, call(&c, 5), false, Vec::new(), &mut out);
        assert!(matches!(&out[..], [Action { job: 1, what: Do::Compute, last: false }]));
        out.clear();
        jobs.computed(1, Outcome::Store { value: 25, weight: 0 }, &mut out);
        assert!(matches!(&out[..], [Action { job: 1, what: Do::Settle(Ok(25)), last: true }]));
        out.clear();
        jobs.drain(&mut out);
        assert!(matches!(&out[..], [Action { job: 2, what: Do::Settle(Ok(25)), last: true }]));
    }

    #[test]
    fn patient_callers_follow_the_first_of_a_flight_and_the_others_wait() {
        let (c, mut jobs, mut out) = jobs();
        jobs.start_patient(1, call(&c, 5), false, &mut out);
        jobs.start_patient(2, call(&c, 5), false, &mut out);
        jobs.start(3, call(&c, 5), false, Vec::new(), &mut out);
        assert!(matches!(
            &out[..],
            [
                Action { job: 1, what: Do::Compute, last: false },
                Action { job: 2, what: Do::Follow(1), last: true },
            ]
        ));
        assert_eq!(c.stats().coalesced, 2, "a follower waits as the others do");
        out.clear();
        jobs.computed(1, Outcome::Store { value: 25, weight: 0 }, &mut out);
        assert!(matches!(&out[..], [Action { job: 1, what: Do::Settle(Ok(25)), last: true }]));
        out.clear();
        jobs.drain(&mut out);
        assert!(matches!(&out[..], [Action { job: 3, what: Do::Settle(Ok(25)), last: true }]));
        assert!(jobs.followed.is_empty(), "job 1 is followed no more");
        out.clear();
        jobs.start_patient(4, call(&c, 6), false, &mut out);
        assert!(matches!(&out[..], [Action { job: 4, what: Do::Compute, last: false }]), "a new flight");
    }

    #[test]
    fn a_patient_caller_inside_a_computation_waits_so_a_deadlock_is_still_refused() {
        let (c, mut jobs, mut out) = jobs();
        jobs.start_patient(1, call(&c, 5), false, &mut out);
        jobs.start_patient(2, call(&c, 6), false, &mut out);
        out.clear();
        let mut inside = jobs.entered();
        // Key 6's computation asks key 5 in its synchronous part: it waits for 5 ...
        inside.enter(&jobs, 2);
        jobs.start_patient(3, call(&c, 5), false, &mut out);
        inside.exit(2);
        assert!(out.is_empty(), "it waits, and does not follow job 1");
        // ... so key 5's asking key 6 would never end.
        inside.enter(&jobs, 1);
        jobs.start_patient(4, call(&c, 6), false, &mut out);
        inside.exit(1);
        assert!(matches!(
            &out[..],
            [Action { job: 4, what: Do::Settle(Err(Error::Recursion { .. })), last: true }]
        ));
    }

    #[test]
    fn a_caller_who_gave_up_or_a_flight_that_ended_is_not_followed() {
        let (c, mut jobs, mut out) = jobs();
        jobs.start_patient(1, call(&c, 5), false, &mut out);
        jobs.start(2, call(&c, 5), false, Vec::new(), &mut out);
        jobs.give_up(1, Duration::from_millis(5), &mut out);
        out.clear();
        jobs.start_patient(3, call(&c, 5), false, &mut out);
        assert!(out.is_empty(), "job 3 waits for the computation job 1's caller left");
        jobs.start_patient(4, call(&c, 5), false, &mut out);
        assert!(matches!(&out[..], [Action { job: 4, what: Do::Follow(3), last: true }]));
        out.clear();
        jobs.computed(1, Outcome::Store { value: 25, weight: 0 }, &mut out);
        jobs.drain(&mut out);
        assert!(matches!(
            &out[..],
            [
                Action { job: 1, what: Do::Gone, last: true },
                Action { job: 2 | 3, what: Do::Settle(Ok(25)), last: true },
                Action { job: 2 | 3, what: Do::Settle(Ok(25)), last: true },
            ]
        ));
        out.clear();
        // After an invalidation a caller starts a new computation, and the old one's caller
        // is not followed for it.
        jobs.start_patient(5, call(&c, 6), false, &mut out);
        c.invalidate(&6);
        jobs.start_patient(6, call(&c, 6), false, &mut out);
        jobs.start_patient(7, call(&c, 6), false, &mut out);
        assert!(matches!(
            &out[..],
            [
                Action { job: 5, what: Do::Compute, last: false },
                Action { job: 6, what: Do::Compute, last: false },
                Action { job: 7, what: Do::Follow(6), last: true },
            ]
        ));
        out.clear();
        // A lead dropped (its computation stopped): its caller takes the key over, and is
        // followed for the new flight.
        jobs.abandon(6, &mut out);
        jobs.drain(&mut out);
        assert!(matches!(&out[..], [Action { job: 6, what: Do::Compute, last: false }]));
        out.clear();
        jobs.start_patient(8, call(&c, 6), false, &mut out);
        assert!(matches!(&out[..], [Action { job: 8, what: Do::Follow(6), last: true }]));
    }

    #[test]
    fn a_caller_who_gives_up_gets_a_timeout_and_the_computation_goes_on() {
        let (c, mut jobs, mut out) = jobs();
        jobs.start(1, call(&c, 5), false, Vec::new(), &mut out);
        out.clear();
        jobs.give_up(1, Duration::from_millis(5), &mut out);
        assert!(matches!(
            &out[..],
            [Action { job: 1, what: Do::Settle(Err(Error::Timeout(_))), last: false }]
        ));
        out.clear();
        jobs.computed(1, Outcome::Store { value: 25, weight: 0 }, &mut out);
        assert!(matches!(&out[..], [Action { job: 1, what: Do::Gone, last: true }]));
        assert_eq!(c.get(&5), Some(25));
    }

    #[test]
    fn a_detached_refresh_computes_and_ends_without_a_caller() {
        let clock = crate::clock::Clock::manual();
        let c: Cache<u32, u32> =
            Cache::builder().clock(clock.clone()).refresh_after(Duration::from_secs(10)).build().unwrap();
        let (mut jobs, mut out) = (Jobs::new(|| {}), Vec::new());
        c.insert(5, 1);
        clock.advance(Duration::from_secs(11));
        let (v, lead) = c.hit_refresh_with(&5, &CallOptions::new(), Caller::Blocking, |v| *v).unwrap();
        assert_eq!(v, 1);
        jobs.start_lead(1, lead.expect("due"), false, &mut out);
        assert!(matches!(&out[..], [Action { job: 1, what: Do::Compute, last: false }]));
        out.clear();
        jobs.computed(1, Outcome::Store { value: 2, weight: 0 }, &mut out);
        assert!(matches!(&out[..], [Action { job: 1, what: Do::Gone, last: true }]));
        assert_eq!(c.get(&5), Some(2));
        assert_eq!(c.stats().refreshes_succeeded, 1);
    }

    #[test]
    fn a_batch_loads_once_and_a_single_call_of_its_key_waits_for_it() {
        let (c, mut jobs, mut out) = jobs();
        c.insert(1, 10);
        jobs.start_batch(1, c.batch([1, 2, 3], Caller::Blocking), Vec::new(), &mut out);
        assert!(matches!(&out[..], [Action { job: 1, what: Do::Load(at), last: false }] if at == &[1, 2]));
        out.clear();
        jobs.start(2, call(&c, 2), false, Vec::new(), &mut out);
        assert!(out.is_empty(), "the single call waits for the batch's key");
        let mut inside = jobs.entered();
        inside.enter(&jobs, 1);
        jobs.start(3, call(&c, 3), false, vec![1], &mut out);
        assert!(matches!(&out[..], [Action { job: 3, what: Do::Settle(Err(Error::Recursion { .. })), .. }]));
        inside.exit(1);
        out.clear();
        jobs.loaded(1, Ok(HashMap::from([(2, (20, 0)), (3, (30, 0))])), &mut out);
        let [Action { job: 1, what: Do::SettleMany(values), last: true }] = &out[..] else {
            panic!("settled")
        };
        assert_eq!(values.iter().map(|r| *r.as_ref().unwrap()).collect::<Vec<_>>(), [10, 20, 30]);
        out.clear();
        jobs.drain(&mut out);
        assert!(matches!(&out[..], [Action { job: 2, what: Do::Settle(Ok(20)), last: true }]));
    }

    #[test]
    fn an_abandoned_lead_hands_the_key_to_a_waiter_and_frames_name_what_a_job_computes() {
        let (c, mut jobs, mut out) = jobs();
        jobs.start(1, call(&c, 5), false, Vec::new(), &mut out);
        jobs.start(2, call(&c, 5), false, Vec::new(), &mut out);
        jobs.start_batch(3, c.batch([6, 7], Caller::Blocking), Vec::new(), &mut out);
        assert_eq!(jobs.frames(1).len(), 1);
        assert!(jobs.frames(2).is_empty(), "a waiter computes nothing");
        assert_eq!(jobs.frames(3).len(), 2, "a batch's frames: the keys it loads");
        out.clear();
        jobs.abandon(1, &mut out);
        jobs.drain(&mut out);
        // The leader's caller waits on and the waiter takes the key over (or the reverse).
        assert!(matches!(&out[..], [Action { what: Do::Compute, last: false, .. }]), "one computes again");
        assert_eq!(c.stats().in_flight, 3, "key 5 again, and the batch's two");
    }

    #[test]
    fn a_call_made_inside_its_own_computation_is_refused() {
        let (c, mut jobs, mut out) = jobs();
        jobs.start(1, call(&c, 5), false, Vec::new(), &mut out);
        out.clear();
        jobs.start(2, call(&c, 5), false, vec![1], &mut out);
        assert!(matches!(
            &out[..],
            [Action { job: 2, what: Do::Settle(Err(Error::Recursion { .. })), last: true }]
        ));
    }

    #[test]
    fn a_batch_loader_asking_for_its_own_key_is_refused_after_an_await_too() {
        let (c, mut jobs, mut out) = jobs();
        jobs.start_batch(1, c.batch([1, 2], Caller::Blocking), Vec::new(), &mut out);
        out.clear();
        // Not entered: the loader's synchronous part is over, and it asks from its context.
        jobs.start(2, call(&c, 2), false, vec![1], &mut out);
        assert!(matches!(
            &out[..],
            [Action { job: 2, what: Do::Settle(Err(Error::Recursion { .. })), last: true }]
        ));
        out.clear();
        jobs.start_batch(3, c.batch([3, 1], Caller::Blocking), vec![1], &mut out);
        let [Action { job: 3, what: Do::Load(at), last: false }] = &out[..] else { panic!("loads 3") };
        assert_eq!(at, &[0]);
        out.clear();
        jobs.loaded(3, Ok(HashMap::from([(3, (30, 0))])), &mut out);
        let [Action { job: 3, what: Do::SettleMany(values), last: true }] = &out[..] else {
            panic!("settled")
        };
        assert!(matches!(values[..], [Ok(30), Err(Error::Recursion { .. })]));
    }

    #[test]
    fn a_batch_loader_that_fails_is_reported_as_a_computation() {
        let (c, mut jobs, mut out) = jobs();
        jobs.start_batch(1, c.batch([1, 2], Caller::Blocking), Vec::new(), &mut out);
        out.clear();
        jobs.computed(1, Outcome::failed(Error::computation("down"), "Error"), &mut out);
        let [Action { job: 1, what: Do::SettleMany(values), last: true }] = &out[..] else {
            panic!("settled")
        };
        assert!(values.iter().all(|r| r.as_ref().is_err_and(|e| e.to_string().contains("down"))));
        assert_eq!(c.stats().entries, 0);
    }
}
