//! The shared tier (SPEC section 5): one computation per key across processes, on Redis.
//!
//! Each process keeps its local tier; on a local miss its local leader asks the shared tier,
//! which reads the value (`GETEX .. PX`, refreshing the idle TTL), or takes the key's lease
//! (`SET NX PX` with a random owner token) so this process computes, or waits for the lease
//! holder's completion message on pub/sub (no polling; if the holder dies, its lease expires and
//! the wait ends with a retry). The holder renews its lease while it computes and publishes with a
//! script that writes only if it still owns the lease.
//!
//! Every step is a [`Pending`] like the local flight's, so threads, asyncio and Node wait on it the
//! same way; the Redis work runs on one background runtime thread per process. When Redis is down
//! or slow (every call has a timeout), steps answer [`Remote::Unavailable`] at once and callers go
//! on with the local tier; one warning is logged and the tier reconnects in the background.
//!
//! Serialization belongs to the caller (pickle, v8, serde, JSON); this tier moves bytes.

mod protocol;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, OnceLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::oneshot;

use crate::config::ConfigError;
use crate::keys::Key;
use crate::stats::{Event, Listener};
use crate::wait::{Pending, Shared};
pub use protocol::Blob;
use protocol::Message;

/// How to reach the shared tier and what to trust in it.
#[derive(Clone)]
pub struct SharedSettings {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    pub url: String,
    /// When set, every stored value is signed (HMAC-SHA256) and checked on read; a value that
    /// fails the check is a miss and is never deserialized.
    pub secret: Option<Vec<u8>>,
    /// How long a computing process holds a key before another may take over, if it stops
    /// renewing (it renews every third of this while it computes). Default 10 s.
    pub lease_ttl: Duration,
    /// The bound on every Redis call. Default 1 s.
    pub timeout: Duration,
}

impl Default for SharedSettings {
    fn default() -> Self {
        SharedSettings {
            url: String::new(),
            secret: None,
            lease_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
        }
    }
}

impl SharedSettings {
    /// Checks the settings without connecting: the URL (an error names it with the password
    /// masked) and the lease TTL.
    pub fn validate(&self) -> Result<redis::Client, ConfigError> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| ConfigError {
            setting: "redis_url",
            value: redact(&self.url),
            expected: leak_reason(&e),
        })?;
        if self.lease_ttl < Duration::from_millis(10) {
            return Err(ConfigError::new("lease_ttl", format!("{:?}", self.lease_ttl), "at least 10 ms"));
        }
        Ok(client)
    }
}

impl std::fmt::Debug for SharedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSettings")
            .field("url", &redact(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("lease_ttl", &self.lease_ttl)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The URL with its password masked, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            let masked = if creds.contains(':') { format!("{user}:***") } else { "***".to_owned() };
            format!("{}{}{}", &url[..s + 3], masked, &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// An error computed in another process, as it arrives here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// The original error's type name (`ValueError`, `TypeError`, a Rust type path).
    pub type_name: String,
    /// Its message.
    pub message: String,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.type_name, self.message)
    }
}

impl std::error::Error for RemoteError {}

/// What the shared tier says about a key the local tier missed.
#[derive(Clone)]
pub enum Remote {
    /// Stored in Redis (or just computed by another process): deserialize and store locally.
    Value(Blob),
    /// Another process computed it as not to be stored: hand it out, store nothing.
    NoCache(Blob),
    /// Another process's computation failed; nothing is stored.
    Failed(RemoteError),
    /// This process holds the key's lease: compute, then finish the lease.
    Compute(RemoteLease),
    /// Redis is unreachable or slow: compute locally (the local tier still has one flight).
    Unavailable,
}

/// This process's lease on a key in the shared tier, renewed in the background until finished
/// or dropped. Dropped unfinished (the last clone), it is released so another process takes over
/// at once instead of after the lease TTL.
#[derive(Clone)]
pub struct RemoteLease(Arc<LeaseState>);

struct LeaseState {
    tier: Arc<Tier>,
    key: Vec<u8>,
    token: String,
    finished: AtomicBool,
    renew: tokio::task::AbortHandle,
}

