//! JWT bearer tokens (`?token=` on the cable URL), checked like the reference app's
//! `JWT.decode(token, secret, true, algorithm: "HS256")` (ruby-jwt 2.5).
//!
//! # Invariants
//! - The accepted algorithm is fixed by [`JwtConfig::algorithm`]; the token header can
//!   only be refused by it, never choose it. `alg: none` and algorithm confusion (an
//!   HS256 token against an RS256/ES256 public key) are refused before any signature
//!   work.
//! - `exp`/`nbf` are checked only when present, with ruby-jwt's rules: expired when
//!   `exp ≤ now − leeway`, not yet valid when `nbf > now + leeway` (whole seconds).
//!   Unlike ruby-jwt, a non-numeric `exp`/`nbf` is refused instead of being coerced
//!   with `to_i`.
//! - Tokens longer than [`MAX_TOKEN_LEN`] are refused before decoding.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::rails::user_id_from_value;

/// Longest token we look at.
pub const MAX_TOKEN_LEN: usize = 8192;

/// The one algorithm a verifier accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret (the reference app's choice).
    #[default]
    Hs256,
    /// HMAC-SHA384 with a shared secret.
    Hs384,
    /// HMAC-SHA512 with a shared secret.
    Hs512,
    /// RSASSA-PKCS1-v1_5 SHA-256 with an RSA public key (PEM).
    Rs256,
    /// ECDSA P-256 SHA-256 with an EC public key (PEM).
    Es256,
}

impl JwtAlgorithm {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Hs384 => "HS384",
            JwtAlgorithm::Hs512 => "HS512",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
        }
    }

    fn to_jwt(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Hs384 => Algorithm::HS384,
            JwtAlgorithm::Hs512 => Algorithm::HS512,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// JWT settings.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// The only algorithm accepted.
    pub algorithm: JwtAlgorithm,
    /// HS*: the shared secret (raw bytes, e.g. `ENV["JWT_SECRET"]`);
    /// RS256/ES256: the public key in PEM.
    pub key: Vec<u8>,
    /// Claim holding the user id. Default `user_id`.
    pub user_id_claim: String,
    /// Clock skew allowed on `exp`/`nbf`, in seconds. Default 0 (ruby-jwt's default).
    pub leeway_secs: u64,
    /// When set, `aud` must contain this value.
    pub audience: Option<String>,
    /// When set, `iss` must equal this value.
    pub issuer: Option<String>,
}

impl JwtConfig {
    /// HS256 with `secret` and the defaults above.
    pub fn hs256(secret: impl Into<Vec<u8>>) -> Self {
        JwtConfig {
            algorithm: JwtAlgorithm::Hs256,
            key: secret.into(),
            user_id_claim: "user_id".to_owned(),
            leeway_secs: 0,
            audience: None,
            issuer: None,
        }
    }
}

impl std::fmt::Debug for JwtConfig {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("algorithm", &self.algorithm)
            .field("user_id_claim", &self.user_id_claim)
            .field("leeway_secs", &self.leeway_secs)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// A JWT configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// HS* with an empty secret.
    #[error("JWT secret is empty")]
    EmptySecret,
    /// The PEM key could not be read for the configured algorithm.
    #[error("invalid JWT verification key for {algorithm}")]
    BadKey {
        /// The configured algorithm.
        algorithm: &'static str,
        /// What `jsonwebtoken` reported.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// `user_id_claim` is empty.
    #[error("JWT user id claim name is empty")]
    EmptyClaim,
}

/// Why a token was not accepted. An expected outcome; never contains the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtRejection {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token too long")]
    TooLarge,
    /// Not three base64url segments with JSON header/claims.
    #[error("token is malformed")]
    Malformed,
    /// The header names another algorithm (including `none`).
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not valid yet")]
    NotYetValid,
    /// `exp` or `nbf` is not a number.
    #[error("token has a non-numeric exp/nbf claim")]
    BadClaim,
    /// `aud` does not match the configured audience.
    #[error("token audience does not match")]
    WrongAudience,
    /// `iss` does not match the configured issuer.
    #[error("token issuer does not match")]
    WrongIssuer,
}

