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
    let server = TestServer::start(&["--outbox-bytes", "2097152", "--max-message-size", "100000"]);
    let mut slow = chatting(&server, 3).await;
    let watcher = chatting(&server, 2).await;
    let speaker = chatting(&server, 1).await;

    // Fast readers are kept within a window of W messages, below both the outbox
    // capacity and the kernel's socket buffers, so only the client that never reads
    // can fall behind, however the server's tasks are scheduled.
    const W: usize = 32;
    const _: () = assert!(N.is_multiple_of(W), "the speaker sends whole windows");
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

#[tokio::test]
async fn a_client_whose_socket_takes_no_bytes_is_cut_off_by_the_write_timeout() {
    // A byte budget too big to overflow here: only the write timeout can catch it.
    let server = TestServer::start(&[
        "--outbox-bytes",
        "1000000000",
        "--write-timeout",
        "0.5",
        "--max-message-size",
        "100000",
    ]);
    let mut slow = chatting(&server, 3).await;
    let mut speaker = chatting(&server, 1).await;
    let frame = command(
        "message",
        CHAT,
        Some(&serde_json::json!({"text": "z".repeat(64 * 1024), "action": "speak"}).to_string()),
    );
    // Broadcast until the slow client's socket buffers are full and a write to it
    // stalls; the speaker's own echoes pace it (each batch has been fanned out).
    let mut sent = 0;
    while !server.log().contains("socket write stalled") {
        assert!(sent < 2000, "no stall after {sent} messages of 64 KiB");
        for _ in 0..16 {
            speaker.send(&frame).await;
        }
        sent += 16;
        assert_eq!(speaker.drain().await.len(), 16);
    }
    let mut seen = 0;
    loop {
        match slow.next().await {
            Seen::Text(t) if t.contains("\"user_id\":1") => seen += 1,
            Seen::Text(_) => {}
            Seen::Close(_) | Seen::End => break,
        }
    }
    assert!(
        seen < sent,
        "the stalled client was cut off ({seen} of {sent})"
    );
    assert!(server.log().contains("slow client disconnected"));
}