/// Counters of the shared tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedStats {
    /// Values found in Redis (or delivered by another process's completion).
    pub remote_hits: u64,
    /// Leases taken: this process computed.
    pub leases_won: u64,
    /// Leases found taken by another process.
    pub leases_lost: u64,
    /// Waits for another process's completion.
    pub remote_waits: u64,
    /// Steps answered from the local tier alone because Redis was unavailable.
    pub fallbacks: u64,
    /// Values refused because their signature or format did not check out.
    pub rejected_values: u64,
}

#[derive(Default)]
struct Counters {
    remote_hits: AtomicU64,
    leases_won: AtomicU64,
    leases_lost: AtomicU64,
    remote_waits: AtomicU64,
    fallbacks: AtomicU64,
    rejected_values: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// What a local tier does when another process invalidates: the key bytes, a tag, or all.
pub enum Invalidation<'a> {
    /// One key (canonical bytes).
    Key(&'a [u8]),
    /// Every entry with this tag.
    Tag(&'a str),
    /// Everything.
    All,
}

type Waiters = HashMap<Vec<u8>, Vec<(u64, oneshot::Sender<Option<Message>>)>>;
type InvalidationHook = Box<dyn Fn(Invalidation<'_>) + Send + Sync>;

struct Tier {
    name: String,
    prefix: Vec<u8>,
    channel: Vec<u8>,
    client: redis::Client,
    settings: SharedSettings,
    idle_ms: AtomicU64,
    conn: Mutex<Option<ConnectionManager>>,
    warned: AtomicBool,
    waiters: Mutex<Waiters>,
    next_waiter: AtomicU64,
    touches: Mutex<HashSet<Vec<u8>>>,
    on_invalidation: OnceLock<InvalidationHook>,
    counters: Counters,
    listener: Option<Listener>,
}

/// The shared tier of one named cache. Cheap to clone.
#[derive(Clone)]
pub struct SharedTier(Arc<Tier>);

/// One runtime thread for every shared tier of the process.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("coopcache-shared")
        .enable_all()
        .build()
        .expect("start the coopcache shared-tier runtime")
});

impl SharedTier {
    /// Validates the settings (a bad URL is an error now, with the password masked) and starts
    /// connecting in the background; calls work on the local tier until the connection is up.
    pub fn new(cache: &str, settings: SharedSettings, idle: Duration) -> Result<SharedTier, ConfigError> {
        Self::with_listener(cache, settings, idle, None)
    }

    /// Like [`SharedTier::new`], reporting [`Event::SharedDown`], [`Event::SharedUp`] and
    /// [`Event::ValueRefused`] to `listener` (the cache's own listener, for bindings' logs).
    pub fn with_listener(
        cache: &str,
        settings: SharedSettings,
        idle: Duration,
        listener: Option<Listener>,
    ) -> Result<SharedTier, ConfigError> {
        let client = settings.validate()?;
        let prefix = format!("coopcache:{cache}:").into_bytes();
        let tier = Arc::new(Tier {
            name: cache.to_owned(),
            channel: format!("coopcache:{cache}").into_bytes(),
            prefix,
            client,
            settings,
            idle_ms: AtomicU64::new(idle.as_millis().clamp(1, u64::MAX as u128) as u64),
            conn: Mutex::new(None),
            warned: AtomicBool::new(false),
            waiters: Mutex::new(HashMap::new()),
            next_waiter: AtomicU64::new(0),
            touches: Mutex::new(HashSet::new()),
            on_invalidation: OnceLock::new(),
            counters: Counters::default(),
            listener,
        });
        RUNTIME.spawn(subscriber(Arc::downgrade(&tier)));
        RUNTIME.spawn(toucher(Arc::downgrade(&tier)));
        Ok(SharedTier(tier))
    }

    /// The Redis URL it was configured with.
    pub fn url(&self) -> &str {
        &self.0.settings.url
    }

    /// Whether the tier is connected (subscribed to its channel) now.
    pub fn is_up(&self) -> bool {
        self.0.conn.lock().is_some()
    }

