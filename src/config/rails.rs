//! `--rails-root`: what ferrocable can read from a Rails app's own files.
//!
//! - `config/cable.yml`, for the app's environment (`RAILS_ENV`, else `RACK_ENV`, else
//!   `development`): `adapter` (`redis` → Redis mode with its `url`; `async` →
//!   embedded; anything else is an error), `url` and `channel_prefix`. The file goes
//!   through a small ERB subset first, as Rails runs ERB before YAML: `<%= ENV["X"] %>`,
//!   `<%= ENV.fetch("X") %>`, `<%= ENV.fetch("X", "default") %>`,
//!   `<%= ENV.fetch("X") { "default" } %>`, any of them followed by `|| "default"`,
//!   string, number and `nil` literals, and `<%# comments %>`. Anything else is an
//!   error naming the file and line, never a silent guess. YAML anchors, aliases and
//!   merge keys (`<<: *default`) work as in Rails.
//! - In development only, the app's development secret (`tmp/local_secret.txt`, Rails
//!   7.1+, else `tmp/development_secret.txt`), as Rails itself falls back to it.
//!
//! Values read here have the lowest precedence but the built-in defaults: a flag, an
//! environment variable or the config file overrides each of them.

use std::path::{Path, PathBuf};

use serde_norway::Value;

/// A Rails file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RailsError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// ERB we do not evaluate, or an `ENV.fetch` of an unset variable without default.
    #[error("{path}:{line}: {what}")]
    Erb {
        /// The file.
        path: String,
        /// The line of the tag (1-based).
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// The file is not YAML (after ERB).
    #[error("{path}: not valid YAML: {why}")]
    Yaml {
        /// The file.
        path: String,
        /// The parser's message (with its line).
        why: String,
    },
    /// A setting of the environment's section is missing or unsupported.
    #[error("{path} ({env}): {what}")]
    Setting {
        /// The file.
        path: String,
        /// The Rails environment.
        env: String,
        /// What is wrong.
        what: String,
    },
}

/// What `cable.yml` says for one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CableSettings {
    /// The file read.
    pub path: PathBuf,
    /// `redis` adapter: its URL; `async`: `None` (embedded).
    pub redis_url: Option<String>,
    /// `channel_prefix`, when set.
    pub channel_prefix: Option<String>,
}

/// redis-rb's default when `url` is left out.
pub const DEFAULT_REDIS_URL: &str = "redis://localhost:6379";

/// Reads `ROOT/config/cable.yml` for `rails_env`, looking variables up with `env`.
///
/// # Errors
/// The file is unreadable, its ERB unsupported, its YAML invalid, the environment
/// missing, or the adapter neither `redis` nor `async`.
pub fn read_cable_yml(
    root: &Path,
    rails_env: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CableSettings, RailsError> {
    let path = root.join("config").join("cable.yml");
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| RailsError::Read {
        path: shown.clone(),
        source,
    })?;
    let rendered = render_erb(&text, &shown, env)?;
    let mut doc: Value = serde_norway::from_str(&rendered).map_err(|e| RailsError::Yaml {
        path: shown.clone(),
        why: e.to_string(),
    })?;
    doc.apply_merge().map_err(|e| RailsError::Yaml {
        path: shown.clone(),
        why: e.to_string(),
    })?;
    let setting = |what: String| RailsError::Setting {
        path: shown.clone(),
        env: rails_env.to_owned(),
        what,
    };
    let Some(section) = doc.get(rails_env) else {
        let found: Vec<String> = doc
            .as_mapping()
            .map(|m| m.keys().filter_map(scalar).collect())
            .unwrap_or_default();
        return Err(setting(format!(
            "no `{rails_env}` section (set RAILS_ENV); it has: {}",
            found.join(", ")
        )));
    };
    let text_of = |key: &str| -> Result<Option<String>, RailsError> {
        match section.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => scalar(v)
                .map(Some)
                .ok_or_else(|| setting(format!("`{key}` must be a string"))),
        }
    };
    let adapter = text_of("adapter")?.unwrap_or_default();
    let redis_url = match adapter.as_str() {
        "redis" => Some(
            text_of("url")?
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned()),
        ),
        "async" => None,
        "" => return Err(setting("no `adapter`".into())),
        other => {
            return Err(setting(format!(
                "adapter `{other}` is not supported (ferrocable speaks `redis`, or runs embedded for `async`)"
            )))
        }
    };
    Ok(CableSettings {
        path,
        redis_url,
        channel_prefix: text_of("channel_prefix")?,
    })
}

