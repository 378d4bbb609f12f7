//! The Node binding of coopcache: a thin napi-rs layer over the core's call driver
//! ([`coopcache::Call`] / [`coopcache::Lead`]).
//!
//! Values: the JS side (`bindings-node/js/index.js`) keeps the JS values (computed values and
//! thrown errors) in an array by numeric id (it reuses released ids); the core stores a small
//! `Send` handle ([`Val`]) holding that id. When the core drops the last clone of a handle
//! (eviction, expiry, clear, or a value that was never stored), the id goes on a release queue and
//! the JS thread is woken through an unref'd threadsafe function to delete it from the array, so
//! values are released on the JS thread and nothing keeps the process alive.
//!
//! Calls: a hit is one raw N-API function per cache (`hit(key)`, see [`Native::hit_of`]) that
//! never touches the driver and writes its answer, the value's id, to the output array. A miss is a
//! *job* (numbered by the JS side) in the core's [`Jobs`] table, which
//! drives the caller's [`coopcache::Call`] and, when the caller leads, the computation's
//! [`coopcache::Lead`], and says what the binding must do; this binding hands that to the JS
//! side as triples `[job, action, arg]` (see [`act`]): settle the caller's promise with a value
//! or an error, run the user's function, or turn a value into bytes for the shared tier and back
//! with the cache's serializer. Every rule of a call (slots, the shared tier's answer,
//! publishing, storing, hand-over, recursion, giving up) is the core's. The functions of the call
//! path skip napi-rs's method dispatch, and answer in a `Float64Array` the JS side gave once (see
//! [`Answer`]).
//!
//! Waiting never blocks: the core queues a job when what it waits for is ready. All
//! computations of one addon instance run on its own JS thread, so callbacks normally fire
//! there, during a call into this module, which then drives the queued jobs before it returns; a
//! callback that fires on another thread (the shared tier's answer) wakes the JS thread through
//! the same threadsafe function. While a leader waits for the shared tier, the threadsafe
//! function is ref'd so that the process does not exit under it.
//!
//! Recursion: the JS side keeps, in an `AsyncLocalStorage`, the jobs whose computations the
//! current async context is inside, and passes them with each miss; the core enters their
//! frames around the miss's steps, and a computation's synchronous part runs between
//! [`Entered::enter`] and [`Entered::exit`], so the core's recursion and wait-cycle checks decide.

#![deny(clippy::all)]

use std::collections::HashMap;
use std::fmt;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use coopcache::options::{self, Arg, ErrorKind, OptionError, Style, Value};
use coopcache::{
    Action, Cache, CallOptions, Caller, Do, Entered, Error as CoreError, Event, Field, Jobs, Key, KeyWriter,
    Lead, Level, Outcome, Registry,
};
use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{JsValue, Unknown};
use napi_derive::napi;
use parking_lot::Mutex;

/// What the JS side does for a job (`[job, action, arg]` triples; see the module docs).
mod act {
    /// Resolve the caller's promise with the value `arg`.
    pub const VALUE: f64 = 0.0;
    /// Reject it with the JS value `arg` (the computation's own error).
    pub const FAILED: f64 = 1.0;
    /// Reject it with `takeError(job)` (a coopcache error: recursion, timeout, another process's
    /// error, a bad key).
    pub const ERROR: f64 = 2.0;
    /// Run the user's function and report it with `computed`.
    pub const COMPUTE: f64 = 3.0;
    /// Deserialize `payload(job)` and report it with `decoded`.
    pub const DECODE: f64 = 4.0;
    /// Serialize the value `arg` and report it with `encoded`.
    pub const ENCODE: f64 = 5.0;
    /// Nothing left to do (the caller gave up before).
    pub const GONE: f64 = 6.0;
    /// Call the batch's loader with the keys at `takeList(job)`, and report with `loaded` (or
    /// its failure with `computed`, as a computation's).
    pub const LOAD: f64 = 7.0;
    /// Resolve the batch's promise with the values `takeList(job)` (a batch with an error for a
    /// key gets FAILED or ERROR instead, as a single call does).
    pub const MANY: f64 = 8.0;
    /// Settle the caller's promise as job `arg`'s is settled: that job's caller waits for the
    /// same computation, and neither gives up (see [`coopcache::Jobs::start_patient`]).
    pub const FOLLOW: f64 = 9.0;
    /// Give the caller up (`giveUp(job, arg)`) after its timeout, `arg` milliseconds: the first
    /// action of a job whose call has one, as the core read the call's `timeoutMs` (so the JS
    /// side arms exactly the timeouts the core has, and none for a call without).
    pub const ARM: f64 = 10.0;
    /// Added to the job's last action: the JS side forgets the job.
    pub const LAST: f64 = 16.0;
}

/// What the driver answers the JS side: a count of f64s (triples) written to the array given to
/// `setOutput` (no allocation for the usual one or two triples), or, when they do not fit, an
/// array of them. (A cache's `hit` writes its one number to the array's first element.)
type Answer = Either<u32, Float64Array>;

/// How a computation ended, as `computed` is told.
mod outcome {
    pub const STORE: u32 = 0;
    /// The same code as the action that rejects with the error.
    pub const FAILED: u32 = 1;
    pub const NOCACHE: u32 = 2;
}

type CoreLead = Lead<Key, Val>;

type Wake = ThreadsafeFunction<(), Unknown<'static>, (), Status, false, true>;

/// State shared with other threads: release queue, events, and the wake-up.
struct Sink {
    released: Mutex<Vec<u32>>,
    events: Mutex<Vec<Event>>,
    wake: Wake,
    woken: AtomicBool,
}

impl Sink {
    /// Wakes the JS thread to drain the queues (once until it has drained them).
    fn ping(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    fn release(&self, id: u32) {
        self.released.lock().push(id);
        self.ping();
    }
}

/// The core's handle on a JS value: its id in the JS-side map. Released on drop of the last
/// clone (on whichever thread), through the sink.
#[derive(Clone)]
struct Val(Arc<ValInner>);

struct ValInner {
    id: u32,
    sink: Arc<Sink>,
}

impl Drop for ValInner {
    fn drop(&mut self) {
        self.sink.release(self.id);
    }
}

/// A JS error thrown or rejected by a computation, as the core's error type, with its
/// `name: message` (what events such as `refreshFailed` show).
struct JsError(Val, String);

impl fmt::Debug for JsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsError({})", self.0.0.id)
    }
}

impl fmt::Display for JsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for JsError {}

/// An error for the JS side: its class, `code`, message, and the type name of another
/// process's error.
struct Failure {
    type_error: bool,
    code: &'static str,
    message: String,
    remote: Option<String>,
}

impl Failure {
    fn of(e: CoreError) -> Failure {
        let code = e.code();
        match e {
            CoreError::Remote { type_name, message } => {
                Failure { type_error: false, code, message, remote: Some(type_name) }
            }
            e => Failure { type_error: false, code, message: e.to_string(), remote: None },
        }
    }

