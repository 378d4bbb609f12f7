//! The shared tier on Redis: one computation per key across processes and machines.
//!
//! On a local miss the local leader asks [`RedisTier::fetch`], which reads the value
//! (`GETEX .. PX`, refreshing the idle TTL), or takes the key's lease (a script: `SET NX PX`
//! with an owner token, or the take-over of a lease an invalidation made stale) so this
//! process computes, or waits for that lease's completion message on pub/sub (no polling; if
//! the holder dies, its lease expires and the wait ends with a retry). Completions go to the
//! key's channel, which a process subscribes to only while it waits for one of them (see the
//! protocol's docs); having found the lease taken, it subscribes, then looks once more, so a
//! completion published before its subscription was confirmed is not missed. The holder renews its
//! lease while it computes and publishes with a script that writes only if it still owns the
//! lease and no invalidation overtook it (see the protocol's docs); a publish that fails ends
//! the lease all the same. A refresh's publish also announces the write to every process on the
//! cache's channel, which hands it to the local tier with the invalidations (`Refreshed`).
//!
//! Every Redis call goes through the cache's [`Link`], the connections the process shares with
//! every other cache on the same Redis. When Redis is down or slow (every call has a timeout),
//! steps answer [`Remote::Unavailable`] at once and callers go on with the local tier; one
//! warning is logged and the link reconnects in the background.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::link::{Conn, Link, Member, spawn};
use super::protocol::{self, Kind, Message, Names, Signer};
use super::{
    Blob, Counters, Invalidation, InvalidationHook, LeaseKind, Moment, Remote, RemoteError, RemoteLease,
    SharedSettings, inc,
};
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::keys::Key;
use crate::stats::{Event, Listener};
use crate::wait::{Pending, Shared};

/// The callers waiting for another process's completion, by key: each gets every completion
/// of the key (and picks its lease's), or `None` when the link goes down.
type Waiters = HashMap<Vec<u8>, Vec<(u64, mpsc::UnboundedSender<Option<Message>>)>>;

/// See [`RedisTier::at`].
type Hook = Box<dyn Fn(Moment, &[u8]) + Send + Sync>;

struct Tier {
    name: String,
    names: Names,
    channel: Vec<u8>,
    signer: Signer,
    /// The cache's clock: the time written with each value (see [`Clock::wall_ms`]).
    clock: Clock,
    link: Arc<Link>,
    settings: SharedSettings,
    idle_ms: AtomicU64,
    waiters: Mutex<Waiters>,
    next_waiter: AtomicU64,
    touches: Mutex<HashSet<Vec<u8>>>,
    on_invalidation: OnceLock<InvalidationHook>,
    counters: Counters,
    listener: Option<Listener>,
    /// Whether the listener was last told the tier is down.
    reported_down: AtomicBool,
    /// The keys' channels this tier is on, with how many of its fetches wait on each.
    watching: Mutex<HashMap<Vec<u8>, usize>>,
    /// Tests only: runs at the moments of a fetch (see [`RedisTier::at`]).
    hook: OnceLock<Hook>,
}

/// This process's lease on a key in Redis, renewed in the background until finished or dropped.
pub(super) struct LeaseState {
    tier: Arc<Tier>,
    key: Vec<u8>,
    token: String,
    /// Whether it refreshes a value (`refresh_after`): its write is then announced to every
    /// process of the cache (`Refreshed`, see the protocol's docs).
    refresh: bool,
    finished: AtomicBool,
    renew: tokio::task::AbortHandle,
}

/// The Redis tier of one named cache. Cheap to clone.
#[derive(Clone)]
pub(super) struct RedisTier(Arc<Tier>);

