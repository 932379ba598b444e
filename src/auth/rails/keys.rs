//! Key derivation exactly as `ActiveSupport::KeyGenerator` does it for
//! `Rails.application.key_generator`: PBKDF2-HMAC over the `secret_key_base` text
//! (used as ASCII bytes, never hex-decoded), 1000 iterations.
//!
//! # Invariants
//! - Keys are derived once, when a verifier is built; nothing here runs per request.
//! - Rails ≤ 6.1 always uses SHA1; `load_defaults "7.0"`+ switches the PBKDF2 digest to
//!   SHA256. [`DigestMode::Auto`] derives both (SHA256 first).

use hmac::Hmac;
use sha1::Sha1;
use sha2::Sha256;

/// PBKDF2 iteration count of `Rails.application.key_generator` (every version).
pub const ITERATIONS: u32 = 1000;

/// Length of the HMAC keys (`signed cookie`, `signed encrypted cookie`).
pub const SIGN_KEY_LEN: usize = 64;

/// Length of the AES-256 keys (`authenticated encrypted cookie`, `encrypted cookie`).
pub const AES_KEY_LEN: usize = 32;

/// One hash function, used for PBKDF2 or for a cookie HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Digest {
    /// SHA-1 (Rails ≤ 6.1 PBKDF2; the signed-cookie HMAC default in every version).
    Sha1,
    /// SHA-256.
    Sha256,
}

impl Digest {
    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Digest::Sha1 => 20,
            Digest::Sha256 => 32,
        }
    }
}

/// Which digest(s) a configuration accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DigestMode {
    /// Only SHA-1.
    Sha1,
    /// Only SHA-256.
    Sha256,
    /// Both, SHA-256 tried first (an app mid-way through the 7.0 upgrade reads both).
    #[default]
    Auto,
}

impl DigestMode {
    /// The digests to try, in order.
    pub fn digests(self) -> &'static [Digest] {
        match self {
            DigestMode::Sha1 => &[Digest::Sha1],
            DigestMode::Sha256 => &[Digest::Sha256],
            DigestMode::Auto => &[Digest::Sha256, Digest::Sha1],
        }
    }
}

/// The four cookie salts (`config.action_dispatch.*_salt`), defaults as in Rails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Salts {
    /// `signed_cookie_salt`, default `signed cookie`.
    pub signed: String,
    /// `authenticated_encrypted_cookie_salt`, default `authenticated encrypted cookie`.
    pub authenticated_encrypted: String,
    /// `encrypted_cookie_salt`, default `encrypted cookie` (legacy CBC cipher key).
    pub encrypted: String,
    /// `encrypted_signed_cookie_salt`, default `signed encrypted cookie` (legacy CBC HMAC key).
    pub encrypted_signed: String,
}

impl Default for Salts {
    fn default() -> Self {
        Salts {
            signed: "signed cookie".to_owned(),
            authenticated_encrypted: "authenticated encrypted cookie".to_owned(),
            encrypted: "encrypted cookie".to_owned(),
            encrypted_signed: "signed encrypted cookie".to_owned(),
        }
    }
}

/// `PBKDF2-HMAC-<digest>(secret, salt, 1000, out.len())` written into `out`.
pub fn derive_key(secret: &[u8], salt: &[u8], digest: Digest, out: &mut [u8]) {
    match digest {
        Digest::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(secret, salt, ITERATIONS, out),
        Digest::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(secret, salt, ITERATIONS, out),
    }
}

/// Every key the cookie jars need, derived from one `secret_key_base` with one digest.
#[derive(Clone)]
pub struct CookieKeys {
    /// The PBKDF2 digest these keys were derived with.
    pub pbkdf2: Digest,
    /// HMAC key of `cookies.signed` (64 bytes).
    pub signed: [u8; SIGN_KEY_LEN],
    /// AES-256-GCM key of `cookies.encrypted` (32 bytes).
    pub gcm: [u8; AES_KEY_LEN],
    /// AES-256-CBC key of the legacy encrypted format (32 bytes).
    pub cbc: [u8; AES_KEY_LEN],
    /// HMAC-SHA1 key of the legacy encrypted format (64 bytes).
    pub cbc_sign: [u8; SIGN_KEY_LEN],
}

impl CookieKeys {
    /// Derives the four keys of one secret (about 4 × 1000 PBKDF2 rounds).
    pub fn derive(secret_key_base: &str, digest: Digest, salts: &Salts) -> Self {
        let secret = secret_key_base.as_bytes();
        let mut keys = CookieKeys {
            pbkdf2: digest,
            signed: [0; SIGN_KEY_LEN],
            gcm: [0; AES_KEY_LEN],
            cbc: [0; AES_KEY_LEN],
            cbc_sign: [0; SIGN_KEY_LEN],
        };
        derive_key(secret, salts.signed.as_bytes(), digest, &mut keys.signed);
        derive_key(
            secret,
            salts.authenticated_encrypted.as_bytes(),
            digest,
            &mut keys.gcm,
        );
        derive_key(secret, salts.encrypted.as_bytes(), digest, &mut keys.cbc);
        derive_key(
            secret,
            salts.encrypted_signed.as_bytes(),
            digest,
            &mut keys.cbc_sign,
        );
        keys
    }
}

