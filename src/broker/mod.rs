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

pub mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use memory::MemoryBroker;

/// Receives what a broker delivers.
pub trait BroadcastHandler: Send + Sync + 'static {
    /// A broadcast arrived for `stream`; `payload` is encoded JSON.
    fn on_broadcast(&self, stream: &str, payload: &[u8]);
}

/// A broker failure.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The backing service failed or is unreachable.
    #[error("broker backend failed: {0}")]
    Backend(String),
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
}

/// A shared broker.
pub type SharedBroker = Arc<dyn Broker>;