    fn key(message: String) -> Failure {
        Failure { type_error: true, code: "ERR_COOPCACHE_INVALID_KEY", message, remote: None }
    }

    /// An option or argument the core refused.
    fn option(e: OptionError) -> Failure {
        Failure { type_error: e.kind == ErrorKind::Type, code: e.code, message: e.message, remote: None }
    }

    /// The JS error object.
    fn to_js(&self, env: sys::napi_env) -> Result<sys::napi_value> {
        let code = string(env, self.code)?;
        let msg = string(env, &self.message)?;
        let mut e = ptr::null_mut();
        // SAFETY: plain N-API calls on the JS thread with values of this env.
        unsafe {
            let status = match self.type_error {
                true => sys::napi_create_type_error(env, code, msg, &mut e),
                false => sys::napi_create_error(env, code, msg, &mut e),
            };
            ok(status)?;
            if let Some(name) = &self.remote {
                let name = string(env, name)?;
                ok(sys::napi_set_named_property(env, e, c"name".as_ptr(), name))?;
                ok(sys::napi_set_named_property(env, e, c"remoteName".as_ptr(), name))?;
            }
        }
        Ok(e)
    }

    /// Throws the error; the `Err` tells napi-rs that an exception is pending.
    fn throw(&self, env: &Env) -> napi::Error {
        if let Ok(e) = self.to_js(env.raw()) {
            // SAFETY: on the JS thread, with a value of this env.
            unsafe { sys::napi_throw(env.raw(), e) };
        }
        napi::Error::new(Status::PendingException, self.message.clone())
    }
}

fn ok(status: sys::napi_status) -> Result<()> {
    match status {
        sys::Status::napi_ok => Ok(()),
        s => Err(napi::Error::new(Status::from(s), "coopcache: an N-API call failed".to_owned())),
    }
}

fn string(env: sys::napi_env, s: &str) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    // SAFETY: a plain N-API call on the JS thread.
    ok(unsafe { sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut v) })?;
    Ok(v)
}

/// A cache name: a string.
fn cache_name(env: &Env, v: &Unknown<'_>) -> std::result::Result<String, Failure> {
    let arg = js_arg(env, v, 0);
    options::cache_name(&arg, Style::Node).map(str::to_owned).map_err(Failure::option)
}

/// A JS value as the core's option checks see it, with its type (`typeof`, but `null`,
/// `array` and `Uint8Array`). No JS runs but the getters of an object's options.
fn js_arg(env: &Env, v: &Unknown<'_>, depth: u32) -> Arg {
    let (e, raw) = (env.raw(), v.raw());
    // SAFETY (the conversions below): values of this env, of the type just checked.
    let (value, name) = match v.get_type().unwrap_or(ValueType::Unknown) {
        ValueType::Null => (Value::None, "null"),
        ValueType::Boolean => {
            (Value::Bool(unsafe { bool::from_napi_value(e, raw) }.unwrap_or(false)), "boolean")
        }
        ValueType::Number => {
            let n = unsafe { f64::from_napi_value(e, raw) }.unwrap_or(f64::NAN);
            let whole = n.is_finite() && n.fract() == 0.0 && n.abs() < 9.0e15;
            (if whole { Value::Int(n as i128) } else { Value::Float(n) }, "number")
        }
        ValueType::String => (Value::Str(js_string(env, v).unwrap_or_default()), "string"),
        ValueType::Function => (Value::Func, "function"),
        ValueType::Object => {
            let mut is = false;
            if unsafe { sys::napi_is_array(e, raw, &mut is) } == sys::Status::napi_ok
                && is
                && depth < MAX_DEPTH
            {
                let items = unsafe { Vec::<Unknown>::from_napi_value(e, raw) }.unwrap_or_default();
                (Value::List(items.iter().map(|i| js_arg(env, i, depth + 1)).collect()), "array")
            } else if let Ok(b) = unsafe { Uint8Array::from_napi_value(e, raw) } {
                (Value::Bytes(b.to_vec()), "Uint8Array")
            } else {
                clear_exception(env);
                (Value::Other, "object")
            }
        }
        ValueType::Undefined => (Value::Other, "undefined"),
        ValueType::Symbol => (Value::Other, "symbol"),
        ValueType::BigInt => (Value::Other, "bigint"),
        _ => (Value::Other, "unknown"),
    };
    Arg::new(value, name)
}

/// An options object's own enumerable properties (undefined ones left out: not given).
fn js_options(
    env: &Env,
    v: &Unknown<'_>,
    code: &'static str,
) -> std::result::Result<Vec<(String, Arg)>, Failure> {
    if v.get_type().ok() != Some(ValueType::Object) {
        let e = OptionError::invalid(
            ErrorKind::Type,
            code,
            "options",
            &js_arg(env, v, 0),
            Style::Node,
            "an object",
        );
        return Err(Failure::option(e));
    }
    let o = Object::from_raw(env.raw(), v.raw());
    let mut keys = ptr::null_mut();
    // SAFETY: a plain N-API call on the JS thread with a value of this env.
    let status = unsafe {
        sys::napi_get_all_property_names(
            env.raw(),
            v.raw(),
            sys::KeyCollectionMode::own_only,
            sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
            sys::KeyConversion::numbers_to_strings,
            &mut keys,
        )
    };
    let failed = |reason: String| Failure { type_error: true, code, message: reason, remote: None };
    ok(status).map_err(|e| failed(e.reason))?;
    // SAFETY: the array N-API just made, of strings.
    let keys = unsafe { Vec::<String>::from_napi_value(env.raw(), keys) }.map_err(|e| failed(e.reason))?;
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let v = o.get_named_property::<Unknown>(&k).map_err(|e| failed(e.reason))?;
        if v.get_type().ok() != Some(ValueType::Undefined) {
            out.push((k, js_arg(env, &v, 0)));
        }
    }
    Ok(out)
}

/// `String(v)`; None if that threw (a `toString` or `Symbol.toPrimitive` of an object), with
/// its exception cleared.
fn js_string(env: &Env, v: &Unknown<'_>) -> Option<String> {
    let s = v.coerce_to_string().and_then(|s| s.into_utf8()).and_then(|s| s.into_owned());
    if s.is_err() {
        clear_exception(env);
    }
    s.ok()
}

