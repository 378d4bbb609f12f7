//! The shared tier (the README's "Shared mode"): one computation per key across the local tiers of many
//! caches, on Redis (every process and machine using the same server and name; the `redis`
//! feature), or in this process's memory (every registry of the process: Node's worker_threads
//! each have one).
//!
//! A local leader asks the shared tier before computing ([`SharedTier::fetch`]): the answer is a
//! value, another's outcome (a value not to store, an error), or a [`RemoteLease`] to compute
//! under and finish. Every step is a [`Pending`] like the local flight's, so threads, asyncio and
//! Node wait on it the same way.
//!
//! Serialization belongs to the caller (pickle, v8, serde, JSON); this tier moves bytes, so a
//! value crosses processes, languages and worker threads alike.

#[cfg(feature = "redis")]
mod link;
mod process;
#[cfg(feature = "redis")]
mod protocol;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::clock::Clock;
use crate::config::{ConfigError, Settings};
use crate::keys::Key;
use crate::stats::Listener;
use crate::sync::{AtomicU64, Ordering::Relaxed};
use crate::wait::Pending;

/// A value in the shared tier: its tags and the serialized payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The tags it was stored with.
    pub tags: Vec<String>,
    /// The serialized value (pickle, v8, serde, or JSON for cross-language caches).
    pub payload: Vec<u8>,
}

/// How to reach the shared tier on Redis and what to trust in it.
///
/// ```
/// use coopcache::shared::SharedSettings;
/// use std::time::Duration;
///
/// let s = SharedSettings::new("redis://127.0.0.1:6379/0")
///     .secret(b"a long random secret".to_vec())
///     .lease_ttl(Duration::from_secs(30));
/// assert!(s.validate().is_ok());
/// assert!(!format!("{s:?}").contains("long random"), "the secret is never printed");
///
/// // TLS with a private CA, and a client certificate for a server that requires one: the
/// // files are read and checked when the cache is configured.
/// let tls = SharedSettings::new("rediss://redis.internal:6380")
///     .tls_ca_file("/etc/coopcache/ca.pem")
///     .tls_client_cert("/etc/coopcache/client.pem", "/etc/coopcache/client.key");
/// # #[cfg(feature = "tls")]
/// assert_eq!(tls.validate().unwrap_err().setting, "tls_ca_file", "no such file here");
/// ```
#[cfg(feature = "redis")]
#[derive(Clone)]
#[non_exhaustive]
pub struct SharedSettings {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. A Redis Cluster:
    /// `redis+cluster://[user:password@]host:port[,host:port...]` (or `rediss+cluster://`),
    /// any of its nodes as seeds; the cluster's other nodes are found from them.
    pub url: String,
    /// When set, every stored value is signed (HMAC-SHA256, covering the cache's name, the key
    /// and the value) and checked on read; a value that fails the check is a miss and is never
    /// deserialized. Every message on the cache's channel (completions, errors, invalidations,
    /// clears, refreshes) is signed and checked too: one that fails is dropped.
    pub secret: Option<Vec<u8>>,
    /// How long a computing process holds a key before another may take over, if it stops
    /// renewing (it renews every third of this while it computes). Default 10 s.
    pub lease_ttl: Duration,
    /// The bound on every Redis call. Default 1 s.
    pub timeout: Duration,
    /// With `rediss://`: a PEM file of the certificate authorities that sign the server's
    /// certificate, trusted instead of the system's roots (a private CA). Certificates are
    /// always checked: a `#insecure` URL is refused.
    pub tls_ca_file: Option<PathBuf>,
    /// With `rediss://`: this client's certificate (PEM, the chain from the client's own
    /// certificate up), for servers that require one (mutual TLS: `tls-auth-clients yes`).
    /// Given with [`SharedSettings::tls_key_file`].
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of [`SharedSettings::tls_cert_file`].
    pub tls_key_file: Option<PathBuf>,
}

