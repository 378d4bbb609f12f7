//! Which computations a caller is inside, and which flights their leaders wait for: how
//! recursion is told apart from an ordinary wait.
//!
//! A thread keeps a stack of *frames*, one per computation running on it: a synchronous
//! computation's frame lasts the whole call of the user's function; an async computation's
//! frame lasts each poll of its future, so it travels with the future, not with the thread it
//! happened to run on.
//!
//! A caller's *ancestors* are the computations its result is needed by:
//! * a blocking caller (it blocks its thread while it waits) has every frame of its thread: the
//!   thread cannot return to any of them before the wait ends;
//! * a non-blocking caller (a future) has only the async frames above the innermost synchronous
//!   one: a future polled by an executor that a synchronous computation runs (`block_on`) may be
//!   any task of that executor, not a part of the computation.
//!
//! * a blocking caller on a thread that runs an event loop (a binding says so with
//!   [`RunsExecutor`]) also has every async computation in progress on that loop
//!   ([`Frame::runs_on`]): blocking the thread stops the loop, so none of them can finish
//!   before the wait ends.
//!
//! A caller asking a key that one of its ancestors computes would wait for itself: that is
//! [`crate::Error::Recursion`]. A leader that waits, through other keys and other threads, for a
//! flight whose leader waits for it would too: each wait from inside a computation is recorded
//! (ancestor → flight waited for) and the wait that would close a cycle fails instead.

use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;

use smallvec::SmallVec;

use crate::sync::Mutex;

/// Identifies one flight (for recursion checks across a binding's own contexts).
pub type FlightId = u64;

/// Identifies one cache (for slots a nested computation may skip).
pub(crate) type CacheId = u64;

/// Identifies an executor (an event loop) that runs async computations, chosen by the binding
/// (unique among the executors alive at once).
pub type ExecutorId = u64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Sync,
    Async,
}

crate::sync::thread_local! {
    /// The computations running on this thread, innermost last.
    static FRAMES: RefCell<Vec<(Frame, Kind)>> = const { RefCell::new(Vec::new()) };
    /// The executors this thread runs (a blocking caller here stops them), innermost last.
    static EXECUTORS: RefCell<Vec<ExecutorId>> = const { RefCell::new(Vec::new()) };
}

crate::sync::global! {
    /// The async computations in progress on each executor ([`Frame::runs_on`]).
    static ON_EXECUTOR: Mutex<HashMap<ExecutorId, SmallVec<[Frame; 2]>>> = Mutex::new(HashMap::new());
}

/// How a caller waits, which decides which computations count as its own when it asks a key
/// that is being computed: asking a key one of them computes is [`crate::Error::Recursion`].
///
/// A blocking caller (it blocks its thread while it waits) is inside every computation running
/// on its thread. A non-blocking caller (a future, a callback) is inside only the async
/// computations whose poll it runs in: a task that a synchronous computation's `block_on`
/// happens to poll is not part of that computation, and waits for it.
///
/// ```
/// use coopcache::{Begin, Cache, Caller, Error};
///
/// let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
/// let Begin::Lease(lease) = cache.begin(&1).unwrap() else { unreachable!() };
/// let _computing = lease.enter(); // a synchronous computation of key 1 runs on this thread
/// assert!(matches!(cache.begin_with(&1, &[], Caller::Blocking), Err(Error::Recursion { .. })));
/// assert!(matches!(cache.begin_with(&1, &[], Caller::NonBlocking), Ok(Begin::Wait(_))));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Blocks its thread until the result arrives (sync code, a binding's blocking wait).
    Blocking,
    /// Waits without blocking its thread (a future, a callback).
    NonBlocking,
}

/// The computations a caller of kind `caller` on this thread is inside.
pub(crate) fn ancestors(caller: Caller) -> Ancestors {
    FRAMES.with(|f| {
        let frames = f.borrow();
        let from = match caller {
            Caller::Blocking => 0,
            Caller::NonBlocking => {
                frames.iter().rposition(|(_, kind)| *kind == Kind::Sync).map_or(0, |i| i + 1)
            }
        };
        let mut ancestors =
            Ancestors(frames[from..].iter().map(|(fr, _)| (fr.flight, fr.cache)).collect(), false);
        if caller == Caller::Blocking {
            EXECUTORS.with(|e| {
                let executors = e.borrow();
                if executors.is_empty() {
                    return;
                }
                let on = ON_EXECUTOR.lock();
                for frame in executors.iter().filter_map(|x| on.get(x)).flatten() {
                    ancestors.0.push((frame.flight, frame.cache));
                    ancestors.1 = true;
                }
            });
        }
        ancestors
    })
}

