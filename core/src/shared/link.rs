//! A process's connections to one Redis, shared by every cache of the process that uses it:
//! one command connection and one subscriber connection per Redis URL and connection settings
//! (TLS files, timeout), whatever the number of caches. Each cache's channel is a subscription
//! on the one subscriber, and so is each key's channel while a cache of the process waits for
//! another process's completion of that key ([`Link::watch`]): a completion, with its value,
//! reaches the processes waiting for it and no other. On a cluster a key's channel is a sharded
//! one (`SSUBSCRIBE`, served by the node of the key's slot), so a completion crosses no other
//! node either.
//!
//! On a Redis Cluster (a `redis+cluster://` URL) the link is one cluster connection of the
//! `redis` crate (its `cluster-async` client: it follows `MOVED`/`ASK`, learns the slots again
//! after a failover, and keeps one connection per node), which also carries the subscriptions
//! (RESP3 pushes): the crate subscribes again on the node that serves a channel after a
//! reconnection or a failover. A node lost by the connection releases every remote wait (a
//! completion published meanwhile would be missed), as the link going down does.
//!
//! Every Redis call of the shared tier goes through here ([`Link::run`] bounds it with the
//! timeout and reports trouble), and so does the tier's health, reported to each cache on the
//! link:
//!
//! * The link is *up* while it is connected, its subscriber too, and Redis answers in time.
//!   A call that times out or loses its connection marks it *down* at once (a reply that is an
//!   error, such as OOM, does not: Redis is there); so does the subscriber's connection
//!   ending. Each cache on it is told ([`Member::report`]: `SharedDown`), and every remote
//!   wait ends at once ([`Member::release_waiters`]): its callers go on with the local tier.
//! * While it is down, no call waits on it: the tier answers at once. The subscriber probes
//!   Redis (`PING`) every heartbeat; the first call that succeeds marks it up again, and each
//!   cache is told (`SharedUp`). A later outage is reported again, as the first was.
//! * While a cache waits for another process's completion, the subscriber pings Redis every
//!   heartbeat too, so a stalled Redis is noticed while nothing else calls it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;

use super::{SharedSettings, redact};
use crate::config::ConfigError;

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

/// Runs `f` on the shared tier's runtime.
pub(super) fn spawn<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    RUNTIME.spawn(f)
}

/// What makes two caches' connections the same: the URL and every setting that changes a
/// connection.
#[derive(Clone, PartialEq, Eq, Hash)]
struct LinkKey {
    url: String,
    timeout: Duration,
    /// The TLS files: CA, client certificate, client key.
    tls: [Option<std::path::PathBuf>; 3],
}

/// The links of the process; a link lives while a cache uses it.
static LINKS: LazyLock<Mutex<HashMap<LinkKey, Weak<Link>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// A cache on a link: what the link tells it.
pub(super) trait Member: Send + Sync {
    /// A message on the cache's channel.
    fn deliver(&self, payload: &[u8]);
    /// The link went down: a completion may never arrive (or arrive late), so nobody may go on
    /// waiting for one.
    fn release_waiters(&self);
    /// The tier is down (`Some(why)`) or up again (`None`): tell the cache's listener, once
    /// per change (the link may say it again).
    fn report(&self, trouble: Option<&str>);
    /// Whether a caller of the cache waits for another process's completion now.
    fn waiting(&self) -> bool;
}

/// A change of the subscriber's channels, queued in the order the channels came and went (so a
/// channel that goes and comes back ends subscribed) and sent by one task. The flag: a key's
/// channel ([`Channel::sharded`]).
enum SubOp {
    Subscribe(Vec<u8>, bool),
    Unsubscribe(Vec<u8>, bool),
}

struct Channel {
    members: Vec<Weak<dyn Member>>,
    /// The subscriber has confirmed the subscription (since it last connected).
    subscribed: bool,
    /// A key's channel (completions only, for the caches waiting on the key; sharded on a
    /// cluster), as opposed to a cache's (every message of the cache; its members are the
    /// caches the link reports to).
    sharded: bool,
}

