//! Redis killed and restarted (empty, no persistence) under running nodes: clients stay
//! connected, `/health` says degraded meanwhile, the nodes re-SUBSCRIBE and re-register
//! their presence, broadcasts flow again, and a leave made during the outage is
//! announced afterwards, and nobody still present is announced again (no duplicate
//! `user_joined` after recovery).

mod support;

use serde_json::Value;
use support::redis::{message_frame, presence_frame, start_node, RedisServer, ALICE, BOB, CAROL};
use support::{confirm, CableClient, TestServer};

const ROOM: &str = r#"{"channel":"PresenceChannel","room_id":"out"}"#;
const CHAT: &str = r#"{"channel":"ChatChannel","room":"out"}"#;

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("test frames are JSON")
}

async fn health(server: &TestServer) -> String {
    server.http_get("/health").await
}

async fn wait_health(server: &TestServer, want: &str) {
    let deadline = std::time::Instant::now() + support::EVENT_TIMEOUT;
    loop {
        let h = health(server).await;
        if h.contains(want) {
            assert!(h.starts_with("HTTP/1.1 200"), "{h}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health never showed {want}: {h}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

const DAVE: &str = r#"{"id":4,"name":"Dave","avatar_url":null}"#;

/// Reads frames until one satisfies `pred`; returns it.
async fn wait_frame(c: &mut CableClient, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_frame_keeping(c, what, &mut Vec::new(), pred).await
}

/// [`wait_frame`], keeping the frames read before the one wanted in `seen`.
async fn wait_frame_keeping(
    c: &mut CableClient,
    what: &str,
    seen: &mut Vec<Value>,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let v = c.next_json().await;
        if pred(&v) {
            return v;
        }
        eprintln!("while waiting for {what}, skipped {v}");
        seen.push(v);
    }
}

/// Whether `v` is a presence event `action` about user `id`.
fn presence_event(v: &Value, action: &str, id: i64) -> bool {
    v["identifier"] == ROOM && v["message"]["action"] == action && v["message"]["user"]["id"] == id
}

async fn joined(server: &TestServer, user: i64, user_json: &str, ids: &[i64]) -> CableClient {
    let mut c = CableClient::welcomed(server, user).await;
    c.subscribe(ROOM).await;
    c.expect_json(&confirm(ROOM)).await;
    c.expect_json(&presence_frame(ROOM, "user_joined", user_json, ids))
        .await;
    c.subscribe(CHAT).await;
    c.expect_json(&confirm(CHAT)).await;
    c
}

#[tokio::test]
async fn redis_restart_keeps_clients_and_restores_broadcasts_and_presence() {
    let mut redis = RedisServer::start();
    let a = start_node(&redis, &["--strict-presence", "--node-ttl", "1.5"]);
    let b = start_node(&redis, &["--strict-presence", "--node-ttl", "1.5"]);
    let mut alice = joined(&a, 1, ALICE, &[1]).await;
    let mut bob = joined(&b, 2, BOB, &[1, 2]).await;
    // Carol (node A) and Dave (node B) leave during the outage: their leaves, announced
    // by each node after it restored its presence, mark the end of what the restore
    // announces (below).
    let carol = joined(&a, 3, CAROL, &[1, 2, 3]).await;
    let mut dave = joined(&b, 4, DAVE, &[1, 2, 3, 4]).await;
    let all_in = json(&presence_frame(ROOM, "user_joined", DAVE, &[1, 2, 3, 4]));
    for c in [&mut alice, &mut bob] {
        wait_frame(c, "dave's user_joined", |v| *v == all_in).await;
    }
    let mut carol = carol;
    wait_frame(&mut carol, "dave's user_joined", |v| *v == all_in).await;
    dave.drain().await;
    wait_health(&a, r#""status":"ok","mode":"redis","redis":"up""#).await;

    redis.kill();
    wait_health(&a, r#""status":"degraded","mode":"redis","redis":"down""#).await;
    wait_health(&b, r#""redis":"down""#).await;
    // Clients are not disconnected: each still answers a barrier.
    alice.drain().await;
    bob.drain().await;
    assert_eq!(carol.close(1000).await, support::Seen::Close(1000));
    assert_eq!(dave.close(1000).await, support::Seen::Close(1000));
    wait_health(&a, r#""connections":1"#).await;
    wait_health(&b, r#""connections":1"#).await;

    redis.restart();
    // Both nodes re-SUBSCRIBE what their clients listen to...
    redis.wait_numsub("refapp:chat_out", 2).await;
    redis.wait_numsub("refapp:presence_room_out", 2).await;
    wait_health(&a, r#""status":"ok","mode":"redis","redis":"up""#).await;
    wait_health(&b, r#""redis":"up""#).await;
    // ...and write their presence back, without those who left meanwhile.
    redis
        .wait_until("presence restored", |r| {
            r.smembers("room:out:members") == vec!["1", "2"]
        })
        .await;

    // Broadcasts cross nodes again.
    let mut after = [Vec::new(), Vec::new()];
    alice
        .perform(CHAT, r#"{"action":"speak","text":"back"}"#)
        .await;
    let want = json(&message_frame(CHAT, r#"{"text":"back","user_id":1}"#));
    wait_frame_keeping(&mut alice, "her own chat", &mut after[0], |v| *v == want).await;
    wait_frame_keeping(&mut bob, "alice's chat", &mut after[1], |v| *v == want).await;

    // Each node announces the leave it queued after what its restore announced (one
    // sweep writes both, they are published in that order on the room's stream, and
    // Redis relays one publisher's messages in order), so once both leaves are in,
    // every restored member that was announced has been seen.
    for (c, seen) in [&mut alice, &mut bob].into_iter().zip(after.iter_mut()) {
        let mut left = Vec::new();
        while left.len() < 2 {
            let v = wait_frame_keeping(c, "carol's and dave's user_left", seen, |v| {
                presence_event(v, "user_left", 3) || presence_event(v, "user_left", 4)
            })
            .await;
            left.push(v["message"]["user"]["id"].as_i64());
        }
        left.sort();
        assert_eq!(left, [Some(3), Some(4)]);
    }
    let rejoined: Vec<Vec<i64>> = after
        .iter()
        .map(|seen| {
            let mut ids: Vec<i64> = seen
                .iter()
                .filter(|v| v["message"]["action"] == "user_joined")
                .filter_map(|v| v["message"]["user"]["id"].as_i64())
                .collect();
            ids.sort();
            ids
        })
        .collect();
    // Nobody was told Alice or Bob left (Redis lost its data; no node was swept as
    // dead), so restoring their presence announces nothing.
    assert_eq!(
        rejoined,
        vec![Vec::<i64>::new(), vec![]],
        "user_joined after Redis came back, per client (Alice, Bob): {after:?}"
    );

    // Presence works as before: Bob leaves, Alice is told.
    bob.unsubscribe(ROOM).await;
    let left = json(&presence_frame(ROOM, "user_left", BOB, &[1]));
    wait_frame(&mut alice, "bob's user_left", |v| *v == left).await;
}

#[tokio::test]
async fn a_leave_during_the_outage_is_announced_when_redis_returns() {
    let mut redis = RedisServer::start();
    let a = start_node(&redis, &["--strict-presence", "--node-ttl", "1.5"]);
    let b = start_node(&redis, &["--strict-presence", "--node-ttl", "1.5"]);
    let mut alice = joined(&a, 1, ALICE, &[1]).await;
    let bob = joined(&b, 2, BOB, &[1, 2]).await;
    alice
        .expect_json(&presence_frame(ROOM, "user_joined", BOB, &[1, 2]))
        .await;

    redis.kill();
    wait_health(&b, r#""redis":"down""#).await;
    // Bob closes while Redis is gone: his leave cannot be written, it is queued.
    assert_eq!(bob.close(1000).await, support::Seen::Close(1000));
    wait_health(&b, r#""connections":0"#).await;

    redis.restart();
    redis
        .wait_until("alice restored, bob gone", |r| {
            r.smembers("room:out:members") == vec!["1"]
        })
        .await;
    // Alice hears that Bob left (the member list depends on how far the restore got).
    let v = wait_frame(&mut alice, "bob's user_left", |v| {
        v["message"]["action"] == "user_left" && v["message"]["user"]["id"] == 2
    })
    .await;
    assert_eq!(v["identifier"], ROOM);
    assert_eq!(v["message"]["user"].to_string(), BOB);
}
