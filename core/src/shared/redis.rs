//! The shared tier on Redis: one computation per key across processes and machines.
//!
//! On a local miss the local leader asks [`RedisTier::fetch`], which reads the value
//! (`GETEX .. PX`, refreshing the idle TTL), or takes the key's lease (`SET NX PX` with a random
//! owner token) so this process computes, or waits for the lease holder's completion message on
//! pub/sub (no polling; if the holder dies, its lease expires and the wait ends with a retry).
//! The holder renews its lease while it computes and publishes with a script that writes only if
//! it still owns the lease.
//!
//! The Redis work runs on one background runtime thread per process. When Redis is down or slow
//! (every call has a timeout), steps answer [`Remote::Unavailable`] at once and callers go on with
//! the local tier; one warning is logged and the tier reconnects in the background.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, OnceLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::oneshot;

use super::protocol::{self, Kind, Message, Names, Signer};
use super::{
    Blob, Counters, Invalidation, InvalidationHook, LeaseKind, Remote, RemoteError, RemoteLease,
    SharedSettings, inc, redact,
};
use crate::config::ConfigError;
use crate::keys::Key;
use crate::stats::{Event, Listener};
use crate::wait::{Pending, Shared};

type Waiters = HashMap<Vec<u8>, Vec<(u64, oneshot::Sender<Option<Message>>)>>;

struct Tier {
    name: String,
    names: Names,
    channel: Vec<u8>,
    signer: Signer,
    client: redis::Client,
    settings: SharedSettings,
    idle_ms: AtomicU64,
    conn: Mutex<Option<ConnectionManager>>,
    /// Set once the first attempt to connect has ended, either way.
    first_attempt: tokio::sync::watch::Sender<bool>,
    warned: AtomicBool,
    waiters: Mutex<Waiters>,
    next_waiter: AtomicU64,
    touches: Mutex<HashSet<Vec<u8>>>,
    on_invalidation: OnceLock<InvalidationHook>,
    counters: Counters,
    listener: Option<Listener>,
}

/// This process's lease on a key in Redis, renewed in the background until finished or dropped.
pub(super) struct LeaseState {
    tier: Arc<Tier>,
    key: Vec<u8>,
    token: String,
    finished: AtomicBool,
    renew: tokio::task::AbortHandle,
}

/// The Redis tier of one named cache. Cheap to clone.
#[derive(Clone)]
pub(super) struct RedisTier(Arc<Tier>);

/// One runtime thread for every shared tier of the process.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    #[cfg(feature = "tls")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("coopcache-shared")
        .enable_all()
        .build()
        .expect("start the coopcache shared-tier runtime")
});

