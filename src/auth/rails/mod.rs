//! Rails-compatible cookie authentication: read `cookies.signed[...]`,
//! `cookies.encrypted[...]` and the cookie-store session exactly as a Rails app
//! (5.2 → 8.1) would, given its `secret_key_base`.
//!
//! # Using it
//!
//! ```
//! # use ferrocable::auth::rails::*;
//! let secrets = RailsSecrets {
//!     secret_key_base: vec!["a".repeat(128)], // first = current, the rest = old secrets
//!     ..RailsSecrets::default()
//! };
//! let verifier = CookieVerifier::new(&secrets)?; // derives every key once
//! let jar = CookieJar::parse("user_id=garbage; other=1"); // the request's Cookie: header
//! match verifier.signed(&jar, "user_id") {
//!     Ok(value) => println!("user {:?}", user_id_from_value(&value)),
//!     Err(reason) => println!("no cookie login: {reason}"), // a rejection, not a failure
//! }
//! # Ok::<(), RailsConfigError>(())
//! ```
//!
//! Public API:
//! - [`RailsSecrets`]: the app's settings (secrets, PBKDF2 digest, signed-cookie digest,
//!   encrypted-cookie cipher, serializer, salts); defaults are Rails' defaults.
//! - [`CookieVerifier::new`] → [`CookieVerifier::signed`], [`CookieVerifier::encrypted`],
//!   [`CookieVerifier::session_value`] (and [`CookieVerifier::read`] with an explicit
//!   clock and a raw value).
//! - [`CookieRejection`]: why a cookie was not accepted (never contains the cookie).
//! - [`user_id_from_value`]: `1`, `"1"`, `[1]`, `[[1], "salt"]` (Devise/Warden) → `1`.
//! - [`CookieJar`]: the `Cookie:` header parsed with Rack's rules.
//! - Test/benchmark helpers: [`CookieVerifier::mint_signed`],
//!   [`CookieVerifier::mint_encrypted`], [`cookie_jar::escape`].
//!
//! # Invariants
//! - Keys are derived in [`CookieVerifier::new`], never per request.
//! - A value is first authenticated (HMAC / AEAD, constant-time compare), and only then
//!   parsed; an authentic value that fails the purpose/expiry rules is refused without
//!   trying further keys (spec §11).
//! - Nothing an attacker sends can panic or allocate without bound: cookie values over
//!   [`MAX_COOKIE_SIZE`] bytes are refused before any work, and Marshal is a data-only
//!   subset ([`marshal`]).
//! - Devise re-checks the session's password salt against the database; we cannot,
//!   so a session cookie minted before a password change keeps authenticating until
//!   it expires. A caller with database access can compare the salt itself.

pub mod cookie_jar;
pub mod keys;
pub mod marshal;
pub mod message;

use std::time::SystemTime;

use serde_json::Value;

pub use cookie_jar::CookieJar;
pub use keys::{CookieKeys, Digest, DigestMode, Salts};
pub use marshal::MarshalError;
pub use message::Serializer;

/// Rails refuses to write a cookie over 4096 bytes; we refuse to read one.
pub const MAX_COOKIE_SIZE: usize = 4096;

/// Which encrypted-cookie formats to read
/// (`config.action_dispatch.use_authenticated_cookie_encryption` /
/// `encrypted_cookie_cipher`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CipherMode {
    /// AES-256-GCM only.
    Gcm,
    /// Legacy AES-256-CBC + HMAC-SHA1 only (what Rails 5.2/6.0 read in CBC mode).
    Cbc,
    /// Both, by shape of the value: what Rails ≥ 6.1 reads in either mode.
    #[default]
    Auto,
}

/// An app's cookie settings. `Default` gives Rails' defaults with no secret.
/// `Debug` shows how many secrets there are, never their text.
#[derive(Clone, PartialEq, Eq)]
pub struct RailsSecrets {
    /// `secret_key_base` values as strings (not hex-decoded). The first is current;
    /// the others are older secrets still accepted for reading.
    pub secret_key_base: Vec<String>,
    /// PBKDF2 digest: SHA1 for Rails ≤ 6.1 (or 7.x without 7.0 defaults), SHA256 with
    /// `load_defaults "7.0"`+. Default: `Auto` (SHA256, then SHA1).
    pub key_digest: DigestMode,
    /// `config.action_dispatch.signed_cookie_digest`. Default: `Sha1` (Rails' default
    /// in every version). `Auto` accepts both, told apart by the MAC length.
    pub signed_cookie_digest: DigestMode,
    /// Encrypted-cookie formats to accept. Default: `Auto`.
    pub encrypted_cookie_cipher: CipherMode,
    /// `config.action_dispatch.cookies_serializer`. Default: `Json`.
    pub serializer: Serializer,
    /// Cookie salts; default to Rails' salts.
    pub salts: Salts,
}

impl Default for RailsSecrets {
    fn default() -> Self {
        RailsSecrets {
            secret_key_base: Vec::new(),
            key_digest: DigestMode::Auto,
            signed_cookie_digest: DigestMode::Sha1,
            encrypted_cookie_cipher: CipherMode::Auto,
            serializer: Serializer::Json,
            salts: Salts::default(),
        }
    }
}

impl std::fmt::Debug for RailsSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailsSecrets")
            .field(
                "secret_key_base",
                &format_args!("[{} redacted]", self.secret_key_base.len()),
            )
            .field("key_digest", &self.key_digest)
            .field("signed_cookie_digest", &self.signed_cookie_digest)
            .field("encrypted_cookie_cipher", &self.encrypted_cookie_cipher)
            .field("serializer", &self.serializer)
            .field("salts", &self.salts)
            .finish()
    }
}

/// A configuration that cannot work (we are broken, not the client).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RailsConfigError {
    /// No `secret_key_base` was given.
    #[error("secret_key_base is not configured")]
    MissingSecret,
    /// One of the secrets is empty.
    #[error("secret_key_base #{index} is empty")]
    EmptySecret {
        /// Position in [`RailsSecrets::secret_key_base`].
        index: usize,
    },
    /// One of the salts is empty.
    #[error("cookie salt {0:?} is empty")]
    EmptySalt(&'static str),
}

