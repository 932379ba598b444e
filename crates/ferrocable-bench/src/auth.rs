//! How generated clients authenticate: development query parameter, a Rails signed
//! cookie, a JWT as ferrocable reads it, or a JWT as anycable-go reads it (so the same
//! run can be pointed at either server). Credentials are minted per client at open
//! time, as a browser would carry them; minting costs the generator a few µs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use ferrocable::auth::rails::{cookie_jar, CookieVerifier, DigestMode, MintOptions, RailsSecrets};

/// The kinds of credentials a client can present.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// `?<user-param>=<id>` (ferrocable's `--dev-user-param`).
    Dev,
    /// `Cookie: <cookie-name>=<cookies.signed value>` minted from `--secret-key-base`.
    SignedCookie,
    /// `?<jwt-param>=<HS256 token with claim user_id>` (ferrocable's `--jwt-secret`).
    Jwt,
    /// `?<jwt-param>=<HS256 token with claim ext = {"user_id":"<id>"}>` (anycable-go's
    /// `--jwt_id_key`; its default param is `jid`).
    AnycableJwt,
}

/// Flags choosing the credentials.
#[derive(clap::Args, Clone)]
pub struct AuthArgs {
    /// How clients authenticate.
    #[arg(long, value_enum, default_value_t = AuthKind::Dev)]
    pub auth: AuthKind,
    /// Development auth query parameter carrying the user id (`--auth dev`; empty:
    /// none).
    #[arg(long, default_value = "user_id")]
    pub user_param: String,
    /// The Rails app's secret_key_base (`--auth signed-cookie`).
    #[arg(long, env = "SECRET_KEY_BASE", hide_env_values = true)]
    pub secret_key_base: Option<String>,
    /// The signed cookie's name (`--auth signed-cookie`).
    #[arg(long, default_value = "user_id")]
    pub cookie_name: String,
    /// HMAC secret of the tokens (`--auth jwt|anycable-jwt`).
    #[arg(long, hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Query parameter carrying the token.
    #[arg(long, default_value = "token")]
    pub jwt_param: String,
}

/// Ready-to-use credentials for any user.
#[derive(Clone)]
pub enum Credentials {
    /// Query parameter with the id (or none when the name is empty).
    Dev { param: String },
    /// A signed cookie header.
    Cookie {
        verifier: Box<CookieVerifier>,
        name: String,
    },
    /// A token in the query string.
    Jwt {
        key: jsonwebtoken::EncodingKey,
        param: String,
        anycable: bool,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.write_str(match self {
            Credentials::Dev { .. } => "Credentials::Dev",
            Credentials::Cookie { .. } => "Credentials::Cookie",
            Credentials::Jwt { .. } => "Credentials::Jwt",
        })
    }
}

/// What one client sends: a query string addition and extra header lines.
pub struct Presented {
    /// `name=value` for the query string, or empty.
    pub query: String,
    /// `"Name: value\r\n"` lines.
    pub headers: String,
}

impl Credentials {
    /// Credentials from the flags (keys derived once here).
    ///
    /// # Errors
    /// A missing secret or a bad secret_key_base.
    pub fn from_args(a: &AuthArgs) -> Result<Self, String> {
        Ok(match a.auth {
            AuthKind::Dev => Credentials::Dev {
                param: a.user_param.clone(),
            },
            AuthKind::SignedCookie => {
                let secret = a
                    .secret_key_base
                    .clone()
                    .ok_or("--auth signed-cookie needs --secret-key-base")?;
                let secrets = RailsSecrets {
                    secret_key_base: vec![secret],
                    key_digest: DigestMode::Sha256,
                    ..RailsSecrets::default()
                };
                let verifier = CookieVerifier::new(&secrets).map_err(|e| e.to_string())?;
                Credentials::Cookie {
                    verifier: Box::new(verifier),
                    name: a.cookie_name.clone(),
                }
            }
            AuthKind::Jwt | AuthKind::AnycableJwt => {
                let secret = a
                    .jwt_secret
                    .as_deref()
                    .ok_or("--auth jwt needs --jwt-secret")?;
                Credentials::Jwt {
                    key: jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
                    param: a.jwt_param.clone(),
                    anycable: a.auth == AuthKind::AnycableJwt,
                }
            }
        })
    }

    /// What client `user` presents.
    pub fn present(&self, user: u64) -> Presented {
        match self {
            Credentials::Dev { param } => Presented {
                query: if param.is_empty() {
                    String::new()
                } else {
                    format!("{param}={user}")
                },
                headers: String::new(),
            },
            Credentials::Cookie { verifier, name } => {
                let opts = MintOptions {
                    metadata: true,
                    expires_at: None,
                };
                let value = verifier.mint_signed(name, &json!(user), &opts);
                Presented {
                    query: String::new(),
                    headers: format!("Cookie: {name}={}\r\n", cookie_jar::escape(&value)),
                }
            }
            Credentials::Jwt {
                key,
                param,
                anycable,
            } => {
                let exp = SystemTime::now()
                    .checked_add(Duration::from_secs(3600))
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                let claims: Value = if *anycable {
                    json!({"ext": json!({"user_id": user.to_string()}).to_string(), "exp": exp})
                } else {
                    json!({"user_id": user, "exp": exp})
                };
                let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, key)
                    .unwrap_or_default();
                Presented {
                    query: format!("{param}={token}"),
                    headers: String::new(),
                }
            }
        }
    }
}

/// A Turbo `signed_stream_name` for `stream`, as turbo-rails' verifier writes it
/// (`MessageVerifier` with SHA256 and the JSON serializer) with the raw `key`.
pub fn turbo_signed_name(key: &[u8], stream: &str) -> String {
    ferrocable::auth::rails::message::sign(
        key,
        ferrocable::auth::rails::Digest::Sha256,
        Value::from(stream).to_string().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocable::channels::turbo::StreamNameVerifier;

    #[test]
    fn turbo_names_verify_with_the_same_key() {
        let name = turbo_signed_name(b"bench-key", "chat_bench");
        assert_eq!(
            StreamNameVerifier::with_key(b"bench-key")
                .verify(&name)
                .as_deref(),
            Some("chat_bench")
        );
        assert_eq!(StreamNameVerifier::with_key(b"other").verify(&name), None);
    }

    #[test]
    fn dev_and_jwt_credentials_go_in_the_query() {
        let dev = Credentials::Dev {
            param: "user_id".into(),
        };
        assert_eq!(dev.present(7).query, "user_id=7");
        let jwt = Credentials::from_args(&AuthArgs {
            auth: AuthKind::AnycableJwt,
            user_param: String::new(),
            secret_key_base: None,
            cookie_name: "user_id".into(),
            jwt_secret: Some("s".into()),
            jwt_param: "jid".into(),
        })
        .expect("credentials");
        let p = jwt.present(7);
        assert!(p.query.starts_with("jid=ey"), "{}", p.query);
        assert!(p.headers.is_empty());
    }
}
