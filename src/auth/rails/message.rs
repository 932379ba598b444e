//! The byte formats of `ActiveSupport::MessageVerifier` / `MessageEncryptor` as the
//! cookie jars use them, the `_rails` metadata envelope, and the cookie serializers.
//!
//! ```text
//! signed:    base64(P) "--" hex(HMAC-<digest>(key, base64(P)))
//! GCM:       base64(ct) "--" base64(iv, 12 B) "--" base64(tag, 16 B)     (no AAD)
//! CBC:       base64(X) "--" hex(HMAC-SHA1(sign_key, base64(X)))
//!            X = base64(AES-256-CBC(P)) "--" base64(iv, 16 B)
//! envelope:  {"_rails":{"message":"<base64 S>","exp":<null|ISO 8601>,"pur":<null|"cookie.<name>">}}
//! ```
//!
//! # Invariants
//! - "base64" is the strict alphabet with padding; anything else is malformed.
//! - MACs are compared in constant time (`hmac`'s `verify_slice`) and must be lower-case
//!   hex, as Rails' string compare requires.
//! - The CBC format checks its HMAC before decrypting anything.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::Mac;
use serde_json::Value;

use super::keys::{Digest, HmacSha1, HmacSha256, AES_KEY_LEN};
use super::marshal;
use super::CookieRejection;

/// GCM IV length used by Rails (`aes-256-gcm`).
pub const GCM_IV_LEN: usize = 12;
/// GCM authentication tag length; any other length is refused, as in Rails.
pub const GCM_TAG_LEN: usize = 16;
/// CBC IV length.
pub const CBC_IV_LEN: usize = 16;

const SEP: &[u8] = b"--";

// ---------------------------------------------------------------- signed

/// A signed message split into its data and MAC, before any key is tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedParts<'a> {
    /// The base64 text that was signed (`D`).
    pub data: &'a [u8],
    /// The decoded MAC bytes.
    pub mac: Vec<u8>,
    /// The digest implied by the MAC's length.
    pub digest: Digest,
}

/// Splits `D--M` the way Rails 7.0+ does: `M` is the last `2 × digest length`
/// characters and `--` must precede it. Tries each allowed digest's length.
///
/// # Errors
/// [`CookieRejection::Malformed`] when no allowed digest fits, `D` is empty or `M` is
/// not lower-case hex.
pub fn split_signed<'a>(
    value: &'a [u8],
    digests: &[Digest],
) -> Result<SignedParts<'a>, CookieRejection> {
    for &digest in digests {
        let hex_len = 2 * digest.output_len();
        let Some(sep) = value.len().checked_sub(hex_len + SEP.len()) else {
            continue;
        };
        if sep == 0 || &value[sep..sep + SEP.len()] != SEP {
            continue;
        }
        let mac_hex = &value[sep + SEP.len()..];
        if !mac_hex
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            continue;
        }
        let Ok(mac) = hex::decode(mac_hex) else {
            continue;
        };
        return Ok(SignedParts {
            data: &value[..sep],
            mac,
            digest,
        });
    }
    Err(CookieRejection::Malformed)
}

/// Constant-time check of `parts.mac` against `HMAC(key, parts.data)`.
pub fn mac_matches(key: &[u8], parts: &SignedParts<'_>) -> bool {
    match parts.digest {
        Digest::Sha1 => <HmacSha1 as Mac>::new_from_slice(key)
            .map(|mut m| {
                m.update(parts.data);
                m.verify_slice(&parts.mac).is_ok()
            })
            .unwrap_or(false),
        Digest::Sha256 => <HmacSha256 as Mac>::new_from_slice(key)
            .map(|mut m| {
                m.update(parts.data);
                m.verify_slice(&parts.mac).is_ok()
            })
            .unwrap_or(false),
    }
}

/// Lower-case hex HMAC of `data`.
pub fn hex_mac(key: &[u8], digest: Digest, data: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; an empty MAC
    // (never produced) would simply not verify.
    match digest {
        Digest::Sha1 => <HmacSha1 as Mac>::new_from_slice(key)
            .map(|mut m| {
                m.update(data);
                hex::encode(m.finalize().into_bytes())
            })
            .unwrap_or_default(),
        Digest::Sha256 => <HmacSha256 as Mac>::new_from_slice(key)
            .map(|mut m| {
                m.update(data);
                hex::encode(m.finalize().into_bytes())
            })
            .unwrap_or_default(),
    }
}

