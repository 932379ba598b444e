//! PresenceChannel on a Redis-mode node: the Redis keys, TTLs and PUBLISHed bytes of
//! the reference's presence scenarios (`presence_subscribe_signed`,
//! `presence_heartbeat`, `presence_two_users`), recorded from Rails 6.1 with channel
//! prefix `refapp`.

mod support;

use support::redis::{
    next_message, presence_frame, presence_payload, start_node, RedisServer, ALICE, BOB,
};
use support::{confirm, CableClient, Seen};

#[tokio::test]
async fn presence_subscribe_signed_keys_and_publishes() {
    let redis = RedisServer::start();
    let server = start_node(&redis, &[]);
    // Another Rails process listening on the room, as the recorder's PSUBSCRIBE did.
    let (_listener, mut published) = redis.subscriber(&["refapp:presence_room_1"]).await;

    let mut alice = CableClient::welcomed(&server, 1).await;
    let id = r#"{"channel":"PresenceChannel","room_id":"1"}"#;
    alice.subscribe(id).await;
    alice.expect_json(&confirm(id)).await;
    // The joiner's own user_joined comes back through Redis.
    alice
        .expect_json(&presence_frame(id, "user_joined", ALICE, &[1]))
        .await;
    assert_eq!(
        next_message(&mut published).await,
        (
            "refapp:presence_room_1".into(),
            presence_payload("user_joined", ALICE, &[1])
        )
    );
    // "after subscribe": room:1:members = {"1"}, TTL -1; the room channel subscribed.
    assert_eq!(redis.smembers("room:1:members"), vec!["1"]);
    assert_eq!(redis.ttl("room:1:members"), -1);
    assert_eq!(redis.numsub("refapp:presence_room_1"), 2);

    assert_eq!(alice.close(1000).await, Seen::Close(1000));
    assert_eq!(
        next_message(&mut published).await,
        (
            "refapp:presence_room_1".into(),
            presence_payload("user_left", ALICE, &[])
        )
    );
    // "end": no app keys (last_seen aside, see presence::redis), no subscription.
    assert!(redis.keys("room:*").is_empty());
    assert!(redis.keys("presence:*").is_empty());
    assert!(redis.keys("ferrocable:subs:*").is_empty());
    redis.wait_numsub("refapp:presence_room_1", 1).await;
}

#[tokio::test]
async fn presence_heartbeat_key_and_ttl() {
    let redis = RedisServer::start();
    let server = start_node(&redis, &[]);
    let mut alice = CableClient::welcomed(&server, 1).await;
    let id = r#"{"channel":"PresenceChannel","room_id":"3"}"#;
    alice.subscribe(id).await;
    alice.expect_json(&confirm(id)).await;
    alice
        .expect_json(&presence_frame(id, "user_joined", ALICE, &[1]))
        .await;
    alice.perform(id, r#"{"action":"heartbeat"}"#).await;
    // perform -> nothing sent back.
    assert_eq!(alice.drain().await, Vec::<String>::new());
    // "after heartbeat": string of unix seconds, TTL 29 right away.
    let ttl = redis.ttl("presence:user:1:room:3");
    assert!((1..=30).contains(&ttl), "TTL {ttl}");
    let at: u64 = redis
        .cli(&["GET", "presence:user:1:room:3"])
        .parse()
        .expect("unix seconds");
    assert!(at > 1_700_000_000, "unix seconds, got {at}");
    assert_eq!(redis.smembers("room:3:members"), vec!["1"]);

    alice.unsubscribe(id).await;
    assert_eq!(alice.drain().await, Vec::<String>::new());
    // "after unsubscribe": both deleted.
    assert!(redis.keys("presence:*").is_empty());
    assert!(redis.keys("room:*").is_empty());
    // The last local subscriber left: UNSUBSCRIBEd.
    assert_eq!(redis.numsub("refapp:presence_room_3"), 0);
}

#[tokio::test]
async fn presence_two_users_keys() {
    let redis = RedisServer::start();
    let server = start_node(&redis, &["--strict-presence"]);
    let (_listener, mut published) = redis.subscriber(&["refapp:presence_room_2"]).await;
    let id = r#"{"channel":"PresenceChannel","room_id":"2"}"#;
    let mut alice = CableClient::welcomed(&server, 1).await;
    alice.subscribe(id).await;
    alice.expect_json(&confirm(id)).await;
    alice
        .expect_json(&presence_frame(id, "user_joined", ALICE, &[1]))
        .await;
    let mut bob = CableClient::welcomed(&server, 2).await;
    bob.subscribe(id).await;
    bob.expect_json(&confirm(id)).await;
    bob.expect_json(&presence_frame(id, "user_joined", BOB, &[1, 2]))
        .await;
    alice
        .expect_json(&presence_frame(id, "user_joined", BOB, &[1, 2]))
        .await;
    // "both joined".
    assert_eq!(redis.smembers("room:2:members"), vec!["1", "2"]);

    bob.unsubscribe(id).await;
    alice
        .expect_json(&presence_frame(id, "user_left", BOB, &[1]))
        .await;
    // "bob unsubscribed".
    assert_eq!(redis.smembers("room:2:members"), vec!["1"]);

    drop(bob);
    assert_eq!(alice.close(1000).await, Seen::Close(1000));
    // The recorder's view of the PUBLISHes, in order.
    let mut payloads = Vec::new();
    for _ in 0..4 {
        payloads.push(next_message(&mut published).await.1);
    }
    assert_eq!(
        payloads,
        vec![
            presence_payload("user_joined", ALICE, &[1]),
            presence_payload("user_joined", BOB, &[1, 2]),
            presence_payload("user_left", BOB, &[1]),
            presence_payload("user_left", ALICE, &[]),
        ]
    );
    // "alice closed": no keys.
    assert!(redis.keys("room:*").is_empty());
    assert!(redis.keys("presence:*").is_empty());
}
