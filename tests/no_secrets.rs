//! No credential ever reaches the logs, at any level: a server at `RUST_LOG=trace`
//! (ours and every library's) with a secret key base, a JWT secret, a database URL
//! and a Redis URL with passwords, serving a signed cookie, JWTs in the query string,
//! an `Authorization` header and a subprotocol, forged ones too. Also: authentication
//! slower than `--auth-timeout` (a slow profile query) is cut off.

#[path = "support/databases.rs"]
mod databases;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use databases::TestDatabase;
use support::redis::RedisServer;
use support::{CableClient, Seen};

const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbccccccccccccccccccccccccccccccccdddddddddddddddddddddddddddddddd";
const JWT_SECRET: &str = "refapp-jwt-secret";
const SIGNED_1: &str = "eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik1RPT0iLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--acadec505568632a9396988991be9679b1a80001";
const JWT_1: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.oR4WNDTKjoCiYjWk7luSh_c4d1moIdq5mm3X4eDGGDc";
const FORGED: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.Zm9yZ2VkLXNpZ25hdHVyZS1mb3ItdGhlLWxvZ3MtdGVzdA";
const DB_PASSWORD: &str = "Db-Pa55word-xyzzy";
const REDIS_PASSWORD: &str = "Redis-Pa55word-plugh";

struct Proc {
    child: Child,
    addr: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts ferrocable with `args` and `env`, stdout and stderr both captured into one
/// log file (after the listening line, which is read from the pipe).
fn start(args: &[String], env: &[(&str, &str)]) -> Proc {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("all.log");
    let file = std::fs::File::create(&log).expect("log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrocable"));
    cmd.args(args)
        .env("RUST_LOG", "trace")
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(file));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read stdout");
    let Some(rest) = line.trim().strip_prefix("ferrocable listening on http://") else {
        let _ = child.kill();
        panic!(
            "not started: {line:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    let addr = rest.split('/').next().expect("addr").to_owned();
    Proc {
        child,
        addr,
        log,
        _dir: dir,
    }
}

async fn first_frame(addr: &str, query: &str, headers: &[(&str, &str)]) -> String {
    let url = format!("ws://{addr}/cable{query}");
    let origin = format!("http://{addr}");
    let mut all = vec![("Origin", origin.as_str())];
    all.extend_from_slice(headers);
    if !all.iter().any(|(k, _)| *k == "Sec-WebSocket-Protocol") {
        all.push(("Sec-WebSocket-Protocol", "actioncable-v1-json"));
    }
    let mut c = CableClient::connect_with(&url, &all)
        .await
        .expect("upgrade");
    let first = match c.next().await {
        Seen::Text(t) => t,
        other => format!("{other:?}"),
    };
    if first.contains("welcome") {
        let id = r#"{"channel":"PresenceChannel","room_id":"s"}"#;
        c.subscribe(id).await;
        c.drain().await;
    }
    first
}

const WELCOME: &str = r#"{"type":"welcome"}"#;

#[tokio::test]
async fn no_secret_reaches_the_logs_at_trace_level() {
    let db = TestDatabase::postgres().await;
    db.seed_reference_users("BIGINT").await;
    // Trust auth ignores the password, so it only travels in the URL, as in production.
    let db_url = db
        .url()
        .replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1);
    let redis = RedisServer::start();
    redis.cli(&["CONFIG", "SET", "requirepass", REDIS_PASSWORD]);
    let redis_url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}", redis.port());
    let args: Vec<String> = [
        "--port",
        "0",
        "--identifiers",
        "signed_cookie:user_id,jwt",
        "--jwt-secret",
        JWT_SECRET,
        "--database-url",
        &db_url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = start(
        &args,
        &[("SECRET_KEY_BASE", SECRET), ("REDIS_URL", &redis_url)],
    );
    let addr = server.addr.clone();
    let cookie = format!("user_id={SIGNED_1}");
    assert_eq!(
        first_frame(&addr, "", &[("Cookie", &cookie)]).await,
        WELCOME
    );
    assert_eq!(
        first_frame(&addr, &format!("?token={JWT_1}"), &[]).await,
        WELCOME
    );
    let bearer = format!("Bearer {JWT_1}");
    assert_eq!(
        first_frame(&addr, "", &[("Authorization", &bearer)]).await,
        WELCOME
    );
    let protocols = format!("actioncable-v1-json, {JWT_1}");
    assert_eq!(
        first_frame(&addr, "", &[("Sec-WebSocket-Protocol", &protocols)]).await,
        WELCOME
    );
    // Refusals log their reason: still no credential.
    for (query, cookie) in [
        (format!("?token={FORGED}"), None),
        (
            String::new(),
            Some(format!("user_id={}", SIGNED_1.replace("acadec", "00adec"))),
        ),
    ] {
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
        let got = first_frame(&addr, &query, &headers).await;
        assert!(got.contains("unauthorized"), "{got}");
    }
    let log = std::fs::read_to_string(&server.log).expect("log");
    assert!(log.contains("TRACE"), "trace logging is on");
    assert!(log.contains("connection authenticated"), "{log}");
    for (what, secret) in [
        ("secret_key_base", SECRET),
        ("secret_key_base prefix", &SECRET[..40]),
        ("JWT secret", JWT_SECRET),
        ("cookie MAC", "acadec505568632a9396988991be9679b1a80001"),
        ("cookie data", &SIGNED_1[..40]),
        ("JWT", JWT_1),
        (
            "JWT signature",
            "oR4WNDTKjoCiYjWk7luSh_c4d1moIdq5mm3X4eDGGDc",
        ),
        ("JWT payload", "eyJ1c2VyX2lkIjoxfQ"),
        (
            "forged JWT signature",
            "Zm9yZ2VkLXNpZ25hdHVyZS1mb3ItdGhlLWxvZ3MtdGVzdA",
        ),
        ("database password", DB_PASSWORD),
        ("Redis password", REDIS_PASSWORD),
    ] {
        assert!(!log.contains(secret), "the log shows the {what}");
    }
}

#[tokio::test]
async fn authentication_slower_than_its_deadline_is_cut_off() {
    let db = TestDatabase::postgres().await;
    db.seed_reference_users("BIGINT").await;
    let args: Vec<String> = [
        "--port",
        "0",
        "--dev-user-param",
        "user_id",
        "--database-url",
        db.url(),
        "--profile-query",
        "SELECT id, name, avatar_url FROM users WHERE id = $1 AND (SELECT true FROM pg_sleep(CASE WHEN $1 = 2 THEN 30 ELSE 0 END))",
        "--auth-timeout",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = start(&args, &[]);
    let started = std::time::Instant::now();
    let slow = first_frame(&server.addr, "?user_id=2", &[]).await;
    // Our failure, not the client's: no `unauthorized`, a 1011 close so it retries.
    assert_eq!(slow, "Close(1011)");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(first_frame(&server.addr, "?user_id=1", &[]).await, WELCOME);
    let metrics = support::http_get_at(&server.addr, "/metrics").await;
    assert!(
        metrics.contains(r#"ferrocable_limit_triggers_total{limit="auth_deadline"} 1"#),
        "{metrics}"
    );
    let log = std::fs::read_to_string(&server.log).expect("log");
    assert!(log.contains("authentication did not finish in time"));
}
