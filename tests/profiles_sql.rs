//! User profiles from a real database: lookups against a PostgreSQL and a MariaDB that
//! these tests start themselves, and SQLite; then a ferrocable process whose presence
//! payloads name users from PostgreSQL.

#[path = "support/databases.rs"]
mod databases;
mod support;

use std::time::Duration;

use databases::TestDatabase;
use ferrocable::auth::profile_cache::{CacheConfig, CachedProfiles};
use ferrocable::auth::sql::{DatabaseConfig, SqlProfiles};
use ferrocable::auth::{ProfileError, ProfileSource};
use support::{CableClient, Seen, TestServer};

// The reference app's secret and cookies, as in tests/auth.rs (how they were made:
// src/auth/rails/vectors/README.md).
const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbccccccccccccccccccccccccccccccccdddddddddddddddddddddddddddddddd";
const SIGNED_1: &str = "eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik1RPT0iLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--acadec505568632a9396988991be9679b1a80001";
const SIGNED_999: &str = "eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik9UazUiLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--73f017fed88e23c7d06bb4ff475f11dede894b91";

const ALICE: &str =
    r#"{"id":1,"name":"Alice","avatar_url":"https://example.test/avatars/alice.png"}"#;

async fn json_of(source: &impl ProfileSource, id: i64) -> Option<String> {
    source
        .lookup(id)
        .await
        .unwrap_or_else(|e| panic!("lookup {id}: {e}"))
        .map(|p| String::from_utf8(p.json().to_vec()).expect("utf-8"))
}

