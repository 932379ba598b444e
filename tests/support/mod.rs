//! Test helpers: a real `ferrocable` process on a free port, and a real WebSocket
//! client speaking Action Cable. Nothing here sleeps to synchronize: every wait is
//! for an event, bounded by a timeout that only turns a hang into a failure.

#![allow(dead_code)]

pub mod redis;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected event may take before the test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The reference app's users (`db/setup.rb`).
pub const USERS_JSON: &str = r#"[
  {"id":1,"name":"Alice","avatar_url":"https://example.test/avatars/alice.png"},
  {"id":2,"name":"Bob","avatar_url":"https://example.test/avatars/bob.png"},
  {"id":3,"name":"Carol","avatar_url":"https://example.test/avatars/carol.png"},
  {"id":4,"name":"Dave","avatar_url":null}
]"#;

/// The reference app's ChatChannel, declared.
pub const CHANNELS_TOML: &str = r#"
[[channels]]
name = "ChatChannel"
stream = "chat_{room}"
[channels.actions]
speak = ["text"]
"#;

/// A running `ferrocable` process, killed on drop.
pub struct TestServer {
    child: Option<Child>,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Holds the users and channels files.
    pub dir: tempfile::TempDir,
    stderr_log: std::path::PathBuf,
}

impl TestServer {
    /// Starts the server in embedded mode with development auth (`?user_id=`), the
    /// reference app's users and ChatChannel, plus `extra` flags.
    pub fn start(extra: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = dir.path().join("users.json");
        std::fs::write(&users, USERS_JSON).expect("write users");
        let channels = dir.path().join("channels.toml");
        std::fs::write(&channels, CHANNELS_TOML).expect("write channels");
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--dev-user-param".into(),
            "user_id".into(),
            "--users-file".into(),
            users.display().to_string(),
            "--channels-file".into(),
            channels.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_with_args(dir, args)
    }

    /// Starts the server in embedded mode with development auth, the channels declared
    /// in `channels_toml` (and no users file: every id is a user), plus `extra` flags.
    pub fn start_with_channels(channels_toml: &str, extra: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = channels_args(&dir, channels_toml, extra);
        Self::start_with_args(dir, args)
    }

    /// Starts the server with exactly `args` (plus nothing), keeping `dir` alive.
    pub fn start_with_args(dir: tempfile::TempDir, args: Vec<String>) -> TestServer {
        Self::start_with_env(dir, args, &[])
    }

    /// Starts the server with exactly `args` and the environment variables `vars`
    /// added, keeping `dir` alive.
    pub fn start_with_env(
        dir: tempfile::TempDir,
        args: Vec<String>,
        vars: &[(&str, &str)],
    ) -> TestServer {
        let stderr_log = dir.path().join("server.log");
        let log = std::fs::File::create(&stderr_log).expect("log file");
        let mut child = ferrocable_command()
            .args(&args)
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn ferrocable");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        let Some(rest) = line.trim().strip_prefix("ferrocable listening on http://") else {
            let _ = child.kill();
            panic!(
                "server did not start: stdout {line:?}, log:\n{}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            );
        };
        let addr = rest.split('/').next().expect("address").to_owned();
        TestServer {
            child: Some(child),
            addr,
            dir,
            stderr_log,
        }
    }

    /// Runs the server with exactly `args` expecting it to refuse to start: returns
    /// its stderr once it exited unsuccessfully, and fails if it listens instead.
    pub fn refused(args: &[String]) -> String {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrocable"))
            .args(args)
            .env_remove("REDIS_URL")
            .env_remove("FERROCABLE_CHANNEL_PREFIX")
            .env_remove("FERROCABLE_GLOBALID_APP")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferrocable");
        // Stdout closes when the process exits; it prints its address only once listening.
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        if !line.is_empty() {
            let _ = child.kill();
            panic!("the server started anyway: {line}");
        }
        let out = child.wait_with_output().expect("exit");
        assert!(!out.status.success(), "a refusal exits unsuccessfully");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `ws://ADDR/cable?QUERY`
    pub fn url(&self, query: &str) -> String {
        if query.is_empty() {
            format!("ws://{}/cable", self.addr)
        } else {
            format!("ws://{}/cable?{query}", self.addr)
        }
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            let status = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
        }
    }

