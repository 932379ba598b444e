//! Remote disconnects: what `ActionCable.server.remote_connections.where(current_user:
//! u).disconnect` publishes on `<prefix>:action_cable/<gid>` closes that user's
//! connections on every node (the reference's `remote_disconnect` scenario).

mod support;

use support::redis::{start_node, RedisServer};
use support::{presence_id, CableClient, Seen};

const ALICE_GID: &str = "Z2lkOi8vcmVmYXBwL1VzZXIvMQ";

#[tokio::test]
async fn rails_6_1_remote_disconnect_closes_every_tab_and_the_room_hears_one_leave() {
    let redis = RedisServer::start();
    let server = start_node(&redis, &["--globalid-app", "refapp"]);
    let internal = format!("refapp:action_cable/{ALICE_GID}");
    let room = presence_id("7");
    let mut bob = CableClient::welcomed(&server, 2).await;
    bob.subscribe(&room).await;
    // Broadcasts travel through Redis: wait for Bob's own join, not just the barrier.
    assert_eq!(bob.next_json().await["type"], "confirm_subscription");
    let own = bob.next_json().await;
    assert_eq!(
        (
            own["message"]["action"].as_str(),
            own["message"]["user"]["id"].as_i64()
        ),
        (Some("user_joined"), Some(2))
    );
    let mut tabs = Vec::new();
    for _ in 0..2 {
        let mut tab = CableClient::welcomed(&server, 1).await;
        tab.subscribe(&room).await;
        tab.drain().await;
        tabs.push(tab);
        // Each subscribe announces Alice; through Redis, so wait for it.
        let joined = bob.next_json().await;
        assert_eq!(
            (
                joined["message"]["action"].as_str(),
                joined["message"]["user"]["id"].as_i64()
            ),
            (Some("user_joined"), Some(1))
        );
    }
    // One Redis subscription for the user's internal channel, however many tabs.
    redis.wait_numsub(&internal, 1).await;

    assert_eq!(redis.publish(&internal, r#"{"type":"disconnect"}"#), 1);
    for tab in &mut tabs {
        // Rails 6.1: a close 1000 and no disconnect frame.
        loop {
            match tab.next().await {
                Seen::Text(t) => assert!(!t.contains("disconnect"), "6.1 sends no frame: {t}"),
                other => {
                    assert_eq!(other, Seen::Close(1000));
                    break;
                }
            }
        }
    }
    let left = bob.next_json().await;
    assert_eq!(left["message"]["action"], "user_left", "{left}");
    assert_eq!(left["message"]["member_ids"], serde_json::json!([2]));
    assert_eq!(
        bob.drain().await,
        Vec::<String>::new(),
        "one user_left, not one per tab"
    );
    drop(tabs);
    // The last connection gone, the internal channel is unsubscribed.
    redis.wait_numsub(&internal, 0).await;
}

#[tokio::test]
async fn rails_7_1_remote_disconnect_sends_the_remote_reason_first() {
    let redis = RedisServer::start();
    let server = start_node(&redis, &["--globalid-app", "refapp"]);
    let internal = format!("refapp:action_cable/{ALICE_GID}");
    let mut alice = CableClient::welcomed(&server, 1).await;
    let mut bob = CableClient::welcomed(&server, 2).await;
    redis.wait_numsub(&internal, 1).await;
    redis.publish(&internal, r#"{"type":"disconnect","reconnect":false}"#);
    alice
        .expect_json(r#"{"type":"disconnect","reason":"remote","reconnect":false}"#)
        .await;
    assert_eq!(alice.next().await, Seen::Close(1000));
    // Other users are untouched; junk on the channel is ignored.
    redis.publish(&internal, "not json");
    assert_eq!(bob.drain().await, Vec::<String>::new());
}
