//! Presence shared by a fleet, in Redis, under the seed's own keys so the Rails app's
//! `PresenceService` keeps reading what we write.
//!
//! The code is split by job: `keys.rs` spells every key (and holds the key table),
//! `scripts/*.lua` are the atomic steps (each states its KEYS/ARGV contract),
//! `store.rs` is the live path (join, leave, heartbeat; the mirror of this node's own
//! subscriptions) and `sweeper.rs` the maintenance (liveness, restore, queued leaves,
//! dead nodes, stale members). This file holds what they share: the configuration,
//! the connection and the script runner.
//!
//! # Invariants
//! - `join`, `leave` and every sweep step are single Lua scripts (`EVALSHA`, `EVAL` on
//!   `NOSCRIPT`): the membership change and the member list returned are one snapshot.
//! - A user is in `room:<room>:members` exactly while `<ns>:subs:<uid>:<room>` is
//!   non-empty, except for members written by someone else (the Rails app, a Rails
//!   cable server): those are left alone while their heartbeat key lives.
//! - A node whose alive key expired (crash, `kill -9`, partition) loses its
//!   subscriptions at the next sweep; each removed last subscription is reported as a
//!   [`ChangeKind::Left`]. With the default node TTL of 15 s and sweeps every 5 s, a
//!   dead node's users are gone within about 25 s (the bound promised is 45 s).
//! - Members with no live subscription anywhere and no heartbeat key are removed once
//!   they have stayed so for the stale grace (30 s: a member a Rails server just added
//!   has no heartbeat until the page's first one, 15 s later), as the seed's
//!   `CleanupStalePresenceJob` does, over every `room:*:members` key, at most once per
//!   four node TTLs across the fleet.
//! - This node keeps a mirror of its own live subscriptions. When its alive key is found
//!   missing (Redis restarted without persistence, or the node was presumed dead), the
//!   next sweep writes the mirror back; a reconnect wakes that sweep at once. Users who
//!   became members again that way are reported as [`ChangeKind::Joined`] only when a
//!   sweeper had removed this node as dead (its `swept` mark), since only then were
//!   the others told they left. After Redis merely lost its data (a restart without
//!   persistence) nobody was told anything, so the restore is silent: a second
//!   `user_joined` for a member every page still shows would be a duplicate.
//! - A leave that fails (Redis down) is queued and retried by the next sweeps, so a
//!   live node never leaves a ghost member behind.
//! - For a settling time after each (re)connection (2 s), sweeps write what they find
//!   but announce it only afterwards, and look for dead nodes only afterwards: the
//!   other nodes reconnect on their own schedules, and an announcement published before
//!   they re-subscribed would never reach their clients.
//! - Needs Redis 5 or later (scripts use `SPOP`, replicated as effects), standalone or
//!   behind a proxy, or through Sentinel; the scripts touch keys they compute, so not
//!   Redis Cluster (refused at startup).

mod keys;
mod scripts;
mod store;
mod sweeper;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fred::interfaces::{EventInterface, LuaInterface};
use fred::prelude::Client;
use fred::types::scripts::Script;
use fred::types::Value as RedisValue;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use keys::{heartbeat_key, last_seen_key, members_key, stale_key};

use super::{PresenceChange, PresenceError, SubscriptionKey, UserId};
use crate::redis::{client_for, connect, Link};

/// The target of this module's log lines, in its submodules too: the split into
/// files did not change what operators filter and search on.
const LOG_TARGET: &str = "ferrocable::presence::redis";

/// The seed's heartbeat TTL (`SETEX … 30`).
pub const HEARTBEAT_TTL_SECS: u64 = 30;

/// `PresenceService.mark_online`'s `last_seen` TTL (`SETEX … 300`).
pub const LAST_SEEN_TTL_SECS: u64 = 300;

/// The default node TTL.
pub const DEFAULT_NODE_TTL: Duration = Duration::from_secs(15);

