//! The Node binding of coopcache: a thin napi-rs layer over the core's flight protocol.
//!
//! The JS side (`bindings-node/js/index.js`) keeps the JS values (computed values and thrown errors) in a `Map`
//! from a numeric id to the value; the core stores a small `Send` handle ([`Val`]) holding that
//! id. When the core drops the last clone of a handle (eviction, expiry, clear, or a value that
//! was never stored), the id goes on a release queue and the JS thread is woken through an
//! unref'd threadsafe function to delete it from the `Map`, so values are released on the JS
//! thread and nothing keeps the process alive.
//!
//! Waiting never blocks: a waiter's `Pending` handle is kept in a table while its caller waits,
//! and its completion is queued for the JS side, which settles the caller's promise. All
//! computations of one addon instance run on its own JS thread, so completions normally fire
//! there, during a call into this module; the JS side drains the queue right after such calls.
//! A completion that fires on another thread wakes the JS thread through the same threadsafe
//! function.
//!
//! Shared mode (a cache configured with a Redis URL): the core's shared tier does the protocol;
//! this layer moves bytes. A local leader asks it before computing (`askRemote`); the answer
//! (a value to deserialize, an error from another process, or the key's lease in Redis) arrives
//! through the same completion queue, and so does Redis's confirmation of what the leader
//! publishes (`publish` / `publishFail`). Serialization (v8 or JSON) happens on the JS side.
//!
//! Native calls return a `u32` whose low 3 bits say what happened ([`kind`]) and whose other
//! bits carry an id or token, so the hit path allocates no JS object.

#![deny(clippy::all)]

use std::collections::HashMap;
use std::fmt;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use coopcache::shared::{Blob, Remote, RemoteError, RemoteLease, SharedMode, SharedSettings};
use coopcache::{
    Begin, Cache, Completion, Computing, ConfigError, Error as CoreError, Event, Key, KeyWriter, Lease,
    MemoryLimit, Pending, Permit, Registry, Settings, Waiter, WhenFull,
};
use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{JsValue, Unknown};
use napi_derive::napi;
use parking_lot::Mutex;

/// What a native call answered, in the low 3 bits of its `u32` result.
mod kind {
    /// A hit: the rest is the value's id.
    pub const HIT: u32 = 0;
    /// This caller leads and its computation slot is granted: the rest is the lease token.
    pub const LEASE: u32 = 1;
    /// This caller leads but waits for a computation slot (`maxConcurrency`): the lease token.
    pub const LEASE_QUEUED: u32 = 2;
    /// Another caller computes: the rest is the waiter token.
    pub const WAIT: u32 = 3;
    /// An error: read it with `takeError()`.
    pub const ERROR: u32 = 4;
    /// `get` found nothing.
    pub const MISS: u32 = 5;
}

/// What a queued completion tells the JS side (`takeReady()` triples: token, what, id).
mod ready {
    pub const VALUE: u32 = 0;
    pub const FAILED: u32 = 1;
    pub const HANDED_OVER: u32 = 2;
    pub const SLOT: u32 = 3;
    pub const FAILED_OTHER: u32 = 4;
    /// The shared tier answered a leader's question: read it with `takeRemote(token)`.
    pub const REMOTE: u32 = 5;
    /// The shared tier confirmed (or gave up on) a publication; the id is 1 if written.
    pub const PUBLISHED: u32 = 6;
}

/// What `takeRemote()` says the shared tier answered (see [`Remote`]).
mod answer {
    pub const VALUE: u32 = 0;
    pub const NOCACHE: u32 = 1;
    pub const FAILED: u32 = 2;
    pub const COMPUTE: u32 = 3;
    pub const UNAVAILABLE: u32 = 4;
}

/// Tokens and ids stay below 2^29 so that `token << 3 | kind` fits a `u32`.
const TOKEN_MASK: u32 = (1 << 29) - 1;

type Wake = ThreadsafeFunction<(), Unknown<'static>, (), Status, false, true>;

/// State shared with other threads: release queue, completions, events, and the wake-up.
struct Sink {
    released: Mutex<Vec<u32>>,
    ready: Mutex<Vec<(u32, Ready)>>,
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