    /// Sets what to do when another process invalidates (the local tier's own invalidation).
    /// Set once; later calls are ignored.
    pub fn on_invalidation(&self, f: impl Fn(Invalidation<'_>) + Send + Sync + 'static) {
        let _ = self.0.on_invalidation.set(Box::new(f));
    }

    /// Changes the idle TTL used for new writes and reads (a reconfigured `cache_duration`).
    pub fn set_idle(&self, idle: Duration) {
        self.0.idle_ms.store(idle.as_millis().clamp(1, u64::MAX as u128) as u64, Relaxed);
    }

    /// The shared tier's answer for a key the local tier missed (see [`Remote`]). Call it as the
    /// local flight's leader, so each process asks once per key.
    pub fn fetch(&self, key: &Key) -> Pending<Remote> {
        let shared = Shared::new();
        let handle = shared.handle();
        let Some(conn) = self.0.conn.lock().clone() else {
            inc(&self.0.counters.fallbacks);
            shared.fire(Remote::Unavailable);
            return handle;
        };
        let tier = self.0.clone();
        let key = key.as_bytes().to_vec();
        RUNTIME.spawn(async move {
            let r = tier.clone().fetch(conn, key, &shared).await;
            shared.fire(r);
        });
        handle
    }

    /// Notes a local hit: the shared entry's idle TTL is refreshed in the next batch (at most
    /// once per a tenth of the duration per key).
    pub fn touch(&self, key: &Key) {
        self.0.touches.lock().insert(key.as_bytes().to_vec());
    }

    /// Deletes the key in Redis and tells every process to drop it locally.
    pub fn invalidate(&self, key: &Key) -> Pending<bool> {
        let (vkey, msg) =
            (self.0.key(b'v', key.as_bytes()), Message::Invalidate { key: key.as_bytes().to_vec() });
        self.0.clone().run(move |mut c, t| async move {
            redis::cmd("DEL").arg(&vkey).query_async::<()>(&mut c).await?;
            redis::cmd("PUBLISH").arg(&t.channel).arg(msg.encode()).query_async::<()>(&mut c).await?;
            Ok(true)
        })
    }

    /// Deletes the tag's values in Redis and tells every process to drop them locally.
    pub fn invalidate_tag(&self, tag: &str) -> Pending<bool> {
        let tkey = self.0.key(b't', tag.as_bytes());
        let msg = Message::InvalidateTag { tag: tag.to_owned() };
        self.0.clone().run(move |mut c, t| async move {
            redis::Script::new(protocol::INVALIDATE_TAG_SCRIPT)
                .key(&tkey)
                .invoke_async::<i64>(&mut c)
                .await?;
            redis::cmd("PUBLISH").arg(&t.channel).arg(msg.encode()).query_async::<()>(&mut c).await?;
            Ok(true)
        })
    }

    /// Deletes every value of the cache in Redis and tells every process to clear locally.
    pub fn clear(&self) -> Pending<bool> {
        self.0.clone().run(move |mut c, t| async move {
            let mut pattern = t.key(b'v', b"");
            pattern.push(b'*');
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await?;
                if !keys.is_empty() {
                    redis::cmd("DEL").arg(&keys).query_async::<()>(&mut c).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            redis::cmd("PUBLISH")
                .arg(&t.channel)
                .arg(Message::Clear.encode())
                .query_async::<()>(&mut c)
                .await?;
            Ok(true)
        })
    }

    /// The shared tier's counters.
    pub fn stats(&self) -> SharedStats {
        let c = &self.0.counters;
        SharedStats {
            remote_hits: c.remote_hits.load(Relaxed),
            leases_won: c.leases_won.load(Relaxed),
            leases_lost: c.leases_lost.load(Relaxed),
            remote_waits: c.remote_waits.load(Relaxed),
            fallbacks: c.fallbacks.load(Relaxed),
            rejected_values: c.rejected_values.load(Relaxed),
        }
    }
}

impl RemoteLease {
    /// Writes the value (if this process still owns the lease: a holder that lost it never
    /// overwrites a newer value) and hands it to the processes waiting. True if written.
    pub fn store(&self, blob: &Blob) -> Pending<bool> {
        let st = self.finish();
        let tier = st.tier.clone();
        let sealed = blob.seal(&st.key, tier.settings.secret.as_deref());
        let (lkey, vkey) = (tier.key(b'l', &st.key), tier.key(b'v', &st.key));
        let head = protocol::done_head(&st.key);
        let tag_keys: Vec<Vec<u8>> = blob.tags.iter().map(|t| tier.key(b't', t.as_bytes())).collect();
        let token = st.token.clone();
        let idle = tier.idle_ms.load(Relaxed);
        tier.run(move |mut c, t| async move {
            let script = redis::Script::new(protocol::PUBLISH_VALUE);
            let mut call = script.key(&lkey);
            call.key(&vkey).arg(&token).arg(&sealed).arg(idle).arg(&t.channel).arg(&head);
            for k in &tag_keys {
                call.arg(k);
            }
            let owned: i64 = call.invoke_async(&mut c).await?;
            Ok(owned == 1)
        })
    }

    /// Hands a value that is not to be stored to the waiting processes.
    pub fn nocache(&self, blob: &Blob) -> Pending<bool> {
        let st = self.finish();
        let sealed = blob.seal(&st.key, st.tier.settings.secret.as_deref());
        self.outcome(Message::NoCache { key: st.key.clone(), blob: sealed })
    }

    /// Hands an error to the waiting processes; nothing is stored.
    pub fn fail(&self, error: &RemoteError) -> Pending<bool> {
        let st = self.finish();
        self.outcome(Message::Failed {
            key: st.key.clone(),
            type_name: error.type_name.clone(),
            message: error.message.clone(),
        })
    }

    fn finish(&self) -> &LeaseState {
        self.0.finished.store(true, Relaxed);
        self.0.renew.abort();
        &self.0
    }

    fn outcome(&self, msg: Message) -> Pending<bool> {
        publish_outcome(&self.0.tier, &self.0.key, &self.0.token, msg)
    }
}

fn publish_outcome(tier: &Arc<Tier>, key: &[u8], token: &str, msg: Message) -> Pending<bool> {
    let lkey = tier.key(b'l', key);
    let token = token.to_owned();
    tier.clone().run(move |mut c, t| async move {
        let owned: i64 = redis::Script::new(protocol::PUBLISH_OUTCOME)
            .key(&lkey)
            .arg(&token)
            .arg(&t.channel)
            .arg(msg.encode())
            .invoke_async(&mut c)
            .await?;
        Ok(owned == 1)
    })
}

impl Drop for LeaseState {
    fn drop(&mut self) {
        self.renew.abort();
        if !self.finished.load(Relaxed) {
            drop(publish_outcome(
                &self.tier,
                &self.key,
                &self.token,
                Message::Released { key: self.key.clone() },
            ));
        }
    }
}

fn leak_reason(e: &redis::RedisError) -> &'static str {
    // ConfigError wants a static text; the redis error's kind is enough to say what is wrong.
    match e.kind() {
        redis::ErrorKind::InvalidClientConfig => {
            "a redis:// or rediss:// URL (redis://[user:password@]host:port[/db]) the client accepts"
        }
        _ => "a valid redis:// or rediss:// URL",
    }
}

impl Tier {
    fn key(&self, kind: u8, rest: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 2 + rest.len());
        k.extend_from_slice(&self.prefix);
        k.push(kind);
        k.push(b':');
        k.extend_from_slice(rest);
        k
    }

