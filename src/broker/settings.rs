//! The broker component's settings: which broker a node runs, and its options.
//!
//! Built and checked by `config`; the composition root (`server::app`) connects the
//! broker they name. The enum has one variant per kind, so a new kind of broker (a
//! database one, say) arrives as a variant with its own options.

use super::RedisBrokerConfig;

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

impl BrokerSettings {
    /// `"memory"` or `"redis"`, as metrics and logs name the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            BrokerSettings::Memory => "memory",
            BrokerSettings::Redis(_) => "redis",
        }
    }
}
