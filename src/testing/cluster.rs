//! A throwaway Redis Cluster for tests and measurements: three masters, three replicas.
//!
//! [`TestCluster::start`] starts six `redis-server --cluster-enabled yes` on free ports (each a
//! [`TestRedis`], so each dies with the test process), joins them with
//! `redis-cli --cluster create … --cluster-replicas 1`, and returns once every node says
//! `cluster_state:ok`, knows all six nodes and every replica is in sync. [`TestCluster::url`]
//! is what `REDIS_URL` takes (`redis+cluster://…`). [`TestCluster::kill_master_of`] kills the
//! master of a slot with `SIGKILL` (a crash: no goodbye to the replica), and
//! [`TestCluster::hang_master_of`] makes it stop answering while its sockets stay open (a
//! partition, a stalled VM); both wait for the replica's promotion.
//!
//! Each node gets an explicit cluster bus port (`--cluster-port`) instead of Redis's default of
//! port + 10000: free ports come from the ephemeral range, where port + 10000 is often above 65535.
//!
//! [`SlotCheckedStore`] wraps a store and records every call whose keys span more than one hash
//! slot: on a cluster such a call is a `CROSSSLOT` error for a script, and for an `MGET` a silent
//! split into several round trips by the client, which no server error would reveal.
//!
//! Everything here blocks (like [`TestRedis`]): from async code, call it through
//! `tokio::task::spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{free_port, TestRedis, TestRedisError};
use crate::keys::cluster_slot;
use crate::store::{Batch, Guarded, SharedStore, Store, StoreError, Write};

/// How long a node may be unreachable before the others count it as failed. Small, so a failover
/// takes two to three seconds rather than the fifteen of Redis's default.
pub const NODE_TIMEOUT_MS: u64 = 1_000;
/// Masters, and one replica each.
const MASTERS: usize = 3;
const NODES: usize = MASTERS * 2;
/// Generous, for a loaded two-core machine.
const READY_WITHIN: Duration = Duration::from_secs(60);
const FAILOVER_WITHIN: Duration = Duration::from_secs(30);

/// Why a throwaway cluster could not be started or changed.
#[derive(Debug, thiserror::Error)]
pub enum TestClusterError {
    #[error(
        "redis-cli is not installed (it creates the cluster): install it (`apt-get install -y redis-tools`, or redis-server, which brings it)"
    )]
    CliNotInstalled,
    #[error(transparent)]
    Server(#[from] TestRedisError),
    #[error("`redis-cli --cluster create` failed: {0}")]
    Create(String),
    #[error("the cluster did not get ready within {within:?}: {last}")]
    NotReady { within: Duration, last: String },
    #[error("no node serves slot {0}")]
    NoMaster(u16),
    #[error("no replica took slot {slot} over from {killed} (waited {within:?}): {last}")]
    NoFailover {
        slot: u16,
        killed: u16,
        within: Duration,
        last: String,
    },
    #[error("the redis-server on port {port} refused: {why}")]
    Refused { port: u16, why: String },
}

/// One node as the cluster sees it (a line of `CLUSTER NODES`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub id: String,
    pub port: u16,
    pub is_master: bool,
    /// Marked `fail` or `fail?` by the node that was asked.
    pub failing: bool,
    /// The id of its master, for a replica.
    pub master_id: Option<String>,
    /// Slot ranges served, inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl NodeView {
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot))
    }
}

/// What [`TestCluster::kill_master_of`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failover {
    /// The port of the master that was killed (or hung).
    pub killed: u16,
    /// The port of the replica that took its slots over.
    pub promoted: u16,
    /// From the kill to every live node agreeing on the new master with `cluster_state:ok`.
    pub took: Duration,
}

/// How a master is taken down.
#[derive(Clone, Copy, Debug)]
enum TakeDown {
    Kill,
    Hang(Duration),
}

/// A node made to hang by [`TestCluster::hang_master_of`]: killed when the cluster is dropped.
struct Hung {
    pid: String,
    /// The connection that sent `DEBUG SLEEP`, kept open until the end.
    _connection: TcpStream,
}