    /// Runs one Redis job on the runtime with the tier's timeout; false (and the tier marked
    /// down) if Redis failed or is not connected.
    fn run<F, Fut, T>(self: Arc<Self>, job: F) -> Pending<T>
    where
        F: FnOnce(ConnectionManager, Arc<Tier>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = redis::RedisResult<T>> + Send,
        T: Clone + Send + Default + 'static,
    {
        let shared = Shared::new();
        let handle = shared.handle();
        let Some(conn) = self.conn.lock().clone() else {
            shared.fire(T::default());
            return handle;
        };
        RUNTIME.spawn(async move {
            let timeout = self.settings.timeout;
            let r = tokio::time::timeout(timeout, job(conn, self.clone())).await;
            match r {
                Ok(Ok(v)) => shared.fire(v),
                Ok(Err(e)) => {
                    self.trouble(&e.to_string());
                    shared.fire(T::default());
                }
                Err(_) => {
                    self.trouble("a call timed out");
                    shared.fire(T::default());
                }
            }
        });
        handle
    }

    fn trouble(&self, why: &str) {
        if !self.warned.swap(true, Relaxed) {
            tracing::warn!(target: "coopcache", cache = %self.name, url = %redact(&self.settings.url), why,
                "shared tier unavailable; calls go on with the local tier");
            self.emit(Event::SharedDown { cache: self.name.clone(), reason: why.to_owned() });
        }
    }

    fn emit(&self, event: Event) {
        if let Some(l) = &self.listener {
            l(&event);
        }
    }

    fn fallback(&self) -> Remote {
        inc(&self.counters.fallbacks);
        Remote::Unavailable
    }

    fn open(&self, key: &[u8], blob: &[u8]) -> Option<Blob> {
        match Blob::open(key, blob, self.settings.secret.as_deref()) {
            Ok(b) => Some(b),
            Err(why) => {
                inc(&self.counters.rejected_values);
                tracing::warn!(target: "coopcache", cache = %self.name, why,
                    "a value in the shared tier was refused and treated as a miss");
                self.emit(Event::ValueRefused { cache: self.name.clone(), reason: why.to_owned() });
                None
            }
        }
    }

    async fn fetch(
        self: Arc<Self>,
        mut conn: ConnectionManager,
        key: Vec<u8>,
        interest: &Shared<Remote>,
    ) -> Remote {
        let (vkey, lkey) = (self.key(b'v', &key), self.key(b'l', &key));
        let lease_ms = self.settings.lease_ttl.as_millis() as u64;
        loop {
            if interest.live() == 0 {
                return Remote::Unavailable; // nobody is waiting for this answer any more
            }
            // Listen before looking, so a completion between the two is not missed.
            let (id, rx) = self.listen(&key);
            let _unlisten = Unlisten(&self, &key, id);
            let idle = self.idle_ms.load(Relaxed);
            let mut getex = redis::cmd("GETEX");
            getex.arg(&vkey).arg("PX").arg(idle);
            let Some(found) = self.call::<Option<Vec<u8>>>(&getex, &mut conn).await else {
                return self.fallback();
            };
            if let Some(blob) = found.and_then(|b| self.open(&key, &b)) {
                inc(&self.counters.remote_hits);
                return Remote::Value(blob);
            }
            let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
            let mut set = redis::cmd("SET");
            set.arg(&lkey).arg(&token).arg("NX").arg("PX").arg(lease_ms);
            match self.call::<Option<String>>(&set, &mut conn).await {
                None => return self.fallback(),
                Some(Some(_)) => {
                    inc(&self.counters.leases_won);
                    return Remote::Compute(self.lease(key.clone(), token, conn));
                }
                Some(None) => {}
            }
            inc(&self.counters.leases_lost);
            inc(&self.counters.remote_waits);
            let pttl = match self.call::<i64>(redis::cmd("PTTL").arg(&lkey), &mut conn).await {
                Some(ms) if ms > 0 => ms as u64,
                Some(_) => continue, // released meanwhile
                None => return self.fallback(),
            };
            // Wait for the holder's message; if none comes before its lease runs out, it died:
            // look again (and take the lease).
            match tokio::time::timeout(Duration::from_millis(pttl + 5), rx).await {
                Ok(Ok(Some(msg))) => match msg {
                    Message::Done { blob, .. } => {
                        if let Some(blob) = self.open(&key, &blob) {
                            inc(&self.counters.remote_hits);
                            return Remote::Value(blob);
                        }
                    }
                    Message::NoCache { blob, .. } => {
                        if let Some(blob) = self.open(&key, &blob) {
                            return Remote::NoCache(blob);
                        }
                    }
                    Message::Failed { type_name, message, .. } => {
                        return Remote::Failed(RemoteError { type_name, message });
                    }
                    _ => {}
                },
                Ok(Ok(None)) => return self.fallback(), // the connection went down
                Ok(Err(_)) | Err(_) => {}
            }
        }
    }

    /// One Redis command within the tier's timeout; `None` (and the tier reported in trouble) if
    /// it failed or timed out.
    async fn call<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        conn: &mut ConnectionManager,
    ) -> Option<T> {
        match tokio::time::timeout(self.settings.timeout, cmd.query_async::<T>(conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.trouble(&e.to_string());
                None
            }
            Err(_) => {
                self.trouble("a call timed out");
                None
            }
        }
    }