    /// Queues a completion. On the JS thread, during a call into this module, the JS side drains
    /// the queue right after the call; the wake-up (once per drain) covers every other case.
    fn push_ready(&self, token: u32, r: Ready) {
        self.ready.lock().push((token, r));
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

/// A JS error thrown or rejected by a computation, as the core's error type.
struct JsError(Val);

impl fmt::Debug for JsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsError({})", self.0.0.id)
    }
}

impl fmt::Display for JsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the computation threw a JavaScript error")
    }
}

impl std::error::Error for JsError {}

enum Ready {
    Done(Completion<Val>),
    Slot(Permit),
    Remote(Remote),
    Published(bool),
}

struct LeaseEntry {
    lease: Lease<Key, Val>,
    slot: Option<Pending<Permit>>,
    permit: Option<Permit>,
    computing: Option<Computing>,
    /// The question to the shared tier while it is out (kept alive: dropping it cancels).
    asking: Option<Pending<Remote>>,
    /// The shared tier's answer, until `takeRemote()` reads it.
    answer: Option<Remote>,
    /// This process's lease in the shared tier (it computes for every process).
    remote: Option<RemoteLease>,
}

/// The shared tier's answer as the JS side reads it.
#[napi(object)]
pub struct RemoteAnswer {
    /// See [`answer`].
    pub kind: u32,
    pub payload: Option<Buffer>,
    pub tags: Option<Vec<String>>,
    pub type_name: Option<String>,
    pub message: Option<String>,
}

/// The stable error codes the JS side throws.
fn code_of(e: &CoreError) -> &'static str {
    match e {
        CoreError::Timeout(_) => "ERR_COOPCACHE_TIMEOUT",
        CoreError::Recursion { .. } => "ERR_COOPCACHE_RECURSION",
        CoreError::UnknownCache { .. } => "ERR_COOPCACHE_UNKNOWN_CACHE",
        CoreError::Config(_) => "ERR_COOPCACHE_INVALID_CONFIG",
        CoreError::Computation(_) | CoreError::Panicked(_) => "ERR_COOPCACHE_COMPUTATION",
        CoreError::Remote { .. } => "ERR_COOPCACHE_REMOTE",
        _ => "ERR_COOPCACHE_COMPUTATION",
    }
}

/// A setting's name as Node spells it.
fn node_setting(s: &str) -> &str {
    match s {
        "memory_limit" => "memoryLimit",
        "cache_duration" => "cacheDuration",
        "when_full" => "whenFull",
        "max_concurrency" => "maxConcurrency",
        "redis_url" => "redisUrl",
        "lease_ttl" => "leaseTtl",
        other => other,
    }
}

fn config_message(e: &ConfigError) -> String {
    format!("invalid {}: {} (expected {})", node_setting(e.setting), e.value, e.expected)
}

/// The settings `configure` was given (absent: keep the current value).
#[napi(object)]
pub struct ConfigureArgs {
    pub memory_limit: Option<f64>,
    pub memory_limit_is_float: bool,
    pub cache_duration: Option<f64>,
    pub when_full: Option<String>,
    pub max_concurrency: Option<f64>,
    pub max_concurrency_given: bool,
    /// Shared mode: the Redis URL (only when first configuring the cache, or the same again).
    pub redis_url: Option<String>,
    /// Shared mode: the signing secret's bytes.
    pub secret: Option<Buffer>,
    /// Shared mode: the lease TTL in seconds.
    pub lease_ttl: Option<f64>,
    /// `"process"`: share the cache across this process's worker threads, without Redis.
    pub shared: Option<String>,
}

/// One addon instance's caches (one per JS environment: the main thread and each worker).
#[napi]
pub struct Native {
    registry: Registry<Val>,
    caches: Vec<Cache<Key, Val>>,
    sink: Arc<Sink>,
    leases: HashMap<u32, LeaseEntry>,
    waiters: HashMap<u32, Waiter<Val>>,
    /// Publications to the shared tier whose confirmation the JS side waits for.
    publishing: HashMap<u32, Pending<bool>>,
    next_token: u32,
    error: Option<(&'static str, String)>,
}

#[napi]
impl Native {
    /// `wake` is called (asynchronously, on the JS thread) when queues need draining; it never
    /// keeps the event loop alive.
    #[napi(constructor)]
    pub fn new(wake: Function<'_, (), Unknown<'static>>) -> Result<Self> {
        let wake: Wake =
            wake.build_threadsafe_function::<()>().callee_handled::<false>().weak::<true>().build()?;
        let sink = Arc::new(Sink {
            released: Mutex::new(Vec::new()),
            ready: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            wake,
            woken: AtomicBool::new(false),
        });
        let listener_sink = sink.clone();
        let listener: coopcache::Listener = Arc::new(move |e: &Event| {
            listener_sink.events.lock().push(e.clone());
            listener_sink.ping();
        });
        Ok(Native {
            registry: Registry::with(Some(listener), coopcache::Clock::system()),
            caches: Vec::new(),
            sink,
            leases: HashMap::new(),
            waiters: HashMap::new(),
            publishing: HashMap::new(),
            next_token: 0,
            error: None,
        })
    }

