//! Replays a Rails reference transcript (`protocol-fixtures/*.jsonl`) against a fresh
//! ferrocable and compares what the server sent, per connection, after normalization.
//! `protocol-fixtures/README.md` describes the fixtures, the normalization and
//! `differences.toml`; this module is the executable form of that README.
//!
//! The client here is a small WebSocket client over a raw `TcpStream` (the framing is
//! `cable_wire`'s, shared with the load generator):
//! the fixtures need exact request headers (the recorded `Host`, several or no
//! subprotocols, no `Sec-WebSocket-Version`), responses that a library client would
//! refuse (no subprotocol though one was offered, 404, 426), raw frame bytes and the
//! exact header bytes of every server frame.
//!
//! Synchronization is by events only: after each client step, a WebSocket ping goes out
//! on the acting connection and the replay reads until its pong, then does the same on
//! every other open connection. ferrocable handles one connection's frames in order
//! and queues every reply and every broadcast a command causes before it reads the next
//! frame, so once those pongs are back, everything caused so far has arrived. After a
//! close, the event is the end of the TCP stream (the server drops the socket only
//! after the connection's unsubscribe callbacks have run). Timeouts only turn a hang
//! into a failure.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cable_wire::{Accept, Parsed, FIN};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::redis::RedisServer;
use crate::support::{TestServer, EVENT_TIMEOUT};

// ---------------------------------------------------------------------------------
// Authentication stand-in
// ---------------------------------------------------------------------------------

/// The reference app's secrets (`rails-app/config/boot.rb` defaults, lab-only, public).
const SECRET_KEY_BASE: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbccccccccccccccccccccccccccccccccdddddddddddddddddddddddddddddddd";
const JWT_SECRET: &str = "refapp-jwt-secret";

/// Flags for the server under test, on top of [`TestServer::start`]'s: the reference
/// app's allowed origins, and strict presence (no roster replay: Rails has none; the
/// roster is tested in `tests/presence.rs`).
fn server_flags() -> Vec<&'static str> {
    // The reference app's `connect`: signed cookie, encrypted cookie, then `?token=`.
    vec![
        "--strict-presence",
        "--allowed-origins",
        "http://localhost:3100,http://127.0.0.1:3100",
        "--secret-key-base",
        SECRET_KEY_BASE,
        "--identifiers",
        "signed_cookie:user_id,encrypted_cookie:user_id,jwt",
        "--jwt-secret",
        JWT_SECRET,
    ]
}

// ---------------------------------------------------------------------------------
// The fixture: steps to replay, and what Rails sent
// ---------------------------------------------------------------------------------

/// `protocol-fixtures/`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol-fixtures")
}

/// A request the recorder made through its WebSocket library.
#[derive(Debug, Clone)]
struct LibRequest {
    path: String,
    /// In order, without `Sec-WebSocket-Key` (the recorder left the random key out).
    headers: Vec<(String, String)>,
}

/// Something the client did.
#[derive(Debug, Clone)]
enum Action {
    /// Upgrade request through the library (random key).
    Connect(LibRequest),
    /// A raw HTTP request, sent as recorded.
    RawHttp(String),
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A close frame; no code means an empty payload.
    Close(Option<u16>, String),
    /// A complete, already masked frame, byte for byte.
    RawFrame(Vec<u8>),
}

impl Action {
    fn sends_close(&self) -> bool {
        match self {
            Action::Close(..) => true,
            Action::RawFrame(b) => b.first().is_some_and(|b0| b0 & 0x0f == 0x8),
            _ => false,
        }
    }
}

/// Consecutive client actions on one connection with nothing between them in the
/// recording (e.g. a subscribe written right after the handshake): replayed without
/// a barrier in between.
#[derive(Debug, Clone)]
struct Step {
    conn: String,
    actions: Vec<Action>,
}

/// Something to replay: a client step, or (Redis mode) what another process did to
/// Redis, or a point where the recorder looked at Redis.
#[derive(Debug, Clone)]
enum Event {
    /// Client actions on one connection.
    Client(Step),
    /// A `PUBLISH` sent by another process while the recorder ran it (`redis-cli`, or
    /// Rails' `bin/runner.rb`), taken from the recording's MONITOR lines.
    Publish { channel: String, payload: Vec<u8> },
    /// The recorder's KEYS/TTL and PUBSUB snapshot.
    Snapshot(RedisSnapshot),
}

/// Redis as the recorder saw it: keys (type, TTL, value) and pub/sub channels.
#[derive(Debug, Clone, Default, PartialEq)]
struct RedisSnapshot {
    label: String,
    /// key → (type, ttl, value rendered as JSON).
    keys: std::collections::BTreeMap<String, (String, i64, String)>,
    /// channel → subscribers.
    channels: std::collections::BTreeMap<String, i64>,
}

/// What one connection received between two of its own steps.
#[derive(Debug, Clone, Default, PartialEq)]
struct Segment {
    /// The step's actions, rendered (identical on both sides: they are replayed).
    sends: Vec<String>,
    /// Normalized server events: Rails' in canonical order once [`canonicalize`]d,
    /// ferrocable's in the order sent once [`normalize_ferrocable`]d.
    recvs: Vec<String>,
}

/// Per connection, in order of first appearance.
type Transcript = Vec<(String, Vec<Segment>)>;

struct Fixture {
    /// The client side and what other processes did, in recorded order.
    events: Vec<Event>,
    /// What Rails sent, segmented like the replay (not yet in canonical order).
    expected: Transcript,
}

fn segments_of<'a>(t: &'a mut Transcript, conn: &str) -> &'a mut Vec<Segment> {
    if let Some(i) = t.iter().position(|(c, _)| c == conn) {
        return &mut t[i].1;
    }
    t.push((conn.to_owned(), Vec::new()));
    &mut t.last_mut().expect("just pushed").1
}

fn s(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex in fixture"))
        .collect()
}