/// One addon instance's caches and jobs (one per JS environment: the main thread and each
/// worker).
#[napi]
pub struct Native {
    registry: Registry<Val>,
    caches: Vec<Cache<Key, Val>>,
    sink: Arc<Sink>,
    /// The misses by job number: the core drives them.
    jobs: Jobs<Key, Val>,
    /// The jobs' computations whose synchronous part runs now (`frame`).
    entered: Entered,
    /// Errors for `takeError`, by job.
    failures: HashMap<u64, Failure>,
    /// For `takeList`, by job: the indices of the keys a batch's loader is to load (LOAD), or
    /// the ids of a batch's values (MANY).
    lists: HashMap<u64, Vec<u32>>,
    /// The key bytes of `hit`'s last miss, with the (negated) number it answered.
    missed: Option<(i32, KeyWriter)>,
    /// A hit that is to refresh its value (`refreshAfter`): the number it answered (as a miss,
    /// so the JS side goes on to `start` with the function), the value's id, the refresh.
    refresh: Option<(i32, u32, Box<CoreLead>)>,
    /// Counts `hit`'s misses.
    misses: i32,
    /// The data of the caches' `hit` functions (see [`Native::hit_of`]), freed with the instance;
    /// boxed, as the functions point to them.
    #[allow(clippy::vec_box)]
    hits: Vec<Box<HitOf>>,
    /// The array answers are written to: a reference that keeps it alive, its data, its length.
    out: Option<(sys::napi_ref, *mut f64, usize)>,
    /// Whether the wake-up is ref'd for the jobs that keep the event loop alive.
    held: bool,
    env: sys::napi_env,
}

#[napi]
impl Native {
    /// `wake` is called (asynchronously, on the JS thread) when queues need draining; it keeps
    /// the event loop alive only while a leader waits for the shared tier.
    #[napi(constructor)]
    pub fn new(env: Env, wake: Function<'_, (), Unknown<'static>>) -> Result<Self> {
        let wake: Wake =
            wake.build_threadsafe_function::<()>().callee_handled::<false>().weak::<true>().build()?;
        let sink = Arc::new(Sink {
            released: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            wake,
            woken: AtomicBool::new(false),
        });
        let listener_sink = sink.clone();
        let listener: coopcache::Listener = Arc::new(move |e: &Event| {
            listener_sink.events.lock().push(e.clone());
            listener_sink.ping();
        });
        let job_sink = sink.clone();
        let jobs = Jobs::new(move || job_sink.ping());
        Ok(Native {
            registry: Registry::with(Some(listener), coopcache::Clock::system()),
            caches: Vec::new(),
            sink,
            entered: jobs.entered(),
            jobs,
            failures: HashMap::new(),
            lists: HashMap::new(),
            missed: None,
            refresh: None,
            misses: 0,
            hits: Vec::new(),
            out: None,
            held: false,
            env: env.raw(),
        })
    }

    /// Creates or updates the cache `name`; returns its index. Settings not given keep their
    /// current value (their default for a new cache).
    #[napi]
    pub fn configure(&mut self, env: Env, name: Unknown<'_>, options: Unknown<'_>) -> Result<u32> {
        let name = cache_name(&env, &name).map_err(|f| f.throw(&env))?;
        let given = js_options(&env, &options, options::INVALID_CONFIG).map_err(|f| f.throw(&env))?;
        let base = self.registry.get(&name).map(|c| c.settings()).unwrap_or_default();
        let o = options::configure(base, &given, Style::Node).map_err(|e| Failure::option(e).throw(&env))?;
        match self.registry.configure_from(&name, o) {
            Ok(cache) => Ok(self.index_of(cache) as u32),
            Err(e) => Err(Failure::option(OptionError::config(&e, Style::Node)).throw(&env)),
        }
    }

    fn index_of(&mut self, cache: Cache<Key, Val>) -> usize {
        if let Some(i) = self.caches.iter().position(|c| c.name() == cache.name()) {
            return i;
        }
        self.caches.push(cache);
        self.caches.len() - 1
    }