#[cfg(feature = "redis")]
impl Default for SharedSettings {
    fn default() -> Self {
        SharedSettings {
            url: String::new(),
            secret: None,
            lease_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

#[cfg(feature = "redis")]
impl SharedSettings {
    /// Settings for the server at `url`, with the defaults otherwise.
    pub fn new(url: impl Into<String>) -> Self {
        SharedSettings { url: url.into(), ..Self::default() }
    }

    /// With values signed by this secret.
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// With this lease TTL.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// With this bound on every Redis call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// With the server's certificate checked against the certificate authorities in this PEM
    /// file (see [`SharedSettings::tls_ca_file`]).
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// With this client certificate and its private key, both PEM files, for a server that
    /// requires one (see [`SharedSettings::tls_cert_file`]).
    pub fn tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_cert_file = Some(cert.into());
        self.tls_key_file = Some(key.into());
        self
    }

    /// Checks the settings without connecting: the URL (an error names it with the password
    /// masked; `#insecure` is refused; a cluster URL's every seed), the lease TTL, and the TLS
    /// files (readable and parseable, a key that matches its certificate; an error names the
    /// setting). Only a `rediss://` (or `rediss+cluster://`) URL takes TLS files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.target().map(drop)
    }

    /// What the settings connect to: one Redis, or a cluster by its seeds (see
    /// [`SharedSettings::url`]), checked as [`SharedSettings::validate`] says.
    pub(crate) fn target(&self) -> Result<link::Target, ConfigError> {
        let bad_url = |expected| ConfigError { setting: "redis_url", value: redact(&self.url), expected };
        let seeds = cluster_seeds(&self.url);
        let urls: Vec<&str> = match &seeds {
            Some(seeds) => seeds.iter().map(String::as_str).collect(),
            None => vec![self.url.as_str()],
        };
        let mut tls = false;
        for url in &urls {
            let client = ::redis::Client::open(*url).map_err(|e| bad_url(redis::leak_reason(&e)))?;
            match client.get_connection_info().addr() {
                ::redis::ConnectionAddr::TcpTls { insecure: true, .. } => {
                    return Err(bad_url(
                        "a rediss:// URL without #insecure (the server's certificate is always checked; \
                         give a private CA with tls_ca_file)",
                    ));
                }
                ::redis::ConnectionAddr::TcpTls { .. } => tls = true,
                _ => {}
            }
        }
        if self.lease_ttl < Duration::from_millis(10) {
            return Err(ConfigError::new("lease_ttl", format!("{:?}", self.lease_ttl), "at least 10 ms"));
        }
        let files = [
            ("tls_ca_file", &self.tls_ca_file),
            ("tls_cert_file", &self.tls_cert_file),
            ("tls_key_file", &self.tls_key_file),
        ];
        let tls_files = match files.iter().find(|(_, f)| f.is_some()) {
            None => None,
            Some((setting, Some(path))) if !tls => {
                return Err(ConfigError::new(
                    setting,
                    path.display(),
                    "a rediss:// redis_url (TLS files are for TLS)",
                ));
            }
            Some(_) => {
                match (&self.tls_cert_file, &self.tls_key_file) {
                    (Some(_), None) => {
                        return Err(ConfigError::new(
                            "tls_key_file",
                            "none",
                            "the key of tls_cert_file, given with it",
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(ConfigError::new(
                            "tls_cert_file",
                            "none",
                            "the certificate of tls_key_file, given with it",
                        ));
                    }
                    _ => {}
                }
                Some(link::tls_certificates(
                    self.tls_ca_file.as_deref(),
                    self.tls_cert_file.as_deref().zip(self.tls_key_file.as_deref()),
                )?)
            }
        };
        link::Target::new(&self.url, seeds, tls_files)
    }
}

/// The seeds of a cluster URL (`redis+cluster://` or `rediss+cluster://`, several
/// `host:port` separated by commas, credentials and the rest given once) as one single-node
/// URL each; `None` for a single Redis's URL.
#[cfg(feature = "redis")]
fn cluster_seeds(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = match (url.strip_prefix("redis+cluster://"), url.strip_prefix("rediss+cluster://")) {
        (Some(rest), _) => ("redis", rest),
        (_, Some(rest)) => ("rediss", rest),
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (creds, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    Some(hosts.split(',').map(|host| format!("{scheme}://{creds}{host}{tail}")).collect())
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for SharedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSettings")
            .field("url", &redact(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("lease_ttl", &self.lease_ttl)
            .field("timeout", &self.timeout)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .finish()
    }
}

/// The URL with its password masked, for logs and errors.
#[cfg(feature = "redis")]
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
#[non_exhaustive]
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

/// This process's lease on a key in the shared tier: finish it with [`RemoteLease::store`],
/// [`RemoteLease::nocache`] or [`RemoteLease::fail`]. Dropped unfinished (the last clone), it is
/// released so another process (or worker) takes over at once instead of after the lease TTL.
#[derive(Clone)]
pub struct RemoteLease(LeaseKind);

#[derive(Clone)]
enum LeaseKind {
    #[cfg(feature = "redis")]
    Redis(Arc<redis::LeaseState>),
    Process(Arc<process::HubLease>),
}

impl RemoteLease {
    /// Stores the value in the shared tier (on Redis, only if this process still owns the lease:
    /// a holder that lost it never overwrites a newer value) and hands it to everyone waiting.
    /// True if written.
    pub fn store(&self, blob: &Blob) -> Pending<bool> {
        match &self.0 {
            #[cfg(feature = "redis")]
            LeaseKind::Redis(l) => l.store(blob),
            LeaseKind::Process(l) => l.store(blob),
        }
    }

    /// Hands a value that is not to be stored to everyone waiting.
    pub fn nocache(&self, blob: &Blob) -> Pending<bool> {
        match &self.0 {
            #[cfg(feature = "redis")]
            LeaseKind::Redis(l) => l.nocache(blob),
            LeaseKind::Process(l) => l.nocache(blob),
        }
    }

    /// Hands an error to everyone waiting; nothing is stored.
    pub fn fail(&self, error: &RemoteError) -> Pending<bool> {
        match &self.0 {
            #[cfg(feature = "redis")]
            LeaseKind::Redis(l) => l.fail(error),
            LeaseKind::Process(l) => l.fail(error),
        }
    }
}

/// Counters of the shared tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Values refused (and messages on the cache's channel dropped) because their signature or
    /// format did not check out, or because they were signed for another cache.
    pub rejected_values: u64,
    /// Bytes of the messages this cache received on its channels (completions it waited for,
    /// invalidations, clears): what other processes' events cost this one in traffic. Redis
    /// only (the in-process tier has no messages).
    pub message_bytes: u64,
}

#[derive(Default)]
struct Counters {
    remote_hits: AtomicU64,
    leases_won: AtomicU64,
    leases_lost: AtomicU64,
    remote_waits: AtomicU64,
    fallbacks: AtomicU64,
    rejected_values: AtomicU64,
    message_bytes: AtomicU64,
}

impl SharedStats {
    /// Every counter with its name (the Python spelling), in the order the bindings report them.
    pub fn fields(&self) -> [(&'static str, u64); 7] {
        [
            ("remote_hits", self.remote_hits),
            ("leases_won", self.leases_won),
            ("leases_lost", self.leases_lost),
            ("remote_waits", self.remote_waits),
            ("fallbacks", self.fallbacks),
            ("rejected_values", self.rejected_values),
            ("message_bytes", self.message_bytes),
        ]
    }
}

impl Counters {
    fn snapshot(&self) -> SharedStats {
        SharedStats {
            remote_hits: self.remote_hits.load(Relaxed),
            leases_won: self.leases_won.load(Relaxed),
            leases_lost: self.leases_lost.load(Relaxed),
            remote_waits: self.remote_waits.load(Relaxed),
            fallbacks: self.fallbacks.load(Relaxed),
            rejected_values: self.rejected_values.load(Relaxed),
            message_bytes: self.message_bytes.load(Relaxed),
        }
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// What a local tier does when another process invalidates (the key bytes, a tag, or all),
/// or refreshed a value. Non-exhaustive: a variant comes with a feature (`Refreshed` with
/// `redis`), and a feature one crate of a build enables is enabled for all of them.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum Invalidation<'a> {
    /// One key (canonical bytes).
    Key(&'a [u8]),
    /// Every entry with this tag.
    Tag(&'a str),
    /// Everything.
    All,
    /// Another process refreshed the key's value (`refresh_after`) and wrote it to Redis at
    /// `written` (its wall clock, in ms since the epoch): a local copy older than that falls
    /// due, so its next hit starts a refresh that takes that value from Redis.
    #[cfg(feature = "redis")]
    Refreshed {
        /// The key (canonical bytes).
        key: &'a [u8],
        /// When the new value was written.
        written: u64,
    },
}

type InvalidationHook = Box<dyn Fn(Invalidation<'_>) + Send + Sync>;

/// Where a cache's shared tier lives.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SharedMode {
    /// On Redis: every process and machine that uses the same server and cache name.
    #[cfg(feature = "redis")]
    Redis(SharedSettings),
    /// In this process's memory: every cache of that name in the process, whatever registry it
    /// belongs to (Node gives each worker thread its own). Values cross as bytes, as with Redis.
    Process,
}

impl SharedMode {
    /// The shared tier that `configure`'s checked options ask for, if any (Node's
    /// `shared: 'process'`, or Redis with its secret and lease TTL).
    #[cfg(feature = "redis")]
    pub fn of(o: &crate::options::Configure) -> Option<SharedMode> {
        if o.process {
            return Some(SharedMode::Process);
        }
        let mut shared = SharedSettings::new(o.redis_url.clone()?);
        if let Some(secret) = &o.secret {
            shared = shared.secret(secret.clone());
        }
        if let Some(t) = o.lease_ttl {
            shared.lease_ttl = t;
        }
        Some(SharedMode::Redis(shared))
    }

    /// Checks the settings without connecting (see [`SharedSettings::validate`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            #[cfg(feature = "redis")]
            SharedMode::Redis(s) => s.validate().map(drop),
            SharedMode::Process => Ok(()),
        }
    }

    /// How errors and logs name it: the Redis URL with its password masked, or `process`.
    pub fn describe(&self) -> String {
        match self {
            #[cfg(feature = "redis")]
            SharedMode::Redis(s) => redact(&s.url),
            SharedMode::Process => "process".to_owned(),
        }
    }
}

/// The shared tier of one named cache. Cheap to clone.
#[derive(Clone)]
pub struct SharedTier {
    backend: Backend,
    /// The binding's serializer of the values (see [`SharedTier::serializer`]).
    serializer: Arc<OnceLock<&'static str>>,
}

#[derive(Clone)]
enum Backend {
    #[cfg(feature = "redis")]
    Redis(redis::RedisTier),
    Process(Arc<process::Member>),
}

/// Tests only: a moment of a fetch from Redis (see [`SharedTier::at`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// The read found no value; the lease script comes next (a holder's publish now leaves a
    /// value and no lease).
    Missed,
    /// The lease is another process's; the subscription to the key's completions comes next.
    LeaseHeld,
}

impl SharedTier {
    /// Starts the shared tier of cache `name`: validates the settings (a bad URL is an error now,
    /// with the password masked), then connects in the background (Redis) or joins the process's
    /// store of that name. `local` are the local tier's settings (the process store takes its
    /// limit and duration from the first cache that creates it). Events ([`crate::Event::SharedDown`],
    /// [`crate::Event::SharedUp`], [`crate::Event::ValueRefused`]) go to `listener`.
    pub fn start(
        name: &str,
        mode: SharedMode,
        local: &Settings,
        clock: Clock,
        listener: Option<Listener>,
    ) -> Result<SharedTier, ConfigError> {
        let backend = match mode {
            #[cfg(feature = "redis")]
            SharedMode::Redis(s) => {
                Backend::Redis(redis::RedisTier::start(name, s, local.cache_duration, clock, listener)?)
            }
            SharedMode::Process => {
                let _ = listener; // the in-process tier has no events of its own
                Backend::Process(process::join(name, local, clock)?)
            }
        };
        Ok(SharedTier { backend, serializer: Arc::default() })
    }

    /// Whether this tier is the one `mode` describes (the same Redis URL, or both in-process).
    pub fn is(&self, mode: &SharedMode) -> bool {
        match (&self.backend, mode) {
            #[cfg(feature = "redis")]
            (Backend::Redis(t), SharedMode::Redis(s)) => t.url() == s.url,
            (Backend::Process(_), SharedMode::Process) => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The serializer a binding's values cross this tier with (`pickle`, `v8`, `json`), named
    /// when the binding configured the cache (see [`crate::Registry::configure_from`]); `None`
    /// for a cache built in Rust, whose codec is its own.
    pub fn serializer(&self) -> Option<&'static str> {
        self.serializer.get().copied()
    }

    /// Names the serializer once, when the registry makes the tier.
    pub(crate) fn set_serializer(&self, name: &'static str) {
        let _ = self.serializer.set(name);
    }

    /// Whether the value a computing process returns is the one decoded from the bytes it
    /// publishes: so with JSON, which loses types (Python's tuples become lists and int keys
    /// str, JS Dates strings), every process, and every call here, hit or miss, sees one
    /// value. The other serializers keep what they carry, so the value itself is returned.
    pub(crate) fn returns_decoded(&self) -> bool {
        self.serializer() == Some("json")
    }

    /// The Redis URL it was configured with (`process` for the in-process tier).
    pub fn url(&self) -> &str {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(t) => t.url(),
            Backend::Process(_) => "process",
        }
    }

    /// Whether the tier is up now: connected, subscribed to the cache's channel, and answering
    /// in time (false from the first call that timed out until Redis answers again; always
    /// true in process).
    pub fn is_up(&self) -> bool {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(t) => t.is_up(),
            Backend::Process(_) => true,
        }
    }

    /// Sets what to do when another cache invalidates (the local tier's own invalidation).
    /// Set once; later calls are ignored.
    pub fn on_invalidation(&self, f: impl Fn(Invalidation<'_>) + Send + Sync + 'static) {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(t) => t.on_invalidation(f),
            Backend::Process(m) => m.on_invalidation(f),
        }
    }

    /// Tests only: `f` runs (on the tier's runtime thread, with the moment and the key's bytes)
    /// at the moments of a fetch when another process's move could slip by ([`Moment`]). Set
    /// once; the in-process tier has no such moments.
    #[doc(hidden)]
    pub fn at(&self, f: impl Fn(Moment, &[u8]) + Send + Sync + 'static) {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(t) => t.at(f),
            Backend::Process(_) => drop(f),
        }
    }

    /// Changes the idle TTL used for new writes and reads (a reconfigured `cache_duration`).
    pub fn set_idle(&self, idle: Duration) {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(t) => t.set_idle(idle),
            Backend::Process(m) => m.set_idle(idle),
        }
    }

    /// The shared tier's answer for a key the local tier missed (see [`Remote`]). Call it as the
    /// local flight's leader, so each local tier asks once per key. A Redis tier whose first
    /// attempt to connect has not ended yet waits for it (bounded by its timeout).
    pub fn fetch(&self, key: &Key) -> Pending<Remote> {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(t) => t.fetch(key, None),
            Backend::Process(m) => m.fetch(key),
        }
    }

    /// The shared tier's answer for a refresh of `key` (its value is due, `refresh_after` being
    /// `within`): a value another process wrote less than `within` ago, or the lease to compute
    /// it (one process refreshes a key for the whole fleet; the others wait for its value).
    /// `None` from the in-process tier, which has no refreshes of its own: the caller computes.
    pub fn refetch(&self, key: &Key, within: Duration) -> Option<Pending<Remote>> {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(t) => Some(t.fetch(key, Some(within))),
            Backend::Process(_) => {
                let _ = (key, within);
                None
            }
        }
    }

    /// Notes a local hit: the shared entry's idle TTL is refreshed (on Redis, in the next batch;
    /// the local tier calls this at most once per a tenth of the duration per key).
    pub fn touch(&self, key: &Key) {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(t) => t.touch(key),
            Backend::Process(m) => m.touch(key),
        }
    }

    /// Deletes the key in the shared tier and tells every local tier to drop it.
    pub fn invalidate(&self, key: &Key) -> Pending<bool> {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(t) => t.invalidate(key),
            Backend::Process(m) => m.invalidate(key),
        }
    }

    /// Deletes the tag's values in the shared tier and tells every local tier to drop them.
    pub fn invalidate_tag(&self, tag: &str) -> Pending<bool> {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(t) => t.invalidate_tag(tag),
            Backend::Process(m) => m.invalidate_tag(tag),
        }
    }

    /// Deletes every value of the cache in the shared tier and tells every local tier to clear.
    pub fn clear(&self) -> Pending<bool> {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(t) => t.clear(),
            Backend::Process(m) => m.clear(),
        }
    }

    /// The shared tier's counters.
    pub fn stats(&self) -> SharedStats {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(t) => t.counters().snapshot(),
            Backend::Process(m) => m.counters().snapshot(),
        }
    }
}