#[derive(Default)]
struct Subs {
    /// The subscriber's sink, while it is connected.
    sink: Option<Sink>,
    channels: HashMap<Vec<u8>, Channel>,
}

/// The connections to one Redis; see the module docs.
pub(super) struct Link {
    key: LinkKey,
    target: Target,
    /// The URL with its password masked.
    url: String,
    timeout: Duration,
    conn: Mutex<Option<Conn>>,
    subs: Mutex<Subs>,
    /// Bumped at every change of the connection or of a subscription, for callers waiting for
    /// the first attempt to end.
    changes: tokio::sync::watch::Sender<u64>,
    /// Set once the first attempt to connect has ended, either way.
    tried: AtomicBool,
    /// Redis answered the last call in time (or a probe since); false after a timeout or a
    /// lost connection.
    responsive: AtomicBool,
    /// Whether the link is reported down (to every cache on it); changed under this lock, so
    /// reports of one change reach every cache before the next change's.
    down: Mutex<bool>,
    /// When a reply that was an error (not a timeout) was last logged.
    last_error: Mutex<Option<Instant>>,
    /// Tells the subscriber to start over (a subscription failed on its connection).
    reconnect: tokio::sync::Notify,
    /// Subscriptions to send, in order (see [`SubOp`]).
    ops: tokio::sync::mpsc::UnboundedSender<SubOp>,
}

impl Link {
    /// The process's link for these settings (checked first: a bad URL is an error now), shared
    /// with every cache that uses the same.
    pub(super) fn get(settings: &SharedSettings) -> Result<Arc<Link>, ConfigError> {
        let target = settings.target()?;
        let key = LinkKey {
            url: settings.url.clone(),
            timeout: settings.timeout,
            tls: [
                settings.tls_ca_file.clone(),
                settings.tls_cert_file.clone(),
                settings.tls_key_file.clone(),
            ],
        };
        let mut links = LINKS.lock();
        links.retain(|_, l| l.strong_count() > 0);
        if let Some(link) = links.get(&key).and_then(Weak::upgrade) {
            return Ok(link);
        }
        let (ops, queued) = tokio::sync::mpsc::unbounded_channel();
        let link = Arc::new(Link {
            key: key.clone(),
            target,
            url: redact(&settings.url),
            timeout: settings.timeout,
            conn: Mutex::new(None),
            subs: Mutex::new(Subs::default()),
            changes: tokio::sync::watch::Sender::new(0),
            tried: AtomicBool::new(false),
            responsive: AtomicBool::new(true),
            down: Mutex::new(false),
            last_error: Mutex::new(None),
            reconnect: tokio::sync::Notify::new(),
            ops,
        });
        links.insert(key, Arc::downgrade(&link));
        spawn(subscriber(Arc::downgrade(&link)));
        spawn(subscriptions(Arc::downgrade(&link), queued));
        Ok(link)
    }

    /// Adds a cache to its channel (subscribing to it if it is the channel's first).
    pub(super) fn join(self: &Arc<Self>, channel: &[u8], member: Weak<dyn Member>) {
        {
            let mut subs = self.subs.lock();
            let new = !subs.channels.contains_key(channel);
            let ch = subs.channels.entry(channel.to_vec()).or_insert_with(|| Channel {
                members: Vec::new(),
                subscribed: false,
                sharded: false,
            });
            ch.members.retain(|m| m.strong_count() > 0);
            ch.members.push(member.clone());
            if new {
                let _ = self.ops.send(SubOp::Subscribe(channel.to_vec(), false));
            }
        }
        if *self.down.lock() {
            // A cache that joins a link reported down is told so too (on the runtime: not while
            // it is being built), unless the link is up again by then.
            let link = Arc::downgrade(self);
            spawn(async move {
                if let (Some(l), Some(m)) = (link.upgrade(), member.upgrade()) {
                    let down = l.down.lock();
                    if *down {
                        m.report(Some("the shared tier is down"));
                    }
                }
            });
        }
    }

