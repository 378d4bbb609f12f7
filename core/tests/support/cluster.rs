//! A Redis Cluster of the test's own: six `redis-server --cluster-enabled yes` on free loopback
//! ports (three masters, one replica each) in a temporary directory, joined by
//! `redis-cli --cluster create`; every server is killed and the directory removed when dropped,
//! also when the test fails (then each node's state and log are printed first).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::redis::{Args, free_port, until};

/// One node of a [`Cluster`].
pub struct Node {
    pub port: u16,
    child: Option<Child>,
}

impl Node {
    /// `redis-cli` on the node; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// Whether the node is running.
    pub fn alive(&self) -> bool {
        self.child.is_some()
    }
}

/// A six-node cluster on loopback; see the module docs.
pub struct Cluster {
    pub nodes: Vec<Node>,
    dir: PathBuf,
}

fn cli_raw(port: u16, args: &[&[u8]]) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut c = Command::new("redis-cli");
    c.arg("-p").arg(port.to_string());
    for a in args {
        c.arg(std::ffi::OsStr::from_bytes(a));
    }
    String::from_utf8_lossy(&c.output().unwrap().stdout).trim().to_owned()
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A node's `INFO replication`, field by field.
fn replication(port: u16) -> HashMap<String, String> {
    let out = cli(port, &["INFO", "replication"]);
    out.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_owned(), v.trim().to_owned())).collect()
}

impl Cluster {
    /// Starts six nodes and joins them (three masters, a replica each); returns once every
    /// slot is served, every node agrees the cluster is ok and every replica holds its
    /// master's data (its first sync done).
    pub fn start() -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "coopcache-cluster-{}-{}",
            std::process::id(),
            fastrand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Cluster { nodes: Vec::new(), dir };
        for _ in 0..6 {
            let port = cluster_port();
            let child = Command::new("redis-server")
                .current_dir(&cluster.dir)
                .args(
                    Args::on(port)
                        .and(&["--cluster-enabled", "yes"])
                        .and(&["--cluster-config-file", &format!("nodes-{port}.conf")])
                        // A dead master is noticed and replaced within a couple of seconds.
                        .and(&["--cluster-node-timeout", "1000"])
                        // A replica's full sync goes through its RDB file (received, renamed to
                        // it, loaded from it): with one name in the shared directory, replicas
                        // syncing at once could each load another master's data.
                        .and(&["--dbfilename", &format!("dump-{port}.rdb")])
                        // A master starts its replica's first sync at once (not 5 s later), so
                        // waiting for it in `start` is short.
                        .and(&["--repl-diskless-sync-delay", "0"])
                        // Read back by `report` when a test fails.
                        .and(&["--logfile", &format!("node-{port}.log")])
                        .build(),
                )
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server on the PATH (.ci/run installs it)");
            cluster.nodes.push(Node { port, child: Some(child) });
        }
        for n in &cluster.nodes {
            until("a cluster node answers", || n.cli(&["PING"]) == "PONG");
        }
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        for n in &cluster.nodes {
            until("every node sees the cluster ok", || {
                n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
            });
        }
        until("every node knows three masters", || cluster.masters().len() == 3);
        until("every replica made its first sync", || {
            cluster.pairs().len() == 3 && cluster.replicas_caught_up()
        });
        cluster
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The running masters (by `CLUSTER NODES` as a live node sees it).
    pub fn masters(&self) -> Vec<u16> {
        self.live()
            .map(|n| n.cli(&["CLUSTER", "NODES"]))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter_map(|a| a.split(['@', ':']).nth(1)?.parse().ok())
            .collect()
    }

