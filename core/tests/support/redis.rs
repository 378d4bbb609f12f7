//! A `redis-server` of the test's own on a free loopback port, and the shared tier's helpers
//! the Redis test files share (`tests/shared.rs`, `tests/shared_faults.rs`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The arguments of a test `redis-server`: on loopback only, and nothing written to disk (no
/// RDB snapshots, no AOF), so a test's server is its own and leaves nothing behind. Every test
/// server (single, TLS, cluster node) starts from these.
pub struct Args(Vec<String>);

impl Args {
    /// Plain TCP on `port` (`0`: none, for a TLS-only server).
    pub fn on(port: u16) -> Args {
        let port = port.to_string();
        Args(vec![]).and(&["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    }

    /// These arguments added.
    pub fn and(mut self, args: &[&str]) -> Args {
        self.0.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn build(self) -> Vec<String> {
        self.0
    }
}

/// A `redis-server` on loopback, killed when dropped.
pub struct Server {
    pub port: u16,
    child: Child,
    args: Vec<String>,
    /// `redis-cli`'s TLS arguments, for a server that speaks TLS only.
    cli_tls: Vec<String>,
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

    /// A server on `port` with more arguments.
    pub fn with(port: u16, extra: &[&str]) -> Server {
        Server::run(port, Args::on(port).and(extra).build(), Vec::new())
    }

    /// A server that speaks TLS only, with `certs`' server certificate; with `clients`, it
    /// requires a client certificate signed by `certs`' CA (mutual TLS).
    pub fn tls(certs: &Certs, clients: bool) -> Server {
        let port = free_port();
        let path = |f: &str| certs.path(f).display().to_string();
        let args = Args::on(0)
            .and(&["--tls-port", &port.to_string()])
            .and(&["--tls-cert-file", &path("server.pem"), "--tls-key-file", &path("server.key")])
            .and(&["--tls-ca-cert-file", &path("ca.pem")])
            .and(&["--tls-auth-clients", if clients { "yes" } else { "no" }])
            .build();
        let cli = [
            "--tls",
            "--cacert",
            &path("ca.pem"),
            "--cert",
            &path("client.pem"),
            "--key",
            &path("client.key"),
        ];
        Server::run(port, args, cli.iter().map(|s| s.to_string()).collect())
    }

    fn run(port: u16, args: Vec<String>, cli_tls: Vec<String>) -> Server {
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH (.ci/run installs it)");
        let s = Server { port, child, args, cli_tls };
        s.until(|| s.cli(&["PING"]) == "PONG");
        s
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.cli_tls.is_empty() { "redis" } else { "rediss" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `redis-cli` on the server; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(&self.cli_tls)
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `redis-cli` with arguments that are raw bytes (keys and messages in the tier's format).
    pub fn cli_bytes(&self, args: &[&[u8]]) -> String {
        use std::os::unix::ffi::OsStrExt;
        let mut c = Command::new("redis-cli");
        c.args(&self.cli_tls).arg("-p").arg(self.port.to_string());
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

/// A directory of its own with a test CA (`ca.pem`, `ca.key`), a server certificate for
/// 127.0.0.1 (`server.pem`, `server.key`) and a client certificate (`client.pem`,
/// `client.key`) it signed, made with `openssl`; removed when dropped.
pub struct Certs {
    dir: PathBuf,
}

impl Certs {
    pub fn make(name: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!("coopcache-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let certs = Certs { dir };
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").current_dir(&certs.dir).args(args).output().expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let key = ["-newkey", "rsa:2048", "-nodes", "-days", "1"];
        openssl(
            &[
                &["req", "-x509"][..],
                &key,
                &["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=coopcache test CA"],
            ]
            .concat(),
        );
        for (who, ext) in [
            ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(certs.path(&format!("{who}.ext")), ext).unwrap();
            let csr = format!("{who}.csr");
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &csr,
                "-subj",
                &format!("/CN={who}"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &format!("{who}.pem"),
                "-extfile",
                &format!("{who}.ext"),
            ]);
        }
        certs
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
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
