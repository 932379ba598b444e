//! The `Cookie:` request header, parsed the way Rack 2.2 does it
//! (`Rack::Utils.parse_cookies_header`), which is what the Rails cookie jar reads.
//!
//! Rules (rack 2.2.22 `lib/rack/utils.rb`):
//! - split on `;` followed by any number of spaces (`/[;] */`); only `;` separates,
//!   never `,`; empty items are skipped; nothing else is trimmed;
//! - each item is split at the first `=`; an item without `=` is a cookie with no value;
//! - **the first occurrence of a name wins** (later duplicates are ignored);
//! - names are taken as they are; values are decoded like `Rack::Utils.unescape`
//!   (`URI.decode_www_form_component`): `+` → space, `%XX` → byte, and if the value
//!   contains a `%` not followed by two hex digits, the raw value is kept unchanged.
//!
//! So a base64 value sent unescaped loses its `+` characters (they become spaces) and
//! no longer verifies, exactly as in Rails.

use std::borrow::Cow;
use std::collections::HashSet;

/// The cookies of one request, in header order, duplicates already dropped.
///
/// Its `Debug` shows cookie names only: values are credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CookieJar {
    /// `(name, decoded value)`; `None` for an item without `=`.
    entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(
                self.entries
                    .iter()
                    .map(|(n, _)| String::from_utf8_lossy(n).into_owned()),
            )
            .finish()
    }
}

/// A cookie name while parsing, as a key of the set of names already seen.
#[derive(Hash)]
struct Name<'a>(&'a [u8]);

impl PartialEq for Name<'_> {
    fn eq(&self, other: &Self) -> bool {
        #[cfg(test)]
        tests::NAME_COMPARISONS.with(|c| c.set(c.get() + 1));
        self.0 == other.0
    }
}

impl Eq for Name<'_> {}

impl CookieJar {
    /// Parses one `Cookie:` header value.
    pub fn parse(header: &str) -> Self {
        Self::parse_bytes(header.as_bytes())
    }

    /// Parses one `Cookie:` header value given as raw bytes (header values need not be
    /// UTF-8).
    ///
    /// Linear in the header's length: each byte is looked at a bounded number of times
    /// and duplicates are found through a hash set (SipHash with random keys, so chosen
    /// names cannot make it degrade), never by comparing each name with every other.
    pub fn parse_bytes(header: &[u8]) -> Self {
        #[cfg(test)]
        tests::PARSES.with(|c| c.set(c.get() + 1));
        let mut entries: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut seen: HashSet<Name<'_>> = HashSet::new();
        let mut rest = header;
        loop {
            let (item, next) = match rest.iter().position(|&b| b == b';') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            if !item.is_empty() {
                let (name, value) = match item.iter().position(|&b| b == b'=') {
                    Some(i) => (&item[..i], Some(&item[i + 1..])),
                    None => (item, None),
                };
                if seen.insert(Name(name)) {
                    entries.push((name.to_vec(), value.map(|v| unescape(v).into_owned())));
                }
            }
            match next {
                Some(n) => {
                    let spaces = n.iter().take_while(|&&b| b == b' ').count();
                    rest = &n[spaces..];
                }
                None => break,
            }
        }
        CookieJar { entries }
    }

    /// The decoded value of cookie `name` (first occurrence), or `None` if absent or
    /// present without a value.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .and_then(|(_, v)| v.as_deref())
    }

    /// Number of distinct cookie names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the header held no cookie.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `Rack::Utils.unescape`: `+` → space, `%XX` → byte; a `%` that is not followed by two
