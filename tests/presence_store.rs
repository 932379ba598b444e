//! The presence store contract, checked with the same assertions on the memory store
//! and on the Redis store (a real `redis-server`), then the Redis store's fleet
//! behaviour: the seed's keys, dead nodes, stale members, restore after data loss.

mod support;

use std::sync::Arc;

use ferrocable::presence::redis::STALE_GRACE;
use ferrocable::presence::{
    ChangeKind, Join, Leave, MemoryStore, PresenceChange, PresenceStore, RedisStore,
    RedisStoreConfig, SubscriptionKey, UserId,
};
use support::redis::RedisServer;

fn key(conn: u64, seq: u32) -> SubscriptionKey {
    SubscriptionKey { conn, seq }
}

/// A store that sweeps without settling first (the tests drive sweeps by hand).
fn config(redis: &RedisServer, node: &str) -> RedisStoreConfig {
    let mut cfg = RedisStoreConfig::new(redis.url(), node);
    cfg.settle = std::time::Duration::ZERO;
    cfg
}

async fn redis_store(redis: &RedisServer, node: &str) -> RedisStore {
    RedisStore::connect(config(redis, node))
        .await
        .expect("redis store connects")
}

/// Generates `<suite>::memory` and `<suite>::redis`, running one suite on each store.
macro_rules! on_both_stores {
    ($($suite:ident),* $(,)?) => { $(
        mod $suite {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$suite(Arc::new(MemoryStore::new())).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let server = RedisServer::start();
                super::$suite(Arc::new(redis_store(&server, "node-a").await)).await;
            }
        }
    )* };
}

on_both_stores!(
    a_user_leaves_with_their_last_subscription,
    racing_joins_and_leaves_report_consistent_counts,
    unknown_rooms_and_subscriptions_are_harmless,
    room_names_are_taken_verbatim,
);

async fn a_user_leaves_with_their_last_subscription(s: Arc<dyn PresenceStore>) {
    let j = s.join("1", 7, key(1, 1)).await.expect("join");
    assert_eq!(
        j,
        Join {
            first: true,
            member_ids: vec![7]
        }
    );
    let j = s.join("1", 3, key(2, 1)).await.expect("join");
    assert_eq!(
        j,
        Join {
            first: true,
            member_ids: vec![3, 7]
        }
    );
    // A second tab of user 7.
    let j = s.join("1", 7, key(3, 1)).await.expect("join");
    assert_eq!(
        j,
        Join {
            first: false,
            member_ids: vec![3, 7]
        }
    );
    let l = s.leave("1", 7, key(1, 1)).await.expect("leave");
    assert_eq!(
        l,
        Leave {
            last: false,
            member_ids: vec![3, 7]
        }
    );
    let l = s.leave("1", 7, key(3, 1)).await.expect("leave");
    assert_eq!(
        l,
        Leave {
            last: true,
            member_ids: vec![3]
        }
    );
    // Leaving twice is harmless.
    let l = s.leave("1", 7, key(3, 1)).await.expect("leave");
    assert_eq!(
        l,
        Leave {
            last: false,
            member_ids: vec![3]
        }
    );
    assert_eq!(s.members("1").await.expect("members"), vec![3]);
    // Ids sort as integers, not as strings.
    s.join("1", 10, key(4, 1)).await.expect("join");
    assert_eq!(s.members("1").await.expect("members"), vec![3, 10]);
    s.leave("1", 3, key(2, 1)).await.expect("leave");
    s.leave("1", 10, key(4, 1)).await.expect("leave");
    assert_eq!(s.members("1").await.expect("members"), Vec::<UserId>::new());
}

/// Whether the lists form a chain of snapshots: each a subset of every longer one.
fn assert_chain(mut lists: Vec<Vec<UserId>>) {
    lists.sort_by_key(Vec::len);
    for pair in lists.windows(2) {
        assert!(
            pair[0].iter().all(|id| pair[1].contains(id)),
            "{:?} is not a snapshot before {:?}",
            pair[0],
            pair[1]
        );
    }
}