    /// Removes the caches that are gone from `channel`, unsubscribing if none is left.
    pub(super) fn leave(&self, channel: &[u8]) {
        let mut subs = self.subs.lock();
        let Some(ch) = subs.channels.get_mut(channel) else { return };
        ch.members.retain(|m| m.strong_count() > 0);
        if ch.members.is_empty() {
            subs.channels.remove(channel);
            let _ = self.ops.send(SubOp::Unsubscribe(channel.to_vec(), false));
        }
    }

    /// Adds a cache to a key's channel (subscribing to it if it is the channel's first), while
    /// the cache waits for that key's completion; [`Link::unwatch`] when it no longer does.
    pub(super) fn watch(&self, channel: &[u8], member: Weak<dyn Member>) {
        let mut subs = self.subs.lock();
        let ch = subs.channels.entry(channel.to_vec()).or_insert_with(|| {
            let _ = self.ops.send(SubOp::Subscribe(channel.to_vec(), true));
            Channel { members: Vec::new(), subscribed: false, sharded: true }
        });
        ch.members.push(member);
    }

    /// Takes a cache off a key's channel, unsubscribing if none is left.
    pub(super) fn unwatch(&self, channel: &[u8], member: &Weak<dyn Member>) {
        let mut subs = self.subs.lock();
        let Some(ch) = subs.channels.get_mut(channel) else { return };
        if let Some(i) = ch.members.iter().position(|m| Weak::ptr_eq(m, member)) {
            ch.members.swap_remove(i);
        }
        ch.members.retain(|m| m.strong_count() > 0);
        if ch.members.is_empty() {
            subs.channels.remove(channel);
            let _ = self.ops.send(SubOp::Unsubscribe(channel.to_vec(), true));
        }
    }

    /// Waits (bounded by the timeout) until the subscriber has confirmed `channel`'s
    /// subscription; whether it did (false: the link is down, or did not confirm in time).
    pub(super) async fn confirmed(&self, channel: &[u8]) -> bool {
        let subscribed = || self.subs.lock().channels.get(channel).is_some_and(|c| c.subscribed);
        let mut changes = self.changes.subscribe();
        let settled = changes.wait_for(|_| subscribed() || !self.healthy());
        let _ = tokio::time::timeout(self.timeout, settled).await;
        subscribed() && self.healthy()
    }

    /// Whether calls can go to Redis and the channel's messages arrive: the link is up and the
    /// channel subscribed.
    pub(super) fn ready(&self, channel: &[u8]) -> bool {
        self.healthy() && self.subs.lock().channels.get(channel).is_some_and(|c| c.subscribed)
    }

