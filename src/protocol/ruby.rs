//! Channel params as Rails turns them into text: `"#{params[:room_id]}"`.
//!
//! Rails decodes the identifier with `ActiveSupport::JSON.decode` (Ruby's `JSON.parse`)
//! and a channel interpolates a param with `to_s`. Every place that builds a name from
//! a param (stream templates, `presence_room_<id>`, the presence store's Redis keys)
//! goes through [`interpolate`], so a fleet mixing Rails and ferrocable nodes names a
//! room the same way on both.
//!
//! # Invariants
//! - Scalars are written exactly as Ruby 3.1's `to_s` writes what `JSON.parse` made of
//!   them (checked against a table recorded with real Ruby, `tests/data/ruby_to_s.tsv`):
//!   a number with `.`, `e` or `E` is a `Float` (`1.50` → `1.5`, `1e2` → `100.0`,
//!   `1e15` → `1.0e+15`, `1e400` → `Infinity`); any other number is an `Integer`,
//!   written in full (`-0` → `0`); `true`/`false` as words; `null` as nothing.
//! - Arrays and objects are refused ([`Uninterpolable`]): Ruby would write them with
//!   `inspect` (`[1, "a", nil]`, `{"a"=>1}`), whose string escaping we do not copy, so
//!   a subscription naming a stream with one is rejected rather than put on a stream
//!   no Rails node would use.
//! - Needs serde_json's `arbitrary_precision`: numbers keep their text, so big integers
//!   are not rounded and a float is parsed once, from its own digits.

use serde_json::Value;

/// A param that cannot be written as Rails would (an array or an object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an array or object param cannot be interpolated")]
pub struct Uninterpolable;

/// `"#{value}"` for a value `JSON.parse` produced: `Ok(None)` for `nil`, which
/// interpolates as the empty string.
///
/// # Errors
/// [`Uninterpolable`] for arrays and objects.
pub fn interpolate(value: &Value) -> Result<Option<String>, Uninterpolable> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_to_s(&n.to_string()),
        Value::Array(_) | Value::Object(_) => return Err(Uninterpolable),
    }))
}

/// `to_s` of the number `JSON.parse` makes of the JSON number `text`.
pub fn number_to_s(text: &str) -> String {
    if !text.contains(['.', 'e', 'E']) {
        // An Integer, of any size; JSON allows no leading zeros, so only `-0` is
        // written otherwise than Ruby writes it.
        return if text == "-0" {
            "0".into()
        } else {
            text.into()
        };
    }
    match text.parse::<f64>() {
        Ok(f) => float_to_s(f),
        // serde_json only hands over valid JSON numbers, which always parse.
        Err(_) => text.into(),
    }
}

/// Ruby's `Float#to_s`: the shortest digits that read back as `f`, in fixed notation
/// when they have a digit before the point and either a fraction or at most 15
/// integer digits (`100.0`, `1628163979828961.5`), or when the first digit comes
/// within 4 places after the point (`0.0001`); otherwise as `d.ddde±XX` (`1.0e+15`,
/// `1.0e-05`).
pub fn float_to_s(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f.is_nan() {
        return "NaN".into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let (digits, exp) = shortest_digits(f.abs());
    let sign = if f < 0.0 { "-" } else { "" };
    let mut out = String::with_capacity(digits.len() + 8);
    out.push_str(sign);
    // As `flo_to_s` (numeric.c) decides, with `decpt` = exp + 1 digits before the point.
    let decpt = exp + 1;
    let digs = digits.len() as i32;
    if decpt > 0 && decpt < digs {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    } else if decpt > 0 && decpt <= 15 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (decpt - digs) as usize));
        out.push_str(".0");
    } else if decpt <= 0 && decpt > -4 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-decpt) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        out.push_str(if digits.len() > 1 { &digits[1..] } else { "0" });
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    }
    out
}

