//! The sync forms of a call and what every form shares. The core decides every step of a
//! miss (lead or wait, a computation slot, the shared tier's answer, publishing, storing,
//! hand-over, recursion, giving up) and drives it: on this thread for the sync forms
//! ([`coopcache::Host`]), on its callback table for asyncio and batches ([`crate::jobs`]). This
//! module looks up hits, converts values, runs the user's function, (de)serializes for the
//! shared tier when asked, and waits: without the GIL, in slices, checking for Ctrl-C.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use coopcache::options::{self, Style};
use coopcache::{
    CallOptions, Caller, Computing, Error as CoreError, Host, Key, KeyWriter, Outcome, Ready, RefreshHit,
    RunsExecutor,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyDict, PyTuple};

use crate::convert::{estimate, write_key};
use crate::shared::{self, Codec};
use crate::{COMPUTING_VAR, CoreCache, PyErrBox, PyValue, arg, lookup, option_err, to_pyerr};

pub(crate) type CoreLead = coopcache::Lead<Key, PyValue>;

/// How long a waiting thread sleeps (without the GIL) between checks for Ctrl-C.
const SLICE: Duration = Duration::from_millis(50);

/// The keyword options of a call.
pub(crate) struct Options {
    pub(crate) timeout: Option<Duration>,
    pub(crate) call: CallOptions,
}