/// How long a member without subscription or heartbeat is kept (the seed's heartbeat
/// TTL): longer than the 15 s before the seed's page sends its first heartbeat.
pub const STALE_GRACE: Duration = Duration::from_secs(30);

/// Subscriptions of a dead node removed per script call, so Redis is never blocked long.
pub const SWEEP_BATCH: usize = 500;

/// What the Redis store needs.
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// `redis://…` of the Redis the Rails app uses for presence.
    pub url: String,
    /// This node's id, unique in the fleet; no `/` in it.
    pub node_id: String,
    /// How long a node counts as alive after its last refresh (refreshed every third of
    /// it; sweeps run as often).
    pub node_ttl: Duration,
    /// The prefix of our own keys.
    pub namespace: String,
    /// How long after a (re)connection the sweeps hold back: what they find is written
    /// at once but announced only then, and dead nodes are looked for only then, so
    /// that every node is back on Redis (and re-subscribed) first.
    pub settle: Duration,
    /// Fail [`RedisStore::connect`] when Redis is unreachable; otherwise start
    /// unavailable and register this node once Redis answers (the first sweep does).
    pub required: bool,
    /// How long a member with neither a live subscription nor a heartbeat key stays
    /// listed before the sweep removes it. A member that a Rails server has just added
    /// has no heartbeat yet (the seed's page sends its first one after 15 s).
    pub stale_grace: Duration,
}

impl RedisStoreConfig {
    /// A configuration with the default TTL and namespace.
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> Self {
        RedisStoreConfig {
            url: url.into(),
            node_id: node_id.into(),
            node_ttl: DEFAULT_NODE_TTL,
            namespace: "ferrocable".into(),
            settle: crate::redis::MAX_RECONNECT_DELAY * 2,
            required: true,
            stale_grace: STALE_GRACE,
        }
    }

    /// The sweep period: a third of the node TTL.
    pub fn interval(&self) -> Duration {
        (self.node_ttl / 3).max(Duration::from_millis(50))
    }
}

/// A fresh node id, `fc-` and 16 hex digits, for nodes not given one.
pub fn random_node_id() -> String {
    use std::hash::BuildHasher;
    // RandomState is seeded from the OS per process; mixing time and pid in keeps two
    // ids of one process apart too.
    let h = std::collections::hash_map::RandomState::new()
        .hash_one((SystemTime::now(), std::process::id()));
    format!("fc-{h:016x}")
}

/// Ruby's `String#to_i`, as the seed maps members: leading whitespace, an optional sign,
/// digits (underscores between them allowed); anything else ends it; nothing is 0.
pub fn ruby_to_i(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    let mut prev_digit = false;
    for b in rest.bytes() {
        match b {
            b'0'..=b'9' => {
                n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
                prev_digit = true;
            }
            b'_' if prev_digit => prev_digit = false,
            _ => break,
        }
    }
    if neg {
        -n
    } else {
        n
    }
}

fn now_unix() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string()
}

fn int(v: Option<&RedisValue>) -> i64 {
    v.and_then(RedisValue::as_i64).unwrap_or(0)
}

fn text(v: &RedisValue) -> Option<String> {
    v.as_str().map(|s| s.into_owned())
}

/// Member ids as the seed computes them (`map(&:to_i)`), ascending.
fn ids(v: Option<RedisValue>) -> Vec<UserId> {
    let mut out: Vec<UserId> = v
        .map(RedisValue::into_array)
        .unwrap_or_default()
        .iter()
        .filter_map(text)
        .map(|s| ruby_to_i(&s))
        .collect();
    out.sort_unstable();
    out
}

