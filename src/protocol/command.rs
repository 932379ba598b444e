//! Client → server commands: `subscribe`, `unsubscribe`, `message`.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::ruby::{self, Uninterpolable};

/// A subscription identifier: the exact string the client sent (the JSON of its
/// channel params, as `JSON.stringify` wrote it). Cheap to clone: it is shared by
/// every frame and index entry that names the subscription.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier(Arc<str>);

impl Identifier {
    /// Wraps the identifier string as received.
    pub fn new(raw: &str) -> Self {
        Identifier(Arc::from(raw))
    }

    /// The identifier exactly as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the identifier into channel params, as Rails does before it looks the
    /// channel class up.
    ///
    /// # Errors
    /// When the string is not a JSON object with a string `channel`.
    pub fn params(&self) -> Result<ChannelParams, IdentifierError> {
        let value: Value = serde_json::from_str(&self.0).map_err(|_| IdentifierError::NotJson)?;
        let Value::Object(map) = value else {
            return Err(IdentifierError::NotAnObject);
        };
        let channel = match map.get("channel") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(IdentifierError::ChannelNotAString),
            None => return Err(IdentifierError::MissingChannel),
        };
        Ok(ChannelParams {
            channel,
            params: map,
        })
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Shown clipped ([`clip`]): Display is for log lines, and the string is the client's.
impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&clip(&self.0), f)
    }
}

/// Characters of a client value a log line shows at most ([`clip`]).
pub const LOG_CLIP: usize = 200;

/// A client value as a log line shows it: its first [`LOG_CLIP`] characters, then how
/// many bytes were left out, so a client cannot make one log line arbitrarily long.
#[derive(Clone, Copy)]
pub struct Clipped<'a> {
    shown: &'a str,
    left_out: usize,
}

/// Clips `s` for a log line (see [`Clipped`]).
pub fn clip(s: &str) -> Clipped<'_> {
    let end = s.char_indices().nth(LOG_CLIP).map_or(s.len(), |(i, _)| i);
    Clipped {
        shown: &s[..end],
        left_out: s.len() - end,
    }
}

impl Clipped<'_> {
    fn suffix(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.left_out > 0 {
            write!(f, "…(+{} bytes)", self.left_out)?;
        }
        Ok(())
    }
}

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown)?;
        self.suffix(f)
    }
}

impl fmt::Debug for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.shown, f)?;
        self.suffix(f)
    }
}

/// Why an identifier names no channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// The identifier string is not JSON.
    #[error("identifier is not JSON")]
    NotJson,
    /// The identifier is JSON but not an object.
    #[error("identifier is not a JSON object")]
    NotAnObject,
    /// The object has no `channel` key.
    #[error("identifier has no channel")]
    MissingChannel,
    /// `channel` is not a string.
    #[error("identifier's channel is not a string")]
    ChannelNotAString,
}

/// The decoded params of a subscription (`params` in a Rails channel).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelParams {
    /// The Ruby class name of the channel, e.g. `PresenceChannel`.
    pub channel: String,
    /// Every key of the identifier, `channel` included, in the client's order.
    pub params: Map<String, Value>,
}

impl ChannelParams {
    /// A param as Ruby's string interpolation (`"#{params[:x]}"`) renders it, through
    /// [`crate::protocol::ruby::interpolate`]: strings as they are, numbers as Ruby's
    /// `to_s` writes them (`1.50` → `1.5`), booleans as words, `nil` (missing or null)
    /// as `None`.
    ///
    /// # Errors
    /// [`Uninterpolable`] for an array or object param: the caller refuses the
    /// subscription.
    pub fn param_text(&self, key: &str) -> Result<Option<String>, Uninterpolable> {
        match self.params.get(key) {
            None => Ok(None),
            Some(v) => ruby::interpolate(v),
        }
    }
}

/// A command from the client, decoded from one text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientCommand {
    /// `{"command":"subscribe","identifier":…}`
    Subscribe {
        /// The subscription's identifier.
        identifier: Identifier,
    },
    /// `{"command":"unsubscribe","identifier":…}`
    Unsubscribe {
        /// The subscription's identifier.
        identifier: Identifier,
    },
    /// `{"command":"message","identifier":…,"data":"<JSON string>"}` (`perform`).
    Message {
        /// The subscription's identifier.
        identifier: Identifier,
        /// The decoded `data` object.
        data: Map<String, Value>,
    },
}