impl Options {
    /// The core checks the options (a timeout in seconds, tags a list of str, `refresh_after`
    /// seconds > 0).
    pub(crate) fn parse(
        timeout: Option<&Bound<'_, PyAny>>,
        tags: Option<&Bound<'_, PyAny>>,
        refresh_after: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Options> {
        let mut given = Vec::new();
        for (k, v) in [("timeout", timeout), ("tags", tags), ("refresh_after", refresh_after)] {
            if let Some(v) = v {
                given.push((k.to_owned(), arg(v)?));
            }
        }
        let c = options::call(&given, Style::Python).map_err(option_err)?;
        let mut call = CallOptions::new().tags(c.tags);
        call.refresh_after = c.refresh_after;
        Ok(Options { timeout: c.timeout, call })
    }
}

/// The computations the current asyncio context is inside (`_decorator._COMPUTING`): a task's
/// computations travel with its context, not with the thread that happens to run it.
pub(crate) fn context(py: Python<'_>) -> Vec<Bound<'_, Frame>> {
    let Some(var) = COMPUTING_VAR.get(py) else { return Vec::new() };
    let Ok(frames) = var.bind(py).call_method0("get") else { return Vec::new() };
    let Ok(frames) = frames.cast_into::<PyTuple>() else { return Vec::new() };
    frames.iter().filter_map(|f| f.cast_into::<Frame>().ok()).collect()
}

pub(crate) fn weigh(value: &Bound<'_, PyAny>, weigher: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    match weigher {
        None => Ok(estimate(value)),
        Some(w) => w
            .call1((value,))?
            .extract::<u64>()
            .map_err(|_| PyTypeError::new_err("weigher must return an int >= 0 (the value's size in bytes)")),
    }
}

/// The function raised: whatever it raised (any `BaseException`) is the computation's outcome,
/// for every caller waiting (the same object), and for the other processes its type name and
/// message.
fn failure(py: Python<'_>, e: PyErr) -> Outcome<PyValue> {
    let (type_name, message) = shared::type_and_message(py, &e);
    Outcome::Failed { error: CoreError::Computation(Arc::new(PyErrBox::new(py, e))), type_name, message }
}

/// How the function's result ends the computation: a value to store (weighed), a `nocache`
/// value, or a failure (the function's exception, or the weigher's).
pub(crate) fn outcome(
    py: Python<'_>,
    result: PyResult<Bound<'_, PyAny>>,
    weigher: Option<&Bound<'_, PyAny>>,
) -> Outcome<PyValue> {
    let obj = match result {
        Ok(obj) => obj,
        Err(e) => return failure(py, e),
    };
    if let Ok(nc) = obj.cast::<NoCache>() {
        return Outcome::NoCache(PyValue(nc.get().value.clone_ref(py)));
    }
    match weigh(&obj, weigher) {
        Ok(weight) => Outcome::Store { value: PyValue(obj.unbind()), weight },
        Err(e) => failure(py, e),
    }
}

/// Why a result the sync form got cannot be a cached value: an object that can be used once
/// (a coroutine awaited, a generator iterated) would reach every later caller used up.
fn used_once(obj: &Bound<'_, PyAny>) -> Option<&'static str> {
    let name = obj.get_type().name().ok()?;
    if name == "coroutine" {
        let _ = obj.call_method0("close"); // never awaited: no "was never awaited" warning
        return Some(
            "the function returned a coroutine: use coopcache.cached_async (or decorate the \
             async def function itself) to cache the awaited value",
        );
    }
    (name == "generator" || name == "async_generator").then_some(
        "the function returned a generator, which can be iterated once: return list(...) of its \
         items to cache them",
    )
}

/// A Python key written for the hit path, which looks it up by its bytes (a `Key` is made on
/// a miss only).
pub(crate) fn key_writer(key: &Bound<'_, PyAny>) -> PyResult<KeyWriter> {
    let mut w = KeyWriter::new();
    write_key(&mut w, key, 0, &String::new)?;
    Ok(w)
}

/// The hit path of every form: the stored value, and the refresh this hit starts if the value
/// is due for one (`refresh_after`); None on a miss. Inlined into every caller, as the core's
/// lookup is: out of line it cost ~75 instructions per hit (callgrind).
#[inline(always)]
pub(crate) fn hit(
    py: Python<'_>,
    cache: &CoreCache,
    w: &KeyWriter,
    opts: &Options,
) -> Option<RefreshHit<Py<PyAny>, Key, PyValue>> {
    let read = |v: &PyValue| v.0.clone_ref(py);
    cache.hit_refresh_by(w.as_bytes(), || w.clone().finish(), &opts.call, Caller::Blocking, read)
}

/// The function a call runs: the callable, its arguments and keyword arguments.
pub(crate) type Thunk<'a, 'py> =
    (&'a Bound<'py, PyAny>, &'a Bound<'py, PyTuple>, Option<&'a Bound<'py, PyDict>>);

/// The sync call form: a hit never leaves Rust (a hit due for refresh starts the refresh on a
/// thread, see [`refresh`]); a miss is driven by [`run_sync`].
#[inline(always)]
pub(crate) fn cached_sync<'py>(
    py: Python<'py>,
    cache: &CoreCache,
    w: KeyWriter,
    (func, args, kwargs): Thunk<'_, 'py>,
    opts: &Options,
    weigher: Option<&Bound<'py, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let found = hit(py, cache, &w, opts);
    settle(py, cache, found, w, (func, args, kwargs), opts, weigher)
}

/// What a call does after its hit lookup (`found`): the stored value, the value after starting
/// its refresh, or on a miss the call driven by [`run_sync`].
#[inline(always)]
fn settle<'py>(
    py: Python<'py>,
    cache: &CoreCache,
    found: Option<RefreshHit<Py<PyAny>, Key, PyValue>>,
    w: KeyWriter,
    (func, args, kwargs): Thunk<'_, 'py>,
    opts: &Options,
    weigher: Option<&Bound<'py, PyAny>>,
) -> PyResult<Py<PyAny>> {
    match found {
        Some((v, None)) => Ok(v),
        Some((v, Some(lead))) => {
            refresh(py, cache, lead, (func, args, kwargs), weigher)?;
            Ok(v)
        }
        None => run_sync(py, cache, w.finish(), || func.call(args, kwargs), opts, weigher),
    }
}

