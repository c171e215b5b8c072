//! The two processes the soak kills: a `redis-server` with an append-only file, and `duka serve`.
//!
//! Each is started on a fixed port and in a fixed folder, so that a restart after `kill -9`
//! comes back where the other side expects it: Redis reads its AOF back, Duka reconnects.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A `redis-server` persisting every write to `appendonly.aof`, fsynced every second.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub fn start(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let mut redis = Self {
            port,
            dir: dir.to_owned(),
            child: None,
        };
        redis.spawn()?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("could not start redis-server (is it on PATH?)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = redis::Client::open(self.url())?;
        loop {
            let pong = client
                .get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("redis-server on port {} did not answer PING", self.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`, then a restart that loads the AOF.
    pub fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `duka serve`, this same binary, with the environment the soak chose.
pub struct Duka {
    pub port: u16,
    env: Vec<(String, String)>,
    dir: PathBuf,
    /// A copy of this binary taken at the start, so a rebuild during the run cannot change
    /// (or remove) the `duka serve` the soak restarts.
    binary: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Duka {
    pub async fn start(dir: &Path, port: u16, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let binary = dir.join("duka");
        std::fs::copy(std::env::current_exe()?, &binary)
            .context("could not copy this binary into the soak folder")?;
        let mut duka = Self {
            port,
            env,
            dir: dir.to_owned(),
            binary,
            child: None,
            starts: 0,
        };
        duka.spawn().await?;
        Ok(duka)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("duka-{}.log", self.starts)))?;
        let child = Command::new(&self.binary)
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DUKA_LISTEN", format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("could not start duka serve")?;
        self.child = Some(child);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http.get(format!("{}/readyz", self.url())).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!(
                    "duka serve exited ({status}) before it was ready: see {}",
                    self.dir.join(format!("duka-{}.log", self.starts)).display()
                );
            }
            if Instant::now() > deadline {
                anyhow::bail!("duka serve was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `duka <args>` (an operator command) with the servers' environment; its exit
    /// status and standard output.
    pub async fn command(&self, args: Vec<String>) -> anyhow::Result<(bool, String)> {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        let output = tokio::task::spawn_blocking(move || command.output())
            .await?
            .context("could not run an operator command")?;
        Ok((
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ))
    }

    /// `kill -9`, a moment down, then a restart on the same port.
    pub async fn kill_and_restart(&mut self, down: Duration) -> anyhow::Result<()> {
        self.kill();
        tokio::time::sleep(down).await;
        self.spawn().await
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Duka {
    fn drop(&mut self) {
        self.kill();
    }
}