    /// Whether it is a Redis Cluster's.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster { .. })
    }

    /// Connected (commands and subscriber) and answering in time.
    fn healthy(&self) -> bool {
        self.responsive.load(Relaxed) && self.conn.lock().is_some()
    }

    /// Whether waiting could change [`Link::ready`]: false once the first attempt to connect
    /// has ended and the channel is subscribed or the link is down.
    fn settling(&self, channel: &[u8]) -> bool {
        if !self.tried.load(Relaxed) {
            return true;
        }
        let subs = self.subs.lock();
        subs.sink.is_some() && subs.channels.get(channel).is_some_and(|c| !c.subscribed)
    }

    /// Waits (bounded by the timeout) until the link has settled for `channel`; then whether
    /// it is ready. A new cache's first calls use Redis instead of racing its connection.
    pub(super) async fn usable(&self, channel: &[u8]) -> bool {
        if self.ready(channel) {
            return true;
        }
        let mut changes = self.changes.subscribe();
        let _ = tokio::time::timeout(self.timeout, changes.wait_for(|_| !self.settling(channel))).await;
        self.ready(channel)
    }

    /// Whether calls would go to Redis now, without waiting: false (answer at once) once the
    /// first attempt has ended without a usable connection.
    pub(super) fn refuses_now(&self, channel: &[u8]) -> bool {
        !self.ready(channel) && !self.settling(channel)
    }

    /// Runs one Redis job within the timeout: its result, or `None` if Redis failed, timed out
    /// or is not connected. A timeout or a lost connection marks the link down; a success
    /// marks it up (if it was down only for want of answers).
    pub(super) async fn run<F, Fut, T>(&self, job: F) -> Option<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.attempt(job).await.ok()
    }

    /// [`Link::run`], keeping the error: `Err(None)` for a timeout or no connection.
    pub(super) async fn attempt<F, Fut, T>(&self, job: F) -> Result<T, Option<redis::RedisError>>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conn.lock().clone().ok_or(None)?;
        match tokio::time::timeout(self.timeout, job(conn)).await {
            Ok(Ok(v)) => {
                self.answered();
                Ok(v)
            }
            Ok(Err(e)) if unreachable(&e) => {
                self.unanswered(&e.to_string());
                Err(Some(e))
            }
            Ok(Err(e)) => {
                self.refused(&e);
                Err(Some(e))
            }
            Err(_) => {
                self.unanswered("a call timed out");
                Err(None)
            }
        }
    }

    /// One command within the timeout (see [`Link::run`]).
    pub(super) async fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        self.run(|mut c| async move { cmd.query_async::<T>(&mut c).await }).await
    }

    /// The caches on the link (the members of the caches' channels; a key's channel holds
    /// some of them again).
    fn members(&self) -> Vec<Arc<dyn Member>> {
        let subs = self.subs.lock();
        subs.channels
            .values()
            .filter(|c| !c.sharded)
            .flat_map(|c| c.members.iter().filter_map(Weak::upgrade))
            .collect()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn subscribed(&self, channels: &[(Vec<u8>, bool)]) {
        let mut subs = self.subs.lock();
        for (c, _) in channels {
            if let Some(ch) = subs.channels.get_mut(c) {
                ch.subscribed = true;
            }
        }
        drop(subs);
        self.changed();
    }

    /// Redis answered: if it was down only for want of answers, it is up again.
    fn answered(&self) {
        if !self.responsive.swap(true, Relaxed) {
            self.check("");
        }
    }

    /// A call timed out or lost its connection: the link is down until Redis answers again.
    fn unanswered(&self, why: &str) {
        self.responsive.store(false, Relaxed);
        self.check(why);
    }

    /// Redis answered with an error (OOM, a wrong type...): it is there, so the link stays up;
    /// the call's caller falls back. Logged at most every 10 s.
    fn refused(&self, e: &redis::RedisError) {
        let mut last = self.last_error.lock();
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(target: "coopcache", url = %self.url, error = %e,
                "a shared-tier call failed; its callers go on with the local tier");
        }
    }

    /// Reports a change of health to every cache on the link (see the module docs): down, with
    /// every remote wait released, or up again.
    fn check(&self, why: &str) {
        let mut down = self.down.lock();
        let healthy = self.healthy();
        if !healthy && !*down && self.tried.load(Relaxed) {
            *down = true;
            tracing::warn!(target: "coopcache", url = %self.url, why,
                "shared tier unavailable; calls go on with the local tier");
            for m in self.members() {
                m.report(Some(why));
                m.release_waiters();
            }
        } else if healthy && *down {
            *down = false;
            tracing::info!(target: "coopcache", url = %self.url, "shared tier back");
            for m in self.members() {
                m.report(None);
            }
        }
        drop(down);
        self.changed();
    }

    /// Whether a cache on the link waits for another process's completion now.
    fn waiting(&self) -> bool {
        self.members().iter().any(|m| m.waiting())
    }

    /// One `PING` within the timeout on each connection: whether the subscriber is dead while
    /// Redis answers (it must be replaced). The command connection's answer marks the link up
    /// or down as any call's does.
    async fn subscriber_dead(&self, sink: &mut Sink) -> bool {
        let pinged =
            self.run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await }).await;
        let Sink::Single(sink) = sink else {
            return false; // the cluster connection is the subscriber: the PING was its probe
        };
        let sub = tokio::time::timeout(self.timeout, sink.ping::<redis::Value>()).await;
        pinged.is_some() && !matches!(sub, Ok(Ok(_)))
    }

    /// A node of the cluster was lost: a completion published meanwhile may never arrive, so
    /// every remote wait ends (its callers go on with the local tier).
    fn node_lost(&self) {
        for m in self.members() {
            m.release_waiters();
        }
    }

    fn connected(&self, cm: Conn, sink: Sink) -> Vec<(Vec<u8>, bool)> {
        *self.conn.lock() = Some(cm);
        let mut subs = self.subs.lock();
        subs.sink = Some(sink);
        subs.channels.iter().map(|(name, c)| (name.clone(), c.sharded)).collect()
    }

    fn up(&self) {
        self.tried.store(true, Relaxed);
        self.responsive.store(true, Relaxed);
        self.check("");
    }

    /// The subscriber's connection is gone (or never came): stop answering from Redis and
    /// release every remote wait.
    fn lost(&self, why: &str) {
        *self.conn.lock() = None;
        {
            let mut subs = self.subs.lock();
            subs.sink = None;
            for ch in subs.channels.values_mut() {
                ch.subscribed = false;
            }
        }
        self.tried.store(true, Relaxed);
        self.check(why);
    }

    fn deliver(&self, channel: &[u8], payload: &[u8]) {
        let members: Vec<Arc<dyn Member>> = match self.subs.lock().channels.get(channel) {
            Some(ch) => ch.members.iter().filter_map(Weak::upgrade).collect(),
            None => return,
        };
        for m in members {
            m.deliver(payload);
        }
    }
}

