//! Wrappers that observe the presence store and the broker from outside, so neither
//! module knows about metrics, and the watcher of the subscriber's reconnections.

use std::sync::Arc;

use bytes::Bytes;

use super::SharedMetrics;
use crate::broker::{Broker, BrokerError, BrokerHealth, SharedBroker};
use crate::presence::{
    ChangeKind, Join, Leave, Maintenance, PresenceChange, PresenceError, PresenceStore,
    SubscriptionKey, UserId,
};

/// A presence store that reports joins, leaves and sweeps to the metrics.
pub struct MeteredPresence {
    inner: Arc<dyn PresenceStore>,
    metrics: SharedMetrics,
    store: &'static str,
}

impl MeteredPresence {
    /// Wraps `inner`, labelled `store` (`memory` or `redis`).
    pub fn wrap(
        inner: Arc<dyn PresenceStore>,
        metrics: SharedMetrics,
        store: &'static str,
    ) -> Arc<dyn PresenceStore> {
        Arc::new(MeteredPresence {
            inner,
            metrics,
            store,
        })
    }
}

#[async_trait::async_trait]
impl PresenceStore for MeteredPresence {
    async fn join(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<Join, PresenceError> {
        let join = self.inner.join(room, user, sub).await?;
        if join.first {
            self.metrics.presence_joined(self.store, room, user);
        }
        Ok(join)
    }

    async fn leave(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<Leave, PresenceError> {
        let leave = self.inner.leave(room, user, sub).await?;
        if leave.last {
            self.metrics.presence_left(self.store, room, user);
        }
        Ok(leave)
    }

    async fn heartbeat(&self, room: &str, user: UserId) -> Result<(), PresenceError> {
        self.inner.heartbeat(room, user).await
    }

    async fn members(&self, room: &str) -> Result<Vec<UserId>, PresenceError> {
        self.inner.members(room).await
    }

    fn is_up(&self) -> bool {
        self.inner.is_up()
    }

    fn maintenance(&self) -> Option<Maintenance> {
        self.inner.maintenance()
    }

    async fn sweep(&self) -> Result<Vec<PresenceChange>, PresenceError> {
        let r = self.inner.sweep().await;
        match &r {
            Ok(changes) => {
                for c in changes {
                    match c.kind {
                        ChangeKind::Joined => {
                            self.metrics.presence_joined(self.store, &c.room, c.user)
                        }
                        ChangeKind::Left => self.metrics.presence_left(self.store, &c.room, c.user),
                    }
                }
                self.metrics.presence_swept(self.store, Ok(changes.len()));
            }
            Err(e) => self.metrics.presence_swept(self.store, Err(e)),
        }
        r
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

/// A broker that reports what this node publishes to the metrics.
pub struct MeteredBroker {
    inner: SharedBroker,
    metrics: SharedMetrics,
}

impl MeteredBroker {
    /// Wraps `inner`.
    pub fn wrap(inner: SharedBroker, metrics: SharedMetrics) -> SharedBroker {
        Arc::new(MeteredBroker { inner, metrics })
    }
}

#[async_trait::async_trait]
impl Broker for MeteredBroker {
    async fn publish(&self, stream: &str, payload: Bytes) -> Result<(), BrokerError> {
        let len = payload.len();
        let r = self.inner.publish(stream, payload).await;
        self.metrics
            .published(stream, len, r.as_ref().err().map(|e| e as _));
        r
    }

    async fn subscribe(&self, stream: &str) -> Result<(), BrokerError> {
        self.inner.subscribe(stream).await
    }

    async fn unsubscribe(&self, stream: &str) -> Result<(), BrokerError> {
        self.inner.unsubscribe(stream).await
    }

    fn health(&self) -> BrokerHealth {
        self.inner.health()
    }
}

/// Counts the broadcast subscriber's Redis reconnections until `stop`; `events` is
/// subscribed after the first connection, so every event is a reconnection.
pub async fn watch_redis_reconnects(
    mut events: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    metrics: SharedMetrics,
    stop: tokio_util::sync::CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            e = events.recv() => match e {
                Ok(_) => metrics.redis_reconnected(),
                Err(RecvError::Lagged(n)) => {
                    for _ in 0..n {
                        metrics.redis_reconnected();
                    }
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}