/// Why a cookie was not accepted. An expected outcome, not an error of ours; the
/// `Display` text never contains the cookie value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CookieRejection {
    /// No cookie of that name (or one without a value).
    #[error("cookie not present")]
    Missing,
    /// Longer than [`MAX_COOKIE_SIZE`] bytes.
    #[error("cookie larger than 4096 bytes")]
    TooLarge,
    /// Not in the signed/encrypted format, or bad base64 / envelope.
    #[error("cookie is malformed")]
    Malformed,
    /// The MAC does not match any configured key.
    #[error("cookie signature does not verify")]
    BadSignature,
    /// No configured key decrypts it (or the authentic plaintext is not decryptable).
    #[error("cookie cannot be decrypted")]
    Undecryptable,
    /// Authentic, but written for another cookie name (`pur` ≠ `cookie.<name>`).
    #[error("cookie was issued for another purpose")]
    WrongPurpose,
    /// Authentic, but its embedded expiry has passed.
    #[error("cookie has expired")]
    Expired,
    /// Authentic, but the serializer cannot read the value.
    #[error("cookie value cannot be deserialized")]
    BadPayload,
    /// Authentic Marshal data outside the safe subset.
    #[error("cookie holds unsupported Marshal data: {0}")]
    UnsupportedMarshal(MarshalError),
    /// The session has no value at the requested key path.
    #[error("session has no such key")]
    KeyNotFound,
}

/// Which jar a cookie is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieKind {
    /// `cookies.signed`.
    Signed,
    /// `cookies.encrypted` (also the cookie-store session).
    Encrypted,
}

/// Options for the minting helpers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MintOptions {
    /// Write the `_rails` envelope with purpose `cookie.<name>` (Rails ≥ 6.0 defaults).
    pub metadata: bool,
    /// Expiry written in the envelope (implies an envelope, as in Rails).
    pub expires_at: Option<SystemTime>,
}

/// Verifies Rails cookies with keys derived once from [`RailsSecrets`].
#[derive(Clone, Debug)]
pub struct CookieVerifier {
    /// One key set per (secret, PBKDF2 digest), in the order they are tried.
    keys: Vec<CookieKeys>,
    /// Allowed signed-cookie HMAC digests.
    signed_digests: &'static [Digest],
    /// Encrypted formats accepted.
    cipher: CipherMode,
    /// How the authentic bytes are turned into a value.
    serializer: Serializer,
}

impl CookieVerifier {
    /// Derives every key (PBKDF2, 4 salts × digests × secrets).
    ///
    /// # Errors
    /// [`RailsConfigError`] when there is no secret or a secret/salt is empty.
    pub fn new(cfg: &RailsSecrets) -> Result<Self, RailsConfigError> {
        if cfg.secret_key_base.is_empty() {
            return Err(RailsConfigError::MissingSecret);
        }
        if let Some(index) = cfg.secret_key_base.iter().position(String::is_empty) {
            return Err(RailsConfigError::EmptySecret { index });
        }
        for (name, salt) in [
            ("signed_cookie_salt", &cfg.salts.signed),
            (
                "authenticated_encrypted_cookie_salt",
                &cfg.salts.authenticated_encrypted,
            ),
            ("encrypted_cookie_salt", &cfg.salts.encrypted),
            ("encrypted_signed_cookie_salt", &cfg.salts.encrypted_signed),
        ] {
            if salt.is_empty() {
                return Err(RailsConfigError::EmptySalt(name));
            }
        }
        let keys = cfg
            .secret_key_base
            .iter()
            .flat_map(|s| {
                cfg.key_digest
                    .digests()
                    .iter()
                    .map(|&d| CookieKeys::derive(s, d, &cfg.salts))
            })
            .collect();
        Ok(CookieVerifier {
            keys,
            signed_digests: cfg.signed_cookie_digest.digests(),
            cipher: cfg.encrypted_cookie_cipher,
            serializer: cfg.serializer,
        })
    }

    /// `cookies.signed[name]`, checked against the current time.
    ///
    /// # Errors
    /// A [`CookieRejection`] saying why the cookie is not accepted.
    pub fn signed(&self, jar: &CookieJar, name: &str) -> Result<Value, CookieRejection> {
        let raw = jar.get(name).ok_or(CookieRejection::Missing)?;
        self.read(CookieKind::Signed, name, raw, SystemTime::now())
    }

    /// `cookies.encrypted[name]`, checked against the current time.
    ///
    /// # Errors
    /// A [`CookieRejection`] saying why the cookie is not accepted.
    pub fn encrypted(&self, jar: &CookieJar, name: &str) -> Result<Value, CookieRejection> {
        let raw = jar.get(name).ok_or(CookieRejection::Missing)?;
        self.read(CookieKind::Encrypted, name, raw, SystemTime::now())
    }

    /// Reads the cookie-store session `session_cookie_name` (e.g. `_myapp_session`, an
    /// encrypted cookie with purpose `cookie.<session name>`) and returns the value at
    /// `key_path`, e.g. `&["user_id"]` or `&["warden.user.user.key"]` (one key that
    /// contains dots). An empty path returns the whole session hash.
    ///
    /// # Errors
    /// A [`CookieRejection`]; [`CookieRejection::KeyNotFound`] when the path is absent.
    pub fn session_value(
        &self,
        jar: &CookieJar,
        session_cookie_name: &str,
        key_path: &[&str],
    ) -> Result<Value, CookieRejection> {
        let raw = jar
            .get(session_cookie_name)
            .ok_or(CookieRejection::Missing)?;
        let session = self.read(
            CookieKind::Encrypted,
            session_cookie_name,
            raw,
            SystemTime::now(),
        )?;
        take_path(session, key_path)
    }