/// The development secret Rails generates, when `rails_env` is `development` and the
/// file exists.
///
/// # Errors
/// The file exists but cannot be read.
pub fn development_secret(
    root: &Path,
    rails_env: &str,
) -> Result<Option<(PathBuf, String)>, RailsError> {
    if rails_env != "development" {
        return Ok(None);
    }
    for name in ["local_secret.txt", "development_secret.txt"] {
        let path = root.join("tmp").join(name);
        match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => return Ok(Some((path, s.trim().to_owned()))),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RailsError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        }
    }
    Ok(None)
}

/// A YAML scalar as Ruby's `to_s` would write it.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Marks an `ENV.fetch` of an unset variable (not a syntax problem) in parse errors.
const UNSET: &str = "\0unset:";

const SUPPORTED: &str = "supported: ENV[\"X\"], ENV.fetch(\"X\"), ENV.fetch(\"X\", \"default\"), ENV.fetch(\"X\") { \"default\" }, optionally followed by || \"default\"";

/// Evaluates the ERB subset described in the module docs.
///
/// # Errors
/// [`RailsError::Erb`] naming `path` and the tag's line.
pub fn render_erb(
    text: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, RailsError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut line = 1;
    while let Some(start) = rest.find("<%") {
        let (before, tag) = rest.split_at(start);
        out.push_str(before);
        line += before.matches('\n').count();
        let err = |what: String| RailsError::Erb {
            path: path.to_owned(),
            line,
            what,
        };
        if let Some(after) = tag.strip_prefix("<%%") {
            out.push_str("<%");
            rest = after;
            continue;
        }
        // After the opening `<%`: `<%>` is an opening with `>` in it, not a close.
        let Some(end) = tag[2..].find("%>").map(|i| i + 2) else {
            return Err(err("`<%` without a closing `%>`".into()));
        };
        let inner = &tag[2..end];
        let mut after = &tag[end + 2..];
        let (inner, trim) = match inner.strip_suffix('-') {
            Some(i) => (i, true),
            None => (inner, false),
        };
        if let Some(expr) = inner.strip_prefix('=') {
            let value = eval(expr.trim(), env).map_err(err)?;
            out.push_str(&value.unwrap_or_default());
        } else if !inner.starts_with('#') {
            return Err(err(format!(
                "unsupported ERB `<%{inner}%>`: only `<%= … %>` output tags ({SUPPORTED})"
            )));
        }
        if trim {
            after = after.strip_prefix('\n').unwrap_or(after);
        }
        line += tag[..end].matches('\n').count();
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// A token of the Ruby subset.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Punct(&'static str),
}

fn tokenize(expr: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = expr.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '"' | '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string".into()),
                        Some((_, q)) if q == c => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) if c == '"' => s.push('\n'),
                            Some((_, 't')) if c == '"' => s.push('\t'),
                            Some((_, e)) if e == c || e == '\\' => s.push(e),
                            Some((_, e)) => {
                                s.push('\\');
                                s.push(e);
                            }
                            None => return Err("unterminated string".into()),
                        },
                        Some((_, '#')) if c == '"' && chars.peek().map(|p| p.1) == Some('{') => {
                            return Err("string interpolation `#{…}`".into())
                        }
                        Some((_, ch)) => s.push(ch),
                    }
                }
                toks.push(Tok::Str(s));
            }
            c if c.is_ascii_digit() => {
                let mut s = String::new();
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_ascii_digit() || d == '.' || d == '_' {
                        if d != '_' {
                            s.push(d);
                        }
                        chars.next();
                    } else {
                        break;
                    }
                }
                toks.push(Tok::Num(s));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::new();
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        s.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                toks.push(Tok::Ident(s));
            }
            _ => {
                let two = expr.get(i..i + 2);
                let punct = match (two, c) {
                    (Some("||"), _) => "||",
                    (_, '.') => ".",
                    (_, '(') => "(",
                    (_, ')') => ")",
                    (_, '[') => "[",
                    (_, ']') => "]",
                    (_, ',') => ",",
                    (_, '{') => "{",
                    (_, '}') => "}",
                    _ => return Err(format!("unexpected `{c}`")),
                };
                for _ in 0..punct.len() {
                    chars.next();
                }
                toks.push(Tok::Punct(punct));
            }
        }
    }
    Ok(toks)
}

