//! The Action Cable wire format (subprotocol `actioncable-v1-json`).
//!
//! This is the only module that knows the JSON shapes of frames. Everything else
//! handles typed values: [`ClientCommand`] for what a client sends, and the
//! pre-encoded frames built by [`frames`] for what the server sends.
//!
//! # Invariants
//! - No I/O and no tokio here: every function is pure and unit-tested.
//! - An [`Identifier`] is the exact string the client sent; it is echoed byte for byte
//!   (after the outer JSON string decoding), never rebuilt from parsed params.
//! - Server frames are encoded the way `ActiveSupport::JSON.encode` encodes them
//!   (key order, no spaces, `<`, `>`, `&`, U+2028 and U+2029 escaped).

pub mod command;
pub mod frames;
pub mod internal;
pub mod json;
pub mod ruby;

pub use command::{
    clip, ChannelParams, ClientCommand, Clipped, DecodeError, Identifier, IdentifierError,
};
pub use frames::{CloseCode, DisconnectReason};
pub use internal::{InternalError, InternalMessage};

/// The subprotocol Action Cable clients speak.
pub const PROTOCOL_V1_JSON: &str = "actioncable-v1-json";
/// The subprotocol a server selects to make a client stop without reconnecting.
pub const PROTOCOL_UNSUPPORTED: &str = "actioncable-unsupported";

/// Picks the subprotocol the way Rails (websocket-driver) does: the first entry of the
/// client's `Sec-WebSocket-Protocol` list that the server supports, or none.
///
/// `offered` is every `Sec-WebSocket-Protocol` header value, in order.
pub fn select_subprotocol<'a, I>(offered: I) -> Option<&'static str>
where
    I: IntoIterator<Item = &'a str>,
{
    offered
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| match p {
            PROTOCOL_V1_JSON => Some(PROTOCOL_V1_JSON),
            PROTOCOL_UNSUPPORTED => Some(PROTOCOL_UNSUPPORTED),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocol_is_first_supported_offer() {
        // The cases of the reference's `subprotocols` scenario.
        assert_eq!(select_subprotocol([]), None);
        assert_eq!(select_subprotocol(["foo"]), None);
        assert_eq!(
            select_subprotocol(["actioncable-unsupported"]),
            Some(PROTOCOL_UNSUPPORTED)
        );
        assert_eq!(
            select_subprotocol(["foo, actioncable-v1-json"]),
            Some(PROTOCOL_V1_JSON)
        );
        assert_eq!(
            select_subprotocol(["actioncable-unsupported,actioncable-v1-json"]),
            Some(PROTOCOL_UNSUPPORTED)
        );
        assert_eq!(
            select_subprotocol(["actioncable-v1-json, actioncable-unsupported"]),
            Some(PROTOCOL_V1_JSON)
        );
        assert_eq!(
            select_subprotocol(["foo", "actioncable-v1-json"]),
            Some(PROTOCOL_V1_JSON)
        );
    }
}
