//! Moves broadcasts between nodes.
//!
//! A [`Broker`] carries `(stream, payload)` pairs; whatever it receives it hands to the
//! [`BroadcastHandler`] it was built with (the server wires that to the hub). It never
//! calls into other modules itself.
//!
//! # Invariants
//! - Delivery is at most once: a broadcast published while a node is unreachable is
//!   lost, never replayed.
//! - Order holds per stream per publishing node, and nothing more.
//! - [`Broker::subscribe`] returns only once broadcasts published afterwards will be
//!   delivered, so a caller may confirm a subscription right after it.
//! - Payloads are encoded JSON, in the bytes subscribers receive as `message`.
//! - Streams named `action_cable/…` are Action Cable's per-connection internal channels
//!   (remote disconnects): their payloads go to [`BroadcastHandler::on_internal`], raw,
//!   never to [`BroadcastHandler::on_broadcast`].

pub mod memory;
pub mod redis;
pub mod settings;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use memory::MemoryBroker;
pub use redis::{RedisBroker, RedisBrokerConfig};
pub use settings::{BrokerSettings, ConnectedBroker};

/// The broadcasting prefix of Action Cable's per-connection internal channels
/// (`action_cable/<connection identifier>`, where `remote_connections.disconnect` publishes).
pub const INTERNAL_PREFIX: &str = "action_cable/";

/// Whether `stream` is an internal channel (see [`INTERNAL_PREFIX`]).
pub fn is_internal(stream: &str) -> bool {
    stream.starts_with(INTERNAL_PREFIX)
}

/// Receives what a broker delivers.
pub trait BroadcastHandler: Send + Sync + 'static {
    /// A broadcast arrived for `stream`; `payload` is encoded JSON.
    fn on_broadcast(&self, stream: &str, payload: &[u8]);

    /// A message arrived on an internal channel (`action_cable/<identifier>`); `payload`
    /// is exactly what was published (Rails: `{"type":"disconnect"}`, 7.1+ with
    /// `"reconnect"`). The default ignores it: remote disconnects are wired by whoever
    /// subscribes those channels.
    fn on_internal(&self, stream: &str, payload: &[u8]) {
        tracing::debug!(stream, bytes = payload.len(), "internal message ignored");
    }
}

/// Whether the broker's backend is reachable, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerHealth {
    /// Single node, in memory: nothing to reach.
    Embedded,
    /// Redis: `up` while both the publisher and the subscriber connection are ready.
    Redis {
        /// Both connections are ready.
        up: bool,
    },
}

/// A broker failure.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The backing service failed or is unreachable. The cause is also in the
    /// message, so a log line that prints only this error still says why.
    #[error("broker: {op}: {source}")]
    Backend {
        /// What was attempted (a command and its channel).
        op: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend cannot be set up (bad URL, unsupported deployment, unreachable
    /// while required).
    #[error(transparent)]
    Setup(#[from] crate::redis::RedisSetupError),
}

impl BrokerError {
    /// A failed `op` (a command and its channel), caused by `source`.
    pub fn backend(
        op: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BrokerError::Backend {
            op: op.into(),
            source: source.into(),
        }
    }
}

/// Publish/subscribe for broadcasts.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Publishes `payload` (encoded JSON) to every subscriber of `stream` on every node.
    ///
    /// # Errors
    /// When the backend fails; the broadcast is then lost.
    async fn publish(&self, stream: &str, payload: Bytes) -> Result<(), BrokerError>;

    /// Starts receiving `stream` on this node; called on its first local subscriber.
    ///
    /// # Errors
    /// When the backend fails.
    async fn subscribe(&self, stream: &str) -> Result<(), BrokerError>;

    /// Stops receiving `stream`; called when its last local subscriber leaves.
    ///
    /// # Errors
    /// When the backend fails.
    async fn unsubscribe(&self, stream: &str) -> Result<(), BrokerError>;

    /// Whether the backend is reachable.
    fn health(&self) -> BrokerHealth {
        BrokerHealth::Embedded
    }
}

/// A shared broker.
pub type SharedBroker = Arc<dyn Broker>;

#[cfg(test)]
mod tests {
    use super::BrokerError;
    use std::error::Error;

    #[test]
    fn backend_errors_keep_their_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let b = BrokerError::backend("redis PUBLISH app:chat", io);
        assert_eq!(
            b.to_string(),
            "broker: redis PUBLISH app:chat: reset by peer"
        );
        assert_eq!(
            b.source().map(ToString::to_string).as_deref(),
            Some("reset by peer")
        );
    }
}