impl ClientCommand {
    /// The identifier the command is about.
    pub fn identifier(&self) -> &Identifier {
        match self {
            ClientCommand::Subscribe { identifier }
            | ClientCommand::Unsubscribe { identifier }
            | ClientCommand::Message { identifier, .. } => identifier,
        }
    }

    /// Decodes one client text frame.
    ///
    /// # Errors
    /// Every malformed shape gets its own [`DecodeError`]; Rails answers all of them
    /// with silence (it only logs), and so does the caller.
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let value: Value = serde_json::from_slice(frame).map_err(|_| DecodeError::NotJson)?;
        let Value::Object(mut map) = value else {
            return Err(DecodeError::NotAnObject);
        };
        let command = match map.get("command") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) | None => return Err(DecodeError::MissingCommand),
        };
        let kind = match command {
            "subscribe" => Kind::Subscribe,
            "unsubscribe" => Kind::Unsubscribe,
            "message" => Kind::Message,
            other => return Err(DecodeError::UnknownCommand(truncate(other))),
        };
        let identifier = match map.get("identifier") {
            Some(Value::String(s)) => Identifier::new(s),
            Some(_) => return Err(DecodeError::IdentifierNotAString),
            None => return Err(DecodeError::MissingIdentifier),
        };
        Ok(match kind {
            Kind::Subscribe => ClientCommand::Subscribe { identifier },
            Kind::Unsubscribe => ClientCommand::Unsubscribe { identifier },
            Kind::Message => {
                let data = match map.remove("data") {
                    Some(Value::String(s)) => s,
                    Some(_) | None => return Err(DecodeError::DataNotAString),
                };
                let data = match serde_json::from_str::<Value>(&data) {
                    Ok(Value::Object(m)) => m,
                    Ok(_) => return Err(DecodeError::DataNotAnObject),
                    Err(_) => return Err(DecodeError::DataNotJson),
                };
                ClientCommand::Message { identifier, data }
            }
        })
    }
}

enum Kind {
    Subscribe,
    Unsubscribe,
    Message,
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Why a client frame is not a command. Each is answered with silence, as in Rails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is not JSON.
    #[error("frame is not JSON")]
    NotJson,
    /// The frame is JSON but not an object.
    #[error("frame is not a JSON object")]
    NotAnObject,
    /// No `command` string.
    #[error("frame has no command")]
    MissingCommand,
    /// A `command` Rails does not know.
    #[error("unrecognized command {0:?}")]
    UnknownCommand(String),
    /// No `identifier`.
    #[error("command has no identifier")]
    MissingIdentifier,
    /// `identifier` is not a string.
    #[error("identifier is not a string")]
    IdentifierNotAString,
    /// `data` of a `message` is missing or not a string.
    #[error("message data is not a string")]
    DataNotAString,
    /// `data` is a string but not JSON.
    #[error("message data is not JSON")]
    DataNotJson,
    /// `data` is JSON but not an object.
    #[error("message data is not a JSON object")]
    DataNotAnObject,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_values_are_clipped_for_logs() {
        assert_eq!(clip("short").to_string(), "short");
        let long = "é".repeat(LOG_CLIP + 10);
        let shown = clip(&long).to_string();
        assert!(shown.starts_with(&"é".repeat(LOG_CLIP)), "{shown}");
        assert!(shown.ends_with("…(+20 bytes)"), "{shown}");
        assert_eq!(
            format!("{:?}", clip(&"\"".repeat(LOG_CLIP + 1))),
            format!("{:?}…(+1 bytes)", "\"".repeat(LOG_CLIP))
        );
        let id = Identifier::new(&format!(
            r#"{{"channel":"C","x":"{}"}}"#,
            "y".repeat(10_000)
        ));
        assert!(id.to_string().len() < 300, "identifiers display clipped");
        assert_eq!(id.as_str().len(), 10_022, "and stay whole");
    }

