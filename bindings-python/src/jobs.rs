//! The misses of one event loop (or one blocking batch) on the core's callback table
//! ([`coopcache::Jobs`]), driven by `_decorator._Driver`. The table decides every step; this
//! class converts keys, values and errors, (de)serializes for the shared tier on the spot, and
//! hands Python the rest as `(job, code, object, last)` tuples: settle a caller, run the
//! function or the loader (then report with `computed`, `loaded` or `failed`), or nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use coopcache::{Action, Caller, Do, Error as CoreError, Key, OnExecutor};
use pyo3::prelude::*;

use crate::convert::to_key;
use crate::flight::{Frame, Options, context, hit, key_writer, loaded, outcome, weigh};
use crate::shared::Codec;
use crate::{Cache, CoreCache, PyErrBox, PyValue, to_pyerr};

/// The action codes (`_decorator.py` names them): settle the caller with a value (a batch's: the
/// list of its values) or an exception; run the function; run the loader with the keys at
/// these indices; nothing.
const VALUE: u8 = 0;
const ERROR: u8 = 1;
const COMPUTE: u8 = 2;
const LOAD: u8 = 3;
const GONE: u8 = 4;

/// What one action tells Python.
type Act = (u64, u8, Py<PyAny>, bool);

/// A call's start: whether it hit, the hit's value, the timeout in seconds, the actions.
type Started = (bool, Py<PyAny>, Option<f64>, Vec<Act>);

/// What a job needs from its call: its cache (the shared tier's codec), weigher and timeout.
struct Info {
    cache: CoreCache,
    weigher: Option<Py<PyAny>>,
    timeout: Option<Duration>,
    batch: bool,
    /// While it computes on the loop: a blocking call for its keys on the loop's thread fails
    /// (it would stop the loop that runs the computation) instead of hanging.
    on_loop: Vec<OnExecutor>,
}

/// One table of misses; `wake()` is called (on any thread) when `drain()` has work.
#[pyclass(module = "coopcache._native")]
pub(crate) struct Jobs {
    /// The core's table. It is never entered: the computations a job's context is inside
    /// travel in `_decorator._COMPUTING` instead (a task's context, or the thread's while a
    /// blocking batch's loader runs), and the table enters their frames for a job's steps.
    jobs: coopcache::Jobs<Key, PyValue>,
    info: HashMap<u64, Info>,
    /// The event loop's `id()` (None: a thread that blocks).
    loop_id: Option<u64>,
}

impl Jobs {
    fn info(cache: &CoreCache, weigher: Option<Py<PyAny>>, timeout: Option<Duration>, batch: bool) -> Info {
        Info { cache: cache.clone(), weigher, timeout, batch, on_loop: Vec::new() }
    }

    /// The frames of the computations the current context is inside, entered on this thread,
    /// and their jobs (the table enters those again for the job's later steps).
    fn enter_context(py: Python<'_>) -> (Vec<coopcache::Computing>, Vec<u64>) {
        context(py).iter().map(|f| (f.get().0.enter(), f.get().1)).unzip()
    }

    /// Turns the table's actions into Python's, deserializing and serializing on the spot.
    fn finish(&mut self, py: Python<'_>, mut out: Vec<Action<PyValue>>) -> PyResult<Vec<Act>> {
        let mut acts = Vec::new();
        let mut i = 0;
        while i < out.len() {
            let (job, last) = (out[i].job, out[i].last);
            let what = std::mem::replace(&mut out[i].what, Do::Gone);
            i += 1;
            let Some(info) = self.info.get_mut(&job) else { continue };
            let (code, obj) = match what {
                Do::Decode => {
                    let bytes = self.jobs.payload(job).unwrap_or_default();
                    let w = info.weigher.as_ref().map(|w| w.bind(py).clone());
                    let v = Codec::of(&info.cache).decode(py, &bytes, |v| weigh(v, w.as_ref()));
                    self.jobs.decoded(job, v, &mut out);
                    continue;
                }
                Do::Encode(v) => {
                    let bytes = Codec::of(&info.cache).encode(v.0.bind(py));
                    self.jobs.encoded(job, bytes, &mut out);
                    continue;
                }
                Do::Settle(Ok(v)) => (VALUE, v.0),
                Do::Settle(Err(e)) => (ERROR, to_pyerr(py, &e).into_value(py).into_any()),
                Do::SettleMany(values) => {
                    match values.into_iter().map(|r| r.map(|v| v.0)).collect::<Result<Vec<_>, _>>() {
                        Ok(vs) => (VALUE, vs.into_pyobject(py)?.into_any().unbind()),
                        Err(e) => (ERROR, to_pyerr(py, &e).into_value(py).into_any()),
                    }
                }
                Do::Compute | Do::Load(_) => {
                    if let Some(id) = self.loop_id {
                        info.on_loop = self.jobs.frames(job).into_iter().map(|f| f.runs_on(id)).collect();
                    }
                    match what {
                        Do::Load(at) => (LOAD, at.into_pyobject(py)?.into_any().unbind()),
                        _ => (COMPUTE, py.None()),
                    }
                }
                Do::Gone => (GONE, py.None()),
                Do::Follow(_) => unreachable!("a task can be cancelled: its jobs are never patient"),
            };
            if last {
                self.info.remove(&job);
            }
            acts.push((job, code, obj, last));
        }
        Ok(acts)
    }