fn json_str(text: &str) -> String {
    serde_json::to_string(text).expect("string")
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap_or("").to_owned(),
                        p[1].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The request of a `send http_request` line. Accepted upgrades were logged with the
/// headers sent; refused ones only with url/origin/subprotocols/extra headers, so the
/// library's headers are rebuilt in the same order.
fn lib_request(e: &Value) -> LibRequest {
    if e.get("headers").is_some() {
        return LibRequest {
            path: s(e, "path"),
            headers: pairs(&e["headers"]),
        };
    }
    let url = s(e, "url");
    let rest = url.strip_prefix("ws://").expect("ws:// url");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut headers = vec![("Host".to_owned(), host.to_owned())];
    if let Some(origin) = e.get("origin").and_then(Value::as_str) {
        headers.push(("Origin".into(), origin.into()));
    }
    headers.push(("Upgrade".into(), "websocket".into()));
    headers.push(("Connection".into(), "Upgrade".into()));
    headers.push(("Sec-WebSocket-Version".into(), "13".into()));
    headers.push((
        "Sec-WebSocket-Extensions".into(),
        "permessage-deflate; client_max_window_bits".into(),
    ));
    let protocols: Vec<&str> = e["offered_subprotocols"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !protocols.is_empty() {
        headers.push(("Sec-WebSocket-Protocol".into(), protocols.join(", ")));
    }
    headers.extend(pairs(&e["extra_headers"]));
    headers.push(("User-Agent".into(), "Python/3.11 websockets/15.0.1".into()));
    LibRequest {
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
        headers,
    }
}

/// One client action as it appears in the normalized transcript.
fn render_action(a: &Action) -> String {
    match a {
        Action::Connect(r) => {
            let get = |name: &str| {
                r.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            };
            format!(
                "connect GET {} origin={} protocols={}",
                r.path,
                get("origin").unwrap_or("(none)"),
                get("sec-websocket-protocol")
                    .map(json_str)
                    .unwrap_or_else(|| "(none)".into())
            )
        }
        Action::RawHttp(data) => {
            format!("raw http {}", json_str(data.lines().next().unwrap_or("")))
        }
        Action::Text(t) => format!("text {t}"),
        Action::Binary(b) => format!("binary {}", hex(b)),
        Action::Close(code, reason) => match code {
            Some(c) => format!("close {c} {}", json_str(reason)),
            None => "close (no code)".into(),
        },
        Action::RawFrame(b) => format!("frame {}", hex(b)),
    }
}

/// The normalized lines of an HTTP response: status, headers (lower-case names,
/// sorted; see [`header_line`]), body.
fn response_lines(
    status: u64,
    reason: &str,
    headers: &[(String, String)],
    body: &str,
    random_key: bool,
) -> Vec<String> {
    let mut out = vec![format!("http {status} {reason}")];
    let mut hs: Vec<String> = headers
        .iter()
        .map(|(k, v)| header_line(k, v, random_key))
        .collect();
    hs.sort();
    out.extend(hs);
    if !body.is_empty() {
        out.push(format!("body {}", json_str(body)));
    }
    out
}

/// `header name: value`. Names are case-insensitive (lower-cased); `Connection` and
/// `Upgrade` values are case-insensitive tokens (RFC 6455 §4.1, RFC 9110 §7.6.1,
/// §7.8) and lower-cased; values that vary per request are replaced.
fn header_line(name: &str, value: &str, random_key: bool) -> String {
    let name = name.to_ascii_lowercase();
    let value = match name.as_str() {
        "date" | "x-request-id" | "x-runtime" => "<varies>".to_owned(),
        "sec-websocket-accept" if random_key => "<varies>".to_owned(),
        "connection" | "upgrade" => value.to_ascii_lowercase(),
        _ => value.to_owned(),
    };
    format!("header {name}: {value}")
}

/// Splits a raw response into status, reason, headers and (de-chunked) body.
fn parse_raw_response(data: &[u8]) -> (u64, String, Vec<(String, String)>, Vec<u8>) {
    let end = find(data, b"\r\n\r\n").expect("complete head");
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let reason = parts.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = data[end + 4..].to_vec();
    if header(&headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body).map(|(b, _)| b).unwrap_or(body);
    }
    (status, reason, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A complete chunked body: (body, bytes used), or None if more bytes are needed.
fn dechunk(mut data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = data.len();
    let mut out = Vec::new();
    loop {
        let eol = find(data, b"\r\n")?;
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            let end = find(data, b"\r\n")?;
            return Some((out, total - (data.len() - end - 2)));
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn is_ping_text(t: &str) -> bool {
    t.starts_with(r#"{"type":"ping""#)
}

/// A received frame, normalized. Raw connections keep the exact header bytes.
fn frame_line(raw_header: Option<&[u8]>, opcode: u8, payload: &[u8]) -> Option<String> {
    let body = match opcode {
        0x1 => {
            let t = String::from_utf8_lossy(payload);
            if is_ping_text(&t) {
                return None;
            }
            format!("text {t}")
        }
        0x2 => format!("binary {}", hex(payload)),
        0x8 => {
            if payload.len() >= 2 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                format!(
                    "close {code} {}",
                    json_str(&String::from_utf8_lossy(&payload[2..]))
                )
            } else {
                "close (no code)".into()
            }
        }
        0x9 => format!("ping {}", json_str(&String::from_utf8_lossy(payload))),
        0xa => format!("pong {}", json_str(&String::from_utf8_lossy(payload))),
        op => format!("opcode {op} {}", hex(payload)),
    };
    Some(match raw_header {
        Some(h) => format!("frame {} {body}", hex(h)),
        None => body,
    })
}

/// The normalized lines of one `recv`/`meta` line of the recording.
fn recorded_lines(e: &Value) -> Vec<String> {
    let kind = s(e, "kind");
    match (s(e, "dir").as_str(), kind.as_str()) {
        ("recv", "http_response") => {
            let status = e["status"].as_u64().unwrap_or(0);
            response_lines(
                status,
                &s(e, "reason"),
                &pairs(&e["headers"]),
                &s(e, "body"),
                true,
            )
        }
        ("recv", "raw_http_response") => {
            let (status, reason, headers, body) = parse_raw_response(s(e, "data").as_bytes());
            let mut out = response_lines(
                status,
                &reason,
                &headers,
                &String::from_utf8_lossy(&body),
                false,
            );
            if e["server_closed"].as_bool() == Some(true) {
                out.push("tcp eof".into());
            }
            out
        }
        ("recv", "frame") => {
            let (op, payload) = match s(e, "opcode").as_str() {
                "text" => (0x1, s(e, "data").into_bytes()),
                "binary" => (0x2, unhex(&s(e, "hex"))),
                "close" => {
                    let mut p = Vec::new();
                    if let Some(code) = e["code"].as_u64() {
                        p.extend_from_slice(&(code as u16).to_be_bytes());
                        p.extend_from_slice(s(e, "reason").as_bytes());
                    }
                    (0x8, p)
                }
                "ping" => (0x9, s(e, "data").into_bytes()),
                "pong" => (0xa, s(e, "data").into_bytes()),
                other => panic!("unknown recorded opcode {other}"),
            };
            frame_line(None, op, &payload).into_iter().collect()
        }
        ("recv", "raw_frame") => {
            let op = e["opcode"].as_u64().expect("opcode") as u8;
            let payload = match op {
                0x8 => unhex(&s(e, "payload_hex")),
                0x2 => unhex(&s(e, "payload_hex")),
                _ => s(e, "data").into_bytes(),
            };
            frame_line(Some(&unhex(&s(e, "header_hex"))), op, &payload)
                .into_iter()
                .collect()
        }
        ("recv", "tcp_eof") => vec!["tcp eof".into()],
        ("meta", "closed_without_close_frame") => vec!["eof without close frame".into()],
        ("meta", "connect_error") => vec![format!("connect error {}", json_str(&e.to_string()))],
        _ => Vec::new(),
    }
}

fn parse_fixture(name: &str) -> Fixture {
    let path = fixtures_dir().join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut events: Vec<Event> = Vec::new();
    let mut expected: Transcript = Vec::new();
    // The connection whose last step may still grow (nothing happened since).
    let mut open: Option<String> = None;
    // A process the recorder started (redis-cli, bin/runner.rb) is running: the
    // PUBLISHes MONITOR shows meanwhile from a Redis client not seen before it started
    // are its; the others are the cable server's own (e.g. the user_left that Rails
    // publishes while the runner's remote disconnect is being handled).
    let mut proc_running = false;
    let mut server_clients: std::collections::HashSet<String> = Default::default();
    let mut before_proc: std::collections::HashSet<String> = Default::default();
    for (n, line) in text.lines().enumerate() {
        let e: Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("{name}.jsonl:{}: {err}", n + 1));
        let dir = s(&e, "dir");
        let kind = s(&e, "kind");
        let conn = s(&e, "conn");
        match dir.as_str() {
            "proc" => {
                proc_running = kind == "start";
                if proc_running {
                    before_proc = server_clients.clone();
                }
                open = None;
            }
            "redis_monitor" => {
                let client = s(&e, "client");
                if !proc_running {
                    server_clients.insert(client);
                    continue;
                }
                let words = monitor_words(&s(&e, "line"));
                if words.len() == 3
                    && words[0].eq_ignore_ascii_case(b"publish")
                    && !before_proc.contains(&client)
                {
                    events.push(Event::Publish {
                        channel: String::from_utf8_lossy(&words[1]).into_owned(),
                        payload: words[2].clone(),
                    });
                    open = None;
                }
            }
            "redis" if kind == "snapshot" => {
                events.push(Event::Snapshot(recorded_snapshot(&e)));
                open = None;
            }
            // Server-side observations, asynchronous to the client: they break nothing.
            "redis_pubsub" => {}
            "send" => {
                let action = match kind.as_str() {
                    "http_request" => Action::Connect(lib_request(&e)),
                    "raw_http_request" => Action::RawHttp(s(&e, "data")),
                    "frame" => match s(&e, "opcode").as_str() {
                        "text" => Action::Text(s(&e, "data")),
                        "binary" => Action::Binary(unhex(&s(&e, "hex"))),
                        "close" => {
                            Action::Close(e["code"].as_u64().map(|c| c as u16), s(&e, "reason"))
                        }
                        other => panic!("{name}: unknown sent opcode {other}"),
                    },
                    "raw_frame" => Action::RawFrame(unhex(&s(&e, "frame_hex"))),
                    other => panic!("{name}: unknown send kind {other}"),
                };
                let rendered = render_action(&action);
                let connects = matches!(action, Action::Connect(_) | Action::RawHttp(_));
                let segs = segments_of(&mut expected, &conn);
                let open_step = match events.last_mut() {
                    Some(Event::Client(step))
                        if open.as_deref() == Some(conn.as_str()) && !connects =>
                    {
                        Some(step)
                    }
                    _ => None,
                };
                if let Some(step) = open_step {
                    step.actions.push(action);
                    segs.last_mut().expect("open segment").sends.push(rendered);
                } else {
                    events.push(Event::Client(Step {
                        conn: conn.clone(),
                        actions: vec![action],
                    }));
                    segs.push(Segment {
                        sends: vec![rendered],
                        recvs: Vec::new(),
                    });
                }
                open = Some(conn);
            }
            "recv" | "meta" if !conn.is_empty() => {
                let lines = recorded_lines(&e);
                let handshake_reply =
                    matches!(kind.as_str(), "http_response" | "raw_http_response");
                if !lines.is_empty() {
                    let segs = segments_of(&mut expected, &conn);
                    segs.last_mut()
                        .unwrap_or_else(|| panic!("{name}: {conn} received before connecting"))
                        .recvs
                        .extend(lines);
                }
                // A handshake response belongs to its request: frames written right
                // after it are still part of the same step.
                if !(handshake_reply && open.as_deref() == Some(conn.as_str()))
                    && kind != "tcp_closed"
                {
                    open = None;
                }
            }
            // Notes, redis snapshots, processes: the recorder paused here.
            _ => open = None,
        }
    }
    Fixture { events, expected }
}

/// The words of a MONITOR line (`"PUBLISH" "ch" "payload"`), unquoted as Redis quotes
/// them (`sdscatrepr`: `\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b`, `\xHH`).
fn monitor_words(line: &str) -> Vec<Vec<u8>> {
    let b = line.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        i += 1;
        let mut w = Vec::new();
        while i < b.len() && b[i] != b'"' {
            if b[i] == b'\\' && i + 1 < b.len() {
                i += 1;
                match b[i] {
                    b'n' => w.push(b'\n'),
                    b'r' => w.push(b'\r'),
                    b't' => w.push(b'\t'),
                    b'a' => w.push(7),
                    b'b' => w.push(8),
                    b'x' if i + 2 < b.len() => {
                        w.extend(unhex(&line[i + 1..i + 3]));
                        i += 2;
                    }
                    other => w.push(other),
                }
            } else {
                w.push(b[i]);
            }
            i += 1;
        }
        i += 1;
        words.push(w);
    }
    words
}

/// A `redis snapshot` line of the recording.
fn recorded_snapshot(e: &Value) -> RedisSnapshot {
    let mut snap = RedisSnapshot {
        label: s(e, "label"),
        ..RedisSnapshot::default()
    };
    if let Some(keys) = e["keys"].as_object() {
        for (k, v) in keys {
            snap.keys.insert(
                k.clone(),
                (
                    s(v, "type"),
                    v["ttl"].as_i64().unwrap_or(-3),
                    key_value(&v["value"]),
                ),
            );
        }
    }
    if let Some(chans) = e["pubsub_channels"].as_object() {
        for (c, n) in chans {
            snap.channels.insert(c.clone(), n.as_i64().unwrap_or(0));
        }
    }
    snap
}

/// A key's value for comparison: sets sorted; a string of unix seconds (a heartbeat)
/// as `<unix seconds>`, since the clock differs between the runs.
fn key_value(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let mut strs: Vec<String> = items.iter().map(Value::to_string).collect();
            strs.sort();
            format!("[{}]", strs.join(","))
        }
        Value::String(t) if t.len() >= 10 && t.bytes().all(|c| c.is_ascii_digit()) => {
            "<unix seconds>".into()
        }
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------
// Canonical order
// ---------------------------------------------------------------------------------

/// What a received line is, for ordering: part of the HTTP response, an event of one
/// identifier (a confirm/reject, or a message), or anything else.
#[derive(Debug, PartialEq)]
enum LineKind {
    /// `http <status>` (0), `header …` (1), `body …` (2).
    Http(u8),
    /// The welcome.
    Welcome,
    /// Of one identifier: its confirm/reject (`control`), or a message.
    Identifier { id: String, control: bool },
    /// Disconnect, close, EOF, binary frames, pongs: connection-wide.
    Other,
}

fn line_kind(line: &str) -> LineKind {
    if line.starts_with("http ") {
        return LineKind::Http(0);
    }
    if line.starts_with("header ") {
        return LineKind::Http(1);
    }
    if line.starts_with("body ") {
        return LineKind::Http(2);
    }
    let text = line.strip_prefix("text ").or_else(|| {
        let rest = line.strip_prefix("frame ")?;
        rest.split_once(' ')?.1.strip_prefix("text ")
    });
    if let Some(v) = text.and_then(|t| serde_json::from_str::<Value>(t).ok()) {
        if v.get("type").and_then(Value::as_str) == Some("welcome") {
            return LineKind::Welcome;
        }
        if let Some(id) = v.get("identifier").and_then(Value::as_str) {
            let control = matches!(
                v.get("type").and_then(Value::as_str),
                Some("confirm_subscription" | "reject_subscription")
            );
            return LineKind::Identifier {
                id: id.to_owned(),
                control,
            };
        }
    }
    LineKind::Other
}

/// Sort key of a line of Rails' transcript within one segment. Rails does not order a
/// subscription's confirm against its first broadcasts (lab README "Races" 1), nor one
/// connection's commands (3), nor events of different identifiers (4), so within one
/// segment: the HTTP response (status, headers sorted, body) first, then the welcome,
/// then per identifier (sorted) its confirm/reject before its messages, the messages
/// of one identifier in arrival order (that order is guaranteed), then everything else
/// (disconnect, close, EOF) in arrival order. The sort is stable.
fn rails_sort_key(line: &str) -> (u8, String, u8, String) {
    match line_kind(line) {
        LineKind::Http(1) => (0, String::new(), 1, line.to_owned()),
        LineKind::Http(n) => (0, String::new(), n, String::new()),
        LineKind::Welcome => (1, String::new(), 0, String::new()),
        LineKind::Identifier { id, control } => (2, id, u8::from(!control), String::new()),
        LineKind::Other => (3, String::new(), 0, String::new()),
    }
}

/// Rails' transcript with its races normalized away: [`rails_sort_key`] order in
/// every segment. Only the Rails side (and the expectation built from it) gets this.
fn canonicalize(t: &mut Transcript) {
    for (_, segs) in t.iter_mut() {
        for seg in segs.iter_mut() {
            seg.recvs.sort_by_cached_key(|l| rails_sort_key(l));
        }
    }
}

/// ferrocable's transcript, normalized only where the recording gives no order to
/// compare with: lines of *different* identifiers between two connection-wide lines
/// are grouped per identifier (stable: each identifier's own lines keep their order),
/// since Rails' fan-out across subscriptions has no order (race 4); HTTP header lines
/// are sorted (header order carries no meaning, and the recorder's library reordered
/// Rails'). Nothing else moves: a message before its identifier's confirm, a frame
/// before the welcome or after a close, a connection-wide line among identifier lines
/// all stay where ferrocable sent them, and so differ from the canonical expectation.
fn normalize_ferrocable(t: &mut Transcript) {
    for (_, segs) in t.iter_mut() {
        for seg in segs.iter_mut() {
            let kinds: Vec<LineKind> = seg.recvs.iter().map(|l| line_kind(l)).collect();
            let mut start = 0;
            while start < kinds.len() {
                let group = |k: &LineKind| match k {
                    LineKind::Identifier { .. } => 1,
                    LineKind::Http(1) => 2,
                    _ => 0,
                };
                let g = group(&kinds[start]);
                let mut end = start + 1;
                while end < kinds.len() && g != 0 && group(&kinds[end]) == g {
                    end += 1;
                }
                let run = &mut seg.recvs[start..end];
                match g {
                    1 => run.sort_by_cached_key(|l| match line_kind(l) {
                        LineKind::Identifier { id, .. } => id,
                        _ => String::new(),
                    }),
                    2 => run.sort(),
                    _ => {}
                }
                start = end;
            }
        }
    }
}

/// The connections whose received lines differ: `expected` (Rails' transcript in
/// canonical order, declared differences applied) against `got` (ferrocable's, already
/// [`normalize_ferrocable`]d), as a diff per connection; empty when they agree.
fn transcript_diff(expected: &Transcript, got: &Transcript) -> Vec<(String, Vec<(char, String)>)> {
    let mut names: Vec<&String> = expected.iter().map(|(c, _)| c).collect();
    for (c, _) in got {
        if !names.contains(&c) {
            names.push(c);
        }
    }
    let empty = Vec::new();
    let segs = |t: &'_ Transcript, conn: &str| -> Vec<Segment> {
        t.iter()
            .find(|(c, _)| c == conn)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| empty.clone())
    };
    let mut out = Vec::new();
    for conn in names {
        let (exp, act) = (segs(expected, conn), segs(got, conn));
        if exp != act {
            out.push((
                conn.clone(),
                diff_lines(&conn_lines(&exp), &conn_lines(&act)),
            ));
        }
    }
    out
}

/// The normalized transcript as text (what `UPDATE_FIXTURES=1` writes).
fn render(t: &Transcript) -> String {
    let mut out = String::new();
    for (conn, segs) in t {
        let _ = writeln!(out, "== {conn}");
        for l in conn_lines(segs) {
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}

/// `>` opens a step (a barrier follows it); `>>` is a further action of the same step,
/// written right after the previous one.
fn conn_lines(segs: &[Segment]) -> Vec<String> {
    let mut out = Vec::new();
    for seg in segs {
        out.extend(seg.sends.iter().enumerate().map(|(i, l)| {
            if i == 0 {
                format!("> {l}")
            } else {
                format!(">> {l}")
            }
        }));
        out.extend(seg.recvs.iter().map(|l| format!("< {l}")));
    }
    out
}

// ---------------------------------------------------------------------------------
// Redis snapshots
// ---------------------------------------------------------------------------------

/// How far a TTL may be from the recorded one, in seconds: the replay does not pause
/// where the recorder did (e.g. `presence_heartbeat`'s "2 s later"), and TTL reads
/// round down.
pub const TTL_TOLERANCE: i64 = 3;

/// Glob match with `*` only.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Drops what the declarations for `side` say only that side has, and marks in `used`
/// each declaration that matched something.
fn drop_declared(snap: &mut RedisSnapshot, decls: &[RedisDeclared], side: &str, used: &mut [bool]) {
    for (d, used) in decls.iter().zip(used.iter_mut()) {
        if d.side != side {
            continue;
        }
        let before = snap.keys.len() + snap.channels.len();
        snap.keys.retain(|k, _| !d.keys.iter().any(|p| glob(p, k)));
        snap.channels
            .retain(|c, _| !d.channels.iter().any(|p| glob(p, c)));
        *used |= snap.keys.len() + snap.channels.len() < before;
    }
}

/// The differences between two snapshots (TTLs within [`TTL_TOLERANCE`]); empty when
/// they agree. `channels` picks the pub/sub channels instead of the keys.
fn snapshot_diff(rails: &RedisSnapshot, got: &RedisSnapshot, channels: bool) -> Vec<String> {
    let mut out = Vec::new();
    if channels {
        if rails.channels != got.channels {
            out.push(format!(
                "pub/sub channels: Rails {:?}, ferrocable {:?}",
                rails.channels, got.channels
            ));
        }
        return out;
    }
    let names: std::collections::BTreeSet<&String> =
        rails.keys.keys().chain(got.keys.keys()).collect();
    for k in names {
        match (rails.keys.get(k), got.keys.get(k)) {
            (Some(r), Some(g)) => {
                let ttl_ok = if r.1 < 0 || g.1 < 0 {
                    r.1 == g.1
                } else {
                    (r.1 - g.1).abs() <= TTL_TOLERANCE
                };
                if r.0 != g.0 || r.2 != g.2 || !ttl_ok {
                    out.push(format!(
                        "key {k}: Rails {} ttl {} {}, ferrocable {} ttl {} {}",
                        r.0, r.1, r.2, g.0, g.1, g.2
                    ));
                }
            }
            (Some(r), None) => out.push(format!("key {k}: only Rails has it ({} {})", r.0, r.2)),
            (None, Some(g)) => {
                out.push(format!("key {k}: only ferrocable has it ({} {})", g.0, g.2))
            }
            (None, None) => {}
        }
    }
    out
}

/// Compares ferrocable's Redis with the recording at each snapshot (taken by
/// [`replay`]), apart from the declared `[[redis_difference]]`s, and fails on a
/// declaration that never applies.
fn compare_snapshots(
    scenario: &str,
    recorded: &[&RedisSnapshot],
    got: Vec<RedisSnapshot>,
    report: &mut String,
) {
    let decls = redis_declared(scenario);
    let mut used = vec![false; decls.len()];
    assert_eq!(recorded.len(), got.len(), "one snapshot per recorded one");
    for (rails, mut mine) in recorded.iter().zip(got) {
        let mut rails = (*rails).clone();
        drop_declared(&mut rails, &decls, "rails", &mut used);
        drop_declared(&mut mine, &decls, "ferrocable", &mut used);
        let mut problems = snapshot_diff(&rails, &mine, false);
        problems.extend(snapshot_diff(&rails, &mine, true));
        if !problems.is_empty() {
            let _ = writeln!(report, "== redis snapshot {:?}", rails.label);
            for p in problems {
                let _ = writeln!(report, "  {p}");
            }
        }
    }
    for (d, used) in decls.iter().zip(used) {
        if !used {
            let _ = writeln!(
                report,
                "== declared redis difference ({} side: keys {:?}, channels {:?}) never occurs in {scenario}: remove it ({})",
                d.side, d.keys, d.channels, d.why
            );
        }
    }
}

/// The `[[redis_difference]]`s declared for `scenario`.
fn redis_declared(scenario: &str) -> Vec<RedisDeclared> {
    load_file()
        .redis
        .into_iter()
        .filter(|d| d.scenarios.iter().any(|s| s == scenario))
        .collect()
}

/// ferrocable's Redis at a recorded snapshot. Keys are read at once: ferrocable writes
/// them before it answers, so the replay's barriers cover them. Pub/sub channels may
/// lag (an UNSUBSCRIBE is not acknowledged before the server goes on), so until they
/// agree with the recording, they are read again (Redis state announces no event),
/// for at most [`EVENT_TIMEOUT`].
async fn take_snapshot(
    redis: &RedisServer,
    recorded: &RedisSnapshot,
    decls: &[RedisDeclared],
) -> RedisSnapshot {
    let channels = |snap: &RedisSnapshot, side: &str| {
        let mut snap = RedisSnapshot {
            channels: snap.channels.clone(),
            ..RedisSnapshot::default()
        };
        drop_declared(&mut snap, decls, side, &mut vec![false; decls.len()]);
        snap.channels
    };
    let want = channels(recorded, "rails");
    let mut snap = redis_snapshot(redis, &recorded.label);
    let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
    while channels(&snap, "ferrocable") != want && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        snap.channels = redis_snapshot(redis, &recorded.label).channels;
    }
    snap
}

// ---------------------------------------------------------------------------------
// Declared differences
// ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DifferencesFile {
    #[serde(default)]
    difference: Vec<Declared>,
    #[serde(default, rename = "redis_difference")]
    redis: Vec<RedisDeclared>,
}

/// Redis keys or pub/sub channels only one side has, in Redis-mode replays.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisDeclared {
    scenarios: Vec<String>,
    /// `rails` or `ferrocable`: who has them.
    side: String,
    /// Key patterns (`*` matches anything).
    #[serde(default)]
    keys: Vec<String>,
    /// Channel patterns.
    #[serde(default)]
    channels: Vec<String>,
    why: String,
}