/// Verifies tokens with one fixed algorithm and key, prepared once.
pub struct JwtVerifier {
    /// Decoding key for [`JwtVerifier::algorithm`].
    key: DecodingKey,
    /// `jsonwebtoken` settings: signature, algorithm list, aud/iss; time claims are
    /// ours (see the module invariants).
    validation: Validation,
    /// The accepted algorithm.
    algorithm: JwtAlgorithm,
    /// Claim holding the user id.
    user_id_claim: String,
    /// Allowed skew in seconds.
    leeway: i64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.algorithm)
            .field("user_id_claim", &self.user_id_claim)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Prepares the key and validation settings.
    ///
    /// # Errors
    /// [`JwtConfigError`] for an empty secret/claim or an unreadable PEM key.
    pub fn new(cfg: &JwtConfig) -> Result<Self, JwtConfigError> {
        if cfg.user_id_claim.is_empty() {
            return Err(JwtConfigError::EmptyClaim);
        }
        let bad_key = |source| JwtConfigError::BadKey {
            algorithm: cfg.algorithm.name(),
            source,
        };
        let key = match cfg.algorithm {
            JwtAlgorithm::Hs256 | JwtAlgorithm::Hs384 | JwtAlgorithm::Hs512 => {
                if cfg.key.is_empty() {
                    return Err(JwtConfigError::EmptySecret);
                }
                DecodingKey::from_secret(&cfg.key)
            }
            JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(&cfg.key).map_err(bad_key)?,
            JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(&cfg.key).map_err(bad_key)?,
        };
        let mut validation = Validation::new(cfg.algorithm.to_jwt());
        validation.algorithms = vec![cfg.algorithm.to_jwt()];
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        match &cfg.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &cfg.issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(JwtVerifier {
            key,
            validation,
            algorithm: cfg.algorithm,
            user_id_claim: cfg.user_id_claim.clone(),
            leeway: i64::try_from(cfg.leeway_secs).unwrap_or(i64::MAX),
        })
    }

    /// Verifies `token` against the current time and returns its claims.
    ///
    /// # Errors
    /// A [`JwtRejection`] saying why the token is not accepted.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, JwtRejection> {
        self.verify_at(token, SystemTime::now())
    }

    /// Verifies `token` as of `now`.
    ///
    /// # Errors
    /// A [`JwtRejection`] saying why the token is not accepted.
    pub fn verify_at(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Map<String, Value>, JwtRejection> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtRejection::TooLarge);
        }
        self.check_header(token)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => JwtRejection::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                JwtRejection::AlgorithmNotAllowed
            }
            ErrorKind::InvalidAudience => JwtRejection::WrongAudience,
            ErrorKind::InvalidIssuer => JwtRejection::WrongIssuer,
            ErrorKind::ExpiredSignature => JwtRejection::Expired,
            ErrorKind::ImmatureSignature => JwtRejection::NotYetValid,
            _ => JwtRejection::Malformed,
        })?;
        let claims = data.claims;
        let now = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(_) => 0,
        };
        if let Some(exp) = claims.get("exp") {
            if ruby_to_i(exp)? <= now.saturating_sub(self.leeway) {
                return Err(JwtRejection::Expired);
            }
        }
        if let Some(nbf) = claims.get("nbf") {
            if ruby_to_i(nbf)? > now.saturating_add(self.leeway) {
                return Err(JwtRejection::NotYetValid);
            }
        }
        Ok(claims)
    }

    /// The user id in the configured claim (see [`user_id_from_value`] for the shapes).
    pub fn user_id(&self, claims: &Map<String, Value>) -> Option<i64> {
        claims.get(&self.user_id_claim).and_then(user_id_from_value)
    }

    /// The accepted algorithm.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// The header must be a JSON object whose `alg` is exactly ours.
    fn check_header(&self, token: &str) -> Result<(), JwtRejection> {
        let header = token.split('.').next().unwrap_or_default();
        let bytes = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| JwtRejection::Malformed)?;
        let Ok(Value::Object(h)) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(JwtRejection::Malformed);
        };
        match h.get("alg") {
            Some(Value::String(a)) if a == self.algorithm.name() => Ok(()),
            _ => Err(JwtRejection::AlgorithmNotAllowed),
        }
    }
}