    fn report(&mut self, py: Python<'_>, job: u64, result: PyResult<Bound<'_, PyAny>>) -> PyResult<Vec<Act>> {
        let mut out = Vec::new();
        let Some(info) = self.info.get(&job) else { return Ok(Vec::new()) };
        if info.batch {
            let err = |e| CoreError::Computation(Arc::new(PyErrBox::new(py, e)));
            self.jobs.loaded(job, result.and_then(|m| loaded(&m)).map_err(err), &mut out);
        } else {
            let w = info.weigher.as_ref().map(|w| w.bind(py).clone());
            self.jobs.computed(job, outcome(py, result, w.as_ref()), &mut out);
        }
        self.finish(py, out)
    }
}

#[pymethods]
impl Jobs {
    #[new]
    #[pyo3(signature = (loop_id, wake))]
    fn new(loop_id: Option<u64>, wake: Py<PyAny>) -> Self {
        let jobs = coopcache::Jobs::new(move || {
            let _ = Python::try_attach(|py| {
                if let Err(e) = wake.call0(py) {
                    e.write_unraisable(py, None);
                }
            });
        });
        Jobs { jobs, info: HashMap::new(), loop_id }
    }

    /// Starts job `job`, a call of `key`: (hit, its value, the timeout in seconds, actions). A
    /// hit due for refresh makes the refresh the job (its computation among the actions).
    #[pyo3(signature = (job, cache, key, *, timeout=None, tags=None, weigher=None, refresh_after=None))]
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        py: Python<'_>,
        job: u64,
        cache: &Cache,
        key: &Bound<'_, PyAny>,
        timeout: Option<&Bound<'_, PyAny>>,
        tags: Option<&Bound<'_, PyAny>>,
        weigher: Option<Py<PyAny>>,
        refresh_after: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Started> {
        let (c, w) = (&cache.inner, key_writer(key)?);
        let opts = Options::parse(timeout, tags, refresh_after)?;
        let info = Jobs::info(c, weigher, opts.timeout, false);
        let mut out = Vec::new();
        if let Some((v, lead)) = hit(py, c, &w, &opts) {
            if let Some(lead) = lead {
                self.info.insert(job, info);
                self.jobs.start_lead(job, lead, false, &mut out);
            }
            return Ok((true, v, None, self.finish(py, out)?));
        }
        self.info.insert(job, info);
        let (_inside, ctx) = Jobs::enter_context(py);
        // Blocking, as for threads: every computation running on this thread counts as this
        // task's own. A loop run inside a sync computation (asyncio.run in the function) is
        // that computation's: a task of it asking the same key is a recursion error.
        let call = c.call(w.finish(), &opts.call, Caller::Blocking);
        self.jobs.start(job, call, false, ctx, &mut out);
        Ok((false, py.None(), opts.timeout.map(|t| t.as_secs_f64()), self.finish(py, out)?))
    }

    /// Starts job `job`, a batch of `keys` (see `coopcache.cached_many`).
    fn batch(
        &mut self,
        py: Python<'_>,
        job: u64,
        cache: &Cache,
        keys: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Act>> {
        let ks: Vec<Key> = keys.iter().map(to_key).collect::<PyResult<_>>()?;
        self.info.insert(job, Jobs::info(&cache.inner, None, None, true));
        let (_inside, ctx) = Jobs::enter_context(py);
        let mut out = Vec::new();
        self.jobs.start_batch(job, cache.inner.batch(ks, Caller::Blocking), ctx, &mut out);
        self.finish(py, out)
    }

    /// Reports the function's value (or `nocache(value)`), or the loader's mapping.
    fn computed(&mut self, py: Python<'_>, job: u64, value: &Bound<'_, PyAny>) -> PyResult<Vec<Act>> {
        self.report(py, job, Ok(value.clone()))
    }

    /// Reports what the function or the loader raised (any `BaseException`): every caller
    /// waiting gets it, nothing is stored.
    fn failed(&mut self, py: Python<'_>, job: u64, exc: &Bound<'_, PyAny>) -> PyResult<Vec<Act>> {
        self.report(py, job, Err(PyErr::from_value(exc.clone())))
    }

    /// The job's caller gives up (its timeout passed, or its task was cancelled).
    fn give_up(&mut self, py: Python<'_>, job: u64) -> PyResult<Vec<Act>> {
        let timeout = self.info.get(&job).and_then(|i| i.timeout).unwrap_or_default();
        let mut out = Vec::new();
        self.jobs.give_up(job, timeout, &mut out);
        self.finish(py, out)
    }

    /// The job's computation stopped without an outcome (its task was cancelled): a waiter
    /// takes over.
    fn abandon(&mut self, py: Python<'_>, job: u64) -> PyResult<Vec<Act>> {
        let mut out = Vec::new();
        self.jobs.abandon(job, &mut out);
        self.finish(py, out)
    }

    /// The actions of the jobs that became ready (`wake()` asked for this).
    fn drain(&mut self, py: Python<'_>) -> PyResult<Vec<Act>> {
        let mut out = Vec::new();
        self.jobs.drain(&mut out);
        self.finish(py, out)
    }

    /// The job's computations, for its task's context (`_decorator._COMPUTING`).
    fn frames(&self, job: u64) -> Vec<Frame> {
        self.jobs.frames(job).into_iter().map(|f| Frame(f, job)).collect()
    }
}
