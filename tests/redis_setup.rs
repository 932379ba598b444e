//! How a node meets its Redis: a Redis that is down at startup (degraded start, then
//! connected when it comes up; `--redis-required` fails fast instead), Sentinel
//! (`redis-sentinel://`, a real `redis-server --sentinel`), and Redis Cluster, refused
//! with the reason (by URL, and when the server turns out to run in cluster mode).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::redis::{message_frame, presence_frame, start_node, RedisServer, Sentinel, ALICE};
use support::{confirm, reject, CableClient, TestServer, EVENT_TIMEOUT};

const ROOM: &str = r#"{"channel":"PresenceChannel","room_id":"late"}"#;
const CHAT: &str = r#"{"channel":"ChatChannel","room":"late"}"#;

/// How soon after Redis comes up a degraded node must be fully usable: the reconnect
/// backoff tops out at 1 s, then the re-SUBSCRIBE and the node's registration follow.
const UP_WITHIN: Duration = Duration::from_secs(5);

/// Waits until `/health` contains `want` (a state with no event to wait on); returns
/// how long it took.
async fn wait_health(server: &TestServer, want: &str) -> Duration {
    let start = Instant::now();
    loop {
        let h = server.http_get("/health").await;
        if h.contains(want) {
            assert!(h.starts_with("HTTP/1.1 200"), "{h}");
            return start.elapsed();
        }
        assert!(
            start.elapsed() < EVENT_TIMEOUT,
            "health never showed {want}: {h}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs ferrocable with `args` expecting it to refuse to start; returns its stderr.
/// Fails if it starts listening or takes longer than `within`.
fn refused(args: &[&str], within: Duration) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.json");
    std::fs::write(&users, support::USERS_JSON).expect("users");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrocable"))
        .args(["--port", "0", "--dev-user-param", "user_id", "--users-file"])
        .arg(&users)
        .args(args)
        .env("RUST_LOG", "ferrocable=info")
        .env_remove("REDIS_URL")
        .env_remove("FERROCABLE_REDIS_REQUIRED")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferrocable");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > within {
            let _ = child.kill();
            panic!("ferrocable {args:?} still running after {within:?}");
        }
        // Waiting for a child's exit has no event to await here.
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!status.success(), "ferrocable {args:?} exited 0: {stderr}");
    assert!(
        !stdout.contains("listening"),
        "ferrocable {args:?} listened: {stdout}"
    );
    stderr
}