/// A numeric time claim truncated to whole seconds (Ruby's `Numeric#to_i`).
fn ruby_to_i(v: &Value) -> Result<i64, JwtRejection> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc() as i64)
            })
            .ok_or(JwtRejection::BadClaim),
        _ => Err(JwtRejection::BadClaim),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use proptest::prelude::*;
    use serde_json::json;
    use std::time::Duration;

    // Tokens from protocol-fixtures/auth_variants.jsonl (the reference lab's recording)
    // (ruby-jwt 2.5.0, secret `refapp-jwt-secret`, recorded 2026-11-28T02:14:06Z).
    const VALID: &str =
        "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.oR4WNDTKjoCiYjWk7luSh_c4d1moIdq5mm3X4eDGGDc";
    const BAD_SIGNATURE: &str =
        "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const EXPIRED: &str = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoyLCJleHAiOjE3OTU4MzE5Mzl9.TvHDa1Skz7xVuZ-8zhKVW5Y_OjgJki9HuloZf_ibWHo";
    const ALG_NONE: &str = "eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoxfQ.";
    const SECRET: &[u8] = b"refapp-jwt-secret";
    /// When the fixture was recorded.
    const RECORDED: u64 = 1_795_832_046;

    // Test-only keys, generated with `openssl genpkey` for these tests.
    const RSA_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCzx9amPUhzqT+D
SGncjNfUhyiR7Yfv8m416JDL13YrpTHDNYlKvticuJPD2yJLIywa/hrkOXKWrwDU
K4YJQu56BxpXcr+HYuVF3Z9MdKLCJEX1puzsaOAjRT4j7qnAD0BjiQfF1TP2Es3a
t8KVAZKz0sHtcQiMYbCBUcEamdSnPwghBwTHGinIm3oBfzYPNnt+0EHDnAnFRGwX
UDTKGamuqeoXJH3jWUNoj4Df/D+FElEbb0gM0cKkVNmXR7EVVDNRNVcTbaC2q/1M
PCgwYE0OTuSLBhuXUFAfDFbj8W0e7WrlSxEDRPBDl1D8jzEMjSrd2/5NreRTm95M
4oEkHL6hAgMBAAECggEACV8lJlyoITdfvd/m0ijEENUhh/HiQIovtT8JWpxBvGa2
dbRIaDgTTKAmkR15koHOiR2umIUSHx7CTqJyMJtnmRQztalKqKu+wz9D+uqoQrHn
X7XdleP7AyZXO0JJYQn/05skvOsEnr2TiOTuuhvEjPvd63Bqqf68V7wY8o0K/n4p
NAbfv54HCsUz/iKbK0UCxzVRiF3sDVezHaUVNMg+bCesidvDPaMJY2YUMVO47p5T
7nqlbRDNB1EUGb4bqvm896lvSHF3E02QCB/5l8xdDAUnfo5LYGV6yEyFv3YnQlRQ
0yOUoespmziHnANXMTfCrn9RTUPVMj0Fwghmz7xczQKBgQDruOHxtUn4aP/3DzXM
LQjDBTZOG+iNDK0y2inPRJdb3J8XDr59m76CvlR3yim6FNrV6qfQopluzPR4nVs2
1uUQNLlpbsGbzIWtkXOzRO6o0jbIagMgRzoK85nh5CXihLmOvCLsM9kgP0YBbN+p
xFyEA6ROpBw+Zy+eNEfrirRnrwKBgQDDPwAMg3SGI53m9UoKTUVfCYSD2hkEO2ta
TxglMCzdHVgHi/XRN1KwZYfsbhN+pM0O+aJhlKprj8gICvfWNO/g1upCrXusPCec
Nflo7Bi7NfWgaNB7LHQ/yoJqHCcOkz2XAy9N/JJjqIm/uNQH7VLN5hUIHa6JxJdp
p8qBAc2CrwKBgDC+WnqQ8mrby5JbItTFuzoYqdIdE0mXhXkug9bIaEQmqv8pnVp8
CjkfAniC5X4FMftqOql59iBjYWpPn70HUva28GBM9twwvrPVkAdSCcf/MDThNyRF
lksNdJSxiOP+biCF5vLRBeUVMHS6/sUsRbVGy4M3jF+bFs2wIe8jD4shAoGBAJTg
1DO2hULHo975yTRjyXL3efFke9DrUiexyhKJUpxkhLx0b8PRsJ7LPML/CKR4G9jA
Z56K0wxjvb7MRkEzanqCxmyDhptF31pRGdZ0uUL/mUVwxxA1TItb6ufogauugLdG
+Wo5HpMZb7gewqcswwg32m+u2mk428/33wVSD5gHAoGAXP8wPTa9jXXP7p9jRWlE
m0qlliV9qdFOWRN2KwtFUrJquJ/5VQcSPSncQOqBujtO+Z/THCXHCJmwfK2R4WT/
bPsS667Qi2qf0BTZPDKcnE2QTJNIaEjL0rINvDx87olPN7HxUyA7a3JcFOIGWAyz
ecVZ1bcwdMVdF0Vjr7XWV28=
-----END PRIVATE KEY-----";
    const RSA_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAs8fWpj1Ic6k/g0hp3IzX
