//! Named caches: configured once per process, then used by name from anywhere in it.
//!
//! Generic over the value type, so each binding instantiates one registry for its own values
//! (Python objects, JS references) with the canonical [`Key`] as the key type.

use std::collections::{BTreeMap, HashMap};

use parking_lot::{Mutex, RwLock};

use crate::cache::{ByWeigher, Cache, CacheBuilder};
use crate::clock::Clock;
use crate::config::{ConfigError, Settings};
use crate::error::Error;
use crate::keys::Key;
use crate::options::{ErrorKind, INVALID_ARGUMENT, OptionError, Style};
use crate::stats::Listener;

/// The caches of one process (or one binding), by name.
///
/// ```
/// use coopcache::{Key, Registry, Settings};
///
/// let registry: Registry<String> = Registry::new();
/// let users = registry.configure("users", Settings::default()).unwrap();
/// let v = users.get_or_compute(Key::from(("user", 42)), || "Ada".to_string());
/// assert_eq!(registry.get("users").unwrap().get(&Key::from(("user", 42))), Some(v));
/// assert!(registry.get("nope").unwrap_err().to_string().contains("configured: users"));
/// ```
pub struct Registry<V: Clone + Send + Sync + 'static> {
    caches: RwLock<BTreeMap<String, Cache<Key, V>>>,
    /// The default-key names claimed in each cache: (cache, name) -> the owner's token.
    names: Mutex<HashMap<(String, String), u64>>,
    listener: Option<Listener>,
    clock: Clock,
    /// Clocks given to caches not configured yet ([`Registry::manual_clock`], for tests).
    clocks: Mutex<HashMap<String, Clock>>,
}

impl<V: Clone + Send + Sync + 'static> Default for Registry<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Clone + Send + Sync + 'static> Registry<V> {
    /// An empty registry on the system clock.
    pub fn new() -> Self {
        Self::with(None, Clock::system())
    }

    /// An empty registry whose caches report their events to `listener` and read `clock`.
    pub fn with(listener: Option<Listener>, clock: Clock) -> Self {
        Registry {
            caches: RwLock::new(BTreeMap::new()),
            names: Mutex::default(),
            listener,
            clock,
            clocks: Mutex::default(),
        }
    }

    /// For a binding's tests: the cache `name`, once configured, reads a [`Clock::manual`]
    /// (returned, to advance) instead of the registry's clock, so refresh and expiry tests in
    /// Python and Node move time instead of sleeping. `None` if the cache exists already (its
    /// clock cannot change).
    ///
    /// ```
    /// use coopcache::{Key, Registry, Settings};
    /// use std::time::Duration;
    ///
    /// let registry: Registry<u32> = Registry::new();
    /// let clock = registry.manual_clock("rates").unwrap();
    /// let rates = registry.configure("rates", Settings::default().cache_duration(Duration::from_secs(60))).unwrap();
    /// rates.insert(Key::from("eur"), 1);
    /// clock.advance(Duration::from_secs(61));
    /// assert_eq!(rates.get(&Key::from("eur")), None, "idle past cache_duration on the manual clock");
    /// assert!(registry.manual_clock("rates").is_none(), "too late: the cache exists");
    /// ```
    pub fn manual_clock(&self, name: &str) -> Option<Clock> {
        let caches = self.caches.read();
        if caches.contains_key(name) {
            return None;
        }
        let clock = Clock::manual();
        self.clocks.lock().insert(name.to_owned(), clock.clone());
        Some(clock)
    }

    /// Creates the cache `name`, or updates its settings in place (entries kept; a lower limit
    /// or a shorter duration takes effect at once). Entries weigh their key's encoded bytes
    /// plus the weight the binding passes to [`crate::Lease::store_with`], plus the fixed
    /// per-entry overhead.
    pub fn configure(&self, name: &str, settings: Settings) -> Result<Cache<Key, V>, ConfigError> {
        let mut caches = self.caches.write();
        if let Some(c) = caches.get(name) {
            c.reconfigure(settings)?;
            return Ok(c.clone());
        }
        let cache = self.builder(name, settings).build()?;
        caches.insert(name.to_owned(), cache.clone());
        Ok(cache)
    }