    /// Reads one raw (already URL-decoded) cookie value of cookie `name` as of `now`.
    ///
    /// Keys are tried in order (secrets, then PBKDF2 digests); the first key that
    /// authenticates the value decides the outcome.
    ///
    /// # Errors
    /// A [`CookieRejection`] saying why the cookie is not accepted.
    pub fn read(
        &self,
        kind: CookieKind,
        name: &str,
        raw: &[u8],
        now: SystemTime,
    ) -> Result<Value, CookieRejection> {
        if raw.len() > MAX_COOKIE_SIZE {
            return Err(CookieRejection::TooLarge);
        }
        let payload = match kind {
            CookieKind::Signed => self.open_signed(raw)?,
            CookieKind::Encrypted => self.open_encrypted(raw)?,
        };
        let s = message::unwrap_metadata(&payload, name, now)?;
        message::deserialize(&s, self.serializer)
    }

    fn open_signed(&self, raw: &[u8]) -> Result<Vec<u8>, CookieRejection> {
        let parts = message::split_signed(raw, self.signed_digests)?;
        if self
            .keys
            .iter()
            .any(|k| message::mac_matches(&k.signed, &parts))
        {
            message::b64(parts.data)
        } else {
            Err(CookieRejection::BadSignature)
        }
    }

    fn open_encrypted(&self, raw: &[u8]) -> Result<Vec<u8>, CookieRejection> {
        let separators = raw.windows(2).filter(|w| w == b"--").count();
        match (separators, self.cipher) {
            (2, CipherMode::Gcm | CipherMode::Auto) => {
                let parts = message::split_gcm(raw)?;
                self.keys
                    .iter()
                    .find_map(|k| message::gcm_open(&k.gcm, &parts))
                    .ok_or(CookieRejection::Undecryptable)
            }
            (1, CipherMode::Cbc | CipherMode::Auto) => {
                let parts = message::split_signed(raw, &[Digest::Sha1])?;
                for k in &self.keys {
                    match message::cbc_open(&k.cbc, &k.cbc_sign, &parts) {
                        Err(CookieRejection::BadSignature) => continue,
                        other => return other,
                    }
                }
                Err(CookieRejection::BadSignature)
            }
            _ => Err(CookieRejection::Malformed),
        }
    }

    /// **Test/benchmark helper.** Writes `value` as `cookies.signed[name] = value`
    /// would with the current secret and the first PBKDF2 digest of
    /// [`RailsSecrets::key_digest`] (SHA256 under `Auto`): JSON serializer, HMAC with the
    /// first allowed signed-cookie digest. Returns the raw value; use [`cookie_jar::escape`] for a
    /// `Cookie:` header. (JSON is `serde_json`'s compact form, not ActiveSupport's
    /// `<>&`-escaping one, so bytes can differ from Rails for such strings.)
    pub fn mint_signed(&self, name: &str, value: &Value, opts: &MintOptions) -> String {
        let payload = self.mint_payload(name, value, opts);
        let digest = self.signed_digests.first().copied().unwrap_or(Digest::Sha1);
        let key = self.keys.first().map(|k| &k.signed[..]).unwrap_or_default();
        message::sign(key, digest, &payload)
    }

    /// **Test/benchmark helper.** Writes `value` as `cookies.encrypted[name] = value`
    /// would (AES-256-GCM, random IV, current secret, first PBKDF2 digest). Pass the session hash and the
    /// session cookie name to mint a cookie-store session.
    pub fn mint_encrypted(&self, name: &str, value: &Value, opts: &MintOptions) -> String {
        use aes_gcm::aead::{rand_core::RngCore, OsRng};
        let payload = self.mint_payload(name, value, opts);
        let mut iv = [0u8; message::GCM_IV_LEN];
        OsRng.fill_bytes(&mut iv);
        match self.keys.first() {
            Some(k) => message::gcm_seal(&k.gcm, &payload, iv),
            None => String::new(),
        }
    }

    fn mint_payload(&self, name: &str, value: &Value, opts: &MintOptions) -> Vec<u8> {
        let s = value.to_string().into_bytes();
        if opts.metadata || opts.expires_at.is_some() {
            let purpose = format!("cookie.{name}");
            message::wrap_metadata(&s, opts.expires_at, opts.metadata.then_some(&*purpose))
        } else {
            s
        }
    }
}

/// Walks `path` through nested hashes.
fn take_path(mut v: Value, path: &[&str]) -> Result<Value, CookieRejection> {
    for key in path {
        v = match v {
            Value::Object(mut m) => m.remove(*key).ok_or(CookieRejection::KeyNotFound)?,
            _ => return Err(CookieRejection::KeyNotFound),
        };
    }
    Ok(v)
}