/// A caller's ancestors: (flight, cache) of each computation it is inside, outermost first;
/// and whether some are there only because this thread runs their event loop.
#[derive(Default)]
pub(crate) struct Ancestors(SmallVec<[(FlightId, CacheId); 2]>, bool);

impl Ancestors {
    /// Whether some of them are async computations of an event loop this (blocking) caller
    /// would stop: then a self-wait is that, more likely than a recursion.
    pub(crate) fn blocks_executor(&self) -> bool {
        self.1
    }

    pub(crate) fn computes(&self, flight: FlightId) -> bool {
        self.0.iter().any(|&(f, _)| f == flight)
    }

    pub(crate) fn inside(&self, cache: CacheId) -> bool {
        self.0.iter().any(|&(_, c)| c == cache)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A computation a caller may be inside, as a binding keeps track of it where the core's
/// per-thread record cannot follow (an asyncio task's context, say): [`Frame::enter`] puts
/// it back around each step the binding takes for that task.
///
/// ```
/// use coopcache::{Begin, Cache, Error};
///
/// let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
/// let Begin::Lease(lease) = cache.begin(&1).unwrap() else { unreachable!() };
/// let frame = lease.frame(); // kept in the task's context
/// let _inside = frame.enter(); // around a step of that task, on whichever thread runs it
/// assert!(matches!(cache.begin(&1), Err(Error::Recursion { .. })));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub(crate) flight: FlightId,
    pub(crate) cache: CacheId,
}

impl Frame {
    /// The flight's id.
    pub fn id(&self) -> FlightId {
        self.flight
    }

