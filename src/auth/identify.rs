//! The identification steps a Rails `ApplicationCable::Connection#connect` usually
//! takes, natively: `cookies.signed[:name]`, `cookies.encrypted[:name]`, a key of the
//! cookie-store session (Devise's `warden.user.user.key`), and a JWT.
//!
//! Each step says `Nothing` when its credential is absent (the next step runs) and
//! `Invalid` with a reason (never the value) when it is present but not acceptable —
//! the pipeline then also moves on, as the reference app falls through from a garbage
//! cookie to a valid token.

use std::sync::Arc;

use hyper::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};

use super::jwt::JwtVerifier;
use super::rails::{user_id_from_value, CookieRejection, CookieVerifier};
use super::{Found, HandshakeRequest, Identify, UserProfile};

fn from_cookie(result: Result<serde_json::Value, CookieRejection>) -> Found {
    match result {
        Ok(v) => match user_id_from_value(&v) {
            Some(id) => Found::User(id),
            None => Found::Invalid("cookie holds no user id".into()),
        },
        Err(CookieRejection::Missing) => Found::Nothing,
        Err(e) => Found::Invalid(e.to_string()),
    }
}

/// `cookies.signed[name]`.
pub struct SignedCookie {
    /// The cookie's name.
    pub name: String,
    /// Keys derived from `secret_key_base`.
    pub verifier: Arc<CookieVerifier>,
}

impl Identify for SignedCookie {
    fn name(&self) -> &'static str {
        "signed_cookie"
    }

    fn identify(&self, req: &HandshakeRequest) -> Found {
        match req.cookies() {
            None => Found::Nothing,
            Some(jar) => from_cookie(self.verifier.signed(jar, &self.name)),
        }
    }
}

/// `cookies.encrypted[name]`.
pub struct EncryptedCookie {
    /// The cookie's name.
    pub name: String,
    /// Keys derived from `secret_key_base`.
    pub verifier: Arc<CookieVerifier>,
}

impl Identify for EncryptedCookie {
    fn name(&self) -> &'static str {
        "encrypted_cookie"
    }

    fn identify(&self, req: &HandshakeRequest) -> Found {
        match req.cookies() {
            None => Found::Nothing,
            Some(jar) => from_cookie(self.verifier.encrypted(jar, &self.name)),
        }
    }
}

/// A key of the cookie-store session, e.g. `user_id` or `warden.user.user.key`.
pub struct SessionKey {
    /// The session cookie's name (`_myapp_session`).
    pub cookie: String,
    /// The key path inside the session.
    pub path: Vec<String>,
    /// Keys derived from `secret_key_base`.
    pub verifier: Arc<CookieVerifier>,
}

impl Identify for SessionKey {
    fn name(&self) -> &'static str {
        "session"
    }

    fn identify(&self, req: &HandshakeRequest) -> Found {
        let Some(jar) = req.cookies() else {
            return Found::Nothing;
        };
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        match self.verifier.session_value(jar, &self.cookie, &path) {
            // A session without the key is a visitor who is not logged in.
            Err(CookieRejection::KeyNotFound) => Found::Nothing,
            other => from_cookie(other),
        }
    }
}

/// A JWT from a query parameter, an `Authorization: Bearer` header, or an entry of
/// `Sec-WebSocket-Protocol` (the 7.1+ client's `addSubProtocol`), in that order.
pub struct Jwt {
    /// The query parameter holding the token.
    pub param: String,
    /// The verifier (algorithm fixed by configuration, never by the token).
    pub verifier: JwtVerifier,
    /// `--jwt-profile-claims`: a token with a `name` claim supplies the user's profile
    /// and no profile lookup happens, so the token alone says the user exists. Off:
    /// the token only names the user id and the profile source decides.
    pub trust_profile_claims: bool,
}

impl Jwt {
    fn token(&self, req: &HandshakeRequest) -> Option<String> {
        if let Some(t) = req.query_param(&self.param) {
            return Some(t);
        }
        if let Some(t) = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
        {
            return Some(t.trim().to_owned());
        }
        req.headers()
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find(|p| !p.starts_with("actioncable-") && p.matches('.').count() == 2)
            .map(str::to_owned)
    }
}

