//! Big PresenceChannel rooms over real sockets: several hundred members joining at
//! once (a webinar starting), then a newcomer into the full room. Nobody may be cut
//! off as a slow client for a burst it keeps reading, every member must see every
//! other, and the newcomer must get the whole roster exactly once, in frames whose
//! bytes do not grow with the room (no `member_ids`), then its own join with the full
//! list. Embedded and Redis mode.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::redis::RedisServer;
use support::{channels_args, confirm, presence_id, CableClient, Seen, TestServer, CHANNELS_TOML};

/// Members filling the room at once: past the old 256-frame outbox, in both the
/// burst of broadcasts each member gets and the newcomer's roster.
const MEMBERS: i64 = 400;

/// An embedded server (or a node on `redis`) with development auth and no users file:
/// every id is a user, named by id only.
fn server(redis: Option<&RedisServer>) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = redis.map(RedisServer::url);
    let mut extra = Vec::new();
    if let Some(url) = &url {
        extra.extend(["--redis-url", url.as_str(), "--channel-prefix", "rooms"]);
    }
    let args = channels_args(&dir, CHANNELS_TOML, &extra);
    TestServer::start_with_args(dir, args)
}

/// The user id of a presence event frame, read without parsing the whole frame (a
/// member receives hundreds of them, each with up to `MEMBERS` ids).
fn event_user(frame: &str) -> Option<i64> {
    const USER: &str = r#""user":{"id":"#;
    let at = frame.find(USER)? + USER.len();
    let digits: String = frame[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The next presence event of `user`'s client; fails on anything that ends the
/// connection (a `slow_client` disconnect above all).
async fn next_event(c: &mut CableClient, user: i64) -> String {
    match c.next().await {
        Seen::Text(t) if t.contains(r#""type":"disconnect""#) => {
            panic!("member {user} was disconnected: {t}")
        }
        Seen::Text(t) => t,
        other => panic!("member {user}'s connection ended: {other:?}"),
    }
}

/// Connects `MEMBERS` clients, then subscribes them all at once; returns them once
/// every one has been confirmed and has seen every member (itself included).
async fn fill_room(server: &TestServer, id: &str) -> Vec<(i64, CableClient)> {
    let mut connecting = Vec::new();
    for user in 1..=MEMBERS {
        let url = server.url(&format!("user_id={user}"));
        connecting.push(tokio::spawn(async move {
            let mut c = CableClient::connect(&url).await;
            c.expect_json(r#"{"type":"welcome"}"#).await;
            c
        }));
    }
    let mut clients = Vec::new();
    for (user, task) in (1..=MEMBERS).zip(connecting) {
        clients.push((user, task.await.expect("connect task")));
    }
    let mut joining = Vec::new();
    for (user, mut c) in clients {
        let id = id.to_owned();
        joining.push(tokio::spawn(async move {
            c.subscribe(&id).await;
            // In Redis mode a broadcast may come before the confirm: the stream is
            // live in the hub while its SUBSCRIBE is still being confirmed.
            let mut confirmed = false;
            let mut seen = BTreeSet::new();
            while !confirmed || seen.len() < MEMBERS as usize {
                let t = next_event(&mut c, user).await;
                if t == confirm(&id) {
                    assert!(!confirmed, "member {user} confirmed twice");
                    confirmed = true;
                    continue;
                }
                let who = event_user(&t).unwrap_or_else(|| panic!("not an event: {t}"));
                assert!(t.contains(r#""action":"user_joined""#), "{t}");
                seen.insert(who);
            }
            assert_eq!(seen, (1..=MEMBERS).collect::<BTreeSet<_>>());
            (user, c)
        }));
    }
    let mut members = Vec::new();
    for task in joining {
        members.push(task.await.expect("member task"));
    }
    members
}

/// A newcomer into the full room: confirmed, then one roster frame per member (the
/// user and the count, no `member_ids`), each member exactly once, then its own join
/// with every id; every member hears of it. Returns everybody, still connected.
async fn admit_newcomer(
    server: &TestServer,
    id: &str,
    members: Vec<(i64, CableClient)>,
) -> Vec<CableClient> {
    let newcomer_id = MEMBERS + 1;
    let mut newcomer = CableClient::welcomed(server, newcomer_id).await;
    newcomer.subscribe(id).await;
    assert_eq!(next_event(&mut newcomer, newcomer_id).await, confirm(id));
    let mut roster = Vec::new();
    let own = loop {
        let t = next_event(&mut newcomer, newcomer_id).await;
        let frame: Value = serde_json::from_str(&t).expect("JSON");
        let message = frame["message"].clone();
        if message["user"]["id"] == newcomer_id {
            break message;
        }
        let keys: Vec<&str> = message
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["action", "user", "member_count"], "{t}");
        assert_eq!(message["action"], "user_joined", "{t}");
        assert_eq!(message["member_count"], MEMBERS + 1, "{t}");
        roster.push(message["user"]["id"].as_i64().expect("id"));
    };
    let unique: BTreeSet<i64> = roster.iter().copied().collect();
    assert_eq!(roster.len(), unique.len(), "every member exactly once");
    assert_eq!(unique, (1..=MEMBERS).collect::<BTreeSet<_>>());
    assert_eq!(own["action"], "user_joined");
    assert_eq!(own["member_count"], MEMBERS + 1);
    let mut ids: Vec<i64> = own["member_ids"]
        .as_array()
        .expect("member_ids")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=MEMBERS + 1).collect::<Vec<_>>());

    let mut hearing = Vec::new();
    for (user, mut c) in members {
        hearing.push(tokio::spawn(async move {
            loop {
                let t = next_event(&mut c, user).await;
                if event_user(&t) == Some(newcomer_id) {
                    assert!(t.contains(r#""action":"user_joined""#), "{t}");
                    return c;
                }
            }
        }));
    }
    let mut everybody = vec![newcomer];
    for task in hearing {
        everybody.push(task.await.expect("member hears the newcomer"));
    }
    everybody
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_filling_at_once_admits_everybody_and_then_a_newcomer() {
    let server = server(None);
    let id = presence_id("\"webinar\"");
    let members = fill_room(&server, &id).await;
    let _everybody = admit_newcomer(&server, &id, members).await;
    assert!(
        !server.log().contains("slow client"),
        "nobody is cut off as slow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_filling_at_once_admits_everybody_in_redis_mode() {
    let redis = RedisServer::start();
    let server = server(Some(&redis));
    let id = presence_id("\"webinar\"");
    let members = fill_room(&server, &id).await;
    let _everybody = admit_newcomer(&server, &id, members).await;
    assert_eq!(
        redis.cli(&["SCARD", "room:webinar:members"]),
        (MEMBERS + 1).to_string()
    );
    assert!(
        !server.log().contains("slow client"),
        "nobody is cut off as slow"
    );
}
