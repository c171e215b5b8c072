//! `duka bench --compare`: Duka against a one-round-trip baseline, in one run, alternating.
//!
//! Each round starts, for each server in turn, a fresh `redis-server` (see [`crate::testing`]),
//! the server as a child process of this same binary, and the load as another child
//! (`duka bench --url … --json`), so the three compete for the cores the way a gateway, a server
//! and Redis would. The servers:
//!
//! - **baseline**: the trivial server of [`super::trivial`] with one Redis round trip per hop,
//!   a pipelined `GET` + `SET` (`duka bench --trivial-server ADDR --trivial-redis URL`): no menu
//!   logic, no session;
//! - **duka**: `duka serve` with `REDIS_URL`, the whole hop.
//!
//! `--duka-env NAME=VALUE` sets a variable for `duka serve` only, to compare one shape of Duka
//! (`DUKA_RUNTIME=current_thread`, `DUKA_SESSION_CACHE=0`) against the same baseline.
//!
//! Each run prints hops/s, p99 and the server's CPU per hop (its `utime + stime` from
//! `/proc/<pid>/stat` over the run, divided by the hops); the end prints the medians and the
//! ratios duka / baseline. Rounds alternate so a noisy neighbour hurts both sides alike.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::BenchArgs;
use crate::testing::{free_port, TestRedis};

/// Which server a run loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Baseline,
    Duka,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Baseline => "baseline (1 RTT)",
            Server::Duka => "duka",
        }
    }
}

/// One run's figures.
#[derive(Clone, Copy, Debug)]
struct Measured {
    hops_per_s: f64,
    p99_ms: f64,
    errors: u64,
    /// Server CPU (user + system) per hop, in microseconds.
    cpu_us_per_hop: Option<f64>,
}

/// A child process killed when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the comparison; returns the exit code (non-zero when any hop failed).
///
/// # Errors
/// A Redis, a server or the load could not start.
pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find this duka binary")?;
    let mut rows: Vec<(Server, Measured)> = Vec::new();
    for round in 1..=args.rounds.max(1) {
        for server in [Server::Baseline, Server::Duka] {
            let measured = run_one(&exe, server, args)
                .with_context(|| format!("round {round}, {}", server.name()))?;
            println!(
                "round {round}  {:<17} {:>9.0} hops/s  p99 {:>6.2} ms  cpu {:>6} µs/hop  errors {}",
                server.name(),
                measured.hops_per_s,
                measured.p99_ms,
                measured
                    .cpu_us_per_hop
                    .map_or("?".to_owned(), |us| format!("{us:.1}")),
                measured.errors
            );
            rows.push((server, measured));
        }
    }
    let median = |server: Server, of: fn(&Measured) -> Option<f64>| {
        let mut values: Vec<f64> = rows
            .iter()
            .filter(|(s, _)| *s == server)
            .filter_map(|(_, m)| of(m))
            .collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    println!();
    println!("| server | hops/s | p99 | CPU per hop |");
    println!("| --- | --- | --- | --- |");
    for server in [Server::Baseline, Server::Duka] {
        println!(
            "| {} | {:.0} | {:.2} ms | {} |",
            server.name(),
            median(server, |m| Some(m.hops_per_s)).unwrap_or(0.0),
            median(server, |m| Some(m.p99_ms)).unwrap_or(0.0),
            median(server, |m| m.cpu_us_per_hop).map_or("?".to_owned(), |us| format!("{us:.1} µs"))
        );
    }
    let ratio = |of: fn(&Measured) -> Option<f64>| {
        Some(median(Server::Duka, of)? / median(Server::Baseline, of)?)
    };
    println!();
    println!(
        "duka / baseline (medians of {} rounds): hops/s {:.2}, p99 {:.2}",
        args.rounds.max(1),
        ratio(|m| Some(m.hops_per_s)).unwrap_or(f64::NAN),
        ratio(|m| Some(m.p99_ms)).unwrap_or(f64::NAN)
    );
    let errors: u64 = rows.iter().map(|(_, m)| m.errors).sum();
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_one(exe: &Path, server: Server, args: &BenchArgs) -> anyhow::Result<Measured> {
    let redis = TestRedis::start().map_err(|e| anyhow::anyhow!("{e}"))?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut command = Command::new(exe);
    match server {
        Server::Baseline => {
            command.args(["bench", "--trivial-server", &addr, "--trivial-redis"]);
            command.arg(redis.url()).arg("--menus").arg(&args.menus);
        }
        Server::Duka => {
            command
                .arg("serve")
                .env("REDIS_URL", redis.url())
                // A throwaway Redis without an AOF, as the baseline's: the comparison is of
                // the hop, so persistence is off on both sides.
                .env("DUKA_ALLOW_NO_PERSISTENCE", "1")
                .env("DUKA_LISTEN", &addr)
                .env("DUKA_MENUS", &args.menus)
                .env("RUST_LOG", "warn")
                .envs(args.duka_env.iter().map(|(name, value)| (name, value)));
        }
    }
    let child = Reaped(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the server")?,
    );
    let pid = child.0.id();
    let ready_by = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(&addr).is_err() {
        anyhow::ensure!(
            Instant::now() < ready_by,
            "the server did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu_before = cpu_ticks(pid);
    let mut load = Command::new(exe);
    load.args(["bench", "--json", "--quiet", "--url"])
        .arg(format!("http://{addr}"))
        .args(["--duration", &args.duration.to_string()])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--sessions", &args.sessions.to_string()])
        .arg("--menus")
        .arg(&args.menus);
    if args.no_pay {
        load.arg("--no-pay");
    }
    let output = load.stderr(Stdio::inherit()).output()?;
    let cpu_after = cpu_ticks(pid);
    drop(child);
    drop(redis);
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "the load's report: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    let hops = summary["hops"].as_u64().unwrap_or(0);
    let ticks_per_s = 100.0; // USER_HZ on Linux
    Ok(Measured {
        hops_per_s: summary["hops_per_s"].as_f64().unwrap_or(0.0),
        p99_ms: summary["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        errors: summary["error_total"].as_u64().unwrap_or(0),
        cpu_us_per_hop: match (cpu_before, cpu_after) {
            (Some(before), Some(after)) if hops > 0 => {
                Some((after - before) as f64 / ticks_per_s * 1e6 / hops as f64)
            }
            _ => None,
        },
    })
}

/// A process's `utime + stime` in clock ticks, from `/proc/<pid>/stat` (Linux only).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_ticks() {
        if cfg!(target_os = "linux") {
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_millis(30) {}
            assert!(cpu_ticks(std::process::id()).is_some_and(|t| t > 0));
        }
    }
}