static REFRESH_IN_THREAD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Starts the refresh of `thunk` on a thread of its own (`_decorator._refresh_in_thread`),
/// driven there by the core ([`coopcache::Lead::block`]); the hit returns the stored value
/// meanwhile.
fn refresh(
    py: Python<'_>,
    cache: &CoreCache,
    lead: Box<CoreLead>,
    (func, args, kwargs): Thunk<'_, '_>,
    weigher: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let (cache, weigher) = (cache.clone(), weigher.map(|w| w.clone().unbind()));
    let (func, args, kwargs) =
        (func.clone().unbind(), args.clone().unbind(), kwargs.map(|k| k.clone().unbind()));
    let lead = Mutex::new(Some(lead));
    let run = PyCFunction::new_closure(py, None, None, move |a, _| -> PyResult<()> {
        let py = a.py();
        let Some(mut lead) = lead.lock().ok().and_then(|mut l| l.take()) else { return Ok(()) };
        let func = || func.bind(py).call(args.bind(py), kwargs.as_ref().map(|k| k.bind(py)));
        let weigher = weigher.as_ref().map(|w| w.bind(py));
        lead.block(&mut Thread { py, cache: &cache, func: Some(func), weigher }, None).map(drop)
    })?;
    REFRESH_IN_THREAD.import(py, "coopcache._decorator", "_refresh_in_thread")?.call1((run,))?;
    Ok(())
}

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Marks this thread as running its asyncio event loop, if it runs one, for a blocking call:
/// a key that a task of that loop computes cannot finish while the call blocks the loop, so
/// the core answers that wait with an error instead of a hang.
fn runs_loop(py: Python<'_>) -> PyResult<Option<RunsExecutor>> {
    let get = GET_RUNNING_LOOP.import(py, "asyncio", "_get_running_loop")?;
    let running = get.call0()?;
    Ok((!running.is_none()).then(|| RunsExecutor::enter(running.as_ptr() as u64)))
}

/// The sync form on a miss (the hit was looked up already): the core's call, driven on this
/// thread by the core, for the whole of which the context's computations are on this thread
/// (the core's recursion and wait-cycle checks see them) and so is its event loop (see
/// [`runs_loop`]).
pub(crate) fn run_sync<'py>(
    py: Python<'py>,
    cache: &CoreCache,
    key: Key,
    func: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
    opts: &Options,
    weigher: Option<&Bound<'py, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let _inside: Vec<Computing> = context(py).iter().map(|f| f.get().0.enter()).collect();
    let _on_loop = runs_loop(py)?;
    let mut thread = Thread { py, cache, func: Some(func), weigher };
    // Giving up (a timeout, Ctrl-C) drops the call: the others go on.
    match cache.call(key, &opts.call, Caller::Blocking).block(&mut thread, opts.timeout)? {
        Ok(v) => Ok(v.0),
        Err(e) => Err(to_pyerr(py, &e)),
    }
}

/// This thread's side of a sync call or refresh: it runs the function holding the GIL, as
/// Python code must, and waits without it.
struct Thread<'a, 'py, F> {
    py: Python<'py>,
    cache: &'a CoreCache,
    func: Option<F>,
    weigher: Option<&'a Bound<'py, PyAny>>,
}

impl<'py, F: FnOnce() -> PyResult<Bound<'py, PyAny>>> Host<PyValue> for Thread<'_, 'py, F> {
    type Stop = PyErr;