/// The shortest digits that read back as `f` (positive, finite, non-zero), and the
/// decimal exponent of the first: as David Gay's `dtoa` mode 0 (Ruby's) picks them.
fn shortest_digits(f: f64) -> (String, i32) {
    let (digits, exp) = split_sci(&format!("{f:e}"));
    // Rust's shortest digits are Gay's, except when two candidates are equally close
    // to `f` (its exact value ends in a 5 right after them): Gay then takes the even
    // one, Rust the upper one.
    // 800 digits print any f64 exactly (at most 767 significant digits).
    let (exact, exact_exp) = split_sci(&format!("{f:.800e}"));
    let exact = exact.trim_end_matches('0');
    if exact_exp != exp || exact.len() != digits.len() + 1 || !exact.ends_with('5') {
        return (digits, exp);
    }
    let lower = &exact[..digits.len()];
    let Some(upper) = increment(lower) else {
        return (digits, exp);
    };
    let even = if lower.ends_with(['0', '2', '4', '6', '8']) {
        lower.to_owned()
    } else {
        upper
    };
    let reads_back = format!("{}.{}e{exp}", &even[..1], &even[1..])
        .parse::<f64>()
        .is_ok_and(|g| g == f);
    if reads_back {
        (even, exp)
    } else {
        (digits, exp)
    }
}

/// The digits and exponent of Rust's `{:e}` output for a positive number.
fn split_sci(sci: &str) -> (String, i32) {
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let digits = mantissa.chars().filter(char::is_ascii_digit).collect();
    (digits, exp.parse().unwrap_or(0))
}

/// `digits` + 1 in its last place, unless that carries out of the first digit.
fn increment(digits: &str) -> Option<String> {
    let mut out = digits.as_bytes().to_vec();
    for d in out.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return String::from_utf8(out).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every row of the table recorded with Ruby 3.1.2 (json 2.6.1): the JSON text of a
    /// value and `"#{JSON.parse(text)}"`, or `!` where we refuse. See the file's header
    /// for how it was made.
    #[test]
    fn matches_real_ruby() {
        let table = include_str!("../../tests/data/ruby_to_s.tsv");
        let mut rows = 0;
        for line in table.lines().filter(|l| !l.starts_with('#')) {
            let (json, ruby) = line.split_once('\t').expect("two columns");
            let ruby: String = serde_json::from_str(ruby).expect("Ruby's output, JSON-encoded");
            let value: Value =
                serde_json::from_str(&format!("[{json}]")).expect("the table's JSON parses");
            let ours = interpolate(&value[0]);
            match ours {
                Ok(text) => assert_eq!(text.unwrap_or_default(), ruby, "for {json}"),
                Err(Uninterpolable) => assert!(
                    json.starts_with(['[', '{']),
                    "{json} refused, Ruby wrote {ruby:?}"
                ),
            }
            rows += 1;
        }
        assert!(rows > 1_000, "only {rows} rows");
    }

    #[test]
    fn the_reviews_cases() {
        for (json, ruby) in [
            ("1.50", "1.5"),
            ("1e2", "100.0"),
            ("1E+2", "100.0"),
            ("-0.0", "-0.0"),
            ("-0", "0"),
            ("1e16", "1.0e+16"),
            ("1e-5", "1.0e-05"),
            ("1e400", "Infinity"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
        ] {
            assert_eq!(number_to_s(json), ruby, "{json}");
        }
        assert_eq!(interpolate(&Value::Null), Ok(None));
        assert_eq!(interpolate(&serde_json::json!([1])), Err(Uninterpolable));
        assert_eq!(
            interpolate(&serde_json::json!({"a": 1})),
            Err(Uninterpolable)
        );
    }

    proptest! {
        /// Any finite float is written in Ruby's shape and reads back as itself.
        #[test]
        fn floats_read_back(bits in any::<u64>()) {
            let f = f64::from_bits(bits);
            prop_assume!(f.is_finite());
            let s = float_to_s(f);
            let shape = regex::Regex::new(r"^-?(\d+\.\d+|\d\.\d+e[+-]\d{2,3})$").expect("regex");
            prop_assert!(shape.is_match(&s), "{}", s);
            prop_assert_eq!(s.parse::<f64>().ok().map(f64::to_bits), Some(bits));
        }
    }
}