    /// The error for a cache name that was never configured (ERR_COOPCACHE_UNKNOWN_CACHE), or
    /// the `TypeError` for one that is not a string.
    #[napi]
    pub fn unknown_cache(&self, env: Env, name: Unknown<'_>) -> Result<Unknown<'_>> {
        let f = match cache_name(&env, &name) {
            Ok(name) => Failure::of(CoreError::UnknownCache { name, configured: self.registry.names() }),
            Err(f) => f,
        };
        // SAFETY: a value of this env, created just now.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), f.to_js(env.raw())?) })
    }

    /// Checks a call's options (`wrap` checks its options when wrapping, not at each call).
    #[napi]
    pub fn check_options(&self, env: Env, options: Unknown<'_>) -> Result<()> {
        call_options(&env, Some(options)).map(drop).map_err(|f| f.throw(&env))
    }

    /// For tests only: the cache `name`, configured after this call, reads a manual clock;
    /// returns the function that moves it forward by a number of seconds.
    #[napi(ts_return_type = "(seconds: number) => void")]
    pub fn manual_clock<'e>(&self, env: &'e Env, name: String) -> Result<Function<'e, f64, ()>> {
        let Some(clock) = self.registry.manual_clock(&name) else {
            return Err(Error::from_reason(format!(
                "coopcache: _manualClock({name:?}): the cache exists already; call it before the first configure"
            )));
        };
        env.create_function_from_closure("advance", move |ctx| {
            let seconds: f64 = ctx.get(0)?;
            clock.advance(
                Duration::try_from_secs_f64(seconds).map_err(|e| Error::from_reason(e.to_string()))?,
            );
            Ok(())
        })
    }

    /// Claims the default-key name of the function `wrap` numbered `owner` in the cache (see
    /// [`Registry::claim_name`]; a name that is not a string is no name): true if the claim is
    /// new (the JS side frees it when the function is collected).
    #[napi]
    pub fn claim_name(&self, env: Env, cache: u32, name: Unknown<'_>, owner: f64) -> Result<bool> {
        let name = if name.get_type()? == ValueType::String {
            js_string(&env, &name).unwrap_or_default()
        } else {
            String::new()
        };
        let c = self.caches[cache as usize].name();
        self.registry
            .claim_name(c, &name, owner as u64, Style::Node)
            .map_err(|e| Failure::option(e).throw(&env))
    }

    /// Frees a name `claimName` gave `owner` (its function was collected).
    #[napi]
    pub fn release_name(&self, cache: u32, name: String, owner: f64) {
        self.registry.release_name(self.caches[cache as usize].name(), &name, owner as u64);
    }

    /// The configured names, sorted.
    #[napi]
    pub fn names(&self) -> Vec<String> {
        self.registry.names()
    }

    /// Keeps the key bytes of `hit`'s miss for `start`; returns the (negative) number `hit`
    /// answers.
    #[cold]
    fn missed(&mut self, w: KeyWriter) -> i32 {
        self.misses = self.misses % (1 << 30) + 1;
        self.missed = Some((self.misses, w));
        -self.misses
    }

    /// The cache `cache`'s `hit(key)`: a plain N-API function bound to this instance and the
    /// cache (the JS side keeps the instance alive with it), the hit path alone: the value's id;
    /// or on a miss a negative number, for `start` to reuse the key's bytes; or 0 for a bad key
    /// (which `start` reports). It never touches the call driver. Bound to its cache so that a
    /// hit converts one argument, not two.
    #[napi(ts_return_type = "(key: unknown) => number")]
    pub fn hit_of<'e>(&mut self, env: &'e Env, cache: u32) -> Result<Unknown<'e>> {
        let data = Box::new(HitOf { native: self, cache: cache as usize });
        let f = raw_function(env, c"hit", raw::hit, (&*data as *const HitOf).cast_mut().cast())?;
        self.hits.push(data);
        Ok(f)
    }

    /// The functions of the miss path, as plain N-API functions bound to this instance (which
    /// the JS side keeps alive with them): napi-rs's method dispatch costs more than a whole
    /// hit. `start` and `computed` are the methods of the same names; `frame` enters or leaves
    /// a computation (see [`raw::frame`]).
    #[napi(ts_return_type = "Record<'start' | 'frame' | 'computed', (...args: any[]) => any>")]
    pub fn fns<'e>(&mut self, env: &'e Env) -> Result<Object<'e>> {
        let data: *mut Native = self;
        let mut o = Object::new(env)?;
        let fns: [(&std::ffi::CStr, RawFn); 3] =
            [(c"start", raw::start), (c"frame", raw::frame), (c"computed", raw::computed)];
        for (name, cb) in fns {
            // `data` outlives the function: the JS side holds this object for as long as it
            // holds the function.
            o.set(name.to_str().unwrap_or_default(), raw_function(env, name, cb, data.cast())?)?;
        }
        Ok(o)
    }

    /// Starts job `job`: a miss in `cache` of a key (its bytes) with the call's options, made
    /// from inside the computations of the jobs `ctx`; or, for the hit that answered `missed`
    /// and is to refresh its value, the value for the caller and the refresh, detached.
    /// Returns what the JS side does next (see [`act`]).
    fn start(
        &mut self,
        job: f64,
        cache: u32,
        call: std::result::Result<(CallOptions, KeyWriter), Failure>,
        ctx: Option<Vec<f64>>,
        missed: i32,
    ) -> Answer {
        let mut out = Vec::new();
        let refresh = self.refresh.take().filter(|(token, _, _)| *token == missed);
        match call {
            Err(f) => {
                self.failures.insert(job as u64, f);
                out.extend([job, act::ERROR + act::LAST, 0.0]);
            }
            Ok((opts, _)) if refresh.is_some() => {
                let (_, value, mut lead) = refresh.expect("checked");
                lead.set_options(&opts);
                out.extend([job, act::VALUE, f64::from(value)]);
                let mut acts = Vec::new();
                let shared = self.caches[cache as usize].shared().is_some();
                self.jobs.start_lead(job as u64, lead, shared, &mut acts);
                self.triples(acts, &mut out);
            }
            Ok((opts, w)) => {
                let c = &self.caches[cache as usize];
                let call = c.call(w.finish(), &opts, Caller::Blocking);
                let ctx: Vec<u64> = ctx.unwrap_or_default().into_iter().map(|j| j as u64).collect();
                let (mut acts, shared) = (Vec::new(), c.shared().is_some());
                // A promise cannot be cancelled: without a timeout its caller waits to the end.
                match opts.timeout {
                    None if ctx.is_empty() => self.jobs.start_patient(job as u64, call, shared, &mut acts),
                    None => self.jobs.start(job as u64, call, shared, ctx, &mut acts),
                    Some(t) => {
                        out.extend([job, act::ARM, t.as_nanos() as f64 / 1e6]);
                        self.jobs.start(job as u64, call, shared, ctx, &mut acts);
                    }
                }
                self.triples(acts, &mut out);
            }
        }
        self.output(out)
    }

    /// The core's actions as triples for the JS side (see [`act`]).
    fn triples(&mut self, acts: Vec<Action<Val>>, out: &mut Vec<f64>) {
        for a in acts {
            let (action, arg) = match a.what {
                Do::Settle(r) => self.settle(a.job, r),
                Do::Compute => (act::COMPUTE, 0.0),
                Do::Decode => (act::DECODE, 0.0),
                Do::Encode(v) => (act::ENCODE, f64::from(v.0.id)),
                Do::Gone => (act::GONE, 0.0),
                Do::Follow(leader) => (act::FOLLOW, leader as f64),
                Do::Load(at) => {
                    self.lists.insert(a.job, at.into_iter().map(|i| i as u32).collect());
                    (act::LOAD, 0.0)
                }
                // The first key's error rejects the batch's promise, as a single call's would.
                Do::SettleMany(values) => {
                    match values.into_iter().collect::<std::result::Result<Vec<_>, _>>() {
                        Ok(values) => {
                            self.lists.insert(a.job, values.iter().map(|v| v.0.id).collect());
                            (act::MANY, 0.0)
                        }
                        Err(e) => self.settle(a.job, Err(e)),
                    }
                }
            };
            out.extend([a.job as f64, action + if a.last { act::LAST } else { 0.0 }, arg]);
        }
    }

    /// The action (and its argument) that settles the job's caller with `r`.
    fn settle(&mut self, job: u64, r: std::result::Result<Val, CoreError>) -> (f64, f64) {
        match r {
            Ok(v) => (act::VALUE, f64::from(v.0.id)),
            Err(e) => match e.downcast_ref::<JsError>() {
                Some(j) => (act::FAILED, f64::from(j.0.0.id)),
                None => {
                    self.failures.insert(job, Failure::of(e));
                    (act::ERROR, 0.0)
                }
            },
        }
    }

    /// Drives the jobs that callbacks queued (see [`Jobs::drain`]), refs or unrefs the wake-up
    /// for the jobs that keep the event loop alive, and answers the JS side.
    fn output(&mut self, mut out: Vec<f64>) -> Answer {
        let mut acts = Vec::new();
        self.jobs.drain(&mut acts);
        self.triples(acts, &mut out);
        let want = self.jobs.holds();
        if want != self.held {
            let tsfn = self.sink.wake.raw();
            // SAFETY: on the JS thread of the env that created the threadsafe function.
            let status = unsafe {
                match want {
                    true => sys::napi_ref_threadsafe_function(self.env, tsfn),
                    false => sys::napi_unref_threadsafe_function(self.env, tsfn),
                }
            };
            if status == sys::Status::napi_ok {
                self.held = want;
            }
        }
        match self.out {
            Some((_, buf, cap)) if out.len() <= cap => {
                // SAFETY: `buf` holds `cap` f64s, kept alive by the reference to its array.
                unsafe { ptr::copy_nonoverlapping(out.as_ptr(), buf, out.len()) };
                Either::A(out.len() as u32)
            }
            _ => Either::B(Float64Array::new(out)),
        }
    }

    /// Where answers go from now on (see [`Answer`]).
    #[napi]
    pub fn set_output(&mut self, env: Env, buf: Unknown<'_>) -> Result<()> {
        let (mut ty, mut len, mut data) = (0, 0usize, ptr::null_mut());
        let mut reference = ptr::null_mut();
        // SAFETY: plain N-API calls on the JS thread with a value of this env.
        unsafe {
            ok(sys::napi_get_typedarray_info(
                env.raw(),
                buf.raw(),
                &mut ty,
                &mut len,
                &mut data,
                ptr::null_mut(),
                ptr::null_mut(),
            ))?;
            if ty != sys::TypedarrayType::float64_array {
                return Err(Error::from_reason("coopcache: setOutput needs a Float64Array"));
            }
            ok(sys::napi_create_reference(env.raw(), buf.raw(), 1, &mut reference))?;
            if let Some((old, _, _)) = self.out.take() {
                sys::napi_delete_reference(env.raw(), old);
            }
        }
        self.out = Some((reference, data.cast(), len));
        Ok(())
    }

    /// The job's caller gives up (its `timeoutMs` passed): see [`Jobs::give_up`].
    #[napi]
    pub fn give_up(&mut self, job: f64, ms: f64) -> Answer {
        let mut acts = Vec::new();
        let timeout = Duration::try_from_secs_f64(ms / 1000.0).unwrap_or_default();
        self.jobs.give_up(job as u64, timeout, &mut acts);
        self.next(acts)
    }

    /// The error of a job whose action was ERROR.
    #[napi]
    pub fn take_error(&mut self, env: Env, job: f64) -> Result<Unknown<'_>> {
        let f = self.failures.remove(&(job as u64)).unwrap_or(Failure {
            type_error: false,
            code: "ERR_COOPCACHE_INTERNAL",
            message: "coopcache: no error for this call".to_owned(),
            remote: None,
        });
        // SAFETY: a value of this env, created just now.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), f.to_js(env.raw())?) })
    }

    /// Reports how the job's computation ended (see [`outcome`]): the value `value` (weighing
    /// `weight` bytes besides its key), or the error `value`, with its type name and message
    /// for the other processes.
    fn computed(
        &mut self,
        job: f64,
        kind: u32,
        value: u32,
        weight: f64,
        failed: Option<(String, String)>,
    ) -> Answer {
        let v = self.val(value);
        let outcome = match (kind, failed) {
            (outcome::NOCACHE, _) => Outcome::NoCache(v),
            (outcome::FAILED, Some((type_name, message))) => {
                let error = CoreError::Computation(Arc::new(JsError(v, format!("{type_name}: {message}"))));
                Outcome::Failed { error, type_name, message }
            }
            _ => {
                debug_assert_eq!(kind, outcome::STORE);
                Outcome::Store { value: v, weight: bytes(weight) }
            }
        };
        let mut acts = Vec::new();
        self.jobs.computed(job as u64, outcome, &mut acts);
        self.next(acts)
    }

    /// Starts job `job`: the batch `cachedMany(name, keys, loader)` in `cache`, made from
    /// inside the computations of the jobs `ctx` (see [`Jobs::start_batch`]).
    #[napi]
    pub fn many(&mut self, job: f64, cache: u32, keys: Array<'_>, ctx: Option<Vec<f64>>) -> Answer {
        let keys: std::result::Result<Vec<Key>, Failure> = (0..keys.len())
            .map(|i| {
                let k = keys.get::<Unknown>(i).ok().flatten().ok_or_else(|| Failure::key("a hole".into()))?;
                key_writer(&k).map(KeyWriter::finish)
            })
            .collect();
        let mut out = Vec::new();
        match keys {
            Err(f) => {
                self.failures.insert(job as u64, f);
                out.extend([job, act::ERROR + act::LAST, 0.0]);
            }
            Ok(keys) => {
                let batch = self.caches[cache as usize].batch(keys, Caller::Blocking);
                let ctx = ctx.unwrap_or_default().into_iter().map(|j| j as u64).collect();
                let mut acts = Vec::new();
                self.jobs.start_batch(job as u64, batch, ctx, &mut acts);
                self.triples(acts, &mut out);
            }
        }
        self.output(out)
    }

    /// The list of a LOAD action (the indices of the keys to load) or of a MANY action (the ids
    /// of the batch's values, in the keys' order).
    #[napi]
    pub fn take_list(&mut self, job: f64) -> Vec<u32> {
        self.lists.remove(&(job as u64)).unwrap_or_default()
    }

    /// Reports what a batch's loader returned: its keys, the ids of their values, and their
    /// sizes in bytes. A key that is not a key fails the load.
    #[napi]
    pub fn loaded(&mut self, job: f64, keys: Array<'_>, values: Vec<u32>, weights: Vec<f64>) -> Answer {
        let mut loaded = HashMap::new();
        let mut result = Ok(());
        for (i, (&value, &weight)) in values.iter().zip(&weights).enumerate() {
            let v = self.val(value);
            match keys.get::<Unknown>(i as u32).ok().flatten().map(|k| key_writer(&k)) {
                Some(Ok(w)) => drop(loaded.insert(w.finish(), (v, bytes(weight)))),
                Some(Err(f)) => {
                    result =
                        Err(CoreError::computation(format!("the loader returned a bad key: {}", f.message)))
                }
                None => {}
            }
        }
        let mut acts = Vec::new();
        self.jobs.loaded(job as u64, result.map(|()| loaded), &mut acts);
        self.next(acts)
    }

    /// The bytes from the shared tier that a DECODE action asks to deserialize.
    #[napi]
    pub fn payload(&mut self, job: f64) -> Option<Buffer> {
        self.jobs.payload(job as u64).map(Into::into)
    }

    /// Reports the value `value` deserialized from the shared tier's bytes (weighing `weight`
    /// bytes), or why they could not be (`value` 0: the value is then computed here).
    #[napi]
    pub fn decoded(&mut self, job: f64, value: u32, weight: f64, why: Option<String>) -> Answer {
        let v = (value != 0).then(|| (self.val(value), bytes(weight)));
        let mut acts = Vec::new();
        self.jobs.decoded(job as u64, v.ok_or_else(|| why.unwrap_or_default()), &mut acts);
        self.next(acts)
    }

    /// Reports the bytes of the value an ENCODE action asked to serialize, or the type name and
    /// message of why it could not be (the other processes are told so; this one keeps its
    /// value).
    #[napi]
    pub fn encoded(&mut self, job: f64, payload: Either<Buffer, (String, String)>) -> Answer {
        let bytes = match payload {
            Either::A(b) => Ok(b.to_vec()),
            Either::B(why) => Err(why),
        };
        let mut acts = Vec::new();
        self.jobs.encoded(job as u64, bytes, &mut acts);
        self.next(acts)
    }

    /// Answers the JS side with what the core asked after a report.
    fn next(&mut self, acts: Vec<Action<Val>>) -> Answer {
        let mut out = Vec::new();
        self.triples(acts, &mut out);
        self.output(out)
    }

    /// Drives the jobs that callbacks queued (the wake-up calls this first), and re-arms the
    /// wake-up.
    #[napi]
    pub fn take_ready(&mut self) -> Answer {
        self.sink.woken.store(false, Ordering::Release);
        self.output(Vec::new())
    }

    /// A release handle for a value the JS side put in its map.
    fn val(&self, id: u32) -> Val {
        Val(Arc::new(ValInner { id, sink: self.sink.clone() }))
    }

    /// Value ids the core let go of; the JS side deletes them from its map.
    #[napi]
    pub fn take_released(&self) -> Vec<u32> {
        std::mem::take(&mut *self.sink.released.lock())
    }

    /// Events since the last call, as triples `[name, payload, warning]`: `full`, `evict`,
    /// `sharedDown`, `sharedUp` and `valueRefused`, with the warning to print instead when nobody
    /// listens (null: nothing to print).
    #[napi(ts_return_type = "Array<unknown>")]
    pub fn take_events<'e>(&self, env: &'e Env) -> Result<Array<'e>> {
        let evs = std::mem::take(&mut *self.sink.events.lock());
        let mut out = Vec::with_capacity(evs.len() * 3);
        for e in evs {
            let mut o = Object::new(env)?;
            for (field, v) in e.fields() {
                match v {
                    Field::Str(s) => o.set(Style::Node.name(field), s)?,
                    Field::Num(n) => o.set(Style::Node.name(field), n as f64)?,
                    Field::Bool(b) => o.set(Style::Node.name(field), b)?,
                }
            }
            let warning = (e.level() == Level::Warning).then(|| e.message());
            let name = Style::Node.name(e.name());
            out.push(env.create_string(&name)?.to_unknown());
            out.push(o.to_unknown());
            out.push(match warning {
                Some(w) => env.create_string(&w)?.to_unknown(),
                None => Null.into_unknown(env)?,
            });
        }
        Array::from_vec(env, out)
    }

    /// The stored value's id for `key`, without computing (0: none).
    #[napi]
    pub fn get(&self, env: Env, cache: u32, key: Unknown<'_>) -> Result<u32> {
        let w = key_writer(&key).map_err(|f| f.throw(&env))?;
        Ok(self.caches[cache as usize].get(w.as_bytes()).map_or(0, |v| v.0.id))
    }

    /// The serializer of the cache's shared tier (`v8` or `json`: the JS side serializes).
    #[napi]
    pub fn serializer(&self, cache: u32) -> &'static str {
        let tier = self.caches.get(cache as usize).and_then(|c| c.shared());
        tier.and_then(|t| t.serializer()).unwrap_or("v8")
    }

    /// The canonical encoding of a key (for tests: it must match the other languages').
    #[napi]
    pub fn key_bytes(&self, env: Env, key: Unknown<'_>) -> Result<Buffer> {
        Ok(js_key(&env, &key)?.as_bytes().to_vec().into())
    }
}