/// One deliberate difference (see `protocol-fixtures/README.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declared {
    /// Fixture names (file stems, `name@tag` for variants).
    scenarios: Vec<String>,
    /// Connection names of the recording.
    conns: Vec<String>,
    /// The client action whose segment differs (a `>` line without `> `), or
    /// `connect` for the handshake segment.
    at: String,
    /// Which segment with that action, counting from 1.
    #[serde(default = "one")]
    occurrence: usize,
    /// Received lines Rails sent there and ferrocable does not.
    #[serde(default)]
    rails: Vec<String>,
    /// Received lines ferrocable sends there instead.
    #[serde(default)]
    ferrocable: Vec<String>,
    /// `deliberate` (default) or `recording_race` (README).
    #[serde(default = "deliberate")]
    kind: String,
    /// Why the difference is there.
    why: String,
}

fn deliberate() -> String {
    "deliberate".into()
}

fn one() -> usize {
    1
}

fn load_file() -> DifferencesFile {
    let path = fixtures_dir().join("differences.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: DifferencesFile =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for d in &file.redis {
        assert!(
            !d.why.trim().is_empty() && matches!(d.side.as_str(), "rails" | "ferrocable"),
            "differences.toml: a redis difference needs a `why` and side = rails|ferrocable"
        );
        assert!(
            !d.scenarios.is_empty() && (!d.keys.is_empty() || !d.channels.is_empty()),
            "differences.toml: a redis difference names no scenario, key or channel"
        );
    }
    file
}

