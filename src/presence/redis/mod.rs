//! Presence shared by a fleet, in Redis, under the seed's own keys so the Rails app's
//! `PresenceService` keeps reading what we write.
//!
//! # Keys
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

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fred::interfaces::{EventInterface, KeysInterface, LuaInterface, SetsInterface};
use fred::prelude::Client;
use fred::types::scripts::Script;
use fred::types::{Expiration, SetOptions, Value as RedisValue};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{
    ChangeKind, Join, Leave, Maintenance, PresenceChange, PresenceError, PresenceStore,
    SubscriptionKey, UserId,
};
use crate::redis::{client_for, connect, Link};

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

/// The seed's member set.
pub fn members_key(room: &str) -> String {
    format!("room:{room}:members")
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

const JOIN_LUA: &str = r#"
-- KEYS: members, subs hash, node subs, last_seen, nodes
-- ARGV: uid, field, node entry, now, node id, last_seen ttl
local first = 0
if redis.call('HLEN', KEYS[2]) == 0 then first = 1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[5], ARGV[5])
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SETEX', KEYS[4], ARGV[6], ARGV[4])
return {first, added, redis.call('SMEMBERS', KEYS[1])}
"#;

const LEAVE_LUA: &str = r#"
-- KEYS: members, subs hash, node subs, heartbeat
-- ARGV: uid, field, node entry
local removed = redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('SREM', KEYS[3], ARGV[3])
local last = 0
if redis.call('HLEN', KEYS[2]) == 0 then
  local srem = redis.call('SREM', KEYS[1], ARGV[1])
  if removed == 1 or srem == 1 then
    last = 1
    redis.call('DEL', KEYS[4])
  end
end
return {last, redis.call('SMEMBERS', KEYS[1])}
"#;

const HEARTBEAT_LUA: &str = r#"
-- KEYS: heartbeat, last_seen ; ARGV: now, heartbeat ttl, last_seen ttl
redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
redis.call('SETEX', KEYS[2], ARGV[3], ARGV[1])
return 1
"#;

const REFRESH_LUA: &str = r#"
-- KEYS: alive, nodes ; ARGV: node id, ttl ms, now
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return existed
"#;

const SWEEP_NODE_LUA: &str = r#"
-- KEYS: alive, node subs, nodes, swept ; ARGV: node id, namespace, batch, now
-- Returns {done, {{room, uid, {members...}}, ...}}.
if redis.call('EXISTS', KEYS[1]) == 1 then return {1, {}} end
local out = {}
local entries = redis.call('SPOP', KEYS[2], tonumber(ARGV[3]))
if #entries > 0 then
  -- The node's users are announced as gone: when it comes back, its restore must
  -- announce them again (and only then).
  redis.call('SET', KEYS[4], ARGV[4], 'EX', 86400)
end
for _, e in ipairs(entries) do
  local uid, conn, seq, room = string.match(e, '^([^/]*)/([^/]*)/([^/]*)/(.*)$')
  if uid then
    local subs = ARGV[2] .. ':subs:' .. uid .. ':' .. room
    local removed = redis.call('HDEL', subs, ARGV[1] .. '/' .. conn .. '/' .. seq)
    if removed == 1 and redis.call('HLEN', subs) == 0 then
      local members = 'room:' .. room .. ':members'
      redis.call('SREM', members, uid)
      redis.call('DEL', 'presence:user:' .. uid .. ':room:' .. room)
      table.insert(out, {room, uid, redis.call('SMEMBERS', members)})
    end
  end
end
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  return {1, out}
end
return {0, out}
"#;