/// The connection calls go through: to one Redis, or to a cluster (routed by key).
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Whether it is a cluster's.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// The cluster's live masters now, as host and port (one Redis: none).
    pub(super) async fn masters(&mut self) -> redis::RedisResult<Vec<(String, u16)>> {
        let Conn::Cluster(c) = self else { return Ok(Vec::new()) };
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(c).await?;
        Ok(nodes
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (addr, flags) = (f.nth(1)?, f.next()?);
                let mut flags = flags.split(',');
                let live_master =
                    flags.clone().any(|x| x == "master") && !flags.any(|x| x.starts_with("fail"));
                let (host, port) = addr.split('@').next()?.rsplit_once(':')?;
                live_master.then_some((host.to_owned(), port.parse().ok()?))
            })
            .collect())
    }

    /// `cmd` on the cluster's node at `node` (host, port).
    pub(super) async fn on_node<T: redis::FromRedisValue>(
        &mut self,
        node: &(String, u16),
        cmd: redis::Cmd,
    ) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let to = SingleNodeRoutingInfo::ByAddress { host: node.0.clone(), port: node.1 };
                let v = c.route_command(cmd, RoutingInfo::SingleNode(to)).await?;
                Ok(redis::from_redis_value(v)?)
            }
        }
    }
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where subscriptions are sent: one Redis's subscriber connection, or the cluster connection.
#[derive(Clone)]
enum Sink {
    Single(PubSubSink),
    Cluster(ClusterConnection),
}

impl Sink {
    /// Subscribes to channels, each flagged if it is a key's: on one Redis every channel is a
    /// plain one (one `SUBSCRIBE`); on a cluster a key's channel is sharded, one `SSUBSCRIBE`
    /// each (to the node of its slot).
    async fn subscribe(&mut self, channels: &[(Vec<u8>, bool)]) -> redis::RedisResult<()> {
        let names = |sharded: bool| channels.iter().filter(move |c| c.1 == sharded).map(|c| &c.0);
        match self {
            Sink::Single(s) => s.subscribe(channels.iter().map(|c| &c.0).collect::<Vec<_>>()).await,
            Sink::Cluster(c) => {
                let plain: Vec<_> = names(false).collect();
                if !plain.is_empty() {
                    c.subscribe(plain).await?;
                }
                for channel in names(true) {
                    c.ssubscribe(channel).await?;
                }
                Ok(())
            }
        }
    }

