//! Who is on the other end of a connection.
//!
//! Authentication runs after the WebSocket upgrade, as in Rails: the [`Authenticator`]
//! sees the upgrade request's headers and query string ([`HandshakeRequest`]) and
//! either accepts an [`Identity`] or rejects. A rejection is an outcome, not an error:
//! it goes on the wire as Rails' `reject_unauthorized_connection` does. An `Err` means
//! ferrocable itself is broken (a profile database is down, say).
//!
//! [`Pipeline`] is the usual authenticator: an ordered list of [`Identify`] steps (the
//! reference app tries the signed cookie, then the encrypted cookie, then a token);
//! the first that names a user wins, and the user's profile is then looked up. A user
//! the profile source does not know is refused, as the Rails app refuses user 999.
//!
//! # Invariants
//! - No secret, cookie or token value is ever logged or put in a reject reason.
//! - Depends only on `protocol` (for Rails-compatible JSON of profiles).

pub mod dev;
pub mod identify;
pub mod jwt;
pub mod profile_cache;
pub mod profiles;
pub mod rails;
pub mod settings;
pub mod sql;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use hyper::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use hyper::HeaderMap;

use rails::cookie_jar::hex_val;
use rails::CookieJar;

pub use profiles::{ProfileError, ProfileSource, UserProfile};
pub use settings::{profile_source, AuthSettings, AuthSetupError, IdentifierSpec, ProfileSpec};

/// What authentication can see of the upgrade request.
///
/// The headers and query are fixed at construction, so the cookie jar is parsed at
/// most once per request, on first use, however many steps read cookies. Its `Debug`
/// never shows a credential: the values of `Cookie`, `Authorization`,
/// `Proxy-Authorization` and `Sec-WebSocket-Protocol` (which can carry a token) and of
/// every query parameter are replaced by their length.
#[derive(Clone)]
pub struct HandshakeRequest {
    headers: HeaderMap,
    query: Option<String>,
    /// The peer address.
    pub peer: SocketAddr,
    cookies: OnceLock<Option<CookieJar>>,
}

impl HandshakeRequest {
    /// The request as authentication sees it.
    pub fn new(headers: HeaderMap, query: Option<String>, peer: SocketAddr) -> Self {
        HandshakeRequest {
            headers,
            query,
            peer,
            cookies: OnceLock::new(),
        }
    }

    /// Every request header.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The raw query string, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The request's cookies, every `Cookie` header joined with `; ` as a browser
    /// sends them in one, parsed on the first call; `None` without a cookie.
    pub fn cookies(&self) -> Option<&CookieJar> {
        self.cookies
            .get_or_init(|| {
                let mut all: Vec<u8> = Vec::new();
                for v in self.headers.get_all(COOKIE) {
                    if !all.is_empty() {
                        all.extend_from_slice(b"; ");
                    }
                    all.extend_from_slice(v.as_bytes());
                }
                (!all.is_empty()).then(|| CookieJar::parse_bytes(&all))
            })
            .as_ref()
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }
}

impl fmt::Debug for HandshakeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted(usize);
        impl fmt::Debug for Redacted {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "<{} bytes>", self.0)
            }
        }
        struct Headers<'a>(&'a HeaderMap);
        impl fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut m = f.debug_map();
                for (name, value) in self.0 {
                    let secret = [
                        COOKIE,
                        AUTHORIZATION,
                        PROXY_AUTHORIZATION,
                        SEC_WEBSOCKET_PROTOCOL,
                    ]
                    .contains(name);
                    match value.to_str() {
                        Ok(v) if !secret => m.entry(&name.as_str(), &v),
                        _ => m.entry(&name.as_str(), &Redacted(value.len())),
                    };
                }
                m.finish()
            }
        }
        struct Query<'a>(&'a str);
        impl fmt::Debug for Query<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut m = f.debug_map();
                for pair in self.0.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    m.entry(&k, &Redacted(v.len()));
                }
                m.finish()
            }
        }
        f.debug_struct("HandshakeRequest")
            .field("headers", &Headers(&self.headers))
            .field("query", &self.query.as_deref().map(Query))
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Decodes `%XX` escapes and `+` as a space (form encoding, as Rack decodes queries).
/// `XX` must be two hex digits; a `%` not followed by two is kept as it is.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex_val);
                let lo = b.get(i + 2).copied().and_then(hex_val);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An authenticated user.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The Rails user id.
    pub user_id: i64,
    /// Rails' connection identifier (`current_user.to_gid_param`), when a GlobalID
    /// app name is configured: the key of remote disconnects.
    pub connection_identifier: Option<String>,
    /// The user's profile, as presence payloads show it.
    pub profile: Arc<UserProfile>,
    /// Which step identified the user (for logs).
    pub via: &'static str,
}

