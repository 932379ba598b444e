//! Every Redis key the presence store reads or writes, spelled once.
//!
//! The seed's keys, unprefixed as the app writes them:
//!
//! | key | type | TTL | meaning |
//! | --- | --- | --- | --- |
//! | `room:<room>:members` | set of user id strings | none | members (`SADD`/`SREM`) |
//! | `presence:user:<uid>:room:<room>` | string, unix seconds | 30 s | the `heartbeat` action (`SETEX`); deleted when the user leaves |
//! | `user:<uid>:last_seen` | string, unix seconds | 300 s | written as `PresenceService.mark_online` writes it, on every join and heartbeat; left to expire after a leave (it says when the user was last online) |
//!
//! Ours, under a namespace (`ferrocable` by default), counting live subscriptions so a
//! user leaves only with their last subscription on any node:
//!
//! | key | type | TTL | meaning |
//! | --- | --- | --- | --- |
//! | `<ns>:subs:<uid>:<room>` | hash `<node>/<conn>/<seq>` → unix seconds of the join | none | the user's live subscriptions to the room, fleet-wide; the user is a member while it is non-empty |
//! | `<ns>:node:<node>:subs` | set of `<uid>/<conn>/<seq>/<room>` | none | the same subscriptions, indexed by node, for the sweeper |
//! | `<ns>:node:<node>:alive` | string, unix seconds | node TTL (15 s) | refreshed every node TTL / 3 by the node while it lives |
//! | `<ns>:nodes` | set of node ids | none | nodes that may own subscriptions |
//! | `<ns>:node:<node>:swept` | string, unix seconds | 1 day | written when a sweeper removed the node's subscriptions as dead (its users were announced as gone); read and deleted by the node when it restores |
//! | `<ns>:lock:nodes`, `<ns>:lock:rooms` | string (node id) | one sweep period | `SET NX PX`: one sweeper at a time across the fleet |
//! | `<ns>:stale:<room>` | hash uid → unix seconds first found stale | 4 × grace (≥ 60 s), renewed by the sweep | members with neither a subscription nor a heartbeat, kept for the stale grace |
//!
//! # Invariants
//! - Rust code builds keys only through this module. Two scripts also compute keys
//!   from their arguments (`sweep_node.lua`: `<ns>:subs:…`, `room:…:members`,
//!   `presence:user:…`; `clean_room.lua`: `<ns>:subs:…`, `presence:user:…`); the unit
//!   tests below check those spellings against the functions here.
//! - No node id contains `/` (checked at connect), so `<node>/<conn>/<seq>` fields and
//!   `<uid>/<conn>/<seq>/<room>` entries split unambiguously (a room may contain `/`;
//!   it comes last).

use super::super::{SubscriptionKey, UserId};

/// The seed's member set.
pub fn members_key(room: &str) -> String {
    format!("room:{room}:members")
}

/// The room of a `room:<room>:members` key (what `SCAN room:*:members` finds).
pub(super) fn room_of_members_key(key: &str) -> Option<&str> {
    key.strip_prefix("room:")?.strip_suffix(":members")
}

/// The seed's heartbeat key.
pub fn heartbeat_key(room: &str, user: UserId) -> String {
    format!("presence:user:{user}:room:{room}")
}

/// Our record of a room's members found without subscription or heartbeat, and since
/// when (the stale sweep's grace).
pub fn stale_key(namespace: &str, room: &str) -> String {
    format!("{namespace}:stale:{room}")
}

/// `PresenceService`'s last-seen key.
pub fn last_seen_key(user: UserId) -> String {
    format!("user:{user}:last_seen")
}

/// Our keys under one namespace, for one node.
pub(super) struct Ours {
    /// The prefix (`RedisStoreConfig::namespace`).
    namespace: String,
    /// This node's id (`RedisStoreConfig::node_id`).
    node: String,
}

impl Ours {
    pub(super) fn new(namespace: &str, node: &str) -> Self {
        Ours {
            namespace: namespace.to_owned(),
            node: node.to_owned(),
        }
    }

    fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}:{rest}", self.namespace)
    }

    /// `<ns>:subs:<uid>:<room>`.
    pub(super) fn subs(&self, room: &str, user: UserId) -> String {
        self.key(format_args!("subs:{user}:{room}"))
    }

    /// `<ns>:node:<node>:subs`.
    pub(super) fn node_subs(&self, node: &str) -> String {
        self.key(format_args!("node:{node}:subs"))
    }

    /// `<ns>:node:<node>:alive`.
    pub(super) fn alive(&self, node: &str) -> String {
        self.key(format_args!("node:{node}:alive"))
    }

    /// `<ns>:node:<node>:swept`.
    pub(super) fn swept(&self, node: &str) -> String {
        self.key(format_args!("node:{node}:swept"))
    }

    /// `<ns>:nodes`.
    pub(super) fn nodes(&self) -> String {
        self.key(format_args!("nodes"))
    }

    /// `<ns>:lock:<name>` (`nodes` or `rooms`).
    pub(super) fn lock(&self, name: &str) -> String {
        self.key(format_args!("lock:{name}"))
    }

    /// `<ns>:stale:<room>`.
    pub(super) fn stale(&self, room: &str) -> String {
        stale_key(&self.namespace, room)
    }

    /// This node's field in a `<ns>:subs:…` hash: `<node>/<conn>/<seq>`.
    pub(super) fn field(&self, sub: SubscriptionKey) -> String {
        format!("{}/{}/{}", self.node, sub.conn, sub.seq)
    }

    /// An entry of `<ns>:node:<node>:subs`: `<uid>/<conn>/<seq>/<room>`.
    pub(super) fn node_entry(room: &str, user: UserId, sub: SubscriptionKey) -> String {
        format!("{user}/{}/{}/{room}", sub.conn, sub.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_seeds() {
        assert_eq!(members_key("1"), "room:1:members");
        assert_eq!(heartbeat_key("3", 1), "presence:user:1:room:3");
        assert_eq!(last_seen_key(9), "user:9:last_seen");
        assert_eq!(room_of_members_key(&members_key("a:b")), Some("a:b"));
        assert_eq!(room_of_members_key("room:x"), None);
    }

    #[test]
    fn scripts_compute_the_same_keys() {
        let ours = Ours::new("ns", "n1");
        assert_eq!(ours.subs("r", 7), "ns:subs:7:r");
        assert_eq!(stale_key("ns", "r"), "ns:stale:r");
        let sweep = include_str!("scripts/sweep_node.lua");
        let clean = include_str!("scripts/clean_room.lua");
        // `ARGV[2]` is the namespace in both; uid and room are the script's locals.
        assert!(sweep.contains("ARGV[2] .. ':subs:' .. uid .. ':' .. room"));
        assert!(sweep.contains("'room:' .. room .. ':members'"));
        assert!(sweep.contains("'presence:user:' .. uid .. ':room:' .. room"));
        assert!(clean.contains("ARGV[2] .. ':subs:' .. uid .. ':' .. ARGV[1]"));
        assert!(clean.contains("'presence:user:' .. uid .. ':room:' .. ARGV[1]"));
        let sub = SubscriptionKey { conn: 4, seq: 2 };
        assert_eq!(ours.field(sub), "n1/4/2");
        assert_eq!(Ours::node_entry("a/b", 7, sub), "7/4/2/a/b");
        assert!(sweep.contains("ARGV[1] .. '/' .. conn .. '/' .. seq"));
    }
}
