//! The single-node broker: a publish is delivered to the local handler right away.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{BroadcastHandler, Broker, BrokerError};

/// Delivers every publish synchronously to its handler, in publish order.
pub struct MemoryBroker {
    handler: Arc<dyn BroadcastHandler>,
}

impl MemoryBroker {
    /// A broker delivering to `handler`.
    pub fn new(handler: Arc<dyn BroadcastHandler>) -> Self {
        MemoryBroker { handler }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, stream: &str, payload: Bytes) -> Result<(), BrokerError> {
        if super::is_internal(stream) {
            self.handler.on_internal(stream, &payload);
            return Ok(());
        }
        self.handler.on_broadcast(stream, &payload);
        Ok(())
    }

    async fn subscribe(&self, _stream: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn unsubscribe(&self, _stream: &str) -> Result<(), BrokerError> {
        Ok(())
    }
}