impl std::fmt::Debug for CookieKeys {
    /// Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieKeys")
            .field("pbkdf2", &self.pbkdf2)
            .finish_non_exhaustive()
    }
}

/// HMAC type aliases used by the message formats.
pub(super) type HmacSha1 = Hmac<Sha1>;
/// See [`HmacSha1`].
pub(super) type HmacSha256 = Hmac<Sha256>;

#[cfg(test)]
mod tests {
    use super::*;

    /// §9.1 of the spec: SHA-512 hex of `rust-cable example secret`.
    const SPEC_SECRET: &str = "569ceeda1d37437198001a03cb05ac9f31b1b368970ed76dff0d100f27b7fa984a037f6cf346f4b39655e414cfbeffa88fffbc2b09d4dcdefd63daed620b8998";

    fn key(salt: &str, digest: Digest, len: usize) -> String {
        let mut out = vec![0; len];
        derive_key(SPEC_SECRET.as_bytes(), salt.as_bytes(), digest, &mut out);
        hex::encode(out)
    }

    #[test]
    fn spec_9_2_derived_keys() {
        use Digest::{Sha1, Sha256};
        let table = [
            ("signed cookie", 64, Sha1, "69cba3c9ed146016684bee9ebf85689bbffe47dfbe5858f97e5cad2dcd36c48f62d1a785b68505dfd52f13b4b0805dfcb621ffe01cd464953a70b70cbc77a629"),
            ("signed cookie", 64, Sha256, "f8b65ac4b469cc12593dc08d65dae2ad4d983fdcad50fd1d522720d0d42c1b17f6db1432a0c17021b203227262f4187540216945c7cf88854faec5e0d0983e17"),
            ("authenticated encrypted cookie", 32, Sha1, "a57b1d712158b50e15069ef16a181b2be47373a820c8e4e87eb85be7dfebe3d8"),
            ("authenticated encrypted cookie", 32, Sha256, "c98443775b7c1c2f47ff1b87e85b8b7a99a4ced9f10e04b4dbef2e17b8c143ce"),
            ("encrypted cookie", 32, Sha1, "2063d4ce6dba8d6cbf3aa1b5c70587c9267b450250dc480c1893f308c4a09f48"),
            ("encrypted cookie", 32, Sha256, "9ccf96308040b662e41f650052b33bb95b187e4408e7277f9defc4d2ab6d0d37"),
            ("signed encrypted cookie", 64, Sha1, "c308431ae036742344f328c3ee41d4270a79bea319372e7f10f7aa0d6b01b5e73f8b1894118795ddcbabf836ce729b406d680224c793146b961b7974b7265f74"),
            ("signed encrypted cookie", 64, Sha256, "c793e4a4b09c6e5ab2b57ec6dcf0398e144face07ffa638a77afde92ba9c5656f0c179b2b2f2584935d27e18e1853b1d36e575315e34d1d48ec318c73089ded0"),
            ("turbo/signed_stream_verifier_key", 64, Sha1, "9ffdad7061295a5cc032aff4b8335086e748b55db28e7eee444807643223435256ed87e852c9796db70f8a27cee55c8219799feedd6b073df8725babbb102b87"),
            ("turbo/signed_stream_verifier_key", 64, Sha256, "26048fc532a17003aadb2de351da99fc79042219d9d9b2bdb8a908440f700dde5ea779d21779d2bcf163651e4c33be458d1ad6c3264182a0229bc3c8fa8fc669"),
        ];
        for (salt, len, digest, want) in table {
            assert_eq!(key(salt, digest, len), want, "{salt} {digest:?}");
        }
    }

    #[test]
    fn reference_lab_keys() {
        let lab = format!(
            "{}{}{}{}",
            "a".repeat(32),
            "b".repeat(32),
            "c".repeat(32),
            "d".repeat(32)
        );
        let k = CookieKeys::derive(&lab, Digest::Sha1, &Salts::default());
        assert_eq!(hex::encode(k.signed), "a78b51ac013c2aabc175100d465c26bb2bbe0d6153d665d06971ccd486935fc563d2da9c3f5f38c50c35dd6f9bbdc1aba56f2941be5d896506366eef6ed3da6d");
        assert_eq!(
            hex::encode(k.gcm),
            "f73d431115feeaead3a22ffe649d3f751a16064559e7d834bedb6e07b960c74d"
        );
        assert!(!format!("{k:?}").contains("a78b"));
    }

    #[test]
    fn auto_tries_sha256_first() {
        assert_eq!(DigestMode::Auto.digests(), &[Digest::Sha256, Digest::Sha1]);
    }
}