/// Presence in Redis (see the module docs).
pub struct RedisStore {
    client: Client,
    link: Link,
    cfg: RedisStoreConfig,
    /// Our namespaced keys (the seed's are free functions in `keys.rs`).
    keys: keys::Ours,
    scripts: scripts::Scripts,
    /// This node's live subscriptions, written back if Redis loses them.
    mirror: store::Mirror,
    /// Leaves that failed, retried by the next sweeps.
    pending_leaves: Mutex<Vec<(String, UserId, SubscriptionKey)>>,
    /// Set when our alive key was found missing; cleared once the mirror is written back.
    needs_restore: AtomicBool,
    /// When the connection last came (back) up.
    connected_since: Arc<Mutex<Instant>>,
    /// Changes found before the connection settled, announced once it has.
    deferred: Mutex<Vec<PresenceChange>>,
    wake: Arc<Notify>,
    watcher: JoinHandle<()>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl RedisStore {
    /// Connects and registers this node as alive (when Redis is unreachable and not
    /// [`RedisStoreConfig::required`], the first sweep after it answers does that).
    ///
    /// # Errors
    /// When the URL is invalid or names Redis Cluster, the node id contains `/`, or
    /// (when required) Redis cannot be reached.
    pub async fn connect(cfg: RedisStoreConfig) -> Result<RedisStore, PresenceError> {
        if cfg.node_id.is_empty() || cfg.node_id.contains('/') {
            return Err(PresenceError::BadNodeId(cfg.node_id));
        }
        crate::redis::check_url(&cfg.url)?;
        let client = client_for(&cfg.url, 64).map_err(|e| {
            PresenceError::Setup(crate::redis::RedisSetupError::InvalidUrl(
                e.details().to_string(),
            ))
        })?;
        let reconnects = client.reconnect_rx();
        let link = Link::watch(&client);
        let up = connect(&client, "presence store", cfg.required).await?;
        let wake = Arc::new(Notify::new());
        let connected_since = Arc::new(Mutex::new(Instant::now()));
        let watcher = tokio::spawn(wake_on_reconnect(
            reconnects,
            wake.clone(),
            connected_since.clone(),
        ));
        let store = RedisStore {
            client,
            link,
            keys: keys::Ours::new(&cfg.namespace, &cfg.node_id),
            cfg,
            scripts: scripts::Scripts::new(),
            mirror: store::Mirror::default(),
            pending_leaves: Mutex::new(Vec::new()),
            needs_restore: AtomicBool::new(false),
            connected_since,
            deferred: Mutex::new(Vec::new()),
            wake,
            watcher,
        };
        if up {
            store.refresh_liveness().await?;
        }
        tracing::info!(
            node = %store.cfg.node_id,
            node_ttl_secs = store.cfg.node_ttl.as_secs_f64(),
            connected = up,
            "redis presence store started"
        );
        Ok(store)
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisStoreConfig {
        &self.cfg
    }

    fn unavailable(&self) -> Result<(), PresenceError> {
        if self.link.is_up(&self.client) {
            Ok(())
        } else {
            Err(PresenceError::Unavailable)
        }
    }

    /// Runs `script`: `EVALSHA`, then `EVAL` (which also caches it) on `NOSCRIPT`, e.g.
    /// after a Redis restart.
    async fn run(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<RedisValue, PresenceError> {
        self.unavailable()?;
        let result = match self
            .client
            .evalsha::<RedisValue, _, _, _>(script.sha1().clone(), keys.clone(), args.clone())
            .await
        {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                let lua = script.lua().cloned().unwrap_or_default();
                self.client.eval(lua, keys, args).await
            }
            other => other,
        };
        result.map_err(|e| PresenceError::backend("script", e))
    }
}

async fn wake_on_reconnect(
    mut rx: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    wake: Arc<Notify>,
    connected_since: Arc<Mutex<Instant>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {
                *connected_since.lock() = Instant::now();
                wake.notify_one();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_i_is_rubys() {
        for (s, n) in [
            ("1", 1),
            ("42", 42),
            (" 7x", 7),
            ("-3", -3),
            ("+5", 5),
            ("1_000", 1000),
            ("abc", 0),
            ("", 0),
            ("12abc", 12),
        ] {
            assert_eq!(ruby_to_i(s), n, "{s:?}");
        }
    }
}
