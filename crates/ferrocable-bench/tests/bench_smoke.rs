//! Smoke test of the load generator: each `ferrocable-bench` mode against a real
//! server with a handful of clients for a second or two. Checks that the one JSON
//! line parses and that nothing was lost; it asserts no speed (see BENCHMARKS.md).
//!
//! The generator runs as its own process, as in a benchmark. The server runs inside
//! this test process, on its own runtime, listening on a real loopback socket: Cargo
//! builds only this package's binary for these tests, so the `ferrocable` binary is
//! not at hand here, while its library (which the generator depends on) is.

use std::process::Command;
use std::sync::mpsc;

use ferrocable::config::Loaded;
use ferrocable::server::{App, Server};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The reference app's ChatChannel, declared (as `tests/support` declares it).
const CHANNELS_TOML: &str = r#"
[[channels]]
name = "ChatChannel"
stream = "chat_{room}"
[channels.actions]
speak = ["text"]
"#;

/// A ferrocable server on `127.0.0.1:0` (embedded mode unless `--redis-url` is among
/// its flags), stopped on drop.
struct TestServer {
    /// `127.0.0.1:PORT`
    addr: String,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Holds the channels file.
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Development auth (`?user_id=`, every id is a user), the channels declared in
    /// `channels_toml`, plus `extra` flags; the environment is never read.
    fn start_with_channels(channels_toml: &str, extra: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let channels = dir.path().join("channels.toml");
        std::fs::write(&channels, channels_toml).expect("write channels");
        let mut args: Vec<std::ffi::OsString> = ["ferrocable", "--port", "0"]
            .iter()
            .chain(&["--host", "127.0.0.1", "--dev-user-param", "user_id"])
            .map(Into::into)
            .collect();
        args.push("--channels-file".into());
        args.push(channels.into());
        args.extend(extra.iter().map(Into::into));
        let cfg = Loaded::from_args(args, &|_| None)
            .expect("flags parse")
            .config
            .check()
            .expect("valid configuration");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                // Embedded unless the flags name a Redis (the environment is never
                // read: `Loaded::from_args` gets no variables).
                let app = App::from_config(&cfg).await.expect("app");
                let server = Server::bind(&cfg, app).await.expect("bind");
                tx.send(server.local_addr().expect("bound address"))
                    .expect("the test waits for the address");
                server.run(token).await;
            });
        });
        let addr = rx.recv().expect("the server started").to_string();
        TestServer {
            addr,
            shutdown,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// `ws://ADDR/cable`
    fn url(&self, query: &str) -> String {
        assert!(query.is_empty(), "the generator adds its own query");
        format!("ws://{}/cable", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `redis-server` of this test's own on a free port (never the machine's), killed on
/// drop.
struct RedisServer {
    port: u16,
    child: std::process::Child,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        let server = RedisServer { port, child };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while server.cli(&["PING"]) != "PONG" {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not answer"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server and returns its trimmed output.
    fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server with development auth, any user id, and the declared ChatChannel.
fn server() -> TestServer {
    TestServer::start_with_channels(CHANNELS_TOML, &[])
}

/// Runs the generator and returns its JSON line (and whether it exited 0).
fn bench(args: &[&str]) -> (Value, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrocable-bench"))
        .args(args)
        .output()
        .expect("run ferrocable-bench");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 stdout");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one line on stdout, got {stdout:?}; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(lines[0]).expect("the line is JSON");
    (v, out.status.success())
}

fn url(server: &TestServer) -> String {
    server.url("")
}

#[test]
fn connect_holds_every_client() {
    let s = server();
    let (v, ok) = bench(&[
        "connect",
        "--url",
        &url(&s),
        "--n",
        "20",
        "--rate",
        "200",
        "--hold",
        "0.5",
        "--source-ips",
        "2",
        "--identifier",
        r#"{"channel":"PresenceChannel","room_id":"{room}"}"#,
        "--room-size",
        "5",
        "--max-seconds",
        "20",
    ]);
    assert!(ok, "{v}");
    assert_eq!(v["mode"], "connect");
    assert_eq!(v["established"], 20, "{v}");
    assert_eq!(v["held_alive_at_end"], 20, "{v}");
    assert_eq!(v["connect_to_confirm"]["count"], 20, "{v}");
    assert_eq!(v["failures"], serde_json::json!({}), "{v}");
}

#[test]
fn connect_with_signed_cookies_and_jwts() {
    let secret = "bench-smoke-secret-key-base";
    let s = TestServer::start_with_channels(
        CHANNELS_TOML,
        &[
            "--secret-key-base",
            secret,
            "--jwt-secret",
            "bench-jwt",
            "--identifiers",
            "signed_cookie:user_id,jwt",
        ],
    );
    let u = url(&s);
    for auth in [
        &["--auth", "signed-cookie", "--secret-key-base", secret][..],
        &["--auth", "jwt", "--jwt-secret", "bench-jwt"][..],
    ] {
        let mut args = vec!["connect", "--url", &u, "--n", "5", "--rate", "100"];
        args.extend_from_slice(&["--hold", "0.2", "--max-seconds", "20"]);
        args.extend_from_slice(auth);
        let (v, ok) = bench(&args);
        assert!(ok, "{v}");
        assert_eq!(v["established"], 5, "{auth:?}: {v}");
    }
    // A cookie signed with another secret is refused: the credentials are what the
    // server checks, not a formality.
    let (v, _) = bench(&[
        "connect",
        "--url",
        &url(&s),
        "--n",
        "2",
        "--rate",
        "100",
        "--hold",
        "0.1",
        "--auth",
        "signed-cookie",
        "--secret-key-base",
        "another-secret",
    ]);
    assert_eq!(v["established"], 0, "{v}");
    assert_eq!(v["failures"]["rejected"], 2, "{v}");
}

#[test]
fn broadcast_delivers_everything_once() {
    let s = server();
    let (v, ok) = bench(&[
        "broadcast",
        "--url",
        &url(&s),
        "--n",
        "20",
        "--m",
        "5",
        "--rate",
        "50",
        "--max-seconds",
        "20",
    ]);
    assert!(ok, "{v}");
    assert_eq!(v["subscribers_ready"], 20, "{v}");
    assert_eq!(v["expected"], 100, "{v}");
    assert_eq!(v["delivered"], 100, "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    assert_eq!(v["latency"]["count"], 100, "{v}");
    assert_eq!(v["time_to_all"]["count"], 5, "{v}");
    assert!(v["cpu"]["gen_cpu_us_per_delivery"].is_number(), "{v}");
}

#[test]
fn fanout_ceiling_runs_bounded_steps() {
    let s = server();
    let (v, ok) = bench(&[
        "fanout-ceiling",
        "--url",
        &url(&s),
        "--n",
        "10",
        "--start-rate",
        "20",
        "--step-seconds",
        "0.5",
        "--max-steps",
        "2",
        "--max-seconds",
        "20",
    ]);
    assert!(ok, "{v}");
    assert_eq!(v["stopped_by"], "max_steps", "{v}");
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{v}");
    for step in steps {
        assert_eq!(step["lost"], 0, "{v}");
        assert_eq!(step["duplicates"], 0, "{v}");
    }
}

#[test]
fn presence_churn_sees_each_join_and_leave_once() {
    let s = server();
    let (v, ok) = bench(&[
        "presence-churn",
        "--url",
        &url(&s),
        "--rooms",
        "2",
        "--clients",
        "12",
        "--observers-per-room",
        "2",
        "--duration",
        "1.5",
        "--hold-ms",
        "100",
        "--gap-ms",
        "50",
        "--max-seconds",
        "20",
    ]);
    assert!(ok, "{v}");
    assert!(v["joins"].as_u64().expect("joins") > 0, "{v}");
    assert_eq!(v["joins"], v["leaves"], "{v}");
    assert_eq!(v["observers_alive"], 4, "{v}");
    assert_eq!(v["barriers_missed"], 0, "{v}");
    assert_eq!(v["expected_events"], v["observed_events"], "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
}

#[test]
fn presence_room_admits_newcomers_into_a_seeded_room() {
    let redis = RedisServer::start();
    let mut sadd = vec!["SADD", "room:big:members"];
    let ids: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    sadd.extend(ids.iter().map(String::as_str));
    assert_eq!(redis.cli(&sadd), "30");
    let redis_url = redis.url();
    let s = TestServer::start_with_channels(
        "[[channels]]\nname = \"RoomWatchChannel\"\nstream = \"presence_room_{room_id}\"\n",
        &["--redis-url", &redis_url],
    );
    let (v, ok) = bench(&[
        "presence-room",
        "--url",
        &url(&s),
        "--members",
        "30",
        "--watchers",
        "5",
        "--joins",
        "2",
        "--max-seconds",
        "20",
    ]);
    assert!(ok, "{v}");
    assert_eq!(v["watching"], 5, "{v}");
    let joins = v["joins"].as_array().expect("joins");
    assert_eq!(joins.len(), 2, "{v}");
    for j in joins {
        assert_eq!(j["roster_frames"], 30, "{v}");
        assert!(
            j["subscribe_to_all_watchers_saw_join_ms"].is_number(),
            "{v}"
        );
        assert!(j["close_to_all_watchers_saw_leave_ms"].is_number(), "{v}");
    }
}

#[test]
fn refuses_non_loopback_targets() {
    let (v, ok) = bench(&["connect", "--url", "ws://192.0.2.1:8080/cable", "--n", "1"]);
    assert!(!ok);
    assert!(
        v["error"].as_str().expect("error").contains("loopback"),
        "{v}"
    );
}
