//! A data-only subset of Ruby's Marshal format 4.8, read straight into
//! [`serde_json::Value`] — for apps whose cookies still use the `:marshal` or
//! `:hybrid` serializer.
//!
//! Accepted: `nil`, `true`, `false`, Fixnum (every packed form), Bignum that fits in
//! 64 bits, finite Float, String (binary, UTF-8 via the `E` ivar, or with an
//! `encoding` ivar — the bytes must be valid UTF-8 whatever the tag says), Symbol and
//! symbol links (`;`), object links (`@`) to strings/floats/bignums, Array, Hash
//! (keys: String, Symbol or Integer, turned into JSON strings).
//!
//! # Invariants
//! - Never builds an object of a Ruby class: any class-carrying type (`o`, `u`, `U`,
//!   `S`, `C`, `e`, `c`, `m`, `M`, `d`, `/`, `}`) is rejected with
//!   [`MarshalError::Unsupported`].
//! - Never panics and never allocates more than a bounded multiple of the input:
//!   lengths are checked against the bytes left before any allocation, nesting is
//!   capped by [`Limits::max_depth`], and the bytes produced through links are capped by
//!   [`Limits::max_output`].
//! - Symbols become strings (JSON has no symbols), so `{:a=>1}` and `{"a"=>1}` both
//!   read as `{"a":1}`, matching what Rails' JSON serializer would have written.
//! - Bytes after the first complete value are ignored, as `Marshal.load` does.

use serde_json::{Map, Number, Value};

/// Resource limits for [`load_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting of arrays/hashes/ivar wrappers.
    pub max_depth: usize,
    /// Maximum number of string bytes produced in total (object links copy strings).
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 32,
            max_output: 64 * 1024,
        }
    }
}

/// Why a Marshal payload was refused. Carries type bytes and counts only, never data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MarshalError {
    /// The payload does not start with `04 08`.
    #[error("not Marshal 4.8 data")]
    BadVersion,
    /// The payload ended in the middle of a value.
    #[error("Marshal data is truncated")]
    Truncated,
    /// A type the safe subset does not read (objects, classes, structs, regexps…).
    #[error("unsupported Marshal type {0:?}")]
    Unsupported(char),
    /// An instance variable other than a string's encoding.
    #[error("unsupported instance variable on a Marshal value")]
    UnsupportedIvar,
    /// A negative or oversized length.
    #[error("invalid length in Marshal data")]
    BadLength,
    /// A `;`/`@` link to an index that does not exist, or to an array/hash.
    #[error("invalid or unsupported link in Marshal data")]
    BadLink,
    /// Nesting deeper than [`Limits::max_depth`].
    #[error("Marshal data nested too deeply")]
    TooDeep,
    /// More output than [`Limits::max_output`].
    #[error("Marshal data expands too much")]
    TooLarge,
    /// A string or symbol whose bytes are not UTF-8.
    #[error("Marshal string is not UTF-8")]
    NotUtf8,
    /// A Bignum outside the 64-bit range.
    #[error("Marshal integer out of range")]
    IntegerOutOfRange,
    /// A float that is NaN, infinite or unreadable.
    #[error("Marshal float is not a finite number")]
    BadFloat,
    /// A hash key that is not a string, symbol or integer.
    #[error("unsupported Marshal hash key")]
    BadHashKey,
}

/// The two bytes every Marshal 4.8 payload starts with.
pub const SIGNATURE: [u8; 2] = [4, 8];

/// Reads `bytes` with the default [`Limits`].
///
/// # Errors
/// [`MarshalError`] when the payload is not in the safe subset or not well formed.
pub fn load(bytes: &[u8]) -> Result<Value, MarshalError> {
    load_with(bytes, Limits::default())
}

/// Reads `bytes` with explicit limits.
///
/// # Errors
/// [`MarshalError`] when the payload is not in the safe subset or not well formed.
pub fn load_with(bytes: &[u8], limits: Limits) -> Result<Value, MarshalError> {
    let Some(rest) = bytes.strip_prefix(&SIGNATURE) else {
        return Err(MarshalError::BadVersion);
    };
    let mut p = Parser {
        input: rest,
        pos: 0,
        symbols: Vec::new(),
        objects: Vec::new(),
        output: 0,
        limits,
    };
    p.value(0)
}

