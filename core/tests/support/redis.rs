//! A `redis-server` of the test's own on a free loopback port, and the shared tier's helpers
//! the Redis test files share (`tests/shared.rs`, `tests/shared_faults.rs`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on loopback, killed when dropped.
pub struct Server {
    pub port: u16,
    child: Child,
    args: Vec<String>,
}

/// A free loopback port (bound and released: the server takes it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// A server on a free port.
    pub fn start() -> Server {
        Server::on(free_port())
    }

    /// A server on `port` (a stopped server's, to restart it).
    pub fn on(port: u16) -> Server {
        Server::with(port, &[])
    }

    /// A server on `port` with more arguments; with `--port 0` among them (TLS only), `port`
    /// is the TLS port and the server is reached through it alone.
    pub fn with(port: u16, extra: &[&str]) -> Server {
        let mut args: Vec<String> = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !extra.contains(&"--port") {
            args.extend(["--port".to_owned(), port.to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH (.ci/run installs it)");
        let s = Server { port, child, args };
        if !extra.contains(&"--port") {
            s.until(|| s.cli(&["PING"]) == "PONG");
        }
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli` on the server's (plain) port; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").arg("-p").arg(self.port.to_string()).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `redis-cli` with arguments that are raw bytes (keys and messages in the tier's format).
    pub fn cli_bytes(&self, args: &[&[u8]]) -> String {
        use std::os::unix::ffi::OsStrExt;
        let mut c = Command::new("redis-cli");
        c.arg("-p").arg(self.port.to_string());
        for a in args {
            c.arg(std::ffi::OsStr::from_bytes(a));
        }
        let out = c.output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits for a condition (the bound only stops a broken test).
    pub fn until(&self, cond: impl FnMut() -> bool) {
        until("condition", cond)
    }

    /// Stalls the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a stalled server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(sig).arg(self.child.id().to_string()).status().unwrap().success();
        assert!(ok, "kill {sig}");
    }

    /// Kills the server; returns its port, to start another on it.
    pub fn stop(mut self) -> u16 {
        self.kill();
        self.port
    }

    /// The arguments it was started with (to restart it alike).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for a condition, polling (the bound only stops a broken test).
pub fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < end, "condition not reached: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(feature = "redis")]
#[allow(unused_imports)] // not every test file uses them
pub use tier::*;

#[cfg(feature = "redis")]
mod tier {
    use std::time::Duration;

    use coopcache::shared::{Blob, Remote, SharedMode, SharedSettings, SharedTier};
    use coopcache::{Clock, Listener, Pending, Settings};

    use super::Server;

    /// A Redis tier for cache `name`, connected (each `SharedTier` stands for a process).
    pub fn tier(s: &Server, name: &str, f: impl FnOnce(&mut SharedSettings)) -> SharedTier {
        let mut settings = SharedSettings::new(s.url());
        f(&mut settings);
        let t = start(name, settings, Duration::from_secs(60)).unwrap();
        s.until(|| t.is_up());
        t
    }

    /// A Redis tier for a cache whose idle duration is `idle`.
    pub fn start(
        name: &str,
        settings: SharedSettings,
        idle: Duration,
    ) -> Result<SharedTier, coopcache::ConfigError> {
        start_with(name, settings, idle, None)
    }

    /// [`start`] with a listener for the tier's events.
    pub fn start_with(
        name: &str,
        settings: SharedSettings,
        idle: Duration,
        listener: Option<Listener>,
    ) -> Result<SharedTier, coopcache::ConfigError> {
        let local = Settings::default().cache_duration(idle);
        SharedTier::start(name, SharedMode::Redis(settings), &local, Clock::system(), listener)
    }

    #[cfg(feature = "json")]
    /// A cache of `name` with a shared tier on the server (each stands for a process), connected.
    pub fn shared_cache(s: &Server, name: &str) -> coopcache::Cache<coopcache::Key, String> {
        let settings = SharedSettings::new(s.url());
        let c =
            coopcache::Cache::builder().name(name).shared(settings, coopcache::JsonCodec).build().unwrap();
        s.until(|| c.shared().is_some_and(SharedTier::is_up));
        c
    }

    pub fn blob(v: &str) -> Blob {
        Blob { tags: vec![], payload: v.as_bytes().to_vec() }
    }

    pub fn tagged(v: &str, tags: &[&str]) -> Blob {
        Blob { tags: tags.iter().map(|t| t.to_string()).collect(), payload: v.as_bytes().to_vec() }
    }

    pub fn wait(p: &Pending<Remote>) -> Remote {
        p.wait_timeout(Duration::from_secs(20)).expect("an answer")
    }

    pub fn wait_bool(p: Pending<bool>) -> bool {
        p.wait_timeout(Duration::from_secs(20)).expect("a confirmation")
    }

    pub fn payload(r: Remote) -> String {
        match r {
            Remote::Value(b) => String::from_utf8(b.payload).unwrap(),
            Remote::NoCache(_) => "nocache".into(),
            Remote::Failed(e) => format!("failed {e}"),
            Remote::Compute(_) => "compute".into(),
            Remote::Unavailable => "unavailable".into(),
            _ => unreachable!("an answer this test does not know"),
        }
    }
}