fn load_differences() -> Vec<Declared> {
    let file = load_file();
    for d in &file.difference {
        assert!(
            !d.why.trim().is_empty(),
            "differences.toml: a difference at {:?} has no `why`",
            d.at
        );
        assert!(
            d.rails != d.ferrocable,
            "differences.toml: the difference at {:?} changes nothing",
            d.at
        );
        assert!(
            matches!(d.kind.as_str(), "deliberate" | "recording_race"),
            "differences.toml: unknown kind {:?}",
            d.kind
        );
        assert!(
            !d.scenarios.is_empty() && !d.conns.is_empty(),
            "differences.toml: {:?} names no scenario or connection",
            d.at
        );
    }
    file.difference
}

/// Every scenario `differences.toml` names.
pub fn declared_scenarios() -> Vec<String> {
    let file = load_file();
    let mut v: Vec<String> = load_differences()
        .into_iter()
        .flat_map(|d| d.scenarios)
        .chain(file.redis.into_iter().flat_map(|d| d.scenarios))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Applies the declarations for `scenario` to Rails' transcript. Returns, per
/// (connection, segment index), the declarations applied there (for messages).
fn apply_declared(
    scenario: &str,
    expected: &mut Transcript,
) -> HashMap<(String, usize), Vec<String>> {
    let mut touched: HashMap<(String, usize), Vec<String>> = HashMap::new();
    for d in load_differences()
        .iter()
        .filter(|d| d.scenarios.iter().any(|s| s == scenario))
    {
        for conn in &d.conns {
            let Some((_, segs)) = expected.iter_mut().find(|(c, _)| c == conn) else {
                panic!(
                    "differences.toml: {scenario} has no connection {conn:?} (at {:?})",
                    d.at
                );
            };
            let matches = |seg: &Segment| {
                if d.at == "connect" {
                    seg.sends
                        .first()
                        .is_some_and(|l| l.starts_with("connect ") || l.starts_with("raw http "))
                } else {
                    seg.sends.iter().any(|l| l == &d.at)
                }
            };
            let Some(idx) = segs
                .iter()
                .enumerate()
                .filter(|(_, s)| matches(s))
                .map(|(i, _)| i)
                .nth(d.occurrence - 1)
            else {
                panic!(
                    "differences.toml: {scenario}/{conn}: no segment #{} at {:?}",
                    d.occurrence, d.at
                );
            };
            let seg = &mut segs[idx];
            for line in &d.rails {
                let Some(pos) = seg.recvs.iter().position(|l| l == line) else {
                    panic!(
                        "differences.toml: {scenario}/{conn} at {:?}: Rails did not send {line:?}; it sent:\n{}",
                        d.at,
                        seg.recvs.join("\n")
                    );
                };
                seg.recvs.remove(pos);
            }
            seg.recvs.extend(d.ferrocable.iter().cloned());
            touched
                .entry((conn.clone(), idx))
                .or_default()
                .push(d.why.clone());
        }
    }
    canonicalize(expected);
    touched
}

// ---------------------------------------------------------------------------------
// The replaying client
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum ConnState {
    /// WebSocket open.
    Open,
    /// The server sent its close frame; only our reply and the TCP end remain.
    ServerClosing,
    /// Nothing more will arrive (EOF, or an HTTP-only exchange is over).
    Done,
}

struct Conn {
    name: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Opened with a raw request: frames are shown with their header bytes.
    raw: bool,
    state: ConnState,
    segments: Vec<Segment>,
    /// Identifiers the server confirmed and the client has not unsubscribed (for the
    /// Redis barrier).
    subscribed: Vec<String>,
}

struct RawFrame {
    header: Vec<u8>,
    opcode: u8,
    payload: Vec<u8>,
}

/// The frame at the front of `buf`, if complete, however the server framed it (a
/// masked frame is unmasked; raw connections show the header bytes).
fn parse_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    let head = match cable_wire::parse_server_frame(buf, &Accept::ANYTHING) {
        Ok(Parsed::Frame(head)) => head,
        Ok(Parsed::Incomplete) => return None,
        Err(e) => panic!("the replay accepts any well-formed frame, yet: {e}"),
    };
    let mut payload = buf[head.payload()].to_vec();
    if let Some(key) = head.mask {
        cable_wire::apply_mask(&mut payload, key);
    }
    Some((
        RawFrame {
            header: buf[..head.header_len].to_vec(),
            opcode: head.opcode,
            payload,
        },
        head.frame_len(),
    ))
}

