//! Declared channels against the real binary and a real redis-server: `member_of`
//! (SISMEMBER at subscribe time; a Redis error or outage rejects, never confirms),
//! `stream_for` streams named exactly as Rails' `broadcasting_for` names them (a
//! broadcast PUBLISHed into Redis as `ActionCable.server.broadcast` does arrives),
//! `--confirm-unknown-channels`, and the declarations refused at startup.

mod support;

use support::redis::{message_frame, next_message, RedisServer, PREFIX};
use support::{channels_args, confirm, reject, CableClient, TestServer};

const CHANNELS: &str = r#"
[[channels]]
name = "RoomChannel"
stream_for = { model = "Room", param = "room_id" }
member_of = "room:{room_id}:allowed"
[channels.actions]
speak = ["text"]

[[channels]]
name = "Admin::RoomsChannel"
stream_for = { model = "Room", param = "room_id" }

[[channels]]
name = "NotificationsChannel"
stream_for = { model = "User", current_user = true }

[[channels]]
name = "InboxChannel"
stream = "inbox_{current_user.id}"
member_of = "inbox:{current_user.id}:{box}:readers"
"#;

// Computed by hand (Python's base64.urlsafe_b64encode, padding stripped):
// "gid://refapp/Room/7" → "Z2lkOi8vcmVmYXBwL1Jvb20vNw==".
const ROOM7_GID: &str = "Z2lkOi8vcmVmYXBwL1Jvb20vNw";

/// A Redis-mode node with [`CHANNELS`] and the GlobalID app `refapp`.
fn node(redis: &RedisServer, extra: &[&str]) -> TestServer {
    let url = redis.url();
    let mut args = vec![
        "--redis-url",
        url.as_str(),
        "--channel-prefix",
        PREFIX,
        "--globalid-app",
        "refapp",
    ];
    args.extend_from_slice(extra);
    TestServer::start_with_channels(CHANNELS, &args)
}