/// A cursor over the tokens of one expression.
struct Parser<'a> {
    toks: &'a [Tok],
    at: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Parser<'_> {
    fn next(&mut self) -> Option<&Tok> {
        let t = self.toks.get(self.at);
        self.at += 1;
        t
    }

    fn peek_is(&self, p: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Punct(q)) if *q == p)
    }

    fn expect(&mut self, p: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Punct(q)) if *q == p => Ok(()),
            _ => Err(format!("expected `{p}`")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s.clone()),
            _ => Err("expected a string literal".into()),
        }
    }

    /// A literal: a string, a number or `nil`.
    fn literal(&mut self) -> Result<Option<String>, String> {
        match self.next() {
            Some(Tok::Str(s) | Tok::Num(s)) => Ok(Some(s.clone())),
            Some(Tok::Ident(i)) if i == "nil" => Ok(None),
            _ => Err("expected a literal".into()),
        }
    }

    /// `ENV[…]`, `ENV.fetch(…)` or a literal; `None` is Ruby's `nil`.
    fn primary(&mut self) -> Result<Option<String>, String> {
        if !matches!(self.toks.get(self.at), Some(Tok::Ident(i)) if i == "ENV") {
            return self.literal();
        }
        self.at += 1;
        if self.peek_is("[") {
            self.at += 1;
            let var = self.string()?;
            self.expect("]")?;
            return Ok((self.env)(&var));
        }
        self.expect(".")?;
        match self.next() {
            Some(Tok::Ident(m)) if m == "fetch" => {}
            _ => return Err("only ENV[…] and ENV.fetch(…) are understood".into()),
        }
        self.expect("(")?;
        let var = self.string()?;
        let mut default = None;
        if self.peek_is(",") {
            self.at += 1;
            default = Some(self.literal()?);
        }
        self.expect(")")?;
        if self.peek_is("{") {
            self.at += 1;
            default = Some(self.literal()?);
            self.expect("}")?;
        }
        match ((self.env)(&var), default) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("{UNSET}{var}")),
        }
    }
}

