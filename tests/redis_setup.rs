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

/// `alice` (user 1) joins a presence room (the member set is in `redis`, under the
/// seed's key) and receives what is PUBLISHed into `redis` on a chat stream.
async fn presence_and_broadcasts_work(alice: &mut CableClient, redis: &RedisServer) {
    alice.subscribe(ROOM).await;
    alice.expect_json(&confirm(ROOM)).await;
    alice
        .expect_json(&presence_frame(ROOM, "user_joined", ALICE, &[1]))
        .await;
    assert_eq!(redis.smembers("room:late:members"), vec!["1"]);
    alice.subscribe(CHAT).await;
    alice.expect_json(&confirm(CHAT)).await;
    assert_eq!(redis.publish("refapp:chat_late", r#"{"text":"hi"}"#), 1);
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

    presence_and_broadcasts_work(&mut alice, &redis).await;
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
    presence_and_broadcasts_work(&mut alice, &redis).await;
}
