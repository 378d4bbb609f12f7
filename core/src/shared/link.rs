//! A process's connections to one Redis, shared by every cache of the process that uses it:
//! one command connection and one subscriber connection per Redis URL and connection settings
//! (TLS files, timeout), whatever the number of caches. Each cache's channel is a subscription
//! on the one subscriber.
//!
//! Every Redis call of the shared tier goes through here ([`Link::run`] bounds it with the
//! timeout and reports trouble), and so does the tier's health: the connection lost, found
//! again, reported to each cache on the link.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};

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
}

/// The links of the process; a link lives while a cache uses it.
static LINKS: LazyLock<Mutex<HashMap<LinkKey, Weak<Link>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// A cache on a link: what the link tells it.
pub(super) trait Member: Send + Sync {
    /// A message on the cache's channel.
    fn deliver(&self, payload: &[u8]);
    /// The subscriber lost its connection: messages may have been missed, so nobody may go on
    /// waiting for one.
    fn release_waiters(&self);
    /// The tier is in trouble (`Some(why)`) or fine again (`None`): tell the cache's listener.
    fn report(&self, trouble: Option<&str>);
}

struct Channel {
    members: Vec<Weak<dyn Member>>,
    /// The subscriber has confirmed the subscription (since it last connected).
    subscribed: bool,
}

#[derive(Default)]
struct Subs {
    /// The subscriber's sink, while it is connected.
    sink: Option<PubSubSink>,
    channels: HashMap<Vec<u8>, Channel>,
}

/// The connections to one Redis; see the module docs.
pub(super) struct Link {
    key: LinkKey,
    client: redis::Client,
    /// The URL with its password masked.
    url: String,
    timeout: Duration,
    conn: Mutex<Option<ConnectionManager>>,
    subs: Mutex<Subs>,
    /// Bumped at every change of the connection or of a subscription, for callers waiting for
    /// the first attempt to end.
    changes: tokio::sync::watch::Sender<u64>,
    /// Set once the first attempt to connect has ended, either way.
    tried: AtomicBool,
    warned: AtomicBool,
    /// Tells the subscriber to start over (a subscription failed on its connection).
    reconnect: tokio::sync::Notify,
}

impl Link {
    /// The process's link for these settings (checked first: a bad URL is an error now), shared
    /// with every cache that uses the same.
    pub(super) fn get(settings: &SharedSettings) -> Result<Arc<Link>, ConfigError> {
        let client = settings.validate()?;
        let key = LinkKey { url: settings.url.clone(), timeout: settings.timeout };
        let mut links = LINKS.lock();
        links.retain(|_, l| l.strong_count() > 0);
        if let Some(link) = links.get(&key).and_then(Weak::upgrade) {
            return Ok(link);
        }
        let link = Arc::new(Link {
            key: key.clone(),
            client,
            url: redact(&settings.url),
            timeout: settings.timeout,
            conn: Mutex::new(None),
            subs: Mutex::new(Subs::default()),
            changes: tokio::sync::watch::Sender::new(0),
            tried: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            reconnect: tokio::sync::Notify::new(),
        });
        links.insert(key, Arc::downgrade(&link));
        spawn(subscriber(Arc::downgrade(&link)));
        Ok(link)
    }

    /// Adds a cache to its channel (subscribing to it if it is the channel's first).
    pub(super) fn join(self: &Arc<Self>, channel: &[u8], member: Weak<dyn Member>) {
        let sink = {
            let mut subs = self.subs.lock();
            let sink = subs.sink.clone();
            let ch = subs
                .channels
                .entry(channel.to_vec())
                .or_insert_with(|| Channel { members: Vec::new(), subscribed: false });
            ch.members.retain(|m| m.strong_count() > 0);
            ch.members.push(member);
            if ch.subscribed || ch.members.len() > 1 {
                return; // subscribed, or being subscribed
            }
            sink
        };
        if let Some(mut sink) = sink {
            let (link, channel) = (Arc::downgrade(self), channel.to_vec());
            spawn(async move {
                let r = tokio::time::timeout(link_timeout(&link), sink.subscribe(&channel)).await;
                if let Some(l) = link.upgrade() {
                    match r {
                        Ok(Ok(())) => l.subscribed(&[channel]),
                        Ok(Err(_)) | Err(_) => l.reconnect.notify_one(),
                    }
                }
            });
        }
    }