    fn fail_with(&mut self, code: &'static str, msg: String) -> u32 {
        self.error = Some((code, msg));
        kind::ERROR
    }

    fn token(&mut self) -> u32 {
        loop {
            self.next_token = (self.next_token + 1) & TOKEN_MASK;
            let t = self.next_token;
            if t != 0
                && !self.leases.contains_key(&t)
                && !self.waiters.contains_key(&t)
                && !self.publishing.contains_key(&t)
            {
                return t;
            }
        }
    }

    /// The last error as `[code, message]` (after a result of kind ERROR).
    #[napi]
    pub fn take_error(&mut self) -> Vec<String> {
        let (c, m) = self.error.take().unwrap_or(("ERR_COOPCACHE_INTERNAL", "no error".into()));
        vec![c.to_owned(), m]
    }

    /// Creates or updates the cache `name`; returns its index, or ERROR (as `u32::MAX`).
    /// Settings not given keep their current value (their default for a new cache).
    #[napi]
    pub fn configure(&mut self, name: String, opts: ConfigureArgs) -> u32 {
        let ConfigureArgs {
            memory_limit,
            memory_limit_is_float,
            cache_duration,
            when_full,
            max_concurrency,
            max_concurrency_given,
            redis_url,
            secret,
            lease_ttl,
            shared,
        } = opts;
        let mut s = self.registry.get(&name).map(|c| c.settings()).unwrap_or_default();
        let r: std::result::Result<(), ConfigError> = (|| {
            if let Some(n) = memory_limit {
                s.memory_limit = MemoryLimit::from_number(n, memory_limit_is_float)?;
            }
            if let Some(d) = cache_duration {
                s.cache_duration = Settings::duration_from_secs(d)?;
            }
            if let Some(w) = &when_full {
                s.when_full = w.parse::<WhenFull>()?;
            }
            if max_concurrency_given {
                s.max_concurrency = match max_concurrency {
                    None => None,
                    Some(n) if n >= 1.0 && n.fract() == 0.0 && n <= usize::MAX as f64 => Some(n as usize),
                    Some(n) => {
                        return Err(ConfigError {
                            setting: "max_concurrency",
                            value: n.to_string(),
                            expected: "a whole number >= 1, or null for no limit",
                        });
                    }
                };
            }
            s.validate()
        })();
        if let Err(e) = r {
            self.fail_with("ERR_COOPCACHE_INVALID_CONFIG", config_message(&e));
            return u32::MAX;
        }
        let mode = match (shared.as_deref(), redis_url) {
            (None, None) => None,
            (Some("process"), None) if secret.is_none() && lease_ttl.is_none() => Some(SharedMode::Process),
            (Some("process"), url) => {
                let given = if url.is_some() {
                    "redisUrl"
                } else if secret.is_some() {
                    "secret"
                } else {
                    "leaseTtl"
                };
                let e = ConfigError {
                    setting: "shared",
                    value: format!("'process' with {given}"),
                    expected: "'process' alone: redisUrl, secret and leaseTtl are for sharing through Redis",
                };
                self.fail_with("ERR_COOPCACHE_INVALID_CONFIG", config_message(&e));
                return u32::MAX;
            }
            (Some(other), _) => {
                let e = ConfigError {
                    setting: "shared",
                    value: other.to_owned(),
                    expected: "'process': share the cache across this process's worker threads",
                };
                self.fail_with("ERR_COOPCACHE_INVALID_CONFIG", config_message(&e));
                return u32::MAX;
            }
            (None, Some(url)) => {
                let mut shared = SharedSettings::new(url);
                if let Some(secret) = secret {
                    shared = shared.secret(secret.to_vec());
                }
                if let Some(t) = lease_ttl {
                    match std::time::Duration::try_from_secs_f64(t) {
                        Ok(d) if t > 0.0 => shared.lease_ttl = d,
                        _ => {
                            let e = ConfigError {
                                setting: "lease_ttl",
                                value: t.to_string(),
                                expected: "a number of seconds > 0",
                            };
                            self.fail_with("ERR_COOPCACHE_INVALID_CONFIG", config_message(&e));
                            return u32::MAX;
                        }
                    }
                }
                Some(SharedMode::Redis(shared))
            }
        };
        let configured = match mode {
            None => self.registry.configure(&name, s),
            Some(mode) => self.registry.configure_shared(&name, s, Some(mode)),
        };
        match configured {
            Ok(cache) => {
                if let Some(t) = cache.shared() {
                    t.set_idle(cache.settings().cache_duration);
                }
                self.index_of(cache)
            }
            Err(e) => {
                self.fail_with("ERR_COOPCACHE_INVALID_CONFIG", config_message(&e));
                u32::MAX
            }
        }
    }