/// Produces `base64(payload)--hexmac` (what `MessageVerifier#generate` writes).
pub fn sign(key: &[u8], digest: Digest, payload: &[u8]) -> String {
    let data = STANDARD.encode(payload);
    let mac = hex_mac(key, digest, data.as_bytes());
    format!("{data}--{mac}")
}

/// Strict base64 decoding (`Base64.strict_decode64`).
///
/// # Errors
/// [`CookieRejection::Malformed`] on any non-canonical input.
pub fn b64(data: &[u8]) -> Result<Vec<u8>, CookieRejection> {
    STANDARD
        .decode(data)
        .map_err(|_| CookieRejection::Malformed)
}

// ---------------------------------------------------------------- GCM

/// The three decoded parts of an AES-GCM encrypted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcmParts {
    /// Ciphertext (same length as the plaintext).
    pub ciphertext: Vec<u8>,
    /// 12-byte IV.
    pub iv: [u8; GCM_IV_LEN],
    /// 16-byte authentication tag.
    pub tag: [u8; GCM_TAG_LEN],
}

/// Parses `ct--iv--tag`.
///
/// # Errors
/// [`CookieRejection::Malformed`] unless there are exactly three strict-base64 parts
/// with a 12-byte IV and a 16-byte tag.
pub fn split_gcm(value: &[u8]) -> Result<GcmParts, CookieRejection> {
    let mut parts = split_sep(value);
    let (Some(ct), Some(iv), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(CookieRejection::Malformed);
    };
    let iv: [u8; GCM_IV_LEN] = b64(iv)?
        .try_into()
        .map_err(|_| CookieRejection::Malformed)?;
    let tag: [u8; GCM_TAG_LEN] = b64(tag)?
        .try_into()
        .map_err(|_| CookieRejection::Malformed)?;
    Ok(GcmParts {
        ciphertext: b64(ct)?,
        iv,
        tag,
    })
}

/// Decrypts and authenticates; `None` when the key does not open the message.
pub fn gcm_open(key: &[u8; AES_KEY_LEN], parts: &GcmParts) -> Option<Vec<u8>> {
    let cipher = <Aes256Gcm as aes_gcm::KeyInit>::new(key.into());
    let mut buf = parts.ciphertext.clone();
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&parts.iv),
            b"",
            &mut buf,
            Tag::from_slice(&parts.tag),
        )
        .ok()?;
    Some(buf)
}

/// Encrypts `plaintext` into `ct--iv--tag` with the given IV (callers pass a random one;
/// tests pass a fixed one to reproduce Rails vectors).
pub fn gcm_seal(key: &[u8; AES_KEY_LEN], plaintext: &[u8], iv: [u8; GCM_IV_LEN]) -> String {
    let cipher = <Aes256Gcm as aes_gcm::KeyInit>::new(key.into());
    let mut buf = plaintext.to_vec();
    // Encryption only fails for plaintexts over 64 GiB.
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&iv), b"", &mut buf)
        .map(|t| t.to_vec())
        .unwrap_or_default();
    format!(
        "{}--{}--{}",
        STANDARD.encode(buf),
        STANDARD.encode(iv),
        STANDARD.encode(tag)
    )
}

// ---------------------------------------------------------------- CBC

/// Opens the legacy `base64(base64(ct)--base64(iv))--hex(HMAC-SHA1)` format.
/// `parts` must come from [`split_signed`] with [`Digest::Sha1`].
///
/// # Errors
/// [`CookieRejection::BadSignature`] when the HMAC does not match this key;
/// [`CookieRejection::Malformed`] / [`CookieRejection::Undecryptable`] for an
/// authentic message that still cannot be decrypted.
pub fn cbc_open(
    enc_key: &[u8; AES_KEY_LEN],
    sign_key: &[u8],
    parts: &SignedParts<'_>,
) -> Result<Vec<u8>, CookieRejection> {
    if !mac_matches(sign_key, parts) {
        return Err(CookieRejection::BadSignature);
    }
    let inner = b64(parts.data)?;
    let mut it = split_sep(&inner);
    let (Some(ct), Some(iv), None) = (it.next(), it.next(), it.next()) else {
        return Err(CookieRejection::Malformed);
    };
    let ct = b64(ct)?;
    let iv: [u8; CBC_IV_LEN] = b64(iv)?
        .try_into()
        .map_err(|_| CookieRejection::Malformed)?;
    cbc::Decryptor::<aes::Aes256>::new(enc_key.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ct)
        .map_err(|_| CookieRejection::Undecryptable)
}