    fn builder(&self, name: &str, settings: Settings) -> CacheBuilder<Key, V, ByWeigher> {
        let clock = self.clocks.lock().remove(name).unwrap_or_else(|| self.clock.clone());
        let mut b = Cache::builder().name(name).settings(settings).clock(clock);
        if let Some(l) = self.listener.clone() {
            b = b.listener(move |e| l(e));
        }
        b.weigher(|k: &Key, _: &V| k.as_bytes().len() as u64)
    }

    /// Like [`Registry::configure`], with a shared tier (the README's "Shared mode") when `shared` is given:
    /// on Redis, or in this process's memory. The binding serializes values itself and drives
    /// the tier through [`Cache::shared`] as its local leader; the shared tier of an existing
    /// cache cannot change.
    #[cfg(feature = "shared")]
    pub fn configure_shared(
        &self,
        name: &str,
        settings: Settings,
        shared: Option<crate::shared::SharedMode>,
    ) -> Result<Cache<Key, V>, ConfigError> {
        self.configure_tier(name, settings, shared, None)
    }

    /// [`Registry::configure_shared`], naming the serializer of a tier it makes before any
    /// call can see the tier.
    #[cfg(feature = "shared")]
    fn configure_tier(
        &self,
        name: &str,
        settings: Settings,
        shared: Option<crate::shared::SharedMode>,
        serializer: Option<&'static str>,
    ) -> Result<Cache<Key, V>, ConfigError> {
        let mut caches = self.caches.write();
        if let Some(c) = caches.get(name) {
            let same = match (c.shared(), &shared) {
                (None, None) => true,
                (Some(t), Some(m)) => t.is(m),
                _ => false,
            };
            if !same {
                let (setting, value) = match &shared {
                    Some(m) if matches!(m, crate::shared::SharedMode::Process) => ("shared", m.describe()),
                    Some(m) => ("redis_url", m.describe()),
                    None => ("redis_url", "none".to_owned()),
                };
                return Err(ConfigError::new(
                    setting,
                    value,
                    "the shared tier the cache was first configured with",
                ));
            }
            c.reconfigure(settings)?;
            return Ok(c.clone());
        }
        if let Some(m) = &shared {
            m.validate()?; // before the cache exists: a bad URL leaves nothing behind
        }
        let mut b = self.builder(name, settings);
        b.shared = shared.map(|m| (m, None));
        let cache = b.build()?;
        if let (Some(t), Some(s)) = (cache.shared(), serializer) {
            t.set_serializer(s);
        }
        caches.insert(name.to_owned(), cache.clone());
        Ok(cache)
    }

    /// What a binding's `configure` does with the options [`crate::options::configure`]
    /// checked: creates or updates the cache `name`, with the shared tier they ask for. A
    /// shared tier is fixed once made, its serializer too (values already in Redis are in that
    /// format); a new one on Redis with `pickle` needs a secret, since an unsigned pickle read
    /// from Redis could run code.
    #[cfg(feature = "redis")]
    pub fn configure_from(
        &self,
        name: &str,
        o: crate::options::Configure,
    ) -> Result<Cache<Key, V>, ConfigError> {
        let tier = self.caches.read().get(name).and_then(|c| c.shared().cloned());
        let serializer = match (&tier, o.serializer) {
            (Some(t), Some(want)) if t.serializer().is_some_and(|had| had != want) => {
                return Err(ConfigError::new(
                    "serializer",
                    format!("{want:?}"),
                    "the one the shared cache was first configured with",
                ));
            }
            (_, Some(want)) => want,
            (_, None) => tier.as_ref().and_then(|t| t.serializer()).unwrap_or(o.style.serializers()[0]),
        };
        let mode = crate::shared::SharedMode::of(&o);
        if let (None, Some(crate::shared::SharedMode::Redis(s)), "pickle") = (&tier, &mode, serializer) {
            if s.secret.is_none() {
                return Err(ConfigError::new(
                    "secret",
                    "none",
                    "a secret with serializer \"pickle\" in shared mode (unsigned pickles from Redis \
                     could run code), or serializer \"json\"",
                ));
            }
        }
        match mode {
            None => self.configure(name, o.settings),
            Some(mode) => self.configure_tier(name, o.settings, Some(mode), Some(serializer)),
        }
    }