    #[test]
    fn decodes_the_three_commands() {
        let sub = br#"{"command":"subscribe","identifier":"{\"channel\":\"PresenceChannel\",\"room_id\":\"1\"}"}"#;
        let ClientCommand::Subscribe { identifier } = ClientCommand::decode(sub).expect("valid")
        else {
            panic!("not a subscribe")
        };
        assert_eq!(
            identifier.as_str(),
            r#"{"channel":"PresenceChannel","room_id":"1"}"#
        );
        let params = identifier.params().expect("valid params");
        assert_eq!(params.channel, "PresenceChannel");
        assert_eq!(
            params.param_text("room_id").ok().flatten().as_deref(),
            Some("1")
        );

        let msg = br#"{"command":"message","identifier":"{\"channel\":\"ChatChannel\"}","data":"{\"text\":\"hi\",\"action\":\"speak\"}"}"#;
        let ClientCommand::Message { data, .. } = ClientCommand::decode(msg).expect("valid") else {
            panic!("not a message")
        };
        assert_eq!(data.get("action"), Some(&Value::String("speak".into())));

        let unsub = br#"{"command":"unsubscribe","identifier":"x"}"#;
        assert!(matches!(
            ClientCommand::decode(unsub),
            Ok(ClientCommand::Unsubscribe { .. })
        ));
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        // The cases of the reference's `unknown_command` and `perform_unknown_action`.
        let cases: &[(&[u8], DecodeError)] = &[
            (
                br#"{"command":"explode"}"#,
                DecodeError::UnknownCommand("explode".into()),
            ),
            (br#"{"identifier":"x"}"#, DecodeError::MissingCommand),
            (b"hello there", DecodeError::NotJson),
            (b"[1,2,3]", DecodeError::NotAnObject),
            (br#""subscribe""#, DecodeError::NotAnObject),
            (b"", DecodeError::NotJson),
            (
                br#"{"command":"subscribe"}"#,
                DecodeError::MissingIdentifier,
            ),
            (
                br#"{"command":"subscribe","identifier":{"channel":"X"}}"#,
                DecodeError::IdentifierNotAString,
            ),
            (
                br#"{"command":"message","identifier":"x"}"#,
                DecodeError::DataNotAString,
            ),
            (
                br#"{"command":"message","identifier":"x","data":{"a":1}}"#,
                DecodeError::DataNotAString,
            ),
            (
                br#"{"command":"message","identifier":"x","data":"nope"}"#,
                DecodeError::DataNotJson,
            ),
            (
                br#"{"command":"message","identifier":"x","data":"[1]"}"#,
                DecodeError::DataNotAnObject,
            ),
        ];
        for (frame, want) in cases {
            assert_eq!(
                &ClientCommand::decode(frame).unwrap_err(),
                want,
                "{:?}",
                String::from_utf8_lossy(frame)
            );
        }
    }

    #[test]
    fn bad_identifiers_are_typed_errors() {
        // The cases of the reference's `subscribe_bad_identifier`.
        assert_eq!(
            Identifier::new("nope").params(),
            Err(IdentifierError::NotJson)
        );
        assert_eq!(
            Identifier::new("[1,2]").params(),
            Err(IdentifierError::NotAnObject)
        );
        assert_eq!(
            Identifier::new("1").params(),
            Err(IdentifierError::NotAnObject)
        );
        assert_eq!(
            Identifier::new(r#"{"room":"1"}"#).params(),
            Err(IdentifierError::MissingChannel)
        );
        assert_eq!(
            Identifier::new(r#"{"channel":1}"#).params(),
            Err(IdentifierError::ChannelNotAString)
        );
    }

    #[test]
    fn param_text_interpolates_like_ruby() {
        let p = Identifier::new(
            r#"{"channel":"C","a":1,"b":"x","c":null,"d":true,"e":1.50,"f":1e2,"g":[1]}"#,
        )
        .params()
        .expect("valid");
        let text = |k: &str| p.param_text(k).expect("scalar");
        assert_eq!(text("a").as_deref(), Some("1"));
        assert_eq!(text("b").as_deref(), Some("x"));
        assert_eq!(text("c"), None);
        assert_eq!(text("d").as_deref(), Some("true"));
        assert_eq!(text("missing"), None);
        // Floats as Ruby's `to_s` writes them, not as the client did.
        assert_eq!(text("e").as_deref(), Some("1.5"));
        assert_eq!(text("f").as_deref(), Some("100.0"));
        assert_eq!(p.param_text("g"), Err(Uninterpolable));
    }
}