    fn live(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.alive())
    }

    /// The port of the master serving `key` (a Redis key name): the one master that answers
    /// for it instead of redirecting.
    pub fn owner(&self, key: &[u8]) -> u16 {
        let port = self.masters().into_iter().find(|&p| {
            let out = cli_raw(p, &[b"EXISTS", key]);
            !out.contains("MOVED") && !out.contains("ASK")
        });
        port.unwrap_or_else(|| panic!("no master serves {}", String::from_utf8_lossy(key)))
    }

    /// `redis-cli -c` (following redirections) with raw-byte arguments, on a live node.
    pub fn cli_bytes(&self, args: &[&[u8]]) -> String {
        use std::os::unix::ffi::OsStrExt;
        let mut c = Command::new("redis-cli");
        c.arg("-c").arg("-p").arg(self.live().unwrap().port.to_string());
        for a in args {
            c.arg(std::ffi::OsStr::from_bytes(a));
        }
        String::from_utf8_lossy(&c.output().unwrap().stdout).trim().to_owned()
    }

    /// Every key on every running master matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let masters = self.masters();
        masters
            .iter()
            .flat_map(|&p| {
                let out = cli(p, &["--scan", "--pattern", pattern]);
                out.lines().map(str::to_owned).collect::<Vec<_>>()
            })
            .collect()
    }

    /// The running masters with their running replicas (master port, replica port), as each
    /// replica says (`INFO replication`).
    pub fn pairs(&self) -> Vec<(u16, u16)> {
        let masters = self.masters();
        self.nodes
            .iter()
            .filter(|n| n.alive() && !masters.contains(&n.port))
            .filter_map(|r| Some((replication(r.port).get("master_port")?.parse().ok()?, r.port)))
            .collect()
    }

    /// The keys on the node on `port` matching `pattern`, sorted.
    pub fn keys_on(&self, port: u16, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> =
            cli(port, &["--scan", "--pattern", pattern]).lines().map(str::to_owned).collect();
        keys.sort();
        keys
    }

    /// Whether every running replica holds everything its master wrote so far: its link is
    /// up, its first (full) sync done, it follows its master's history (same replication id)
    /// and has applied all of it (equal offsets). Offsets alone do not say it: before a
    /// replica's first sync both can read 0 while it holds nothing.
    pub fn replicas_caught_up(&self) -> bool {
        let masters = self.masters();
        self.nodes.iter().filter(|n| n.alive() && !masters.contains(&n.port)).all(|replica| {
            let r = replication(replica.port);
            let Some(m) = r.get("master_port").and_then(|p| p.parse().ok()).map(replication) else {
                return false;
            };
            let is = |field: &str, value: &str| r.get(field).is_some_and(|v| v == value);
            let same = |field: &str, its: &str| r.contains_key(field) && r.get(field) == m.get(its);
            is("master_link_status", "up")
                && is("master_sync_in_progress", "0")
                && same("master_replid", "master_replid")
                && same("slave_repl_offset", "master_repl_offset")
        })
    }

    /// What every node holds and says, for a failure message: its replication state, its
    /// view of the cluster, the tier's keys on it, and its log (a killed node's too).
    pub fn report(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out += &format!("\n=== node {} ({})\n", n.port, if n.alive() { "alive" } else { "killed" });
            if n.alive() {
                out += &format!("{}\n", n.cli(&["INFO", "replication"]));
                out += &format!("{}\n", n.cli(&["CLUSTER", "NODES"]));
                let keys = self.keys_on(n.port, "coopcache:*");
                out += &format!("{} keys: {keys:?}\n", keys.len());
            }
            let log = std::fs::read_to_string(self.dir.join(format!("node-{}.log", n.port)));
            out += &log.unwrap_or_default();
        }
        out
    }

    /// Kills the node on `port` (SIGKILL: no goodbye to its clients or peers).
    pub fn kill(&mut self, port: u16) {
        let n = self.nodes.iter_mut().find(|n| n.port == port).expect("a node of the cluster");
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free port for another node, never handed to a node of any cluster of this test process
/// before (nor its cluster bus port, 10000 higher, which must be a port too: redis-server
/// refuses one above 55535). A port a killed node released must not go to another cluster's
/// node: the killed node's peers keep calling its address, and the two clusters would meet and
/// merge.
fn cluster_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static HANDED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = free_port();
        let mut handed = HANDED.lock().unwrap_or_else(|e| e.into_inner());
        let handed = handed.get_or_insert_with(HashSet::new);
        let taken =
            |p: u16| handed.contains(&p) || handed.contains(&(p + 10000)) || handed.contains(&(p - 10000));
        if port <= 55535 && port > 10000 && !taken(port) {
            handed.insert(port);
            return port;
        }
    }
}

/// A suffix that keeps two clusters of one test process in their own directories.
fn fastrand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the cluster when the test failed:{}", self.report());
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
