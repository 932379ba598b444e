//! SIGTERM: every client hears `server_restart`, the process exits within its bound.

mod support;

use std::time::Duration;

use support::{presence_id, CableClient, Seen, TestServer};

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
        loop {
            match c.next().await {
                Seen::Text(t) if t.contains("user_joined") || t.contains("user_left") => continue,
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
    drop(clients);
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "clean exit: {status:?}");
    assert!(server.log().contains("server stopped"));
}
