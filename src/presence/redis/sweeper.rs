//! Maintenance, run by `PresenceStore::sweep` every node TTL / 3 (and at once after a
//! reconnection): this node's alive key, the restore of its own subscriptions, the
//! retry of queued leaves, then, under fleet-wide locks, dead nodes and stale members.
//!
//! # Invariants
//! - One sweep step at a time per fleet: dead nodes under `<ns>:lock:nodes` (held one
//!   sweep period), stale members under `<ns>:lock:rooms` (held four node TTLs).
//! - Until the connection has settled, changes are written but held back (announced
//!   by the first sweep after), and dead nodes are not looked for.
//! - A restore announces its re-joins only when this node's `swept` mark says a
//!   sweeper announced its users as gone; it consumes the mark.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::interfaces::{KeysInterface, SetsInterface};
use fred::types::{Expiration, SetOptions, Value as RedisValue};

use super::keys::{members_key, room_of_members_key};
use super::{ids, int, now_unix, ruby_to_i, text, RedisStore, LOG_TARGET, SWEEP_BATCH};
use crate::presence::{ChangeKind, PresenceChange, PresenceError, SubscriptionKey, UserId};

impl RedisStore {
    /// One maintenance pass (see the module docs); the changes to announce now.
    pub(super) async fn sweep_all(&self) -> Result<Vec<PresenceChange>, PresenceError> {
        let mut changes = Vec::new();
        self.refresh_liveness().await?;
        if self.needs_restore.load(Ordering::SeqCst) {
            changes.extend(self.restore().await?);
            self.needs_restore.store(false, Ordering::SeqCst);
        }
        changes.extend(self.retry_pending_leaves().await?);
        if self.connected_since.lock().elapsed() < self.cfg.settle {
            // Other nodes may not be back (and listening) yet.
            self.deferred.lock().extend(changes);
            return Ok(Vec::new());
        }
        if self.try_lock("nodes", self.cfg.interval()).await? {
            changes.extend(self.sweep_dead_nodes().await?);
        }
        if self.try_lock("rooms", self.cfg.node_ttl * 4).await? {
            changes.extend(self.sweep_stale_members().await?);
        }
        let mut all = std::mem::take(&mut *self.deferred.lock());
        all.extend(changes);
        Ok(all)
    }