const CLEAN_ROOM_LUA: &str = r#"
-- KEYS: members, suspects ; ARGV: room, namespace, now, grace
-- A member with no live subscription on any node and no heartbeat key becomes a
-- suspect (HSET suspects uid first-seen); it is removed once it has stayed so for
-- `grace` seconds. Returns {{removed uid...}, {members...}}.
local now, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
local removed = {}
for _, uid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[2] .. ':subs:' .. uid .. ':' .. ARGV[1]) == 0
     and redis.call('EXISTS', 'presence:user:' .. uid .. ':room:' .. ARGV[1]) == 0 then
    local since = tonumber(redis.call('HGET', KEYS[2], uid) or '')
    if since == nil then
      since = now
      redis.call('HSET', KEYS[2], uid, now)
    end
    if now - since >= grace then
      redis.call('SREM', KEYS[1], uid)
      redis.call('HDEL', KEYS[2], uid)
      table.insert(removed, uid)
    end
  else
    redis.call('HDEL', KEYS[2], uid)
  end
end
for _, uid in ipairs(redis.call('HKEYS', KEYS[2])) do
  if redis.call('SISMEMBER', KEYS[1], uid) == 0 then
    redis.call('HDEL', KEYS[2], uid)
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('EXPIRE', KEYS[2], math.max(60, grace * 4))
end
return {removed, redis.call('SMEMBERS', KEYS[1])}
"#;

struct Scripts {
    join: Script,
    leave: Script,
    heartbeat: Script,
    refresh: Script,
    sweep_node: Script,
    clean_room: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            join: Script::from_lua(JOIN_LUA),
            leave: Script::from_lua(LEAVE_LUA),
            heartbeat: Script::from_lua(HEARTBEAT_LUA),
            refresh: Script::from_lua(REFRESH_LUA),
            sweep_node: Script::from_lua(SWEEP_NODE_LUA),
            clean_room: Script::from_lua(CLEAN_ROOM_LUA),
        }
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

type Mirror = HashMap<(String, UserId), BTreeSet<SubscriptionKey>>;

/// Presence in Redis (see the module docs).
pub struct RedisStore {
    client: Client,
    link: Link,
    cfg: RedisStoreConfig,
    scripts: Scripts,
    /// This node's live subscriptions, written back if Redis loses them.
    mirror: Mutex<Mirror>,
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
            return Err(PresenceError::Backend(format!(
                "node id {:?} must be non-empty and contain no '/'",
                cfg.node_id
            )));
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
            cfg,
            scripts: Scripts::new(),
            mirror: Mutex::new(HashMap::new()),
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

    fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}:{rest}", self.cfg.namespace)
    }

    fn subs_key(&self, room: &str, user: UserId) -> String {
        self.key(format_args!("subs:{user}:{room}"))
    }

    fn node_subs_key(&self, node: &str) -> String {
        self.key(format_args!("node:{node}:subs"))
    }

    fn alive_key(&self, node: &str) -> String {
        self.key(format_args!("node:{node}:alive"))
    }

    fn swept_key(&self, node: &str) -> String {
        self.key(format_args!("node:{node}:swept"))
    }

    fn nodes_key(&self) -> String {
        self.key(format_args!("nodes"))
    }

    fn field(&self, sub: SubscriptionKey) -> String {
        format!("{}/{}/{}", self.cfg.node_id, sub.conn, sub.seq)
    }

    fn node_entry(room: &str, user: UserId, sub: SubscriptionKey) -> String {
        format!("{user}/{}/{}/{room}", sub.conn, sub.seq)
    }

    fn unavailable(&self) -> Result<(), PresenceError> {
        if self.link.is_up(&self.client) {
            Ok(())
        } else {
            Err(PresenceError::Backend("redis is not connected".into()))
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
        result.map_err(|e| PresenceError::Backend(format!("presence script failed: {e}")))
    }

    async fn join_script(
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
                    self.subs_key(room, user),
                    self.node_subs_key(&self.cfg.node_id),
                    last_seen_key(user),
                    self.nodes_key(),
                ],
                vec![
                    user.to_string(),
                    self.field(sub),
                    Self::node_entry(room, user, sub),
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

    async fn leave_script(
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
                    self.subs_key(room, user),
                    self.node_subs_key(&self.cfg.node_id),
                    heartbeat_key(room, user),
                ],
                vec![
                    user.to_string(),
                    self.field(sub),
                    Self::node_entry(room, user, sub),
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

    /// Refreshes this node's alive key; notes a needed restore when it had expired.
    async fn refresh_liveness(&self) -> Result<(), PresenceError> {
        let existed = self
            .run(
                &self.scripts.refresh,
                vec![self.alive_key(&self.cfg.node_id), self.nodes_key()],
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
        let snapshot: Vec<(String, UserId, Vec<SubscriptionKey>)> = self
            .mirror
            .lock()
            .iter()
            .map(|((room, user), subs)| (room.clone(), *user, subs.iter().copied().collect()))
            .collect();
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
            .del(self.swept_key(&self.cfg.node_id))
            .await
            .map_err(|e| PresenceError::Backend(format!("DEL swept mark: {e}")))?;
        if count > 0 {
            tracing::warn!(
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
        let pending = std::mem::take(&mut *self.pending_leaves.lock());
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
                        tracing::warn!(error = %e, "retrying queued presence leaves failed");
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
        let key = self.key(format_args!("lock:{name}"));
        let got: Option<String> = self
            .client
            .set(
                key,
                self.cfg.node_id.as_str(),
                Some(Expiration::PX(hold.as_millis().max(1) as i64)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(|e| PresenceError::Backend(format!("sweep lock: {e}")))?;
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
            .smembers(self.nodes_key())
            .await
            .map_err(|e| PresenceError::Backend(format!("SMEMBERS nodes: {e}")))?;
        let mut changes = Vec::new();
        for node in nodes.iter().filter(|n| **n != self.cfg.node_id) {
            loop {
                let v = self
                    .run(
                        &self.scripts.sweep_node,
                        vec![
                            self.alive_key(node),
                            self.node_subs_key(node),
                            self.nodes_key(),
                            self.swept_key(node),
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
            tracing::info!(leaves = changes.len(), "removed the presence of dead nodes");
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
                .scan_page(cursor.clone(), "room:*:members", Some(500), None)
                .await
                .map_err(|e| PresenceError::Backend(format!("SCAN rooms: {e}")))?;
            let mut parts = page.into_array().into_iter();
            cursor = parts.next().as_ref().and_then(text).unwrap_or_default();
            for key in parts.next().map(RedisValue::into_array).unwrap_or_default() {
                let Some(key) = text(&key) else { continue };
                let Some(room) = key
                    .strip_prefix("room:")
                    .and_then(|k| k.strip_suffix(":members"))
                else {
                    continue;
                };
                let v = self
                    .run(
                        &self.scripts.clean_room,
                        vec![key.clone(), stale_key(&self.cfg.namespace, room)],
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
                    tracing::info!(room, user = %uid, "stale presence member removed");
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
        self.mirror
            .lock()
            .entry((room.to_owned(), user))
            .or_default()
            .insert(sub);
        Ok(Join { first, member_ids })
    }

    async fn leave(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<Leave, PresenceError> {
        {
            let mut mirror = self.mirror.lock();
            let k = (room.to_owned(), user);
            if let Some(subs) = mirror.get_mut(&k) {
                subs.remove(&sub);
                if subs.is_empty() {
                    mirror.remove(&k);
                }
            }
        }
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
            .map_err(|e| PresenceError::Backend(format!("SMEMBERS {room}: {e}")))?;
        Ok(ids(Some(v)))
    }

    fn maintenance(&self) -> Option<Maintenance> {
        Some(Maintenance {
            interval: self.cfg.interval(),
            wake: self.wake.clone(),
        })
    }

    async fn sweep(&self) -> Result<Vec<PresenceChange>, PresenceError> {
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

    async fn close(&self) {
        // The sweepers of the other nodes remove whatever subscriptions are left.
        if self.unavailable().is_err() {
            return;
        }
        if let Err(e) = self
            .client
            .del::<i64, _>(self.alive_key(&self.cfg.node_id))
            .await
        {
            tracing::warn!(error = %e, "could not deregister this node from Redis");
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

    #[test]
    fn keys_are_the_seeds() {
        assert_eq!(members_key("1"), "room:1:members");
        assert_eq!(heartbeat_key("3", 1), "presence:user:1:room:3");
        assert_eq!(last_seen_key(9), "user:9:last_seen");
    }
}
