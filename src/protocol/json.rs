//! JSON output byte-compatible with `ActiveSupport::JSON.encode`.
//!
//! Rails escapes `<`, `>`, `&` (as `\u003c`, `\u003e`, `\u0026`) and U+2028/U+2029 inside
//! strings, writes no whitespace, keeps key order, prints floats the way Ruby's
//! `Float#to_s` does (`2.5`, `1000.0`, `1.0e+20`) and non-finite floats as `null`.
//! Non-ASCII characters and `/` are written as they are.

use serde_json::{Number, Value};

/// Appends `s` as a JSON string literal, escaped as ActiveSupport escapes it.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'<' => Some(b"\\u003c"),
            b'>' => Some(b"\\u003e"),
            b'&' => Some(b"\\u0026"),
            // U+2028 and U+2029 are E2 80 A8 / E2 80 A9 in UTF-8.
            0xE2 if bytes.get(i + 1) == Some(&0x80)
                && matches!(bytes.get(i + 2), Some(0xA8) | Some(0xA9)) =>
            {
                if bytes[i + 2] == 0xA8 {
                    Some(b"\\u2028")
                } else {
                    Some(b"\\u2029")
                }
            }
            0x00..=0x1f => None, // handled below: \u00XX
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => {
                out.extend_from_slice(e);
                i += if b == 0xE2 { 3 } else { 1 };
            }
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                i += 1;
            }
        }
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends `v` encoded as ActiveSupport encodes the equivalent Ruby value.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Encodes `v` into a fresh buffer (see [`write_value`]).
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_value(&mut out, v);
    out
}

fn write_number(out: &mut Vec<u8>, n: &Number) {
    // With serde_json's `arbitrary_precision`, a Number keeps its source text, so big
    // integers stay exact, as Ruby's Integer does.
    let text = n.to_string();
    let is_float = text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if !is_float {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    match text.parse::<f64>() {
        Ok(f) => write_ruby_float(out, f),
        Err(_) => out.extend_from_slice(b"null"),
    }
}

/// Writes `f` as Ruby's `Float#to_s` does (non-finite values as `null`, as Rails does).
pub fn write_ruby_float(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "1.25e-5", "-0e0".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exp + 1; // position of the decimal point relative to the digits
    if neg {
        out.push(b'-');
    }
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-decpt) as usize));
            out.extend_from_slice(digits.as_bytes());
        } else {
            let d = decpt as usize;
            if digits.len() <= d {
                out.extend_from_slice(digits.as_bytes());
                out.extend(std::iter::repeat_n(b'0', d - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits.as_bytes()[..d]);
                out.push(b'.');
                out.extend_from_slice(&digits.as_bytes()[d..]);
            }
        }
    } else {
        out.extend_from_slice(&digits.as_bytes()[..1]);
        out.push(b'.');
        if digits.len() > 1 {
            out.extend_from_slice(&digits.as_bytes()[1..]);
        } else {
            out.push(b'0');
        }
        let e = decpt - 1;
        out.push(b'e');
        out.push(if e < 0 { b'-' } else { b'+' });
        let abs = e.unsigned_abs();
        if abs < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(abs.to_string().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(src: &str) -> String {
        let v: Value = serde_json::from_str(src).expect("test input is JSON");
        String::from_utf8(to_vec(&v)).expect("encoder writes UTF-8")
    }

    #[test]
    fn strings_are_escaped_like_active_support() {
        assert_eq!(
            enc(r#""<hi> & ünïcödé""#),
            r#""\u003chi\u003e \u0026 ünïcödé""#
        );
        assert_eq!(enc(r#""a/b \u00e9 ✓""#), "\"a/b é ✓\"");
        assert_eq!(enc(r#""\u2028\u2029""#), r#""\u2028\u2029""#);
        assert_eq!(enc(r#""q\"b\\n\n\u0001""#), r#""q\"b\\n\n\u0001""#);
    }

    #[test]
    fn numbers_print_as_ruby_prints_them() {
        // The cases of the reference's `redis_publish` scenario.
        assert_eq!(enc("2.50"), "2.5");
        assert_eq!(enc("1e3"), "1000.0");
        assert_eq!(enc("-0.0"), "-0.0");
        assert_eq!(enc("12345678901234567890123"), "12345678901234567890123");
        assert_eq!(enc("42"), "42");
        assert_eq!(enc("1e16"), "1.0e+16");
        assert_eq!(enc("1e15"), "1000000000000000.0");
        assert_eq!(enc("0.0001"), "0.0001");
        assert_eq!(enc("0.00001"), "1.0e-05");
        assert_eq!(enc("1.5e-7"), "1.5e-07");
        assert_eq!(enc("123.456"), "123.456");
    }

    #[test]
    fn structure_keeps_key_order_without_spaces() {
        assert_eq!(
            enc(r#"{ "b" : [1, {"a": null}], "a": true }"#),
            r#"{"b":[1,{"a":null}],"a":true}"#
        );
    }
}