    fn index_of(&mut self, cache: Cache<Key, Val>) -> u32 {
        if let Some(i) = self.caches.iter().position(|c| c.name() == cache.name()) {
            return i as u32;
        }
        self.caches.push(cache);
        (self.caches.len() - 1) as u32
    }

    /// The index of the configured cache `name`, or `u32::MAX` (UNKNOWN_CACHE error).
    #[napi]
    pub fn lookup(&mut self, name: String) -> u32 {
        match self.registry.get(&name) {
            Ok(c) => self.index_of(c),
            Err(e) => {
                self.fail_with(code_of(&e), e.to_string());
                u32::MAX
            }
        }
    }

    /// The configured names, sorted.
    #[napi]
    pub fn names(&self) -> Vec<String> {
        self.registry.names()
    }

    /// The current settings: `[memoryLimit bytes, cacheDuration s, whenFull, maxConcurrency|-1]`.
    #[napi]
    pub fn settings(&self, cache: u32) -> Vec<String> {
        let s = self.caches[cache as usize].settings();
        vec![
            s.memory_limit.resolve().unwrap_or(0).to_string(),
            s.cache_duration.as_secs_f64().to_string(),
            s.when_full.to_string(),
            s.max_concurrency.map_or(-1i64, |n| n as i64).to_string(),
        ]
    }

    fn key(&mut self, key: &Unknown<'_>) -> Option<Key> {
        self.key_writer(key).map(KeyWriter::finish)
    }

    /// The key's canonical bytes, written on the stack (a hit needs no `Key`).
    fn key_writer(&mut self, key: &Unknown<'_>) -> Option<KeyWriter> {
        let mut w = KeyWriter::new();
        // SAFETY: the env and value come from napi-rs for the current call, on the JS thread.
        match unsafe { write_key(key.value().env, key.raw(), &mut w, 0) } {
            Ok(()) => Some(w),
            Err(msg) => {
                self.error = Some(("TypeError", msg));
                None
            }
        }
    }

    /// The flight protocol as a plain function `begin(cache, key)`: hit, lease (slot granted
    /// or queued), wait, or error. A raw N-API function (napi-rs's method dispatch costs more
    /// than the whole hit), bound to this instance, which the JS side keeps alive with it.
    #[napi(ts_return_type = "(cache: number, key: unknown) => number")]
    pub fn begin_fn(&mut self, env: Env) -> Result<Unknown<'static>> {
        let mut f = ptr::null_mut();
        let data: *mut Native = self;
        // SAFETY: a plain N-API call on the JS thread; `data` outlives the function because the
        // JS side holds this object for as long as it holds the function.
        let status = unsafe {
            sys::napi_create_function(env.raw(), c"begin".as_ptr(), 5, Some(raw_begin), data.cast(), &mut f)
        };
        if status != sys::Status::napi_ok {
            return Err(Error::from_reason("coopcache: could not create the begin function"));
        }
        // SAFETY: `f` is a live value of this call's env.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), f) })
    }

    /// Like `beginFn()`'s function, as a method (for the hand-over path).
    #[napi]
    pub fn begin(&mut self, cache: u32, key: Unknown<'_>) -> u32 {
        let Some(w) = self.key_writer(&key) else { return kind::ERROR };
        self.begin_key(cache, w)
    }