/// A cache's handle: `Cache` in index.js extends this class with what needs the JS side (its
/// values, running functions).
#[napi]
pub struct NativeCache {
    cache: Cache<Key, Val>,
}

#[napi]
impl NativeCache {
    /// The handle on the cache at `index` of `native` (what `configure` returned).
    #[napi(constructor)]
    pub fn new(native: &Native, index: u32) -> Self {
        NativeCache { cache: native.caches[index as usize].clone() }
    }

    /// The cache's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.cache.name().to_owned()
    }

    /// The current settings (the memory limit in bytes, durations in seconds).
    #[napi(getter, ts_return_type = "Record<string, unknown>")]
    pub fn settings<'e>(&self, env: &'e Env) -> Result<Object<'e>> {
        let s = self.cache.settings();
        let mut o = Object::new(env)?;
        o.set("memoryLimit", s.memory_limit.resolve().unwrap_or(0) as f64)?;
        o.set("cacheDuration", s.cache_duration.as_secs_f64())?;
        o.set("whenFull", s.when_full.to_string())?;
        o.set("maxConcurrency", s.max_concurrency.map(|n| n as f64))?;
        o.set("refreshAfter", s.refresh_after.map(|d| d.as_secs_f64()))?;
        o.set("serveStaleOnError", s.serve_stale_on_error)?;
        o.set("earlyRefresh", s.early_refresh)?;
        Ok(o)
    }

    /// Removes the key's entry: true if one was removed.
    #[napi]
    pub fn invalidate(&self, env: Env, key: Unknown<'_>) -> Result<bool> {
        Ok(self.cache.invalidate(&js_key(&env, &key)?))
    }

    /// Removes every entry stored with `tag` (a string); returns how many.
    #[napi]
    pub fn invalidate_tag(&self, env: Env, tag: Unknown<'_>) -> Result<f64> {
        let arg = js_arg(&env, &tag, 0);
        let tag = options::tag(&arg, Style::Node).map_err(|e| Failure::option(e).throw(&env))?;
        Ok(self.cache.invalidate_tag(tag) as f64)
    }

    /// Removes every entry.
    #[napi]
    pub fn clear(&self) {
        self.cache.clear();
    }

    /// The counters (the shared tier's too, if the cache has one).
    #[napi(ts_return_type = "Record<string, number>")]
    pub fn stats<'e>(&self, env: &'e Env) -> Result<Object<'e>> {
        let c = &self.cache;
        let mut o = Object::new(env)?;
        for (name, n) in
            c.stats().fields().into_iter().chain(c.shared().into_iter().flat_map(|t| t.stats().fields()))
        {
            o.set(Style::Node.name(name), n as f64)?;
        }
        Ok(o)
    }

    /// Whether the cache's shared tier is connected now (null without one).
    #[napi(getter)]
    pub fn shared_up(&self) -> Option<bool> {
        self.cache.shared().map(|t| t.is_up())
    }
}