async fn racing_joins_and_leaves_report_consistent_counts(s: Arc<dyn PresenceStore>) {
    const USERS: i64 = 12;
    let mut tasks = Vec::new();
    for user in 1..=USERS {
        for tab in 0..2u32 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let j = s
                    .join("race", user, key(user as u64, tab))
                    .await
                    .expect("join");
                (user, j)
            }));
        }
    }
    let mut joins = Vec::new();
    for t in tasks {
        joins.push(t.await.expect("join task"));
    }
    for user in 1..=USERS {
        let firsts = joins.iter().filter(|(u, j)| *u == user && j.first).count();
        assert_eq!(firsts, 1, "exactly one first join for user {user}");
    }
    for (user, j) in &joins {
        assert!(j.member_ids.contains(user), "a joiner sees itself: {j:?}");
    }
    // Each user's first join grew the room by one: the counts seen are 1..=USERS.
    let mut counts: Vec<usize> = joins
        .iter()
        .filter(|(_, j)| j.first)
        .map(|(_, j)| j.member_ids.len())
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=USERS as usize).collect::<Vec<_>>());
    assert_chain(joins.iter().map(|(_, j)| j.member_ids.clone()).collect());
    assert_eq!(
        s.members("race").await.expect("members"),
        (1..=USERS).collect::<Vec<_>>()
    );

    let mut tasks = Vec::new();
    for user in 1..=USERS {
        for tab in 0..2u32 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let l = s
                    .leave("race", user, key(user as u64, tab))
                    .await
                    .expect("leave");
                (user, l)
            }));
        }
    }
    let mut leaves = Vec::new();
    for t in tasks {
        leaves.push(t.await.expect("leave task"));
    }
    for user in 1..=USERS {
        let lasts = leaves.iter().filter(|(u, l)| *u == user && l.last).count();
        assert_eq!(lasts, 1, "exactly one last leave for user {user}");
    }
    let mut counts: Vec<usize> = leaves
        .iter()
        .filter(|(_, l)| l.last)
        .map(|(_, l)| l.member_ids.len())
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (0..USERS as usize).collect::<Vec<_>>());
    for (user, l) in leaves.iter().filter(|(_, l)| l.last) {
        assert!(!l.member_ids.contains(user), "a leaver is gone: {l:?}");
    }
    assert_chain(leaves.iter().map(|(_, l)| l.member_ids.clone()).collect());
    assert!(s.members("race").await.expect("members").is_empty());
}

async fn unknown_rooms_and_subscriptions_are_harmless(s: Arc<dyn PresenceStore>) {
    assert!(s.members("nowhere").await.expect("members").is_empty());
    assert_eq!(
        s.leave("nowhere", 1, key(1, 1)).await.expect("leave"),
        Leave {
            last: false,
            member_ids: vec![]
        }
    );
    s.join("r", 1, key(1, 1)).await.expect("join");
    // Another user's unknown subscription, and an unknown one of a member.
    assert!(!s.leave("r", 2, key(9, 9)).await.expect("leave").last);
    assert!(!s.leave("r", 1, key(9, 9)).await.expect("leave").last);
    // A heartbeat marks activity; it does not make anybody a member.
    s.heartbeat("r", 5).await.expect("heartbeat");
    assert_eq!(s.members("r").await.expect("members"), vec![1]);
    assert!(s.leave("r", 1, key(1, 1)).await.expect("leave").last);
}

async fn room_names_are_taken_verbatim(s: Arc<dyn PresenceStore>) {
    // `"#{params[:room_id]}"`: anything, including separators and the empty string.
    let rooms = ["a:b", "x/y/z", "ünï côdé", "", "1"];
    for (i, room) in rooms.iter().enumerate() {
        let j = s
            .join(room, i as i64 + 1, key(i as u64, 1))
            .await
            .expect("join");
        assert_eq!(j.member_ids, vec![i as i64 + 1], "room {room:?}");
    }
    for (i, room) in rooms.iter().enumerate() {
        assert_eq!(
            s.members(room).await.expect("members"),
            vec![i as i64 + 1],
            "room {room:?}"
        );
        assert!(
            s.leave(room, i as i64 + 1, key(i as u64, 1))
                .await
                .expect("leave")
                .last
        );
    }
}