1Icoke2H7/JuNeiQy9d2K6UxwzWJSr7YnLiTw9siSyMsGv4a5Dlylq8A1CuGCULu
egcaV3K/h2LlRd2fTHSiwiRF9abs7GjgI0U+I+6pwA9AY4kHxdUz9hLN2rfClQGS
s9LB7XEIjGGwgVHBGpnUpz8IIQcExxopyJt6AX82DzZ7ftBBw5wJxURsF1A0yhmp
rqnqFyR941lDaI+A3/w/hRJRG29IDNHCpFTZl0exFVQzUTVXE22gtqv9TDwoMGBN
Dk7kiwYbl1BQHwxW4/FtHu1q5UsRA0TwQ5dQ/I8xDI0q3dv+Ta3kU5veTOKBJBy+
oQIDAQAB
-----END PUBLIC KEY-----";
    const EC_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghGlq2AfLKQvX8WZO
drHqy2So88DoZTLXgZRZegQgPkmhRANCAASMBfD3nKFVBqsDtqtGxxn8cT8rkavS
UMn49CzL+HSpwYWxHbjm5mO/TTXIBJEz84mhozGsNdmYVmu28J/pSZhx
-----END PRIVATE KEY-----";
    const EC_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEjAXw95yhVQarA7arRscZ/HE/K5Gr