fn room(id: &str) -> String {
    format!(r#"{{"channel":"RoomChannel","room_id":{id}}}"#)
}

#[tokio::test]
async fn member_of_admits_members_only_and_rails_broadcasts_reach_them() {
    let redis = RedisServer::start();
    redis.cli(&["SADD", "room:7:allowed", "1", "3"]);
    let server = node(&redis, &[]);

    let mut alice = CableClient::welcomed(&server, 1).await;
    let id = room("7");
    alice.subscribe(&id).await;
    assert_eq!(alice.drain().await, vec![confirm(&id)]);

    let mut bob = CableClient::welcomed(&server, 2).await;
    bob.subscribe(&id).await;
    assert_eq!(
        bob.drain().await,
        vec![reject(&id)],
        "bob is not in the set"
    );
    assert!(server.log().contains("not a member"), "{}", server.log());
    // A missing room names no set: rejected before Redis is asked.
    let no_room = r#"{"channel":"RoomChannel"}"#;
    bob.subscribe(no_room).await;
    assert_eq!(bob.drain().await, vec![reject(no_room)]);

    // `RoomChannel.broadcast_to(room7, …)` from Rails: `<prefix>:room:<gid param>`.
    let channel = format!("{PREFIX}:room:{ROOM7_GID}");
    assert_eq!(redis.publish(&channel, r#"{"body":"hi","n":2.50}"#), 1);
    alice
        .expect_json(&message_frame(&id, r#"{"body":"hi","n":2.5}"#))
        .await;
    assert_eq!(bob.drain().await, Vec::<String>::new(), "bob gets nothing");

    // Membership is read at subscribe time: once added, bob may subscribe.
    redis.cli(&["SADD", "room:7:allowed", "2"]);
    bob.subscribe(&id).await;
    assert_eq!(bob.drain().await, vec![confirm(&id)]);

    // An action re-broadcasts to the model stream, where Rails listens too.
    let (_rails, mut rx) = redis.subscriber(&[channel.as_str()]).await;
    alice
        .perform(&id, r#"{"action":"speak","text":"yo"}"#)
        .await;
    let (got_channel, payload) = next_message(&mut rx).await;
    assert_eq!(got_channel, channel);
    assert_eq!(payload, r#"{"text":"yo","user_id":1}"#);
    let frame = message_frame(&id, r#"{"text":"yo","user_id":1}"#);
    alice.expect_json(&frame).await;
    bob.expect_json(&frame).await;
}

#[tokio::test]
async fn a_redis_error_or_outage_rejects_never_confirms() {
    let mut redis = RedisServer::start();
    // Not a set: SISMEMBER answers WRONGTYPE.
    redis.cli(&["SET", "room:8:allowed", "1"]);
    let server = node(&redis, &[]);
    let mut alice = CableClient::welcomed(&server, 1).await;

    let eight = room("8");
    alice.subscribe(&eight).await;
    assert_eq!(alice.drain().await, vec![reject(&eight)]);
    let log = server.log();
    assert!(
        log.contains("member_of check SISMEMBER room:8:allowed") && log.contains("WRONGTYPE"),
        "{log}"
    );

    redis.cli(&["SADD", "room:7:allowed", "1"]);
    redis.kill();
    let seven = room("7");
    alice.subscribe(&seven).await;
    assert_eq!(
        alice.drain().await,
        vec![reject(&seven)],
        "a member is still rejected while Redis is down"
    );
    let log = server.log();
    assert!(
        log.contains("member_of check SISMEMBER room:7:allowed"),
        "the membership check failed, not only the broker: {log}"
    );
}

#[tokio::test]
async fn stream_for_names_streams_as_broadcasting_for_does() {
    let redis = RedisServer::start();
    let server = node(&redis, &[]);
    let mut c = CableClient::welcomed(&server, 4).await;

    // A string id names the same record as the integer ("07" → 7, as `find` casts).
    let id = r#"{"channel":"Admin::RoomsChannel","room_id":"07"}"#;
    c.subscribe(id).await;
    assert_eq!(c.drain().await, vec![confirm(id)]);
    // `Admin::RoomsChannel.channel_name` is "admin:rooms".
    let channel = format!("{PREFIX}:admin:rooms:{ROOM7_GID}");
    redis.wait_numsub(&channel, 1).await;
    assert_eq!(redis.publish(&channel, r#""<b>html</b>""#), 1);
    c.expect_json(&message_frame(id, r#""\u003cb\u003ehtml\u003c/b\u003e""#))
        .await;

    // `stream_for current_user`: "gid://refapp/User/4" → "Z2lkOi8vcmVmYXBwL1VzZXIvNA==".
    let mine = r#"{"channel":"NotificationsChannel"}"#;
    c.subscribe(mine).await;
    assert_eq!(c.drain().await, vec![confirm(mine)]);
    let notifications = format!("{PREFIX}:notifications:Z2lkOi8vcmVmYXBwL1VzZXIvNA");
    redis.wait_numsub(&notifications, 1).await;
    assert_eq!(redis.publish(&notifications, r#"{"unread":3}"#), 1);
    c.expect_json(&message_frame(mine, r#"{"unread":3}"#)).await;

    // `stream_from "inbox_#{current_user.id}"`, guarded by a set named with it too; a
    // param of that name changes nothing.
    redis.cli(&["SADD", "inbox:4:main:readers", "4"]);
    let inbox = r#"{"channel":"InboxChannel","box":"main","current_user.id":1}"#;
    c.subscribe(inbox).await;
    assert_eq!(c.drain().await, vec![confirm(inbox)]);
    redis.wait_numsub(&format!("{PREFIX}:inbox_4"), 1).await;
    assert_eq!(redis.publish(&format!("{PREFIX}:inbox_4"), "1"), 1);
    c.expect_json(&message_frame(inbox, "1")).await;
    let other_box = r#"{"channel":"InboxChannel","box":"spam"}"#;
    c.subscribe(other_box).await;
    assert_eq!(c.drain().await, vec![reject(other_box)]);

    // Not a record id: `find` would raise; rejected.
    for bad in [
        r#"{"channel":"Admin::RoomsChannel","room_id":"seven"}"#,
        r#"{"channel":"Admin::RoomsChannel","room_id":""}"#,
        r#"{"channel":"Admin::RoomsChannel"}"#,
    ] {
        c.subscribe(bad).await;
        assert_eq!(c.drain().await, vec![reject(bad)], "{bad}");
    }
}

#[tokio::test]
async fn unknown_channels_are_rejected_unless_confirmation_is_asked_for() {
    let unknown = r#"{"channel":"CommentsChannel","post_id":1}"#;

    let strict = TestServer::start(&[]);
    let mut c = CableClient::welcomed(&strict, 1).await;
    c.subscribe(unknown).await;
    assert_eq!(c.drain().await, vec![reject(unknown)]);

    let lenient = TestServer::start(&["--confirm-unknown-channels"]);
    let mut c = CableClient::welcomed(&lenient, 1).await;
    c.subscribe(unknown).await;
    assert_eq!(c.drain().await, vec![confirm(unknown)]);
    // No streams and no actions: a perform does nothing.
    c.perform(unknown, r#"{"action":"speak","text":"x"}"#).await;
    assert_eq!(c.drain().await, Vec::<String>::new());
    assert!(
        lenient
            .log()
            .contains("unknown channel confirmed with no streams"),
        "{}",
        lenient.log()
    );
    // Declared channels are unaffected.
    let chat = r#"{"channel":"ChatChannel","room":"lobby"}"#;
    c.subscribe(chat).await;
    assert_eq!(c.drain().await, vec![confirm(chat)]);
}

#[test]
fn bad_declarations_stop_the_server_before_it_listens() {
    let cases = [
        (
            "[[channels]]\nname = \"RoomChannel\"\nstream = \"r_{room}\"\nmember_of = \"room:{room}:allowed\"\n",
            "\"RoomChannel\": member_of checks a Redis set and needs Redis mode",
        ),
        (
            "[[channels]]\nname = \"ChatChannel\"\nstream = \"chat_{room}\"\nrequire = [\"room\"]\n",
            "unknown field `require`",
        ),
        (
            "[[channels]]\nname = \"RoomChannel\"\nstream_for = { model = \"Room\", param = \"id\", kind = \"x\" }\n",
            "unknown field `kind`",
        ),
        (
            "[[channels]]\nname = \"RoomChannel\"\nstream_for = { model = \"Room\", param = \"room_id\" }\n",
            "needs --globalid-app",
        ),
        (
            "[[channels]]\nname = \"ChatChannel\"\nstream = \"chat_{room\"\n",
            "without a closing '}'",
        ),
        (
            "[[channels]]\nname = \"ChatChannel\"\n",
            "set exactly one of `stream` and `stream_for`",
        ),
    ];
    for (toml, why) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr = TestServer::refused(&channels_args(&dir, toml, &[]));
        assert!(stderr.contains(why), "{toml}: {stderr}");
    }
}