/// A running local Redis Cluster of three masters and three replicas.
pub struct TestCluster {
    nodes: Vec<TestRedis>,
    /// Nodes killed or hung: no longer asked anything.
    down: Mutex<BTreeSet<u16>>,
    hung: Mutex<Vec<Hung>>,
}

impl TestCluster {
    /// Starts six servers, creates the cluster and waits until it is ready.
    ///
    /// # Errors
    /// `redis-server` or `redis-cli` is missing, or the cluster does not form in time.
    pub fn start() -> Result<Self, TestClusterError> {
        if Command::new("redis-cli")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err(TestClusterError::CliNotInstalled);
        }
        remove_stale_cluster_dirs();
        let node_timeout = NODE_TIMEOUT_MS.to_string();
        let mut nodes = Vec::with_capacity(NODES);
        for _ in 0..NODES {
            // The bus port is probed here and the client port inside `start_with`; if they
            // collide the server cannot bind, so a new bus port is tried.
            let mut last_error = None;
            for _ in 0..3 {
                let bus_port = free_port()
                    .map_err(|e| TestRedisError::Spawn(e.to_string()))?
                    .to_string();
                let config_file = format!("nodes-{bus_port}.conf");
                match TestRedis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus_port,
                    // Relative: inside the server's own `--dir`, which is unique per server.
                    "--cluster-config-file",
                    &config_file,
                    "--cluster-node-timeout",
                    &node_timeout,
                    // Replicas sync at once instead of waiting five seconds for more replicas.
                    "--repl-diskless-sync-delay",
                    "0",
                    // `DEBUG SLEEP` makes a master hang; only from this machine.
                    "--enable-debug-command",
                    "local",
                ]) {
                    Ok(node) => {
                        nodes.push(node);
                        last_error = None;
                        break;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if let Some(e) = last_error {
                return Err(e.into());
            }
        }
        let cluster = Self {
            nodes,
            down: Mutex::new(BTreeSet::new()),
            hung: Mutex::new(Vec::new()),
        };
        cluster.create()?;
        cluster.wait_ready(READY_WITHIN)?;
        Ok(cluster)
    }