/// Extracts a user id from the shapes Rails apps store: `1`, `"1"`, `[1]`,
/// `[[1], "salt"]` (Warden's `warden.user.user.key`) and Devise's remember cookie
/// `[[1], "token", "timestamp"]`. Strings must be plain decimal digits. Anything else
/// (UUID keys, floats, objects) gives `None`.
pub fn user_id_from_value(v: &Value) -> Option<i64> {
    fn scalar(v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s)
                if !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                s.parse().ok()
            }
            _ => None,
        }
    }
    match v {
        Value::Array(a) => match a.as_slice() {
            [one] => scalar(one),
            [Value::Array(key), Value::String(_), ..] => match key.as_slice() {
                [id] => scalar(id),
                _ => None,
            },
            _ => None,
        },
        other => scalar(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::time::Duration;

    /// Reference lab secret (`"a"*32+"b"*32+"c"*32+"d"*32`), public.
    fn lab_secret() -> String {
        ["a", "b", "c", "d"].map(|c| c.repeat(32)).concat()
    }

    /// Spec §9.1 secret.
    const SPEC_SECRET: &str = "569ceeda1d37437198001a03cb05ac9f31b1b368970ed76dff0d100f27b7fa984a037f6cf346f4b39655e414cfbeffa88fffbc2b09d4dcdefd63daed620b8998";

    fn verifier(secret: &str) -> CookieVerifier {
        CookieVerifier::new(&RailsSecrets {
            secret_key_base: vec![secret.to_owned()],
            ..RailsSecrets::default()
        })
        .expect("valid config")
    }

    /// Accepts everything the spec's vectors use: both PBKDF2 digests, both HMAC
    /// digests, both ciphers, JSON and Marshal.
    fn permissive(secret: &str) -> CookieVerifier {
        CookieVerifier::new(&RailsSecrets {
            secret_key_base: vec![secret.to_owned()],
            signed_cookie_digest: DigestMode::Auto,
            serializer: Serializer::Hybrid,
            ..RailsSecrets::default()
        })
        .expect("valid config")
    }

    /// [`permissive`] for the spec secret, derived once (property tests run it a lot).
    fn shared() -> &'static CookieVerifier {
        static V: std::sync::OnceLock<CookieVerifier> = std::sync::OnceLock::new();
        V.get_or_init(|| permissive(SPEC_SECRET))
    }

    fn header(h: &str) -> CookieJar {
        CookieJar::parse(h)
    }

    // ------------------------------------------------------------ reference lab fixtures
    // Values copied from protocol-fixtures/{auth_variants,
    // bad_cookie_signature,no_auth}.jsonl (recorded against Rails 6.1.7.10).

    const LAB_SIGNED_USER_1: &str = "eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik1RPT0iLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--acadec505568632a9396988991be9679b1a80001";
    const LAB_ENCRYPTED_USER_1_HEADER: &str = "user_id=1CEbpPosYSUXOcNYhUqPkG%2BSZtk5C0Fm5W6G%2BfulEStu2j%2Bzq1Jj%2BEQDrTYMf5oU4jHYtDCJ4Vv5pdJwbc08--6ZxwrlqBdXWtRjoh--Z1TooC%2FQOF%2BTKY9ku1d8jw%3D%3D";

    #[test]
    fn fixture_signed_cookie_user_1() {
        let v = verifier(&lab_secret());
        let jar = header(&format!("user_id={LAB_SIGNED_USER_1}"));
        let value = v.signed(&jar, "user_id").expect("accepted by Rails");
        assert_eq!(value, json!(1));
        assert_eq!(user_id_from_value(&value), Some(1));
        // Rails tries signed first: the same cookie is not an encrypted one (it has the
        // shape of a legacy CBC cookie, whose HMAC key differs).
        assert_eq!(
            v.encrypted(&jar, "user_id"),
            Err(CookieRejection::BadSignature)
        );
    }

    #[test]
    fn fixture_encrypted_cookie_user_1() {
        let v = verifier(&lab_secret());
        let jar = header(LAB_ENCRYPTED_USER_1_HEADER);
        assert_eq!(v.encrypted(&jar, "user_id"), Ok(json!(1)));
        assert_eq!(v.signed(&jar, "user_id"), Err(CookieRejection::Malformed));
    }

    #[test]
    fn fixture_unknown_user_999_is_a_valid_cookie() {
        // Rails rejects this connection only because user 999 does not exist.
        let v = verifier(&lab_secret());
        let jar = header("user_id=eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik9UazUiLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--73f017fed88e23c7d06bb4ff475f11dede894b91");
        assert_eq!(v.signed(&jar, "user_id"), Ok(json!(999)));
    }

    #[test]
    fn fixture_refusals() {
        let v = verifier(&lab_secret());
        // bad_sig: zeroed MAC.
        let jar = header("user_id=eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik1RPT0iLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--0000000000000000000000000000000000000000");
        assert_eq!(
            v.signed(&jar, "user_id"),
            Err(CookieRejection::BadSignature)
        );
        // bad_payload: user 2 with user 1's MAC.
        let jar = header("user_id=eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik1nPT0iLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--acadec505568632a9396988991be9679b1a80001");
        assert_eq!(
            v.signed(&jar, "user_id"),
            Err(CookieRejection::BadSignature)
        );
        // encrypted_unescaped_plus: Rack turns `+` into spaces → not base64.
        let jar = header("user_id=1CEbpPosYSUXOcNYhUqPkG+SZtk5C0Fm5W6G+fulEStu2j+zq1Jj+EQDrTYMf5oU4jHYtDCJ4Vv5pdJwbc08--6ZxwrlqBdXWtRjoh--Z1TooC/QOF+TKY9ku1d8jw==");
        assert_eq!(
            v.encrypted(&jar, "user_id"),
            Err(CookieRejection::Malformed)
        );
        // bad_cookie_but_valid_jwt: `user_id=garbage`.
        let jar = header("user_id=garbage");
        assert_eq!(v.signed(&jar, "user_id"), Err(CookieRejection::Malformed));
        assert_eq!(
            v.encrypted(&jar, "user_id"),
            Err(CookieRejection::Malformed)
        );
        // no_auth: no Cookie header at all.
        let jar = header("");
        assert_eq!(v.signed(&jar, "user_id"), Err(CookieRejection::Missing));
        assert_eq!(v.encrypted(&jar, "user_id"), Err(CookieRejection::Missing));
    }

    #[test]
    fn fixture_signed_unescaped_is_accepted() {
        // Base64 of this payload has no `+`, `/` or `%`, so Rack leaves it intact.
        let v = verifier(&lab_secret());
        let jar = header(&format!("user_id={LAB_SIGNED_USER_1}"));
        assert_eq!(v.signed(&jar, "user_id"), Ok(json!(1)));
    }

    // ------------------------------------------------------------ spec §9 vectors

    fn read(
        v: &CookieVerifier,
        kind: CookieKind,
        name: &str,
        raw: &str,
    ) -> Result<Value, CookieRejection> {
        v.read(kind, name, raw.as_bytes(), SystemTime::now())
    }

    #[test]
    fn spec_9_3_signed_vectors() {
        let v = permissive(SPEC_SECRET);
        let s = CookieKind::Signed;
        let d_meta =
            "eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik5EST0iLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19";
        let d_marshal = "eyJfcmFpbHMiOnsibWVzc2FnZSI6IkJBaHBMdz09IiwiZXhwIjpudWxsLCJwdXIiOiJjb29raWUudXNlcl9pZCJ9fQ==";
        let user_id = [
            "NDI=--dbf2c37da727bdbdfeff3ed93fd12ea7f424f2d7".to_owned(),
            format!("{d_meta}--65fe059113080f12a52b038016eec36df830dc88"),
            format!("{d_meta}--b1f58f26a4ac327ba55f053e7f70420bc5afb0b1"),
            format!("{d_meta}--3583eeeb0baeeebfa8abeb2a9fa9c6feb90c686934d20787c4ae3371621addc8"),
            format!("{d_meta}--87c165c4353b850d28451e8e7c015b683672e790820bc8c82c4f1f45be1cdb23"),
            "BAhpLw==--1fa2e13d516fde0e1d738f46352c0d42139610c7".to_owned(),
            format!("{d_marshal}--c8767292e1e2c523f3b52bcb8f2c53d24cdc6ecb"),
            format!("{d_marshal}--6928ed8893d393d73d8914f8cadc9c5ba39b40d0"),
        ];
        for (i, raw) in user_id.iter().enumerate() {
            assert_eq!(read(&v, s, "user_id", raw), Ok(json!(42)), "S{}", i + 1);
        }
        // URL-encoded S1 through the jar.
        let jar = header("user_id=NDI%3D--dbf2c37da727bdbdfeff3ed93fd12ea7f424f2d7");
        assert_eq!(v.signed(&jar, "user_id"), Ok(json!(42)));
        // S2-S5 under another name: wrong purpose. S1 has no envelope: accepted.
        assert_eq!(
            read(&v, s, "other", &user_id[1]),
            Err(CookieRejection::WrongPurpose)
        );
        assert_eq!(read(&v, s, "other", &user_id[0]), Ok(json!(42)));
        // Marshal vectors are refused by a JSON-only app.
        let json_only = CookieVerifier::new(&RailsSecrets {
            secret_key_base: vec![SPEC_SECRET.into()],
            ..RailsSecrets::default()
        })
        .expect("valid config");
        assert_eq!(
            read(&json_only, s, "user_id", &user_id[5]),
            Err(CookieRejection::BadPayload)
        );
        // SHA256 MACs are refused when only SHA1 is configured (the default).
        assert_eq!(
            read(&json_only, s, "user_id", &user_id[3]),
            Err(CookieRejection::Malformed)
        );

        let tok = "eyJfcmFpbHMiOnsibWVzc2FnZSI6IkltRmlZeUk9IiwiZXhwIjpudWxsLCJwdXIiOiJjb29raWUudXNlcl90b2tlbiJ9fQ==";
        for raw in [
            "ImFiYyI=--bee9517144dfe880ffaea6d7bb90a0034053a8c0".to_owned(),
            format!("{tok}--d62dd34657907b95e399880d42196ccd38705ed7"),
            format!("{tok}--ec221307673de3bb35e7ebfe23602b343cdd84ee"),
        ] {
            assert_eq!(read(&v, s, "user_token", &raw), Ok(json!("abc")));
        }
        let sid = "eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik5EST0iLCJleHAiOiIyMDQ1LTAxLTAxVDAwOjAwOjAwLjAwMFoiLCJwdXIiOiJjb29raWUuc2Vzc2lvbl9pZCJ9fQ==";
        let sid52 = "eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik5EST0iLCJleHAiOiIyMDQ1LTAxLTAxVDAwOjAwOjAwLjAwMFoiLCJwdXIiOm51bGx9fQ==--4abaf748da9d23348c0747ee1e9fe9f25f6df1d2";
        let after = SystemTime::UNIX_EPOCH + Duration::from_secs(2_366_841_600);
        let before = after - Duration::from_millis(1);
        for raw in [
            format!("{sid}--7ebfef9d1407a4544d75ff52f3f4358baab509ef"),
            format!("{sid}--c41b1dfc17e708f70064dcef9988059094abb5f4"),
            sid52.to_owned(),
        ] {
            assert_eq!(
                v.read(s, "session_id", raw.as_bytes(), before),
                Ok(json!(42))
            );
            assert_eq!(
                v.read(s, "session_id", raw.as_bytes(), after),
                Err(CookieRejection::Expired)
            );
        }
        // `pur` null (5.2) is accepted under any name.
        assert_eq!(
            v.read(s, "whatever", sid52.as_bytes(), before),
            Ok(json!(42))
        );
    }

    #[test]
    fn spec_9_4_encrypted_vectors() {
        let v = permissive(SPEC_SECRET);
        let e = CookieKind::Encrypted;
        for (id, raw) in [
            ("E1", "laXmpEuC+JmePyYQmPN3wCmp9YRY7Vg71DdtSUXkFXLB6GaP0xVC6iQczRUzelgNuoclLakL3y84n5AM1O7c--AQIDBAUGBwgJCgsM--3PeOfhqLFTQ5kY8j01+HBg=="),
            ("E2", "XjVNNNUWAy6h137aAaHXi4JmGigGGlkj4lvOpqNJV+0H0IUaeF25MyprRbSlEFOYh6PG3T6N/oylwSOKUg9v--AQIDBAUGBwgJCgsM--Ltbcn2tUgoLQWGa+ER9aXw=="),
            ("E3", "2rU=--AQIDBAUGBwgJCgsM--HRNYa6Scm35ZswfhQBOjxw=="),
            ("E4", "ESU=--AQIDBAUGBwgJCgsM--Mgvw2rpbOHki0QvD1qn6Gw=="),
            ("E5", "laXmpEuC+JmePyYQmPN3wCmp9YRY7VQ+9XoDElq8Ty7Bt3CKnUMAvTgFkxV5LUlA784vJ+gVxS9ktYoNhMzIiTa9BQ==--AQIDBAUGBwgJCgsM--dnxxM4gSBToNKVaM1ny8JA=="),
            ("E6", "6o/Q+Q==--AQIDBAUGBwgJCgsM--kgR4TE6nm2Vcnc24XK48KQ=="),
            ("E7", "WXZLaHdBU0FLWEM5Q1hnTVZFNUMzQT09LS1BUUlEQkFVR0J3Z0pDZ3NNRFE0UEVBPT0=--83a28cd88c8c43b5e033eaa2986bab05f69a7e86"),
            ("E8", "S0RaUStlQ2UwY3F2UHZrTXlqN1hDZz09LS1BUUlEQkFVR0J3Z0pDZ3NNRFE0UEVBPT0=--ff8e5f30d25a7ae9caad08aebb35910b2adf19d6"),
        ] {
            assert_eq!(read(&v, e, "user_id", raw), Ok(json!(42)), "{id}");
        }
        // URL-encoded E1 through the jar.
        let jar = header("user_id=laXmpEuC%2BJmePyYQmPN3wCmp9YRY7Vg71DdtSUXkFXLB6GaP0xVC6iQczRUzelgNuoclLakL3y84n5AM1O7c--AQIDBAUGBwgJCgsM--3PeOfhqLFTQ5kY8j01%2BHBg%3D%3D");
        assert_eq!(v.encrypted(&jar, "user_id"), Ok(json!(42)));
        // Cipher restrictions.
        let only = |c| {
            CookieVerifier::new(&RailsSecrets {
                secret_key_base: vec![SPEC_SECRET.into()],
                encrypted_cookie_cipher: c,
                ..RailsSecrets::default()
            })
            .expect("valid config")
        };
        let e3 = "2rU=--AQIDBAUGBwgJCgsM--HRNYa6Scm35ZswfhQBOjxw==";
        let e7 = "WXZLaHdBU0FLWEM5Q1hnTVZFNUMzQT09LS1BUUlEQkFVR0J3Z0pDZ3NNRFE0UEVBPT0=--83a28cd88c8c43b5e033eaa2986bab05f69a7e86";
        assert_eq!(
            read(&only(CipherMode::Gcm), e, "user_id", e3),
            Ok(json!(42))
        );
        assert_eq!(
            read(&only(CipherMode::Gcm), e, "user_id", e7),
            Err(CookieRejection::Malformed)
        );
        assert_eq!(
            read(&only(CipherMode::Cbc), e, "user_id", e7),
            Ok(json!(42))
        );
        assert_eq!(
            read(&only(CipherMode::Cbc), e, "user_id", e3),
            Err(CookieRejection::Malformed)
        );
    }

    #[test]
    fn spec_9_5_session_cookies() {
        let v = permissive(SPEC_SECRET);
        for raw in [
            "laXmpEuC+JmePyYQmPN3wCmp9YRY7XMG13AVPSn7DFXap1DI0xInojsA8gVQIGIYl4QCJc5L9h4Aq7cvu6f7h3CoNlg4djMXE4MLnDzvYjfcGKZQwBzk6ITcxEsbpCyXJX4YQO+TpE2oEaMwmrSyH8GLAd9McR3oSkOpjujuqOC/ZIQGA/82YAQvQfLVq7AZ8OQUNBvgJR0aYT1MCkPetR6dZvLuCb7jMP17SrAEPU6ZFY8gLqzXMgbe0Q3PPqs6m8/HmfA9d54Acz0BMEqYNxk9CoC04tUIso5sjjnzq50E7mHWz+OyxjzBShG/EDzajNmip+x8h4w7w4FZIcQ+S8Xvs7piU3oDsVE=--AQIDBAUGBwgJCgsM--jJ+N0b/aWYyVPrzvHMYT3A==",
            "XjVNNNUWAy6h137aAaHXi4JmGigGGnIe4Ry20s9WTsocn7NdeFrcezV3eqTGSmmNqqDh1VnN172d9QSpPUZIc4qPdAkNP/O/tU7I3WB2/HfCSQqEJSQJa6OT3IQD/zp3fxnGZclUJizDlpcoGKL22/ULHT2JBQuinwCSSzbl/WHQzCTmbJ88TrGphKFhbJNwshw+82Hef2xI4Lyl0aODGeayRVP8XbS7LhyZfUXBb9BeL3shQz9k/tIuOIVfXh4jLQBeEP4CLpHiaLOGGz3Xh5suVq96w5mJHVLzE0UQ4/W1bQxjVBWJppPSS05nvkzh4R1lgwO6R2zFcOCLj8LKazb5YUGmlKNuB6w=--AQIDBAUGBwgJCgsM--g1k5XtKnCRZuo3ji6FhoKA==",
            "laXKs1mY/YXSWjRW16wmgC7/85YD+XRG+DgrUQS5CzWC52rL2kkK8TdR3QBobl1A+c47KfUaySRktYoNhL3UnnGyVmQUd0t5CrNw+Sz3GXmKEcwMq1HJya2L+HU2px+qemcRds6PtlbuVLV07pDSUOqEF/5jGD62UhaKwOK/kLiZL7hmILMPPC9xbajy+IV32rpXDg==--AQIDBAUGBwgJCgsM--DPuKAbXBF3my1eak5ZTNHQ==",
        ] {
            let jar = header(&format!("_myapp_session={}", cookie_jar::escape(raw)));
            let key = v
                .session_value(&jar, "_myapp_session", &["warden.user.user.key"])
                .expect("session accepted");
            assert_eq!(key, json!([[42], "$2a$12$abcdefghijklmnopqrstuv"]));
            assert_eq!(user_id_from_value(&key), Some(42));
            assert_eq!(
                v.session_value(&jar, "_myapp_session", &["session_id"]),
                Ok(json!("3f1c0a6b9e2d4c8f7a5b1e0d9c8b7a6f"))
            );
            assert_eq!(
                v.session_value(&jar, "_myapp_session", &["user_id"]),
                Err(CookieRejection::KeyNotFound)
            );
            assert_eq!(
                v.session_value(&jar, "_myapp_session", &["session_id", "deeper"]),
                Err(CookieRejection::KeyNotFound)
            );
            assert_eq!(
                v.session_value(&jar, "_other_session", &["session_id"]),
                Err(CookieRejection::Missing)
            );
        }
    }

    // ------------------------------------------------------------ generated vectors

    fn mode(s: &Value) -> DigestMode {
        match s.as_str() {
            Some("sha1") => DigestMode::Sha1,
            Some("sha256") => DigestMode::Sha256,
            other => panic!("unknown digest {other:?}"),
        }
    }

    /// Every cookie in vectors.json (written and read back by the real Rails 6.1 jar):
    /// we accept exactly what Rails accepted, with the same value.
    #[test]
    fn generated_vectors_match_rails() {
        let doc: Value =
            serde_json::from_str(include_str!("vectors/vectors.json")).expect("valid JSON");
        let cases = doc["cases"].as_array().expect("cases");
        let mut checked = 0;
        for case in cases {
            let id = case["id"].as_str().unwrap_or("?");
            for r in case["reads"].as_array().expect("reads") {
                let cfg = &r["config"];
                let secrets = cfg["secrets"]
                    .as_array()
                    .expect("secrets")
                    .iter()
                    .map(|s| s.as_str().expect("secret").to_owned())
                    .collect();
                let v = CookieVerifier::new(&RailsSecrets {
                    secret_key_base: secrets,
                    key_digest: mode(&cfg["key_digest"]),
                    signed_cookie_digest: mode(&cfg["signed_digest"]),
                    // Rails 6.1 reads GCM and CBC in either mode.
                    encrypted_cookie_cipher: CipherMode::Auto,
                    serializer: match cfg["serializer"].as_str() {
                        Some("json") => Serializer::Json,
                        Some("marshal") => Serializer::Marshal,
                        Some("hybrid") => Serializer::Hybrid,
                        other => panic!("unknown serializer {other:?}"),
                    },
                    salts: Salts::default(),
                })
                .expect("valid config");
                let jar = header(r["header"].as_str().expect("header"));
                let name = r["name"].as_str().expect("name");
                let got = match case["kind"].as_str() {
                    Some("signed") => v.signed(&jar, name),
                    Some("encrypted") => v.encrypted(&jar, name),
                    other => panic!("unknown kind {other:?}"),
                };
                let want = &r["expect"];
                if want.is_null() {
                    assert!(
                        got.is_err(),
                        "{id} read as {name}: Rails refused, we got {got:?}"
                    );
                } else {
                    assert_eq!(got.as_ref(), Ok(want), "{id} read as {name}");
                    if let Some(path) = case["path"].as_array() {
                        let path: Vec<&str> = path.iter().filter_map(Value::as_str).collect();
                        let sv = v.session_value(&jar, name, &path).expect("session path");
                        assert_eq!(user_id_from_value(&sv), case["user_id"].as_i64(), "{id}");
                    }
                }
                checked += 1;
            }
        }
        assert!(checked >= 70, "only {checked} reads checked");
    }

    // ------------------------------------------------------------ refusals

    #[test]
    fn tampering_and_garbage_are_refused() {
        let v = verifier(&lab_secret());
        let s = CookieKind::Signed;
        let e = CookieKind::Encrypted;
        let good = LAB_SIGNED_USER_1;
        assert_eq!(read(&v, s, "user_id", good), Ok(json!(1)));
        // Flip one MAC character.
        let mut t = good.to_owned();
        t.pop();
        t.push('0');
        assert_eq!(
            read(&v, s, "user_id", &t),
            Err(CookieRejection::BadSignature)
        );
        // Wrong cookie name → wrong purpose.
        assert_eq!(
            read(&v, s, "admin_id", good),
            Err(CookieRejection::WrongPurpose)
        );
        // Truncated.
        assert_eq!(
            read(&v, s, "user_id", &good[..good.len() - 1]),
            Err(CookieRejection::Malformed)
        );
        assert_eq!(
            read(&v, s, "user_id", &good[1..]),
            Err(CookieRejection::BadSignature)
        );
        // Not base64 (but correctly signed over the garbage).
        let keys = CookieKeys::derive(&lab_secret(), Digest::Sha1, &Salts::default());
        let mac = message::hex_mac(&keys.signed, Digest::Sha1, b"not*base64");
        assert_eq!(
            read(&v, s, "user_id", &format!("not*base64--{mac}")),
            Err(CookieRejection::Malformed)
        );
        // Oversized.
        let big = format!("{}--{}", "A".repeat(MAX_COOKIE_SIZE), "0".repeat(40));
        assert_eq!(read(&v, s, "user_id", &big), Err(CookieRejection::TooLarge));
        assert_eq!(read(&v, e, "user_id", &big), Err(CookieRejection::TooLarge));
        // Random bytes.
        assert!(v
            .read(
                s,
                "user_id",
                &[0xff, 0x00, 0x2d, 0x2d, 0x41],
                SystemTime::now()
            )
            .is_err());
        assert!(v
            .read(e, "user_id", &[0x2d, 0x2d, 0x2d, 0x2d], SystemTime::now())
            .is_err());

        // Encrypted: flip a ciphertext byte, swap the tag, truncate.
        let jar = header(LAB_ENCRYPTED_USER_1_HEADER);
        let raw = std::str::from_utf8(jar.get("user_id").expect("present"))
            .expect("ascii")
            .to_owned();
        assert_eq!(read(&v, e, "user_id", &raw), Ok(json!(1)));
        let flipped = if raw.starts_with('A') {
            raw.replacen('A', "B", 1)
        } else {
            format!("A{}", &raw[1..])
        };
        assert_eq!(
            read(&v, e, "user_id", &flipped),
            Err(CookieRejection::Undecryptable)
        );
        assert_eq!(
            read(&v, e, "user_id", &raw[..raw.len() - 4]),
            Err(CookieRejection::Malformed)
        );
        assert_eq!(
            read(&v, e, "other", &raw),
            Err(CookieRejection::WrongPurpose)
        );
        // Another app's secret.
        let stranger = verifier(SPEC_SECRET);
        assert_eq!(
            read(&stranger, e, "user_id", &raw),
            Err(CookieRejection::Undecryptable)
        );
        assert_eq!(
            read(&stranger, s, "user_id", good),
            Err(CookieRejection::BadSignature)
        );
    }

    #[test]
    fn mint_roundtrip_expiry_and_rotation() {
        let old = verifier("old-secret");
        let rotated = CookieVerifier::new(&RailsSecrets {
            secret_key_base: vec![lab_secret(), "old-secret".into()],
            ..RailsSecrets::default()
        })
        .expect("valid config");
        let current_only = verifier(&lab_secret());
        let opts = MintOptions {
            metadata: true,
            expires_at: None,
        };
        let s = old.mint_signed("user_id", &json!(5), &opts);
        let e = old.mint_encrypted("user_id", &json!(5), &opts);
        let now = SystemTime::now();
        for (kind, raw) in [(CookieKind::Signed, &s), (CookieKind::Encrypted, &e)] {
            assert_eq!(old.read(kind, "user_id", raw.as_bytes(), now), Ok(json!(5)));
            assert_eq!(
                rotated.read(kind, "user_id", raw.as_bytes(), now),
                Ok(json!(5))
            );
            assert!(current_only
                .read(kind, "user_id", raw.as_bytes(), now)
                .is_err());
        }
        // Expiry.
        let soon = MintOptions {
            metadata: true,
            expires_at: Some(now + Duration::from_secs(60)),
        };
        let s = current_only.mint_signed("user_id", &json!(5), &soon);
        let e = current_only.mint_encrypted("user_id", &json!(5), &soon);
        for (kind, raw) in [(CookieKind::Signed, &s), (CookieKind::Encrypted, &e)] {
            assert_eq!(
                current_only.read(kind, "user_id", raw.as_bytes(), now),
                Ok(json!(5))
            );
            let later = now + Duration::from_secs(61);
            assert_eq!(
                current_only.read(kind, "user_id", raw.as_bytes(), later),
                Err(CookieRejection::Expired)
            );
        }
        // Without metadata: no envelope, any name reads it.
        let plain = current_only.mint_signed("user_id", &json!(5), &MintOptions::default());
        assert_eq!(
            current_only.read(CookieKind::Signed, "x", plain.as_bytes(), now),
            Ok(json!(5))
        );
    }

    #[test]
    fn sha256_signed_digest_minting() {
        let v = CookieVerifier::new(&RailsSecrets {
            secret_key_base: vec![lab_secret()],
            key_digest: DigestMode::Sha256,
            signed_cookie_digest: DigestMode::Sha256,
            ..RailsSecrets::default()
        })
        .expect("valid config");
        let raw = v.mint_signed(
            "user_id",
            &json!(8),
            &MintOptions {
                metadata: true,
                expires_at: None,
            },
        );
        assert_eq!(raw.rsplit("--").next().map(str::len), Some(64));
        assert_eq!(
            v.read(
                CookieKind::Signed,
                "user_id",
                raw.as_bytes(),
                SystemTime::now()
            ),
            Ok(json!(8))
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let cfg = RailsSecrets {
            secret_key_base: vec![lab_secret()],
            ..RailsSecrets::default()
        };
        assert!(!format!("{cfg:?}").contains("aaaa"));
        assert!(!format!("{:?}", verifier(&lab_secret())).contains("aaaa"));
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            CookieVerifier::new(&RailsSecrets::default()).err(),
            Some(RailsConfigError::MissingSecret)
        );
        let cfg = RailsSecrets {
            secret_key_base: vec!["x".into(), String::new()],
            ..RailsSecrets::default()
        };
        assert_eq!(
            CookieVerifier::new(&cfg).err(),
            Some(RailsConfigError::EmptySecret { index: 1 })
        );
        let mut cfg = RailsSecrets {
            secret_key_base: vec!["x".into()],
            ..RailsSecrets::default()
        };
        cfg.salts.signed.clear();
        assert!(matches!(
            CookieVerifier::new(&cfg),
            Err(RailsConfigError::EmptySalt(_))
        ));
    }

    #[test]
    fn rejection_text_never_holds_the_value() {
        let v = verifier(&lab_secret());
        let secretish = "c2VjcmV0LXZhbHVl--0123456789abcdef0123456789abcdef01234567";
        let r = read(&v, CookieKind::Signed, "user_id", secretish).expect_err("refused");
        assert!(!r.to_string().contains("c2VjcmV0"));
        assert!(!format!("{r:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn user_id_shapes() {
        assert_eq!(user_id_from_value(&json!(1)), Some(1));
        assert_eq!(user_id_from_value(&json!("1")), Some(1));
        assert_eq!(user_id_from_value(&json!([1])), Some(1));
        assert_eq!(user_id_from_value(&json!(["7"])), Some(7));
        assert_eq!(user_id_from_value(&json!([[1], "salt"])), Some(1));
        assert_eq!(
            user_id_from_value(&json!([[1], "tok", "1700000000.1"])),
            Some(1)
        );
        for bad in [
            json!(null),
            json!(1.5),
            json!(""),
            json!("1a"),
            json!("-1"),
            json!(" 1"),
            json!("99999999999999999999"),
            json!([]),
            json!([1, 2]),
            json!([[1, 2], "salt"]),
            json!([["uuid-like"], "salt"]),
            json!({"id": 1}),
        ] {
            assert_eq!(user_id_from_value(&bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn read_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..600), name in "[a-z_]{0,12}") {
            let v = shared();
            let _ = v.read(CookieKind::Signed, &name, &raw, SystemTime::now());
            let _ = v.read(CookieKind::Encrypted, &name, &raw, SystemTime::now());
        }

        #[test]
        fn structured_garbage_never_panics(
            a in "[A-Za-z0-9+/=]{0,80}", b in "[A-Za-z0-9+/=]{0,24}", c in "[A-Za-z0-9+/=]{0,30}",
            hexmac in "[0-9a-f]{40}",
        ) {
            let v = shared();
            for raw in [format!("{a}--{b}--{c}"), format!("{a}--{hexmac}"), format!("{a}--{b}")] {
                prop_assert!(v.read(CookieKind::Signed, "user_id", raw.as_bytes(), SystemTime::now()).is_err());
                prop_assert!(v.read(CookieKind::Encrypted, "user_id", raw.as_bytes(), SystemTime::now()).is_err());
            }
        }

        #[test]
        fn session_header_never_panics(h in ".{0,300}") {
            let v = shared();
            let jar = CookieJar::parse(&h);
            let _ = v.session_value(&jar, "_myapp_session", &["warden.user.user.key"]);
        }

        #[test]
        fn user_id_never_panics(s in ".{0,30}", n in any::<i64>()) {
            let _ = user_id_from_value(&json!([[s.clone()], s]));
            prop_assert_eq!(user_id_from_value(&json!([[n], "salt"])), Some(n));
        }
    }
}
