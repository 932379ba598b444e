//! The live path: `join`, `leave`, `heartbeat` and `members`, and the mirror of this
//! node's own subscriptions that the sweeper writes back when Redis loses them.
//!
//! # Invariants
//! - The mirror holds a subscription from its successful `join` until its `leave` is
//!   called (whether or not that leave reaches Redis): it is what this node would
//!   re-register, never more.
//! - A leave that fails is queued for the sweeper before the error is returned.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use fred::interfaces::{KeysInterface, SetsInterface};
use fred::types::Value as RedisValue;
use parking_lot::Mutex;

use super::keys::{heartbeat_key, last_seen_key, members_key, Ours};
use super::{ids, int, now_unix, RedisStore, HEARTBEAT_TTL_SECS, LAST_SEEN_TTL_SECS, LOG_TARGET};
use crate::presence::{
    Join, Leave, Maintenance, PresenceChange, PresenceError, PresenceStore, SubscriptionKey, UserId,
};

/// This node's live subscriptions by (room, user).
#[derive(Default)]
pub(super) struct Mirror(Mutex<HashMap<(String, UserId), BTreeSet<SubscriptionKey>>>);

impl Mirror {
    fn add(&self, room: &str, user: UserId, sub: SubscriptionKey) {
        self.0
            .lock()
            .entry((room.to_owned(), user))
            .or_default()
            .insert(sub);
    }

    fn remove(&self, room: &str, user: UserId, sub: SubscriptionKey) {
        let mut mirror = self.0.lock();
        let k = (room.to_owned(), user);
        if let Some(subs) = mirror.get_mut(&k) {
            subs.remove(&sub);
            if subs.is_empty() {
                mirror.remove(&k);
            }
        }
    }

    /// A copy, so the restore can write it without holding the lock.
    pub(super) fn snapshot(&self) -> Vec<(String, UserId, Vec<SubscriptionKey>)> {
        self.0
            .lock()
            .iter()
            .map(|((room, user), subs)| (room.clone(), *user, subs.iter().copied().collect()))
            .collect()
    }
}

impl RedisStore {
    /// Runs `join.lua`: `(first subscription, added to the members, member ids)`.
    pub(super) async fn join_script(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<(bool, bool, Vec<UserId>), PresenceError> {
        let v = self
            .run(
                &self.scripts.join,
                vec![
                    members_key(room),
                    self.keys.subs(room, user),
                    self.keys.node_subs(&self.cfg.node_id),
                    last_seen_key(user),
                    self.keys.nodes(),
                ],
                vec![
                    user.to_string(),
                    self.keys.field(sub),
                    Ours::node_entry(room, user, sub),
                    now_unix(),
                    self.cfg.node_id.clone(),
                    LAST_SEEN_TTL_SECS.to_string(),
                ],
            )
            .await?;
        let mut parts = v.into_array().into_iter();
        let first = int(parts.next().as_ref()) == 1;
        let added = int(parts.next().as_ref()) == 1;
        Ok((first, added, ids(parts.next())))
    }

    /// Runs `leave.lua`.
    pub(super) async fn leave_script(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<Leave, PresenceError> {
        let v = self
            .run(
                &self.scripts.leave,
                vec![
                    members_key(room),
                    self.keys.subs(room, user),
                    self.keys.node_subs(&self.cfg.node_id),
                    heartbeat_key(room, user),
                ],
                vec![
                    user.to_string(),
                    self.keys.field(sub),
                    Ours::node_entry(room, user, sub),
                ],
            )
            .await?;
        let mut parts = v.into_array().into_iter();
        let last = int(parts.next().as_ref()) == 1;
        Ok(Leave {
            last,
            member_ids: ids(parts.next()),
        })
    }
}

#[async_trait]
impl PresenceStore for RedisStore {
    fn is_up(&self) -> bool {
        self.link.is_up(&self.client)
    }

    async fn join(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<Join, PresenceError> {
        let (first, _, member_ids) = self.join_script(room, user, sub).await?;
        self.mirror.add(room, user, sub);
        Ok(Join { first, member_ids })
    }

    async fn leave(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<Leave, PresenceError> {
        self.mirror.remove(room, user, sub);
        match self.leave_script(room, user, sub).await {
            Ok(leave) => Ok(leave),
            Err(e) => {
                self.pending_leaves
                    .lock()
                    .push((room.to_owned(), user, sub));
                Err(e)
            }
        }
    }

    async fn heartbeat(&self, room: &str, user: UserId) -> Result<(), PresenceError> {
        self.run(
            &self.scripts.heartbeat,
            vec![heartbeat_key(room, user), last_seen_key(user)],
            vec![
                now_unix(),
                HEARTBEAT_TTL_SECS.to_string(),
                LAST_SEEN_TTL_SECS.to_string(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn members(&self, room: &str) -> Result<Vec<UserId>, PresenceError> {
        self.unavailable()?;
        let v: RedisValue = self
            .client
            .smembers(members_key(room))
            .await
            .map_err(|e| PresenceError::backend(format!("SMEMBERS {room}"), e))?;
        Ok(ids(Some(v)))
    }

    fn maintenance(&self) -> Option<Maintenance> {
        Some(Maintenance {
            interval: self.cfg.interval(),
            wake: self.wake.clone(),
        })
    }

    async fn sweep(&self) -> Result<Vec<PresenceChange>, PresenceError> {
        self.sweep_all().await
    }

    async fn close(&self) {
        // The sweepers of the other nodes remove whatever subscriptions are left.
        if self.unavailable().is_err() {
            return;
        }
        if let Err(e) = self
            .client
            .del::<i64, _>(self.keys.alive(&self.cfg.node_id))
            .await
        {
            tracing::warn!(target: LOG_TARGET, error = %e, "could not deregister this node from Redis");
        }
    }
}