    /// One cluster shared by every test of this binary that does not break it; each test uses
    /// its own key prefix.
    ///
    /// # Panics
    /// When no cluster can be started: the tests cannot run, and the message says why.
    pub fn shared() -> &'static TestCluster {
        static SHARED: OnceLock<TestCluster> = OnceLock::new();
        SHARED.get_or_init(|| Self::start().unwrap_or_else(|e| panic!("{e}")))
    }

    fn create(&self) -> Result<(), TestClusterError> {
        let mut cli = Command::new("redis-cli");
        cli.arg("--cluster").arg("create");
        for node in &self.nodes {
            cli.arg(format!("127.0.0.1:{}", node.port()));
        }
        let output = cli
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TestClusterError::Create(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || !stdout.contains("All 16384 slots covered") {
            return Err(TestClusterError::Create(format!(
                "{}\n{}",
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Waits until every live node reports `cluster_state:ok` and knows all nodes, every live
    /// node agrees who serves each slot, and every live replica's link to its master is up.
    ///
    /// # Errors
    /// [`TestClusterError::NotReady`] with the last thing that was not ready.
    pub fn wait_ready(&self, within: Duration) -> Result<(), TestClusterError> {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.readiness() {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(TestClusterError::NotReady { within, last });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn readiness(&self) -> Result<(), String> {
        let mut agreed: Option<BTreeMap<(u16, u16), u16>> = None;
        for port in self.live_ports() {
            let node = self.node(port);
            let info: String = node
                .command(&["CLUSTER", "INFO"])
                .map_err(|e| format!("{port}: {e}"))?;
            if !info.contains("cluster_state:ok") {
                return Err(format!("{port}: cluster_state is not ok"));
            }
            if !info.contains(&format!("cluster_known_nodes:{NODES}")) {
                return Err(format!("{port}: does not know all {NODES} nodes yet"));
            }
            let views = self.views_from(port)?;
            if let Some(undecided) = views
                .iter()
                .find(|v| v.is_master && !v.failing && v.slots.is_empty())
            {
                return Err(format!(
                    "{port}: sees {} as a master without slots (not a replica yet)",
                    undecided.port
                ));
            }
            let owners: BTreeMap<(u16, u16), u16> = views
                .iter()
                .filter(|v| v.is_master && !v.failing)
                .flat_map(|v| v.slots.iter().map(move |&range| (range, v.port)))
                .collect();
            match &agreed {
                None => agreed = Some(owners),
                Some(first) if *first != owners => {
                    return Err(format!("{port}: disagrees about slot owners"));
                }
                Some(_) => {}
            }
            let replication: String = node
                .command(&["INFO", "replication"])
                .map_err(|e| format!("{port}: {e}"))?;
            if replication.contains("role:slave") && !replication.contains("master_link_status:up")
            {
                return Err(format!("{port}: replica not in sync with its master yet"));
            }
        }
        Ok(())
    }

    /// Seeds for the cluster client, one per node (`redis://127.0.0.1:PORT`).
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(TestRedis::url).collect()
    }

    /// The `REDIS_URL` of this cluster: `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Every node's port, killed ones included.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(TestRedis::port).collect()
    }

    /// The ports of nodes neither killed nor hung.
    pub fn live_ports(&self) -> Vec<u16> {
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        self.ports()
            .into_iter()
            .filter(|p| !down.contains(p))
            .collect()
    }

    /// The node on `port`.
    ///
    /// # Panics
    /// No node of this cluster has that port.
    pub fn node(&self, port: u16) -> &TestRedis {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node of this cluster listens on {port}"))
    }

    /// The cluster as a live node sees it.
    ///
    /// # Errors
    /// No live node answers.
    pub fn views(&self) -> Result<Vec<NodeView>, TestClusterError> {
        let mut last = String::from("no live node");
        for port in self.live_ports() {
            match self.views_from(port) {
                Ok(views) => return Ok(views),
                Err(why) => last = why,
            }
        }
        Err(TestClusterError::NotReady {
            within: Duration::ZERO,
            last,
        })
    }

    fn views_from(&self, port: u16) -> Result<Vec<NodeView>, String> {
        let text: String = self
            .node(port)
            .command(&["CLUSTER", "NODES"])
            .map_err(|e| format!("{port}: {e}"))?;
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(parse_node_line)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("{port}: unexpected CLUSTER NODES output"))
    }

    /// The port of the live master serving `slot`.
    ///
    /// # Errors
    /// No live node answers, or none serves the slot.
    pub fn master_of(&self, slot: u16) -> Result<u16, TestClusterError> {
        self.views()?
            .into_iter()
            .find(|v| v.is_master && !v.failing && v.serves(slot))
            .map(|v| v.port)
            .ok_or(TestClusterError::NoMaster(slot))
    }

    /// The port of the live master serving `key` (hash tags honoured).
    ///
    /// # Errors
    /// See [`TestCluster::master_of`].
    pub fn master_of_key(&self, key: &str) -> Result<u16, TestClusterError> {
        self.master_of(cluster_slot(key))
    }

    /// The masters and the slot ranges each serves, by port.
    ///
    /// # Errors
    /// No live node answers.
    pub fn masters(&self) -> Result<BTreeMap<u16, Vec<(u16, u16)>>, TestClusterError> {
        Ok(self
            .views()?
            .into_iter()
            .filter(|v| v.is_master && !v.failing && !v.slots.is_empty())
            .map(|v| (v.port, v.slots))
            .collect())
    }

    /// Makes sure every write the master of `key`'s slot acknowledged so far has reached its
    /// replica: writes `key` on that master, then `WAIT 1` for it. The replication stream is
    /// ordered, so the replica then holds everything written before as well.
    ///
    /// # Errors
    /// The master does not answer, or no replica acknowledged within `within`.
    pub fn replicate_up_to_now(&self, key: &str, within: Duration) -> Result<(), TestClusterError> {
        let port = self.master_of_key(key)?;
        let not_ready = |last: String| TestClusterError::NotReady { within, last };
        let client =
            redis::Client::open(self.node(port).url()).map_err(|e| not_ready(e.to_string()))?;
        let mut connection = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .map_err(|e| not_ready(e.to_string()))?;
        let (_, acknowledged): ((), i64) = redis::pipe()
            .cmd("SET")
            .arg(key)
            .arg("barrier")
            .cmd("WAIT")
            .arg(1)
            .arg(within.as_millis() as u64)
            .query(&mut connection)
            .map_err(|e| not_ready(e.to_string()))?;
        if acknowledged < 1 {
            return Err(not_ready(format!(
                "no replica of {port} acknowledged the barrier"
            )));
        }
        Ok(())
    }

    /// Kills the master serving `slot` with `SIGKILL` and waits until its replica has taken the
    /// slot over and every live node says `cluster_state:ok`.
    ///
    /// # Errors
    /// The master cannot be found or killed, or no replica takes over within thirty seconds.
    pub fn kill_master_of(&self, slot: u16) -> Result<Failover, TestClusterError> {
        self.take_down_master_of(slot, TakeDown::Kill)
    }

    /// Makes the master serving `slot` hang for `hang` (`DEBUG SLEEP`: it accepts connections
    /// but answers nothing, to clients or to the other nodes) and waits for its replica's
    /// promotion, as [`TestCluster::kill_master_of`] does. The hung node is killed when the
    /// cluster is dropped; if this process dies first, it wakes up by itself after `hang`.
    ///
    /// # Errors
    /// As [`TestCluster::kill_master_of`].
    pub fn hang_master_of(&self, slot: u16, hang: Duration) -> Result<Failover, TestClusterError> {
        self.take_down_master_of(slot, TakeDown::Hang(hang))
    }

    fn take_down_master_of(&self, slot: u16, how: TakeDown) -> Result<Failover, TestClusterError> {
        let port = self.master_of(slot)?;
        let failed = |why: String| TestClusterError::Refused { port, why };
        let info: String = self
            .node(port)
            .command(&["INFO", "server"])
            .map_err(|e| failed(e.to_string()))?;
        let pid = info
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .map(str::trim)
            .ok_or_else(|| failed("INFO server has no process_id".into()))?
            .to_owned();
        let started = Instant::now();
        match how {
            TakeDown::Kill => kill(&pid).map_err(failed)?,
            TakeDown::Hang(hang) => {
                let seconds = hang.as_secs().max(1).to_string();
                let mut connection =
                    TcpStream::connect(("127.0.0.1", port)).map_err(|e| failed(e.to_string()))?;
                let command = format!(
                    "*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n${}\r\n{seconds}\r\n",
                    seconds.len()
                );
                connection
                    .write_all(command.as_bytes())
                    .map_err(|e| failed(e.to_string()))?;
                self.hung
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Hung {
                        pid,
                        _connection: connection,
                    });
            }
        }
        self.down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port);

        let deadline = started + FAILOVER_WITHIN;
        loop {
            let last = match self.promoted(slot, port) {
                Ok(promoted) => {
                    return Ok(Failover {
                        killed: port,
                        promoted,
                        took: started.elapsed(),
                    })
                }
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(TestClusterError::NoFailover {
                    slot,
                    killed: port,
                    within: FAILOVER_WITHIN,
                    last,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The new master of `slot` once every live node agrees on it and is `ok`.
    fn promoted(&self, slot: u16, killed: u16) -> Result<u16, String> {
        let mut agreed = None;
        for port in self.live_ports() {
            let info: String = self
                .node(port)
                .command(&["CLUSTER", "INFO"])
                .map_err(|e| format!("{port}: {e}"))?;
            if !info.contains("cluster_state:ok") {
                return Err(format!("{port}: cluster_state is not ok"));
            }
            let owner = self
                .views_from(port)?
                .into_iter()
                .find(|v| v.is_master && !v.failing && v.serves(slot))
                .map(|v| v.port)
                .ok_or_else(|| format!("{port}: no master for slot {slot} yet"))?;
            if owner == killed {
                return Err(format!("{port}: still sees {killed} serving slot {slot}"));
            }
            match agreed {
                None => agreed = Some(owner),
                Some(first) if first != owner => {
                    return Err(format!("{port}: disagrees about the new master"));
                }
                Some(_) => {}
            }
        }
        let promoted = agreed.ok_or("no live node")?;
        let role: String = self
            .node(promoted)
            .command(&["INFO", "replication"])
            .map_err(|e| format!("{promoted}: {e}"))?;
        if role.contains("role:master") {
            Ok(promoted)
        } else {
            Err(format!("{promoted}: not a master yet"))
        }
    }

    /// Moves `slot` to the master on port `to` the way `redis-cli --cluster reshard` does, with
    /// live traffic in mind: `IMPORTING`/`MIGRATING`, then `MIGRATE` of its keys in batches of
    /// `batch` with `pace` between batches (clients meanwhile get `ASK` and `TRYAGAIN`), then the
    /// new owner is announced to every master. Returns how many keys moved.
    ///
    /// # Errors
    /// A node refuses a step.
    pub fn move_slot(
        &self,
        slot: u16,
        to: u16,
        batch: usize,
        pace: Duration,
    ) -> Result<usize, TestClusterError> {
        let from = self.master_of(slot)?;
        let views = self.views()?;
        let id_of = |port: u16| {
            views
                .iter()
                .find(|v| v.port == port)
                .map(|v| v.id.clone())
                .ok_or(TestClusterError::NoMaster(slot))
        };
        let (from_id, to_id) = (id_of(from)?, id_of(to)?);
        let step = |port: u16, args: &[&str]| -> Result<redis::Value, TestClusterError> {
            self.node(port)
                .command(args)
                .map_err(|e| TestClusterError::Refused {
                    port,
                    why: format!("{args:?}: {e}"),
                })
        };
        let slot_arg = slot.to_string();
        step(
            to,
            &["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &from_id],
        )?;
        step(
            from,
            &["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &to_id],
        )?;
        let batch_arg = batch.max(1).to_string();
        let to_port = to.to_string();
        let mut moved = 0;
        // Bounded: a slot of a test never holds a million keys.
        for _ in 0..1_000_000 {
            let keys: Vec<String> = self
                .node(from)
                .command(&["CLUSTER", "GETKEYSINSLOT", &slot_arg, &batch_arg])
                .map_err(|e| TestClusterError::Refused {
                    port: from,
                    why: e.to_string(),
                })?;
            if keys.is_empty() {
                break;
            }
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            migrate.extend(keys.iter().map(String::as_str));
            step(from, &migrate)?;
            moved += keys.len();
            std::thread::sleep(pace);
        }
        // The new owner first, so that no node points clients at a node that refuses the slot.
        step(to, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id])?;
        step(from, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id])?;
        for port in self
            .masters()?
            .into_keys()
            .filter(|p| *p != from && *p != to)
        {
            step(port, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id])?;
        }
        Ok(moved)
    }

    /// Counts of errors each live node has answered, by error code (`INFO errorstats`), e.g.
    /// `CROSSSLOT`, `MOVED`, `NOSCRIPT`, summed over the nodes.
    ///
    /// # Errors
    /// A live node does not answer.
    pub fn error_counts(&self) -> redis::RedisResult<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        for port in self.live_ports() {
            let info: String = self.node(port).command(&["INFO", "errorstats"])?;
            for line in info.lines() {
                let Some((code, stats)) = line
                    .strip_prefix("errorstat_")
                    .and_then(|rest| rest.split_once(':'))
                else {
                    continue;
                };
                let count: u64 = stats
                    .strip_prefix("count=")
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                *counts.entry(code.to_owned()).or_default() += count;
            }
        }
        Ok(counts)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // A hung server would make each node's own shutdown wait for it to wake up.
        for hung in self
            .hung
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = kill(&hung.pid);
        }
    }
}

/// Removes the directories of cluster nodes whose test process has exited.
///
/// A shared cluster lives in a static, which is never dropped: its servers die with the process
/// (their watchdogs see to that) but their directories stay. Only this harness writes
/// `nodes-*.conf`, so only such directories are touched.
fn remove_stale_cluster_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("duka-redis-"))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        let alive = std::path::Path::new("/proc").join(pid).exists();
        let is_cluster_node = std::fs::read_dir(entry.path()).is_ok_and(|mut files| {
            files.any(|f| f.is_ok_and(|f| f.file_name().to_string_lossy().starts_with("nodes-")))
        });
        if !alive && is_cluster_node {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Sends `SIGKILL` to a server this cluster started.
fn kill(pid: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .args(["-KILL", pid])
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -KILL {pid} exited with {status}"))
    }
}

/// Parses one line of `CLUSTER NODES`:
/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>…`.
fn parse_node_line(line: &str) -> Option<NodeView> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return None;
    }
    let address = fields[1].split(['@', ',']).next()?;
    let port = address.rsplit_once(':')?.1.parse().ok()?;
    let flags: Vec<&str> = fields[2].split(',').collect();
    let slots = fields[8..]
        .iter()
        // `[slot->-node]` and `[slot-<-node]` are slots being migrated: not served.
        .filter(|f| !f.starts_with('['))
        .filter_map(|f| match f.split_once('-') {
            Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
            None => f.parse().ok().map(|s| (s, s)),
        })
        .collect();
    Some(NodeView {
        id: fields[0].to_owned(),
        port,
        is_master: flags.contains(&"master"),
        failing: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
        master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
        slots,
    })
}

/// A [`Store`] that records every call whose keys do not share one hash slot, then passes it on.
///
/// On a Redis Cluster a script over keys of two slots fails with `CROSSSLOT`, and an `MGET` is
/// split by the client into one request per slot (no longer one round trip, no longer one
/// consistent read). Wrapping a node's store with this proves neither happens.
pub struct SlotCheckedStore {
    inner: SharedStore,
    calls: AtomicU64,
    cross_slot: Mutex<Vec<String>>,
}

impl SlotCheckedStore {
    pub fn new(inner: SharedStore) -> Self {
        Self {
            inner,
            calls: AtomicU64::new(0),
            cross_slot: Mutex::new(Vec::new()),
        }
    }

    /// How many calls went through.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Every call whose keys spanned several slots, described with its keys and their slots.
    pub fn cross_slot_calls(&self) -> Vec<String> {
        self.cross_slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn check<'k>(&self, what: &str, keys: impl IntoIterator<Item = &'k str>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let keys: Vec<(&str, u16)> = keys.into_iter().map(|k| (k, cluster_slot(k))).collect();
        if keys.windows(2).any(|pair| pair[0].1 != pair[1].1) {
            self.cross_slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{what} {keys:?}"));
        }
    }
}

fn batch_keys(batch: &Batch) -> impl Iterator<Item = &str> {
    batch
        .guards
        .iter()
        .map(|g| g.key.as_str())
        .chain(batch.writes.iter().map(Write::key))
}

#[async_trait]
impl Store for SlotCheckedStore {
    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.check("get", keys.iter().map(String::as_str));
        self.inner.get(keys).await
    }

    async fn commit_reading(&self, batch: &Batch) -> Result<Guarded, StoreError> {
        self.check("commit", batch_keys(batch));
        self.inner.commit_reading(batch).await
    }

    async fn claim_due(
        &self,
        queue: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.check("claim_due", [queue]);
        self.inner.claim_due(queue, now_ms, lease_ms, limit).await
    }

    async fn members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        self.check("members", [key]);
        self.inner.members(key).await
    }

    async fn counters(&self, key: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.check("counters", [key]);
        self.inner.counters(key).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_are_parsed_with_their_slots_and_flags() {
        let master = parse_node_line(
            "cabe6dc0 127.0.0.1:23100@23200 myself,master - 0 1795653292000 1 connected 0-5460 6000",
        )
        .unwrap();
        assert_eq!(master.port, 23100);
        assert!(master.is_master && !master.failing);
        assert_eq!(master.slots, vec![(0, 5460), (6000, 6000)]);
        assert!(master.serves(5460) && master.serves(6000) && !master.serves(5461));

        let replica = parse_node_line(
            "1904e25b 127.0.0.1:23105@23205 slave 88cf3043 0 1795653292248 2 connected",
        )
        .unwrap();
        assert!(!replica.is_master);
        assert_eq!(replica.master_id.as_deref(), Some("88cf3043"));

        let failed = parse_node_line(
            "88cf3043 127.0.0.1:23101@23201,host master,fail - 0 1 2 disconnected [93->-abc]",
        )
        .unwrap();
        assert!(failed.failing);
        assert!(failed.slots.is_empty());
    }

    #[tokio::test]
    async fn redis_cluster_keeps_the_store_contract() {
        let cluster = tokio::task::spawn_blocking(TestCluster::shared)
            .await
            .unwrap();
        let store = crate::store::redis::RedisStore::connect_cluster(&cluster.seeds())
            .await
            .unwrap();
        assert_eq!(store.kind(), "redis-cluster");
        crate::store::contract_tests::all(&store).await;
    }

    #[tokio::test]
    async fn a_call_over_two_slots_is_recorded_and_one_slot_is_not() {
        let store =
            SlotCheckedStore::new(std::sync::Arc::new(crate::store::memory::MemoryStore::new()));
        store
            .get(&["p{s01}:a".to_owned(), "p{s01}:b".to_owned()])
            .await
            .unwrap();
        assert!(store.cross_slot_calls().is_empty());
        let mut batch = Batch::new();
        batch
            .guard("p{s01}:a", None)
            .set("p{s02}:b", b"x".to_vec(), None);
        let _ = store.commit(&batch).await.unwrap();
        assert_eq!(store.calls(), 2);
        let recorded = store.cross_slot_calls();
        assert_eq!(recorded.len(), 1);
        assert!(recorded[0].starts_with("commit"), "{recorded:?}");
    }

    #[test]
    fn a_cluster_forms_with_three_masters_and_fails_over_when_one_dies() {
        let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let masters = cluster.masters().unwrap();
        assert_eq!(masters.len(), MASTERS, "{masters:?}");
        let served: u32 = masters
            .values()
            .flatten()
            .map(|&(lo, hi)| u32::from(hi - lo) + 1)
            .sum();
        assert_eq!(served, 16384);
        assert!(cluster.url().starts_with("redis+cluster://127.0.0.1:"));
        assert_eq!(cluster.seeds().len(), NODES);

        cluster
            .replicate_up_to_now("{x}barrier", Duration::from_secs(5))
            .unwrap();
        let slot = cluster_slot("{x}barrier");
        let failover = cluster.kill_master_of(slot).unwrap();
        assert_ne!(failover.killed, failover.promoted);
        assert_eq!(cluster.master_of(slot).unwrap(), failover.promoted);
        assert_eq!(cluster.live_ports().len(), NODES - 1);
        let value: String = cluster
            .node(failover.promoted)
            .command(&["GET", "{x}barrier"])
            .unwrap();
        assert_eq!(
            value, "barrier",
            "a write the replica acknowledged survives"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_of_a_slot_that_moved_follows_the_redirection() {
        use crate::store::redis::RedisStore;
        use crate::store::Commit;

        let cluster = std::sync::Arc::new(
            tokio::task::spawn_blocking(TestCluster::start)
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let store = RedisStore::connect_cluster(&cluster.seeds()).await.unwrap();
        let keys = ["t{s05}:a".to_owned(), "t{s05}:b".to_owned()];
        let mut batch = Batch::new();
        batch
            .set(&keys[0], b"1".to_vec(), None)
            .set(&keys[1], b"2".to_vec(), None);
        assert_eq!(store.commit(&batch).await.unwrap(), Commit::Applied);
        let expected = vec![Some(b"1".to_vec()), Some(b"2".to_vec())];
        assert_eq!(store.get(&keys).await.unwrap(), expected);

        // The slot moves while this client still has the old owner in its slot map.
        let slot = cluster_slot(&keys[0]);
        let moved = {
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || {
                let from = cluster.master_of(slot)?;
                let to = *cluster.masters()?.keys().find(|p| **p != from).unwrap();
                cluster.move_slot(slot, to, 10, Duration::ZERO)
            })
            .await
            .unwrap()
            .unwrap()
        };
        assert_eq!(moved, 2);

        // The old owner answers MOVED: the read follows it rather than failing.
        assert_eq!(store.get(&keys).await.unwrap(), expected);
    }
}