/// An entry of the object table (`@` links).
enum Slot {
    /// A leaf value that links may copy.
    Leaf(Value),
    /// An array or hash: linking to one is refused (it could be cyclic or huge).
    Container,
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    symbols: Vec<String>,
    objects: Vec<Slot>,
    output: usize,
    limits: Limits,
}

impl<'a> Parser<'a> {
    fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, MarshalError> {
        let b = *self.input.get(self.pos).ok_or(MarshalError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MarshalError> {
        if n > self.remaining() {
            return Err(MarshalError::Truncated);
        }
        let s = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Ruby's `r_long`: the packed integer encoding.
    fn long(&mut self) -> Result<i64, MarshalError> {
        let c = self.byte()? as i8;
        Ok(match c {
            0 => 0,
            5..=127 => i64::from(c) - 5,
            -128..=-5 => i64::from(c) + 5,
            1..=4 => {
                let mut x: i64 = 0;
                for i in 0..c {
                    x |= i64::from(self.byte()?) << (8 * i);
                }
                x
            }
            -4..=-1 => {
                let mut x: i64 = -1;
                for i in 0..-c {
                    x &= !(0xff << (8 * i));
                    x |= i64::from(self.byte()?) << (8 * i);
                }
                x
            }
        })
    }

    /// A length that must fit in what is left of the input, `unit` bytes per item.
    fn length(&mut self, unit: usize) -> Result<usize, MarshalError> {
        let n = usize::try_from(self.long()?).map_err(|_| MarshalError::BadLength)?;
        match n.checked_mul(unit) {
            Some(b) if b <= self.remaining() => Ok(n),
            _ => Err(MarshalError::BadLength),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], MarshalError> {
        let n = self.length(1)?;
        self.take(n)
    }

    fn produce(&mut self, n: usize) -> Result<(), MarshalError> {
        self.output = self.output.saturating_add(n);
        if self.output > self.limits.max_output {
            return Err(MarshalError::TooLarge);
        }
        Ok(())
    }

    fn utf8(&mut self, b: &[u8]) -> Result<String, MarshalError> {
        self.produce(b.len())?;
        String::from_utf8(b.to_vec()).map_err(|_| MarshalError::NotUtf8)
    }

    /// A symbol in a position where only a symbol may appear (ivar names).
    fn symbol(&mut self, depth: usize) -> Result<String, MarshalError> {
        match self.byte()? {
            b':' => self.symbol_body(false, depth),
            b';' => self.symlink(),
            b'I' => match self.byte()? {
                b':' => self.symbol_body(true, depth),
                t => Err(MarshalError::Unsupported(char::from(t))),
            },
            t => Err(MarshalError::Unsupported(char::from(t))),
        }
    }

    fn symlink(&mut self) -> Result<String, MarshalError> {
        let i = usize::try_from(self.long()?).map_err(|_| MarshalError::BadLink)?;
        let s = self.symbols.get(i).ok_or(MarshalError::BadLink)?.clone();
        self.produce(s.len())?;
        Ok(s)
    }

    /// `:` already read. Ruby registers the symbol before reading its ivars.
    fn symbol_body(&mut self, ivars: bool, depth: usize) -> Result<String, MarshalError> {
        let raw = self.bytes()?;
        let s = self.utf8(raw)?;
        self.symbols.push(s.clone());
        if ivars {
            self.encoding_ivars(depth)?;
        }
        Ok(s)
    }

    /// The ivar list of a string or symbol: only `E` and `encoding` are allowed.
    fn encoding_ivars(&mut self, depth: usize) -> Result<(), MarshalError> {
        let n = self.length(2)?;
        for _ in 0..n {
            let name = self.symbol(depth + 1)?;
            if name != "E" && name != "encoding" {
                return Err(MarshalError::UnsupportedIvar);
            }
            // `E` → true/false; `encoding` → the encoding name as a string.
            match self.value(depth + 1)? {
                Value::Bool(_) | Value::String(_) => {}
                _ => return Err(MarshalError::UnsupportedIvar),
            }
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, MarshalError> {
        if depth > self.limits.max_depth {
            return Err(MarshalError::TooDeep);
        }
        match self.byte()? {
            b'0' => Ok(Value::Null),
            b'T' => Ok(Value::Bool(true)),
            b'F' => Ok(Value::Bool(false)),
            b'i' => Ok(Value::Number(self.long()?.into())),
            b':' => Ok(Value::String(self.symbol_body(false, depth)?)),
            b';' => Ok(Value::String(self.symlink()?)),
            b'"' => self.string(),
            b'I' => match self.byte()? {
                b'"' => {
                    let s = self.string()?;
                    self.encoding_ivars(depth)?;
                    Ok(s)
                }
                b':' => Ok(Value::String(self.symbol_body(true, depth)?)),
                t => Err(MarshalError::Unsupported(char::from(t))),
            },
            b'@' => {
                let i = usize::try_from(self.long()?).map_err(|_| MarshalError::BadLink)?;
                let v = match self.objects.get(i) {
                    Some(Slot::Leaf(v)) => v.clone(),
                    _ => return Err(MarshalError::BadLink),
                };
                if let Value::String(s) = &v {
                    self.produce(s.len())?;
                }
                Ok(v)
            }
            b'f' => {
                let raw = self.bytes()?;
                // Ruby < 1.9 appended mantissa bytes after a NUL; the text is enough.
                let text = raw.split(|&b| b == 0).next().unwrap_or_default();
                let f = std::str::from_utf8(text)
                    .ok()
                    .filter(|t| !t.is_empty() && t.bytes().all(|b| b"0123456789.-+e".contains(&b)))
                    .and_then(|t| t.parse::<f64>().ok())
                    .ok_or(MarshalError::BadFloat)?;
                let v = Value::Number(Number::from_f64(f).ok_or(MarshalError::BadFloat)?);
                self.objects.push(Slot::Leaf(v.clone()));
                Ok(v)
            }
            b'l' => {
                let negative = match self.byte()? {
                    b'+' => false,
                    b'-' => true,
                    _ => return Err(MarshalError::BadLength),
                };
                let words = self.length(2)?;
                let raw = self.take(words * 2)?;
                if raw.iter().skip(8).any(|&b| b != 0) {
                    return Err(MarshalError::IntegerOutOfRange);
                }
                let mut le = [0u8; 8];
                for (d, s) in le.iter_mut().zip(raw) {
                    *d = *s;
                }
                let mag = u64::from_le_bytes(le);
                let n = if !negative {
                    Number::from(mag)
                } else if mag <= 1 << 63 {
                    // Wrapping handles -2^63, whose magnitude does not fit in i64.
                    Number::from(0i64.wrapping_sub_unsigned(mag))
                } else {
                    return Err(MarshalError::IntegerOutOfRange);
                };
                let v = Value::Number(n);
                self.objects.push(Slot::Leaf(v.clone()));
                Ok(v)
            }
            b'[' => {
                self.objects.push(Slot::Container);
                let n = self.length(1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            b'{' => {
                self.objects.push(Slot::Container);
                let n = self.length(2)?;
                let mut map = Map::with_capacity(n);
                for _ in 0..n {
                    let key = match self.value(depth + 1)? {
                        Value::String(s) => s,
                        Value::Number(n) if !n.is_f64() => n.to_string(),
                        _ => return Err(MarshalError::BadHashKey),
                    };
                    let v = self.value(depth + 1)?;
                    map.insert(key, v);
                }
                Ok(Value::Object(map))
            }
            t => Err(MarshalError::Unsupported(char::from(t))),
        }
    }

    /// `"` already read: a raw byte string, registered in the object table.
    fn string(&mut self) -> Result<Value, MarshalError> {
        let raw = self.bytes()?;
        let v = Value::String(self.utf8(raw)?);
        self.objects.push(Slot::Leaf(v.clone()));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test literal is hex")
    }

    #[test]
    fn spec_4_2_examples() {
        assert_eq!(load(&hex("0408692f")), Ok(json!(42)));
        assert_eq!(load(&hex("0408492208616263063a064554")), Ok(json!("abc")));
    }

    #[test]
    fn packed_ints() {
        for (h, n) in [
            ("040869 00", 0i64),
            ("040869 06", 1),
            ("040869 7f", 122),
            ("040869 80", -123),
            ("040869 01 7b", 123),
            ("040869 ff 84", -124),
            ("040869 02 0001", 256),
            ("040869 fe fffe", -257),
            ("040869 fc 000000c0", -1_073_741_824),
        ] {
            assert_eq!(load(&hex(&h.replace(' ', ""))), Ok(json!(n)), "{h}");
        }
    }

    fn same_value(got: Option<&Value>, want: &Value) -> bool {
        match (got, want) {
            (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Some(Value::Array(a)), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(Some(x), y))
            }
            (Some(Value::Object(a)), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka == kb && same_value(Some(va), vb))
            }
            (Some(a), b) => a == b,
            (None, _) => false,
        }
    }

    #[test]
    fn every_generated_vector() {
        let v: Value = serde_json::from_str(include_str!("vectors/vectors.json"))
            .expect("vectors.json is valid JSON");
        let blobs = v["marshal"].as_array().expect("marshal array");
        assert!(blobs.len() > 40);
        for b in blobs {
            let bytes = hex(b["hex"].as_str().expect("hex"));
            let got = load(&bytes);
            if b["supported"] == json!(true) {
                // Numbers keep their source text (serde_json's arbitrary_precision), so
                // compare them by value: `1.0e+20` and `1e+20` are the same float.
                assert!(
                    same_value(got.as_ref().ok(), &b["expect"]),
                    "{}: {got:?}",
                    b["ruby"]
                );
            } else {
                assert!(got.is_err(), "{} must be refused, got {got:?}", b["ruby"]);
            }
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(load(b""), Err(MarshalError::BadVersion));
        assert_eq!(load(b"\x04\x09i\x06"), Err(MarshalError::BadVersion));
        assert_eq!(load(b"\x04\x08"), Err(MarshalError::Truncated));
        assert_eq!(load(b"\x04\x08\"\x7f"), Err(MarshalError::BadLength));
        assert_eq!(
            load(b"\x04\x08[\xfc\xff\xff\xff\xff"),
            Err(MarshalError::BadLength)
        );
        assert_eq!(
            load(b"\x04\x08o:\x06X\x00"),
            Err(MarshalError::Unsupported('o'))
        );
        assert_eq!(load(b"\x04\x08;\x00"), Err(MarshalError::BadLink));
        // A link to an array (possibly the one being built) is refused.
        assert_eq!(load(b"\x04\x08[\x06@\x00"), Err(MarshalError::BadLink));
        // A string ivar other than the encoding.
        assert_eq!(
            load(b"\x04\x08I\"\x06x\x06:\x06@iT"),
            Err(MarshalError::UnsupportedIvar)
        );
        // Trailing bytes are ignored, like Marshal.load.
        assert_eq!(load(b"\x04\x08i\x06junk"), Ok(json!(1)));
    }

    #[test]
    fn depth_is_bounded() {
        let mut deep = b"\x04\x08".to_vec();
        deep.extend(b"[\x06".repeat(100));
        deep.push(b'0');
        assert_eq!(load(&deep), Err(MarshalError::TooDeep));
    }

    #[test]
    fn link_expansion_is_bounded() {
        // ["xxxx…(1000)", @1 × 2000] would expand to 2 MB.
        let mut b = b"\x04\x08[\x02\xd1\x07\"\x02\xe8\x03".to_vec();
        b.extend(vec![b'x'; 1000]);
        for _ in 0..2000 {
            b.extend_from_slice(b"@\x06");
        }
        assert_eq!(load(&b), Err(MarshalError::TooLarge));
    }

    proptest! {
        #[test]
        fn never_panics(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut b = SIGNATURE.to_vec();
            b.extend(tail);
            let _ = load(&b);
        }

        #[test]
        fn never_panics_on_marshal_like(tail in proptest::collection::vec(
            prop_oneof![Just(b'['), Just(b'{'), Just(b'"'), Just(b'I'), Just(b':'), Just(b';'),
                        Just(b'@'), Just(b'i'), Just(b'l'), Just(b'f'), Just(6u8), Just(0u8),
                        Just(0xffu8), Just(b'E'), Just(b'T'), any::<u8>()], 0..128)) {
            let mut b = SIGNATURE.to_vec();
            b.extend(tail);
            let _ = load(&b);
        }
    }
}
