//! Single-node presence in memory (the embedded default).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Join, Leave, PresenceError, PresenceStore, SubscriptionKey, UserId};

/// How long a heartbeat keeps its mark, as the seed's `SETEX … 30`.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Room {
    /// Live subscriptions per member; a member with an empty set is removed at once.
    members: BTreeMap<UserId, HashSet<SubscriptionKey>>,
    /// Last heartbeat per user.
    heartbeats: HashMap<UserId, Instant>,
}

impl Room {
    fn ids(&self) -> Vec<UserId> {
        self.members.keys().copied().collect()
    }
}

/// Presence in this process only. One mutex: every operation is a few map updates.
#[derive(Default)]
pub struct MemoryStore {
    rooms: Mutex<HashMap<String, Room>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `user` has a heartbeat younger than [`HEARTBEAT_TTL`] in `room`.
    pub fn heartbeat_alive(&self, room: &str, user: UserId) -> bool {
        let rooms = self.rooms.lock();
        rooms
            .get(room)
            .and_then(|r| r.heartbeats.get(&user))
            .is_some_and(|t| t.elapsed() < HEARTBEAT_TTL)
    }
}

#[async_trait]
impl PresenceStore for MemoryStore {
    async fn join(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<Join, PresenceError> {
        let mut rooms = self.rooms.lock();
        let r = rooms.entry(room.to_owned()).or_default();
        let subs = r.members.entry(user).or_default();
        let first = subs.is_empty();
        subs.insert(sub);
        Ok(Join {
            first,
            member_ids: r.ids(),
        })
    }

    async fn leave(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<Leave, PresenceError> {
        let mut rooms = self.rooms.lock();
        let Some(r) = rooms.get_mut(room) else {
            return Ok(Leave {
                last: false,
                member_ids: Vec::new(),
            });
        };
        let mut last = false;
        if let Some(subs) = r.members.get_mut(&user) {
            if subs.remove(&sub) && subs.is_empty() {
                r.members.remove(&user);
                // The seed's `unsubscribed` deletes the heartbeat key with the member.
                r.heartbeats.remove(&user);
                last = true;
            }
        }
        let member_ids = r.ids();
        if r.members.is_empty() && r.heartbeats.is_empty() {
            rooms.remove(room);
        }
        Ok(Leave { last, member_ids })
    }

    async fn heartbeat(&self, room: &str, user: UserId) -> Result<(), PresenceError> {
        let mut rooms = self.rooms.lock();
        let now = Instant::now();
        let r = rooms.entry(room.to_owned()).or_default();
        r.heartbeats
            .retain(|_, t| now.duration_since(*t) < HEARTBEAT_TTL);
        r.heartbeats.insert(user, now);
        Ok(())
    }

    async fn members(&self, room: &str) -> Result<Vec<UserId>, PresenceError> {
        Ok(self
            .rooms
            .lock()
            .get(room)
            .map(Room::ids)
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(conn: u64, seq: u32) -> SubscriptionKey {
        SubscriptionKey { conn, seq }
    }

    // The membership semantics (tabs, last leave, double leave, ordering) are the
    // shared store suite in tests/presence_store.rs, run on this store and on Redis.
    #[tokio::test]
    async fn empty_rooms_are_dropped() {
        let s = MemoryStore::new();
        s.join("1", 7, key(1, 1)).await.expect("memory store");
        s.join("1", 7, key(3, 1)).await.expect("memory store");
        s.leave("1", 7, key(1, 1)).await.expect("memory store");
        assert!(!s.rooms.lock().is_empty(), "a tab is still there");
        s.leave("1", 7, key(3, 1)).await.expect("memory store");
        assert!(s.rooms.lock().is_empty(), "empty rooms are dropped");
    }

    #[tokio::test]
    async fn heartbeat_marks_and_leave_clears_it() {
        let s = MemoryStore::new();
        s.join("r", 1, key(1, 1)).await.expect("memory store");
        s.heartbeat("r", 1).await.expect("memory store");
        assert!(s.heartbeat_alive("r", 1));
        s.leave("r", 1, key(1, 1)).await.expect("memory store");
        assert!(!s.heartbeat_alive("r", 1));
    }
}