/// The key, or the thrown error of why it is not a key.
fn js_key(env: &Env, key: &Unknown<'_>) -> Result<Key> {
    key_writer(key).map(KeyWriter::finish).map_err(|f| f.throw(env))
}

/// The key's canonical bytes, or why it is not a key.
fn key_writer(key: &Unknown<'_>) -> std::result::Result<KeyWriter, Failure> {
    let mut w = KeyWriter::new();
    // SAFETY: the env and value come from N-API for the current call, on the JS thread.
    match unsafe { write_key(key.value().env, key.raw(), &mut w, 0) } {
        Ok(()) => Ok(w),
        Err(msg) => Err(Failure::key(msg)),
    }
}

/// The core's options of a call (`{ timeoutMs, tags, refreshAfter, sizeOf }`), once it checked
/// them.
fn call_options(env: &Env, options: Option<Unknown<'_>>) -> std::result::Result<CallOptions, Failure> {
    let Some(options) = options else { return Ok(CallOptions::new()) };
    let given = js_options(env, &options, options::INVALID_OPTION)?;
    let c = options::call(&given, Style::Node).map_err(Failure::option)?;
    let mut opts = CallOptions::new().tags(c.tags);
    (opts.timeout, opts.refresh_after) = (c.timeout, c.refresh_after);
    Ok(opts)
}

/// A weight from JS as bytes (anything but a positive finite number is 0).
fn bytes(weight: f64) -> u64 {
    if weight.is_finite() && weight > 0.0 { weight as u64 } else { 0 }
}

