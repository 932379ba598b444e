//! Action Cable on top of [`Ws`]: opening a client as user `i`, commands, and a
//! byte-level classification of server frames (no JSON parsing per message).

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::auth::Credentials;
use super::ws::{self, find, Frame, Target, Ws};

/// What every client of a run shares.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server.
    pub target: Target,
    /// What each client presents to authenticate.
    pub credentials: Credentials,
    /// Source addresses to spread clients over (127.0.0.1..127.0.0.K).
    pub sources: Arc<Vec<IpAddr>>,
    /// Bound on each handshake step (connect, upgrade, welcome, confirm).
    pub step_timeout: Duration,
}

/// Why a client could not be opened or subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// TCP connect failed.
    Connect,
    /// The upgrade was refused or broken (e.g. HTTP 503 at the connection cap).
    Upgrade,
    /// The server sent a disconnect (e.g. unauthorized) or closed.
    Rejected,
    /// `reject_subscription`.
    SubscriptionRejected,
    /// A step did not finish in time.
    Timeout,
    /// Another I/O error.
    Io,
}

impl Failure {
    /// The key used in the JSON results.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Upgrade => "upgrade",
            Failure::Rejected => "rejected",
            Failure::SubscriptionRejected => "subscription_rejected",
            Failure::Timeout => "timeout",
            Failure::Io => "io",
        }
    }

    fn from_io(e: &io::Error) -> Failure {
        if e.kind() == io::ErrorKind::TimedOut {
            Failure::Timeout
        } else {
            Failure::Io
        }
    }
}

/// A server frame, classified by its leading/trailing bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// `{"type":"welcome"}`
    Welcome,
    /// `{"type":"ping",…}`
    Ping,
    /// `confirm_subscription`
    Confirm,
    /// `reject_subscription`
    Reject,
    /// `{"type":"disconnect",…}`
    Disconnect,
    /// A message frame (`{"identifier":…,"message":…}`).
    Message,
    /// Anything else.
    Other,
}

/// Classifies a text frame. Rails' shapes (protocol spec §7) have fixed prefixes and
/// suffixes, and identifiers are JSON-escaped inside frames, so bytes suffice
/// (anycable-go's confirm/reject put `type` first; both orders are recognised).
pub fn classify(t: &[u8]) -> Kind {
    if t.starts_with(b"{\"type\":\"ping\"") {
        Kind::Ping
    } else if t.starts_with(b"{\"identifier\":") {
        if t.ends_with(b"\"type\":\"confirm_subscription\"}") {
            Kind::Confirm
        } else if t.ends_with(b"\"type\":\"reject_subscription\"}") {
            Kind::Reject
        } else {
            Kind::Message
        }
    } else if t.starts_with(b"{\"type\":\"confirm_subscription\"") {
        // anycable-go writes the type first.
        Kind::Confirm
    } else if t.starts_with(b"{\"type\":\"reject_subscription\"") {
        Kind::Reject
    } else if t == b"{\"type\":\"welcome\"}" {
        Kind::Welcome
    } else if t.starts_with(b"{\"type\":\"disconnect\"") {
        Kind::Disconnect
    } else {
        Kind::Other
    }
}

/// An Action Cable command frame: `{"command":…,"identifier":…[,"data":…]}`.
pub fn command(kind: &str, identifier: &str, data: Option<&str>) -> Vec<u8> {
    let mut v = format!(
        r#"{{"command":"{kind}","identifier":{}"#,
        serde_json::Value::from(identifier)
    );
    if let Some(d) = data {
        v.push_str(",\"data\":");
        v.push_str(&serde_json::Value::from(d).to_string());
    }
    v.push('}');
    v.into_bytes()
}

/// Parses the decimal integer at the start of `b`.
pub fn leading_u64(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        n += 1;
    }
    (n > 0).then_some((v, n))
}

/// The integer following `key` (e.g. `"seq":`) in `t`, and the index after it.
pub fn int_after(t: &[u8], key: &[u8]) -> Option<(u64, usize)> {
    let at = find(t, key)? + key.len();
    let (v, n) = leading_u64(&t[at..])?;
    Some((v, at + n))
}

/// Opens client `i` as user `user`: TCP connect from the `i`-th source address,
/// upgrade, and wait for the welcome.
///
/// # Errors
/// The failure kind.
pub async fn open(cfg: &ClientConfig, i: usize, user: u64) -> Result<Ws, Failure> {
    let source = cfg.sources[i % cfg.sources.len()];
    let tcp = ws::within(
        cfg.step_timeout,
        ws::tcp_connect(Some(source), cfg.target.addr),
    )
    .await
    .map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut {
            Failure::Timeout
        } else {
            Failure::Connect
        }
    })?;
    let creds = cfg.credentials.present(user);
    let path = cfg.target.path_with(&creds.query);
    let mut ws = match tokio::time::timeout(
        cfg.step_timeout,
        Ws::handshake(
            tcp,
            &cfg.target.authority,
            &path,
            &creds.headers,
            i as u64 + 1,
        ),
    )
    .await
    {
        Err(_) => return Err(Failure::Timeout),
        Ok(Err(ws::HandshakeError::Io(_))) => return Err(Failure::Io),
        Ok(Err(_)) => return Err(Failure::Upgrade),
        Ok(Ok(ws)) => ws,
    };
    wait_for(&mut ws, cfg.step_timeout, |k| match k {
        Kind::Welcome => Some(Ok(())),
        Kind::Disconnect => Some(Err(Failure::Rejected)),
        _ => None,
    })
    .await?;
    Ok(ws)
}