// ---- The Redis store only ----

#[tokio::test]
async fn redis_store_writes_the_seeds_keys_with_their_ttls() {
    let redis = RedisServer::start();
    let s = redis_store(&redis, "node-a").await;
    s.join("1", 1, key(1, 1)).await.expect("join");
    // presence_subscribe_signed: `room:1:members` = {"1"}, no TTL.
    assert_eq!(redis.smembers("room:1:members"), vec!["1"]);
    assert_eq!(redis.ttl("room:1:members"), -1);
    // PresenceService.mark_online's key, written on join.
    let ttl = redis.ttl("user:1:last_seen");
    assert!((1..=300).contains(&ttl), "last_seen TTL {ttl}");

    // presence_heartbeat: SETEX 30 <unix seconds>.
    s.heartbeat("1", 1).await.expect("heartbeat");
    let ttl = redis.ttl("presence:user:1:room:1");
    assert!((1..=30).contains(&ttl), "heartbeat TTL {ttl}");
    let value: u64 = redis
        .cli(&["GET", "presence:user:1:room:1"])
        .parse()
        .expect("unix seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        value.abs_diff(now) <= 2,
        "heartbeat value {value} vs now {now}"
    );

    // Our own count of live subscriptions.
    assert_eq!(
        redis.lines(&["HKEYS", "ferrocable:subs:1:1"]),
        vec!["node-a/1/1"]
    );
    assert_eq!(
        redis.smembers("ferrocable:node:node-a:subs"),
        vec!["1/1/1/1"]
    );
    assert_eq!(redis.smembers("ferrocable:nodes"), vec!["node-a"]);

    // After the leave: SREM + DEL as the seed's `unsubscribed`; ours gone too.
    s.leave("1", 1, key(1, 1)).await.expect("leave");
    assert!(redis.keys("room:*").is_empty());
    assert!(redis.keys("presence:*").is_empty());
    assert!(redis.keys("ferrocable:subs:*").is_empty());
    assert!(redis.smembers("ferrocable:node:node-a:subs").is_empty());
    // last_seen stays until it expires: it says when the user was last online.
    assert_eq!(redis.keys("user:*"), vec!["user:1:last_seen"]);
}

fn left(room: &str, user: UserId, member_ids: &[UserId]) -> PresenceChange {
    PresenceChange {
        kind: ChangeKind::Left,
        room: room.into(),
        user,
        member_ids: member_ids.to_vec(),
    }
}