/// The type name and message of a thrown JS value, as other processes are told: an object's
/// string `name` (else `Error`) and string `message` (else the value as a string).
fn describe(env: &Env, e: Unknown<'_>) -> (String, String) {
    // A property of an object that is a string (a getter that throws: none).
    let prop = |name: &str| -> Option<String> {
        if e.get_type().ok() != Some(ValueType::Object) {
            return None;
        }
        let v = Object::from_raw(env.raw(), e.raw()).get::<Unknown>(name);
        if v.is_err() {
            clear_exception(env);
        }
        v.ok()
            .flatten()
            .filter(|v| v.get_type().ok() == Some(ValueType::String))
            .and_then(|v| js_string(env, &v))
    };
    let name = prop("name").unwrap_or_else(|| "Error".to_owned());
    let message = prop("message").or_else(|| js_string(env, &e));
    (name, message.unwrap_or_else(|| "(unprintable)".to_owned()))
}

/// Clears an exception a getter or `toString` threw while describing an error.
fn clear_exception(env: &Env) {
    let mut e = ptr::null_mut();
    // SAFETY: a plain N-API call on the JS thread.
    unsafe { sys::napi_get_and_clear_last_exception(env.raw(), &mut e) };
}

const MAX_DEPTH: u32 = 64;

fn type_error(what: &str) -> String {
    format!(
        "coopcache: a key must be a string, number, bigint, boolean, null, Buffer/Uint8Array, \
         or an array of these (nested); got {what}"
    )
}

/// Writes the JS value `v` into `w`.
///
/// # Safety
/// `env` and `v` must be valid for the current call on the JS thread.
unsafe fn write_key(
    env: sys::napi_env,
    v: sys::napi_value,
    w: &mut KeyWriter,
    depth: u32,
) -> std::result::Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("coopcache: a key is nested too deeply (a cyclic array?)".into());
    }
    // The common keys first, each asked for directly (a refused read costs less than
    // `napi_typeof`, which tests one type after another): a string, then a number.
    // SAFETY: see the function's contract.
    match unsafe { write_str(env, v, w) } {
        Err(status) if status == sys::Status::napi_string_expected => {}
        r => return r.map_err(status_error),
    }
    let mut d = 0f64;
    // SAFETY: see the function's contract.
    match unsafe { sys::napi_get_value_double(env, v, &mut d) } {
        sys::Status::napi_ok => {
            w.float(d);
            return Ok(());
        }
        sys::Status::napi_number_expected => {}
        status => return Err(status_error(status)),
    }
    let mut t = 0;
    unsafe {
        check(sys::napi_typeof(env, v, &mut t))?;
        match t {
            sys::ValueType::napi_boolean => {
                let mut b = false;
                check(sys::napi_get_value_bool(env, v, &mut b))?;
                w.int(b as i64);
            }
            sys::ValueType::napi_null => {
                w.none();
            }
            sys::ValueType::napi_bigint => {
                let mut sign = 0i32;
                let mut count = 0usize;
                check(sys::napi_get_value_bigint_words(
                    env,
                    v,
                    ptr::null_mut(),
                    &mut count,
                    ptr::null_mut(),
                ))?;
                let mut words = vec![0u64; count.max(1)];
                check(sys::napi_get_value_bigint_words(env, v, &mut sign, &mut count, words.as_mut_ptr()))?;
                let mag: Vec<u8> = words[..count].iter().rev().flat_map(|w| w.to_be_bytes()).collect();
                w.big_int(sign == 1, &mag);
            }
            sys::ValueType::napi_object => {
                let mut is = false;
                check(sys::napi_is_array(env, v, &mut is))?;
                if is {
                    let mut n = 0u32;
                    check(sys::napi_get_array_length(env, v, &mut n))?;
                    w.list(n as usize);
                    for i in 0..n {
                        let mut item = ptr::null_mut();
                        check(sys::napi_get_element(env, v, i, &mut item))?;
                        write_key(env, item, w, depth + 1)?;
                    }
                    return Ok(());
                }
                check(sys::napi_is_typedarray(env, v, &mut is))?;
                if is {
                    let mut ty = 0;
                    let mut len = 0usize;
                    let mut data = ptr::null_mut();
                    let mut ab = ptr::null_mut();
                    let mut off = 0usize;
                    check(sys::napi_get_typedarray_info(
                        env, v, &mut ty, &mut len, &mut data, &mut ab, &mut off,
                    ))?;
                    if ty == sys::TypedarrayType::uint8_array {
                        let bytes = if len == 0 {
                            &[][..]
                        } else {
                            std::slice::from_raw_parts(data as *const u8, len)
                        };
                        w.bytes(bytes);
                        return Ok(());
                    }
                    return Err(type_error("a typed array other than Uint8Array"));
                }
                return Err(type_error("an object"));
            }
            sys::ValueType::napi_undefined => return Err(type_error("undefined")),
            sys::ValueType::napi_symbol => return Err(type_error("a symbol")),
            sys::ValueType::napi_function => return Err(type_error("a function")),
            _ => return Err(type_error("an unsupported value")),
        }
    }
    Ok(())
}

/// Writes a JS string. Read as UTF-16 (V8's UTF-8 writer costs more than the rest of a hit),
/// then encoded here; lone surrogates become U+FFFD, as N-API's UTF-8 reader does.
///
/// # Safety
/// `env` and `v` (a string) must be valid for the current call on the JS thread.
unsafe fn write_str(
    env: sys::napi_env,
    v: sys::napi_value,
    w: &mut KeyWriter,
) -> std::result::Result<(), sys::napi_status> {
    const N: usize = 128;
    let mut buf = [std::mem::MaybeUninit::<u16>::uninit(); N];
    let mut len = 0usize;
    // SAFETY: see the function's contract; the buffer holds N units.
    let status = unsafe { sys::napi_get_value_string_utf16(env, v, buf.as_mut_ptr().cast(), N, &mut len) };
    if status != sys::Status::napi_ok {
        return Err(status);
    }
    if len < N - 1 {
        // SAFETY: N-API wrote `len` units.
        let units: &[u16] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), len) };
        // Narrowed and checked in one pass: ASCII if no unit has a bit above the low 7.
        let mut ascii = [0u8; N];
        let mut any = 0u16;
        for (a, &u) in ascii.iter_mut().zip(units) {
            *a = u as u8;
            any |= u;
        }
        if any < 0x80 {
            // SAFETY: every one of the `len` bytes is ASCII.
            w.str(unsafe { std::str::from_utf8_unchecked(&ascii[..len]) });
        } else {
            w.str(&String::from_utf16_lossy(units));
        }
        return Ok(());
    }
    // SAFETY: as above, with a buffer of the string's full length.
    unsafe {
        check_status(sys::napi_get_value_string_utf16(env, v, ptr::null_mut(), 0, &mut len))?;
        let mut big = vec![0u16; len + 1];
        check_status(sys::napi_get_value_string_utf16(env, v, big.as_mut_ptr(), big.len(), &mut len))?;
        w.str(&String::from_utf16_lossy(&big[..len]));
    }
    Ok(())
}

