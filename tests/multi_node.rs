//! Several ferrocable processes on one Redis: broadcasts cross nodes, presence spans
//! them (one user in two tabs on two nodes leaves once), a `kill -9`ed node's users
//! leave within the bound, a SIGTERMed node leaves cleanly.

mod support;

use std::time::{Duration, Instant};

use support::redis::{
    message_frame, presence_frame, roster_frame, start_node, RedisServer, ALICE, BOB, CAROL,
};
use support::{confirm, CableClient, TestServer};

const LOBBY: &str = r#"{"channel":"ChatChannel","room":"lobby"}"#;

/// A short node TTL so crash tests take seconds; the default bound (45 s for 15 s)
/// scales to 3 node TTLs.
const NODE_TTL: &str = "1.5";
const BOUND: Duration = Duration::from_millis(4_500);

async fn subscribed(server: &TestServer, user: i64, identifier: &str) -> CableClient {
    let mut c = CableClient::welcomed(server, user).await;
    c.subscribe(identifier).await;
    c.expect_json(&confirm(identifier)).await;
    c
}

/// Waits for the next frame on `c` that is a presence event, skipping others.
async fn next_presence(c: &mut CableClient) -> String {
    loop {
        let v = c.next_json().await;
        if v["message"]["action"].is_string() {
            return v.to_string();
        }
    }
}