impl Identify for Jwt {
    fn name(&self) -> &'static str {
        "jwt"
    }

    fn identify(&self, req: &HandshakeRequest) -> Found {
        let Some(token) = self.token(req) else {
            return Found::Nothing;
        };
        match self.verifier.verify(&token) {
            Ok(claims) => match self.verifier.user_id(&claims) {
                // Opted in: the app signed the profile, and vouches that the user exists.
                Some(id) if self.trust_profile_claims && claims.contains_key("name") => {
                    let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                    Found::UserWithProfile(UserProfile::new(id, text("name"), text("avatar_url")))
                }
                Some(id) => Found::User(id),
                None => Found::Invalid("token has no user id claim".into()),
            },
            Err(e) => Found::Invalid(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::JwtConfig;
    use crate::auth::rails::RailsSecrets;
    use hyper::header::HeaderValue;
    use hyper::HeaderMap;

    const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbccccccccccccccccccccccccccccccccdddddddddddddddddddddddddddddddd";
    // The reference app's signed cookie and JWT for user 1 (README, "Auth material").
    const SIGNED_1: &str = "eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik1RPT0iLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--acadec505568632a9396988991be9679b1a80001";
    const JWT_1: &str =
        "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.oR4WNDTKjoCiYjWk7luSh_c4d1moIdq5mm3X4eDGGDc";

    fn req(headers: &[(&'static str, &str)], query: Option<&str>) -> HandshakeRequest {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        HandshakeRequest::new(h, query.map(str::to_owned), ([127, 0, 0, 1], 1).into())
    }

    fn verifier() -> Arc<CookieVerifier> {
        Arc::new(
            CookieVerifier::new(&RailsSecrets {
                secret_key_base: vec![SECRET.into()],
                ..RailsSecrets::default()
            })
            .expect("valid"),
        )
    }

    #[test]
    fn signed_cookie_of_the_reference_app() {
        let step = SignedCookie {
            name: "user_id".into(),
            verifier: verifier(),
        };
        let cookie = format!("user_id={SIGNED_1}");
        assert_eq!(
            step.identify(&req(&[("cookie", &cookie)], None)),
            Found::User(1)
        );
        assert_eq!(step.identify(&req(&[], None)), Found::Nothing);
        assert_eq!(
            step.identify(&req(&[("cookie", "other=1")], None)),
            Found::Nothing
        );
        let tampered = format!("user_id={}0000", &SIGNED_1[..SIGNED_1.len() - 4]);
        assert!(matches!(
            step.identify(&req(&[("cookie", &tampered)], None)),
            Found::Invalid(_)
        ));
    }

    #[test]
    fn the_jar_is_parsed_once_however_many_steps_read_it() {
        use crate::auth::rails::cookie_jar::tests::PARSES;
        let v = verifier();
        let steps: [Box<dyn Identify>; 3] = [
            Box::new(EncryptedCookie {
                name: "user_id".into(),
                verifier: v.clone(),
            }),
            Box::new(SessionKey {
                cookie: "_app_session".into(),
                path: vec!["user_id".into()],
                verifier: v.clone(),
            }),
            Box::new(SignedCookie {
                name: "user_id".into(),
                verifier: v,
            }),
        ];
        let cookie = format!("a=1; user_id={SIGNED_1}");
        let request = req(&[("cookie", &cookie), ("cookie", "b=2")], None);
        PARSES.with(|c| c.set(0));
        let found: Vec<Found> = steps.iter().map(|s| s.identify(&request)).collect();
        assert!(matches!(found[0], Found::Invalid(_)), "{found:?}");
        assert_eq!(found[1], Found::Nothing);
        assert_eq!(found[2], Found::User(1));
        assert_eq!(PARSES.with(std::cell::Cell::get), 1);
        assert_eq!(request.cookies().map(|j| j.len()), Some(3), "both headers");
    }

    #[test]
    fn jwt_from_query_header_or_subprotocol() {
        let step = Jwt {
            param: "token".into(),
            verifier: JwtVerifier::new(&JwtConfig::hs256("refapp-jwt-secret")).expect("valid"),
            trust_profile_claims: false,
        };
        assert_eq!(
            step.identify(&req(&[], Some(&format!("token={JWT_1}")))),
            Found::User(1)
        );
        let bearer = format!("Bearer {JWT_1}");
        assert_eq!(
            step.identify(&req(&[("authorization", &bearer)], None)),
            Found::User(1)
        );
        let protos = format!("actioncable-v1-json, actioncable-unsupported, {JWT_1}");
        assert_eq!(
            step.identify(&req(&[("sec-websocket-protocol", &protos)], None)),
            Found::User(1)
        );
        assert_eq!(step.identify(&req(&[], None)), Found::Nothing);
        let Found::Invalid(why) = step.identify(&req(&[], Some("token=a.b.c"))) else {
            panic!("garbage accepted")
        };
        assert!(!why.contains("a.b.c"), "no token in the reason: {why}");
    }

    fn token(claims: serde_json::Value) -> String {
        use jsonwebtoken::{encode, EncodingKey, Header};
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"refapp-jwt-secret"),
        )
        .expect("encodes")
    }

    #[tokio::test]
    async fn a_name_claim_does_not_make_a_user_exist_unless_trusted() {
        use crate::auth::profiles::UsersFile;
        use crate::auth::{AuthOutcome, Authenticator, Pipeline, RejectReason};
        // User 999 is not in the users file (deleted, say); the token still says who
        // they were.
        let t = token(serde_json::json!({"user_id": 999, "name": "Mallory"}));
        let request = req(&[], Some(&format!("token={t}")));
        let step = |trust| Jwt {
            param: "token".into(),
            verifier: JwtVerifier::new(&JwtConfig::hs256("refapp-jwt-secret")).expect("valid"),
            trust_profile_claims: trust,
        };
        assert_eq!(step(false).identify(&request), Found::User(999));
        let users = Arc::new(UsersFile::from_profiles(vec![UserProfile::new(
            1,
            Some("Alice".into()),
            None,
        )]));
        let pipeline = Pipeline::new(vec![Box::new(step(false))], users.clone(), None);
        assert!(matches!(
            pipeline.authenticate(&request).await,
            Ok(AuthOutcome::Rejected(RejectReason::UnknownUser(999)))
        ));
        // A listed user's profile comes from the file, not from the token.
        let t = token(serde_json::json!({"user_id": 1, "name": "Not Alice"}));
        let listed = req(&[], Some(&format!("token={t}")));
        let Ok(AuthOutcome::Accepted(id)) = pipeline.authenticate(&listed).await else {
            panic!("user 1 is listed")
        };
        assert_eq!(id.profile.name.as_deref(), Some("Alice"));
        // Opted in, the token's profile is used as is.
        let trusting = Pipeline::new(vec![Box::new(step(true))], users, None);
        let Ok(AuthOutcome::Accepted(id)) = trusting.authenticate(&request).await else {
            panic!("trusted claims accept the token's user")
        };
        assert_eq!(id.profile.name.as_deref(), Some("Mallory"));
    }
}