fn check_status(status: sys::napi_status) -> std::result::Result<(), sys::napi_status> {
    if status == sys::Status::napi_ok { Ok(()) } else { Err(status) }
}

fn check(status: sys::napi_status) -> std::result::Result<(), String> {
    check_status(status).map_err(status_error)
}

fn status_error(status: sys::napi_status) -> String {
    format!("coopcache: reading the key failed (napi status {status})")
}

/// A plain N-API callback.
type RawFn = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// The JS function `name` that calls `cb` with `data`, which must outlive it.
fn raw_function<'e>(
    env: &'e Env,
    name: &std::ffi::CStr,
    cb: RawFn,
    data: *mut std::ffi::c_void,
) -> Result<Unknown<'e>> {
    let mut f = ptr::null_mut();
    // SAFETY: a plain N-API call on the JS thread; `f` is then a live value of this call's env.
    unsafe {
        ok(sys::napi_create_function(
            env.raw(),
            name.as_ptr(),
            name.count_bytes() as isize,
            Some(cb),
            data,
            &mut f,
        ))?;
        Ok(Unknown::from_raw_unchecked(env.raw(), f))
    }
}

/// The data of a cache's `hit` function (see [`Native::hit_of`]).
struct HitOf {
    native: *mut Native,
    cache: usize,
}

/// The functions of [`Native::fns`] (plain N-API callbacks whose data is the `Native`) and
/// `hit` (whose data is a [`HitOf`]).
mod raw {
    use super::*;

    /// Runs `f` with the instance (as a pointer) and the first `N` arguments of a call from JS
    /// (missing ones are `undefined`), throwing its error.
    ///
    /// # Safety
    /// `env` and `info` come from N-API for a call of a function created by [`Native::fns`],
    /// whose data is the `Native` that created it, alive (the JS side holds it with the
    /// functions). `f` may turn the pointer into a reference only once it is done with what may
    /// run JS (getters of the options or of a thrown error, a key's array elements): that JS may
    /// call into this instance again.
    unsafe fn method<const N: usize>(
        env: sys::napi_env,
        info: sys::napi_callback_info,
        f: impl FnOnce(*mut Native, &Env, [sys::napi_value; N]) -> Result<sys::napi_value>,
    ) -> sys::napi_value {
        let mut argc = N;
        let mut argv = [ptr::null_mut(); N];
        let mut data = ptr::null_mut();
        // SAFETY: see the function's contract.
        unsafe {
            if sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data)
                != sys::Status::napi_ok
            {
                return ptr::null_mut();
            }
            match f(data.cast(), &Env::from_raw(env), argv) {
                Ok(v) => v,
                Err(e) => {
                    napi::JsError::from(e).throw_into(env);
                    ptr::null_mut()
                }
            }
        }
    }

    /// `hit(key)`: see [`Native::hit_of`]. (Not through `method`: this is the hit path.) It
    /// answers in the output array's first element (see [`Answer`]), which costs the JS side
    /// less than a returned number.
    ///
    /// # Safety
    /// As for `method`, but the function's data is a [`HitOf`] of a live `Native`.
    pub unsafe extern "C" fn hit(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
        let mut argc = 1usize;
        let mut key = ptr::null_mut();
        let mut data = ptr::null_mut();
        // SAFETY: as for `method`; the key is read before the instance is borrowed.
        unsafe {
            if sys::napi_get_cb_info(env, info, &mut argc, &mut key, ptr::null_mut(), &mut data)
                != sys::Status::napi_ok
            {
                return ptr::null_mut();
            }
            let mut w = KeyWriter::new();
            let read = write_key(env, key, &mut w, 0).is_ok();
            let HitOf { native, cache } = *(data as *const HitOf);
            let this = &mut *native;
            let mut id = 0;
            if let Some(c) = this.caches.get(cache).filter(|_| read) {
                // (In shared mode the core itself tells the shared tier of hits, batched.)
                // The call's options are the miss path's: a refresh gets them in `start`.
                let opts = CallOptions::new();
                let owned = || w.clone().finish();
                id = match c.hit_refresh_by(w.as_bytes(), owned, &opts, Caller::Blocking, |v| v.0.id) {
                    Some((id, None)) => id as i32,
                    Some((value, Some(lead))) => {
                        let token = this.missed(w);
                        this.refresh = Some((token, value, lead));
                        token
                    }
                    None => this.missed(w),
                };
            }
            if let Some((_, out, _)) = this.out {
                *out = f64::from(id);
            }
        }
        ptr::null_mut()
    }

    /// `start(job, cache, key, options, ctx, missed)`: see [`Native::start`].
    pub unsafe extern "C" fn start(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
        // SAFETY: as for `method`: the options and the key are read before the instance is
        // borrowed (but for taking `hit`'s key bytes).
        unsafe {
            method(env, info, |this, e, [job, cache, key, options, ctx, missed]| {
                let opts = call_options(e, Option::<Unknown>::from_napi_value(env, options)?);
                let missed = i32::from_napi_value(env, missed)?;
                let written = match (*this).missed.take() {
                    Some((token, w)) if token == -missed => Ok(w),
                    _ => key_writer(&Unknown::from_raw_unchecked(env, key)),
                };
                let out = (*this).start(
                    f64::from_napi_value(env, job)?,
                    u32::from_napi_value(env, cache)?,
                    opts.and_then(|opts| Ok((opts, written?))),
                    Option::<Vec<f64>>::from_napi_value(env, ctx)?,
                    missed,
                );
                ToNapiValue::to_napi_value(env, out)
            })
        }
    }

    /// `frame(job, inside)`: the job's computation enters ([`Entered::enter`]) or leaves
    /// ([`Entered::exit`]) its synchronous part.
    pub unsafe extern "C" fn frame(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
        // SAFETY: as for `method`.
        unsafe {
            method(env, info, |this, _, [job, inside]| {
                let job = f64::from_napi_value(env, job)? as u64;
                match bool::from_napi_value(env, inside)? {
                    true => (*this).entered.enter(&(*this).jobs, job),
                    false => (*this).entered.exit(job),
                }
                <()>::to_napi_value(env, ())
            })
        }
    }

    /// `computed(job, kind, value, weight, error)`: see [`Native::computed`].
    pub unsafe extern "C" fn computed(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
        // SAFETY: as for `method`: the error is described before the instance is borrowed.
        unsafe {
            method(env, info, |this, e, [job, kind, value, weight, error]| {
                let kind = u32::from_napi_value(env, kind)?;
                let failed =
                    (kind == outcome::FAILED).then(|| describe(e, Unknown::from_raw_unchecked(env, error)));
                let out = (*this).computed(
                    f64::from_napi_value(env, job)?,
                    kind,
                    u32::from_napi_value(env, value)?,
                    f64::from_napi_value(env, weight)?,
                    failed,
                );
                ToNapiValue::to_napi_value(env, out)
            })
        }
    }
}