/// Hits, misses, NULLs, the cache, and a bad query, against `db` seeded with the
/// reference users.
async fn lookups_behave(db: &TestDatabase) {
    let cfg = DatabaseConfig::parse(db.url(), None).expect("valid URL");
    let direct = SqlProfiles::connect_lazy(&cfg).expect("pool");
    direct.check().await.expect("the default query prepares");
    assert_eq!(json_of(&direct, 1).await.as_deref(), Some(ALICE));
    assert_eq!(
        json_of(&direct, 4).await.as_deref(),
        Some(r#"{"id":4,"name":"Dave","avatar_url":null}"#)
    );
    assert_eq!(json_of(&direct, 999).await, None);

    // Long TTLs for misses too, so no clock can make this flaky.
    let hour = Duration::from_secs(3600);
    let cached = CachedProfiles::new(
        SqlProfiles::connect_lazy(&cfg).expect("pool"),
        CacheConfig {
            capacity: 100,
            ttl: hour,
            miss_ttl: hour,
        },
    );
    cached.check().await.expect("prepares");
    assert_eq!(json_of(&cached, 1).await.as_deref(), Some(ALICE));
    assert_eq!(json_of(&cached, 5).await, None);
    db.execute("UPDATE users SET name = 'Alicia' WHERE id = 1")
        .await;
    db.execute("INSERT INTO users (id, name) VALUES (5, 'Eve')")
        .await;
    // The cache did not ask again: it still has the old row and the old miss.
    assert_eq!(json_of(&cached, 1).await.as_deref(), Some(ALICE));
    assert_eq!(json_of(&cached, 5).await, None);
    // The database did change.
    assert!(json_of(&direct, 1)
        .await
        .expect("alicia")
        .contains("Alicia"));
    assert_eq!(
        json_of(&direct, 5).await.as_deref(),
        Some(r#"{"id":5,"name":"Eve","avatar_url":null}"#)
    );

    // A custom query: other column names, aliased.
    let ph = db.kind.placeholder();
    let custom = DatabaseConfig::parse(
        db.url(),
        Some(&format!(
            "SELECT id, email AS name FROM users WHERE id = {ph}"
        )),
    )
    .expect("valid");
    let s = SqlProfiles::connect_lazy(&custom).expect("pool");
    s.check().await.expect("prepares");
    assert_eq!(
        json_of(&s, 2).await.as_deref(),
        Some(r#"{"id":2,"name":"bob@example.test","avatar_url":null}"#)
    );

    // A query naming a missing table fails the startup check, with the database's words.
    let bad = DatabaseConfig::parse(
        db.url(),
        Some(&format!("SELECT id, name FROM people WHERE id = {ph}")),
    )
    .expect("valid");
    let e = SqlProfiles::connect_lazy(&bad)
        .expect("pool")
        .check()
        .await
        .unwrap_err();
    assert!(matches!(e, ProfileError::Database(_)), "{e:?}");
    assert!(e.to_string().contains("people"), "{e}");
}

#[tokio::test]
async fn postgres_profiles() {
    let db = TestDatabase::postgres().await;
    // `integer` ids, as Rails before 5.1 made them.
    db.seed_reference_users("integer").await;
    lookups_behave(&db).await;
}

#[tokio::test]
async fn mariadb_profiles() {
    let db = TestDatabase::mariadb().await;
    db.seed_reference_users("BIGINT UNSIGNED").await;
    lookups_behave(&db).await;
}

#[tokio::test]
async fn sqlite_profiles() {
    let db = TestDatabase::sqlite().await;
    db.seed_reference_users("INTEGER").await;
    lookups_behave(&db).await;
    // Rails' own scheme for SQLite works too.
    let rails_url = db.url().replacen("sqlite:", "sqlite3:", 1);
    let s = SqlProfiles::connect_lazy(&DatabaseConfig::parse(&rails_url, None).expect("valid"))
        .expect("pool");
    assert!(json_of(&s, 3).await.expect("carol").contains("Carol"));
}

/// ferrocable as the reference app's connection sees users: the signed cookie, with
/// profiles from `db`.
fn server_on(db: &TestDatabase, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        "0",
        "--secret-key-base",
        SECRET,
        "--identifiers",
        "signed_cookie:user_id",
        "--database-url",
        db.url(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

async fn connect_with_cookie(server: &TestServer, cookie: &str) -> CableClient {
    let origin = format!("http://{}", server.addr);
    let cookie = format!("user_id={cookie}");
    CableClient::connect_with(
        &server.url(""),
        &[
            ("Origin", &origin),
            ("Sec-WebSocket-Protocol", "actioncable-v1-json"),
            ("Cookie", &cookie),
        ],
    )
    .await
    .expect("upgrade")
}

#[tokio::test]
async fn presence_names_come_from_postgres() {
    let db = TestDatabase::postgres().await;
    db.seed_reference_users("bigint").await;
    let server =
        TestServer::start_with_args(tempfile::tempdir().expect("tempdir"), server_on(&db, &[]));

    let mut alice = connect_with_cookie(&server, SIGNED_1).await;
    alice.expect_json(r#"{"type":"welcome"}"#).await;
    let id = r#"{"channel":"PresenceChannel","room_id":"1"}"#;
    alice.subscribe(id).await;
    let got = alice.drain().await;
    assert_eq!(got[0], support::confirm(id));
    assert!(
        got[1].ends_with(&format!(
            r#""message":{{"action":"user_joined","user":{ALICE},"member_ids":[1],"member_count":1}}}}"#
        )),
        "{got:?}"
    );

    // User 999 has no row: refused, as the reference app refuses it.
    let mut nobody = connect_with_cookie(&server, SIGNED_999).await;
    assert_eq!(
        nobody.next().await,
        Seen::Text(r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#.into())
    );
    let log = server.log();
    assert!(log.contains("unknown user 999"), "{log}");
    assert!(log.contains("profile database ready"), "{log}");
}

#[test]
fn a_bad_profile_query_stops_the_server_before_it_listens() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(TestDatabase::sqlite());
    let stderr = TestServer::refused(&server_on(
        &db,
        &[
            "--profile-query",
            "SELECT id FROM no_such_table WHERE id = ?",
        ],
    ));
    assert!(
        stderr.contains("profile database") && stderr.contains("no_such_table"),
        "{stderr}"
    );
}