/// A masked, final client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    cable_wire::encode_client_frame(&mut out, FIN | opcode, payload, [0x01, 0x02, 0x03, 0x04]);
    out
}

impl Conn {
    fn record(&mut self, line: String) {
        self.segments
            .last_mut()
            .expect("a segment")
            .recvs
            .push(line);
    }

    /// Reads more bytes; false at EOF. A hang fails the test.
    async fn fill(&mut self) -> bool {
        let stream = self.stream.as_mut().expect("connected");
        match tokio::time::timeout(EVENT_TIMEOUT, stream.read_buf(&mut self.buf)).await {
            Err(_) => panic!(
                "{}: nothing from the server within {EVENT_TIMEOUT:?}",
                self.name
            ),
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(_)) => true,
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        let stream = self.stream.as_mut().expect("connected");
        // A write to a socket the server already closed is not an event to compare.
        let _ = stream.write_all(bytes).await;
    }

    async fn next_frame(&mut self) -> Option<RawFrame> {
        loop {
            if let Some((f, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(f);
            }
            if !self.fill().await {
                if !self.buf.is_empty() {
                    let rest = std::mem::take(&mut self.buf);
                    self.record(format!("trailing bytes {}", hex(&rest)));
                }
                return None;
            }
        }
    }

    fn record_frame(&mut self, f: &RawFrame) {
        if f.opcode == 0x1 {
            if let Ok(v) = serde_json::from_slice::<Value>(&f.payload) {
                // The replay's own Redis barrier messages are not events.
                if v["message"].get("fixture_barrier").is_some() {
                    return;
                }
                if v["type"] == "confirm_subscription" {
                    if let Some(id) = v["identifier"].as_str() {
                        if !self.subscribed.iter().any(|s| s == id) {
                            self.subscribed.push(id.to_owned());
                        }
                    }
                }
            }
        }
        let header = if self.raw {
            Some(f.header.as_slice())
        } else {
            None
        };
        if let Some(line) = frame_line(header, f.opcode, &f.payload) {
            self.record(line);
        }
    }

    fn eof(&mut self, saw_close: bool) {
        if self.raw {
            self.record("tcp eof".into());
        } else if !saw_close {
            self.record("eof without close frame".into());
        }
        self.state = ConnState::Done;
        self.stream = None;
    }

    /// Sends a ping and records everything up to its pong (or the server's close, or
    /// EOF).
    async fn barrier(&mut self, n: u64) {
        let token = format!("fixture-barrier-{n}");
        self.write(&client_frame(0x9, token.as_bytes())).await;
        loop {
            let Some(f) = self.next_frame().await else {
                self.eof(false);
                return;
            };
            if f.opcode == 0xa && f.payload == token.as_bytes() {
                return;
            }
            self.record_frame(&f);
            if f.opcode == 0x8 {
                self.state = ConnState::ServerClosing;
                return;
            }
        }
    }

    /// The Redis barrier: broadcasts relayed through Redis (presence events, Rails'
    /// PUBLISHes) arrive on their own schedule, so a WebSocket pong does not prove they
    /// are in. This publishes a marker into Redis on a stream this connection is
    /// subscribed to and records everything up to it (or the server's close, or EOF).
    /// Redis delivers one subscriber connection's messages in publish order and the
    /// server fans them out in that order, so once the marker is here, everything
    /// published to Redis before it has arrived too. The marker itself is not recorded.
    async fn redis_barrier(&mut self, redis: &RedisServer, n: u64) {
        let Some(stream) = self.subscribed.iter().find_map(|id| stream_of(id)) else {
            return;
        };
        let marker = format!(r#"{{"fixture_barrier":{n}}}"#);
        let channel = format!("{}:{stream}", crate::support::redis::PREFIX);
        assert!(
            redis.publish(&channel, &marker) >= 1,
            "{}: nobody subscribes {channel} for the barrier",
            self.name
        );
        loop {
            let Some(f) = self.next_frame().await else {
                self.eof(false);
                return;
            };
            if f.opcode == 0x1 {
                if let Ok(v) = serde_json::from_slice::<Value>(&f.payload) {
                    if v["message"]["fixture_barrier"].as_u64() == Some(n) {
                        return;
                    }
                }
            }
            self.record_frame(&f);
            if f.opcode == 0x8 {
                self.state = ConnState::ServerClosing;
                return;
            }
        }
    }

    /// Both barriers: the WebSocket one, then (Redis mode) the Redis one.
    async fn settle(&mut self, redis: Option<&RedisServer>, n: &mut u64) {
        *n += 1;
        self.barrier(*n).await;
        if let (Some(redis), ConnState::Open) = (redis, self.state) {
            *n += 1;
            self.redis_barrier(redis, *n).await;
        }
    }

    /// After our close: records everything until the server ends the TCP stream.
    async fn until_eof(&mut self) {
        let mut saw_close = self.state == ConnState::ServerClosing;
        while let Some(f) = self.next_frame().await {
            self.record_frame(&f);
            saw_close |= f.opcode == 0x8;
        }
        self.eof(saw_close);
    }

    /// Reads an HTTP response head (and body unless 101), recording it.
    async fn read_response(&mut self, random_key: bool, request_closes: bool) {
        let end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end;
            }
            if !self.fill().await {
                self.record(format!(
                    "incomplete response {}",
                    json_str(&String::from_utf8_lossy(&self.buf))
                ));
                self.state = ConnState::Done;
                return;
            }
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let (status, reason, headers, _) = parse_raw_response(&head);
        let mut body = Vec::new();
        if status != 101 {
            if let Some(n) =
                header(&headers, "content-length").and_then(|v| v.parse::<usize>().ok())
            {
                while self.buf.len() < n && self.fill().await {}
                body = self.buf.drain(..n.min(self.buf.len())).collect();
            } else if header(&headers, "transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
            {
                loop {
                    if let Some((b, used)) = dechunk(&self.buf) {
                        body = b;
                        self.buf.drain(..used);
                        break;
                    }
                    if !self.fill().await {
                        break;
                    }
                }
            } else {
                while self.fill().await {}
                body = std::mem::take(&mut self.buf);
            }
        }
        for l in response_lines(
            status,
            &reason,
            &headers,
            &String::from_utf8_lossy(&body),
            random_key,
        ) {
            self.record(l);
        }
        if status == 101 {
            self.state = ConnState::Open;
        } else {
            let closes = request_closes
                || header(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
            // Only a raw exchange shows the TCP end (as the recorder did); the server
            // announced it, so it is an event to wait for.
            if closes && self.raw {
                while self.fill().await {}
                self.record("tcp eof".into());
            }
            self.state = ConnState::Done;
            self.stream = None;
        }
    }
}

/// The reference app's stream of a subscription identifier (`PresenceChannel`:
/// `presence_room_<room_id>`, `ChatChannel`: `chat_<room>`), for the Redis barrier.
fn stream_of(identifier: &str) -> Option<String> {
    let v: Value = serde_json::from_str(identifier).ok()?;
    let param = |k: &str| match &v[k] {
        Value::String(t) => t.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match v["channel"].as_str()? {
        "PresenceChannel" => Some(format!("presence_room_{}", param("room_id"))),
        "ChatChannel" => Some(format!("chat_{}", param("room"))),
        _ => None,
    }
}

/// What ferrocable's Redis holds now, as the recorder reads it.
fn redis_snapshot(redis: &RedisServer, label: &str) -> RedisSnapshot {
    let mut snap = RedisSnapshot {
        label: label.to_owned(),
        ..RedisSnapshot::default()
    };
    for key in redis.keys("*") {
        let kind = redis.cli(&["TYPE", &key]);
        let ttl = redis.ttl(&key);
        let value = match kind.as_str() {
            "string" => Value::String(redis.cli(&["GET", &key])),
            "set" => Value::Array(
                redis
                    .smembers(&key)
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            ),
            _ => Value::Null,
        };
        snap.keys.insert(key, (kind, ttl, key_value(&value)));
    }
    for channel in redis.lines(&["PUBSUB", "CHANNELS"]) {
        let n = redis.numsub(&channel);
        snap.channels.insert(channel, n);
    }
    snap
}

/// Replays the fixture against `server`; returns what ferrocable sent, and in Redis
/// mode ferrocable's Redis at each of the recording's snapshots.
async fn replay(
    server: &TestServer,
    redis: Option<&RedisServer>,
    events: &[Event],
    decls: &[RedisDeclared],
) -> (Transcript, Vec<RedisSnapshot>) {
    let mut conns: Vec<Conn> = Vec::new();
    let mut snapshots = Vec::new();
    let mut barrier_no = 0u64;
    let mut key_no = 0u32;
    for event in events {
        let step = match event {
            Event::Client(step) => step,
            Event::Publish { channel, payload } => {
                let redis = redis.expect("a scenario that PUBLISHes runs in Redis mode");
                let text = String::from_utf8(payload.clone()).expect("UTF-8 payload");
                redis.publish(channel, &text);
                for conn in conns.iter_mut().filter(|c| c.state == ConnState::Open) {
                    conn.settle(Some(redis), &mut barrier_no).await;
                }
                continue;
            }
            Event::Snapshot(recorded) => {
                if let Some(redis) = redis {
                    snapshots.push(take_snapshot(redis, recorded, decls).await);
                }
                continue;
            }
        };
        let i = match conns.iter().position(|c| c.name == step.conn) {
            Some(i) => i,
            None => {
                conns.push(Conn {
                    name: step.conn.clone(),
                    stream: None,
                    buf: Vec::new(),
                    raw: false,
                    state: ConnState::Done,
                    segments: Vec::new(),
                    subscribed: Vec::new(),
                });
                conns.len() - 1
            }
        };
        let conn = &mut conns[i];
        conn.segments.push(Segment {
            sends: step.actions.iter().map(render_action).collect(),
            recvs: Vec::new(),
        });
        let mut sent_close = false;
        for action in &step.actions {
            match action {
                Action::Connect(req) => {
                    key_no += 1;
                    let path = &req.path;
                    let mut text = format!("GET {path} HTTP/1.1\r\n");
                    for (k, v) in &req.headers {
                        let _ = write!(text, "{k}: {v}\r\n");
                    }
                    // Any valid key: the accept value is not compared for these.
                    let key = format!("fixture-key-{key_no:04}");
                    let _ = write!(
                        text,
                        "Sec-WebSocket-Key: {}\r\n\r\n",
                        base64_16(key.as_bytes())
                    );
                    conn.stream = Some(TcpStream::connect(&server.addr).await.expect("connect"));
                    conn.buf.clear();
                    conn.raw = false;
                    conn.write(text.as_bytes()).await;
                    conn.read_response(true, false).await;
                }
                Action::RawHttp(data) => {
                    let (line, rest) = data.split_once("\r\n").expect("request line");
                    let mut parts = line.splitn(3, ' ');
                    let (method, target, version) = (
                        parts.next().unwrap_or(""),
                        parts.next().unwrap_or(""),
                        parts.next().unwrap_or(""),
                    );
                    let headers: Vec<(String, String)> = rest
                        .split("\r\n")
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .collect();
                    let request_closes = header(&headers, "connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                    conn.stream = Some(TcpStream::connect(&server.addr).await.expect("connect"));
                    conn.buf.clear();
                    conn.raw = true;
                    conn.write(format!("{method} {target} {version}\r\n{rest}").as_bytes())
                        .await;
                    conn.read_response(false, request_closes).await;
                }
                Action::Text(t) => {
                    if let Ok(v) = serde_json::from_str::<Value>(t) {
                        if v["command"] == "unsubscribe" {
                            conn.subscribed.retain(|id| v["identifier"] != id.as_str());
                        }
                    }
                    conn.write(&client_frame(0x1, t.as_bytes())).await
                }
                Action::Binary(b) => conn.write(&client_frame(0x2, b)).await,
                Action::Close(code, reason) => {
                    let mut p = Vec::new();
                    if let Some(c) = code {
                        p.extend_from_slice(&c.to_be_bytes());
                        p.extend_from_slice(reason.as_bytes());
                    }
                    conn.write(&client_frame(0x8, &p)).await;
                }
                Action::RawFrame(b) => conn.write(b).await,
            }
            sent_close |= action.sends_close();
        }
        // Settle the acting connection, then everyone else.
        if conn.state != ConnState::Done {
            if sent_close {
                conn.until_eof().await;
            } else if conn.state == ConnState::Open {
                conn.settle(redis, &mut barrier_no).await;
            }
        }
        for (j, other) in conns.iter_mut().enumerate() {
            if j != i && other.state == ConnState::Open {
                other.settle(redis, &mut barrier_no).await;
            }
        }
    }
    let transcript = conns.into_iter().map(|c| (c.name, c.segments)).collect();
    (transcript, snapshots)
}

/// Base64 of 16 bytes (a `Sec-WebSocket-Key`); `input` is padded/truncated to 16.
fn base64_16(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = [0u8; 16];
    for (i, b) in input.iter().take(16).enumerate() {
        bytes[i] = *b;
    }
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| acc << 8 | *b as u32) << (8 * (3 - chunk.len()));
        for k in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
    }
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

// ---------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------

/// A line diff (longest common subsequence): ' ' both, '-' expected only, '+' got only.
fn diff_lines(a: &[String], b: &[String]) -> Vec<(char, String)> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push((' ', a[i].clone()));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(('+', b[j].clone()));
            j += 1;
        } else {
            out.push(('-', a[i].clone()));
            i += 1;
        }
    }
    out
}

/// Replays `protocol-fixtures/<name>.jsonl` against a fresh ferrocable and fails with
/// a per-connection diff (expected = Rails + declared differences, got = ferrocable)
/// on any undeclared difference, or on a declared difference that no longer occurs.
pub async fn check_transcript(name: &str) {
    check(name, None).await;
}

/// [`check_transcript`] in Redis mode: ferrocable runs as a node on its own
/// `redis-server` with the reference app's channel prefix and GlobalID app; the
/// recording's external PUBLISHes are replayed into that Redis, and its KEYS/TTL and
/// PUBSUB snapshots are compared with ferrocable's Redis at the same points (apart from
/// the `[[redis_difference]]`s declared in `differences.toml`).
pub async fn check_transcript_redis(name: &str) {
    let redis = RedisServer::start();
    check(name, Some(&redis)).await;
}

async fn check(name: &str, redis: Option<&RedisServer>) {
    let fixture = parse_fixture(name);
    let mut rails = fixture.expected.clone();
    canonicalize(&mut rails);
    let mut expected = rails.clone();
    let touched = apply_declared(name, &mut expected);

    let mut flags: Vec<String> = server_flags().into_iter().map(String::from).collect();
    if let Some(redis) = redis {
        flags.extend(
            [
                "--redis-url",
                &redis.url(),
                "--channel-prefix",
                crate::support::redis::PREFIX,
                "--globalid-app",
                "refapp",
            ]
            .map(String::from),
        );
    }
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = TestServer::start(&flag_refs);
    let (mut got, snapshots) = replay(&server, redis, &fixture.events, &redis_declared(name)).await;
    normalize_ferrocable(&mut got);

    if std::env::var_os("UPDATE_FIXTURES").is_some_and(|v| v == "1") {
        let dir = fixtures_dir().join("ferrocable");
        std::fs::create_dir_all(&dir).expect("mkdir protocol-fixtures/ferrocable");
        let header = format!(
            "# ferrocable's normalized transcript for {name}.jsonl (UPDATE_FIXTURES=1; for review only,\n# never an expectation). `>` = the replayed client action, `<` = what the server sent.\n"
        );
        std::fs::write(dir.join(format!("{name}.txt")), header + &render(&got))
            .expect("write transcript");
    }

    let mut report = String::new();
    let empty = Vec::new();
    for (conn, diff) in transcript_diff(&expected, &got) {
        let _ = writeln!(
            report,
            "== connection {conn}  (-: Rails + declared differences, +: ferrocable)"
        );
        for (mark, line) in diff {
            let _ = writeln!(report, "{mark} {line}");
        }
        let find = |t: &'_ Transcript| {
            t.iter()
                .find(|(c, _)| *c == conn)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| empty.clone())
        };
        let (exp, act, rail) = (find(&expected), find(&got), find(&rails));
        for (idx, seg) in act.iter().enumerate() {
            let Some(whys) = touched.get(&(conn.clone(), idx)) else {
                continue;
            };
            if exp.get(idx) != Some(seg) {
                let stale = rail.get(idx) == Some(seg);
                let _ = writeln!(
                    report,
                    "   segment at {:?}: {} declared difference(s): {}",
                    seg.sends.first().map(String::as_str).unwrap_or(""),
                    if stale {
                        "ferrocable now matches Rails here; remove the"
                    } else {
                        "does not match the"
                    },
                    whys.join(" | ")
                );
            }
        }
    }
    if redis.is_some() {
        let recorded: Vec<&RedisSnapshot> = fixture
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Snapshot(s) => Some(s),
                _ => None,
            })
            .collect();
        compare_snapshots(name, &recorded, snapshots, &mut report);
    }
    if !report.is_empty() {
        let log = strip_ansi(&server.log());
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "scenario {name}: ferrocable differs from the Rails recording\n{report}\n--- server log (last 40 lines) ---\n{}",
            tail.join("\n")
        );
    }
}