    fn begin_key(&mut self, cache: u32, w: KeyWriter) -> u32 {
        let Some(c) = self.caches.get(cache as usize) else {
            return self.fail_with("ERR_COOPCACHE_UNKNOWN_CACHE", format!("no cache with index {cache}"));
        };
        // (In shared mode the core itself tells the shared tier of hits, batched.)
        if let Some(id) = c.hit_with(w.as_bytes(), |v| v.0.id) {
            return (id << 3) | kind::HIT;
        }
        match c.begin(&w.finish()) {
            Ok(Begin::Hit(v)) => (v.0.id << 3) | kind::HIT,
            Ok(Begin::Lease(lease)) => {
                let slot = lease.slot();
                let token = self.token();
                let mut entry = LeaseEntry {
                    lease,
                    slot: None,
                    permit: None,
                    computing: None,
                    asking: None,
                    answer: None,
                    remote: None,
                };
                let k = match slot.try_get() {
                    Some(p) => {
                        entry.permit = Some(p);
                        kind::LEASE
                    }
                    None => {
                        let sink = self.sink.clone();
                        slot.on_ready(move |p| sink.push_ready(token, Ready::Slot(p)));
                        entry.slot = Some(slot);
                        kind::LEASE_QUEUED
                    }
                };
                self.leases.insert(token, entry);
                (token << 3) | k
            }
            Ok(Begin::Wait(w)) => {
                let token = self.token();
                let sink = self.sink.clone();
                w.pending().on_ready(move |c| sink.push_ready(token, Ready::Done(c)));
                self.waiters.insert(token, w);
                (token << 3) | kind::WAIT
            }
            Err(e) => self.fail_with(code_of(&e), e.to_string()),
        }
    }

    /// The stored value for `key`, without computing: HIT with its id, MISS, or ERROR.
    #[napi]
    pub fn get(&mut self, cache: u32, key: Unknown<'_>) -> u32 {
        let Some(w) = self.key_writer(&key) else { return kind::ERROR };
        match self.caches[cache as usize].get(w.as_bytes()) {
            Some(v) => (v.0.id << 3) | kind::HIT,
            None => kind::MISS,
        }
    }

    /// Removes the key's entry: 1 if one was removed, 0 if not, ERROR (4) for a bad key.
    #[napi]
    pub fn invalidate(&mut self, cache: u32, key: Unknown<'_>) -> u32 {
        let Some(k) = self.key(&key) else { return kind::ERROR };
        self.caches[cache as usize].invalidate(&k) as u32
    }

    /// Removes every entry stored with `tag`; returns how many.
    #[napi]
    pub fn invalidate_tag(&self, cache: u32, tag: String) -> f64 {
        self.caches[cache as usize].invalidate_tag(&tag) as f64
    }

    /// Removes every entry.
    #[napi]
    pub fn clear(&self, cache: u32) {
        self.caches[cache as usize].clear();
    }

    /// The counters, in the order the JS side names them.
    #[napi]
    pub fn stats(&self, cache: u32) -> Vec<f64> {
        self.caches[cache as usize].stats().fields().iter().map(|&(_, n)| n as f64).collect()
    }

    /// The shared tier's counters (`[remoteHits, leasesWon, leasesLost, remoteWaits, fallbacks,
    /// rejectedValues]`), or an empty list for a cache without one.
    #[napi]
    pub fn shared_stats(&self, cache: u32) -> Vec<f64> {
        let Some(t) = self.caches[cache as usize].shared() else { return Vec::new() };
        t.stats().fields().iter().map(|&(_, n)| n as f64).collect()
    }

    /// Whether the cache has a shared tier (it was configured with a Redis URL).
    #[napi]
    pub fn is_shared(&self, cache: u32) -> bool {
        self.caches.get(cache as usize).is_some_and(|c| c.shared().is_some())
    }

    /// Whether the cache's shared tier is connected now (false without one).
    #[napi]
    pub fn shared_up(&self, cache: u32) -> bool {
        self.caches.get(cache as usize).and_then(|c| c.shared()).is_some_and(|t| t.is_up())
    }

