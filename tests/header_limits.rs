//! Request headers are bounded: a head over `--max-header-bytes` or cookies over
//! `--max-cookie-bytes` get 431 and are counted, and big hostile cookie jars that are
//! allowed cost linear work, so the server keeps answering everyone else.

mod support;

use support::{CableClient, Seen, TestServer, EVENT_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbccccccccccccccccccccccccccccccccdddddddddddddddddddddddddddddddd";
const CHAT: &str = r#"{"channel":"ChatChannel","room":"lobby"}"#;

/// A WebSocket upgrade request for `/cable?query` with `extra` header lines.
fn upgrade_request(addr: &str, query: &str, extra: &str) -> String {
    format!(
        "GET /cable?{query} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// Sends `request` on a new connection and reads the response head (through the
/// blank line), leaving the connection open; returns the head and the bytes that
/// came with it.
async fn send_and_read_head(addr: &str, request: &str) -> (TcpStream, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The server may answer (431) and close before it has read everything we send.
    let _ = s.write_all(request.as_bytes()).await;
    let mut got = Vec::new();
    let end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_some(&mut s, &mut got).await;
    };
    let rest = got.split_off(end);
    (s, String::from_utf8_lossy(&got).into_owned(), rest)
}

/// Appends what the socket has next; fails if it is closed.
async fn read_some(s: &mut TcpStream, into: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout(EVENT_TIMEOUT, s.read(&mut chunk))
        .await
        .expect("bytes in time")
        .expect("read");
    assert!(
        n > 0,
        "closed early, after {:?}",
        String::from_utf8_lossy(into)
    );
    into.extend_from_slice(&chunk[..n]);
}

/// `Cookie: c0=v; c1=v; …` of about `bytes` bytes, every name distinct.
fn cookie_header(bytes: usize) -> String {
    let mut h = String::from("Cookie: ");
    let mut i = 0;
    while h.len() < bytes {
        h.push_str(&format!("c{i}=v; "));
        i += 1;
    }
    h.push_str("\r\n");
    h
}

fn limit_count(metrics: &str, limit: &str) -> Option<String> {
    let prefix = format!("ferrocable_limit_triggers_total{{limit=\"{limit}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}

#[tokio::test]
async fn headers_over_the_caps_get_431_and_are_counted() {
    let server = TestServer::start(&["--max-header-bytes", "16384", "--max-cookie-bytes", "4096"]);
    // Cookies over their cap, the whole head under its own.
    let (_s, head, _) = send_and_read_head(
        &server.addr,
        &upgrade_request(&server.addr, "user_id=1", &cookie_header(6000)),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    // Two Cookie headers count together.
    let half = cookie_header(2500);
    let (_s, head, _) = send_and_read_head(
        &server.addr,
        &upgrade_request(&server.addr, "user_id=1", &format!("{half}{half}")),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    // A head over its cap, whatever the header: hyper answers before routing.
    let pad = format!("X-Pad: {}\r\n", "p".repeat(20_000));
    let (mut s, head, _) =
        send_and_read_head(&server.addr, &upgrade_request(&server.addr, "", &pad)).await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    // The server counts it before it closes the connection.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(EVENT_TIMEOUT, s.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    // Just under the cookie cap is served.
    let (mut s, head, mut rest) = send_and_read_head(
        &server.addr,
        &upgrade_request(&server.addr, "user_id=1", &cookie_header(3900)),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The welcome frame, `81 12` and 18 bytes, maybe read along with the head.
    while rest.len() < 20 {
        read_some(&mut s, &mut rest).await;
    }
    assert_eq!(&rest[2..20], br#"{"type":"welcome"}"#);
    let metrics = server.http_get("/metrics").await;
    assert_eq!(
        limit_count(&metrics, "cookie_bytes").as_deref(),
        Some("2"),
        "{metrics}"
    );
    assert_eq!(
        limit_count(&metrics, "request_headers").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"ferrocable_upgrades_refused_total{reason="cookie_too_large"} 2"#),
        "{metrics}"
    );
    assert!(server
        .log()
        .contains("request headers too large, answered 431"));
}

#[tokio::test]
async fn big_hostile_cookie_jars_do_not_stall_other_connections() {
    // Caps raised so that 350 KB jars of distinct names reach the cookie steps, three
    // of which read the jar: parsing must be linear, and done once.
    let server = TestServer::start(&[
        "--max-header-bytes",
        "1048576",
        "--max-cookie-bytes",
        "1048576",
        "--secret-key-base",
        SECRET,
        "--identifiers",
        "signed_cookie:user_id,encrypted_cookie:user_id,session:_app_session:user_id",
    ]);
    let mut bystander = CableClient::welcomed(&server, 2).await;
    bystander.subscribe(CHAT).await;
    bystander.drain().await;
    // More hostile upgrades than the server has cores, so that a quadratic parse
    // would hold every runtime worker.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let jar = cookie_header(350_000);
    let mut hostile = Vec::new();
    for _ in 0..2 * cores {
        let (s, head, _) =
            send_and_read_head(&server.addr, &upgrade_request(&server.addr, "", &jar)).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        hostile.push(s);
    }
    // While those are authenticated: /health answers, a newcomer is welcomed and a
    // broadcast reaches the bystander.
    let health = server.http_get("/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let mut speaker = CableClient::welcomed(&server, 3).await;
    speaker.subscribe(CHAT).await;
    speaker.drain().await;
    speaker
        .perform(CHAT, r#"{"text":"still here","action":"speak"}"#)
        .await;
    let Seen::Text(got) = bystander.next().await else {
        panic!("the bystander still gets broadcasts")
    };
    assert!(got.contains("still here"), "{got}");
    // Every hostile connection is refused as unauthorized (no cookie verifies).
    for mut s in hostile {
        let mut out = Vec::new();
        tokio::time::timeout(EVENT_TIMEOUT, s.read_to_end(&mut out))
            .await
            .expect("refused in time")
            .expect("read");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(r#""reason":"unauthorized""#), "{text}");
    }
    assert_eq!(
        CableClient::welcomed(&server, 1).await.close(1000).await,
        Seen::Close(1000)
    );
}