#[tokio::test]
async fn a_dead_nodes_users_leave_and_come_back_if_it_was_alive_after_all() {
    let redis = RedisServer::start();
    let a = redis_store(&redis, "node-a").await;
    let b = redis_store(&redis, "node-b").await;
    a.join("r", 1, key(1, 1)).await.expect("join");
    b.join("r", 2, key(1, 1)).await.expect("join");
    b.join("r", 2, key(1, 2)).await.expect("join");
    b.join("s", 2, key(2, 1)).await.expect("join");
    b.heartbeat("r", 2).await.expect("heartbeat");
    // Node B is alive: nothing to sweep.
    assert!(a.sweep_dead_nodes().await.expect("sweep").is_empty());

    // B's alive key expires (what its TTL does when it crashes).
    redis.cli(&["DEL", "ferrocable:node:node-b:alive"]);
    let mut changes = a.sweep_dead_nodes().await.expect("sweep");
    changes.sort_by(|x, y| x.room.cmp(&y.room));
    assert_eq!(changes, vec![left("r", 2, &[1]), left("s", 2, &[])]);
    assert_eq!(redis.smembers("room:r:members"), vec!["1"]);
    assert!(redis.keys("room:s:*").is_empty());
    assert!(redis.keys("presence:user:2:*").is_empty());
    assert!(redis.keys("ferrocable:subs:2:*").is_empty());
    // Only the mark saying B's users were announced as gone is left of B.
    assert_eq!(
        redis.keys("ferrocable:node:node-b:*"),
        vec!["ferrocable:node:node-b:swept"]
    );
    assert_eq!(redis.smembers("ferrocable:nodes"), vec!["node-a"]);
    // Sweeping again finds nothing.
    assert!(a.sweep_dead_nodes().await.expect("sweep").is_empty());

    // B was only cut off: its next sweep finds its alive key gone and writes its
    // subscriptions back, reporting the users who became members again.
    let mut changes = b.sweep().await.expect("sweep");
    changes.sort_by(|x, y| x.room.cmp(&y.room));
    assert_eq!(
        changes,
        vec![
            PresenceChange {
                kind: ChangeKind::Joined,
                room: "r".into(),
                user: 2,
                member_ids: vec![1, 2]
            },
            PresenceChange {
                kind: ChangeKind::Joined,
                room: "s".into(),
                user: 2,
                member_ids: vec![2]
            },
        ]
    );
    assert_eq!(
        redis.lines(&["HLEN", "ferrocable:subs:2:r"]),
        vec!["2"],
        "both tabs are back"
    );
    assert!(
        redis.keys("ferrocable:node:node-b:swept").is_empty(),
        "the restore consumed the mark"
    );
    assert!(b.leave("r", 2, key(1, 1)).await.expect("leave").member_ids == vec![1, 2]);
    assert!(b.leave("r", 2, key(1, 2)).await.expect("leave").last);
}

#[tokio::test]
async fn a_user_on_two_nodes_stays_while_one_node_lives() {
    let redis = RedisServer::start();
    let a = redis_store(&redis, "node-a").await;
    let b = redis_store(&redis, "node-b").await;
    assert!(a.join("r", 1, key(1, 1)).await.expect("join").first);
    assert!(!b.join("r", 1, key(7, 1)).await.expect("join").first);
    redis.cli(&["DEL", "ferrocable:node:node-b:alive"]);
    assert!(a.sweep_dead_nodes().await.expect("sweep").is_empty());
    assert_eq!(redis.smembers("room:r:members"), vec!["1"]);
    assert_eq!(
        redis.lines(&["HKEYS", "ferrocable:subs:1:r"]),
        vec!["node-a/1/1"]
    );
    assert!(a.leave("r", 1, key(1, 1)).await.expect("leave").last);
}

#[tokio::test]
async fn stale_members_without_a_subscription_or_heartbeat_are_removed() {
    let redis = RedisServer::start();
    let a = redis_store(&redis, "node-a").await;
    // A Rails cable server died with a member listed (the reference's server_shutdown).
    redis.cli(&["SADD", "room:8:members", "1", "3"]);
    // A member a Rails server keeps alive with heartbeats.
    redis.cli(&["SADD", "room:9:members", "2"]);
    redis.cli(&["SETEX", "presence:user:2:room:9", "30", "1795832011"]);
    // Ours, live.
    a.join("8", 3, key(1, 1)).await.expect("join");
    // The first sweep only notes member 1 as stale: a member a Rails server just added
    // has no heartbeat yet either.
    assert_eq!(a.sweep_stale_members().await.expect("sweep"), vec![]);
    assert_eq!(redis.smembers("room:8:members"), vec!["1", "3"]);
    assert_eq!(redis.lines(&["HKEYS", "ferrocable:stale:8"]), vec!["1"]);
    // Still stale once the grace is over (its start moved back instead of waiting).
    let long_ago = (now_unix() - STALE_GRACE.as_secs()).to_string();
    redis.cli(&["HSET", "ferrocable:stale:8", "1", &long_ago]);
    let changes = a.sweep_stale_members().await.expect("sweep");
    assert_eq!(changes, vec![left("8", 1, &[3])]);
    assert_eq!(redis.smembers("room:8:members"), vec!["3"]);
    assert_eq!(redis.smembers("room:9:members"), vec!["2"]);
    assert!(redis.lines(&["HKEYS", "ferrocable:stale:8"]).is_empty());
}