/// Produces the legacy CBC format (test helper; Rails ≥ 5.2 writes GCM by default).
pub fn cbc_seal(
    enc_key: &[u8; AES_KEY_LEN],
    sign_key: &[u8],
    plaintext: &[u8],
    iv: [u8; CBC_IV_LEN],
) -> String {
    let ct = cbc::Encryptor::<aes::Aes256>::new(enc_key.into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let inner = format!("{}--{}", STANDARD.encode(ct), STANDARD.encode(iv));
    sign(sign_key, Digest::Sha1, inner.as_bytes())
}

/// Splits on every `--` (base64 never contains `-`).
fn split_sep(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(2).position(|w| w == SEP) {
            Some(i) => {
                rest = Some(&r[i + 2..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

// ---------------------------------------------------------------- envelope

/// Applies the `_rails` envelope rules (spec §5.3) for cookie `name` and returns the
/// serialized value `S`.
///
/// - no envelope → `payload` itself;
/// - `pur` null, `""` or `cookie.<name>` → accepted; any other purpose → refused;
/// - `exp` not null and `now ≥ exp` → refused.
///
/// # Errors
/// [`CookieRejection::WrongPurpose`], [`CookieRejection::Expired`], or
/// [`CookieRejection::Malformed`] for an envelope Rails could not read either.
pub fn unwrap_metadata<'p>(
    payload: &'p [u8],
    name: &str,
    now: SystemTime,
) -> Result<Cow<'p, [u8]>, CookieRejection> {
    let looks_like_object = payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    if !looks_like_object {
        return Ok(Cow::Borrowed(payload));
    }
    let Ok(Value::Object(mut outer)) = serde_json::from_slice::<Value>(payload) else {
        return Ok(Cow::Borrowed(payload));
    };
    let Some(env) = outer.remove("_rails") else {
        return Ok(Cow::Borrowed(payload));
    };
    let Value::Object(env) = env else {
        return Err(CookieRejection::Malformed);
    };
    let Some(Value::String(message)) = env.get("message") else {
        // Includes the 7.1 `"data"` envelope, which cookie jars never write (§5.3).
        return Err(CookieRejection::Malformed);
    };
    match env.get("pur") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) if p.is_empty() => {}
        Some(Value::String(p)) if p.strip_prefix("cookie.") == Some(name) => {}
        Some(Value::String(_)) => return Err(CookieRejection::WrongPurpose),
        Some(_) => return Err(CookieRejection::Malformed),
    }
    match env.get("exp") {
        None | Some(Value::Null) => {}
        Some(Value::String(exp)) => {
            let exp = parse_iso8601(exp).ok_or(CookieRejection::Malformed)?;
            if unix_nanos(now) >= exp {
                return Err(CookieRejection::Expired);
            }
        }
        Some(_) => return Err(CookieRejection::Malformed),
    }
    b64(message.as_bytes()).map(Cow::Owned)
}

/// Writes the envelope as Rails does (key order `message`, `exp`, `pur`, nulls kept).
pub fn wrap_metadata(
    payload: &[u8],
    expires_at: Option<SystemTime>,
    purpose: Option<&str>,
) -> Vec<u8> {
    let mut env = serde_json::Map::new();
    env.insert("message".into(), Value::String(STANDARD.encode(payload)));
    env.insert(
        "exp".into(),
        expires_at.map_or(Value::Null, |t| Value::String(format_iso8601_millis(t))),
    );
    env.insert(
        "pur".into(),
        purpose.map_or(Value::Null, |p| Value::String(p.to_owned())),
    );
    let mut outer = serde_json::Map::new();
    outer.insert("_rails".into(), Value::Object(env));
    Value::Object(outer).to_string().into_bytes()
}

// ---------------------------------------------------------------- serializer

/// `config.action_dispatch.cookies_serializer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Serializer {
    /// `:json` — JSON only; a Marshal payload is refused (Rails raises).
    #[default]
    Json,
    /// `:marshal` — Marshal (safe subset), falling back to JSON (Rails ≥ 6.1).
    Marshal,
    /// `:hybrid` / `:json_allow_marshal` — `04 08` prefix → Marshal, else JSON.
    /// Reads exactly like [`Serializer::Marshal`].
    Hybrid,
}

/// Turns the serialized bytes `S` into a value.
///
/// # Errors
/// [`CookieRejection::BadPayload`] for bytes the serializer cannot read,
/// [`CookieRejection::UnsupportedMarshal`] for Marshal outside the safe subset.
pub fn deserialize(s: &[u8], serializer: Serializer) -> Result<Value, CookieRejection> {
    let is_marshal = s.starts_with(&marshal::SIGNATURE);
    match serializer {
        Serializer::Json if is_marshal => Err(CookieRejection::BadPayload),
        Serializer::Marshal | Serializer::Hybrid if is_marshal => {
            marshal::load(s).map_err(CookieRejection::UnsupportedMarshal)
        }
        _ => serde_json::from_slice(s).map_err(|_| CookieRejection::BadPayload),
    }
}

// ---------------------------------------------------------------- time

/// Nanoseconds since the Unix epoch (negative before 1970).
pub fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// Parses what `Time.iso8601` accepts in practice:
/// `YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH[:MM]]` (no zone is read as UTC).
/// Returns nanoseconds since the epoch.
pub fn parse_iso8601(s: &str) -> Option<i128> {
    let b = s.trim().as_bytes();
    let num = |r: &[u8]| -> Option<i64> {
        if r.is_empty() || !r.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(r).ok()?.parse().ok()
    };
    let (neg, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let ydash = b.iter().position(|&c| c == b'-')?;
    if !(4..=6).contains(&ydash) || b.len() < ydash + 15 {
        return None;
    }
    let year = num(&b[..ydash])? * if neg { -1 } else { 1 };
    let r = &b[ydash..];
    // r = "-MM-DDTHH:MM:SS..."
    if r[0] != b'-' || r[3] != b'-' || !matches!(r[6], b'T' | b't') || r[9] != b':' || r[12] != b':'
    {
        return None;
    }
    let (mo, d, h, mi, sec) = (
        num(&r[1..3])?,
        num(&r[4..6])?,
        num(&r[7..9])?,
        num(&r[10..12])?,
        num(&r[13..15])?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 24 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &r[15..];
    let mut nanos: i128 = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for (i, &c) in frac[..n].iter().enumerate().take(9) {
            nanos += i128::from(c - b'0') * 10i128.pow(8 - i as u32);
        }
        rest = &frac[n..];
    }
    let offset_secs: i64 = match rest {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), tz @ ..] => {
            let (hh, mm) = match tz {
                [h1, h2] => (num(&[*h1, *h2])?, 0),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (num(&[*h1, *h2])?, num(&[*m1, *m2])?),
                _ => return None,
            };
            let o = hh * 3600 + mm * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// `Time#utc.iso8601(3)`: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_iso8601_millis(t: SystemTime) -> String {
    let nanos = unix_nanos(t);
    let ms = nanos.div_euclid(1_000_000);
    let secs = ms.div_euclid(1000) as i64;
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
/// Day numbers past the month's end roll over, as Ruby's `Time.utc` does.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::super::keys::{CookieKeys, Salts};
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    const SPEC_SECRET: &str = "569ceeda1d37437198001a03cb05ac9f31b1b368970ed76dff0d100f27b7fa984a037f6cf346f4b39655e414cfbeffa88fffbc2b09d4dcdefd63daed620b8998";

    fn at(s: &str) -> SystemTime {
        let n = parse_iso8601(s).expect("test time");
        UNIX_EPOCH + Duration::from_nanos(n as u64)
    }

    #[test]
    fn spec_9_6_recipe() {
        let k = CookieKeys::derive(SPEC_SECRET, Digest::Sha1, &Salts::default());
        assert_eq!(
            hex_mac(&k.signed, Digest::Sha1, b"NDI="),
            "dbf2c37da727bdbdfeff3ed93fd12ea7f424f2d7"
        );
        let parts =
            split_gcm(b"2rU=--AQIDBAUGBwgJCgsM--HRNYa6Scm35ZswfhQBOjxw==").expect("E3 parses");
        assert_eq!(gcm_open(&k.gcm, &parts).as_deref(), Some(&b"42"[..]));
    }

    #[test]
    fn gcm_seal_reproduces_rails_bytes() {
        // E1: the envelope for user_id = 42, IV 01..0C, SHA1 keys.
        let k = CookieKeys::derive(SPEC_SECRET, Digest::Sha1, &Salts::default());
        let p = wrap_metadata(b"42", None, Some("cookie.user_id"));
        assert_eq!(
            p,
            br#"{"_rails":{"message":"NDI=","exp":null,"pur":"cookie.user_id"}}"#
        );
        let iv = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        assert_eq!(
            gcm_seal(&k.gcm, &p, iv),
            "laXmpEuC+JmePyYQmPN3wCmp9YRY7Vg71DdtSUXkFXLB6GaP0xVC6iQczRUzelgNuoclLakL3y84n5AM1O7c--AQIDBAUGBwgJCgsM--3PeOfhqLFTQ5kY8j01+HBg=="
        );
    }

    #[test]
    fn cbc_seal_reproduces_rails_bytes() {
        // E7: legacy CBC, IV 01..10, SHA1 keys.
        let k = CookieKeys::derive(SPEC_SECRET, Digest::Sha1, &Salts::default());
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
        let v = cbc_seal(&k.cbc, &k.cbc_sign, b"42", iv);
        assert_eq!(v, "WXZLaHdBU0FLWEM5Q1hnTVZFNUMzQT09LS1BUUlEQkFVR0J3Z0pDZ3NNRFE0UEVBPT0=--83a28cd88c8c43b5e033eaa2986bab05f69a7e86");
        let parts = split_signed(v.as_bytes(), &[Digest::Sha1]).expect("splits");
        assert_eq!(
            cbc_open(&k.cbc, &k.cbc_sign, &parts).as_deref(),
            Ok(&b"42"[..])
        );
        let other = CookieKeys::derive(SPEC_SECRET, Digest::Sha256, &Salts::default());
        assert_eq!(
            cbc_open(&other.cbc, &other.cbc_sign, &parts),
            Err(CookieRejection::BadSignature)
        );
    }

    #[test]
    fn split_signed_rules() {
        let d = [Digest::Sha1];
        let mac = "dbf2c37da727bdbdfeff3ed93fd12ea7f424f2d7";
        assert!(split_signed(format!("NDI=--{mac}").as_bytes(), &d).is_ok());
        // Upper-case hex, empty data, wrong length, missing separator: malformed.
        for bad in [
            format!("NDI=--{}", mac.to_uppercase()),
            format!("--{mac}"),
            format!("NDI=--{mac}0"),
            format!("NDI=-{mac}"),
            mac.to_string(),
            String::new(),
        ] {
            assert_eq!(
                split_signed(bad.as_bytes(), &d),
                Err(CookieRejection::Malformed),
                "{bad}"
            );
        }
        // A 64-hex MAC is only read when SHA256 is allowed.
        let long = format!("NDI=--{}", "a".repeat(64));
        assert!(split_signed(long.as_bytes(), &d).is_err());
        let p =
            split_signed(long.as_bytes(), &[Digest::Sha1, Digest::Sha256]).expect("sha256 fits");
        assert_eq!(p.digest, Digest::Sha256);
    }

    #[test]
    fn envelope_rules() {
        let now = at("2030-01-01T00:00:00Z");
        let env = |exp: &str, pur: &str| {
            format!(r#"{{"_rails":{{"message":"NDI=","exp":{exp},"pur":{pur}}}}}"#)
        };
        let ok = |p: String| unwrap_metadata(p.as_bytes(), "user_id", now).map(|c| c.into_owned());
        assert_eq!(ok(env("null", r#""cookie.user_id""#)), Ok(b"42".to_vec()));
        assert_eq!(ok(env("null", "null")), Ok(b"42".to_vec()));
        assert_eq!(ok(env("null", r#""""#)), Ok(b"42".to_vec()));
        assert_eq!(
            ok(env("null", r#""cookie.other""#)),
            Err(CookieRejection::WrongPurpose)
        );
        assert_eq!(
            ok(env("null", r#""user_id""#)),
            Err(CookieRejection::WrongPurpose)
        );
        assert_eq!(ok(env("null", "1")), Err(CookieRejection::Malformed));
        assert_eq!(
            ok(env(r#""2030-01-01T00:00:00.001Z""#, "null")),
            Ok(b"42".to_vec())
        );
        assert_eq!(
            ok(env(r#""2030-01-01T00:00:00.000Z""#, "null")),
            Err(CookieRejection::Expired)
        );
        assert_eq!(
            ok(env(r#""2029-12-31T23:59:59.999Z""#, "null")),
            Err(CookieRejection::Expired)
        );
        assert_eq!(
            ok(env(r#""soon""#, "null")),
            Err(CookieRejection::Malformed)
        );
        assert_eq!(ok(env("17", "null")), Err(CookieRejection::Malformed));
        assert_eq!(
            ok(r#"{"_rails":{"data":42}}"#.into()),
            Err(CookieRejection::Malformed)
        );
        assert_eq!(
            ok(r#"{"_rails":1}"#.into()),
            Err(CookieRejection::Malformed)
        );
        assert_eq!(
            ok(r#"{"_rails":{"message":"NDI","exp":null,"pur":null}}"#.into()),
            Err(CookieRejection::Malformed)
        );
        // No envelope: passed through untouched.
        assert_eq!(ok("42".into()), Ok(b"42".to_vec()));
        assert_eq!(ok(r#"{"a":1}"#.into()), Ok(br#"{"a":1}"#.to_vec()));
    }

    #[test]
    fn iso8601() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse_iso8601("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_iso8601("1970-01-01T01:00:00+0100"), Some(0));
        assert_eq!(parse_iso8601("1969-12-31T23:00:00-01"), Some(0));
        assert_eq!(
            parse_iso8601("2045-01-01T00:00:00.000Z"),
            Some(2_366_841_600_000_000_000)
        );
        for bad in [
            "",
            "2045",
            "2045-01-01",
            "2045-13-01T00:00:00Z",
            "2045-01-01T00:00:00X",
            "2045-01-01 00:00:00Z",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
        let t = at("2045-01-01T00:00:00.123Z");
        assert_eq!(format_iso8601_millis(t), "2045-01-01T00:00:00.123Z");
        assert_eq!(
            format_iso8601_millis(UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn serializers() {
        assert_eq!(
            deserialize(b"42", Serializer::Json),
            Ok(serde_json::json!(42))
        );
        assert_eq!(
            deserialize(b"\x04\x08i/", Serializer::Json),
            Err(CookieRejection::BadPayload)
        );
        assert_eq!(
            deserialize(b"\x04\x08i/", Serializer::Hybrid),
            Ok(serde_json::json!(42))
        );
        assert_eq!(
            deserialize(b"\x04\x08i/", Serializer::Marshal),
            Ok(serde_json::json!(42))
        );
        assert_eq!(
            deserialize(b"\"abc\"", Serializer::Marshal),
            Ok(serde_json::json!("abc"))
        );
        assert!(matches!(
            deserialize(b"\x04\x08o:\x06X\x00", Serializer::Hybrid),
            Err(CookieRejection::UnsupportedMarshal(_))
        ));
        assert_eq!(
            deserialize(b"nope", Serializer::Json),
            Err(CookieRejection::BadPayload)
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(v in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = split_signed(&v, &[Digest::Sha1, Digest::Sha256]);
            let _ = split_gcm(&v);
            let _ = unwrap_metadata(&v, "x", SystemTime::now());
            let _ = deserialize(&v, Serializer::Hybrid);
            if let Ok(s) = std::str::from_utf8(&v) { let _ = parse_iso8601(s); }
        }

        #[test]
        fn iso8601_roundtrip(ms in -10_000_000_000_000i64..200_000_000_000_000) {
            let t = if ms >= 0 { UNIX_EPOCH + Duration::from_millis(ms as u64) }
                    else { UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs()) };
            let s = format_iso8601_millis(t);
            prop_assert_eq!(parse_iso8601(&s), Some(i128::from(ms) * 1_000_000));
        }
    }
}