#[tokio::test]
async fn oversized_identifiers_are_rejected_and_client_values_are_logged_clipped() {
    let server = TestServer::start(&[]);
    let mut c = CableClient::welcomed(&server, 1).await;
    // A valid ChatChannel identifier, its room past the 4 KiB default cap.
    let room = "r".repeat(5000);
    let big = format!(r#"{{"channel":"ChatChannel","room":"{room}"}}"#);
    c.subscribe(&big).await;
    let got = c.drain().await;
    assert!(
        got == vec![reject(&big)],
        "expected a reject, got: {:?}",
        got.iter()
            .map(|t| t.get(t.len().saturating_sub(40)..).unwrap_or(t))
            .collect::<Vec<_>>()
    );
    // Under the cap it is an ordinary subscription.
    let fits = format!(
        r#"{{"channel":"ChatChannel","room":"{}"}}"#,
        "r".repeat(4000)
    );
    c.subscribe(&fits).await;
    assert_eq!(c.drain().await, vec![confirm(&fits)]);
    let action = "a".repeat(5000);
    c.perform(&fits, &format!(r#"{{"action":"{action}"}}"#))
        .await;
    assert_eq!(c.drain().await, Vec::<String>::new());

    let log = server.log();
    assert!(log.contains("identifier too large"), "{log}");
    assert!(log.contains("unknown action"), "{log}");
    assert!(
        !log.contains(&room),
        "a rejected identifier is logged clipped"
    );
    assert!(!log.contains(&"r".repeat(1000)), "an accepted one too");
    assert!(
        !log.contains(&"a".repeat(1000)),
        "an unknown action name too"
    );
}

#[tokio::test]
async fn binary_frames_are_ignored_and_the_connection_goes_on() {
    let server = TestServer::start(&[]);
    let mut bystander = chatting(&server, 2).await;
    let mut speaker = chatting(&server, 3).await;
    let mut c = CableClient::welcomed(&server, 1).await;
    let sub = command("subscribe", CHAT, None);
    c.send_message(Message::Binary(sub.clone().into_bytes()))
        .await;
    assert_eq!(c.drain().await, Vec::<String>::new(), "no answer to binary");
    c.send(&sub).await;
    assert_eq!(c.drain().await, vec![confirm(CHAT)]);
    assert!(server.log().contains("binary frame ignored"));
    still_served(&mut bystander, &mut speaker).await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_harm() {
    let server = TestServer::start(&[]);
    let mut bystander = chatting(&server, 2).await;
    let mut speaker = chatting(&server, 3).await;
    let mut c = CableClient::welcomed(&server, 1).await;
    const MINE: &str = r#"{"channel":"ChatChannel","room":"nested"}"#;
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    // The whole frame nested: not a command, ignored as Rails ignores bad JSON.
    c.send(&deep(100_000)).await;
    // Nested inside the identifier: the identifier's params cannot be read → rejected.
    let identifier = format!(r#"{{"channel":"ChatChannel","room":{}}}"#, deep(50_000));
    c.subscribe(&identifier).await;
    // Nested inside a perform's data: ignored.
    c.subscribe(MINE).await;
    c.perform(
        MINE,
        &format!(r#"{{"action":"speak","text":{}}}"#, deep(50_000)),
    )
    .await;
    // Rails ignores an identifier it cannot parse; so do we (no frame at all).
    let got = c.drain().await;
    assert_eq!(got, vec![confirm(MINE)]);
    assert!(server.log().contains("command not processed"));
    // Still a working connection.
    c.perform(MINE, r#"{"text":"after","action":"speak"}"#)
        .await;
    assert_eq!(c.drain().await.len(), 1);
    still_served(&mut bystander, &mut speaker).await;
}

/// Reads `n` answers (text frames other than pings) on a task, so the test can keep
/// sending meanwhile; an error says how many came before the connection ended.
fn collect_answers(
    mut rx: support::WsStream,
    n: usize,
) -> tokio::task::JoinHandle<Result<Vec<String>, String>> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(support::EVENT_TIMEOUT, rx.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if !t.contains("\"ping\"") => got.push(t),
                Ok(Some(Ok(_))) => {}
                other => return Err(format!("after {} answers: {other:?}", got.len())),
            }
        }
        Ok(got)
    })
}

#[tokio::test]
async fn thousands_of_subscriptions_on_one_connection_hit_the_cap() {
    const N: usize = 1000;
    // The default rate and burst, with a flood bound the 8 s this takes stays under.
    // (Without the rate limit the replies wait for room in the outbox instead: see
    // `a_thousand_subscribes_in_one_burst_without_a_rate_limit_are_all_confirmed`.)
    let server = TestServer::start(&["--command-flood-seconds", "30"]);
    let mut bystander = chatting(&server, 2).await;
    let mut speaker = chatting(&server, 3).await;
    let c = CableClient::welcomed(&server, 1).await;
    // Read while sending: a client that reads nothing while 3000 answers pile up is
    // a slow client, and would be disconnected as one.
    let (mut tx, rx) = c.split();
    let reading = collect_answers(rx, N);
    for i in 0..N {
        let id = format!(r#"{{"channel":"ChatChannel","room":"t{i}"}}"#);
        if tx
            .send(Message::Text(command("subscribe", &id, None)))
            .await
            .is_err()
        {
            break;
        }
    }
    let got = reading
        .await
        .expect("reader")
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(got.len(), N, "every subscribe is answered");
    let confirmed = got
        .iter()
        .filter(|t| t.contains("confirm_subscription"))
        .count();
    assert_eq!(confirmed, 512, "the default --max-subscriptions");
    assert!(got[512..].iter().all(|t| t.contains("reject_subscription")));
    still_served(&mut bystander, &mut speaker).await;
    let metrics = server.http_get("/metrics").await;
    assert!(
        metrics.contains(r#"ferrocable_limit_triggers_total{limit="subscriptions"} 488"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_thousand_subscribes_in_one_burst_without_a_rate_limit_are_all_confirmed() {
    const N: usize = 1000;
    // No rate limit and room for every subscription: only the outbox (256 frames)
    // stands between the burst and its replies. The reader waits for room before
    // reading the next command, so the client is slowed down, not cut off as slow.
    let server = TestServer::start(&[
        "--max-commands-per-second",
        "0",
        "--max-subscriptions",
        "1000",
    ]);
    let c = CableClient::welcomed(&server, 1).await;
    let (mut tx, rx) = c.split();
    let reading = collect_answers(rx, N);
    let ids: Vec<String> = (0..N)
        .map(|i| format!(r#"{{"channel":"ChatChannel","room":"burst{i}"}}"#))
        .collect();
    // One burst: every frame queued, then one flush.
    for id in &ids {
        tx.feed(Message::Text(command("subscribe", id, None)))
            .await
            .expect("queue a subscribe");
    }
    tx.flush().await.expect("send the burst");
    let got = reading
        .await
        .expect("reader")
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(
        got,
        ids.iter().map(|i| confirm(i)).collect::<Vec<_>>(),
        "every subscribe confirmed, in order"
    );
    let metrics = server.http_get("/metrics").await;
    assert!(
        metrics.contains("ferrocable_slow_client_disconnects_total 0"),
        "{metrics}"
    );
    assert!(!server.log().contains("slow client"), "{}", server.log());
}

const FLOOD_ARGS: [&str; 6] = [
    "--max-commands-per-second",
    "20",
    "--command-burst",
    "10",
    "--command-flood-seconds",
    "3",
];

#[tokio::test]
async fn a_burst_past_the_rate_limit_is_slowed_down_not_lost() {
    let server = TestServer::start(&FLOOD_ARGS);
    let mut c = CableClient::welcomed(&server, 1).await;
    // 40 at once: 10 from the burst, 30 at 20/s — 1.5 s of backpressure, under the
    // 3 s flood bound. Every one is answered, in order.
    let ids: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"channel":"ChatChannel","room":"b{i}"}}"#))
        .collect();
    let started = std::time::Instant::now();
    for id in &ids {
        c.subscribe(id).await;
    }
    let got = c.drain().await;
    assert_eq!(got, ids.iter().map(|i| confirm(i)).collect::<Vec<_>>());
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1400),
        "the limit slowed the burst down: {:?}",
        started.elapsed()
    );
    // Counted: each throttled stretch once (the client's own pauses may split the
    // burst into several), each delayed command.
    let metrics = server.http_get("/metrics").await;
    let value = |series: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(value(r#"ferrocable_limit_triggers_total{limit="command_rate"}"#) >= 1);
    let delayed = value("ferrocable_commands_delayed_total");
    assert!((1..=30).contains(&delayed), "{delayed} delayed");
    assert!(server.log().contains("command rate limit reached"));
}

#[tokio::test]
async fn a_subscribe_flood_is_disconnected_as_invalid_request() {
    let server = TestServer::start(&FLOOD_ARGS);
    let mut bystander = chatting(&server, 2).await;
    let mut speaker = chatting(&server, 3).await;
    let flooder = CableClient::welcomed(&server, 1).await;
    let (mut tx, mut rx) = flooder.split();
    // Sends until the server stops it; the sends block under backpressure.
    let sending = tokio::spawn(async move {
        for i in 0..100_000 {
            let sub = command(
                "subscribe",
                &format!(r#"{{"channel":"ChatChannel","room":"f{i}"}}"#),
                None,
            );
            if tx.send(Message::Text(sub)).await.is_err() {
                return i;
            }
        }
        100_000
    });
    // Meanwhile the others are served at normal speed.
    still_served(&mut bystander, &mut speaker).await;
    let mut confirms = 0;
    let deadline = tokio::time::Instant::now() + support::EVENT_TIMEOUT;
    let disconnect = loop {
        match tokio::time::timeout_at(deadline, rx.next())
            .await
            .expect("disconnected in time")
        {
            Some(Ok(Message::Text(t))) if t.contains("confirm_subscription") => confirms += 1,
            Some(Ok(Message::Text(t))) if t.contains("disconnect") => break t,
            Some(Ok(_)) => {}
            other => panic!("stream ended without a disconnect frame: {other:?}"),
        }
    };
    assert_eq!(
        disconnect,
        r#"{"type":"disconnect","reason":"invalid_request","reconnect":false}"#
    );
    // 10 of burst + about 20/s for the 3 s of flooding (more when the flooder's own
    // hiccups let tokens gather and restart the flood clock).
    assert!((40..=400).contains(&confirms), "{confirms} confirms");
    match tokio::time::timeout(support::EVENT_TIMEOUT, rx.next())
        .await
        .expect("close in time")
    {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1000),
        other => panic!("expected close 1000, saw {other:?}"),
    }
    let _ = sending.await;
    still_served(&mut bystander, &mut speaker).await;
    let metrics = server.http_get("/metrics").await;
    assert!(
        metrics.contains(r#"ferrocable_limit_triggers_total{limit="command_flood"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"ferrocable_closes_total{reason="command_flood"} 1"#),
        "{metrics}"
    );
}

/// Reads from a raw socket until the server closes it; returns what it sent.
async fn read_until_closed(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(support::EVENT_TIMEOUT, s.read_to_end(&mut out))
        .await
        .expect("the server closes the socket in time");
    out
}

#[tokio::test]
async fn slow_loris_upgrades_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(&["--handshake-timeout", "1"]);
    let mut bystander = chatting(&server, 2).await;
    let mut speaker = chatting(&server, 3).await;
    // Headers trickling in and never finished, and a socket that sends nothing.
    let mut trickle = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    trickle
        .write_all(b"GET /cable?user_id=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .expect("write");
    let mut silent = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(
        read_until_closed(&mut trickle),
        read_until_closed(&mut silent)
    );
    assert!(a.is_empty() && b.is_empty(), "closed without an answer");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    still_served(&mut bystander, &mut speaker).await;
    let metrics = server.http_get("/metrics").await;
    assert!(
        metrics.contains(r#"ferrocable_limit_triggers_total{limit="handshake_deadline"} 2"#),
        "{metrics}"
    );
    assert!(server
        .log()
        .contains("HTTP request headers not received in time"));
}

#[tokio::test]
async fn past_max_connections_upgrades_get_503() {
    let server = TestServer::start(&["--max-connections", "2"]);
    let mut a = chatting(&server, 2).await;
    let mut b = chatting(&server, 3).await;
    let refused = {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(&server.addr)
            .await
            .expect("connect");
        let req = format!(
            "GET /cable?user_id=1 HTTP/1.1\r\nHost: {a}\r\nOrigin: http://{a}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            a = server.addr
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            use tokio::io::AsyncReadExt;
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(support::EVENT_TIMEOUT, s.read(&mut chunk))
                .await
                .expect("an answer in time")
                .expect("read");
            assert!(n > 0, "closed without an answer");
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    still_served(&mut a, &mut b).await;
    let metrics = server.http_get("/metrics").await;
    assert!(
        metrics.contains(r#"ferrocable_upgrades_refused_total{reason="capacity"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"ferrocable_limit_triggers_total{limit="connections"} 1"#),
        "{metrics}"
    );
    // A slot frees when a client leaves.
    drop(a);
    let deadline = std::time::Instant::now() + support::EVENT_TIMEOUT;
    loop {
        let m = server.http_get("/metrics").await;
        if m.contains("\nferrocable_connections 1\n") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut c = CableClient::welcomed(&server, 1).await;
    assert!(c.drain().await.is_empty());
}