impl RedisTier {
    /// Validates the settings (a bad URL is an error now, with the password masked) and joins
    /// the process's link to that Redis (connecting it in the background if it is the first).
    pub(super) fn start(
        cache: &str,
        settings: SharedSettings,
        idle: Duration,
        clock: Clock,
        listener: Option<Listener>,
    ) -> Result<RedisTier, ConfigError> {
        let link = Link::get(&settings)?;
        let names = Names::new(cache, link.is_cluster());
        let tier = Arc::new(Tier {
            name: cache.to_owned(),
            channel: names.channel(),
            names,
            signer: Signer::new(cache, settings.secret.as_deref()),
            clock,
            link,
            settings,
            idle_ms: AtomicU64::new(idle.as_millis().clamp(1, u64::MAX as u128) as u64),
            waiters: Mutex::new(HashMap::new()),
            next_waiter: AtomicU64::new(0),
            touches: Mutex::new(HashSet::new()),
            on_invalidation: OnceLock::new(),
            counters: Counters::default(),
            listener,
            reported_down: AtomicBool::new(false),
            watching: Mutex::new(HashMap::new()),
            hook: OnceLock::new(),
        });
        tier.link.join(&tier.channel, tier.member());
        spawn(toucher(Arc::downgrade(&tier)));
        Ok(RedisTier(tier))
    }

    /// The Redis URL it was configured with.
    pub(super) fn url(&self) -> &str {
        &self.0.settings.url
    }

    /// Whether the tier is up: the link up and the cache's channel subscribed.
    pub(super) fn is_up(&self) -> bool {
        self.0.link.ready(&self.0.channel)
    }

