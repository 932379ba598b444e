//! The Rails broadcast relay: what a Rails app PUBLISHes on `<prefix>:<broadcasting>`
//! reaches our subscribers re-encoded as Rails re-encodes it (the reference's
//! `redis_publish` scenario), what we publish is what Rails would, and Redis
//! subscriptions are reference-counted.

mod support;

use support::redis::{message_frame, next_message, start_node, RedisServer};
use support::{command, confirm, CableClient, TestServer};

const CHAT_PUB: &str = r#"{"channel":"ChatChannel","room":"pub"}"#;

/// `redis_publish.jsonl`: each PUBLISH payload and the `message` the client got.
const PUBLISHED: &[(&str, &str)] = &[
    (
        r#"{"text":"from redis","n":1}"#,
        r#"{"text":"from redis","n":1}"#,
    ),
    (
        r#"{ "z" : 1 ,  "a" : [1, 2.50, 1e3, -0.0, 10000000000000000000] }"#,
        r#"{"z":1,"a":[1,2.5,1000.0,-0.0,10000000000000000000]}"#,
    ),
    (
        r#"{"html":"<b>&amp;</b>","u":"caf\u00e9 ✓ \u2028","slash":"a/b"}"#,
        r#"{"html":"\u003cb\u003e\u0026amp;\u003c/b\u003e","u":"café ✓ \u2028","slash":"a/b"}"#,
    ),
    (r#""just a string""#, r#""just a string""#),
    ("42", "42"),
    ("null", "null"),
    (
        r#"{"identifier":"x","type":"ping"}"#,
        r#"{"identifier":"x","type":"ping"}"#,
    ),
];

async fn subscribed_to_chat(server: &TestServer, user: i64, identifier: &str) -> CableClient {
    let mut c = CableClient::welcomed(server, user).await;
    c.subscribe(identifier).await;
    c.expect_json(&confirm(identifier)).await;
    c
}

#[tokio::test]
async fn a_rails_publish_reaches_a_chat_subscriber_reencoded() {
    let redis = RedisServer::start();
    let server = start_node(&redis, &[]);
    let mut alice = subscribed_to_chat(&server, 1, CHAT_PUB).await;
    // The confirm came after Redis acknowledged the SUBSCRIBE: nothing to wait for.
    assert_eq!(redis.numsub("refapp:chat_pub"), 1);

    for (payload, message) in PUBLISHED {
        assert_eq!(redis.publish("refapp:chat_pub", payload), 1);
        alice.expect_json(&message_frame(CHAT_PUB, message)).await;
    }
    // Not JSON: dropped (Rails logs JSON::ParserError). The unprefixed channel is not
    // ours: nobody hears it. The next broadcast is the next thing the client sees.
    assert_eq!(redis.publish("refapp:chat_pub", "hello world"), 1);
    assert_eq!(redis.publish("chat_pub", r#"{"text":"no prefix"}"#), 0);
    assert_eq!(redis.publish("refapp:chat_pub", r#"{"after":true}"#), 1);
    alice
        .expect_json(&message_frame(CHAT_PUB, r#"{"after":true}"#))
        .await;
    assert!(
        server.log().contains("broadcast is not JSON"),
        "the dropped payload is logged"
    );
}

#[tokio::test]
async fn our_broadcasts_go_out_as_the_json_rails_would_publish() {
    let redis = RedisServer::start();
    let server = start_node(&redis, &[]);
    let (_rails, mut published) = redis.subscriber(&["refapp:chat_lobby"]).await;
    let lobby = r#"{"channel":"ChatChannel","room":"lobby"}"#;
    let mut alice = subscribed_to_chat(&server, 1, lobby).await;
    alice
        .perform(
            lobby,
            r#"{"action":"speak","text":"<hi> & ünïcödé","extra":1}"#,
        )
        .await;
    // chat_speak.jsonl: the app's broadcast of {"text"=>…, "user_id"=>…}.
    let want = r#"{"text":"\u003chi\u003e \u0026 ünïcödé","user_id":1}"#;
    assert_eq!(
        next_message(&mut published).await,
        ("refapp:chat_lobby".into(), want.into())
    );
    alice.expect_json(&message_frame(lobby, want)).await;
}

#[tokio::test]
async fn without_a_prefix_channels_are_the_bare_broadcasting_names() {
    let redis = RedisServer::start();
    let server = TestServer::start(&["--redis-url", &redis.url()]);
    let id = r#"{"channel":"ChatChannel","room":"x"}"#;
    let mut alice = subscribed_to_chat(&server, 1, id).await;
    assert_eq!(redis.numsub("chat_x"), 1);
    assert_eq!(redis.publish("refapp:chat_x", "1"), 0);
    assert_eq!(redis.publish("chat_x", r#"{"n":2}"#), 1);
    alice.expect_json(&message_frame(id, r#"{"n":2}"#)).await;
}

#[tokio::test]
async fn one_redis_subscription_per_channel_per_node() {
    let redis = RedisServer::start();
    let server = start_node(&redis, &[]);
    let id = r#"{"channel":"ChatChannel","room":"rc"}"#;
    // The same broadcasting under another identifier spelling (duplicate_subscribe).
    let id2 = r#"{"room":"rc","channel":"ChatChannel"}"#;
    let mut alice = subscribed_to_chat(&server, 1, id).await;
    let mut bob = subscribed_to_chat(&server, 2, id).await;
    bob.subscribe(id2).await;
    bob.expect_json(&confirm(id2)).await;
    assert_eq!(redis.numsub("refapp:chat_rc"), 1);

    assert_eq!(redis.publish("refapp:chat_rc", "7"), 1);
    alice.expect_json(&message_frame(id, "7")).await;
    let mut got = [bob.next_json().await, bob.next_json().await];
    got.sort_by_key(|v| v["identifier"].as_str().map(str::to_owned));
    assert_eq!(
        got.iter()
            .map(|v| (
                v["identifier"].as_str().unwrap_or_default(),
                v["message"].clone()
            ))
            .collect::<Vec<_>>(),
        vec![(id, serde_json::json!(7)), (id2, serde_json::json!(7))]
    );

    bob.unsubscribe(id).await;
    bob.unsubscribe(id2).await;
    bob.drain().await;
    assert_eq!(redis.numsub("refapp:chat_rc"), 1, "alice still listens");
    alice.send(&command("unsubscribe", id, None)).await;
    alice.drain().await;
    assert_eq!(
        redis.numsub("refapp:chat_rc"),
        0,
        "UNSUBSCRIBEd with the last"
    );
}

#[tokio::test]
async fn health_reports_redis_mode() {
    let redis = RedisServer::start();
    let server = start_node(&redis, &[]);
    let resp = server.http_get("/health").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains(r#"{"status":"ok","mode":"redis","redis":"up","#),
        "{resp}"
    );
    let embedded = TestServer::start(&[]);
    let resp = embedded.http_get("/health").await;
    assert!(
        resp.contains(r#"{"status":"ok","mode":"embedded","connections""#),
        "{resp}"
    );
}