    /// Refreshes this node's alive key; notes a needed restore when it had expired.
    pub(super) async fn refresh_liveness(&self) -> Result<(), PresenceError> {
        let existed = self
            .run(
                &self.scripts.refresh,
                vec![self.keys.alive(&self.cfg.node_id), self.keys.nodes()],
                vec![
                    self.cfg.node_id.clone(),
                    self.cfg.node_ttl.as_millis().to_string(),
                    now_unix(),
                ],
            )
            .await?;
        if existed.as_i64() != Some(1) {
            self.needs_restore.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Writes this node's live subscriptions back (idempotent).
    async fn restore(&self) -> Result<Vec<PresenceChange>, PresenceError> {
        let snapshot = self.mirror.snapshot();
        let mut changes = Vec::new();
        let mut count = 0usize;
        for (room, user, subs) in snapshot {
            for sub in subs {
                let (_, added, member_ids) = self.join_script(&room, user, sub).await?;
                count += 1;
                if added {
                    changes.push(PresenceChange {
                        kind: ChangeKind::Joined,
                        room: room.clone(),
                        user,
                        member_ids,
                    });
                }
            }
        }
        // Announce the re-joins only if a sweeper told the fleet these users had left;
        // after Redis lost its data nobody was told anything.
        let swept: i64 = self
            .client
            .del(self.keys.swept(&self.cfg.node_id))
            .await
            .map_err(|e| PresenceError::backend("DEL swept mark", e))?;
        if count > 0 {
            tracing::warn!(
                target: LOG_TARGET,
                node = %self.cfg.node_id,
                subscriptions = count,
                rejoined = changes.len(),
                announced = swept > 0,
                "presence for this node was missing in Redis, re-registered"
            );
        }
        if swept == 0 {
            changes.clear();
        }
        Ok(changes)
    }

    async fn retry_pending_leaves(&self) -> Result<Vec<PresenceChange>, PresenceError> {
        let pending: Vec<(String, UserId, SubscriptionKey)> =
            std::mem::take(&mut *self.pending_leaves.lock());
        let mut changes = Vec::new();
        let mut rest = pending.into_iter();
        while let Some((room, user, sub)) = rest.next() {
            match self.leave_script(&room, user, sub).await {
                Ok(leave) => {
                    // Redis may have lost the membership meanwhile (a restart): the
                    // user is gone all the same, and the others were never told.
                    if leave.last || !leave.member_ids.contains(&user) {
                        changes.push(PresenceChange {
                            kind: ChangeKind::Left,
                            room,
                            user,
                            member_ids: leave.member_ids,
                        });
                    }
                }
                Err(e) => {
                    let mut queue = self.pending_leaves.lock();
                    queue.push((room, user, sub));
                    queue.extend(rest);
                    drop(queue);
                    if !changes.is_empty() {
                        // Report what did happen; the rest waits for the next sweep.
                        tracing::warn!(target: LOG_TARGET, error = %e, "retrying queued presence leaves failed");
                        return Ok(changes);
                    }
                    return Err(e);
                }
            }
        }
        Ok(changes)
    }

    async fn try_lock(&self, name: &str, hold: Duration) -> Result<bool, PresenceError> {
        self.unavailable()?;
        let got: Option<String> = self
            .client
            .set(
                self.keys.lock(name),
                self.cfg.node_id.as_str(),
                Some(Expiration::PX(hold.as_millis().max(1) as i64)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(|e| PresenceError::backend("sweep lock", e))?;
        Ok(got.is_some())
    }

    /// Removes the subscriptions of every node whose alive key is gone, now, without
    /// taking the fleet lock (sweeps call it under the lock; tests and tools may call it
    /// directly). Returns the resulting leaves.
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn sweep_dead_nodes(&self) -> Result<Vec<PresenceChange>, PresenceError> {
        self.unavailable()?;
        let nodes: Vec<String> = self
            .client
            .smembers(self.keys.nodes())
            .await
            .map_err(|e| PresenceError::backend("SMEMBERS nodes", e))?;
        let mut changes = Vec::new();
        for node in nodes.iter().filter(|n| **n != self.cfg.node_id) {
            loop {
                let v = self
                    .run(
                        &self.scripts.sweep_node,
                        vec![
                            self.keys.alive(node),
                            self.keys.node_subs(node),
                            self.keys.nodes(),
                            self.keys.swept(node),
                        ],
                        vec![
                            node.clone(),
                            self.cfg.namespace.clone(),
                            SWEEP_BATCH.to_string(),
                            now_unix(),
                        ],
                    )
                    .await?;
                let mut parts = v.into_array().into_iter();
                let done = int(parts.next().as_ref()) == 1;
                for leave in parts.next().map(RedisValue::into_array).unwrap_or_default() {
                    let mut f = leave.into_array().into_iter();
                    let (Some(room), Some(uid)) = (
                        f.next().as_ref().and_then(text),
                        f.next().as_ref().and_then(text),
                    ) else {
                        continue;
                    };
                    changes.push(PresenceChange {
                        kind: ChangeKind::Left,
                        room,
                        user: ruby_to_i(&uid),
                        member_ids: ids(f.next()),
                    });
                }
                if done {
                    break;
                }
            }
        }
        if !changes.is_empty() {
            tracing::info!(target: LOG_TARGET, leaves = changes.len(), "removed the presence of dead nodes");
        }
        Ok(changes)
    }

    /// Removes, in every `room:*:members` set, members with no live subscription on any
    /// node and no heartbeat key (the seed's `CleanupStalePresenceJob`), now, without
    /// the fleet lock. Returns the resulting leaves.
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn sweep_stale_members(&self) -> Result<Vec<PresenceChange>, PresenceError> {
        self.unavailable()?;
        let mut changes = Vec::new();
        let mut cursor = "0".to_owned();
        loop {
            let page: RedisValue = self
                .client
                .scan_page(cursor.clone(), members_key("*"), Some(500), None)
                .await
                .map_err(|e| PresenceError::backend("SCAN rooms", e))?;
            let mut parts = page.into_array().into_iter();
            cursor = parts.next().as_ref().and_then(text).unwrap_or_default();
            for key in parts.next().map(RedisValue::into_array).unwrap_or_default() {
                let Some(key) = text(&key) else { continue };
                let Some(room) = room_of_members_key(&key) else {
                    continue;
                };
                let v = self
                    .run(
                        &self.scripts.clean_room,
                        vec![key.clone(), self.keys.stale(room)],
                        vec![
                            room.to_owned(),
                            self.cfg.namespace.clone(),
                            now_unix(),
                            self.cfg.stale_grace.as_secs().to_string(),
                        ],
                    )
                    .await?;
                let mut r = v.into_array().into_iter();
                let removed = r.next().map(RedisValue::into_array).unwrap_or_default();
                let member_ids = ids(r.next());
                for uid in removed.iter().filter_map(text) {
                    tracing::info!(target: LOG_TARGET, room, user = %uid, "stale presence member removed");
                    changes.push(PresenceChange {
                        kind: ChangeKind::Left,
                        room: room.to_owned(),
                        user: ruby_to_i(&uid),
                        member_ids: member_ids.clone(),
                    });
                }
            }
            if cursor == "0" || cursor.is_empty() {
                break;
            }
        }
        Ok(changes)
    }
}