/// Why a connection was refused. Never carries a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// No step found credentials.
    NoCredentials,
    /// Credentials were present but not valid; the text says why (no values).
    Invalid(String),
    /// The credentials named a user the profile source does not know.
    UnknownUser(i64),
}

impl RejectReason {
    /// The `reason` label of the auth-rejection metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            RejectReason::NoCredentials => "no_credentials",
            RejectReason::Invalid(_) => "invalid",
            RejectReason::UnknownUser(_) => "unknown_user",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::NoCredentials => f.write_str("no credentials"),
            RejectReason::Invalid(why) => write!(f, "invalid credentials: {why}"),
            RejectReason::UnknownUser(id) => write!(f, "unknown user {id}"),
        }
    }
}

/// The result of authentication.
#[derive(Debug, Clone)]
pub enum AuthOutcome {
    /// The connection belongs to this user.
    Accepted(Identity),
    /// The connection is refused.
    Rejected(RejectReason),
}

/// Authentication is broken (not: the client is wrong).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The profile source failed.
    #[error("profile lookup failed")]
    Profile(#[from] ProfileError),
    /// Authentication took longer than `--auth-timeout`.
    #[error("authentication took longer than its deadline")]
    Deadline,
}

/// Decides who a connection belongs to.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Authenticates one upgrade request.
    ///
    /// # Errors
    /// Only when authentication itself is broken; a refusal is `Ok(Rejected)`.
    async fn authenticate(&self, req: &HandshakeRequest) -> Result<AuthOutcome, AuthError>;
}

/// What one identification step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A user id; the profile source names the user.
    User(i64),
    /// A user and their profile, from a trusted credential (a signed token's claims).
    UserWithProfile(UserProfile),
    /// This step's credentials are absent.
    Nothing,
    /// This step's credentials are present but invalid (no values in the text).
    Invalid(String),
}

/// One way of finding the user id in a request (a cookie, a token, …).
pub trait Identify: Send + Sync + 'static {
    /// A short name for logs, e.g. `signed_cookie`.
    fn name(&self) -> &'static str;
    /// Looks for credentials in `req`.
    fn identify(&self, req: &HandshakeRequest) -> Found;
}

/// How Rails names a user in a GlobalID: `gid://<app>/<model>/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalIdNaming {
    /// The GlobalID app (the Rails application module, underscored: `Refapp` → `refapp`).
    pub app: String,
    /// The user model's class name, e.g. `User`.
    pub model: String,
}

impl GlobalIdNaming {
    /// `to_gid_param`: base64url without padding of the GlobalID URI.
    pub fn param(&self, id: i64) -> String {
        use base64::Engine;
        let uri = format!("gid://{}/{}/{id}", self.app, self.model);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uri)
    }
}

/// Identification steps tried in order, then a profile lookup.
pub struct Pipeline {
    steps: Vec<Box<dyn Identify>>,
    profiles: Arc<dyn ProfileSource>,
    gid: Option<GlobalIdNaming>,
}

impl Pipeline {
    /// A pipeline trying `steps` in order and looking users up in `profiles`;
    /// `gid` names connections as Rails does (for remote disconnects).
    pub fn new(
        steps: Vec<Box<dyn Identify>>,
        profiles: Arc<dyn ProfileSource>,
        gid: Option<GlobalIdNaming>,
    ) -> Self {
        Pipeline {
            steps,
            profiles,
            gid,
        }
    }

    fn identity(&self, user_id: i64, profile: Arc<UserProfile>, via: &'static str) -> Identity {
        Identity {
            user_id,
            connection_identifier: self.gid.as_ref().map(|g| g.param(user_id)),
            profile,
            via,
        }
    }
}