    fn lease(self: &Arc<Self>, key: Vec<u8>, token: String, mut conn: ConnectionManager) -> RemoteLease {
        let (lkey, tok) = (self.key(b'l', &key), token.clone());
        let ttl = self.settings.lease_ttl;
        let renew = RUNTIME.spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                let r = redis::Script::new(protocol::RENEW)
                    .key(&lkey)
                    .arg(&tok)
                    .arg(ttl.as_millis() as u64)
                    .invoke_async::<i64>(&mut conn)
                    .await;
                if matches!(r, Ok(0)) {
                    return; // lost the lease: another process took over after it expired
                }
            }
        });
        RemoteLease(Arc::new(LeaseState {
            tier: self.clone(),
            key,
            token,
            finished: AtomicBool::new(false),
            renew: renew.abort_handle(),
        }))
    }

    fn listen(&self, key: &[u8]) -> (u64, oneshot::Receiver<Option<Message>>) {
        let (tx, rx) = oneshot::channel();
        let id = self.next_waiter.fetch_add(1, Relaxed);
        self.waiters.lock().entry(key.to_vec()).or_default().push((id, tx));
        (id, rx)
    }

    fn dispatch(&self, payload: &[u8]) {
        let Some(msg) = Message::decode(payload) else { return };
        if let Some(key) = msg.completion_key() {
            let waiting = self.waiters.lock().remove(key).unwrap_or_default();
            for (_, tx) in waiting {
                let _ = tx.send(Some(msg.clone()));
            }
            return;
        }
        if let Some(f) = self.on_invalidation.get() {
            match &msg {
                Message::Invalidate { key } => f(Invalidation::Key(key)),
                Message::InvalidateTag { tag } => f(Invalidation::Tag(tag)),
                Message::Clear => f(Invalidation::All),
                _ => {}
            }
        }
    }

    /// The connection is gone: stop answering from Redis and release every remote wait.
    fn down(&self, why: &str) {
        *self.conn.lock() = None;
        self.trouble(why);
        let waiting = std::mem::take(&mut *self.waiters.lock());
        for (_, list) in waiting {
            for (_, tx) in list {
                let _ = tx.send(None);
            }
        }
    }
}

