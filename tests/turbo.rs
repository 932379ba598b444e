//! `turbo_stream_from`: a signed stream name subscribes, and what the Rails app
//! broadcasts with `Turbo::StreamsChannel.broadcast_append_to` arrives through Redis.

mod support;

use support::redis::{start_node, RedisServer};
use support::{confirm, reject, CableClient};

// redis-adapter.md §6.4 (computed with real ActiveSupport and turbo-rails' recipe).
const SECRET: &str = "569ceeda1d37437198001a03cb05ac9f31b1b368970ed76dff0d100f27b7fa984a037f6cf346f4b39655e414cfbeffa88fffbc2b09d4dcdefd63daed620b8998";
const SIGNED_SHA1: &str = "IloybGtPaTh2YlhrdFlYQndMMUp2YjIwdk53Ig==--b8151673d406692b1248451c7c0db6c1a7ad3af8f5bcce1ec9b2ca988c12e15a";
const SIGNED_SHA256_MESSAGES: &str = "IloybGtPaTh2YlhrdFlYQndMMUp2YjIwdk53Om1lc3NhZ2VzIg==--a2e03d4aca64cb2c631c3e908cb09b7cb2d75d4def5ba4a2f85a246beb193308";

fn identifier(token: &str) -> String {
    serde_json::json!({"channel": "Turbo::StreamsChannel", "signed_stream_name": token}).to_string()
}

#[tokio::test]
async fn signed_streams_subscribe_and_rails_broadcasts_arrive() {
    let redis = RedisServer::start();
    let server = start_node(&redis, &["--secret-key-base", SECRET]);
    let mut c = CableClient::welcomed(&server, 1).await;

    let room = identifier(SIGNED_SHA1);
    c.subscribe(&room).await;
    assert_eq!(c.drain().await, vec![confirm(&room)]);
    // Both key derivations (Rails 6.1 SHA1, 7.0+ SHA256) are accepted by default.
    let messages = identifier(SIGNED_SHA256_MESSAGES);
    c.subscribe(&messages).await;
    assert_eq!(c.drain().await, vec![confirm(&messages)]);

    for bad in [SIGNED_SHA1.replace("b815", "b816"), "garbage".to_owned()] {
        let id = identifier(&bad);
        c.subscribe(&id).await;
        assert_eq!(c.drain().await, vec![reject(&id)]);
    }
    let missing = r#"{"channel":"Turbo::StreamsChannel"}"#;
    c.subscribe(missing).await;
    assert_eq!(c.drain().await, vec![reject(missing)]);

    // What `broadcast_append_to @room` publishes: the HTML as a JSON string.
    let html = r#""<turbo-stream action=\"append\" target=\"messages\"><template>Hi & bye</template></turbo-stream>""#;
    assert_eq!(redis.publish("refapp:Z2lkOi8vbXktYXBwL1Jvb20vNw", html), 1);
    let got = c.next_json().await;
    assert_eq!(got["identifier"], room.as_str());
    assert_eq!(
        got["message"],
        r#"<turbo-stream action="append" target="messages"><template>Hi & bye</template></turbo-stream>"#
    );
}
