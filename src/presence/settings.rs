//! The presence component's settings: where room membership is kept, and its
//! constructor [`PresenceSettings::connect`].
//!
//! Built and checked by `config`; one variant per kind of store, so a new kind (a
//! database one, say) arrives as a variant with its own options.

use std::sync::Arc;
use std::time::Duration;

use super::redis::random_node_id;
use super::{MemoryStore, PresenceError, PresenceStore, RedisStore, RedisStoreConfig};

/// Where presence lives.
#[derive(Debug, Clone, Default)]
pub enum PresenceSettings {
    /// In this process (one node): the default.
    #[default]
    Memory,
    /// In Redis, under the seed's keys, shared by the fleet.
    Redis {
        /// `--redis-url`.
        url: String,
        /// `--node-id`; a random one when unset.
        node_id: Option<String>,
        /// `--node-ttl`: how long a node counts as alive after its last refresh.
        node_ttl: Duration,
        /// `--redis-required`: refuse to start when Redis is unreachable.
        required: bool,
    },
}

impl PresenceSettings {
    /// `"memory"` or `"redis"`, as metrics name the store.
    pub fn kind(&self) -> &'static str {
        match self {
            PresenceSettings::Memory => "memory",
            PresenceSettings::Redis { .. } => "redis",
        }
    }

    /// Builds the store (Redis: connects, as [`RedisStore::connect`] does).
    ///
    /// # Errors
    /// When Redis cannot be used (see [`RedisStore::connect`]).
    pub async fn connect(&self) -> Result<Arc<dyn PresenceStore>, PresenceError> {
        Ok(match self {
            PresenceSettings::Memory => Arc::new(MemoryStore::new()),
            PresenceSettings::Redis {
                url,
                node_id,
                node_ttl,
                required,
            } => {
                let node_id = node_id.clone().unwrap_or_else(random_node_id);
                let mut cfg = RedisStoreConfig::new(url.as_str(), node_id);
                cfg.node_ttl = *node_ttl;
                cfg.required = *required;
                Arc::new(RedisStore::connect(cfg).await?)
            }
        })
    }
}