/// The log without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Fixture names (file stems) in `protocol-fixtures/`.
pub fn fixture_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("protocol-fixtures/")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".jsonl"))
                .map(str::to_owned)
        })
        .collect();
    v.sort();
    v
}

/// The comparator on its own: ordering bugs injected into a transcript that otherwise
/// matches a recording must fail it; only Rails' races may pass.
#[cfg(test)]
mod comparator {
    use super::*;

    /// Rails' recording of `name` in canonical order (the expectation, no declarations).
    fn expectation(name: &str) -> Transcript {
        let mut t = parse_fixture(name).expected;
        canonicalize(&mut t);
        t
    }

    /// What the comparison says about `got`, as ferrocable's transcript.
    fn differs(expected: &Transcript, got: &Transcript) -> bool {
        let mut got = got.clone();
        normalize_ferrocable(&mut got);
        !transcript_diff(expected, &got).is_empty()
    }

    /// The (connection, segment) indices of the first segment with lines at `a` and `b`
    /// (a before b) such that `pick` accepts them.
    fn find(
        t: &Transcript,
        pick: impl Fn(&LineKind, &LineKind) -> bool,
    ) -> (usize, usize, usize, usize) {
        for (c, (_, segs)) in t.iter().enumerate() {
            for (s, seg) in segs.iter().enumerate() {
                let kinds: Vec<LineKind> = seg.recvs.iter().map(|l| line_kind(l)).collect();
                for a in 0..kinds.len() {
                    for b in a + 1..kinds.len() {
                        if pick(&kinds[a], &kinds[b]) {
                            return (c, s, a, b);
                        }
                    }
                }
            }
        }
        panic!("no such pair of lines in the recording");
    }

