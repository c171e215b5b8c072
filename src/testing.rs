//! Throwaway Redis servers for tests, the benchmark and cluster experiments.
//!
//! Tests talk to a real `redis-server` that they start themselves on a free port, never to one
//! that happens to be running. [`TestRedis::shared`] starts one per test binary; every test then
//! uses its own random key prefix, so tests run in parallel without seeing each other's keys.
//!
//! A test binary can exit without running destructors (statics are never dropped), so each
//! server runs under a tiny shell watchdog that stops it as soon as the process that started it
//! is gone: no `redis-server` outlives its test run.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod monitor;

pub use monitor::{Monitor, RoundTrips};

/// Why a throwaway Redis could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TestRedisError {
    #[error(
        "redis-server is not installed: install it (`apt-get install -y redis-server`) or run `.ci/run`, which does"
    )]
    NotInstalled,
    #[error("could not start redis-server: {0}")]
    Spawn(String),
}

/// A `redis-server` owned by this process.
pub struct TestRedis {
    watchdog: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl TestRedis {
    /// Starts a server on a free port, with no persistence. Extra `redis-server` arguments
    /// (e.g. `--cluster-enabled yes`) may be given.
    ///
    /// # Errors
    /// `redis-server` is missing or does not answer within five seconds.
    pub fn start_with(extra_args: &[&str]) -> Result<Self, TestRedisError> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            return Err(TestRedisError::NotInstalled);
        }
        // A port can be taken between our probe and redis binding it; try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port().map_err(|e| TestRedisError::Spawn(e.to_string()))?;
            let dir =
                std::env::temp_dir().join(format!("duka-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| TestRedisError::Spawn(e.to_string()))?;
            let mut args = vec![
                "--port".to_owned(),
                port.to_string(),
                "--bind".to_owned(),
                "127.0.0.1".to_owned(),
                "--save".to_owned(),
                "''".to_owned(),
                "--appendonly".to_owned(),
                "no".to_owned(),
                "--dir".to_owned(),
                dir.display().to_string(),
                "--loglevel".to_owned(),
                "warning".to_owned(),
            ];
            args.extend(extra_args.iter().map(|a| (*a).to_owned()));
            let script = format!(
                "redis-server {} & r=$!; trap 'kill $r 2>/dev/null' EXIT TERM INT; \
                 while kill -0 {parent} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.3; done",
                args.join(" "),
                parent = std::process::id()
            );
            let watchdog = Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| TestRedisError::Spawn(e.to_string()))?;
            let mut server = Self {
                watchdog,
                port,
                dir,
            };
            if server.wait_ready(Duration::from_secs(5)) {
                return Ok(server);
            }
            last_error = format!("no answer on port {port}");
            server.stop();
        }
        Err(TestRedisError::Spawn(last_error))
    }

    /// Starts a plain single server.
    ///
    /// # Errors
    /// See [`TestRedis::start_with`].
    pub fn start() -> Result<Self, TestRedisError> {
        Self::start_with(&[])
    }

    /// One server shared by every test of this binary; each test uses its own key prefix.
    ///
    /// # Panics
    /// When no server can be started: the tests cannot run, and the message says why.
    pub fn shared() -> &'static TestRedis {
        static SHARED: OnceLock<TestRedis> = OnceLock::new();
        SHARED.get_or_init(|| Self::start().unwrap_or_else(|e| panic!("{e}")))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs a command over a plain connection and returns its reply (for test assertions).
    ///
    /// # Errors
    /// The server does not answer.
    pub fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut connection)
    }

    /// How many times each command ran (`INFO commandstats`), by lowercase name.
    ///
    /// # Errors
    /// The server does not answer.
    pub fn command_counts(&self) -> redis::RedisResult<std::collections::HashMap<String, u64>> {
        let info: String = self.command(&["INFO", "commandstats"])?;
        Ok(info
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect())
    }

    fn wait_ready(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.command::<String>(&["PING"]).is_ok_and(|p| p == "PONG") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    /// Stops the server (and its watchdog).
    pub fn stop(&mut self) {
        let _ = self.command::<()>(&["SHUTDOWN", "NOSAVE"]);
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A random key prefix, so tests sharing a server never see each other's keys.
pub fn random_prefix() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("t{n:016x}")
}

/// Copies a folder and everything below it (a menus folder a test edits, say).
///
/// # Errors
/// Reading `from` or writing below `to` fails.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::RedisStore;

    #[tokio::test]
    async fn redis_keeps_the_store_contract() {
        let redis = TestRedis::shared();
        let store = RedisStore::connect(&redis.url()).await.unwrap();
        crate::store::contract_tests::all(&store).await;
    }

    /// A Redis that lost its scripts (restarted, failed over, `SCRIPT FLUSH`) answers the
    /// commit's `EVALSHA` with `NOSCRIPT`: the store loads the script and the commit applies.
    #[tokio::test]
    async fn a_commit_reloads_its_script_after_redis_forgets_it() {
        use crate::store::{Batch, Guarded, Store};
        let redis = TestRedis::start().unwrap();
        let store = RedisStore::connect(&redis.url()).await.unwrap();
        let _: String = redis.command(&["SCRIPT", "FLUSH"]).unwrap();
        let loads = || redis.command_counts().unwrap().get("script|load").copied();
        let loaded_before = loads().unwrap_or(0);
        let key = format!("{}{{s01}}:noscript", random_prefix());
        let mut batch = Batch::new();
        batch.guard(&key, None).set(&key, b"v".to_vec(), None);
        assert!(matches!(
            store.commit_reading(&batch).await.unwrap(),
            Guarded::Applied
        ));
        let stored = store.get(std::slice::from_ref(&key)).await.unwrap();
        assert_eq!(stored, vec![Some(b"v".to_vec())]);
        assert_eq!(
            loads(),
            Some(loaded_before + 1),
            "one SCRIPT LOAD after the flush"
        );
    }
}
pub mod cluster;