    /// Waits in slices, checking for signals (Ctrl-C) between them.
    fn wait(&mut self, ready: &Ready, deadline: Option<Instant>) -> PyResult<bool> {
        if ready.try_get().is_some() {
            return Ok(true);
        }
        loop {
            let slice_end = Instant::now() + SLICE;
            let end = deadline.map_or(slice_end, |d| d.min(slice_end));
            if self.py.detach(|| ready.wait_deadline(Some(end))).is_some() {
                return Ok(true);
            }
            self.py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    fn compute(&mut self) -> Outcome<PyValue> {
        let result = match self.func.take() {
            Some(f) => f(),
            None => Err(PyRuntimeError::new_err("coopcache: a caller computes once")),
        };
        let result = result.and_then(|obj| match used_once(&obj) {
            Some(why) => Err(PyTypeError::new_err(why)),
            None => Ok(obj),
        });
        outcome(self.py, result, self.weigher)
    }

    fn decode(&mut self, bytes: &[u8]) -> Result<(PyValue, u64), String> {
        Codec::of(self.cache).decode(self.py, bytes, |v| weigh(v, self.weigher))
    }

    fn encode(&mut self, value: &PyValue) -> Result<Vec<u8>, (String, String)> {
        Codec::of(self.cache).encode(value.0.bind(self.py))
    }
}

/// A loader's mapping as the core's values by key, each weighed.
pub(crate) fn loaded(mapping: &Bound<'_, PyAny>) -> PyResult<HashMap<Key, (PyValue, u64)>> {
    let items = mapping.call_method0("items").map_err(|_| {
        let t = mapping.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        PyTypeError::new_err(format!(
            "cached_many: the loader must return a mapping of its keys to their values (a dict), got a value of type {t}"
        ))
    })?;
    let mut out = HashMap::new();
    for item in items.try_iter()? {
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
        let weight = estimate(&v);
        out.insert(crate::convert::to_key(&k)?, (PyValue(v.unbind()), weight));
    }
    Ok(out)
}

/// A value returned but not stored (see `nocache`).
#[pyclass(frozen, module = "coopcache._native")]
pub(crate) struct NoCache {
    value: Py<PyAny>,
}

#[pymethods]
impl NoCache {
    /// The value handed to every caller.
    #[getter]
    fn value(&self, py: Python<'_>) -> Py<PyAny> {
        self.value.clone_ref(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("nocache({})", self.value.bind(py).repr().map(|r| r.to_string()).unwrap_or_default())
    }
}

/// Marks a computed value as "return it to every caller, but do not store it".
#[pyfunction]
pub(crate) fn nocache(value: Py<PyAny>) -> NoCache {
    NoCache { value }
}

/// A computation a task is inside, and the job (of its loop's table) computing it, kept in
/// its context (`_decorator._COMPUTING`).
#[pyclass(frozen, module = "coopcache._native")]
pub(crate) struct Frame(pub(crate) coopcache::Frame, pub(crate) u64);

#[pymethods]
impl Frame {
    fn __repr__(&self) -> String {
        format!("<coopcache computation frame {}>", self.0.id())
    }
}

static METHOD_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A sync function decorated with `@coopcache.cached(name)`: the key is built in Rust from the
/// function's qualified name and its arguments (or by `key=`), and a hit never leaves Rust.
///
/// The type Python code sees as `coopcache._native.CachedFunction` is a subclass of this one
/// that CPython calls by vectorcall ([`crate::entry`]); this class's `__call__` is its
/// `tp_call`.
#[pyclass(frozen, dict, subclass, name = "CachedFunctionBase", module = "coopcache._native")]
pub(crate) struct CachedFunction {
    cache_name: String,
    /// Set by the first call (the vectorcall entry's hit path leaves that call to
    /// [`Self::call`]).
    pub(crate) cache: OnceLock<CoreCache>,
    func: Py<PyAny>,
    /// The function's qualified name (for messages).
    prefix: String,
    /// The function's id in its calls' keys ([`coopcache::function_id`] of `prefix`), encoded
    /// once as a key item (bytes).
    prefix_key: Key,
    /// How the key of a call with one positional argument and no keyword arguments (the
    /// common call) begins: the list, `prefix_key` and the arguments' list, copied in one step.
    one_arg: KeyWriter,
    pub(crate) key_fn: Option<Py<PyAny>>,
    weigher: Option<Py<PyAny>>,
    pub(crate) opts: Options,
}

impl CachedFunction {
    #[inline]
    fn cache(&self) -> PyResult<&CoreCache> {
        match self.cache.get() {
            Some(c) => Ok(c),
            None => self.first_cache(),
        }
    }

    /// The first call's lookup of the cache by name, out of the hit's way.
    #[cold]
    #[inline(never)]
    fn first_cache(&self) -> PyResult<&CoreCache> {
        let c = lookup(&self.cache_name)?;
        Ok(self.cache.get_or_init(|| c))
    }

    fn key(&self, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Key> {
        let mut w = KeyWriter::new();
        self.write_call_key(&mut w, args, kwargs)?;
        Ok(w.finish())
    }

    /// Writes the call's key into `w`, the caller's writer on its stack (not returned: a
    /// writer is 72 bytes to copy): a hit is looked up with its bytes, no `Key` made.
    #[inline]
    pub(crate) fn write_call_key(
        &self,
        w: &mut KeyWriter,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        if let Some(kf) = &self.key_fn {
            let k = kf.bind(args.py()).call(args, kwargs)?;
            return write_key(w, &k, 0, &|| " (returned by key=)".to_owned());
        }
        let kwargs = kwargs.filter(|d| !d.is_empty());
        self.write_positional(w, args.len(), kwargs.is_some(), |i| args.get_borrowed_item(i))?;
        if let Some(kw) = kwargs {
            let mut items: Vec<(String, Bound<'_, PyAny>)> =
                kw.iter().map(|(k, v)| Ok((k.extract::<String>()?, v))).collect::<PyResult<_>>()?;
            items.sort_by(|a, b| a.0.cmp(&b.0));
            w.list(items.len());
            for (k, v) in &items {
                w.list(2).str(k);
                write_key(w, v, 2, &|| format!(" (argument {k}= of {})", self.prefix))?;
            }
        }
        Ok(())
    }

    /// Writes how the call's key begins and its `n` positional arguments (`arg(i)`, from a
    /// tuple or from the vectorcall entry's array, see [`crate::entry`]).
    #[inline(always)]
    pub(crate) fn write_positional<'a, 'py>(
        &self,
        w: &mut KeyWriter,
        n: usize,
        has_kwargs: bool,
        arg: impl Fn(usize) -> PyResult<Borrowed<'a, 'py, PyAny>>,
    ) -> PyResult<()> {
        if n == 1 && !has_kwargs {
            w.append(&self.one_arg);
        } else {
            w.list(if has_kwargs { 3 } else { 2 }).key(&self.prefix_key).list(n);
        }
        for i in 0..n {
            let a = arg(i)?;
            write_key(w, &a, 1, &|| format!(" (argument {i} of {})", self.prefix))?;
        }
        Ok(())
    }

    /// A call with a tuple of positional arguments and a dict of keyword arguments: the
    /// `__call__` of the pyclass, which the vectorcall entry leaves every call but a hit to.
    fn call(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let cache = self.cache()?;
        let mut w = KeyWriter::new();
        self.write_call_key(&mut w, args, kwargs)?;
        let found = hit(py, cache, &w, &self.opts);
        self.settle(py, cache, found, w, args, kwargs)
    }

    /// The rest of a call after its hit lookup (`found`): the stored value, or a miss or a hit
    /// that took the key's refresh (all the vectorcall entry leaves to it, see [`crate::entry`]).
    pub(crate) fn settle(
        &self,
        py: Python<'_>,
        cache: &CoreCache,
        found: Option<RefreshHit<Py<PyAny>, Key, PyValue>>,
        w: KeyWriter,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let func = self.func.bind(py);
        let weigher = self.weigher.as_ref().map(|w| w.bind(py));
        settle(py, cache, found, w, (func, args, kwargs), &self.opts, weigher)
    }
}

#[pymethods]
impl CachedFunction {
    #[new]
    #[pyo3(signature = (cache_name, func, prefix, key=None, weigher=None, timeout=None, tags=None, refresh_after=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        cache_name: String,
        func: Py<PyAny>,
        prefix: String,
        key: Option<Py<PyAny>>,
        weigher: Option<Py<PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        tags: Option<&Bound<'_, PyAny>>,
        refresh_after: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut pk = KeyWriter::new();
        pk.bytes(&coopcache::function_id(&prefix));
        let prefix_key = pk.finish();
        let mut one_arg = KeyWriter::new();
        one_arg.list(2).key(&prefix_key).list(1);
        Ok(CachedFunction {
            cache_name,
            cache: OnceLock::new(),
            func,
            one_arg,
            prefix_key,
            prefix,
            key_fn: key,
            weigher,
            opts: Options::parse(timeout, tags, refresh_after)?,
        })
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        self.call(py, args, kwargs)
    }

    fn __get__(
        slf: Py<Self>,
        py: Python<'_>,
        instance: Option<Py<PyAny>>,
        _owner: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match instance {
            Some(i) if !i.is_none(py) => {
                let mt = METHOD_TYPE.import(py, "types", "MethodType")?;
                Ok(mt.call1((slf, i))?.unbind())
            }
            _ => Ok(slf.into_any()),
        }
    }

    /// The canonical key bytes these arguments map to.
    #[pyo3(signature = (*args, **kwargs))]
    fn cache_key(&self, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<u8>> {
        Ok(self.key(args, kwargs)?.as_bytes().to_vec())
    }

    /// Removes the entry these arguments map to; True if one was removed.
    #[pyo3(signature = (*args, **kwargs))]
    fn invalidate(&self, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<bool> {
        let key = self.key(args, kwargs)?;
        Ok(self.cache()?.invalidate(&key))
    }

    fn __repr__(&self) -> String {
        format!("<coopcache cached function {} (cache {:?})>", self.prefix, self.cache_name)
    }

    /// The name of the cache this function uses.
    #[getter]
    fn cache_name(&self) -> &str {
        &self.cache_name
    }
}