    /// `t` with lines `a` and `b` of one segment swapped.
    fn swapped(t: &Transcript, (c, s, a, b): (usize, usize, usize, usize)) -> Transcript {
        let mut t = t.clone();
        t[c].1[s].recvs.swap(a, b);
        t
    }

    fn same_id(a: &LineKind, b: &LineKind) -> bool {
        matches!((a, b), (LineKind::Identifier { id: x, .. }, LineKind::Identifier { id: y, .. }) if x == y)
    }

    #[test]
    fn the_recording_in_canonical_order_matches_itself() {
        for name in ["presence_two_users", "chat_speak", "handshake_raw"] {
            let rails = expectation(name);
            assert!(!differs(&rails, &rails), "{name}");
        }
    }

    #[test]
    fn a_message_before_its_subscriptions_confirm_fails() {
        let rails = expectation("presence_subscribe_signed");
        let at = find(&rails, |a, b| {
            same_id(a, b)
                && matches!(a, LineKind::Identifier { control: true, .. })
                && matches!(b, LineKind::Identifier { control: false, .. })
        });
        assert!(differs(&rails, &swapped(&rails, at)));
    }

    #[test]
    fn two_messages_of_one_identifier_swapped_fail() {
        let rails = expectation("presence_two_users");
        let at = find(&rails, |a, b| {
            same_id(a, b)
                && matches!(a, LineKind::Identifier { control: false, .. })
                && matches!(b, LineKind::Identifier { control: false, .. })
        });
        let bad = swapped(&rails, at);
        assert_ne!(bad, rails, "the two messages are different lines");
        assert!(differs(&rails, &bad));
    }

