//! A mixed fleet: the reference Rails 6.1 app (Puma, Action Cable, its Redis adapter and
//! the seed's PresenceChannel) and a ferrocable node on the same Redis, with the same
//! channel prefix and `secret_key_base`, as during a gradual migration. Real WebSocket
//! clients on both sides, authenticated with cookies minted by the app itself.
//!
//! Needs Debian's Ruby and Rails 6.1 packages (`.ci/run` installs them; the app's
//! `run.sh` installs what is missing). The app is the repository's own copy,
//! `tests/rails-app` (its README says where it came from), or `FERROCABLE_RAILS_APP`.
//! Missing either fails the test loudly.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{confirm, CableClient, TestServer};

const SECRET_KEY_BASE: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbccccccccccccccccccccccccccccccccdddddddddddddddddddddddddddddddd";
const ROOM: &str = r#"{"channel":"PresenceChannel","room_id":"mix"}"#;
const CHAT: &str = r#"{"channel":"ChatChannel","room":"mix"}"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn reference_app() -> PathBuf {
    let dir = std::env::var_os("FERROCABLE_RAILS_APP")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rails-app"));
    assert!(
        dir.join("run.sh").is_file(),
        "the reference Rails app is not at {} (set FERROCABLE_RAILS_APP)",
        dir.display()
    );
    dir
}

/// The reference app copied to a temp dir and started with `run.sh` (Puma and its own
/// redis-server on free ports); stopped with its `stop.sh` on drop.
struct RailsApp {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    app_port: u16,
    redis_port: u16,
}

impl RailsApp {
    fn start() -> RailsApp {
        let tmp = tempfile::tempdir().expect("tempdir");
        let status = Command::new("cp")
            .arg("-r")
            .arg(reference_app())
            .arg(tmp.path())
            .status()
            .expect("cp");
        assert!(status.success(), "copying the reference app");
        let app = RailsApp {
            dir: tmp.path().join("rails-app"),
            _tmp: tmp,
            app_port: free_port(),
            redis_port: free_port(),
        };
        // run.sh returns once Puma answers GET /up (it waits for the port itself).
        let out = app.command("./run.sh").output().expect("run.sh");
        assert!(
            out.status.success(),
            "the Rails app did not start:\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(app.dir.join("log/puma.log")).unwrap_or_default()
        );
        app
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.current_dir(&self.dir)
            .env("APP_PORT", self.app_port.to_string())
            .env("REDIS_PORT", self.redis_port.to_string())
            .env_remove("REDIS_URL")
            .env("CABLE_CHANNEL_PREFIX", "refapp")
            .env("SECRET_KEY_BASE", SECRET_KEY_BASE)
            .env("LOG_LEVEL", "info");
        c
    }

    /// `ruby bin/runner.rb CODE`, as `rails runner` would run it in the app.
    fn runner(&self, code: &str) {
        let out = self
            .command("ruby")
            .args(["bin/runner.rb", code])
            .output()
            .expect("ruby bin/runner.rb");
        assert!(
            out.status.success(),
            "runner {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The `Cookie:` header the app itself signs for `user` (`mint.rb --json`).
    fn cookie(&self, user: i64) -> String {
        let out = self
            .command("ruby")
            .args(["mint.rb", "--json", &user.to_string()])
            .output()
            .expect("ruby mint.rb");
        assert!(out.status.success(), "mint.rb: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).expect("mint.rb prints JSON");
        v["signed"]["cookie_header"]
            .as_str()
            .expect("signed.cookie_header")
            .to_owned()
    }

    fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.redis_port)
    }

    fn redis_cli(&self, args: &[&str]) -> Vec<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.redis_port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }
}

impl Drop for RailsApp {
    fn drop(&mut self) {
        let _ = self.command("./stop.sh").output();
    }
}

