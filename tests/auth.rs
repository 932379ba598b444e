//! Rails authentication end to end: the reference app's own cookies and tokens, with
//! its secret_key_base and JWT secret, against a real ferrocable process.

mod support;

use support::{CableClient, Seen, TestServer};

const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbccccccccccccccccccccccccccccccccdddddddddddddddddddddddddddddddd";
const SIGNED_1: &str = "eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik1RPT0iLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--acadec505568632a9396988991be9679b1a80001";
const ENCRYPTED_1: &str = "1CEbpPosYSUXOcNYhUqPkG%2BSZtk5C0Fm5W6G%2BfulEStu2j%2Bzq1Jj%2BEQDrTYMf5oU4jHYtDCJ4Vv5pdJwbc08--6ZxwrlqBdXWtRjoh--Z1TooC%2FQOF%2BTKY9ku1d8jw%3D%3D";
const SIGNED_999: &str = "eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik9UazUiLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--73f017fed88e23c7d06bb4ff475f11dede894b91";
const JWT_1: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.oR4WNDTKjoCiYjWk7luSh_c4d1moIdq5mm3X4eDGGDc";

/// The reference app's connection: signed cookie, then encrypted cookie, then `?token=`.
fn reference_server() -> TestServer {
    reference_server_with(&[])
}

/// [`reference_server`] with `extra` flags.
fn reference_server_with(extra: &[&str]) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.json");
    std::fs::write(&users, support::USERS_JSON).expect("users");
    let args = [
        "--port",
        "0",
        "--secret-key-base",
        SECRET,
        "--jwt-secret",
        "refapp-jwt-secret",
        "--identifiers",
        "signed_cookie:user_id,encrypted_cookie:user_id,jwt",
        "--users-file",
        users.to_str().expect("utf-8 path"),
        "--globalid-app",
        "refapp",
    ];
    let args = args.iter().chain(extra).map(|s| s.to_string()).collect();
    TestServer::start_with_args(dir, args)
}

async fn outcome(server: &TestServer, query: &str, cookie: Option<&str>) -> String {
    let origin = format!("http://{}", server.addr);
    let mut headers = vec![
        ("Origin", origin.as_str()),
        (
            "Sec-WebSocket-Protocol",
            "actioncable-v1-json, actioncable-unsupported",
        ),
    ];
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    let mut c = CableClient::connect_with(&server.url(query), &headers)
        .await
        .expect("upgrade");
    match c.next().await {
        Seen::Text(t) => t,
        other => format!("{other:?}"),
    }
}

const WELCOME: &str = r#"{"type":"welcome"}"#;
const UNAUTHORIZED: &str = r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#;

#[tokio::test]
async fn the_reference_apps_credentials_are_accepted() {
    let server = reference_server();
    assert_eq!(
        outcome(&server, "", Some(&format!("user_id={SIGNED_1}"))).await,
        WELCOME
    );
    assert_eq!(
        outcome(&server, "", Some(&format!("user_id={ENCRYPTED_1}"))).await,
        WELCOME
    );
    assert_eq!(
        outcome(&server, &format!("token={JWT_1}"), None).await,
        WELCOME
    );
    // A garbage cookie falls through to a valid token, as in the reference app.
    assert_eq!(
        outcome(&server, &format!("token={JWT_1}"), Some("user_id=garbage")).await,
        WELCOME
    );
}

#[tokio::test]
async fn forged_expired_and_unknown_credentials_are_refused_like_rails() {
    let server = reference_server();
    let zeroed = format!(
        "user_id={}",
        SIGNED_1.replace("acadec505568632a9396988991be9679b1a80001", &"0".repeat(40))
    );
    let other_payload = format!(
        "user_id={}",
        SIGNED_1.replace("Ik1RPT0i", "Ik1nPT0i") // message "2" with user 1's digest
    );
    let unescaped_plus = format!(
        "user_id={}",
        ENCRYPTED_1
            .replace("%2B", "+")
            .replace("%2F", "/")
            .replace("%3D", "=")
    );
    for cookie in [
        zeroed,
        other_payload,
        unescaped_plus,
        format!("user_id={SIGNED_999}"),
    ] {
        assert_eq!(
            outcome(&server, "", Some(&cookie)).await,
            UNAUTHORIZED,
            "cookie {cookie}"
        );
    }
    for token in [
        "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoyLCJleHAiOjE3OTU4MzE5Mzl9.TvHDa1Skz7xVuZ-8zhKVW5Y_OjgJki9HuloZf_ibWHo",
        "eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoxfQ.",
    ] {
        assert_eq!(outcome(&server, &format!("token={token}"), None).await, UNAUTHORIZED, "token {token}");
    }
    assert_eq!(outcome(&server, "", None).await, UNAUTHORIZED);
    // The log says why, and never shows a credential.
    let log = server.log();
    assert!(log.contains("unknown user 999"), "{log}");
    for secret in [
        "acadec505568632a9396988991be9679b1a80001",
        "oR4WNDTKjoCiYjWk7luSh",
        SECRET,
        "refapp-jwt-secret",
        "1CEbpPosYSUXOcNYhUqPkG",
    ] {
        assert!(!log.contains(secret), "the log leaks {secret}");
    }
}

#[tokio::test]
async fn a_token_naming_a_user_the_users_file_lacks_is_refused_unless_claims_are_trusted() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    // User 999 is not in the users file: deleted since the token was issued, say.
    let token = encode(
        &Header::default(),
        &serde_json::json!({"user_id": 999, "name": "Mallory"}),
        &EncodingKey::from_secret(b"refapp-jwt-secret"),
    )
    .expect("encodes");
    let query = format!("token={token}");
    let server = reference_server();
    assert_eq!(outcome(&server, &query, None).await, UNAUTHORIZED);
    assert!(server.log().contains("unknown user 999"));
    let trusting = reference_server_with(&["--jwt-profile-claims"]);
    assert_eq!(outcome(&trusting, &query, None).await, WELCOME);
}

#[tokio::test]
async fn presence_names_come_from_the_cookie_user() {
    let server = reference_server();
    let origin = format!("http://{}", server.addr);
    let cookie = format!("user_id={SIGNED_1}");
    let mut c = CableClient::connect_with(
        &server.url(""),
        &[
            ("Origin", &origin),
            ("Sec-WebSocket-Protocol", "actioncable-v1-json"),
            ("Cookie", &cookie),
        ],
    )
    .await
    .expect("upgrade");
    c.expect_json(WELCOME).await;
    let id = r#"{"channel":"PresenceChannel","room_id":"1"}"#;
    c.subscribe(id).await;
    let got = c.drain().await;
    assert_eq!(got[0], support::confirm(id));
    assert!(
        got[1].ends_with(r#""message":{"action":"user_joined","user":{"id":1,"name":"Alice","avatar_url":"https://example.test/avatars/alice.png"},"member_ids":[1],"member_count":1}}"#),
        "{got:?}"
    );
}
