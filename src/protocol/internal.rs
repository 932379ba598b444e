//! Messages on Action Cable's per-connection internal channels
//! (`action_cable/<connection identifier>`), where
//! `ActionCable.server.remote_connections.where(…).disconnect` publishes.
//!
//! Rails 6.1 publishes `{"type":"disconnect"}` and closes the socket with no frame;
//! 7.1+ adds `"reconnect"` and sends `{"type":"disconnect","reason":"remote",
//! "reconnect":…}` first. [`InternalMessage::decode`] tells them apart.

use serde_json::Value;

/// One decoded internal-channel message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalMessage {
    /// `{"type":"disconnect"}`: close the user's connections. `reconnect` is `None`
    /// for Rails ≤ 7.0's shape (close with no frame), else the flag to send in a
    /// `remote` disconnect frame (anything but `false` counts as `true`, as in Rails).
    Disconnect {
        /// The message's `reconnect`, when it has one.
        reconnect: Option<bool>,
    },
}

/// An internal-channel message that is not one we act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InternalError {
    /// Not a JSON object.
    #[error("internal message is not a JSON object")]
    NotAnObject,
    /// A JSON object whose `type` is not `disconnect`.
    #[error("internal message of unknown type")]
    UnknownType,
}

impl InternalMessage {
    /// Decodes a payload published on an internal channel.
    ///
    /// # Errors
    /// When the payload is not a message we know (see [`InternalError`]).
    pub fn decode(payload: &[u8]) -> Result<InternalMessage, InternalError> {
        let Ok(Value::Object(msg)) = serde_json::from_slice::<Value>(payload) else {
            return Err(InternalError::NotAnObject);
        };
        if msg.get("type").and_then(Value::as_str) != Some("disconnect") {
            return Err(InternalError::UnknownType);
        }
        Ok(InternalMessage::Disconnect {
            reconnect: msg.get("reconnect").map(|v| v.as_bool().unwrap_or(true)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnects_of_both_rails_shapes_decode() {
        let d = |s: &str| InternalMessage::decode(s.as_bytes());
        assert_eq!(
            d(r#"{"type":"disconnect"}"#),
            Ok(InternalMessage::Disconnect { reconnect: None })
        );
        assert_eq!(
            d(r#"{"type":"disconnect","reconnect":false}"#),
            Ok(InternalMessage::Disconnect {
                reconnect: Some(false)
            })
        );
        assert_eq!(
            d(r#"{"type":"disconnect","reconnect":null}"#),
            Ok(InternalMessage::Disconnect {
                reconnect: Some(true)
            })
        );
        assert_eq!(d("[1]"), Err(InternalError::NotAnObject));
        assert_eq!(d("nope"), Err(InternalError::NotAnObject));
        assert_eq!(d(r#"{"type":"ping"}"#), Err(InternalError::UnknownType));
    }
}
