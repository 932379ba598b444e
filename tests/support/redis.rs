//! A real `redis-server` per test, on a free port (never the machine's 6379), without
//! persistence, killed on drop. It can be killed and restarted on the same port for
//! outage tests. A missing `redis-server` fails the test loudly.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::prelude::{Builder, Client, Config};

use super::EVENT_TIMEOUT;

/// A `redis-server` child process.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Extra `redis-server` arguments (kept for restarts).
    extra: Vec<String>,
}

/// A port that was free when asked.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts `redis-server` on `port` and returns once it accepts connections (it says so
/// on stdout) and answers PING; `None` when it could not start (port taken).
fn spawn(port: u16, dir: &std::path::Path, extra: &[String]) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)");
    if !ready_on_stdout(&mut child, "Ready to accept connections", port) {
        return None;
    }
    let pong = cli_output(port, &["PING"]);
    assert_eq!(pong, "PONG", "redis-server on port {port} answers PING");
    Some(child)
}

/// Reads the child's log (stdout) until a line contains `marker`, then keeps draining
/// it in a thread so it never blocks on a full pipe. Kills the child and returns false
/// when the log ends first (it did not start: port taken).
pub fn ready_on_stdout(child: &mut Child, marker: &str, port: u16) -> bool {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                let ready = line.contains(marker);
                seen.push_str(&line);
                seen.push('\n');
                if ready {
                    break;
                }
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("redis-server on port {port} did not start:\n{seen}");
                return false;
            }
        }
    }
    std::thread::spawn(move || for _ in lines.by_ref() {});
    true
}

fn cli_output(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

impl RedisServer {
    /// Starts a fresh server on a free port.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a fresh server on a free port with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn(port, dir.path(), &extra) {
                return RedisServer {
                    port,
                    child: Some(child),
                    dir,
                    extra,
                };
            }
        }
        panic!("could not start redis-server");
    }

    /// A server not started yet, on a port that was free when asked: point a node at
    /// it, then [`RedisServer::restart`] starts it (a Redis that comes up late).
    pub fn unstarted() -> RedisServer {
        Self::unstarted_with(&[])
    }

    /// [`RedisServer::unstarted`], to be started with extra `redis-server` arguments.
    pub fn unstarted_with(extra: &[&str]) -> RedisServer {
        RedisServer {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` with `args` and returns its (raw) output, trimmed at the end.
    pub fn cli(&self, args: &[&str]) -> String {
        cli_output(self.port, args)
    }

    /// `cli` split into lines (empty output: no lines).
    pub fn lines(&self, args: &[&str]) -> Vec<String> {
        let out = self.cli(args);
        if out.is_empty() {
            Vec::new()
        } else {
            out.lines().map(str::to_owned).collect()
        }
    }

    /// The members of a set, sorted.
    pub fn smembers(&self, key: &str) -> Vec<String> {
        let mut v = self.lines(&["SMEMBERS", key]);
        v.sort();
        v
    }

    /// `TTL key`.
    pub fn ttl(&self, key: &str) -> i64 {
        self.cli(&["TTL", key]).parse().expect("TTL is an integer")
    }

    /// Every key, sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut v = self.lines(&["KEYS", pattern]);
        v.sort();
        v
    }

    /// `PUBSUB NUMSUB channel`.
    pub fn numsub(&self, channel: &str) -> i64 {
        let lines = self.lines(&["PUBSUB", "NUMSUB", channel]);
        lines
            .get(1)
            .and_then(|n| n.parse().ok())
            .expect("NUMSUB answers channel and count")
    }

    /// `PUBLISH channel payload`, returning how many subscribers got it.
    pub fn publish(&self, channel: &str, payload: &str) -> i64 {
        self.cli(&["PUBLISH", channel, payload])
            .parse()
            .expect("PUBLISH answers a count")
    }

    /// Waits until `cond` holds, checking every 20 ms; panics after [`EVENT_TIMEOUT`].
    /// For Redis state that announces no event (subscriptions, keys written by a
    /// background sweep).
    pub async fn wait_until(&self, what: &str, mut cond: impl FnMut(&RedisServer) -> bool) {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `channel` has exactly `n` subscribers in Redis.
    pub async fn wait_numsub(&self, channel: &str, n: i64) {
        self.wait_until(&format!("PUBSUB NUMSUB {channel} = {n}"), |r| {
            r.numsub(channel) == n
        })
        .await;
    }

    /// Kills the server (SIGKILL): an outage.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port, empty (no persistence).
    pub fn restart(&mut self) {
        self.kill();
        let child = spawn(self.port, self.dir.path(), &self.extra)
            .expect("redis-server restarts on its port");
        self.child = Some(child);
    }

    /// A connected fred client, for subscribing as another Rails process would.
    pub async fn client(&self) -> Client {
        let client = Builder::from_config(Config::from_url(&self.url()).expect("url"))
            .with_performance_config(|p| p.broadcast_channel_capacity = 1024)
            .build()
            .expect("client");
        client.init().await.expect("connects");
        client
    }

    /// A client subscribed to `channels`, and its message receiver.
    pub async fn subscriber(
        &self,
        channels: &[&str],
    ) -> (
        Client,
        tokio::sync::broadcast::Receiver<fred::types::Message>,
    ) {
        let client = self.client().await;
        let rx = client.message_rx();
        let names: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        client.subscribe(names).await.expect("SUBSCRIBE");
        (client, rx)
    }
}

/// The next pub/sub message as (channel, payload text).
pub async fn next_message(
    rx: &mut tokio::sync::broadcast::Receiver<fred::types::Message>,
) -> (String, String) {
    let m = tokio::time::timeout(EVENT_TIMEOUT, rx.recv())
        .await
        .expect("a pub/sub message in time")
        .expect("subscriber open");
    let payload = m
        .value
        .as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    (m.channel.to_string(), payload)
}

/// A Redis Sentinel (`redis-server <conf> --sentinel`) on a free port, monitoring one
/// [`RedisServer`] as `mymaster` (quorum 1), killed on drop.
pub struct Sentinel {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    /// The master name the sentinel monitors.
    pub const MASTER: &'static str = "mymaster";

    /// Starts a sentinel for `master`; returns once it monitors it.
    pub fn start(master: &RedisServer) -> Sentinel {
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {} 127.0.0.1 {} 1\n",
                    dir.path().display(),
                    Self::MASTER,
                    master.port()
                ),
            )
            .expect("write sentinel.conf");
            let mut child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (it runs Sentinel too)");
            if !ready_on_stdout(&mut child, "+monitor master", port) {
                continue;
            }
            return Sentinel {
                port,
                child,
                _dir: dir,
            };
        }
        panic!("could not start a sentinel");
    }

    /// `redis-sentinel://127.0.0.1:PORT?sentinelServiceName=mymaster`
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}?sentinelServiceName={}",
            self.port,
            Self::MASTER
        )
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The reference app's users as presence payloads name them.
pub const ALICE: &str =
    r#"{"id":1,"name":"Alice","avatar_url":"https://example.test/avatars/alice.png"}"#;