/// Evaluates one `<%= … %>` expression.
fn eval(expr: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    let unsupported = |why: String| format!("unsupported ERB `<%= {expr} %>` ({why}; {SUPPORTED})");
    let toks = tokenize(expr).map_err(unsupported)?;
    let mut p = Parser {
        toks: &toks,
        at: 0,
        env,
    };
    let explain = |e: String| match e.strip_prefix(UNSET) {
        Some(var) => format!("ENV.fetch(\"{var}\") without a default, and {var} is not set"),
        None => unsupported(e),
    };
    let mut value = p.primary().map_err(explain)?;
    while p.peek_is("||") {
        p.at += 1;
        let alt = p.primary().map_err(explain)?;
        // Ruby: only nil (and false) fall through; an empty string is a value.
        if value.is_none() {
            value = alt;
        }
    }
    if p.at != toks.len() {
        return Err(unsupported("unexpected text after the expression".into()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn render(text: &str, vars: &'static [(&'static str, &'static str)]) -> String {
        render_erb(text, "cable.yml", &env(vars)).expect("renders")
    }

    #[test]
    fn the_common_env_forms_are_evaluated() {
        let vars = &[("REDIS_URL", "redis://r:6379/2"), ("EMPTY", "")];
        assert_eq!(
            render(
                r#"<%= ENV.fetch("REDIS_URL") { "redis://localhost:6379/1" } %>"#,
                vars
            ),
            "redis://r:6379/2"
        );
        assert_eq!(
            render(
                r#"<%= ENV.fetch("NOPE") { "redis://localhost:6379/1" } %>"#,
                vars
            ),
            "redis://localhost:6379/1"
        );
        assert_eq!(render(r#"<%= ENV.fetch('NOPE', 'd') %>"#, vars), "d");
        assert_eq!(render(r#"<%= ENV.fetch("NOPE") { 5 } %>"#, vars), "5");
        assert_eq!(render(r#"<%= ENV["NOPE"] %>"#, vars), "");
        assert_eq!(render(r#"<%= ENV['NOPE'] || 'y' %>"#, vars), "y");
        assert_eq!(
            render(r#"<%= ENV['REDIS_URL'] || 'y' %>"#, vars),
            "redis://r:6379/2"
        );
        // Ruby's || keeps an empty string.
        assert_eq!(render(r#"<%= ENV["EMPTY"] || "y" %>"#, vars), "");
        assert_eq!(render("a<%# a comment %>b", vars), "ab");
        assert_eq!(render("a <%= \"x\" -%>\nb", vars), "a xb");
        assert_eq!(render("<%% literal", vars), "<% literal");
    }

    #[test]
    fn unsupported_erb_names_the_file_and_line() {
        let e = render_erb("a: 1\nb: <%= Rails.env %>\n", "cfg/cable.yml", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cfg/cable.yml:2: unsupported ERB"), "{e}");
        let e = render_erb("a: 1\n\n<% if true %>\n", "c.yml", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.yml:3:"), "{e}");
        let e = render_erb("x: <%= ENV.fetch(\"NOPE\") %>", "c.yml", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("NOPE is not set"), "{e}");
        for bad in [
            "<%>",
            "<%",
            "<%=",
            "<%= ENV[\"A\"",
            "<%= \"#{x}\" %>",
            "<%= ENV.fetch(\"A\") + 1 %>",
            "<%= ENV.keys %>",
        ] {
            assert!(render_erb(bad, "c.yml", &env(&[])).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn erb_never_panics(
            text in r#"(<%|%>|<%=|<%#|-%>|=|ENV|fetch|nil|\[|\]|"|'|\(|\)|\{|\}|\|\||\.|,| |x|1|#|\\|\n|é){0,40}"#
        ) {
            let _ = render_erb(&text, "f", &|_| None);
            let _ = render_erb(&text, "f", &|_| Some("v".into()));
        }
    }

    fn cable(
        yml: &str,
        rails_env: &str,
        vars: &'static [(&'static str, &'static str)],
    ) -> Result<CableSettings, RailsError> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("config")).expect("mkdir");
        std::fs::write(dir.path().join("config/cable.yml"), yml).expect("write");
        read_cable_yml(dir.path(), rails_env, &env(vars))
    }

    const GENERATED: &str = r#"
default: &default
  adapter: redis
  url: <%= ENV.fetch("REDIS_URL") { "redis://localhost:6379/1" } %>
  channel_prefix: app_default

development:
  adapter: async

test:
  adapter: test

production:
  <<: *default
  channel_prefix: app_production
"#;

    #[test]
    fn cable_yml_anchors_merge_and_adapters() {
        let p = cable(GENERATED, "production", &[("REDIS_URL", "redis://h:1/0")]).expect("valid");
        assert_eq!(p.redis_url.as_deref(), Some("redis://h:1/0"));
        assert_eq!(p.channel_prefix.as_deref(), Some("app_production"));
        let p = cable(GENERATED, "production", &[]).expect("valid");
        assert_eq!(p.redis_url.as_deref(), Some("redis://localhost:6379/1"));
        let d = cable(GENERATED, "development", &[]).expect("valid");
        assert_eq!((d.redis_url, d.channel_prefix), (None, None));
        let e = cable(GENERATED, "test", &[]).unwrap_err().to_string();
        assert!(
            e.contains("(test)") && e.contains("adapter `test` is not supported"),
            "{e}"
        );
        let e = cable(GENERATED, "staging", &[]).unwrap_err().to_string();
        assert!(
            e.contains("no `staging` section") && e.contains("production"),
            "{e}"
        );
        let p = cable("production:\n  adapter: redis\n", "production", &[]).expect("valid");
        assert_eq!(p.redis_url.as_deref(), Some(DEFAULT_REDIS_URL));
        let e = cable("production: [\n", "production", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid YAML"), "{e}");
    }

    #[test]
    fn the_development_secret_is_read_in_development_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            development_secret(dir.path(), "development").expect("ok"),
            None
        );
        std::fs::create_dir_all(dir.path().join("tmp")).expect("mkdir");
        std::fs::write(dir.path().join("tmp/development_secret.txt"), "old\n").expect("write");
        let got = development_secret(dir.path(), "development").expect("ok");
        assert_eq!(got.map(|g| g.1).as_deref(), Some("old"));
        std::fs::write(dir.path().join("tmp/local_secret.txt"), "new").expect("write");
        let got = development_secret(dir.path(), "development").expect("ok");
        assert_eq!(got.map(|g| g.1).as_deref(), Some("new"));
        assert_eq!(
            development_secret(dir.path(), "production").expect("ok"),
            None
        );
    }
}
