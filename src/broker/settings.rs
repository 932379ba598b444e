//! The broker component's settings: which broker a node runs, and its options.
//!
//! Built and checked by `config`; [`BrokerSettings::connect`] builds the broker they
//! name. The enum has one variant per kind, so a new kind of broker (a
//! database one, say) arrives as a variant with its own options.

use std::sync::Arc;

use super::{
    BroadcastHandler, BrokerError, MemoryBroker, RedisBroker, RedisBrokerConfig, SharedBroker,
};

/// Which broker carries broadcasts between nodes.
#[derive(Debug, Clone, Default)]
pub enum BrokerSettings {
    /// One node, in memory (no `--redis-url`): the default.
    #[default]
    Memory,
    /// Redis pub/sub, as Rails' `redis` adapter (`--redis-url`, `--channel-prefix`,
    /// `--redis-required`).
    Redis(RedisBrokerConfig),
}

/// A broker built from its settings.
pub struct ConnectedBroker {
    /// The broker.
    pub broker: SharedBroker,
    /// The same broker when it is the Redis one, for its reconnection hooks
    /// ([`RedisBroker::notify_after_resubscribe`], [`RedisBroker::reconnect_events`]).
    pub redis: Option<Arc<RedisBroker>>,
}

impl BrokerSettings {
    /// Builds the broker, delivering to `handler` (Redis: connects, as
    /// [`RedisBroker::connect`] does).
    ///
    /// # Errors
    /// When Redis cannot be used (see [`RedisBroker::connect`]).
    pub async fn connect(
        &self,
        handler: Arc<dyn BroadcastHandler>,
    ) -> Result<ConnectedBroker, BrokerError> {
        Ok(match self {
            BrokerSettings::Memory => ConnectedBroker {
                broker: Arc::new(MemoryBroker::new(handler)),
                redis: None,
            },
            BrokerSettings::Redis(cfg) => {
                let redis = Arc::new(RedisBroker::connect(cfg.clone(), handler).await?);
                ConnectedBroker {
                    broker: redis.clone(),
                    redis: Some(redis),
                }
            }
        })
    }

    /// `"memory"` or `"redis"`, as metrics and logs name the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            BrokerSettings::Memory => "memory",
            BrokerSettings::Redis(_) => "redis",
        }
    }
}