0lDJ+PQsy/h0qcGFsR245uZjv001yASRM/OJoaMxrDXZmFZrtvCf6UmYcQ==
-----END PUBLIC KEY-----";

    fn hs256() -> JwtVerifier {
        JwtVerifier::new(&JwtConfig::hs256(SECRET)).expect("valid config")
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn now_secs() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    fn mint(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        encode(&Header::new(alg), claims, key).expect("encodes")
    }

    #[test]
    fn fixture_tokens() {
        let v = hs256();
        let claims = v.verify(VALID).expect("valid");
        assert_eq!(v.user_id(&claims), Some(1));
        assert_eq!(v.verify(BAD_SIGNATURE), Err(JwtRejection::BadSignature));
        assert_eq!(
            v.verify_at(EXPIRED, at(RECORDED)),
            Err(JwtRejection::Expired)
        );
        assert_eq!(v.verify(EXPIRED), Err(JwtRejection::Expired));
        // One second before its exp (1795831939) the same token was fine.
        let early = v
            .verify_at(EXPIRED, at(1_795_831_938))
            .expect("not yet expired");
        assert_eq!(v.user_id(&early), Some(2));
        assert_eq!(v.verify(ALG_NONE), Err(JwtRejection::AlgorithmNotAllowed));
        assert_eq!(v.verify("garbage"), Err(JwtRejection::Malformed));
        assert_eq!(v.verify(""), Err(JwtRejection::Malformed));
    }

    #[test]
    fn hmac_family() {
        let key = EncodingKey::from_secret(SECRET);
        for (alg, ours) in [
            (Algorithm::HS256, JwtAlgorithm::Hs256),
            (Algorithm::HS384, JwtAlgorithm::Hs384),
            (Algorithm::HS512, JwtAlgorithm::Hs512),
        ] {
            let v = JwtVerifier::new(&JwtConfig {
                algorithm: ours,
                ..JwtConfig::hs256(SECRET)
            })
            .expect("config");
            let t = mint(alg, &key, &json!({"user_id": "12"}));
            let claims = v.verify(&t).expect("valid");
            assert_eq!(v.user_id(&claims), Some(12));
            // Any other HMAC algorithm is refused, even with the right secret.
            for other in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                if other != alg {
                    let t = mint(other, &key, &json!({"user_id": 1}));
                    assert_eq!(v.verify(&t), Err(JwtRejection::AlgorithmNotAllowed));
                }
            }
        }
    }

    #[test]
    fn rs256_es256_and_confusion() {
        let rs = JwtVerifier::new(&JwtConfig {
            algorithm: JwtAlgorithm::Rs256,
            key: RSA_PUBLIC.into(),
            ..JwtConfig::hs256("")
        })
        .expect("rsa config");
        let es = JwtVerifier::new(&JwtConfig {
            algorithm: JwtAlgorithm::Es256,
            key: EC_PUBLIC.into(),
            ..JwtConfig::hs256("")
        })
        .expect("ec config");
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa key");
        let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("ec key");
        let claims = json!({"user_id": 3, "exp": now_secs() + 60});
        let t_rs = mint(Algorithm::RS256, &rsa, &claims);
        let t_es = mint(Algorithm::ES256, &ec, &claims);
        assert_eq!(rs.verify(&t_rs).ok().and_then(|c| rs.user_id(&c)), Some(3));
        assert_eq!(es.verify(&t_es).ok().and_then(|c| es.user_id(&c)), Some(3));
        assert_eq!(rs.verify(&t_es), Err(JwtRejection::AlgorithmNotAllowed));
        assert_eq!(es.verify(&t_rs), Err(JwtRejection::AlgorithmNotAllowed));
        // Algorithm confusion: HS256 signed with the public key as the HMAC secret.
        for (v, pem) in [(&rs, RSA_PUBLIC), (&es, EC_PUBLIC)] {
            let forged = mint(
                Algorithm::HS256,
                &EncodingKey::from_secret(pem.as_bytes()),
                &claims,
            );
            assert_eq!(v.verify(&forged), Err(JwtRejection::AlgorithmNotAllowed));
        }
        // A tampered payload keeps the header but breaks the signature.
        let mut parts: Vec<&str> = t_rs.split('.').collect();
        parts[1] = "eyJ1c2VyX2lkIjo0fQ";
        assert_eq!(rs.verify(&parts.join(".")), Err(JwtRejection::BadSignature));
    }

    #[test]
    fn time_claims_like_ruby_jwt() {
        let v = hs256();
        let key = EncodingKey::from_secret(SECRET);
        let t = |c: Value| mint(Algorithm::HS256, &key, &c);
        let now = 2_000_000_000u64;
        let n = now as i64;
        assert!(v
            .verify_at(&t(json!({"user_id": 1, "exp": n + 1})), at(now))
            .is_ok());
        assert_eq!(
            v.verify_at(&t(json!({"user_id": 1, "exp": n})), at(now)),
            Err(JwtRejection::Expired)
        );
        assert!(v
            .verify_at(
                &t(json!({"user_id": 1, "exp": (n + 1) as f64 + 0.5})),
                at(now)
            )
            .is_ok());
        assert_eq!(
            v.verify_at(&t(json!({"user_id": 1, "exp": "later"})), at(now)),
            Err(JwtRejection::BadClaim)
        );
        assert_eq!(
            v.verify_at(&t(json!({"user_id": 1, "exp": null})), at(now)),
            Err(JwtRejection::BadClaim)
        );
        assert!(v
            .verify_at(&t(json!({"user_id": 1, "nbf": n})), at(now))
            .is_ok());
        assert_eq!(
            v.verify_at(&t(json!({"user_id": 1, "nbf": n + 1})), at(now)),
            Err(JwtRejection::NotYetValid)
        );
        // Leeway.
        let lenient = JwtVerifier::new(&JwtConfig {
            leeway_secs: 30,
            ..JwtConfig::hs256(SECRET)
        })
        .expect("config");
        assert!(lenient
            .verify_at(&t(json!({"user_id": 1, "exp": n - 10})), at(now))
            .is_ok());
        assert!(lenient
            .verify_at(&t(json!({"user_id": 1, "nbf": n + 10})), at(now))
            .is_ok());
        // Claims must be an object.
        assert_eq!(v.verify(&t(json!([1]))), Err(JwtRejection::Malformed));
    }

    #[test]
    fn audience_issuer_and_claim_name() {
        let key = EncodingKey::from_secret(SECRET);
        let cfg = JwtConfig {
            audience: Some("cable".into()),
            issuer: Some("app".into()),
            user_id_claim: "sub_id".into(),
            ..JwtConfig::hs256(SECRET)
        };
        let v = JwtVerifier::new(&cfg).expect("config");
        let ok = mint(
            Algorithm::HS256,
            &key,
            &json!({"sub_id": 9, "aud": "cable", "iss": "app"}),
        );
        assert_eq!(v.verify(&ok).ok().and_then(|c| v.user_id(&c)), Some(9));
        let aud = mint(
            Algorithm::HS256,
            &key,
            &json!({"sub_id": 9, "aud": "web", "iss": "app"}),
        );
        assert_eq!(v.verify(&aud), Err(JwtRejection::WrongAudience));
        let iss = mint(
            Algorithm::HS256,
            &key,
            &json!({"sub_id": 9, "aud": "cable", "iss": "evil"}),
        );
        assert_eq!(v.verify(&iss), Err(JwtRejection::WrongIssuer));
        // Without configured audience, `aud` is ignored (as ruby-jwt does).
        assert!(hs256().verify(&aud).is_ok());
        assert_eq!(hs256().user_id(&hs256().verify(&aud).expect("ok")), None);
    }

    #[test]
    fn config_errors_and_limits() {
        assert!(matches!(
            JwtVerifier::new(&JwtConfig::hs256("")),
            Err(JwtConfigError::EmptySecret)
        ));
        let bad_pem = JwtConfig {
            algorithm: JwtAlgorithm::Rs256,
            key: b"nope".to_vec(),
            ..JwtConfig::hs256("")
        };
        assert!(matches!(
            JwtVerifier::new(&bad_pem),
            Err(JwtConfigError::BadKey { .. })
        ));
        let no_claim = JwtConfig {
            user_id_claim: String::new(),
            ..JwtConfig::hs256(SECRET)
        };
        assert!(matches!(
            JwtVerifier::new(&no_claim),
            Err(JwtConfigError::EmptyClaim)
        ));
        assert_eq!(
            hs256().verify(&"a".repeat(MAX_TOKEN_LEN + 1)),
            Err(JwtRejection::TooLarge)
        );
        assert!(!format!("{:?}", JwtConfig::hs256(SECRET)).contains("refapp"));
    }

    proptest! {
        #[test]
        fn verify_never_panics(t in ".{0,400}") {
            let _ = hs256().verify(&t);
        }

        #[test]
        fn structured_tokens_never_panic(h in "[A-Za-z0-9_-]{0,60}", p in "[A-Za-z0-9_-]{0,80}", s in "[A-Za-z0-9_-]{0,90}") {
            let v = hs256();
            let token = format!("{h}.{p}.{s}");
            prop_assert!(v.verify(&token).is_err());
            let _ = v.verify(&format!("eyJhbGciOiJIUzI1NiJ9.{p}.{s}"));
        }
    }
}
