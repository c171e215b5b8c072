//! Counting the commands clients send to a test Redis: its round trips.
//!
//! `INFO commandstats` counts every command Redis runs, including those a Lua script runs
//! inside Redis under their own names: the commit script's `MGET` of its guarded keys looks just
//! like a client's `MGET`. `MONITOR` tells them apart: it names the client of every command, and
//! a script's commands come from `lua`. A [`Monitor`] watches from [`TestRedis::monitor`] until
//! [`Monitor::client_commands`], which sends a marker `ECHO` on a connection of its own and reads
//! the feed up to it. Redis runs commands one at a time, so everything sent before the call
//! appears before the marker.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::TestRedis;

/// How long a test waits for the monitor feed before it fails.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A `MONITOR` connection to a [`TestRedis`].
pub struct Monitor {
    feed: BufReader<TcpStream>,
    port: u16,
}

impl TestRedis {
    /// Starts watching the commands sent to this server.
    ///
    /// # Errors
    /// The server does not answer.
    pub fn monitor(&self) -> std::io::Result<Monitor> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.write_all(b"MONITOR\r\n")?;
        let mut feed = BufReader::new(stream);
        let mut ok = String::new();
        feed.read_line(&mut ok)?;
        if ok.trim_end() != "+OK" {
            return Err(std::io::Error::other(format!("MONITOR answered {ok:?}")));
        }
        Ok(Monitor {
            feed,
            port: self.port,
        })
    }
}

impl Monitor {
    /// The commands clients sent since [`TestRedis::monitor`], by lowercase name (`mget`,
    /// `evalsha`, ...): not those a script ran, nor this monitor's own marker.
    ///
    /// # Errors
    /// The server stopped answering, or its feed never showed the marker.
    pub fn client_commands(mut self) -> std::io::Result<HashMap<String, u64>> {
        let marker = format!("duka-monitor-{:016x}", rand::random::<u64>());
        let mut other = TcpStream::connect(("127.0.0.1", self.port))?;
        other.set_read_timeout(Some(READ_TIMEOUT))?;
        other.write_all(format!("ECHO {marker}\r\n").as_bytes())?;
        let mut reply = [0u8; 64];
        let _ = other.read(&mut reply)?;

        let mut counts = HashMap::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            if self.feed.read_until(b'\n', &mut line)? == 0 {
                return Err(std::io::Error::other("the monitor feed closed"));
            }
            let line = String::from_utf8_lossy(&line);
            if line.contains(&marker) {
                return Ok(counts);
            }
            if let Some(name) = client_command(&line) {
                *counts.entry(name).or_insert(0) += 1;
            }
        }
    }

    /// The store's round trips since [`TestRedis::monitor`].
    ///
    /// # Errors
    /// As [`Monitor::client_commands`].
    pub fn round_trips(self) -> std::io::Result<RoundTrips> {
        Ok(RoundTrips::of(&self.client_commands()?))
    }
}

/// The store's round trips among the commands clients sent: `MGET` reads, `EVALSHA` commits
/// (`EVAL` when Redis had lost the script).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundTrips {
    pub reads: u64,
    pub commits: u64,
}

impl RoundTrips {
    /// The round trips among `sent` ([`Monitor::client_commands`]).
    pub fn of(sent: &HashMap<String, u64>) -> Self {
        let n = |name: &str| sent.get(name).copied().unwrap_or(0);
        Self {
            reads: n("mget"),
            commits: n("evalsha") + n("eval"),
        }
    }

    pub fn total(self) -> u64 {
        self.reads + self.commits
    }
}

/// The lowercase command name of one feed line (`+1700000000.000001 [0 127.0.0.1:5000] "MGET"
/// "k"`), or `None` for a command a script ran (`[0 lua]`) or a line that is not a command.
fn client_command(line: &str) -> Option<String> {
    let (client, rest) = line.split_once('[')?.1.split_once("] ")?;
    if client.ends_with(" lua") {
        return None;
    }
    let name = rest.strip_prefix('"')?.split('"').next()?;
    Some(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_line_names_its_command_and_a_scripts_lines_are_not_the_clients() {
        assert_eq!(
            client_command("+1796408814.434831 [0 127.0.0.1:59720] \"EVALSHA\" \"ab\" \"1\""),
            Some("evalsha".to_owned())
        );
        assert_eq!(
            client_command("+1796408814.434886 [0 lua] \"MGET\" \"a\""),
            None
        );
        assert_eq!(client_command("+OK"), None);
    }

    #[test]
    fn the_monitor_counts_what_clients_send_and_not_what_scripts_run() {
        let redis = TestRedis::start().unwrap();
        let key = "monitor".to_owned();
        let monitor = redis.monitor().unwrap();
        let _: () = redis.command(&["SET", &key, "v"]).unwrap();
        let _: Vec<Option<String>> = redis
            .command(&["EVAL", "return redis.call('MGET', KEYS[1])", "1", &key])
            .unwrap();
        let counts = monitor.client_commands().unwrap();
        assert_eq!(counts.get("set"), Some(&1));
        assert_eq!(counts.get("eval"), Some(&1));
        assert_eq!(counts.get("mget"), None, "{counts:?}");
    }
}