    async fn unsubscribe(&mut self, channel: &[u8], sharded: bool) -> redis::RedisResult<()> {
        match self {
            Sink::Single(s) => s.unsubscribe(channel).await,
            Sink::Cluster(c) if sharded => c.sunsubscribe(channel).await,
            Sink::Cluster(c) => c.unsubscribe(channel).await,
        }
    }
}

/// What the subscriber receives: one Redis's messages, or the cluster connection's pushes.
enum Feed {
    Single(PubSubStream),
    Cluster(tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>),
}

enum Push {
    /// A message on a channel: the channel, the payload.
    Message(Vec<u8>, Vec<u8>),
    /// The cluster connection lost a node.
    NodeLost,
    /// Anything else (subscription confirmations).
    Other,
}

impl Feed {
    /// The next push; `None` once the connection is gone.
    async fn next(&mut self) -> Option<Push> {
        match self {
            Feed::Single(s) => s.next().await.map(|m| {
                Push::Message(m.get_channel_name().as_bytes().to_vec(), m.get_payload_bytes().to_vec())
            }),
            Feed::Cluster(rx) => {
                let push = rx.recv().await?;
                Some(match (push.kind, push.data.as_slice()) {
                    (redis::PushKind::Message | redis::PushKind::SMessage, [channel, payload]) => {
                        match (
                            redis::from_redis_value_ref::<Vec<u8>>(channel),
                            redis::from_redis_value_ref::<Vec<u8>>(payload),
                        ) {
                            (Ok(c), Ok(p)) => Push::Message(c, p),
                            _ => Push::Other,
                        }
                    }
                    (redis::PushKind::Disconnection, _) => Push::NodeLost,
                    _ => Push::Other,
                })
            }
        }
    }
}

impl Target {
    /// Connects: the command connection, the subscriptions' sink and their feed.
    async fn connect(&self, timeout: Duration) -> redis::RedisResult<(Conn, Sink, Feed)> {
        match self {
            Target::Single(client) => {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                let cm = ConnectionManager::new_with_config((**client).clone(), cfg).await?;
                let (sink, stream) = client.get_async_pubsub().await?.split();
                Ok((Conn::Single(cm), Sink::Single(sink), Feed::Single(stream)))
            }
            Target::Cluster { .. } => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let conn = self.cluster(timeout, tx)?.get_async_connection().await?;
                Ok((Conn::Cluster(conn.clone()), Sink::Cluster(conn), Feed::Cluster(rx)))
            }
        }
    }
}

/// Sends the subscriptions that channels coming and going ask for, in order, on the
/// subscriber's connection (while it has none, there is nothing to send: it subscribes every
/// channel there is when it connects). A subscription that fails makes the subscriber start
/// over.
async fn subscriptions(link: Weak<Link>, mut queued: tokio::sync::mpsc::UnboundedReceiver<SubOp>) {
    while let Some(op) = queued.recv().await {
        let Some(l) = link.upgrade() else { return };
        let Some(mut sink) = l.subs.lock().sink.clone() else { continue };
        match op {
            SubOp::Subscribe(channel, sharded) => {
                let channels = [(channel, sharded)];
                match tokio::time::timeout(l.timeout, sink.subscribe(&channels)).await {
                    Ok(Ok(())) => l.subscribed(&channels),
                    Ok(Err(_)) | Err(_) => l.reconnect.notify_one(),
                }
            }
            SubOp::Unsubscribe(channel, sharded) => {
                // Back meanwhile: its subscription is queued after this.
                if let Some(ch) = l.subs.lock().channels.get_mut(&channel) {
                    ch.subscribed = false;
                }
                let _ = tokio::time::timeout(l.timeout, sink.unsubscribe(&channel, sharded)).await;
            }
        }
    }
}