    /// Waits for the process to exit (after [`TestServer::terminate`]).
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "server did not exit within {within:?}; log:\n{}",
                    self.log()
                );
            }
            // Polling a child's exit status has no event to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET `path` over a raw socket; returns (status line, headers+body text).
    pub async fn http_get(&self, path: &str) -> String {
        http_get_at(&self.addr, path).await
    }
}

/// The `ferrocable` binary with a hermetic environment: debug logs, and none of the
/// variables that would switch modes or read files unless a test sets them.
pub fn ferrocable_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrocable"));
    cmd.env("RUST_LOG", "ferrocable=debug");
    // Redis mode, a config file or a Rails app only when a test asks for them.
    for var in [
        "REDIS_URL",
        "FERROCABLE_CHANNEL_PREFIX",
        "FERROCABLE_NODE_ID",
        "FERROCABLE_CONFIG",
        "FERROCABLE_RAILS_ROOT",
        "RAILS_ENV",
        "RACK_ENV",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The arguments of an embedded server with development auth and the channels declared
/// in `channels_toml` (written into `dir`), plus `extra`.
pub fn channels_args(dir: &tempfile::TempDir, channels_toml: &str, extra: &[&str]) -> Vec<String> {
    let channels = dir.path().join("channels.toml");
    std::fs::write(&channels, channels_toml).expect("write channels");
    let mut args: Vec<String> = [
        "--port",
        "0",
        "--dev-user-param",
        "user_id",
        "--channels-file",
    ]
    .map(String::from)
    .to_vec();
    args.push(channels.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// GET `path` from the server at `addr` over a raw socket (`Connection: close`);
/// returns the whole response as text.
#[allow(dead_code)]
pub async fn http_get_at(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(EVENT_TIMEOUT, s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The server's side of a failed test.
            eprintln!("--- ferrocable log ---\n{}--- end of log ---", self.log());
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// The sending half of a split client.
pub type WsSink = futures_util::stream::SplitSink<Ws, Message>;
/// The receiving half of a split client.
pub type WsStream = futures_util::stream::SplitStream<Ws>;

/// A WebSocket client speaking Action Cable.
pub struct CableClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
}

/// What the client saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// A text frame.
    Text(String),
    /// A close frame (code).
    Close(u16),
    /// The stream ended without a close frame.
    End,
}

impl CableClient {
    /// Connects with the browser's default subprotocols and a same-origin `Origin`.
    pub async fn connect(url: &str) -> CableClient {
        let host = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host")
            .to_owned();
        Self::connect_with(
            url,
            &[
                ("Origin", &format!("http://{host}")),
                (
                    "Sec-WebSocket-Protocol",
                    "actioncable-v1-json, actioncable-unsupported",
                ),
            ],
        )
        .await
        .expect("upgrade accepted")
    }

    /// Connects with exactly these extra headers.
    ///
    /// # Errors
    /// The handshake error (e.g. HTTP 404).
    pub async fn connect_with(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<CableClient, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request().expect("valid url");
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                    .expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        let (ws, resp) = tokio::time::timeout(EVENT_TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .expect("handshake in time")?;
        let protocol = resp
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(CableClient { ws, protocol })
    }

    /// Connects as `user` (development auth) and waits for the welcome.
    pub async fn welcomed(server: &TestServer, user: i64) -> CableClient {
        let mut c = Self::connect(&server.url(&format!("user_id={user}"))).await;
        c.expect_json(r#"{"type":"welcome"}"#).await;
        c
    }

    /// Sends a text frame.
    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Sends a raw WebSocket message.
    pub async fn send_message(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// Sends `subscribe` for `identifier`.
    pub async fn subscribe(&mut self, identifier: &str) {
        self.send(&command("subscribe", identifier, None)).await;
    }

    /// Sends `unsubscribe` for `identifier`.
    pub async fn unsubscribe(&mut self, identifier: &str) {
        self.send(&command("unsubscribe", identifier, None)).await;
    }

    /// Sends `message` (perform) for `identifier` with `data` (a JSON object text).
    pub async fn perform(&mut self, identifier: &str, data: &str) {
        self.send(&command("message", identifier, Some(data))).await;
    }

    /// The next thing seen, skipping pings and WebSocket control frames.
    pub async fn next(&mut self) -> Seen {
        // One deadline for the whole wait: the server pings every 3 s, so a per-frame
        // timeout would never fire.
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("an event in time");
            match msg {
                None => return Seen::End,
                Some(Err(_)) => return Seen::End,
                Some(Ok(Message::Text(t))) => {
                    if t.starts_with(r#"{"type":"ping""#) {
                        continue;
                    }
                    return Seen::Text(t.to_string());
                }
                Some(Ok(Message::Close(f))) => {
                    return Seen::Close(f.map(|f| u16::from(f.code)).unwrap_or(1005))
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next non-ping frame, including pings (raw).
    pub async fn next_raw(&mut self) -> Seen {
        let msg = tokio::time::timeout(EVENT_TIMEOUT, self.ws.next())
            .await
            .expect("an event in time");
        match msg {
            None | Some(Err(_)) => Seen::End,
            Some(Ok(Message::Text(t))) => Seen::Text(t.to_string()),
            Some(Ok(Message::Close(f))) => {
                Seen::Close(f.map(|f| u16::from(f.code)).unwrap_or(1005))
            }
            Some(Ok(_)) => Seen::Text(String::new()),
        }
    }

    /// Waits for the next non-ping frame and asserts it is exactly `want`.
    pub async fn expect_json(&mut self, want: &str) {
        match self.next().await {
            Seen::Text(t) => assert_eq!(t, want),
            other => panic!("expected {want}, saw {other:?}"),
        }
    }

    /// Waits for the next non-ping text frame and parses it.
    pub async fn next_json(&mut self) -> Value {
        match self.next().await {
            Seen::Text(t) => serde_json::from_str(&t).expect("server sends JSON"),
            other => panic!("expected a text frame, saw {other:?}"),
        }
    }

    /// A barrier: sends a WebSocket ping and returns every non-ping text frame that
    /// arrived before the pong. The server handles a connection's frames in order and
    /// queues replies in one FIFO, so when the pong arrives, every reply to what was
    /// sent before the ping has arrived too.
    pub async fn drain(&mut self) -> Vec<String> {
        self.ws
            .send(Message::Ping(b"barrier".to_vec()))
            .await
            .expect("ping");
        let mut out = Vec::new();
        loop {
            let msg = tokio::time::timeout(EVENT_TIMEOUT, self.ws.next())
                .await
                .expect("pong in time");
            match msg {
                Some(Ok(Message::Pong(p))) if &p[..] == b"barrier" => return out,
                Some(Ok(Message::Text(t))) => {
                    if !t.starts_with(r#"{"type":"ping""#) {
                        out.push(t.to_string());
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended before the pong: {other:?}"),
            }
        }
    }

    /// Splits into a sender and a receiver that can be used from two tasks.
    pub fn split(self) -> (WsSink, WsStream) {
        self.ws.split()
    }

    /// Closes with `code` and waits for the server's echo.
    pub async fn close(mut self, code: u16) -> Seen {
        self.ws
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "bye".into(),
            })))
            .await
            .expect("close");
        loop {
            match self.next().await {
                Seen::Text(_) => continue,
                other => return other,
            }
        }
    }
}

/// An Action Cable command frame.
pub fn command(kind: &str, identifier: &str, data: Option<&str>) -> String {
    let mut v = serde_json::json!({"command": kind, "identifier": identifier});
    if let Some(d) = data {
        v["data"] = Value::String(d.to_owned());
    }
    v.to_string()
}

/// The identifier of a presence subscription to `room` (as the JS client builds it).
pub fn presence_id(room: &str) -> String {
    format!(r#"{{"channel":"PresenceChannel","room_id":{room}}}"#)
}

/// The confirm frame for `identifier`.
pub fn confirm(identifier: &str) -> String {
    serde_json::json!({"identifier": identifier, "type": "confirm_subscription"}).to_string()
}

/// The reject frame for `identifier`.
pub fn reject(identifier: &str) -> String {
    serde_json::json!({"identifier": identifier, "type": "reject_subscription"}).to_string()
}