    /// Removes the caches that are gone from `channel`, unsubscribing if none is left.
    pub(super) fn leave(&self, channel: &[u8]) {
        let sink = {
            let mut subs = self.subs.lock();
            let Some(ch) = subs.channels.get_mut(channel) else { return };
            ch.members.retain(|m| m.strong_count() > 0);
            if !ch.members.is_empty() {
                return;
            }
            subs.channels.remove(channel);
            subs.sink.clone()
        };
        if let Some(mut sink) = sink {
            let (timeout, channel) = (self.timeout, channel.to_vec());
            spawn(async move {
                let _ = tokio::time::timeout(timeout, sink.unsubscribe(&channel)).await;
            });
        }
    }

    /// Whether calls can go to Redis and the channel's messages arrive.
    pub(super) fn ready(&self, channel: &[u8]) -> bool {
        self.conn.lock().is_some() && self.subs.lock().channels.get(channel).is_some_and(|c| c.subscribed)
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

    /// Runs one Redis job within the timeout: its result, or `None` (and the trouble reported)
    /// if Redis failed, timed out or is not connected.
    pub(super) async fn run<F, Fut, T>(&self, job: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conn.lock().clone()?;
        match tokio::time::timeout(self.timeout, job(conn)).await {
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

    /// One command within the timeout (see [`Link::run`]).
    pub(super) async fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        self.run(|mut c| async move { cmd.query_async::<T>(&mut c).await }).await
    }

    fn members(&self) -> Vec<Arc<dyn Member>> {
        let subs = self.subs.lock();
        subs.channels.values().flat_map(|c| c.members.iter().filter_map(Weak::upgrade)).collect()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn subscribed(&self, channels: &[Vec<u8>]) {
        let mut subs = self.subs.lock();
        for c in channels {
            if let Some(ch) = subs.channels.get_mut(c) {
                ch.subscribed = true;
            }
        }
        drop(subs);
        self.changed();
    }

    /// Reports trouble once (until the link is connected again).
    fn trouble(&self, why: &str) {
        if !self.warned.swap(true, Relaxed) {
            tracing::warn!(target: "coopcache", url = %self.url, why,
                "shared tier unavailable; calls go on with the local tier");
            for m in self.members() {
                m.report(Some(why));
            }
        }
    }

    fn connected(&self, cm: ConnectionManager, sink: PubSubSink) -> Vec<Vec<u8>> {
        *self.conn.lock() = Some(cm);
        let mut subs = self.subs.lock();
        subs.sink = Some(sink);
        subs.channels.keys().cloned().collect()
    }

    fn up(&self) {
        self.tried.store(true, Relaxed);
        self.changed();
        if self.warned.swap(false, Relaxed) {
            tracing::info!(target: "coopcache", url = %self.url, "shared tier reconnected");
            for m in self.members() {
                m.report(None);
            }
        }
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
        self.changed();
        self.trouble(why);
        for m in self.members() {
            m.release_waiters();
        }
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

fn link_timeout(link: &Weak<Link>) -> Duration {
    link.upgrade().map_or(Duration::ZERO, |l| l.timeout)
}

/// Keeps the link connected and its channels subscribed, delivering their messages;
/// reconnects with backoff.
async fn subscriber(link: Weak<Link>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(l) = link.upgrade() else { return };
        let timeout = l.timeout;
        let connected = tokio::time::timeout(timeout, async {
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            let cm = ConnectionManager::new_with_config(l.client.clone(), cfg).await?;
            let (sink, stream) = l.client.get_async_pubsub().await?.split();
            Ok::<_, redis::RedisError>((cm, sink, stream))
        })
        .await;
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
                                    Some(m) => l.deliver(m.get_channel_name().as_bytes(), m.get_payload_bytes()),
                                    None => break gone,
                                },
                                _ = l.reconnect.notified() => break "a subscription failed",
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                                    if unused(&l) {
                                        return;
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