/// `alice` (user 1) joins a presence room (the member set is in Redis, under the
/// seed's key) and receives what is PUBLISHed into Redis on a chat stream; `cli` runs
/// `redis-cli` against that Redis.
async fn presence_and_broadcasts_work(alice: &mut CableClient, cli: impl Fn(&[&str]) -> String) {
    alice.subscribe(ROOM).await;
    alice.expect_json(&confirm(ROOM)).await;
    alice
        .expect_json(&presence_frame(ROOM, "user_joined", ALICE, &[1]))
        .await;
    assert_eq!(cli(&["SMEMBERS", "room:late:members"]), "1");
    alice.subscribe(CHAT).await;
    alice.expect_json(&confirm(CHAT)).await;
    assert_eq!(
        cli(&["PUBLISH", "refapp:chat_late", r#"{"text":"hi"}"#]),
        "1"
    );
    alice
        .expect_json(&message_frame(CHAT, r#"{"text":"hi"}"#))
        .await;
}

#[tokio::test]
async fn a_node_started_before_redis_serves_degraded_then_connects() {
    let mut redis = RedisServer::unstarted();
    let node = start_node(&redis, &[]);
    wait_health(
        &node,
        r#""status":"degraded","mode":"redis","redis":"down""#,
    )
    .await;

    // Clients connect and are served; what needs Redis is refused, as in an outage.
    let mut alice = CableClient::welcomed(&node, 1).await;
    alice.subscribe(ROOM).await;
    alice.expect_json(&reject(ROOM)).await;
    assert!(
        node.log().contains("redis unreachable at startup"),
        "the degraded start is logged"
    );

    redis.restart();
    let took = wait_health(&node, r#""status":"ok","mode":"redis","redis":"up""#).await;
    assert!(took < UP_WITHIN, "redis up after {took:?}");

    presence_and_broadcasts_work(&mut alice, |a| redis.cli(a)).await;
    // The node registered itself once Redis answered (its first sweep does it).
    redis
        .wait_until("the node's alive key", |r| {
            !r.keys("ferrocable:node:*:alive").is_empty()
        })
        .await;
}

#[test]
fn redis_required_refuses_to_start_without_redis() {
    let redis = RedisServer::unstarted();
    let url = redis.url();
    let err = refused(
        &["--redis-url", &url, "--redis-required"],
        Duration::from_secs(20),
    );
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("--redis-required"), "{err}");
}

#[test]
fn redis_cluster_urls_are_refused_with_the_reason() {
    for url in [
        "redis-cluster://127.0.0.1:7000",
        "rediss-cluster://127.0.0.1:7000",
    ] {
        let err = refused(&["--redis-url", url], Duration::from_secs(10));
        assert!(err.contains("Redis Cluster is not supported"), "{err}");
        assert!(err.contains("Lua scripts"), "{err}");
    }
}

#[test]
fn a_cluster_mode_server_is_refused_with_the_reason() {
    let redis = RedisServer::start_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    assert!(redis
        .cli(&["INFO", "cluster"])
        .contains("cluster_enabled:1"));
    let url = redis.url();
    let err = refused(&["--redis-url", &url], Duration::from_secs(10));
    assert!(err.contains("Redis Cluster is not supported"), "{err}");
    assert!(err.contains("cluster mode"), "{err}");
}

#[tokio::test]
async fn a_cluster_node_that_comes_up_after_a_degraded_start_is_reported() {
    let mut redis = RedisServer::unstarted_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    let node = start_node(&redis, &[]);
    wait_health(&node, r#""redis":"down""#).await;
    redis.restart();
    // The node says so in its log (it is already serving; it cannot refuse to start).
    let start = Instant::now();
    while !node.log().contains("Redis Cluster is not supported") {
        assert!(
            start.elapsed() < EVENT_TIMEOUT,
            "no cluster error in the log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn unknown_schemes_and_bad_sentinel_urls_are_refused() {
    let err = refused(
        &["--redis-url", "http://127.0.0.1:6379"],
        Duration::from_secs(10),
    );
    assert!(err.contains("unsupported Redis URL scheme"), "{err}");
    // fred needs the master's name.
    let err = refused(
        &["--redis-url", "redis-sentinel://127.0.0.1:26379"],
        Duration::from_secs(10),
    );
    assert!(err.contains("invalid Redis URL"), "{err}");
}

#[tokio::test]
async fn a_node_finds_its_redis_through_sentinel() {
    let redis = RedisServer::start();
    let sentinel = Sentinel::start(&redis);
    let url = sentinel.url();
    let node = TestServer::start(&["--redis-url", &url, "--channel-prefix", "refapp"]);
    wait_health(&node, r#""status":"ok","mode":"redis","redis":"up""#).await;

    // The keys are on the master the sentinel named, and so are the channels.
    let mut alice = CableClient::welcomed(&node, 1).await;
    presence_and_broadcasts_work(&mut alice, |a| redis.cli(a)).await;
}

/// A `redis-server` serving TLS only, with a certificate for `localhost` from a CA of
/// its own (made with `openssl`), killed on drop.
struct TlsRedis {
    port: u16,
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start() -> TlsRedis {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl must be installed");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ferrocable-test-ca",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            dir.path().join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("san");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        for _ in 0..5 {
            let port = support::redis::free_port();
            let mut child = Command::new("redis-server")
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--tls-auth-clients",
                    "no",
                ])
                .args([
                    "--tls-cert-file",
                    "server.pem",
                    "--tls-key-file",
                    "server.key",
                ])
                .args(["--tls-ca-cert-file", "ca.pem"])
                .current_dir(dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server");
            if support::redis::ready_on_stdout(&mut child, "Ready to accept connections", port) {
                return TlsRedis { port, child, dir };
            }
        }
        panic!("could not start a TLS redis-server");
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(self.ca())
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_node_reaches_redis_over_tls() {
    let redis = TlsRedis::start();
    assert_eq!(redis.cli(&["PING"]), "PONG");
    // The test's CA, as an operator with a private CA would point at it (rustls reads
    // the system roots, or this file instead).
    std::env::set_var("SSL_CERT_FILE", redis.ca());
    let url = format!("rediss://localhost:{}", redis.port);
    let node = TestServer::start(&["--redis-url", &url, "--channel-prefix", "refapp"]);
    wait_health(&node, r#""status":"ok","mode":"redis","redis":"up""#).await;
    let mut alice = CableClient::welcomed(&node, 1).await;
    presence_and_broadcasts_work(&mut alice, |a| redis.cli(a)).await;
}