/// Reads frames until `done` returns a verdict for one, bounded by `limit`.
///
/// # Errors
/// The verdict's failure, a close, or a timeout.
pub async fn wait_for(
    ws: &mut Ws,
    limit: Duration,
    mut done: impl FnMut(Kind) -> Option<Result<(), Failure>>,
) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let f = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Err(e)) => return Err(Failure::from_io(&e)),
            Ok(Ok(None)) => return Err(Failure::Rejected),
            Ok(Ok(Some(f))) => f,
        };
        match f {
            Frame::Text(t) => {
                if let Some(v) = done(classify(t)) {
                    return v;
                }
            }
            Frame::Close(_) => return Err(Failure::Rejected),
            Frame::Pong(_) => {}
        }
    }
}

/// Subscribes to `identifier` and waits for the confirmation.
///
/// # Errors
/// Rejection, disconnect, timeout.
pub async fn subscribe(ws: &mut Ws, identifier: &str, limit: Duration) -> Result<(), Failure> {
    ws.send_text(&command("subscribe", identifier, None))
        .await
        .map_err(|e| Failure::from_io(&e))?;
    wait_for(ws, limit, |k| match k {
        Kind::Confirm => Some(Ok(())),
        Kind::Reject => Some(Err(Failure::SubscriptionRejected)),
        Kind::Disconnect => Some(Err(Failure::Rejected)),
        _ => None,
    })
    .await
}

/// Opens client `i` as `user` and subscribes it to `identifier`: the first step of
/// every subscriber of the generator's modes.
///
/// # Errors
/// The first failure, of the connect or of the subscribe.
pub async fn open_subscribed(
    cfg: &ClientConfig,
    i: usize,
    user: u64,
    identifier: &str,
) -> Result<Ws, Failure> {
    let mut ws = open(cfg, i, user).await?;
    subscribe(&mut ws, identifier, cfg.step_timeout).await?;
    Ok(ws)
}

/// Collects the readiness reports of a mode's subscribers until every sender is gone or
/// `deadline` passes: how many got ready, and the failures by kind.
pub async fn count_ready(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Result<(), Failure>>,
    deadline: tokio::time::Instant,
) -> (usize, std::collections::BTreeMap<Failure, u64>) {
    let mut failures = std::collections::BTreeMap::new();
    let mut ready = 0;
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match r {
            Ok(()) => ready += 1,
            Err(f) => *failures.entry(f).or_default() += 1,
        }
    }
    (ready, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_classify() {
        assert_eq!(classify(br#"{"type":"welcome"}"#), Kind::Welcome);
        assert_eq!(classify(br#"{"type":"ping","message":1}"#), Kind::Ping);
        assert_eq!(
            classify(br#"{"identifier":"{\"channel\":\"X\"}","type":"confirm_subscription"}"#),
            Kind::Confirm
        );
        assert_eq!(
            classify(br#"{"identifier":"{\"channel\":\"X\"}","type":"reject_subscription"}"#),
            Kind::Reject
        );
        assert_eq!(
            classify(br#"{"type":"confirm_subscription","identifier":"{\"channel\":\"X\"}"}"#),
            Kind::Confirm
        );
        assert_eq!(
            classify(br#"{"type":"reject_subscription","identifier":"{\"channel\":\"X\"}"}"#),
            Kind::Reject
        );
        assert_eq!(
            classify(br#"{"identifier":"{\"channel\":\"X\"}","message":{"seq":1}}"#),
            Kind::Message
        );
        assert_eq!(
            classify(br#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#),
            Kind::Disconnect
        );
    }

    #[test]
    fn commands_double_encode() {
        assert_eq!(
            String::from_utf8(command("message", r#"{"channel":"C"}"#, Some(r#"{"a":1}"#)))
                .expect("utf8"),
            r#"{"command":"message","identifier":"{\"channel\":\"C\"}","data":"{\"a\":1}"}"#
        );
    }

    #[test]
    fn ints_after_keys() {
        let t = br#"{"identifier":"x","message":{"seq":42,"s":3,"t":1234}}"#;
        let (seq, at) = int_after(t, b"\"seq\":").expect("seq");
        assert_eq!(seq, 42);
        assert_eq!(int_after(&t[at..], b"\"t\":").expect("t").0, 1234);
        assert_eq!(leading_u64(b"x"), None);
    }
}
