//! Verify cost of each credential kind: `cargo bench --bench auth`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ferrocable::auth::jwt::{JwtConfig, JwtVerifier};
use ferrocable::auth::rails::{cookie_jar, CookieJar, CookieVerifier, MintOptions, RailsSecrets};
use serde_json::json;

fn benches(c: &mut Criterion) {
    let secret = ["a", "b", "c", "d"].map(|s| s.repeat(32)).concat();
    let verifier = CookieVerifier::new(&RailsSecrets {
        secret_key_base: vec![secret.clone()],
        key_digest: ferrocable::auth::rails::DigestMode::Sha1,
        ..RailsSecrets::default()
    })
    .expect("valid config");
    let meta = MintOptions {
        metadata: true,
        expires_at: None,
    };

    let signed = verifier.mint_signed("user_id", &json!(1), &meta);
    let encrypted = verifier.mint_encrypted("user_id", &json!(1), &meta);
    let session = json!({
        "session_id": "3f1c0a6b9e2d4c8f7a5b1e0d9c8b7a6f",
        "warden.user.user.key": [[42], "$2a$12$abcdefghijklmnopqrstuv"],
        "_csrf_token": "q1w2e3r4t5y6u7i8o9p0"
    });
    let session = verifier.mint_encrypted("_myapp_session", &session, &meta);

    let signed_header = format!("_ga=GA1.2.3; user_id={}", cookie_jar::escape(&signed));
    let encrypted_header = format!("_ga=GA1.2.3; user_id={}", cookie_jar::escape(&encrypted));
    let session_header = format!(
        "_ga=GA1.2.3; _myapp_session={}",
        cookie_jar::escape(&session)
    );

    c.bench_function("signed cookie (header parse + HMAC-SHA1 + JSON)", |b| {
        b.iter(|| {
            let jar = CookieJar::parse(black_box(&signed_header));
            black_box(verifier.signed(&jar, "user_id").expect("valid"))
        })
    });
    c.bench_function(
        "encrypted cookie (header parse + AES-256-GCM + JSON)",
        |b| {
            b.iter(|| {
                let jar = CookieJar::parse(black_box(&encrypted_header));
                black_box(verifier.encrypted(&jar, "user_id").expect("valid"))
            })
        },
    );
    c.bench_function("session cookie, warden key (GCM + JSON + path)", |b| {
        b.iter(|| {
            let jar = CookieJar::parse(black_box(&session_header));
            black_box(
                verifier
                    .session_value(&jar, "_myapp_session", &["warden.user.user.key"])
                    .expect("valid"),
            )
        })
    });

    // Hostile jars of distinct names: at the default --max-cookie-bytes, and 20 times
    // that (the parse is linear, so about 20 times the cost, not 400).
    for bytes in [16_384, 327_680] {
        let mut hostile = String::new();
        let mut i = 0;
        while hostile.len() < bytes {
            hostile.push_str(&format!("c{i}=v; "));
            i += 1;
        }
        c.bench_function(
            &format!("cookie jar parse, {bytes} bytes of distinct names"),
            |b| b.iter(|| black_box(CookieJar::parse(black_box(&hostile))).len()),
        );
    }

    let jwt = JwtVerifier::new(&JwtConfig::hs256("refapp-jwt-secret")).expect("valid config");
    let token =
        "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.oR4WNDTKjoCiYjWk7luSh_c4d1moIdq5mm3X4eDGGDc";
    c.bench_function("JWT HS256", |b| {
        b.iter(|| black_box(jwt.verify(black_box(token)).expect("valid")))
    });

    c.bench_function("CookieVerifier::new (PBKDF2, 1 secret, SHA1)", |b| {
        b.iter(|| {
            black_box(
                CookieVerifier::new(&RailsSecrets {
                    secret_key_base: vec![secret.clone()],
                    key_digest: ferrocable::auth::rails::DigestMode::Sha1,
                    ..RailsSecrets::default()
                })
                .expect("valid config"),
            )
        })
    });
}

criterion_group!(auth_benches, benches);
criterion_main!(auth_benches);