/// Bob.
pub const BOB: &str =
    r#"{"id":2,"name":"Bob","avatar_url":"https://example.test/avatars/bob.png"}"#;
/// Carol.
pub const CAROL: &str =
    r#"{"id":3,"name":"Carol","avatar_url":"https://example.test/avatars/carol.png"}"#;

/// The channel prefix the reference app uses (`refapp`).
pub const PREFIX: &str = "refapp";

/// Starts a ferrocable node on `redis` with the reference's channel prefix, plus `extra`.
pub fn start_node(redis: &RedisServer, extra: &[&str]) -> super::TestServer {
    let url = redis.url();
    let mut args = vec!["--redis-url", url.as_str(), "--channel-prefix", PREFIX];
    args.extend_from_slice(extra);
    super::TestServer::start(&args)
}

/// A presence event payload as the seed's `broadcast_presence_change` publishes it.
pub fn presence_payload(action: &str, user: &str, ids: &[i64]) -> String {
    let ids_text: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    format!(
        r#"{{"action":"{action}","user":{user},"member_ids":[{}],"member_count":{}}}"#,
        ids_text.join(","),
        ids.len()
    )
}

/// The frame a subscription `identifier` receives for `message` (encoded JSON).
pub fn message_frame(identifier: &str, message: &str) -> String {
    format!(
        r#"{{"identifier":{},"message":{message}}}"#,
        serde_json::to_string(identifier).expect("string")
    )
}

/// The frame of a presence event.
pub fn presence_frame(identifier: &str, action: &str, user: &str, ids: &[i64]) -> String {
    message_frame(identifier, &presence_payload(action, user, ids))
}

/// A roster frame: the `user_joined` a newcomer gets for a member already present,
/// with the room's count and no `member_ids` (see `channels::presence`).
pub fn roster_frame(identifier: &str, user: &str, member_count: usize) -> String {
    message_frame(
        identifier,
        &format!(r#"{{"action":"user_joined","user":{user},"member_count":{member_count}}}"#),
    )
}
