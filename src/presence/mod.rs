//! Who is in which room: the presence store behind `PresenceChannel`.
//!
//! The store tracks *subscriptions*, not users: a user is a member of a room while at
//! least one of their subscriptions to it is alive (several tabs, several nodes), so
//! `user_joined` fires on a user's first subscription and `user_left` on their last.
//!
//! # Invariants
//! - `join` and `leave` are atomic: the membership change and the member list they
//!   return are one consistent snapshot, so racing joins never report inconsistent
//!   counts.
//! - Member ids are returned sorted ascending, as Redis returns a small integer set.
//! - User ids are the Rails app's integer ids (the seed maps members with `to_i`).

pub mod memory;
pub mod redis;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

pub use memory::MemoryStore;
pub use redis::{RedisStore, RedisStoreConfig};
pub use settings::PresenceSettings;

/// A Rails user id.
pub type UserId = i64;

/// Names one subscription of one connection on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionKey {
    /// The connection.
    pub conn: u64,
    /// The subscription's sequence number within the connection.
    pub seq: u32,
}

/// The result of a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// True when this was the user's first live subscription to the room, i.e. the
    /// user just became a member.
    pub first: bool,
    /// The room's members after the join, ascending.
    pub member_ids: Vec<UserId>,
}

/// The result of a leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leave {
    /// True when this was the user's last live subscription to the room, i.e. the user
    /// is no longer a member.
    pub last: bool,
    /// The room's members after the leave, ascending.
    pub member_ids: Vec<UserId>,
}

/// Which way a [`PresenceChange`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The user became a member again (their subscriptions were re-registered after
    /// Redis lost them): broadcast `user_joined`.
    Joined,
    /// The user's last subscription was removed by the sweeper (its node died) or a
    /// stale member was dropped: broadcast `user_left`.
    Left,
}

/// A membership change found by [`PresenceStore::sweep`], to broadcast to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    /// Joined or left.
    pub kind: ChangeKind,
    /// The room.
    pub room: String,
    /// The user.
    pub user: UserId,
    /// The room's members after the change, ascending.
    pub member_ids: Vec<UserId>,
}

/// How often [`PresenceStore::sweep`] wants to run, and what wakes it early.
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// The period between two sweeps.
    pub interval: Duration,
    /// Notified when a sweep should run now (e.g. Redis just reconnected).
    pub wake: Arc<Notify>,
}

/// A store failure (the Redis store can fail; the memory store cannot).
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// The store is known to be unreachable (its connection is down): nothing was sent.
    #[error("presence store unreachable")]
    Unavailable,
    /// A command to the store failed. The cause is also in the message, so a log line
    /// that prints only this error still says why.
    #[error("presence store: {op}: {source}")]
    Backend {
        /// What was attempted (a command and its key, a script).
        op: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The node id cannot be written into the store's keys.
    #[error("node id {0:?} must be non-empty and contain no '/'")]
    BadNodeId(String),
    /// The backend cannot be set up (bad URL, unsupported deployment, unreachable
    /// while required).
    #[error(transparent)]
    Setup(#[from] crate::redis::RedisSetupError),
}

impl PresenceError {
    /// A failed `op` (a command and its key, a script), caused by `source`.
    pub fn backend(
        op: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        PresenceError::Backend {
            op: op.into(),
            source: source.into(),
        }
    }
}

/// Presence storage, implemented in memory (single node) and on Redis (a fleet).
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Adds subscription `sub` of `user` to `room`.
    ///
    /// # Errors
    /// When the backend fails.
    async fn join(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<Join, PresenceError>;

    /// Removes subscription `sub` of `user` from `room`. Removing an unknown
    /// subscription is not an error: it reports `last: false` unless the user has no
    /// subscription left but is still listed.
    ///
    /// # Errors
    /// When the backend fails.
    async fn leave(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<Leave, PresenceError>;

    /// Records that `user` is active in `room` (the seed's 30 s heartbeat key).
    ///
    /// # Errors
    /// When the backend fails.
    async fn heartbeat(&self, room: &str, user: UserId) -> Result<(), PresenceError>;

    /// The room's members, ascending.
    ///
    /// # Errors
    /// When the backend fails.
    async fn members(&self, room: &str) -> Result<Vec<UserId>, PresenceError>;

    /// Whether the backend is reachable now (`/health`); always true in memory.
    fn is_up(&self) -> bool {
        true
    }

    /// Whether the store needs [`PresenceStore::sweep`] run periodically; `None` (the
    /// default) when it does not.
    fn maintenance(&self) -> Option<Maintenance> {
        None
    }

    /// Periodic housekeeping: for a shared store, keeps this node alive, re-registers
    /// its subscriptions if the backend lost them, and removes the subscriptions of
    /// dead nodes and stale members. Returns the changes to broadcast. The default
    /// does nothing.
    ///
    /// # Errors
    /// When the backend fails; the next sweep tries again.
    async fn sweep(&self) -> Result<Vec<PresenceChange>, PresenceError> {
        Ok(Vec::new())
    }

    /// Called once on shutdown, after the connections have left: a shared store
    /// announces that this node is gone. The default does nothing.
    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::PresenceError;
    use std::error::Error;

    #[test]
    fn backend_errors_keep_their_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let p = PresenceError::backend("SMEMBERS room:1:members", io);
        assert_eq!(
            p.to_string(),
            "presence store: SMEMBERS room:1:members: reset by peer"
        );
        assert_eq!(
            p.source().map(ToString::to_string).as_deref(),
            Some("reset by peer")
        );
    }
}
