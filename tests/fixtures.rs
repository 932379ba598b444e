//! Protocol-fixture replay: every embedded-mode scenario recorded from the Rails 6.1
//! reference app (`protocol-fixtures/*.jsonl`) is replayed against a fresh ferrocable
//! and must match, connection by connection, apart from the differences declared in
//! `protocol-fixtures/differences.toml`. See `protocol-fixtures/README.md`.
//!
//! `UPDATE_FIXTURES=1 cargo test --test fixtures` also writes ferrocable's normalized
//! transcripts to `protocol-fixtures/ferrocable/` for review.

mod support;
#[path = "support/transcript.rs"]
mod transcript;

use transcript::{check_transcript, check_transcript_redis};

/// Recorded scenarios that are not replayed yet, and why. Each needs a test here once
/// ferrocable can run it.
const DEFERRED: &[(&str, &str)] = &[(
        "server_shutdown",
        "opt-in scenario (SIGTERM mid-session, stale Redis set): ferrocable drains on SIGTERM by design (tests/shutdown.rs)",
    )];

/// Scenarios replayed below.
const REPLAYED: &[&str] = &[
    "welcome_ping",
    "presence_subscribe_signed",
    "presence_subscribe_signed@cold_server",
    "presence_subscribe_signed@cold_server_low_latency",
    "presence_two_users",
    "presence_heartbeat",
    "unsubscribe",
    "duplicate_subscribe",
    "subscribe_bad_identifier",
    "unknown_command",
    "perform_unknown_action",
    "perform_unknown_action@message_before_confirm",
    "no_auth",
    "subprotocols",
    "origin_mismatch",
    "chat_speak",
    "subscribe_before_welcome",
    "handshake_raw",
    "bad_cookie_signature",
    "auth_variants",
    "turbo_streams",
    // Redis mode only (REDIS_ONLY).
    "redis_publish",
    "remote_disconnect",
];

/// Scenarios replayed in Redis mode only (they need Redis: external PUBLISHes).
const REDIS_ONLY: &[&str] = &["redis_publish", "remote_disconnect"];

/// Scenarios (also) replayed in Redis mode: ferrocable on its own redis-server, the
/// recording's external PUBLISHes replayed into it, its Redis keys, TTLs and pub/sub
/// channels compared with the recording's snapshots.
const REDIS_MODE: &[&str] = &[
    "redis_publish",
    "remote_disconnect",
    "presence_subscribe_signed",
    "presence_subscribe_signed@cold_server",
    "presence_subscribe_signed@cold_server_low_latency",
    "presence_two_users",
    "presence_heartbeat",
    "unsubscribe",
];

#[test]
fn every_fixture_is_replayed_or_deferred() {
    let mut listed: Vec<String> = REPLAYED
        .iter()
        .chain(DEFERRED.iter().map(|(n, _)| n))
        .map(|s| s.to_string())
        .collect();
    listed.sort();
    assert_eq!(
        transcript::fixture_names(),
        listed,
        "protocol-fixtures/*.jsonl vs REPLAYED + DEFERRED"
    );
}

#[test]
fn differences_are_declared_for_replayed_scenarios_only() {
    for name in transcript::declared_scenarios() {
        assert!(
            REPLAYED.contains(&name.as_str()),
            "differences.toml names {name:?}, which is not replayed"
        );
    }
}

#[test]
fn redis_mode_scenarios_are_replayed() {
    for name in REDIS_MODE {
        assert!(
            REPLAYED.contains(name),
            "{name} is in REDIS_MODE, not REPLAYED"
        );
    }
}

#[test]
fn redis_only_scenarios_are_in_redis_mode() {
    for name in REDIS_ONLY {
        assert!(
            REDIS_MODE.contains(name),
            "{name} is in REDIS_ONLY, not REDIS_MODE"
        );
    }
}

