//! `/metrics` scraped after real traffic: the series an operator watches move.

mod support;

use std::time::Duration;

use support::redis::{start_node, RedisServer};
use support::{confirm, CableClient, Seen, TestServer};

/// The value of the sample `series` (name with labels, exactly as rendered), or 0.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

async fn scrape(server: &TestServer) -> String {
    let r = server.http_get("/metrics").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    r
}

/// Scrapes until `series` satisfies `ok` (metrics are updated right after the frames
/// a client sees, so a scrape may race them by a moment).
async fn wait_for(server: &TestServer, series: &str, ok: impl Fn(f64) -> bool) -> String {
    let deadline = std::time::Instant::now() + support::EVENT_TIMEOUT;
    loop {
        let text = scrape(server).await;
        if ok(sample(&text, series)) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} never reached the expected value:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const ROOM: &str = r#"{"channel":"PresenceChannel","room_id":"m"}"#;
const CHAT: &str = r#"{"channel":"ChatChannel","room":"m"}"#;

#[tokio::test]
async fn traffic_moves_the_series() {
    let server = TestServer::start(&["--max-subscriptions", "2"]);
    let before = scrape(&server).await;
    assert_eq!(sample(&before, "ferrocable_connections"), 0.0, "{before}");

    let mut alice = CableClient::welcomed(&server, 1).await;
    let mut bob = CableClient::welcomed(&server, 2).await;
    for c in [&mut alice, &mut bob] {
        c.subscribe(ROOM).await;
        c.subscribe(CHAT).await;
        c.drain().await;
    }
    alice
        .perform(CHAT, r#"{"text":"hello","action":"speak"}"#)
        .await;
    alice.drain().await;
    bob.drain().await;
    // Past --max-subscriptions: a rejection by limit.
    let extra = r#"{"channel":"ChatChannel","room":"x"}"#;
    bob.subscribe(extra).await;
    assert_eq!(bob.drain().await, vec![support::reject(extra)]);
    // An unauthorized connection (user 99 is not in the users file).
    let mut stranger = CableClient::connect(&server.url("user_id=99")).await;
    assert!(matches!(stranger.next().await, Seen::Text(t) if t.contains("unauthorized")));

    let text = wait_for(&server, "ferrocable_connections", |v| v == 2.0).await;
    for (series, at_least) in [
        ("ferrocable_connections_accepted_total", 3.0),
        ("ferrocable_subscriptions", 4.0),
        ("ferrocable_streams", 2.0),
        (r#"ferrocable_commands_total{command="subscribe"}"#, 5.0),
        (r#"ferrocable_commands_total{command="message"}"#, 1.0),
        (
            r#"ferrocable_command_duration_seconds_count{command="subscribe"}"#,
            5.0,
        ),
        (r#"ferrocable_presence_joins_total{store="memory"}"#, 2.0),
        // Two user_joined and one speak, published by this node.
        ("ferrocable_broadcasts_published_total", 3.0),
        ("ferrocable_broadcasts_published_bytes_total", 100.0),
        ("ferrocable_broadcasts_total", 3.0),
        ("ferrocable_deliveries_total", 5.0),
        ("ferrocable_broadcast_bytes_total", 100.0),
        ("ferrocable_received_bytes_total", 300.0),
        (
            r#"ferrocable_auth_rejections_total{reason="unknown_user"}"#,
            1.0,
        ),
        (
            r#"ferrocable_subscriptions_rejected_total{reason="too_many"}"#,
            1.0,
        ),
        (
            r#"ferrocable_limit_triggers_total{limit="subscriptions"}"#,
            1.0,
        ),
    ] {
        let v = sample(&text, series);
        assert!(v >= at_least, "{series} is {v}, want ≥ {at_least}:\n{text}");
    }

    // Leaving: the presence leave is counted and the gauges come back down.
    drop(alice);
    let text = wait_for(&server, "ferrocable_connections", |v| v == 1.0).await;
    let text = if sample(&text, r#"ferrocable_presence_leaves_total{store="memory"}"#) < 1.0 {
        wait_for(
            &server,
            r#"ferrocable_presence_leaves_total{store="memory"}"#,
            |v| v >= 1.0,
        )
        .await
    } else {
        text
    };
    assert_eq!(sample(&text, "ferrocable_subscriptions"), 2.0, "{text}");
}

#[tokio::test]
async fn redis_state_reconnects_and_sweeps_are_counted() {
    let mut redis = RedisServer::start();
    let server = start_node(&redis, &["--node-ttl", "1"]);
    let mut alice = CableClient::welcomed(&server, 1).await;
    alice.subscribe(ROOM).await;
    alice.expect_json(&confirm(ROOM)).await;
    // The join runs right after the confirm is queued.
    wait_for(
        &server,
        r#"ferrocable_presence_joins_total{store="redis"}"#,
        |v| v == 1.0,
    )
    .await;
    let text = wait_for(
        &server,
        r#"ferrocable_presence_sweeps_total{store="redis"}"#,
        |v| v >= 1.0,
    )
    .await;
    assert_eq!(sample(&text, "ferrocable_redis_up"), 1.0, "{text}");
    assert_eq!(
        sample(&text, "ferrocable_redis_reconnects_total"),
        0.0,
        "{text}"
    );

    redis.kill();
    wait_for(&server, "ferrocable_redis_up", |v| v == 0.0).await;
    redis.restart();
    wait_for(&server, "ferrocable_redis_reconnects_total", |v| v >= 1.0).await;
    wait_for(&server, "ferrocable_redis_up", |v| v == 1.0).await;
    // The sweep after the restart re-registers alice; Redis only lost its data, nobody
    // was told she left, so that restore is no change to announce (nor to count).
    redis
        .wait_until("alice re-registered", |r| {
            r.smembers("room:m:members") == vec!["1"]
        })
        .await;
    let text = wait_for(
        &server,
        r#"ferrocable_presence_sweeps_total{store="redis"}"#,
        |v| v >= 2.0,
    )
    .await;
    assert_eq!(
        sample(
            &text,
            r#"ferrocable_presence_swept_changes_total{store="redis"}"#
        ),
        0.0,
        "{text}"
    );
    assert!(server.log().contains("redis subscriber reconnected"));
}