    /// Asks the shared tier about a lease's key (once its slot is granted, before computing):
    /// 0: no shared tier (compute); 1: the answer comes later as a REMOTE completion; 2: it is
    /// here already. Either way, read it with `takeRemote(token)`.
    #[napi]
    pub fn ask_remote(&mut self, cache: u32, token: u32) -> u32 {
        let Some(tier) = self.caches.get(cache as usize).and_then(|c| c.shared()).cloned() else {
            return 0;
        };
        let Some(e) = self.leases.get_mut(&token) else { return 0 };
        let pending = tier.fetch(e.lease.key());
        if let Some(a) = pending.try_get() {
            e.answer = Some(a);
            return 2;
        }
        let sink = self.sink.clone();
        pending.on_ready(move |r| sink.push_ready(token, Ready::Remote(r)));
        e.asking = Some(pending);
        1
    }

    /// The shared tier's answer for a lease (see [`answer`]). With COMPUTE this process holds
    /// the key's lease in the shared tier: finish it with `publish` or `publishFail`.
    #[napi]
    pub fn take_remote(&mut self, token: u32) -> RemoteAnswer {
        let mut out = RemoteAnswer {
            kind: answer::UNAVAILABLE,
            payload: None,
            tags: None,
            type_name: None,
            message: None,
        };
        let Some(e) = self.leases.get_mut(&token) else { return out };
        e.asking = None;
        match e.answer.take() {
            Some(Remote::Value(b)) => {
                out.kind = answer::VALUE;
                out.payload = Some(b.payload.into());
                out.tags = Some(b.tags);
            }
            Some(Remote::NoCache(b)) => {
                out.kind = answer::NOCACHE;
                out.payload = Some(b.payload.into());
            }
            Some(Remote::Failed(err)) => {
                out.kind = answer::FAILED;
                out.type_name = Some(err.type_name);
                out.message = Some(err.message);
            }
            Some(Remote::Compute(r)) => {
                out.kind = answer::COMPUTE;
                e.remote = Some(r);
            }
            _ => {}
        }
        out
    }

    fn published(&mut self, pending: Pending<bool>) -> u32 {
        let token = self.token();
        let sink = self.sink.clone();
        pending.on_ready(move |ok| sink.push_ready(token, Ready::Published(ok)));
        self.publishing.insert(token, pending);
        token
    }

    /// Publishes what this process computed under its shared lease: the serialized value,
    /// written to Redis (unless `nocache`) and handed to the processes waiting. Returns a token
    /// whose PUBLISHED completion says Redis answered (0: no shared lease, nothing to wait for).
    #[napi]
    pub fn publish(&mut self, token: u32, payload: Buffer, tags: Option<Vec<String>>, nocache: bool) -> u32 {
        let Some(r) = self.leases.get_mut(&token).and_then(|e| e.remote.take()) else { return 0 };
        let blob = Blob { tags: tags.unwrap_or_default(), payload: payload.to_vec() };
        let pending = if nocache { r.nocache(&blob) } else { r.store(&blob) };
        self.published(pending)
    }

    /// Tells the processes waiting on this process's shared lease that the computation failed
    /// (nothing is stored). Returns a token as `publish` does.
    #[napi]
    pub fn publish_fail(&mut self, token: u32, type_name: String, message: String) -> u32 {
        let Some(r) = self.leases.get_mut(&token).and_then(|e| e.remote.take()) else { return 0 };
        let pending = r.fail(&RemoteError { type_name, message });
        self.published(pending)
    }

    /// Marks the lease's computation as running on this thread (recursion detection) until
    /// `exit`; returns the flight id.
    #[napi]
    pub fn enter(&mut self, token: u32) -> f64 {
        match self.leases.get_mut(&token) {
            Some(e) => {
                e.computing = Some(e.lease.enter());
                e.lease.id() as f64
            }
            None => -1.0,
        }
    }

    /// Ends what `enter` started.
    #[napi]
    pub fn exit(&mut self, token: u32) {
        if let Some(e) = self.leases.get_mut(&token) {
            e.computing = None;
        }
    }

    /// The flight a waiter waits for.
    #[napi]
    pub fn flight_of(&self, token: u32) -> f64 {
        self.waiters.get(&token).map_or(-1.0, |w| w.id() as f64)
    }

    /// The recursion error's message for `key` of `cache`.
    #[napi]
    pub fn recursion_message(&mut self, cache: u32, key: Unknown<'_>) -> String {
        let key = self.key(&key).map_or_else(|| "(this key)".to_owned(), |k| k.to_string());
        let name: Arc<str> = self.caches[cache as usize].name().into();
        CoreError::Recursion { cache: name, key }.to_string()
    }