    #[test]
    fn a_frame_before_the_welcome_fails() {
        // Its subscribe is written right after the handshake: one segment.
        let rails = expectation("subscribe_before_welcome");
        let at = find(&rails, |a, b| {
            *a == LineKind::Welcome && matches!(b, LineKind::Identifier { .. })
        });
        assert!(differs(&rails, &swapped(&rails, at)));
    }

    #[test]
    fn an_identifier_line_after_a_connection_wide_one_fails() {
        let rails = expectation("remote_disconnect");
        let at = find(&rails, |a, b| {
            matches!(a, LineKind::Identifier { .. }) && *b == LineKind::Other
        });
        assert!(differs(&rails, &swapped(&rails, at)));
    }

    #[test]
    fn different_identifiers_may_interleave_as_in_rails() {
        // Rails' race 4: events of different identifiers have no order to compare.
        let rails = expectation("duplicate_subscribe");
        let at = find(
            &rails,
            |a, b| matches!((a, b), (LineKind::Identifier { id: x, .. }, LineKind::Identifier { id: y, .. }) if x != y),
        );
        let (c, s, a, b) = at;
        let mut moved = rails.clone();
        let line = moved[c].1[s].recvs.remove(b);
        moved[c].1[s].recvs.insert(a, line);
        assert!(!differs(&rails, &moved));
    }

    #[test]
    fn rails_own_races_are_normalized_on_its_side_only() {
        // Rails sent its own message before the confirm here (race 1): canonical order
        // hides that for Rails, and the same order from ferrocable fails.
        let raw = parse_fixture("perform_unknown_action@message_before_confirm").expected;
        find(&raw, |a, b| {
            same_id(a, b)
                && matches!(a, LineKind::Identifier { control: false, .. })
                && matches!(b, LineKind::Identifier { control: true, .. })
        });
        let mut rails = raw.clone();
        canonicalize(&mut rails);
        assert!(differs(&rails, &raw));
    }
}
