//! Server → client frames, encoded once into shareable [`Bytes`].
//!
//! Every function returns the exact text-frame payload Rails 6.1 sends (key order and
//! escaping included); the reference transcripts hold the ground truth.

use bytes::Bytes;

use super::json::write_str;
use super::Identifier;

/// `{"type":"welcome"}`
pub const WELCOME: &[u8] = br#"{"type":"welcome"}"#;

/// `{"type":"ping","message":<unix seconds>}`
pub fn ping(unix_secs: u64) -> Bytes {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(br#"{"type":"ping","message":"#);
    out.extend_from_slice(itoa::Buffer::new().format(unix_secs).as_bytes());
    out.push(b'}');
    Bytes::from(out)
}

/// `{"identifier":"…","type":"confirm_subscription"}`
pub fn confirm(identifier: &Identifier) -> Bytes {
    typed(identifier, "confirm_subscription")
}

/// `{"identifier":"…","type":"reject_subscription"}`
pub fn reject(identifier: &Identifier) -> Bytes {
    typed(identifier, "reject_subscription")
}

fn typed(identifier: &Identifier, kind: &str) -> Bytes {
    let mut out = Vec::with_capacity(identifier.as_str().len() + 64);
    out.extend_from_slice(br#"{"identifier":"#);
    write_str(&mut out, identifier.as_str());
    out.extend_from_slice(br#","type":""#);
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\"}");
    Bytes::from(out)
}

/// `{"identifier":"…","message":<payload>}` where `payload` is already-encoded JSON.
pub fn message(identifier: &Identifier, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(identifier.as_str().len() + payload.len() + 40);
    out.extend_from_slice(br#"{"identifier":"#);
    write_str(&mut out, identifier.as_str());
    out.extend_from_slice(br#","message":"#);
    out.extend_from_slice(payload);
    out.push(b'}');
    Bytes::from(out)
}

/// Why the server ends a connection, with the reconnect policy that goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// Authentication failed (`reject_unauthorized_connection`); the client must not retry.
    Unauthorized,
    /// The server is shutting down or restarting; the client should come back.
    ServerRestart,
    /// Disconnected through the Rails internal channel (`remote_connections`).
    Remote {
        /// The `reconnect` flag the publisher asked for.
        reconnect: bool,
    },
    /// The client did not read fast enough and its outbox overflowed.
    SlowClient,
    /// The client kept flooding commands past the rate limit (`invalid_request`, the
    /// Action Cable reason for a request the server refuses); it must not retry.
    InvalidRequest,
}

impl DisconnectReason {
    /// The `reason` string on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            DisconnectReason::Unauthorized => "unauthorized",
            DisconnectReason::ServerRestart => "server_restart",
            DisconnectReason::Remote { .. } => "remote",
            // Not one of Rails' reasons; clients only log the reason and act on `reconnect`.
            DisconnectReason::SlowClient => "slow_client",
            DisconnectReason::InvalidRequest => "invalid_request",
        }
    }

    /// Whether the client should reconnect.
    pub fn reconnect(&self) -> bool {
        match self {
            DisconnectReason::Unauthorized | DisconnectReason::InvalidRequest => false,
            DisconnectReason::ServerRestart | DisconnectReason::SlowClient => true,
            DisconnectReason::Remote { reconnect } => *reconnect,
        }
    }

    /// `{"type":"disconnect","reason":"…","reconnect":…}`
    pub fn frame(&self) -> Bytes {
        let mut out = Vec::with_capacity(72);
        out.extend_from_slice(br#"{"type":"disconnect","reason":""#);
        out.extend_from_slice(self.as_str().as_bytes());
        out.extend_from_slice(br#"","reconnect":"#);
        out.extend_from_slice(if self.reconnect() { b"true" } else { b"false" });
        out.push(b'}');
        Bytes::from(out)
    }
}

/// A close code the server sends (RFC 6455 §7.4.1). Codes a client sends are checked
/// as numbers (`server::frame::check_close`), since any code of 3000–4999 is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: after a disconnect frame, and Rails-6.1-style remote disconnects.
    Normal,
    /// 1002: a frame or a sequence of frames the RFC forbids.
    ProtocolError,
    /// 1007: a text message or close reason that is not UTF-8.
    InvalidPayload,
    /// 1009: a frame or message over the size limit.
    MessageTooBig,
    /// 1011: the server failed (authentication could not run).
    InternalError,
}

impl CloseCode {
    /// The number on the wire.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidPayload => 1007,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
        }
    }

    /// The close frame's payload: the code, no reason.
    pub fn payload(self) -> [u8; 2] {
        self.code().to_be_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_rails_bytes() {
        let id = Identifier::new(r#"{"channel":"ChatChannel","room":"lobby"}"#);
        assert_eq!(
            &confirm(&id)[..],
            br#"{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","type":"confirm_subscription"}"#
        );
        assert_eq!(
            &reject(&id)[..],
            br#"{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","type":"reject_subscription"}"#
        );
        assert_eq!(
            &message(&id, br#"{"text":"hi"}"#)[..],
            br#"{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","message":{"text":"hi"}}"#
        );
        assert_eq!(
            &ping(1795832000)[..],
            br#"{"type":"ping","message":1795832000}"#
        );
        assert_eq!(
            &DisconnectReason::Unauthorized.frame()[..],
            br#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#
        );
        assert_eq!(
            &DisconnectReason::ServerRestart.frame()[..],
            br#"{"type":"disconnect","reason":"server_restart","reconnect":true}"#
        );
    }

    #[test]
    fn identifier_echo_escapes_like_rails() {
        let id = Identifier::new(r#"{"channel":"C","x":"<&>"}"#);
        assert_eq!(
            &confirm(&id)[..],
            br#"{"identifier":"{\"channel\":\"C\",\"x\":\"\u003c\u0026\u003e\"}","type":"confirm_subscription"}"#
        );
    }
}
