//! Hostile or broken clients get a protocol-correct answer and disturb nobody else.

mod support;

use futures_util::{SinkExt, StreamExt};
use support::{command, confirm, reject, CableClient, Seen, TestServer};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const CHAT: &str = r#"{"channel":"ChatChannel","room":"lobby"}"#;

async fn chatting(server: &TestServer, user: i64) -> CableClient {
    let mut c = CableClient::welcomed(server, user).await;
    c.subscribe(CHAT).await;
    assert_eq!(c.drain().await, vec![confirm(CHAT)]);
    c
}

async fn still_served(bystander: &mut CableClient, speaker: &mut CableClient) {
    speaker
        .perform(CHAT, r#"{"text":"ok","action":"speak"}"#)
        .await;
    speaker.drain().await;
    let got = bystander.drain().await;
    assert_eq!(got.len(), 1, "the bystander still gets broadcasts: {got:?}");
}

#[tokio::test]
async fn oversized_message_closes_with_1009_and_others_are_unaffected() {
    let server = TestServer::start(&["--max-message-size", "1024"]);
    let mut bystander = chatting(&server, 2).await;
    let mut speaker = chatting(&server, 3).await;
    let mut big = CableClient::welcomed(&server, 1).await;
    big.send(&"x".repeat(4096)).await;
    assert_eq!(big.next().await, Seen::Close(1009));
    still_served(&mut bystander, &mut speaker).await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let server = TestServer::start(&[]);
    let mut bystander = chatting(&server, 2).await;
    let mut speaker = chatting(&server, 3).await;
    let mut bad = CableClient::welcomed(&server, 1).await;
    bad.send_message(Message::Frame(Frame::message(
        vec![b'{', 0xff, 0xfe, b'}'],
        OpCode::Data(Data::Text),
        true,
    )))
    .await;
    assert_eq!(bad.next().await, Seen::Close(1007));
    still_served(&mut bystander, &mut speaker).await;
}

#[tokio::test]
async fn fragmented_messages_are_reassembled_and_bounded() {
    let server = TestServer::start(&["--max-message-size", "4096"]);
    let mut c = CableClient::welcomed(&server, 1).await;
    let sub = command("subscribe", CHAT, None).into_bytes();
    let (a, b) = sub.split_at(10);
    c.send_message(Message::Frame(Frame::message(
        a.to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await;
    c.send_message(Message::Frame(Frame::message(
        b.to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await;
    assert_eq!(c.drain().await, vec![confirm(CHAT)]);
    // Many small fragments adding up past the limit.
    for _ in 0..3 {
        c.send_message(Message::Frame(Frame::message(
            vec![b' '; 2000],
            OpCode::Data(Data::Text),
            false,
        )))
        .await;
        c.send_message(Message::Frame(Frame::message(
            vec![b' '; 2000],
            OpCode::Data(Data::Continue),
            false,
        )))
        .await;
        c.send_message(Message::Frame(Frame::message(
            vec![b' '; 2000],
            OpCode::Data(Data::Continue),
            false,
        )))
        .await;
    }
    assert_eq!(c.next().await, Seen::Close(1009));
}

#[tokio::test]
async fn subscriptions_per_connection_are_capped() {
    let server = TestServer::start(&["--max-subscriptions", "20"]);
    let mut c = CableClient::welcomed(&server, 1).await;
    for i in 0..20 {
        c.subscribe(&format!(r#"{{"channel":"ChatChannel","room":"r{i}"}}"#))
            .await;
    }
    assert_eq!(c.drain().await.len(), 20);
    let extra = r#"{"channel":"ChatChannel","room":"one-too-many"}"#;
    c.subscribe(extra).await;
    assert_eq!(c.drain().await, vec![reject(extra)]);
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected_and_nobody_else_stalls() {
    const N: usize = 640;
    let server = TestServer::start(&["--outbox-capacity", "64", "--max-message-size", "100000"]);
    let mut slow = chatting(&server, 3).await;
    let watcher = chatting(&server, 2).await;
    let speaker = chatting(&server, 1).await;

    // Fast readers are kept within a window of W messages, below both the outbox
    // capacity and the kernel's socket buffers, so only the client that never reads
    // can fall behind, however the server's tasks are scheduled.
    const W: usize = 32;
    const _: () = assert!(N % W == 0, "the speaker sends whole windows");
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let log_path = server.dir.path().join("server.log");
    let log = move || std::fs::read_to_string(&log_path).unwrap_or_default();
    let (_wtx, mut wrx) = watcher.split();
    let watching = tokio::spawn(async move {
        let mut n = 0;
        // Pings keep arriving, so bound the whole wait, not each read.
        let deadline = tokio::time::Instant::now() + 3 * support::EVENT_TIMEOUT;
        while n < N {
            match tokio::time::timeout_at(deadline, wrx.next())
                .await
                .unwrap_or_else(|_| panic!("watcher: broadcasts stopped after {n}"))
            {
                Some(Ok(Message::Text(t))) if t.contains("\"user_id\":1") => {
                    n += 1;
                    progress_tx.send_replace(n);
                }
                Some(Ok(_)) => {}
                other => panic!(
                    "watcher's stream ended early after {n}: {other:?}\n{}",
                    log()
                ),
            }
        }
        n
    });
    let (mut stx, mut srx) = speaker.split();
    let text = "y".repeat(32 * 1024);
    let frame = command(
        "message",
        CHAT,
        Some(&serde_json::json!({"text": text, "action": "speak"}).to_string()),
    );
    let mut heard = 0;
    for batch in 0..N / W {
        for _ in 0..W {
            stx.send(Message::Text(frame.clone())).await.expect("send");
        }
        // Pings keep arriving, so bound the whole wait, not each read.
        let deadline = tokio::time::Instant::now() + support::EVENT_TIMEOUT;
        while heard < (batch + 1) * W {
            match tokio::time::timeout_at(deadline, srx.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "speaker: own echoes stopped after {heard}\n{}",
                        server.log()
                    )
                }) {
                Some(Ok(Message::Text(t))) if t.contains("\"user_id\":1") => heard += 1,
                Some(Ok(_)) => {}
                other => panic!("speaker's stream ended early after {heard}: {other:?}"),
            }
        }
        let sent = (batch + 1) * W;
        tokio::time::timeout(support::EVENT_TIMEOUT, progress.wait_for(|n| *n >= sent))
            .await
            .expect("watcher keeps up")
            .expect("watcher alive");
    }
    assert_eq!(watching.await.expect("watcher task"), N);
    assert_eq!(heard, N);

    // The slow client was cut off: it sees fewer than N messages, then the end.
    let mut seen = 0;
    loop {
        match slow.next().await {
            Seen::Text(t) if t.contains("\"user_id\":1") => seen += 1,
            Seen::Text(_) => {}
            Seen::Close(_) | Seen::End => break,
        }
    }
    assert!(
        seen < N,
        "slow client got everything ({seen}) — it was never cut off"
    );
    assert!(
        server.log().contains("slow client"),
        "the eviction is logged"
    );
}
