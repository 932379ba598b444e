//! SIGTERM: every client hears `server_restart`, the process exits within its bound.

mod support;

use std::time::Duration;

use support::{presence_id, CableClient, Seen, TestServer};

/// Skips broadcasts still in flight (frames with an identifier), then expects exactly
/// the `server_restart` disconnect and a close 1000.
async fn expect_server_restart(c: &mut CableClient) {
    loop {
        match c.next().await {
            Seen::Text(t) if t.starts_with(r#"{"identifier":"#) => continue,
            Seen::Text(t) => {
                assert_eq!(
                    t,
                    r#"{"type":"disconnect","reason":"server_restart","reconnect":true}"#
                );
                break;
            }
            other => panic!("expected the server_restart disconnect, saw {other:?}"),
        }
    }
    assert_eq!(c.next().await, Seen::Close(1000));
}

#[tokio::test]
async fn sigterm_disconnects_everyone_with_server_restart_and_exits() {
    let mut server = TestServer::start(&["--shutdown-timeout", "5"]);
    let id = presence_id("9");
    let mut clients = Vec::new();
    for user in [1, 2, 3] {
        let mut c = CableClient::welcomed(&server, user).await;
        c.subscribe(&id).await;
        c.drain().await;
        clients.push(c);
    }
    server.terminate();
    for c in &mut clients {
        expect_server_restart(c).await;
    }
    drop(clients);
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "clean exit: {status:?}");
    assert!(server.log().contains("server stopped"));
}

#[tokio::test]
async fn drain_delay_keeps_serving_then_the_window_spreads_disconnects() {
    let mut server = TestServer::start(&[
        "--drain-delay",
        "1",
        "--drain-window",
        "1",
        "--shutdown-timeout",
        "5",
    ]);
    let chat = r#"{"channel":"ChatChannel","room":"drain"}"#;
    let mut clients = Vec::new();
    for user in [1, 2, 3, 4] {
        let mut c = CableClient::welcomed(&server, user).await;
        c.subscribe(chat).await;
        c.drain().await;
        clients.push(c);
    }
    server.terminate();
    // Once the server says it is in the delay, connections are still served: a
    // command round-trips. (Watching the log file: the process has no other signal.)
    let deadline = std::time::Instant::now() + support::EVENT_TIMEOUT;
    while !server.log().contains("serving on before draining") {
        assert!(
            std::time::Instant::now() < deadline,
            "no drain delay in the log"
        );
        tokio::task::yield_now().await;
    }
    assert!(
        !server.log().contains("draining connections"),
        "the delay is 1 s"
    );
    clients[0]
        .perform(chat, r#"{"text":"still here","action":"speak"}"#)
        .await;
    let echoed = clients[0].drain().await;
    assert!(
        echoed.iter().any(|f| f.contains("still here")),
        "{echoed:?}"
    );
    for c in &mut clients {
        expect_server_restart(c).await;
    }
    drop(clients);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    assert!(server.log().contains("serving on before draining"));
}