impl RedisTier {
    /// Validates the settings (a bad URL is an error now, with the password masked) and starts
    /// connecting in the background.
    pub(super) fn start(
        cache: &str,
        settings: SharedSettings,
        idle: Duration,
        listener: Option<Listener>,
    ) -> Result<RedisTier, ConfigError> {
        let client = settings.validate()?;
        let names = Names::new(cache);
        let tier = Arc::new(Tier {
            name: cache.to_owned(),
            channel: names.channel(),
            names,
            signer: Signer::new(cache, settings.secret.as_deref()),
            client,
            settings,
            idle_ms: AtomicU64::new(idle.as_millis().clamp(1, u64::MAX as u128) as u64),
            conn: Mutex::new(None),
            first_attempt: tokio::sync::watch::Sender::new(false),
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
        Ok(RedisTier(tier))
    }

    /// The Redis URL it was configured with.
    pub(super) fn url(&self) -> &str {
        &self.0.settings.url
    }

    /// Whether the tier is connected (subscribed to its channel) now.
    pub(super) fn is_up(&self) -> bool {
        self.0.conn.lock().is_some()
    }

    /// Sets what to do when another process invalidates (the local tier's own invalidation).
    /// Set once; later calls are ignored.
    pub(super) fn on_invalidation(&self, f: impl Fn(Invalidation<'_>) + Send + Sync + 'static) {
        let _ = self.0.on_invalidation.set(Box::new(f));
    }

    /// Changes the idle TTL used for new writes and reads (a reconfigured `cache_duration`).
    pub(super) fn set_idle(&self, idle: Duration) {
        self.0.idle_ms.store(idle.as_millis().clamp(1, u64::MAX as u128) as u64, Relaxed);
    }

    /// The shared tier's answer for a key the local tier missed (see [`Remote`]). Call it as the
    /// local flight's leader, so each process asks once per key.
    pub(super) fn fetch(&self, key: &Key) -> Pending<Remote> {
        let shared = Shared::new();
        let handle = shared.handle();
        let known = self.0.conn.lock().clone();
        if known.is_none() && self.0.tried() {
            inc(&self.0.counters.fallbacks);
            shared.fire(Remote::Unavailable);
            return handle;
        }
        let tier = self.0.clone();
        let key = key.as_bytes().to_vec();
        RUNTIME.spawn(async move {
            let r = match tier.connection(known).await {
                Some(conn) => tier.clone().fetch(conn, key, &shared).await,
                None => tier.fallback(),
            };
            shared.fire(r);
        });
        handle
    }

    /// Notes a local hit: the shared entry's idle TTL is refreshed in the next batch (at most
    /// once per a tenth of the duration per key).
    pub(super) fn touch(&self, key: &Key) {
        self.0.touches.lock().insert(key.as_bytes().to_vec());
    }

    /// Deletes the key in Redis and tells every process to drop it locally.
    pub(super) fn invalidate(&self, key: &Key) -> Pending<bool> {
        let (vkey, msg) = (
            self.0.names.key(Kind::Value, key.as_bytes()),
            Message::Invalidate { key: key.as_bytes().to_vec() },
        );
        self.0.clone().run(move |mut c, t| async move {
            redis::cmd("DEL").arg(&vkey).query_async::<()>(&mut c).await?;
            redis::cmd("PUBLISH")
                .arg(&t.channel)
                .arg(t.signer.message(&msg))
                .query_async::<()>(&mut c)
                .await?;
            Ok(true)
        })
    }

    /// Deletes the tag's values in Redis and tells every process to drop them locally.
    pub(super) fn invalidate_tag(&self, tag: &str) -> Pending<bool> {
        let tkey = self.0.names.key(Kind::TagSet, tag.as_bytes());
        let msg = Message::InvalidateTag { tag: tag.to_owned() };
        self.0.clone().run(move |mut c, t| async move {
            redis::Script::new(protocol::INVALIDATE_TAG_SCRIPT)
                .key(&tkey)
                .invoke_async::<i64>(&mut c)
                .await?;
            redis::cmd("PUBLISH")
                .arg(&t.channel)
                .arg(t.signer.message(&msg))
                .query_async::<()>(&mut c)
                .await?;
            Ok(true)
        })
    }

    /// Deletes every value of the cache in Redis and tells every process to clear locally.
    pub(super) fn clear(&self) -> Pending<bool> {
        self.0.clone().run(move |mut c, t| async move {
            let pattern = t.names.pattern(Kind::Value);
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
                .arg(t.signer.message(&Message::Clear))
                .query_async::<()>(&mut c)
                .await?;
            Ok(true)
        })
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.0.counters
    }
}

impl LeaseState {
    /// Writes the value (if this process still owns the lease: a holder that lost it never
    /// overwrites a newer value) and hands it to the processes waiting. True if written.
    pub(super) fn store(&self, blob: &Blob) -> Pending<bool> {
        let st = self.finish();
        let tier = st.tier.clone();
        let sealed = tier.signer.seal(&st.key, blob);
        let (lkey, vkey) = (tier.names.key(Kind::Lease, &st.key), tier.names.key(Kind::Value, &st.key));
        let head = tier.signer.done_head(&st.key, &sealed);
        let tag_keys: Vec<Vec<u8>> =
            blob.tags.iter().map(|t| tier.names.key(Kind::TagSet, t.as_bytes())).collect();
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
    pub(super) fn nocache(&self, blob: &Blob) -> Pending<bool> {
        let st = self.finish();
        let sealed = st.tier.signer.seal(&st.key, blob);
        self.outcome(Message::NoCache { key: st.key.clone(), blob: sealed })
    }

    /// Hands an error to the waiting processes; nothing is stored.
    pub(super) fn fail(&self, error: &RemoteError) -> Pending<bool> {
        let st = self.finish();
        self.outcome(Message::Failed {
            key: st.key.clone(),
            type_name: error.type_name.clone(),
            message: error.message.clone(),
        })
    }

    fn finish(&self) -> &LeaseState {
        self.finished.store(true, Relaxed);
        self.renew.abort();
        self
    }

    fn outcome(&self, msg: Message) -> Pending<bool> {
        publish_outcome(&self.tier, &self.key, &self.token, msg)
    }
}

fn publish_outcome(tier: &Arc<Tier>, key: &[u8], token: &str, msg: Message) -> Pending<bool> {
    let lkey = tier.names.key(Kind::Lease, key);
    let token = token.to_owned();
    tier.clone().run(move |mut c, t| async move {
        let owned: i64 = redis::Script::new(protocol::PUBLISH_OUTCOME)
            .key(&lkey)
            .arg(&token)
            .arg(&t.channel)
            .arg(t.signer.message(&msg))
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

pub(super) fn leak_reason(e: &redis::RedisError) -> &'static str {
    // ConfigError wants a static text; the redis error's kind is enough to say what is wrong.
    match e.kind() {
        redis::ErrorKind::InvalidClientConfig => {
            "a redis:// or rediss:// URL (redis://[user:password@]host:port[/db]) the client accepts"
        }
        _ => "a valid redis:// or rediss:// URL",
    }
}

impl Tier {
    /// Whether the first attempt to connect has ended (connected or not).
    fn tried(&self) -> bool {
        *self.first_attempt.borrow()
    }

    /// The connection. Until the first attempt to connect ends, waits for it (bounded by the
    /// timeout), so that a new cache's first calls use Redis instead of racing its connection:
    /// one rule for every binding, and nobody blocks (the wait is a [`Pending`] like any other).
    async fn connection(&self, known: Option<ConnectionManager>) -> Option<ConnectionManager> {
        if known.is_some() {
            return known;
        }
        let mut first = self.first_attempt.subscribe();
        let _ = tokio::time::timeout(self.settings.timeout, first.wait_for(|tried| *tried)).await;
        self.conn.lock().clone()
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
        let known = self.conn.lock().clone();
        if known.is_none() && self.tried() {
            shared.fire(T::default());
            return handle;
        }
        RUNTIME.spawn(async move {
            let Some(conn) = self.connection(known).await else {
                shared.fire(T::default());
                return;
            };
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
        match self.signer.open(key, blob) {
            Ok(b) => Some(b),
            Err(why) => {
                self.refused(why, "a value in the shared tier was refused and treated as a miss");
                None
            }
        }
    }

    /// Counts, logs and reports a value or message that did not check out.
    fn refused(&self, why: &str, what: &'static str) {
        inc(&self.counters.rejected_values);
        tracing::warn!(target: "coopcache", cache = %self.name, why, "{what}");
        self.emit(Event::ValueRefused { cache: self.name.clone(), reason: why.to_owned() });
    }

    async fn fetch(
        self: Arc<Self>,
        mut conn: ConnectionManager,
        key: Vec<u8>,
        interest: &Shared<Remote>,
    ) -> Remote {
        let (vkey, lkey) = (self.names.key(Kind::Value, &key), self.names.key(Kind::Lease, &key));
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
        let (lkey, tok) = (self.names.key(Kind::Lease, &key), token.clone());
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
        RemoteLease(LeaseKind::Redis(Arc::new(LeaseState {
            tier: self.clone(),
            key,
            token,
            finished: AtomicBool::new(false),
            renew: renew.abort_handle(),
        })))
    }

    fn listen(&self, key: &[u8]) -> (u64, oneshot::Receiver<Option<Message>>) {
        let (tx, rx) = oneshot::channel();
        let id = self.next_waiter.fetch_add(1, Relaxed);
        self.waiters.lock().entry(key.to_vec()).or_default().push((id, tx));
        (id, rx)
    }

    fn dispatch(&self, payload: &[u8]) {
        let msg = match self.signer.read(payload) {
            Ok(msg) => msg,
            Err(why) => return self.refused(why, "a message on the shared tier's channel was dropped"),
        };
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
        self.first_attempt.send_replace(true);
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
                t.first_attempt.send_replace(true);
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
                pipe.cmd("PEXPIRE").arg(t.names.key(Kind::Value, k)).arg(idle).ignore();
            }
            let _ = tokio::time::timeout(t.settings.timeout, pipe.query_async::<()>(&mut c)).await;
        }
        drop(t);
        tokio::time::sleep(period).await;
    }
}