/// Whether no cache uses the link any more (only its subscriber holds it); if so, it is
/// taken out of the process's links, so no cache finds it afterwards.
fn unused(link: &Arc<Link>) -> bool {
    let mut links = LINKS.lock();
    let unused = Arc::strong_count(link) == 1;
    if unused {
        links.remove(&link.key);
    }
    unused
}

/// Whether an error means Redis did not answer (the connection is gone or could not be made),
/// as opposed to an answer that is an error.
fn unreachable(e: &redis::RedisError) -> bool {
    e.is_timeout() || e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// How often the subscriber probes Redis while the link is down or a cache waits on it.
fn heartbeat(timeout: Duration) -> Duration {
    timeout.clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Keeps the link connected and its channels subscribed, delivering their messages;
/// reconnects with backoff.
async fn subscriber(link: Weak<Link>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(l) = link.upgrade() else { return };
        let timeout = l.timeout;
        let connected = tokio::time::timeout(timeout, l.target.connect(timeout)).await;
        match connected {
            Ok(Ok((cm, mut sink, mut stream))) => {
                let channels = l.connected(cm, sink.clone());
                let subscribed = match channels.is_empty() {
                    true => Ok(Ok(())),
                    false => tokio::time::timeout(timeout, sink.subscribe(&channels)).await,
                };
                match subscribed {
                    Ok(Ok(())) => {
                        l.subscribed(&channels);
                        l.up();
                        backoff = Duration::from_millis(100);
                        let gone = "the connection to Redis was lost";
                        let why = loop {
                            tokio::select! {
                                m = stream.next() => match m {
                                    Some(Push::Message(channel, payload)) => l.deliver(&channel, &payload),
                                    Some(Push::NodeLost) => l.node_lost(),
                                    Some(Push::Other) => {}
                                    None => break gone,
                                },
                                _ = l.reconnect.notified() => break "a subscription failed",
                                _ = tokio::time::sleep(heartbeat(timeout)) => {
                                    if unused(&l) {
                                        return;
                                    }
                                    // Down for want of answers, or a cache waits on the link:
                                    // is Redis there? A subscriber that does not answer while
                                    // Redis does is replaced.
                                    let probe = !l.responsive.load(Relaxed) || l.waiting();
                                    if probe && l.subscriber_dead(&mut sink).await {
                                        break "the subscriber stopped answering";
                                    }
                                }
                            }
                        };
                        l.lost(why);
                    }
                    Ok(Err(e)) => l.lost(&e.to_string()),
                    Err(_) => l.lost("subscribing timed out"),
                }
            }
            Ok(Err(e)) => l.lost(&e.to_string()),
            Err(_) => l.lost("connecting timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The TLS files (a CA to trust instead of the system's roots; a client certificate and its
/// key), each read and checked now: an error names the setting whose file is unreadable, not
/// PEM, or (the key) not the certificate's.
#[cfg(feature = "tls")]
pub(super) fn tls_certificates(
    ca: Option<&std::path::Path>,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<redis::TlsCertificates, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let read = |setting: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|_| ConfigError::new(setting, path.display(), "a readable PEM file"))
    };
    let certs =
        |setting: &'static str, path: &std::path::Path, pem: &[u8]| match CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(certs) if !certs.is_empty() => Ok(certs),
            _ => Err(ConfigError::new(setting, path.display(), "a PEM file of one or more certificates")),
        };
    let root_cert = match ca {
        Some(path) => {
            let pem = read("tls_ca_file", path)?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs("tls_ca_file", path, &pem)? {
                roots.add(cert).map_err(|_| {
                    ConfigError::new("tls_ca_file", path.display(), "a PEM file of CA certificates")
                })?;
            }
            Some(pem)
        }
        None => None,
    };
    let client_tls = match client {
        Some((cert_path, key_path)) => {
            let (cert, key) = (read("tls_cert_file", cert_path)?, read("tls_key_file", key_path)?);
            let chain = certs("tls_cert_file", cert_path, &cert)?;
            let bad_key = || {
                ConfigError::new(
                    "tls_key_file",
                    key_path.display(),
                    "a PEM private key (PKCS#8, PKCS#1 or SEC1) that is tls_cert_file's",
                )
            };
            let der = PrivateKeyDer::from_pem_slice(&key).map_err(|_| bad_key())?;
            let provider = rustls::crypto::ring::default_provider();
            rustls::sign::CertifiedKey::from_der(chain, der, &provider).map_err(|_| bad_key())?;
            Some(redis::ClientTlsConfig { client_cert: cert, client_key: key })
        }
        None => None,
    };
    Ok(redis::TlsCertificates { client_tls, root_cert })
}

/// The TLS files of a `rediss://` URL, which a build without the `tls` feature does not
/// accept: none of them either.
#[cfg(not(feature = "tls"))]
pub(super) fn tls_certificates(
    ca: Option<&std::path::Path>,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<TlsFiles, ConfigError> {
    let (setting, path) = match (ca, client) {
        (Some(ca), _) => ("tls_ca_file", ca),
        (None, Some((cert, _))) => ("tls_cert_file", cert),
        (None, None) => unreachable!("called with a TLS file"),
    };
    Err(ConfigError::new(setting, path.display(), "coopcache built with its tls feature"))
}

/// The TLS files, read and checked ([`tls_certificates`]).
#[cfg(feature = "tls")]
pub(crate) type TlsFiles = redis::TlsCertificates;
/// No TLS files without the `tls` feature.
#[cfg(not(feature = "tls"))]
pub(crate) enum TlsFiles {}

/// What a link connects to: one Redis, or a Redis Cluster by its seeds.
#[derive(Clone)]
pub(crate) enum Target {
    Single(Box<redis::Client>),
    Cluster { seeds: Vec<String>, tls: Option<Arc<TlsFiles>> },
}

impl Target {
    /// The target of `url` (its cluster `seeds`, if it has any) with these TLS files.
    pub(super) fn new(
        url: &str,
        seeds: Option<Vec<String>>,
        tls: Option<TlsFiles>,
    ) -> Result<Target, ConfigError> {
        if let Some(seeds) = seeds {
            let target = Target::Cluster { seeds, tls: tls.map(Arc::new) };
            let (tx, _) = tokio::sync::mpsc::unbounded_channel();
            target
                .cluster(Duration::from_secs(1), tx)
                .map_err(|e| ConfigError::new("redis_url", redact(url), super::redis::leak_reason(&e)))?;
            return Ok(target);
        }
        let client = match tls {
            #[cfg(feature = "tls")]
            Some(certs) => redis::Client::build_with_tls(url, certs),
            #[allow(unreachable_patterns)]
            _ => redis::Client::open(url),
        };
        client
            .map(|c| Target::Single(Box::new(c)))
            .map_err(|e| ConfigError::new("redis_url", redact(url), super::redis::leak_reason(&e)))
    }

    /// A cluster client that speaks RESP3 and hands every push (messages, lost nodes) to `pushes`.
    fn cluster(
        &self,
        timeout: Duration,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
        let Target::Cluster { seeds, tls } = self else { unreachable!("a cluster target") };
        let builder = redis::cluster::ClusterClientBuilder::new(seeds.iter().map(String::as_str))
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .connection_timeout(timeout)
            .response_timeout(timeout);
        #[cfg(feature = "tls")]
        let builder = match tls {
            Some(certs) => builder.certs((**certs).clone()),
            None => builder,
        };
        #[cfg(not(feature = "tls"))]
        let _ = tls;
        builder.build()
    }
}