    /// Marks this computation as one that the code about to run on this thread is inside (as
    /// an async computation's poll is), until the guard drops.
    pub fn enter(self) -> Computing {
        Computing::enter(self.flight, self.cache, Caller::NonBlocking)
    }
}

impl Frame {
    /// Records that this async computation makes progress only while `executor` runs, until
    /// the guard drops (hold it for the whole computation): a blocking caller on the thread
    /// that runs that executor ([`RunsExecutor`]) would stop it, so waiting there for this
    /// computation, or for one that waits for it, is an error instead of a hang.
    ///
    /// ```
    /// use coopcache::{Begin, Cache, Caller, Error, RunsExecutor};
    ///
    /// let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
    /// let Begin::Lease(lease) = cache.begin(&1).unwrap() else { unreachable!() };
    /// let _on_loop = lease.frame().runs_on(7); // a task of event loop 7 computes key 1
    /// let _runs = RunsExecutor::enter(7); // this thread runs loop 7
    /// assert!(matches!(cache.begin_with(&1, &[], Caller::Blocking), Err(Error::BlocksExecutor { .. })));
    /// assert!(matches!(cache.begin_with(&1, &[], Caller::NonBlocking), Ok(Begin::Wait(_))));
    /// ```
    pub fn runs_on(self, executor: ExecutorId) -> OnExecutor {
        ON_EXECUTOR.lock().entry(executor).or_default().push(self);
        OnExecutor { frame: self, executor }
    }
}

/// An async computation in progress on an executor, until dropped ([`Frame::runs_on`]).
#[must_use = "the computation is recorded only while the guard lives"]
pub struct OnExecutor {
    frame: Frame,
    executor: ExecutorId,
}

impl Drop for OnExecutor {
    fn drop(&mut self) {
        let mut on = ON_EXECUTOR.lock();
        if let Some(list) = on.get_mut(&self.executor) {
            if let Some(pos) = list.iter().position(|f| *f == self.frame) {
                list.swap_remove(pos);
            }
            if list.is_empty() {
                on.remove(&self.executor);
            }
        }
    }
}

/// Marks this thread as the one running an executor (an event loop) until dropped, around a
/// blocking call made from one of its tasks or callbacks: the call is then inside every async
/// computation in progress on that executor ([`Frame::runs_on`]), since blocking the thread
/// stops them all. It cannot leave its thread.
#[must_use = "the thread is marked only while the guard lives"]
pub struct RunsExecutor {
    executor: ExecutorId,
    _thread_bound: PhantomData<*const ()>,
}

impl RunsExecutor {
    /// Marks this thread as running `executor`.
    pub fn enter(executor: ExecutorId) -> RunsExecutor {
        EXECUTORS.with(|e| e.borrow_mut().push(executor));
        RunsExecutor { executor, _thread_bound: PhantomData }
    }
}

impl Drop for RunsExecutor {
    fn drop(&mut self) {
        EXECUTORS.with(|e| {
            let mut e = e.borrow_mut();
            if let Some(pos) = e.iter().rposition(|x| *x == self.executor) {
                e.remove(pos);
            }
        });
    }
}

/// Marks a computation as running on this thread until dropped: a synchronous one for the
/// whole call of the user's function, an async one around each poll. It cannot leave its
/// thread (it is neither `Send` nor `Sync`), so it cannot be held across an `.await`.
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// fn hold_across_await(marker: coopcache::Computing) {
///     send(marker); // a marker must stay on its thread
/// }
/// ```
#[must_use = "the computation is marked only while the guard lives"]
pub struct Computing {
    flight: FlightId,
    _thread_bound: PhantomData<*const ()>,
}

impl Computing {
    pub(crate) fn enter(flight: FlightId, cache: CacheId, caller: Caller) -> Computing {
        let kind = match caller {
            Caller::Blocking => Kind::Sync,
            Caller::NonBlocking => Kind::Async,
        };
        FRAMES.with(|f| f.borrow_mut().push((Frame { flight, cache }, kind)));
        Computing { flight, _thread_bound: PhantomData }
    }
}

impl Drop for Computing {
    fn drop(&mut self) {
        FRAMES.with(|f| {
            let mut f = f.borrow_mut();
            if let Some(pos) = f.iter().rposition(|(fr, _)| fr.flight == self.flight) {
                f.remove(pos);
            }
        });
    }
}

crate::sync::global! {
    /// Who waits for whom: each ancestor of a caller waiting from inside a computation → the
    /// flight it waits for (several, when a future awaits several at once).
    static WAITS: Mutex<HashMap<FlightId, SmallVec<[FlightId; 1]>>> = Mutex::new(HashMap::new());
}

/// Forgets what the parent's other threads were doing when the process forked: their
/// computations and waits do not exist in the child (see [`crate::after_fork_in_child`]).
pub(crate) fn after_fork() {
    WAITS.lock().clear();
    ON_EXECUTOR.lock().clear();
}

/// The waits a caller recorded; they end when it is dropped.
pub(crate) struct Waiting {
    from: SmallVec<[FlightId; 2]>,
    to: FlightId,
}

/// Records that `ancestors` wait for `flight`, unless that closes a cycle (the flight's leader
/// waits, directly or through others, for one of them): then `None`, and nothing is recorded.
pub(crate) fn wait_for(ancestors: &Ancestors, flight: FlightId) -> Option<Waiting> {
    let mut waits = WAITS.lock();
    let mut seen = vec![flight];
    let mut next = vec![flight];
    while let Some(f) = next.pop() {
        if ancestors.computes(f) {
            return None;
        }
        for &g in waits.get(&f).into_iter().flatten() {
            if !seen.contains(&g) {
                seen.push(g);
                next.push(g);
            }
        }
    }
    let from: SmallVec<[FlightId; 2]> = ancestors.0.iter().map(|&(f, _)| f).collect();
    for &a in &from {
        waits.entry(a).or_default().push(flight);
    }
    Some(Waiting { from, to: flight })
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waits = WAITS.lock();
        for a in &self.from {
            if let Some(list) = waits.get_mut(a) {
                if let Some(pos) = list.iter().position(|&t| t == self.to) {
                    list.swap_remove(pos);
                }
                if list.is_empty() {
                    waits.remove(a);
                }
            }
        }
    }
}