struct Unlisten<'a>(&'a Tier, &'a [u8], u64);

impl Drop for Unlisten<'_> {
    fn drop(&mut self) {
        let mut w = self.0.waiters.lock();
        if let Some(list) = w.get_mut(self.1) {
            list.retain(|(id, _)| *id != self.2);
            if list.is_empty() {
                w.remove(self.1);
            }
        }
    }
}

/// Keeps the tier connected and subscribed, dispatching messages; reconnects with backoff.
async fn subscriber(tier: Weak<Tier>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(t) = tier.upgrade() else { return };
        let timeout = t.settings.timeout;
        let connected = tokio::time::timeout(timeout, async {
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            let cm = ConnectionManager::new_with_config(t.client.clone(), cfg).await?;
            let mut ps = t.client.get_async_pubsub().await?;
            ps.subscribe(&t.channel).await?;
            Ok::<_, redis::RedisError>((cm, ps))
        })
        .await;
        match connected {
            Ok(Ok((cm, mut ps))) => {
                *t.conn.lock() = Some(cm);
                if t.warned.swap(false, Relaxed) {
                    tracing::info!(target: "coopcache", cache = %t.name, "shared tier reconnected");
                    t.emit(Event::SharedUp { cache: t.name.clone() });
                }
                backoff = Duration::from_millis(100);
                drop(t);
                let mut messages = ps.on_message();
                loop {
                    tokio::select! {
                        m = messages.next() => match m {
                            Some(m) => match tier.upgrade() {
                                Some(t) => t.dispatch(m.get_payload_bytes()),
                                None => return,
                            },
                            None => break,
                        },
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {
                            if tier.strong_count() == 0 {
                                return;
                            }
                        }
                    }
                }
                match tier.upgrade() {
                    Some(t) => t.down("the connection to Redis was lost"),
                    None => return,
                }
            }
            Ok(Err(e)) => t.down(&e.to_string()),
            Err(_) => t.down("connecting timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Sends the batched touches: each key's idle TTL refreshed at most once per tenth of it.
async fn toucher(tier: Weak<Tier>) {
    loop {
        let Some(t) = tier.upgrade() else { return };
        let idle = t.idle_ms.load(Relaxed);
        let period = Duration::from_millis((idle / 10).max(50));
        let keys: Vec<Vec<u8>> = t.touches.lock().drain().collect();
        let conn = t.conn.lock().clone();
        if let (false, Some(mut c)) = (keys.is_empty(), conn) {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("PEXPIRE").arg(t.key(b'v', k)).arg(idle).ignore();
            }
            let _ = tokio::time::timeout(t.settings.timeout, pipe.query_async::<()>(&mut c)).await;
        }
        drop(t);
        tokio::time::sleep(period).await;
    }
}