    /// Sets what to do when another process invalidates (the local tier's own invalidation).
    /// Set once; later calls are ignored.
    pub(super) fn on_invalidation(&self, f: impl Fn(Invalidation<'_>) + Send + Sync + 'static) {
        let _ = self.0.on_invalidation.set(Box::new(f));
    }

    /// Tests only: `f` runs with the key's bytes at the [`Moment`]s of a fetch. Set once.
    pub(super) fn at(&self, f: impl Fn(Moment, &[u8]) + Send + Sync + 'static) {
        let _ = self.0.hook.set(Box::new(f));
    }

    /// Changes the idle TTL used for new writes and reads (a reconfigured `cache_duration`).
    pub(super) fn set_idle(&self, idle: Duration) {
        self.0.idle_ms.store(idle.as_millis().clamp(1, u64::MAX as u128) as u64, Relaxed);
    }

    /// The shared tier's answer for a key the local tier missed (see [`Remote`]), or, for a
    /// refresh (`within`: the value's `refresh_after`), for a key whose value is due: a value
    /// written less than `within` ago (another process refreshed it), else compute under the
    /// lease, or wait for the process that holds it. Call it as the local flight's leader, so
    /// each process asks once per key.
    pub(super) fn fetch(&self, key: &Key, within: Option<Duration>) -> Pending<Remote> {
        let shared = Shared::new();
        let handle = shared.handle();
        if self.0.link.refuses_now(&self.0.channel) {
            shared.fire(self.0.fallback());
            return handle;
        }
        let tier = self.0.clone();
        let key = key.as_bytes().to_vec();
        spawn(async move {
            let r = match tier.link.usable(&tier.channel).await {
                true => tier.clone().fetch(key, within, &shared).await,
                false => tier.fallback(),
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

    /// Deletes the key in Redis and tells every process to drop it locally. A computation of
    /// the key running now does not store its value (see the protocol's docs).
    pub(super) fn invalidate(&self, key: &Key) -> Pending<bool> {
        let t = &self.0;
        let (vkey, lkey) =
            (t.names.key(Kind::Value, key.as_bytes()), t.names.key(Kind::Lease, key.as_bytes()));
        let msg = t.signer.message(&Message::Invalidate { key: key.as_bytes().to_vec() });
        let channel = t.channel.clone();
        t.clone().run(move |mut c| async move {
            redis::Script::new(protocol::INVALIDATE_KEY_SCRIPT)
                .key(&vkey)
                .key(&lkey)
                .arg(&channel)
                .arg(msg)
                .invoke_async::<()>(&mut c)
                .await?;
            Ok(true)
        })
    }

    /// Deletes the tag's values in Redis and tells every process to drop them locally. A
    /// computation running now does not store a value with this tag.
    pub(super) fn invalidate_tag(&self, tag: &str) -> Pending<bool> {
        let t = &self.0;
        let tkey = t.names.key(Kind::TagSet, tag.as_bytes());
        let (epoch, tag_epoch) = (t.names.key(Kind::Epoch, b""), t.names.key(Kind::TagEpoch, tag.as_bytes()));
        let msg = t.signer.message(&Message::InvalidateTag { tag: tag.to_owned() });
        let channel = t.channel.clone();
        t.clone().run(move |mut c| async move {
            if c.is_cluster() {
                // Each key in its own slot (see the protocol's docs): the epoch first, so a
                // value stored from now on under an older one is stale.
                let e: i64 = redis::cmd("INCR").arg(&epoch).query_async(&mut c).await?;
                redis::Script::new(protocol::SET_MAX)
                    .key(&tag_epoch)
                    .arg(e)
                    .invoke_async::<()>(&mut c)
                    .await?;
                let members: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(&tkey).query_async(&mut c).await?;
                for k in members {
                    redis::cmd("DEL").arg(k).query_async::<()>(&mut c).await?;
                }
                redis::cmd("DEL").arg(&tkey).query_async::<()>(&mut c).await?;
                redis::cmd("PUBLISH").arg(&channel).arg(msg).query_async::<()>(&mut c).await?;
                return Ok(true);
            }
            redis::Script::new(protocol::INVALIDATE_TAG_SCRIPT)
                .key(&tkey)
                .key(&epoch)
                .key(&tag_epoch)
                .arg(&channel)
                .arg(msg)
                .invoke_async::<i64>(&mut c)
                .await?;
            Ok(true)
        })
    }

    /// Deletes every value of the cache in Redis and tells every process to clear locally. No
    /// computation running now stores its value.
    pub(super) fn clear(&self) -> Pending<bool> {
        let t = &self.0;
        let pattern = t.names.pattern(Kind::Value);
        let (epoch, cleared) = (t.names.key(Kind::Epoch, b""), t.names.key(Kind::Cleared, b""));
        let msg = t.signer.message(&Message::Clear);
        let channel = t.channel.clone();
        t.clone().run(move |mut c| async move {
            redis::Script::new(protocol::CLEAR_SCRIPT)
                .key(&epoch)
                .key(&cleared)
                .invoke_async::<i64>(&mut c)
                .await?;
            // One Redis, or every master of a cluster (each scanned on its own).
            let masters = match c.is_cluster() {
                true => c.masters().await?.into_iter().map(Some).collect(),
                false => vec![None],
            };
            for node in masters {
                let mut cursor = 0u64;
                loop {
                    let mut scan = redis::cmd("SCAN");
                    scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000);
                    let (next, keys): (u64, Vec<Vec<u8>>) = match &node {
                        Some(node) => c.on_node(node, scan).await?,
                        None => scan.query_async(&mut c).await?,
                    };
                    if !keys.is_empty() {
                        // A multi-key DEL across slots is split by slot by the cluster client.
                        redis::cmd("DEL").arg(&keys).query_async::<()>(&mut c).await?;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            redis::cmd("PUBLISH").arg(&channel).arg(msg).query_async::<()>(&mut c).await?;
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
    ///
    /// Any failure to publish ends the lease at once, so the other processes' waiters do not
    /// wait it out: a write Redis refuses is announced as not stored (they get the value), and
    /// a publish that failed, timed out or was never sent is followed by the lease's release.
    pub(super) fn store(&self, blob: &Blob) -> Pending<bool> {
        let st = self.finish();
        let tier = st.tier.clone();
        let written = tier.clock.wall_ms();
        let sealed = tier.signer.seal(&st.key, blob, written);
        let refreshed = match st.refresh {
            true => tier.signer.message(&Message::Refreshed { key: st.key.clone(), written }),
            false => Vec::new(),
        };
        let (lkey, vkey) = (tier.names.key(Kind::Lease, &st.key), tier.names.key(Kind::Value, &st.key));
        let done = tier.signer.done_head(&st.key, st.token.as_bytes(), &sealed);
        let nocache = tier.signer.nocache_head(&st.key, st.token.as_bytes(), &sealed);
        let cleared = tier.names.key(Kind::Cleared, b"");
        let tag_keys: Vec<Vec<u8>> = [Kind::TagSet, Kind::TagEpoch]
            .into_iter()
            .flat_map(|kind| blob.tags.iter().map(move |t| (kind, t)))
            .map(|(kind, t)| tier.names.key(kind, t.as_bytes()))
            .collect();
        let idle = tier.idle_ms.load(Relaxed);
        let channel = tier.names.key_channel(&st.key);
        let release = ReleaseUnlessPublished(Some((tier.clone(), st.key.clone(), st.token.clone())));
        tier.run(move |mut c| async move {
            let mut release = release;
            let Some((tier, _, token)) = &release.0 else { unreachable!("armed until published") };
            let name = tier.name.clone();
            let answer = match c.is_cluster() {
                true => {
                    let tags = tag_keys.len() / 2;
                    let (sets, epochs) = tag_keys.split_at(tags);
                    let snap = lease_epoch(token);
                    let mut store = tier.fresh(&mut c, snap, epochs).await?;
                    for set in sets {
                        // The tag sets first: a value is never stored without them.
                        if store {
                            let added =
                                redis::cmd("SADD").arg(set).arg(&vkey).query_async::<i64>(&mut c).await;
                            store = added.is_ok();
                        }
                    }
                    redis::Script::new(protocol::PUBLISH_VALUE_CLUSTER)
                        .key(&lkey)
                        .key(&vkey)
                        .arg(token)
                        .arg(&sealed)
                        .arg(idle)
                        .arg(&channel)
                        .arg(&done)
                        .arg(&nocache)
                        .arg(if store { "1" } else { "0" })
                        .arg(&snap.to_be_bytes()[..])
                        .arg(&tier.channel)
                        .arg(&refreshed)
                        .invoke_async::<redis::Value>(&mut c)
                        .await?
                }
                false => {
                    let script = redis::Script::new(protocol::PUBLISH_VALUE);
                    let mut call = script.key(&lkey);
                    call.key(&vkey).key(&cleared);
                    for k in &tag_keys {
                        call.key(k);
                    }
                    call.arg(token).arg(&sealed).arg(idle).arg(&channel).arg(&done).arg(&nocache);
                    call.arg(&tier.channel).arg(&refreshed);
                    call.invoke_async::<redis::Value>(&mut c).await?
                }
            };
            release.0 = None; // the script ended the lease, whatever it answered
            match answer {
                redis::Value::Int(n) => Ok(n == 1),
                refusal => {
                    tracing::warn!(target: "coopcache", cache = %name, ?refusal,
                        "Redis refused to store a value; the processes waiting got it, not stored");
                    Ok(false)
                }
            }
        })
    }

    /// Hands a value that is not to be stored to the waiting processes.
    pub(super) fn nocache(&self, blob: &Blob) -> Pending<bool> {
        let st = self.finish();
        let sealed = st.tier.signer.seal(&st.key, blob, st.tier.clock.wall_ms());
        self.outcome(Message::NoCache {
            key: st.key.clone(),
            token: st.token.clone().into_bytes(),
            blob: sealed,
        })
    }

    /// Hands an error to the waiting processes; nothing is stored.
    pub(super) fn fail(&self, error: &RemoteError) -> Pending<bool> {
        let st = self.finish();
        self.outcome(Message::Failed {
            key: st.key.clone(),
            token: st.token.clone().into_bytes(),
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
    let (channel, msg) = (tier.names.key_channel(key), tier.signer.message(&msg));
    let publish = tier.names.publish();
    tier.clone().run(move |mut c| async move {
        let owned: i64 = redis::Script::new(protocol::PUBLISH_OUTCOME)
            .key(&lkey)
            .arg(&token)
            .arg(&channel)
            .arg(msg)
            .arg(publish)
            .invoke_async(&mut c)
            .await?;
        Ok(owned == 1)
    })
}

/// Releases a lease when dropped armed: a publish that failed, timed out or never ran.
struct ReleaseUnlessPublished(Option<(Arc<Tier>, Vec<u8>, String)>);

impl Drop for ReleaseUnlessPublished {
    fn drop(&mut self) {
        if let Some((tier, key, token)) = self.0.take() {
            let released = Message::Released { key: key.clone(), token: token.clone().into_bytes() };
            drop(publish_outcome(&tier, &key, &token, released));
        }
    }
}

impl Drop for LeaseState {
    fn drop(&mut self) {
        self.renew.abort();
        if !self.finished.load(Relaxed) {
            let released =
                Message::Released { key: self.key.clone(), token: self.token.clone().into_bytes() };
            drop(publish_outcome(&self.tier, &self.key, &self.token, released));
        }
    }
}

pub(super) fn leak_reason(e: &redis::RedisError) -> &'static str {
    // ConfigError wants a static text; the redis error's kind is enough to say what is wrong.
    match e.kind() {
        redis::ErrorKind::InvalidClientConfig => {
            "a redis:// or rediss:// URL (redis://[user:password@]host:port[/db]) the client accepts, \
             or for a cluster redis+cluster:// or rediss+cluster:// with host:port seeds separated by commas"
        }
        _ => "a valid redis://, rediss://, redis+cluster:// or rediss+cluster:// URL",
    }
}

/// The cache's epoch when the lease of `token` (`random:epoch`) was taken.
fn lease_epoch(token: &str) -> u64 {
    token.rsplit_once(':').and_then(|(_, e)| e.parse().ok()).unwrap_or(0)
}

impl Member for Tier {
    fn deliver(&self, payload: &[u8]) {
        self.counters.message_bytes.fetch_add(payload.len() as u64, Relaxed);
        self.dispatch(payload);
    }

    fn release_waiters(&self) {
        let waiting = std::mem::take(&mut *self.waiters.lock());
        for (_, list) in waiting {
            for (_, tx) in list {
                let _ = tx.send(None);
            }
        }
    }

    fn report(&self, trouble: Option<&str>) {
        let down = trouble.is_some();
        if self.reported_down.swap(down, Relaxed) == down {
            return; // told already
        }
        self.emit(match trouble {
            Some(why) => Event::SharedDown { cache: self.name.clone(), reason: why.to_owned() },
            None => Event::SharedUp { cache: self.name.clone() },
        });
    }

    fn waiting(&self) -> bool {
        !self.waiters.lock().is_empty()
    }
}

impl Drop for Tier {
    fn drop(&mut self) {
        self.link.leave(&self.channel);
    }
}

impl Tier {
    /// Runs one Redis job on the runtime with the link's timeout; `T::default()` (false) if
    /// Redis failed or is not connected. While the link is down the answer is at once, and the
    /// job is still tried in the background (a lease's release, an invalidation: Redis may be
    /// back).
    fn run<F, Fut, T>(self: Arc<Self>, job: F) -> Pending<T>
    where
        F: FnOnce(Conn) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = redis::RedisResult<T>> + Send,
        T: Clone + Send + Default + 'static,
    {
        let shared = Shared::new();
        let handle = shared.handle();
        if self.link.refuses_now(&self.channel) {
            shared.fire(T::default());
            spawn(async move { self.link.run(job).await });
            return handle;
        }
        spawn(async move {
            let r = match self.link.usable(&self.channel).await {
                true => self.link.run(job).await,
                false => None,
            };
            shared.fire(r.unwrap_or_default());
        });
        handle
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
        self.open_dated(key, blob).map(|(b, _)| b)
    }

    /// [`Tier::open`], with when the value was written.
    fn open_dated(&self, key: &[u8], blob: &[u8]) -> Option<(Blob, u64)> {
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
        key: Vec<u8>,
        within: Option<Duration>,
        interest: &Shared<Remote>,
    ) -> Remote {
        let (vkey, lkey) = (self.names.key(Kind::Value, &key), self.names.key(Kind::Lease, &key));
        let (epoch, cleared) = (self.names.key(Kind::Epoch, b""), self.names.key(Kind::Cleared, b""));
        let lease_ms = self.settings.lease_ttl.as_millis() as u64;
        // On the key's channel from the first time its lease is found taken to the end.
        let mut watch: Option<Watch> = None;
        loop {
            if interest.live() == 0 {
                return Remote::Unavailable; // nobody is waiting for this answer any more
            }
            // Listen before looking, so a completion between the two is not missed.
            let (id, mut rx) = self.listen(&key);
            let _unlisten = Unlisten(&self, &key, id);
            let idle = self.idle_ms.load(Relaxed);
            let mut getex = redis::cmd("GETEX");
            getex.arg(&vkey).arg("PX").arg(idle);
            let Some(found) = self.link.call::<Option<Vec<u8>>>(&getex).await else {
                return self.fallback();
            };
            let cluster = self.names.cluster();
            // The lease script takes a value there as "read it" unless it is the one this read
            // refuses (it would be found and refused again, for ever).
            let seen = protocol::seen(found.as_deref()).to_vec();
            let found = match (found, cluster) {
                // On a cluster a value starts with its lease's epoch: stale if one of its tags
                // was invalidated, or the cache cleared, since (see the protocol's docs).
                (Some(b), true) if b.len() >= protocol::EPOCH_LEN => {
                    let (snap, sealed) = b.split_at(protocol::EPOCH_LEN);
                    let snap = u64::from_be_bytes(snap.try_into().expect("EPOCH_LEN bytes"));
                    match self.open_dated(&key, sealed) {
                        Some(blob) => {
                            let epochs: Vec<Vec<u8>> = blob
                                .0
                                .tags
                                .iter()
                                .map(|t| self.names.key(Kind::TagEpoch, t.as_bytes()))
                                .collect();
                            let tier = &self;
                            let fresh =
                                self.link.run(|mut c| async move { tier.fresh(&mut c, snap, &epochs).await });
                            match fresh.await {
                                None => return self.fallback(),
                                Some(true) => Some(blob),
                                Some(false) => None,
                            }
                        }
                        None => None,
                    }
                }
                (_, true) => None,
                (found, false) => found.and_then(|b| self.open_dated(&key, &b)),
            };
            // A refresh takes a value only if another process wrote it lately; otherwise it
            // computes (the lease script, told not to take that value for one, decides who).
            let found = found.filter(|(_, written)| {
                within.is_none_or(|d| self.clock.wall_ms().saturating_sub(*written) < d.as_millis() as u64)
            });
            if let Some((blob, _)) = found {
                inc(&self.counters.remote_hits);
                return Remote::Value(blob);
            }
            if let Some(f) = self.hook.get() {
                f(Moment::Missed, &key);
            }
            let random = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
            let (lkey, vkey, epoch, cleared, random, seen) = (&lkey, &vkey, &epoch, &cleared, &random, &seen);
            let taken = self
                .link
                .run(|mut c| async move {
                    if cluster {
                        // The epoch and the last clear share a slot, the lease has its own.
                        let (e, cl): (Option<u64>, Option<u64>) =
                            redis::cmd("MGET").arg(epoch).arg(cleared).query_async(&mut c).await?;
                        return redis::Script::new(protocol::TAKE_LEASE_CLUSTER)
                            .key(lkey)
                            .key(vkey)
                            .arg(random)
                            .arg(lease_ms)
                            .arg(e.unwrap_or(0))
                            .arg(cl.unwrap_or(0))
                            .arg(seen)
                            .invoke_async::<Vec<redis::Value>>(&mut c)
                            .await;
                    }
                    redis::Script::new(protocol::TAKE_LEASE)
                        .key(lkey)
                        .key(epoch)
                        .key(cleared)
                        .key(vkey)
                        .arg(random)
                        .arg(lease_ms)
                        .arg(seen)
                        .invoke_async::<Vec<redis::Value>>(&mut c)
                        .await
                })
                .await;
            let (pttl, holder) = match taken.as_deref() {
                None => return self.fallback(),
                Some([redis::Value::Int(2)]) => continue, // stored meanwhile: read it
                Some([redis::Value::Int(1), token]) => {
                    let Ok(token) = redis::from_redis_value_ref::<String>(token) else {
                        return self.fallback();
                    };
                    inc(&self.counters.leases_won);
                    return Remote::Compute(self.lease(key.clone(), token, within.is_some()));
                }
                // A lease without a TTL (not one of ours) is waited on for a lease TTL.
                Some([_, redis::Value::Int(ms @ (1.. | -1)), holder]) => {
                    match redis::from_redis_value_ref::<Vec<u8>>(holder) {
                        Ok(holder) => (if *ms > 0 { *ms as u64 } else { lease_ms }, holder),
                        Err(_) => return self.fallback(),
                    }
                }
                Some(_) => continue, // expiring now: look again
            };
            if watch.is_none() {
                if let Some(f) = self.hook.get() {
                    f(Moment::LeaseHeld, &key);
                }
                let w = watch.insert(self.watch(&key));
                if !self.link.confirmed(&w.channel).await {
                    return self.fallback();
                }
                // Subscribed: look again, as the holder may have finished before.
                continue;
            }
            let channel = &watch.as_ref().expect("on the key's channel").channel;
            inc(&self.counters.leases_lost);
            inc(&self.counters.remote_waits);
            if !self.link.ready(&self.channel) || !self.link.ready(channel) {
                // Down since this wait was registered: its release may have come before.
                return self.fallback();
            }
            // Wait for the holder's completion; if none comes before its lease runs out, it
            // died: look again (and take the lease).
            let deadline = tokio::time::Instant::now() + Duration::from_millis(pttl + 5);
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(Some(msg))) => match msg {
                        Message::Done { token, .. }
                        | Message::NoCache { token, .. }
                        | Message::Failed { token, .. }
                        | Message::Released { token, .. }
                            if token != holder => {} // another lease's
                        Message::Done { blob, .. } => match self.open(&key, &blob) {
                            Some(blob) => {
                                inc(&self.counters.remote_hits);
                                return Remote::Value(blob);
                            }
                            None => break,
                        },
                        Message::NoCache { blob, .. } => match self.open(&key, &blob) {
                            Some(blob) => return Remote::NoCache(blob),
                            None => break,
                        },
                        Message::Failed { type_name, message, .. } => {
                            return Remote::Failed(RemoteError { type_name, message });
                        }
                        _ => break, // released: take the lease
                    },
                    Ok(Some(None)) => return self.fallback(), // the link went down
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    /// Whether a value stored under the epoch `snap` is fresh on a cluster: neither the
    /// cache's last clear nor the last invalidation of a tag whose epoch key is in `tag_epochs`
    /// came after.
    async fn fresh(&self, c: &mut Conn, snap: u64, tag_epochs: &[Vec<u8>]) -> redis::RedisResult<bool> {
        let mut mget = redis::cmd("MGET");
        mget.arg(self.names.key(Kind::Cleared, b"")).arg(tag_epochs);
        let epochs: Vec<Option<u64>> = mget.query_async(c).await?;
        Ok(epochs.into_iter().all(|e| e.unwrap_or(0) <= snap))
    }

    fn lease(self: &Arc<Self>, key: Vec<u8>, token: String, refresh: bool) -> RemoteLease {
        let (lkey, tok) = (self.names.key(Kind::Lease, &key), token.clone());
        let ttl = self.settings.lease_ttl;
        let link = self.link.clone();
        let renew = spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                let (lkey, tok) = (&lkey, &tok);
                let r = link
                    .run(|mut c| async move {
                        redis::Script::new(protocol::RENEW)
                            .key(lkey)
                            .arg(tok)
                            .arg(ttl.as_millis() as u64)
                            .invoke_async::<i64>(&mut c)
                            .await
                    })
                    .await;
                if r == Some(0) {
                    return; // lost the lease: another process took over after it expired
                }
            }
        });
        RemoteLease(LeaseKind::Redis(Arc::new(LeaseState {
            tier: self.clone(),
            key,
            token,
            refresh,
            finished: AtomicBool::new(false),
            renew: renew.abort_handle(),
        })))
    }

    /// Puts the tier on the key's channel (the link subscribes to it for the first tier) until
    /// the [`Watch`] is dropped.
    fn watch(self: &Arc<Self>, key: &[u8]) -> Watch {
        let channel = self.names.key_channel(key);
        let mut watching = self.watching.lock();
        let n = watching.entry(channel.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.link.watch(&channel, self.member());
        }
        Watch { tier: self.clone(), channel }
    }

    fn member(self: &Arc<Self>) -> Weak<dyn Member> {
        Arc::downgrade(self) as Weak<Tier>
    }

    fn listen(&self, key: &[u8]) -> (u64, mpsc::UnboundedReceiver<Option<Message>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_waiter.fetch_add(1, Relaxed);
        self.waiters.lock().entry(key.to_vec()).or_default().push((id, tx));
        (id, rx)
    }

    fn dispatch(&self, payload: &[u8]) {
        let msg = match self.signer.read(payload) {
            Ok(msg) => msg,
            Err(why) => return self.refused(why, "a message on the shared tier's channel was dropped"),
        };
        if let Some((key, _)) = msg.completion() {
            if let Some(waiting) = self.waiters.lock().get(key) {
                for (_, tx) in waiting {
                    let _ = tx.send(Some(msg.clone()));
                }
            }
            return;
        }
        if let Some(f) = self.on_invalidation.get() {
            match &msg {
                Message::Invalidate { key } => f(Invalidation::Key(key)),
                Message::InvalidateTag { tag } => f(Invalidation::Tag(tag)),
                Message::Clear => f(Invalidation::All),
                Message::Refreshed { key, written } => f(Invalidation::Refreshed { key, written: *written }),
                _ => {}
            }
        }
    }
}

/// A fetch on a key's channel ([`Tier::watch`]); the tier leaves the channel when its last
/// fetch there ends.
struct Watch {
    tier: Arc<Tier>,
    channel: Vec<u8>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watching = self.tier.watching.lock();
        let Some(n) = watching.get_mut(&self.channel) else { return };
        *n -= 1;
        if *n == 0 {
            watching.remove(&self.channel);
            self.tier.link.unwatch(&self.channel, &self.tier.member());
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

/// Sends the batched touches: each key's idle TTL refreshed at most once per tenth of it.
async fn toucher(tier: Weak<Tier>) {
    loop {
        let Some(t) = tier.upgrade() else { return };
        let idle = t.idle_ms.load(Relaxed);
        let period = Duration::from_millis((idle / 10).max(50));
        let keys: Vec<Vec<u8>> = t.touches.lock().drain().collect();
        if !keys.is_empty() && t.link.ready(&t.channel) {
            let vkeys: Vec<Vec<u8>> = keys.iter().map(|k| t.names.key(Kind::Value, k)).collect();
            let vkeys = &vkeys;
            let _ = t
                .link
                .run(|mut c| async move {
                    if c.is_cluster() {
                        // A cluster's pipeline goes to one slot: one command per key.
                        for k in vkeys {
                            redis::cmd("PEXPIRE").arg(k).arg(idle).query_async::<()>(&mut c).await?;
                        }
                        return Ok(());
                    }
                    let mut pipe = redis::pipe();
                    for k in vkeys {
                        pipe.cmd("PEXPIRE").arg(k).arg(idle).ignore();
                    }
                    pipe.query_async::<()>(&mut c).await
                })
                .await;
        }
        drop(t);
        tokio::time::sleep(period).await;
    }
}