    /// Stores the value `id` (weighing `weight` bytes besides its key) with `tags`.
    #[napi]
    pub fn store(&mut self, token: u32, id: u32, weight: f64, tags: Option<Vec<String>>) {
        let Some(e) = self.leases.remove(&token) else { return };
        let tags = tags.unwrap_or_default();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let v = self.val(id);
        let weight = if weight.is_finite() && weight > 0.0 { weight as u64 } else { 0 };
        e.lease.store_with(v, weight, &tags);
        drop(e.permit);
    }

    /// Hands the value `id` to every waiter without storing it.
    #[napi]
    pub fn nocache(&mut self, token: u32, id: u32) {
        let Some(e) = self.leases.remove(&token) else { return };
        let v = self.val(id);
        e.lease.nocache(v);
        drop(e.permit);
    }

    /// Hands the error `id` to every waiter; nothing is stored.
    #[napi]
    pub fn fail(&mut self, token: u32, id: u32) {
        let Some(e) = self.leases.remove(&token) else { return };
        let v = self.val(id);
        e.lease.fail(CoreError::Computation(Arc::new(JsError(v))));
        drop(e.permit);
    }

    /// A caller gave up (its timeout passed): drops its waiter, or its lease while it still
    /// waits for a slot (a waiter then takes over).
    #[napi]
    pub fn cancel(&mut self, token: u32) {
        self.waiters.remove(&token);
        let queued = self.leases.get(&token).is_some_and(|e| e.permit.is_none());
        if queued {
            self.leases.remove(&token);
        }
    }

    /// A release handle for a value the JS side put in its map but never handed to the core.
    fn val(&self, id: u32) -> Val {
        Val(Arc::new(ValInner { id, sink: self.sink.clone() }))
    }

    /// Completions queued for the JS side, as triples `[token, what, id]` (see [`ready`]).
    #[napi]
    pub fn take_ready(&mut self) -> Uint32Array {
        let items = std::mem::take(&mut *self.sink.ready.lock());
        let mut out = Vec::with_capacity(items.len() * 3);
        let mut later = Vec::new();
        for (token, r) in items {
            match r {
                Ready::Done(c) => {
                    let Some(w) = self.waiters.remove(&token) else { continue };
                    match &c {
                        Completion::Value(v) => out.extend([token, ready::VALUE, v.0.id]),
                        Completion::Failed(e) => match e.downcast_ref::<JsError>() {
                            Some(j) => out.extend([token, ready::FAILED, j.0.0.id]),
                            None => {
                                self.error = Some((code_of(e), e.to_string()));
                                out.extend([token, ready::FAILED_OTHER, 0]);
                            }
                        },
                        Completion::HandedOver => out.extend([token, ready::HANDED_OVER, 0]),
                    }
                    // Dropped after the JS side has read the ids (it reads them before it
                    // drains the release queue).
                    later.push((w, c));
                }
                Ready::Remote(r) => match self.leases.get_mut(&token) {
                    Some(e) => {
                        e.asking = None;
                        e.answer = Some(r);
                        out.extend([token, ready::REMOTE, 0]);
                    }
                    // A shared lease nobody will finish is released when dropped here.
                    None => drop(r),
                },
                Ready::Published(ok) => {
                    if self.publishing.remove(&token).is_some() {
                        out.extend([token, ready::PUBLISHED, ok as u32]);
                    }
                }
                Ready::Slot(p) => match self.leases.get_mut(&token) {
                    Some(e) => {
                        e.permit = Some(p);
                        e.slot = None;
                        out.extend([token, ready::SLOT, 0]);
                    }
                    // A permit for a lease cancelled meanwhile frees its slot now.
                    None => drop(p),
                },
            }
        }
        drop(later);
        out.into()
    }

    /// Value ids the core let go of; the JS side deletes them from its map. Also re-arms the
    /// wake-up.
    #[napi]
    pub fn take_released(&self) -> Vec<u32> {
        self.sink.woken.store(false, Ordering::Release);
        std::mem::take(&mut *self.sink.released.lock())
    }