#[tokio::test]
async fn a_member_that_heartbeats_within_the_grace_is_kept() {
    let redis = RedisServer::start();
    let a = redis_store(&redis, "node-a").await;
    // Rails' PresenceChannel adds the member at subscribe; the heartbeat comes later.
    redis.cli(&["SADD", "room:7:members", "4"]);
    assert_eq!(a.sweep_stale_members().await.expect("sweep"), vec![]);
    redis.cli(&["SETEX", "presence:user:4:room:7", "30", "1795832011"]);
    let long_ago = (now_unix() - 10 * STALE_GRACE.as_secs()).to_string();
    redis.cli(&["HSET", "ferrocable:stale:7", "4", &long_ago]);
    // Alive now: kept, and no longer a suspect.
    assert_eq!(a.sweep_stale_members().await.expect("sweep"), vec![]);
    assert_eq!(redis.smembers("room:7:members"), vec!["4"]);
    assert!(redis.lines(&["HKEYS", "ferrocable:stale:7"]).is_empty());
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[tokio::test]
async fn after_redis_loses_everything_the_next_sweep_restores_this_node_silently() {
    let redis = RedisServer::start();
    let a = redis_store(&redis, "node-a").await;
    a.join("r", 1, key(1, 1)).await.expect("join");
    a.join("r", 1, key(2, 1)).await.expect("join");
    a.join("r", 2, key(3, 1)).await.expect("join");
    a.join("r", 3, key(4, 1)).await.expect("join");
    a.leave("r", 3, key(4, 1)).await.expect("leave");
    // A restart without persistence; the scripts are gone too (NOSCRIPT -> EVAL).
    redis.cli(&["FLUSHALL"]);
    redis.cli(&["SCRIPT", "FLUSH"]);
    // Nobody was told anyone left, so the restore announces nobody (a second
    // `user_joined` for members every page still shows would be a duplicate).
    let changes = a.sweep().await.expect("sweep");
    assert_eq!(changes, vec![]);
    assert_eq!(redis.smembers("room:r:members"), vec!["1", "2"]);
    assert_eq!(redis.lines(&["HLEN", "ferrocable:subs:1:r"]), vec!["2"]);
    assert!(redis.ttl("ferrocable:node:node-a:alive") > 0);
    // Nothing more to restore.
    assert!(a.sweep().await.expect("sweep").is_empty());
}

#[tokio::test]
async fn one_sweeper_at_a_time_across_the_fleet() {
    let redis = RedisServer::start();
    let mut cfg = config(&redis, "node-a");
    cfg.node_ttl = std::time::Duration::from_secs(30);
    let a = RedisStore::connect(cfg.clone()).await.expect("connects");
    cfg.node_id = "node-b".into();
    let b = RedisStore::connect(cfg).await.expect("connects");
    b.join("r", 2, key(1, 1)).await.expect("join");
    a.sweep().await.expect("sweep");
    assert_eq!(redis.cli(&["GET", "ferrocable:lock:nodes"]), "node-a");
    let pttl: i64 = redis
        .cli(&["PTTL", "ferrocable:lock:nodes"])
        .parse()
        .expect("PTTL");
    assert!(
        pttl > 0 && pttl <= 10_000,
        "lock held for one period: {pttl}"
    );
    // B dies, but A holds the lock for this period: B's own sweep cannot clean, and
    // neither can A's next one until the lock expires.
    redis.cli(&["DEL", "ferrocable:node:node-b:alive"]);
    assert!(a.sweep().await.expect("sweep").is_empty());
    assert_eq!(redis.smembers("room:r:members"), vec!["2"]);
    // When the lock is gone, the next sweeper cleans up.
    redis.cli(&["DEL", "ferrocable:lock:nodes"]);
    assert_eq!(a.sweep().await.expect("sweep"), vec![left("r", 2, &[])]);
}