    /// The cache `name`, or [`Error::UnknownCache`] listing the configured names.
    pub fn get(&self, name: &str) -> Result<Cache<Key, V>, Error> {
        let caches = self.caches.read();
        caches.get(name).cloned().ok_or_else(|| Error::UnknownCache {
            name: name.to_owned(),
            configured: caches.keys().cloned().collect(),
        })
    }

    /// The configured names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.caches.read().keys().cloned().collect()
    }

    /// Claims `name` in cache `cache` for the function the binding numbers `owner`: a default
    /// key (`name`, args) must be one function's alone in a cache, or two functions would share
    /// entries. An empty name, or one another live function holds, is refused (a `TypeError`;
    /// the user gives a key instead). True: the claim is new, and the binding calls
    /// [`Registry::release_name`] once the function is gone; false: `owner` held it already.
    ///
    /// ```
    /// use coopcache::{Registry, options::Style};
    ///
    /// let registry: Registry<u32> = Registry::new();
    /// assert_eq!(registry.claim_name("users", "load", 1, Style::Node), Ok(true));
    /// assert_eq!(registry.claim_name("users", "load", 1, Style::Node), Ok(false));
    /// assert!(registry.claim_name("users", "load", 2, Style::Node).unwrap_err().message.contains("already"));
    /// assert_eq!(registry.claim_name("other", "load", 2, Style::Node), Ok(true));
    /// registry.release_name("users", "load", 1);
    /// assert_eq!(registry.claim_name("users", "load", 2, Style::Node), Ok(true));
    /// ```
    pub fn claim_name(&self, cache: &str, name: &str, owner: u64, style: Style) -> Result<bool, OptionError> {
        let refuse = |message: String| OptionError { kind: ErrorKind::Type, code: INVALID_ARGUMENT, message };
        if name.is_empty() {
            return Err(refuse(match style {
                Style::Python => format!("coopcache.cached({cache:?}): a function with no name needs key="),
                Style::Node => "coopcache: wrap() got a function with no name, which the default key \
                    [fn.name, ...args] needs; give it a name (function load(...) {...}) or a key: \
                    wrap(fn, { key: (...args) => [...] })"
                    .to_owned(),
            }));
        }
        let mut names = self.names.lock();
        match names.get(&(cache.to_owned(), name.to_owned())) {
            Some(&held) if held == owner => Ok(false),
            Some(_) => Err(refuse(match style {
                Style::Python => format!(
                    "coopcache.cached({cache:?}): {name} is already cached in {cache:?} by another \
                     function of that name (their calls would share entries); give key= to one of them"
                ),
                Style::Node => format!(
                    "coopcache: wrap() got a second function named {name:?} for cache {cache:?}: it is \
                     already wrapped there, and both would share entries under [name, ...args]; give \
                     one a key"
                ),
            })),
            None => Ok(names.insert((cache.to_owned(), name.to_owned()), owner).is_none()),
        }
    }

    /// Frees a name [`Registry::claim_name`] gave `owner` (its function is gone).
    pub fn release_name(&self, cache: &str, name: &str, owner: u64) {
        let mut names = self.names.lock();
        let key = (cache.to_owned(), name.to_owned());
        if names.get(&key) == Some(&owner) {
            names.remove(&key);
        }
    }
}
