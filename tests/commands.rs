//! Commands, well-formed and not: what Rails does, plus the documented improvements.

mod support;

use support::{command, confirm, reject, CableClient, TestServer};
use tokio_tungstenite::tungstenite::Message;

const CHAT: &str = r#"{"channel":"ChatChannel","room":"lobby"}"#;

#[tokio::test]
async fn duplicate_subscribe_is_confirmed_again_without_running_twice() {
    let server = TestServer::start(&[]);
    let id = r#"{"channel":"PresenceChannel","room_id":"5"}"#;
    let mut alice = CableClient::welcomed(&server, 1).await;
    alice.subscribe(id).await;
    assert_eq!(alice.drain().await.len(), 2, "confirm + own user_joined");
    alice.subscribe(id).await;
    assert_eq!(
        alice.drain().await,
        vec![confirm(id)],
        "a fresh confirm, no second join"
    );
}

#[tokio::test]
async fn unknown_channels_are_rejected_and_bad_identifiers_ignored() {
    let server = TestServer::start(&[]);
    let mut c = CableClient::welcomed(&server, 1).await;
    for id in [r#"{"channel":"NopeChannel"}"#, r#"{"channel":"User"}"#] {
        c.subscribe(id).await;
        assert_eq!(c.drain().await, vec![reject(id)]);
    }
    // Not JSON, not an object, no channel: silence, as in Rails.
    for id in ["nope", "[1,2]", "1", r#"{"room":"1"}"#] {
        c.subscribe(id).await;
        assert_eq!(c.drain().await, Vec::<String>::new(), "identifier {id}");
    }
    c.send(r#"{"command":"subscribe"}"#).await;
    c.send(r#"{"command":"subscribe","identifier":{"channel":"ChatChannel"}}"#)
        .await;
    assert_eq!(c.drain().await, Vec::<String>::new());
    // The bare base classes are confirmed with no stream, as Rails 6.1 does.
    for id in [
        r#"{"channel":"ApplicationCable::Channel"}"#,
        r#"{"channel":"ActionCable::Channel::Base"}"#,
    ] {
        c.subscribe(id).await;
        assert_eq!(c.drain().await, vec![confirm(id)]);
    }
}

#[tokio::test]
async fn unknown_commands_and_binary_frames_are_ignored_and_the_connection_keeps_working() {
    let server = TestServer::start(&[]);
    let mut c = CableClient::welcomed(&server, 1).await;
    c.subscribe(CHAT).await;
    assert_eq!(c.drain().await, vec![confirm(CHAT)]);
    for junk in [
        r#"{"command":"explode"}"#,
        r#"{"identifier":"x"}"#,
        "hello there",
        "[1,2,3]",
        r#""subscribe""#,
        "",
    ] {
        c.send(junk).await;
    }
    c.send_message(Message::Binary(
        command(
            "subscribe",
            r#"{"channel":"ChatChannel","room":"bin"}"#,
            None,
        )
        .into_bytes(),
    ))
    .await;
    assert_eq!(c.drain().await, Vec::<String>::new());
    c.perform(CHAT, r#"{"text":"still here","action":"speak"}"#)
        .await;
    assert_eq!(
        c.drain().await,
        vec![format!(
            r#"{{"identifier":{},"message":{{"text":"still here","user_id":1}}}}"#,
            serde_json::to_string(CHAT).expect("string")
        )]
    );
}

#[tokio::test]
async fn bad_performs_and_unsubscribes_are_silent() {
    let server = TestServer::start(&[]);
    let mut c = CableClient::welcomed(&server, 1).await;
    c.subscribe(CHAT).await;
    c.drain().await;
    c.perform(CHAT, r#"{"action":"nope"}"#).await;
    c.perform(CHAT, r#"{"text":"no action means receive"}"#)
        .await;
    c.perform(
        r#"{"channel":"ChatChannel","room":"other"}"#,
        r#"{"action":"speak"}"#,
    )
    .await;
    c.send(&command("message", CHAT, Some("not json"))).await;
    c.send(
        r#"{"command":"message","identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}"}"#,
    )
    .await;
    c.unsubscribe(r#"{"channel":"ChatChannel","room":"never"}"#)
        .await;
    assert_eq!(c.drain().await, Vec::<String>::new());
}

#[tokio::test]
async fn chat_speak_reaches_every_subscriber_escaped_like_rails() {
    let server = TestServer::start(&[]);
    let mut alice = CableClient::welcomed(&server, 1).await;
    let mut bob = CableClient::welcomed(&server, 2).await;
    alice.subscribe(CHAT).await;
    bob.subscribe(CHAT).await;
    alice.drain().await;
    bob.drain().await;
    bob.perform(
        CHAT,
        r#"{"text":"<hi> & ünïcödé","extra":1,"action":"speak"}"#,
    )
    .await;
    let want = format!(
        r#"{{"identifier":{},"message":{{"text":"\u003chi\u003e \u0026 ünïcödé","user_id":2}}}}"#,
        serde_json::to_string(CHAT).expect("string")
    );
    assert_eq!(bob.drain().await, vec![want.clone()]);
    assert_eq!(alice.drain().await, vec![want]);
    alice.perform(CHAT, r#"{"action":"speak"}"#).await;
    assert!(alice.drain().await[0].ends_with(r#""message":{"text":null,"user_id":1}}"#));
}

#[tokio::test]
async fn commands_sent_before_the_welcome_run_after_it_in_order() {
    let server = TestServer::start(&[]);
    let mut c = CableClient::connect(&server.url("user_id=1")).await;
    // Written right after the handshake, before the welcome can have arrived.
    c.subscribe(CHAT).await;
    c.perform(CHAT, r#"{"text":"early","action":"speak"}"#)
        .await;
    c.expect_json(r#"{"type":"welcome"}"#).await;
    let got = c.drain().await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], confirm(CHAT));
    assert!(got[1].contains(r#""text":"early""#), "{got:?}");
}

#[tokio::test]
async fn different_spellings_of_one_identifier_are_separate_subscriptions() {
    let server = TestServer::start(&[]);
    let mut c = CableClient::welcomed(&server, 1).await;
    let a = r#"{"channel":"ChatChannel","room":"dup"}"#;
    let b = r#"{"room":"dup","channel":"ChatChannel"}"#;
    c.subscribe(a).await;
    c.subscribe(b).await;
    assert_eq!(c.drain().await, vec![confirm(a), confirm(b)]);
    c.perform(a, r#"{"text":"x","action":"speak"}"#).await;
    let got = c.drain().await;
    assert_eq!(got.len(), 2, "one copy per subscription: {got:?}");
    assert!(got.iter().any(|f| f.starts_with(&format!(
        r#"{{"identifier":{}"#,
        serde_json::to_string(b).expect("s")
    ))));
}

#[tokio::test]
async fn declared_channels_enforce_required_params_and_the_users_own_stream() {
    let server = TestServer::start_with_channels(
        r#"
[[channels]]
name = "RoomChannel"
stream = "room_{room}"
required = ["room"]

[[channels]]
name = "NotificationsChannel"
stream = "notifications_{user_id}"
user_param = "user_id"
"#,
        &[],
    );
    let mut c = CableClient::welcomed(&server, 2).await;
    for (id, ok) in [
        (r#"{"channel":"RoomChannel","room":"a"}"#, true),
        (r#"{"channel":"RoomChannel"}"#, false),
        (r#"{"channel":"RoomChannel","room":"  "}"#, false),
        (r#"{"channel":"NotificationsChannel","user_id":2}"#, true),
        (r#"{"channel":"NotificationsChannel","user_id":"2"}"#, true),
        (r#"{"channel":"NotificationsChannel","user_id":1}"#, false),
        (r#"{"channel":"NotificationsChannel"}"#, false),
    ] {
        c.subscribe(id).await;
        let want = if ok { confirm(id) } else { reject(id) };
        assert_eq!(c.drain().await, vec![want], "{id}");
    }
}