/// hex digits makes the whole value come back unchanged (Rack's `rescue value`).
pub fn unescape(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = raw.get(i + 1).and_then(|&b| hex_val(b));
                let lo = raw.get(i + 2).and_then(|&b| hex_val(b));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Cow::Borrowed(raw);
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// `Rack::Utils.escape` (`URI.encode_www_form_component`): keeps `*-._` and ASCII
/// alphanumerics, writes a space as `+` and every other byte as `%XX` (upper case).
/// This is how Rails writes cookie values into `Set-Cookie`, and how a test client
/// must write them into `Cookie:`.
pub fn escape(value: &str) -> String {
    form_escape(value, |b| matches!(b, b'*' | b'-' | b'.' | b'_'))
}

/// Form-style escaping shared by Rack's and Ruby's `CGI.escape`: ASCII alphanumerics
/// and the bytes `keep` accepts stay, a space becomes `+`, every other byte `%XX`
/// (upper case).
pub fn form_escape(value: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(value.len() + value.len() / 2);
    for &b in value.as_bytes() {
        match b {
            b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ if keep(b) => out.push(char::from(b)),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
    out
}

/// The value of one ASCII hex digit; `None` for any other byte (no sign, no space).
pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;

    thread_local! {
        /// How many times two cookie names were compared while parsing, on this thread.
        pub(super) static NAME_COMPARISONS: Cell<usize> = const { Cell::new(0) };
        /// How many headers were parsed, on this thread.
        pub(crate) static PARSES: Cell<usize> = const { Cell::new(0) };
    }

    /// The rules of the module docs written as plainly as possible (quadratic: every
    /// name is compared with every name kept before it), to check the parser against.
    fn reference_parse(header: &[u8]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut items: Vec<&[u8]> = Vec::new();
        let mut start = 0;
        for (i, &b) in header.iter().enumerate() {
            if b == b';' {
                items.push(&header[start..i]);
                start = i + 1;
                while header.get(start) == Some(&b' ') {
                    start += 1;
                }
            }
        }
        items.push(&header[start.min(header.len())..]);
        for item in items.into_iter().filter(|i| !i.is_empty()) {
            let (name, value) = match item.iter().position(|&b| b == b'=') {
                Some(i) => (&item[..i], Some(&item[i + 1..])),
                None => (item, None),
            };
            if out.iter().all(|(n, _)| n != name) {
                out.push((name.to_vec(), value.map(|v| unescape(v).into_owned())));
            }
        }
        out
    }

    fn comparisons_while_parsing(header: &[u8]) -> (usize, CookieJar) {
        NAME_COMPARISONS.with(|c| c.set(0));
        let jar = CookieJar::parse_bytes(header);
        (NAME_COMPARISONS.with(Cell::get), jar)
    }

    #[test]
    fn a_large_jar_is_parsed_without_comparing_every_name_with_every_other() {
        // 20 000 distinct names, then each of them again: a hostile header, about
        // 300 KB. Comparing each name with the ones kept before it takes 2e8
        // comparisons here; a hash set compares about once per duplicate.
        let n = 20_000;
        let mut header = Vec::new();
        for round in 0..2 {
            for i in 0..n {
                header.extend_from_slice(format!("c{i}={round}; ").as_bytes());
            }
        }
        let (comparisons, jar) = comparisons_while_parsing(&header);
        assert_eq!(jar.len(), n);
        assert_eq!(jar.get("c19999"), Some(&b"0"[..]), "first occurrence wins");
        assert!(
            comparisons <= 4 * n,
            "{comparisons} name comparisons for {} items",
            2 * n
        );
    }

    #[test]
    fn splits_on_semicolon_and_spaces_only() {
        let jar = CookieJar::parse("a=1; b=2;c=3;   d=4, e=5");
        assert_eq!(jar.get("a"), Some(&b"1"[..]));
        assert_eq!(jar.get("b"), Some(&b"2"[..]));
        assert_eq!(jar.get("c"), Some(&b"3"[..]));
        // `,` does not separate in Rack 2.2.
        assert_eq!(jar.get("d"), Some(&b"4, e=5"[..]));
        assert_eq!(jar.get("e"), None);
    }

    #[test]
    fn first_occurrence_wins_even_without_value() {
        let jar = CookieJar::parse("x=1; x=2");
        assert_eq!(jar.get("x"), Some(&b"1"[..]));
        let jar = CookieJar::parse("x; x=2");
        assert_eq!(jar.get("x"), None);
        assert_eq!(jar.len(), 1);
    }

    #[test]
    fn names_are_not_trimmed_or_decoded() {
        let jar = CookieJar::parse("a =1;\tb=2; c%41=3");
        assert_eq!(jar.get("a"), None);
        assert_eq!(jar.get("a "), Some(&b"1"[..]));
        assert_eq!(jar.get("\tb"), Some(&b"2"[..]));
        assert_eq!(jar.get("c%41"), Some(&b"3"[..]));
    }

    #[test]
    fn empty_items_and_value_with_equals() {
        let jar = CookieJar::parse(";; a=b=c;;");
        assert_eq!(jar.get("a"), Some(&b"b=c"[..]));
        assert_eq!(jar.len(), 1);
        assert!(CookieJar::parse("").is_empty());
    }

    #[test]
    fn unescape_like_rack() {
        assert_eq!(&*unescape(b"NDI%3D--ab"), b"NDI=--ab");
        assert_eq!(&*unescape(b"a+b%2Bc%2f"), b"a b+c/");
        // An invalid %-escape keeps the raw value, including its `+`.
        assert_eq!(&*unescape(b"a+b%zz"), b"a+b%zz");
        assert_eq!(&*unescape(b"%4"), b"%4");
        assert_eq!(&*unescape(b"%FF"), b"\xff");
    }

    #[test]
    fn escape_like_rack() {
        assert_eq!(escape("NDI=--x+/ *._-~"), "NDI%3D--x%2B%2F+*._-%7E");
        assert_eq!(escape("é"), "%C3%A9");
    }

    proptest! {
        #[test]
        fn parse_never_panics(header in proptest::collection::vec(any::<u8>(), 0..512)) {
            let jar = CookieJar::parse_bytes(&header);
            let _ = jar.get("user_id");
        }

        #[test]
        fn parse_matches_the_reference(
            items in proptest::collection::vec(("[a-c ;=%+]{0,3}", "[a-c ;=%+0-9F]{0,4}"), 0..40),
            seps in proptest::collection::vec("; {0,2}|;|=|", 0..40),
        ) {
            // Short names from a tiny alphabet make duplicates, empty items and odd
            // separators likely.
            let mut header = String::new();
            for (i, (name, value)) in items.iter().enumerate() {
                header.push_str(name);
                header.push('=');
                header.push_str(value);
                header.push_str(seps.get(i).map_or("; ", String::as_str));
            }
            let jar = CookieJar::parse_bytes(header.as_bytes());
            prop_assert_eq!(jar.entries, reference_parse(header.as_bytes()));
        }

        #[test]
        fn escape_roundtrips(s in ".{0,64}") {
            let escaped = escape(&s);
            prop_assert_eq!(&*unescape(escaped.as_bytes()), s.as_bytes());
        }
    }
}
