//! The Lua scripts behind every membership change, one `.lua` file each under
//! `scripts/`, loaded at compile time. Each file states its KEYS/ARGV contract and
//! return shape at its top; the Rust callers (`store.rs`, `sweeper.rs`) build the
//! arguments in that order.
//!
//! # Invariants
//! - Every script runs as one `EVALSHA` (`EVAL` on `NOSCRIPT`, see
//!   `RedisStore::run`), so what it changes and what it returns are
//!   one snapshot.
//! - `sweep_node.lua` and `clean_room.lua` also touch keys they compute from their
//!   arguments; those spellings must match `keys.rs`.

use fred::types::scripts::Script;

/// The scripts, hashed once per store.
pub(super) struct Scripts {
    /// `join.lua`: a subscription joins a room.
    pub(super) join: Script,
    /// `leave.lua`: a subscription leaves a room.
    pub(super) leave: Script,
    /// `heartbeat.lua`: the seed's heartbeat and `last_seen`.
    pub(super) heartbeat: Script,
    /// `refresh.lua`: this node's alive key.
    pub(super) refresh: Script,
    /// `sweep_node.lua`: a batch of a dead node's subscriptions.
    pub(super) sweep_node: Script,
    /// `clean_room.lua`: one room's stale members.
    pub(super) clean_room: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            join: Script::from_lua(include_str!("scripts/join.lua")),
            leave: Script::from_lua(include_str!("scripts/leave.lua")),
            heartbeat: Script::from_lua(include_str!("scripts/heartbeat.lua")),
            refresh: Script::from_lua(include_str!("scripts/refresh.lua")),
            sweep_node: Script::from_lua(include_str!("scripts/sweep_node.lua")),
            clean_room: Script::from_lua(include_str!("scripts/clean_room.lua")),
        }
    }
}
