//! PresenceChannel end to end over real sockets: the seed's payloads, the roster for
//! newcomers, several tabs, heartbeat.

mod support;

use support::redis::roster_frame;
use support::{confirm, presence_id, CableClient, TestServer};

fn joined(identifier: &str, user: &str, ids: &[i64]) -> String {
    event(identifier, "user_joined", user, ids)
}

fn left(identifier: &str, user: &str, ids: &[i64]) -> String {
    event(identifier, "user_left", user, ids)
}

fn event(identifier: &str, action: &str, user: &str, ids: &[i64]) -> String {
    let ids_text: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let message = format!(
        r#"{{"action":"{action}","user":{user},"member_ids":[{}],"member_count":{}}}"#,
        ids_text.join(","),
        ids.len()
    );
    format!(
        r#"{{"identifier":{},"message":{message}}}"#,
        serde_json::to_string(identifier).expect("string")
    )
}

const ALICE: &str =
    r#"{"id":1,"name":"Alice","avatar_url":"https://example.test/avatars/alice.png"}"#;
const BOB: &str = r#"{"id":2,"name":"Bob","avatar_url":"https://example.test/avatars/bob.png"}"#;

#[tokio::test]
async fn joiner_gets_confirm_then_its_own_user_joined() {
    let server = TestServer::start(&[]);
    let mut alice = CableClient::welcomed(&server, 1).await;
    let id = r#"{"channel":"PresenceChannel","room_id":"1"}"#;
    alice.subscribe(id).await;
    assert_eq!(
        alice.drain().await,
        vec![confirm(id), joined(id, ALICE, &[1])]
    );
}

#[tokio::test]
async fn newcomer_sees_the_roster_and_everybody_sees_joins_and_leaves() {
    let server = TestServer::start(&[]);
    let id = presence_id("2");
    let mut alice = CableClient::welcomed(&server, 1).await;
    alice.subscribe(&id).await;
    assert_eq!(
        alice.drain().await,
        vec![confirm(&id), joined(&id, ALICE, &[1])]
    );

    let mut bob = CableClient::welcomed(&server, 2).await;
    bob.subscribe(&id).await;
    // Bob: confirm, Alice from the roster, then his own join.
    assert_eq!(
        bob.drain().await,
        vec![
            confirm(&id),
            roster_frame(&id, ALICE, 2),
            joined(&id, BOB, &[1, 2])
        ]
    );
    assert_eq!(alice.drain().await, vec![joined(&id, BOB, &[1, 2])]);

    // Bob unsubscribes: no reply to him, user_left to Alice.
    bob.unsubscribe(&id).await;
    assert_eq!(bob.drain().await, Vec::<String>::new());
    assert_eq!(alice.drain().await, vec![left(&id, BOB, &[1])]);
}

#[tokio::test]
async fn strict_mode_sends_no_roster() {
    let server = TestServer::start(&["--strict-presence"]);
    let id = presence_id("3");
    let mut alice = CableClient::welcomed(&server, 1).await;
    alice.subscribe(&id).await;
    alice.drain().await;
    let mut bob = CableClient::welcomed(&server, 2).await;
    bob.subscribe(&id).await;
    assert_eq!(
        bob.drain().await,
        vec![confirm(&id), joined(&id, BOB, &[1, 2])]
    );
}

#[tokio::test]
async fn a_user_in_two_tabs_leaves_with_the_last_tab() {
    let server = TestServer::start(&[]);
    let id = presence_id("4");
    let mut watcher = CableClient::welcomed(&server, 2).await;
    watcher.subscribe(&id).await;
    watcher.drain().await;

    let mut tab1 = CableClient::welcomed(&server, 1).await;
    tab1.subscribe(&id).await;
    tab1.drain().await;
    let mut tab2 = CableClient::welcomed(&server, 1).await;
    tab2.subscribe(&id).await;
    // The second tab sees the roster (Bob) and its own join; membership is unchanged.
    assert_eq!(
        tab2.drain().await,
        vec![
            confirm(&id),
            roster_frame(&id, BOB, 2),
            joined(&id, ALICE, &[1, 2])
        ]
    );
    assert_eq!(
        watcher.drain().await,
        vec![joined(&id, ALICE, &[1, 2]), joined(&id, ALICE, &[1, 2])]
    );

    // Closing one tab: Alice is still present, nobody hears of a leave.
    tab1.close(1000).await;
    tab2.drain().await;
    assert_eq!(watcher.drain().await, Vec::<String>::new());

    // Closing the last tab: one user_left.
    tab2.close(1000).await;
    // The leave is broadcast before the closed connection's task ends; wait for it.
    assert_eq!(watcher.next_json().await["message"]["action"], "user_left");
    assert_eq!(watcher.drain().await, Vec::<String>::new());
}

#[tokio::test]
async fn heartbeat_is_accepted_silently() {
    let server = TestServer::start(&[]);
    let id = presence_id("5");
    let mut alice = CableClient::welcomed(&server, 1).await;
    alice.subscribe(&id).await;
    alice.drain().await;
    alice.perform(&id, r#"{"action":"heartbeat"}"#).await;
    assert_eq!(alice.drain().await, Vec::<String>::new());
    // An unknown action would be logged as "command not processed".
    assert!(
        !server.log().contains("command not processed"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn ping_arrives_within_three_seconds_of_welcome() {
    let server = TestServer::start(&[]);
    let mut c = CableClient::connect(&server.url("user_id=1")).await;
    assert_eq!(
        c.next_raw().await,
        support::Seen::Text(r#"{"type":"welcome"}"#.into())
    );
    let started = std::time::Instant::now();
    let support::Seen::Text(t) = c.next_raw().await else {
        panic!("expected a ping")
    };
    assert!(t.starts_with(r#"{"type":"ping","message":"#), "{t}");
    let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let sent = v["message"].as_u64().expect("unix seconds");
    assert!(sent.abs_diff(now) <= 2, "ping carries the unix time");
    // A bound, not a timing assertion on performance: Rails' protocol requires it.
    assert!(
        started.elapsed() <= std::time::Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
}