/// A client with the app's cookie for `user`, welcomed.
async fn client(ws_url: &str, origin: &str, cookie: &str) -> CableClient {
    let mut c = CableClient::connect_with(
        ws_url,
        &[
            ("Origin", origin),
            (
                "Sec-WebSocket-Protocol",
                "actioncable-v1-json, actioncable-unsupported",
            ),
            ("Cookie", cookie),
        ],
    )
    .await
    .expect("upgrade accepted");
    c.expect_json(r#"{"type":"welcome"}"#).await;
    c
}

/// Reads until a frame of `identifier` whose message satisfies `pred` (Rails orders
/// neither confirms against broadcasts nor its own fan-out, so other frames are
/// skipped, and logged).
async fn wait_message(c: &mut CableClient, identifier: &str, pred: impl Fn(&Value) -> bool) {
    loop {
        let v = c.next_json().await;
        if v["identifier"] == identifier && pred(&v["message"]) {
            return;
        }
        eprintln!("skipped {v}");
    }
}

/// Waits for a presence event `action` about `user` with exactly `ids` as members.
async fn wait_presence(c: &mut CableClient, action: &str, user: i64, ids: &[i64]) {
    let ids: Vec<Value> = ids.iter().map(|i| Value::from(*i)).collect();
    wait_message(c, ROOM, |m| {
        m["action"] == action
            && m["user"]["id"] == user
            && m["member_ids"] == Value::Array(ids.clone())
            && m["member_count"] == ids.len()
    })
    .await;
}

/// Subscribes `identifier` and waits for its confirm (skipping broadcasts).
async fn subscribe(c: &mut CableClient, identifier: &str) {
    c.subscribe(identifier).await;
    let want: Value = serde_json::from_str(&confirm(identifier)).expect("json");
    loop {
        let v = c.next_json().await;
        if v == want {
            return;
        }
        eprintln!("skipped {v}");
    }
}

#[tokio::test]
async fn rails_and_ferrocable_share_presence_and_broadcasts() {
    let rails = RailsApp::start();
    let redis_url = rails.redis_url();
    let node = TestServer::start(&[
        "--redis-url",
        &redis_url,
        "--channel-prefix",
        "refapp",
        "--secret-key-base",
        SECRET_KEY_BASE,
        "--identifiers",
        "signed_cookie:user_id,encrypted_cookie:user_id",
        "--globalid-app",
        "refapp",
    ]);
    let rails_ws = format!("ws://127.0.0.1:{}/cable", rails.app_port);
    let rails_origin = format!("http://127.0.0.1:{}", rails.app_port);
    let fc_ws = node.url("");
    let fc_origin = format!("http://{}", node.addr);

    // Alice joins through Rails; she heartbeats, as the seed's page does, so the
    // fleet's stale-member sweep (the seed's CleanupStalePresenceJob) keeps her.
    let mut alice = client(&rails_ws, &rails_origin, &rails.cookie(1)).await;
    subscribe(&mut alice, ROOM).await;
    alice.perform(ROOM, r#"{"action":"heartbeat"}"#).await;
    // (Her own user_joined may come before the confirm, or never on a cold Rails:
    // its race 1. Rails' SADD runs before the confirm, though.)
    assert_eq!(rails.redis_cli(&["SMEMBERS", "room:mix:members"]), ["1"]);

    // Bob joins through ferrocable: Rails' client hears it, with both members.
    let mut bob = client(&fc_ws, &fc_origin, &rails.cookie(2)).await;
    subscribe(&mut bob, ROOM).await;
    wait_presence(&mut bob, "user_joined", 2, &[1, 2]).await;
    wait_presence(&mut alice, "user_joined", 2, &[1, 2]).await;
    assert_eq!(
        rails.redis_cli(&["SMEMBERS", "room:mix:members"]),
        ["1", "2"]
    );

    // Carol joins through Rails: ferrocable's client hears it.
    let mut carol = client(&rails_ws, &rails_origin, &rails.cookie(3)).await;
    subscribe(&mut carol, ROOM).await;
    carol.perform(ROOM, r#"{"action":"heartbeat"}"#).await;
    wait_presence(&mut bob, "user_joined", 3, &[1, 2, 3]).await;
    wait_presence(&mut alice, "user_joined", 3, &[1, 2, 3]).await;
    assert_eq!(
        rails.redis_cli(&["SMEMBERS", "room:mix:members"]),
        ["1", "2", "3"]
    );

    // The app broadcasts (ActionCable.server.broadcast in a runner): ferrocable's
    // client gets it, re-encoded as Rails re-encodes it.
    subscribe(&mut bob, CHAT).await;
    subscribe(&mut alice, CHAT).await;
    rails.runner(r#"ActionCable.server.broadcast("chat_mix", { text: "from <rails>", n: 2.50 })"#);
    let want: Value = serde_json::json!({"text": "from <rails>", "n": 2.5});
    wait_message(&mut bob, CHAT, |m| *m == want).await;
    wait_message(&mut alice, CHAT, |m| m["n"] == 2.5).await;

    // A chat message spoken on ferrocable reaches the Rails client.
    bob.perform(CHAT, r#"{"action":"speak","text":"hi from ferrocable"}"#)
        .await;
    wait_message(&mut alice, CHAT, |m| {
        m["text"] == "hi from ferrocable" && m["user_id"] == 2
    })
    .await;

    // A numeric room id is named as Ruby writes the number JSON.parse made of it, so
    // `1.50` (Rails' client) and `15e-1` (ferrocable's) are one room, `1.5`, on both.
    let float_rails = r#"{"channel":"PresenceChannel","room_id":1.50}"#;
    let float_fc = r#"{"channel":"PresenceChannel","room_id":15e-1}"#;
    subscribe(&mut carol, float_rails).await;
    carol
        .perform(float_rails, r#"{"action":"heartbeat"}"#)
        .await;
    assert_eq!(rails.redis_cli(&["SMEMBERS", "room:1.5:members"]), ["3"]);
    subscribe(&mut bob, float_fc).await;
    let both = |m: &Value, action: &str, ids: &[i64]| {
        let mut got: Vec<i64> = m["member_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        got.sort_unstable();
        m["action"] == action && m["user"]["id"] == 2 && got == ids
    };
    wait_message(&mut carol, float_rails, |m| both(m, "user_joined", &[2, 3])).await;
    assert_eq!(
        rails.redis_cli(&["SMEMBERS", "room:1.5:members"]),
        ["2", "3"]
    );
    bob.unsubscribe(float_fc).await;
    wait_message(&mut carol, float_rails, |m| both(m, "user_left", &[3])).await;
    assert_eq!(rails.redis_cli(&["SMEMBERS", "room:1.5:members"]), ["3"]);

    // Bob leaves ferrocable: Rails' clients hear it, and the set agrees.
    assert_eq!(bob.close(1000).await, support::Seen::Close(1000));
    wait_presence(&mut alice, "user_left", 2, &[1, 3]).await;
    wait_presence(&mut carol, "user_left", 2, &[1, 3]).await;
    assert_eq!(
        rails.redis_cli(&["SMEMBERS", "room:mix:members"]),
        ["1", "3"]
    );

    // A remote disconnect from the app (remote_connections) closes a ferrocable
    // client of that user.
    let mut dave = client(&fc_ws, &fc_origin, &rails.cookie(4)).await;
    subscribe(&mut dave, CHAT).await;
    rails.runner(
        "ActionCable.server.remote_connections.where(current_user: User.find(4)).disconnect",
    );
    loop {
        match dave.next().await {
            support::Seen::Close(code) => {
                assert_eq!(code, 1000);
                break;
            }
            support::Seen::End => panic!("dave's socket ended without a close frame"),
            support::Seen::Text(t) => eprintln!("skipped {t}"),
        }
    }
}