#[async_trait]
impl Authenticator for Pipeline {
    async fn authenticate(&self, req: &HandshakeRequest) -> Result<AuthOutcome, AuthError> {
        let mut reason = RejectReason::NoCredentials;
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                // Steps are synchronous: between two, let other tasks run and let
                // `--auth-timeout` take effect.
                tokio::task::yield_now().await;
            }
            match step.identify(req) {
                Found::User(id) => {
                    return Ok(match self.profiles.lookup(id).await? {
                        Some(profile) => {
                            AuthOutcome::Accepted(self.identity(id, profile, step.name()))
                        }
                        None => AuthOutcome::Rejected(RejectReason::UnknownUser(id)),
                    });
                }
                Found::UserWithProfile(profile) => {
                    return Ok(AuthOutcome::Accepted(self.identity(
                        profile.id,
                        Arc::new(profile),
                        step.name(),
                    )));
                }
                Found::Nothing => {}
                // Like the Rails app, an invalid cookie falls through to the next step.
                Found::Invalid(why) => {
                    reason = RejectReason::Invalid(format!("{}: {why}", step.name()))
                }
            }
        }
        Ok(AuthOutcome::Rejected(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(query: &str) -> HandshakeRequest {
        HandshakeRequest::new(
            HeaderMap::new(),
            Some(query.to_owned()),
            SocketAddr::from(([127, 0, 0, 1], 1)),
        )
    }

    #[test]
    fn global_id_param_matches_rails() {
        let g = GlobalIdNaming {
            app: "refapp".into(),
            model: "User".into(),
        };
        assert_eq!(g.param(1), "Z2lkOi8vcmVmYXBwL1VzZXIvMQ");
    }

    #[test]
    fn query_params_are_form_decoded() {
        let r = req("a=1&user%5Fid=4%202&b=x+y&bad=%zz&end=%4");
        assert_eq!(r.query_param("user_id").as_deref(), Some("4 2"));
        assert_eq!(r.query_param("b").as_deref(), Some("x y"));
        assert_eq!(r.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(r.query_param("end").as_deref(), Some("%4"));
        assert_eq!(r.query_param("nope"), None);
        // Two hex digits only: `from_str_radix` would take `+5` as 5.
        let r = req("a=%+5&b=%-1&c=%%41&d=%4%31");
        assert_eq!(r.query_param("a").as_deref(), Some("% 5"));
        assert_eq!(r.query_param("b").as_deref(), Some("%-1"));
        assert_eq!(r.query_param("c").as_deref(), Some("%A"));
        assert_eq!(r.query_param("d").as_deref(), Some("%41"));
    }

    #[test]
    fn debug_never_shows_credentials() {
        use hyper::header::HeaderValue;
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("cookie", "user_id=SECRET-COOKIE"),
            ("cookie", "_s=SECRET-SESSION"),
            ("authorization", "Bearer SECRET-BEARER"),
            ("proxy-authorization", "Basic SECRET-PROXY"),
            (
                "sec-websocket-protocol",
                "actioncable-v1-json, SECRET.JWT.TOKEN",
            ),
            ("origin", "http://example.test"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        let r = HandshakeRequest::new(
            h,
            Some("token=SECRET-QUERY&user_id=1".into()),
            SocketAddr::from(([127, 0, 0, 1], 1)),
        );
        assert!(r.cookies().is_some(), "the jar is parsed before printing");
        let shown = format!("{r:?} {r:#?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("http://example.test"), "{shown}");
        assert!(shown.contains("\"token\": <12 bytes>"), "{shown}");
    }

    struct Fixed(Found);
    impl Identify for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn identify(&self, _: &HandshakeRequest) -> Found {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn first_step_naming_a_known_user_wins() {
        let profiles: Arc<dyn ProfileSource> =
            Arc::new(profiles::UsersFile::from_profiles(vec![UserProfile::new(
                1,
                Some("Alice".into()),
                None,
            )]));
        let p = Pipeline::new(
            vec![
                Box::new(Fixed(Found::Invalid("bad signature".into()))),
                Box::new(Fixed(Found::User(1))),
            ],
            profiles.clone(),
            None,
        );
        let AuthOutcome::Accepted(id) = p.authenticate(&req("")).await.expect("no backend") else {
            panic!("should accept")
        };
        assert_eq!(id.user_id, 1);

        let p = Pipeline::new(
            vec![Box::new(Fixed(Found::User(999)))],
            profiles.clone(),
            None,
        );
        assert!(matches!(
            p.authenticate(&req("")).await,
            Ok(AuthOutcome::Rejected(RejectReason::UnknownUser(999)))
        ));
        let p = Pipeline::new(
            vec![Box::new(Fixed(Found::Invalid("expired".into())))],
            profiles,
            None,
        );
        assert!(matches!(
            p.authenticate(&req("")).await,
            Ok(AuthOutcome::Rejected(RejectReason::Invalid(_)))
        ));
    }
}