    /// Events since the last call, as `[kind, cache, a, b]` string quadruples:
    /// `full` (bytesUsed, memoryLimit), `evict` (reason, count), `sharedDown` (reason),
    /// `sharedUp`, or `valueRefused` (reason).
    #[napi]
    pub fn take_events(&self) -> Vec<String> {
        let evs = std::mem::take(&mut *self.sink.events.lock());
        let mut out = Vec::with_capacity(evs.len() * 4);
        for e in evs {
            match e {
                Event::Full { cache, bytes_used, memory_limit } => {
                    out.extend(["full".into(), cache, bytes_used.to_string(), memory_limit.to_string()])
                }
                Event::Evicted { cache, reason, count } => {
                    out.extend(["evict".into(), cache, reason.as_str().into(), count.to_string()])
                }
                Event::SharedDown { cache, reason } => {
                    out.extend(["sharedDown".into(), cache, reason, String::new()])
                }
                Event::SharedUp { cache } => {
                    out.extend(["sharedUp".into(), cache, String::new(), String::new()])
                }
                Event::ValueRefused { cache, reason } => {
                    out.extend(["valueRefused".into(), cache, reason, String::new()])
                }
                _ => {}
            }
        }
        out
    }

    /// The canonical encoding of a key (for tests: it must match the other languages').
    #[napi]
    pub fn key_bytes(&mut self, key: Unknown<'_>) -> Option<Buffer> {
        self.key(&key).map(|k| k.as_bytes().to_vec().into())
    }
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
    let mut t = 0;
    unsafe {
        check(sys::napi_typeof(env, v, &mut t))?;
        match t {
            sys::ValueType::napi_string => write_str(env, v, w)?,
            sys::ValueType::napi_number => {
                let mut d = 0f64;
                check(sys::napi_get_value_double(env, v, &mut d))?;
                w.float(d);
            }
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
) -> std::result::Result<(), String> {
    const N: usize = 128;
    let mut buf = [std::mem::MaybeUninit::<u16>::uninit(); N];
    let mut len = 0usize;
    // SAFETY: see the function's contract; the buffer holds N units.
    unsafe { check(sys::napi_get_value_string_utf16(env, v, buf.as_mut_ptr().cast(), N, &mut len))? };
    if len < N - 1 {
        // SAFETY: N-API wrote `len` units.
        let units: &[u16] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), len) };
        if units.iter().all(|&u| u < 0x80) {
            let mut ascii = [std::mem::MaybeUninit::<u8>::uninit(); N];
            for (a, &u) in ascii.iter_mut().zip(units) {
                a.write(u as u8);
            }
            // SAFETY: `len` bytes were written, every one ASCII.
            w.str(unsafe {
                std::str::from_utf8_unchecked(std::slice::from_raw_parts(ascii.as_ptr().cast(), len))
            });
        } else {
            w.str(&String::from_utf16_lossy(units));
        }
        return Ok(());
    }
    // SAFETY: as above, with a buffer of the string's full length.
    unsafe {
        check(sys::napi_get_value_string_utf16(env, v, ptr::null_mut(), 0, &mut len))?;
        let mut big = vec![0u16; len + 1];
        check(sys::napi_get_value_string_utf16(env, v, big.as_mut_ptr(), big.len(), &mut len))?;
        w.str(&String::from_utf16_lossy(&big[..len]));
    }
    Ok(())
}

fn check(status: sys::napi_status) -> std::result::Result<(), String> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(format!("coopcache: reading the key failed (napi status {status})"))
    }
}

/// `begin(cache, key)` without napi-rs's dispatch: see [`Native::begin_fn`].
unsafe extern "C" fn raw_begin(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut argc = 2usize;
    let mut argv = [ptr::null_mut(); 2];
    let mut data = ptr::null_mut();
    let mut out = ptr::null_mut();
    // SAFETY: N-API calls with this callback's env and info; `data` is the `Native` that created
    // the function (see `begin_fn`), alive and not borrowed elsewhere while JS calls in here.
    unsafe {
        if sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data)
            != sys::Status::napi_ok
        {
            return ptr::null_mut();
        }
        let this = &mut *(data as *mut Native);
        let mut cache = 0u32;
        let r = if argc < 2 || sys::napi_get_value_uint32(env, argv[0], &mut cache) != sys::Status::napi_ok {
            this.fail_with("TypeError", "coopcache: begin(cache, key) needs a cache index and a key".into())
        } else {
            let mut w = KeyWriter::new();
            match write_key(env, argv[1], &mut w, 0) {
                Ok(()) => this.begin_key(cache, w),
                Err(msg) => this.fail_with("TypeError", msg),
            }
        };
        sys::napi_create_uint32(env, r, &mut out);
    }
    out
}