#[tokio::test]
async fn broadcasts_cross_three_nodes() {
    let redis = RedisServer::start();
    let nodes: Vec<TestServer> = (0..3).map(|_| start_node(&redis, &[])).collect();
    let mut alice = subscribed(&nodes[0], 1, LOBBY).await;
    let mut bob = subscribed(&nodes[1], 2, LOBBY).await;
    let mut carol = subscribed(&nodes[2], 3, LOBBY).await;
    assert_eq!(redis.numsub("refapp:chat_lobby"), 3);
    alice
        .perform(LOBBY, r#"{"action":"speak","text":"hello from alice"}"#)
        .await;
    let want = message_frame(LOBBY, r#"{"text":"hello from alice","user_id":1}"#);
    alice.expect_json(&want).await;
    bob.expect_json(&want).await;
    carol.expect_json(&want).await;
    carol
        .perform(LOBBY, r#"{"action":"speak","text":"and carol"}"#)
        .await;
    let want = message_frame(LOBBY, r#"{"text":"and carol","user_id":3}"#);
    for c in [&mut alice, &mut bob, &mut carol] {
        c.expect_json(&want).await;
    }
}

#[tokio::test]
async fn presence_spans_nodes() {
    let redis = RedisServer::start();
    let a = start_node(&redis, &[]);
    let b = start_node(&redis, &[]);
    let c = start_node(&redis, &[]);
    let id = r#"{"channel":"PresenceChannel","room_id":"mn"}"#;
    let mut alice = subscribed(&a, 1, id).await;
    alice
        .expect_json(&presence_frame(id, "user_joined", ALICE, &[1]))
        .await;
    // Bob on another node gets the roster (Alice, joined elsewhere), then his own join.
    let mut bob = subscribed(&b, 2, id).await;
    bob.expect_json(&roster_frame(id, ALICE, 2)).await;
    bob.expect_json(&presence_frame(id, "user_joined", BOB, &[1, 2]))
        .await;
    alice
        .expect_json(&presence_frame(id, "user_joined", BOB, &[1, 2]))
        .await;
    let mut carol = subscribed(&c, 3, id).await;
    carol.expect_json(&roster_frame(id, ALICE, 3)).await;
    carol.expect_json(&roster_frame(id, BOB, 3)).await;
    carol
        .expect_json(&presence_frame(id, "user_joined", CAROL, &[1, 2, 3]))
        .await;
    let carol_joined = presence_frame(id, "user_joined", CAROL, &[1, 2, 3]);
    alice.expect_json(&carol_joined).await;
    bob.expect_json(&carol_joined).await;
    assert_eq!(redis.smembers("room:mn:members"), vec!["1", "2", "3"]);

    bob.unsubscribe(id).await;
    let bob_left = presence_frame(id, "user_left", BOB, &[1, 3]);
    alice.expect_json(&bob_left).await;
    carol.expect_json(&bob_left).await;
    assert_eq!(redis.smembers("room:mn:members"), vec!["1", "3"]);
}

#[tokio::test]
async fn one_user_in_two_tabs_on_two_nodes_leaves_with_the_last_tab() {
    let redis = RedisServer::start();
    let a = start_node(&redis, &["--strict-presence"]);
    let b = start_node(&redis, &["--strict-presence"]);
    let id = r#"{"channel":"PresenceChannel","room_id":"tabs"}"#;
    let mut bob = subscribed(&a, 2, id).await;
    bob.expect_json(&presence_frame(id, "user_joined", BOB, &[2]))
        .await;
    let mut tab_a = subscribed(&a, 1, id).await;
    let alice_joined = presence_frame(id, "user_joined", ALICE, &[1, 2]);
    tab_a.expect_json(&alice_joined).await;
    bob.expect_json(&alice_joined).await;
    // The second tab, on another node. As every subscribe does, it announces the user
    // (so the tab gets its own user_joined); the membership does not change.
    let mut tab_b = subscribed(&b, 1, id).await;
    tab_b.expect_json(&alice_joined).await;
    bob.expect_json(&alice_joined).await;
    assert_eq!(
        redis.lines(&["HLEN", "ferrocable:subs:1:tabs"]),
        vec!["2"],
        "two live subscriptions"
    );

    // Closing the tab on node B: Alice is still here (tab A), so no user_left. A
    // broadcast published after the leave is the next thing Bob sees.
    drop(tab_b);
    redis
        .wait_until("the tab on node B left", |r| {
            r.lines(&["HLEN", "ferrocable:subs:1:tabs"]) == vec!["1"]
        })
        .await;
    assert_eq!(redis.smembers("room:tabs:members"), vec!["1", "2"]);
    redis.publish("refapp:presence_room_tabs", r#"{"marker":1}"#);
    bob.expect_json(&message_frame(id, r#"{"marker":1}"#)).await;

    // The last tab closes: one user_left.
    drop(tab_a);
    bob.expect_json(&presence_frame(id, "user_left", ALICE, &[2]))
        .await;
    assert_eq!(redis.smembers("room:tabs:members"), vec!["2"]);
}

#[tokio::test]
async fn a_killed_nodes_users_leave_within_the_bound() {
    let redis = RedisServer::start();
    let survivor = start_node(&redis, &["--node-ttl", NODE_TTL]);
    let doomed = start_node(&redis, &["--node-ttl", NODE_TTL, "--node-id", "doomed"]);
    let id = r#"{"channel":"PresenceChannel","room_id":"crash"}"#;
    let mut bob = subscribed(&survivor, 2, id).await;
    assert!(next_presence(&mut bob).await.contains(r#""user_joined""#));
    let mut alice = subscribed(&doomed, 1, id).await;
    assert!(next_presence(&mut alice).await.contains(r#""user_joined""#));
    bob.expect_json(&presence_frame(id, "user_joined", ALICE, &[1, 2]))
        .await;

    // kill -9: no unsubscribe runs on that node.
    let killed_at = Instant::now();
    drop(doomed);
    bob.expect_json(&presence_frame(id, "user_left", ALICE, &[2]))
        .await;
    let took = killed_at.elapsed();
    assert!(took <= BOUND, "user_left took {took:?}, bound {BOUND:?}");
    assert_eq!(redis.smembers("room:crash:members"), vec!["2"]);
    // Only the mark saying its users were announced as gone stays (for its restore,
    // should it come back).
    assert_eq!(
        redis.keys("ferrocable:node:doomed:*"),
        vec!["ferrocable:node:doomed:swept"]
    );
    assert!(redis.keys("ferrocable:subs:1:*").is_empty());
    assert!(!redis
        .smembers("ferrocable:nodes")
        .contains(&"doomed".into()));
    drop(alice);
}

#[tokio::test]
async fn a_sigtermed_node_leaves_cleanly() {
    let redis = RedisServer::start();
    let survivor = start_node(&redis, &[]);
    let mut leaving = start_node(&redis, &["--node-id", "leaving"]);
    let id = r#"{"channel":"PresenceChannel","room_id":"term"}"#;
    let mut bob = subscribed(&survivor, 2, id).await;
    assert!(next_presence(&mut bob).await.contains(r#""user_joined""#));
    let mut alice = subscribed(&leaving, 1, id).await;
    // The roster (Bob, joined on the other node), then her own join.
    alice.expect_json(&roster_frame(id, BOB, 2)).await;
    alice
        .expect_json(&presence_frame(id, "user_joined", ALICE, &[1, 2]))
        .await;
    bob.expect_json(&presence_frame(id, "user_joined", ALICE, &[1, 2]))
        .await;
    assert_eq!(redis.cli(&["EXISTS", "ferrocable:node:leaving:alive"]), "1");

    leaving.terminate();
    // Alice is told to reconnect; Bob hears her leave at once, not after a TTL.
    let v = alice.next_json().await;
    assert_eq!(
        v.to_string(),
        r#"{"type":"disconnect","reason":"server_restart","reconnect":true}"#
    );
    bob.expect_json(&presence_frame(id, "user_left", ALICE, &[2]))
        .await;
    assert!(leaving.wait_exit(Duration::from_secs(10)).success());
    assert_eq!(redis.smembers("room:term:members"), vec!["2"]);
    // The node deregistered: nothing of it left for a sweeper but an empty entry.
    assert_eq!(redis.cli(&["EXISTS", "ferrocable:node:leaving:alive"]), "0");
    assert!(redis.smembers("ferrocable:node:leaving:subs").is_empty());
}
