//! The HTTP side: upgrade, subprotocol, Origin, health, 404s, authentication refusal.

mod support;

use support::{CableClient, Seen, TestServer};

#[tokio::test]
async fn subprotocol_is_the_first_supported_offer_and_never_refused() {
    let server = TestServer::start(&["--disable-forgery-protection"]);
    let url = server.url("user_id=1");
    // The cases of the reference's `subprotocols` scenario.
    let cases: &[(Option<&str>, Option<&str>)] = &[
        (None, None),
        (Some("foo"), None),
        (
            Some("actioncable-unsupported"),
            Some("actioncable-unsupported"),
        ),
        (
            Some("foo, actioncable-v1-json"),
            Some("actioncable-v1-json"),
        ),
        (
            Some("actioncable-unsupported, actioncable-v1-json"),
            Some("actioncable-unsupported"),
        ),
        (
            Some("actioncable-v1-json, actioncable-unsupported"),
            Some("actioncable-v1-json"),
        ),
    ];
    for (offer, want) in cases {
        let resp = raw_upgrade(
            &server.addr,
            &[("Sec-WebSocket-Protocol", offer.unwrap_or(""))],
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 101"), "offer {offer:?}: {resp}");
        let selected = resp
            .lines()
            .find_map(|l| l.strip_prefix("Sec-Websocket-Protocol: "))
            .map(str::trim);
        assert_eq!(selected, *want, "offer {offer:?}: {resp}");
    }
    // A real client with the browser's offer gets the welcome.
    let mut c = CableClient::connect(&url).await;
    assert_eq!(c.protocol.as_deref(), Some("actioncable-v1-json"));
    c.expect_json(r#"{"type":"welcome"}"#).await;
}

async fn raw_upgrade(addr: &str, extra: &[(&str, &str)]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "GET /cable?user_id=1 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in extra {
        if !v.is_empty() {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(support::EVENT_TIMEOUT, s.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed before the response ended");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn rfc6455_sample_key_gets_the_sample_accept() {
    let server = TestServer::start(&["--disable-forgery-protection"]);
    let resp = raw_upgrade(
        &server.addr,
        &[(
            "Sec-WebSocket-Protocol",
            "actioncable-v1-json, actioncable-unsupported",
        )],
    )
    .await;
    assert!(
        resp.contains("Sec-Websocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{resp}"
    );
    assert!(
        resp.contains("Sec-Websocket-Protocol: actioncable-v1-json\r\n"),
        "{resp}"
    );
    assert!(
        !resp.contains("Sec-Websocket-Extensions"),
        "no permessage-deflate: {resp}"
    );
}

#[tokio::test]
async fn origin_check_refuses_with_404_like_rails() {
    let server = TestServer::start(&["--allowed-origins", "http://localhost:3100"]);
    let url = server.url("user_id=1");
    for origin in [
        Some("http://evil.example"),
        None,
        Some("http://localhost:3100/"),
        Some("HTTP://LOCALHOST:3100"),
    ] {
        let headers: Vec<(&str, &str)> = origin.map(|o| vec![("Origin", o)]).unwrap_or_default();
        match CableClient::connect_with(&url, &headers).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 404, "origin {origin:?}");
                assert_eq!(resp.body().as_deref(), Some(&b"Page not found"[..]));
            }
            Err(e) => panic!("origin {origin:?}: unexpected error {e}"),
            Ok(_) => panic!("origin {origin:?} was accepted"),
        }
    }
    // Same origin as Host, and a listed origin, are accepted.
    let same = format!("http://{}", server.addr);
    for origin in [same.as_str(), "http://localhost:3100"] {
        let mut c = CableClient::connect_with(&url, &[("Origin", origin)])
            .await
            .expect("accepted");
        c.expect_json(r#"{"type":"welcome"}"#).await;
    }
}

#[tokio::test]
async fn plain_http_gets_404_and_health_gets_json() {
    let server = TestServer::start(&[]);
    let r = server.http_get("/cable").await;
    assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
    assert!(r.ends_with("Page not found"), "{r}");
    assert!(r.contains("Content-Type: text/plain\r\n"), "{r}");
    let r = server.http_get("/elsewhere").await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = server.http_get("/health").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    let body = r.split("\r\n\r\n").nth(1).expect("body");
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON health");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["connections"], 0);
}

async fn health(server: &TestServer) -> serde_json::Value {
    let r = server.http_get("/health").await;
    serde_json::from_str(r.split("\r\n\r\n").nth(1).expect("body")).expect("JSON health")
}

#[tokio::test]
async fn gauges_follow_subscriptions_and_metrics_are_scraped() {
    let server = TestServer::start(&[]);
    let id = support::presence_id("1");
    let mut c = CableClient::welcomed(&server, 1).await;
    c.subscribe(&id).await;
    c.subscribe(r#"{"channel":"ChatChannel","room":"x"}"#).await;
    c.drain().await;
    let h = health(&server).await;
    assert_eq!(
        (
            h["connections"].as_i64(),
            h["subscriptions"].as_i64(),
            h["streams"].as_i64()
        ),
        (Some(1), Some(2), Some(2))
    );
    c.unsubscribe(&id).await;
    c.drain().await;
    assert_eq!(health(&server).await["subscriptions"], 1);

    let m = server.http_get("/metrics").await;
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    for line in [
        "ferrocable_connections 1",
        "ferrocable_subscriptions 1",
        "ferrocable_streams 1",
        "ferrocable_connections_accepted_total 1",
        r#"ferrocable_commands_total{command="subscribe"} 2"#,
        r#"ferrocable_commands_total{command="unsubscribe"} 1"#,
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }

    // Closing with a subscription held leaves no count behind. The teardown runs on
    // the server after the close echo, so watch the gauge until the connection is gone.
    c.close(1000).await;
    let deadline = std::time::Instant::now() + support::EVENT_TIMEOUT;
    let h = loop {
        let h = health(&server).await;
        if h["connections"] == 0 || std::time::Instant::now() > deadline {
            break h;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(
        (h["connections"].as_i64(), h["subscriptions"].as_i64()),
        (Some(0), Some(0)),
        "{h}"
    );
    let _refused = CableClient::connect(&server.url("")).await.next().await; // unauthorized
    let m = server.http_get("/metrics").await;
    assert!(
        m.contains(r#"ferrocable_auth_rejections_total{reason="no_credentials"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn upgrade_without_version_gets_426() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(&["--disable-forgery-protection"]);
    let mut s = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    let req = format!(
        "GET /cable HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: close\r\n\r\n",
        server.addr
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(support::EVENT_TIMEOUT, s.read_to_end(&mut out))
        .await
        .expect("in time")
        .expect("read");
    let r = String::from_utf8_lossy(&out);
    assert!(r.starts_with("HTTP/1.1 426"), "{r}");
    assert!(r.contains("Sec-Websocket-Version: 13"), "{r}");
}

#[tokio::test]
async fn missing_credentials_get_the_unauthorized_disconnect_then_close_1000() {
    let server = TestServer::start(&[]);
    for query in ["", "user_id=abc", "user_id=999"] {
        let mut c = CableClient::connect(&server.url(query)).await;
        assert_eq!(c.protocol.as_deref(), Some("actioncable-v1-json"));
        c.expect_json(r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#)
            .await;
        assert_eq!(c.next().await, Seen::Close(1000), "query {query:?}");
    }
    assert!(
        server.log().contains("unknown user 999"),
        "the log says why"
    );
}

#[tokio::test]
async fn client_close_code_and_reason_are_echoed() {
    let server = TestServer::start(&[]);
    let c = CableClient::welcomed(&server, 1).await;
    assert_eq!(c.close(1000).await, Seen::Close(1000));
    let c = CableClient::welcomed(&server, 1).await;
    assert_eq!(c.close(4001).await, Seen::Close(4001));
}

#[tokio::test]
async fn bad_close_frames_are_answered_1002_or_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
    use tokio_tungstenite::tungstenite::Message;
    let server = TestServer::start(&[]);
    let cases: [(u16, &[u8], u16); 5] = [
        (1000, &[b'o', b'k', 0xff], 1007),
        (1005, b"", 1002),
        (1015, b"", 1002),
        (999, b"", 1002),
        (2000, b"", 1002),
    ];
    for (code, reason, want) in cases {
        let mut c = CableClient::welcomed(&server, 1).await;
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        // The default header is a final close frame; the payload is sent unchecked.
        c.send_message(Message::Frame(Frame::from_payload(
            FrameHeader::default(),
            payload,
        )))
        .await;
        assert_eq!(c.next().await, Seen::Close(want), "close {code} {reason:?}");
    }
}