/// The counts README.md and protocol-fixtures/README.md give, and the rows the latter
/// marks deferred, are those of the lists above.
#[test]
fn the_docs_count_what_is_replayed() {
    let recorded = transcript::fixture_names().len();
    let (replayed, redis) = (REPLAYED.len(), REDIS_MODE.len());
    let embedded = replayed - REDIS_ONLY.len();
    let both = redis - REDIS_ONLY.len();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| {
        // Prose is wrapped: compare with line breaks as spaces.
        std::fs::read_to_string(root.join(p))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let readme = read("README.md");
    let want = format!(
        "{replayed} of the {recorded} recorded Rails scenarios: {embedded} in embedded mode, {redis} in Redis mode"
    );
    assert!(readme.contains(&want), "README.md should say {want:?}");
    let fixtures = read("protocol-fixtures/README.md");
    let want = format!(
        "{recorded} recordings: {replayed} are replayed ({embedded} in embedded mode, {redis} in Redis mode, {both} of them in both modes) and {} is deferred",
        DEFERRED.len()
    );
    assert!(
        fixtures.contains(&want),
        "protocol-fixtures/README.md should say {want:?}"
    );
    let text = std::fs::read_to_string(root.join("protocol-fixtures/README.md")).expect("read");
    let mut deferred_rows = Vec::new();
    for row in text
        .lines()
        .filter(|l| l.starts_with('|') && l.contains("**deferred"))
    {
        let first_cell = row.split('|').nth(1).unwrap_or_default();
        for name in first_cell.split('`').skip(1).step_by(2) {
            assert!(
                DEFERRED.iter().any(|(d, _)| d == &name),
                "protocol-fixtures/README.md marks {name} deferred; tests/fixtures.rs replays it"
            );
            deferred_rows.push(name.to_owned());
        }
    }
    for (name, _) in DEFERRED {
        assert!(
            deferred_rows.iter().any(|r| r == name),
            "protocol-fixtures/README.md has no deferred row for {name}"
        );
    }
}

#[tokio::test]
async fn redis_publish_redis() {
    check_transcript_redis("redis_publish").await;
}

#[tokio::test]
async fn remote_disconnect_redis() {
    check_transcript_redis("remote_disconnect").await;
}

#[tokio::test]
async fn presence_subscribe_signed_redis() {
    check_transcript_redis("presence_subscribe_signed").await;
}

#[tokio::test]
async fn presence_subscribe_signed_at_cold_server_redis() {
    check_transcript_redis("presence_subscribe_signed@cold_server").await;
}

#[tokio::test]
async fn presence_subscribe_signed_at_cold_server_low_latency_redis() {
    check_transcript_redis("presence_subscribe_signed@cold_server_low_latency").await;
}

#[tokio::test]
async fn presence_two_users_redis() {
    check_transcript_redis("presence_two_users").await;
}

#[tokio::test]
async fn presence_heartbeat_redis() {
    check_transcript_redis("presence_heartbeat").await;
}

#[tokio::test]
async fn unsubscribe_redis() {
    check_transcript_redis("unsubscribe").await;
}

#[tokio::test]
async fn welcome_ping() {
    check_transcript("welcome_ping").await;
}

#[tokio::test]
async fn presence_subscribe_signed() {
    check_transcript("presence_subscribe_signed").await;
}

#[tokio::test]
async fn presence_subscribe_signed_at_cold_server() {
    check_transcript("presence_subscribe_signed@cold_server").await;
}

#[tokio::test]
async fn presence_subscribe_signed_at_cold_server_low_latency() {
    check_transcript("presence_subscribe_signed@cold_server_low_latency").await;
}

#[tokio::test]
async fn presence_two_users() {
    check_transcript("presence_two_users").await;
}

#[tokio::test]
async fn presence_heartbeat() {
    check_transcript("presence_heartbeat").await;
}

#[tokio::test]
async fn unsubscribe() {
    check_transcript("unsubscribe").await;
}

#[tokio::test]
async fn duplicate_subscribe() {
    check_transcript("duplicate_subscribe").await;
}

#[tokio::test]
async fn subscribe_bad_identifier() {
    check_transcript("subscribe_bad_identifier").await;
}

#[tokio::test]
async fn unknown_command() {
    check_transcript("unknown_command").await;
}

#[tokio::test]
async fn perform_unknown_action() {
    check_transcript("perform_unknown_action").await;
}

#[tokio::test]
async fn perform_unknown_action_at_message_before_confirm() {
    check_transcript("perform_unknown_action@message_before_confirm").await;
}

#[tokio::test]
async fn no_auth() {
    check_transcript("no_auth").await;
}

#[tokio::test]
async fn subprotocols() {
    check_transcript("subprotocols").await;
}

#[tokio::test]
async fn origin_mismatch() {
    check_transcript("origin_mismatch").await;
}

#[tokio::test]
async fn chat_speak() {
    check_transcript("chat_speak").await;
}

#[tokio::test]
async fn subscribe_before_welcome() {
    check_transcript("subscribe_before_welcome").await;
}

#[tokio::test]
async fn handshake_raw() {
    check_transcript("handshake_raw").await;
}

#[tokio::test]
async fn bad_cookie_signature() {
    check_transcript("bad_cookie_signature").await;
}

#[tokio::test]
async fn auth_variants() {
    check_transcript("auth_variants").await;
}

#[tokio::test]
async fn turbo_streams() {
    check_transcript("turbo_streams").await;
}
