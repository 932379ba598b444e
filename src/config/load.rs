//! Layering: where each configuration value comes from.
//!
//! Precedence, highest first: command-line flag > environment variable > `--config`
//! TOML file > values read from `--rails-root` > built-in default.
//!
//! clap already orders flag > environment > default. The file and the Rails app are
//! read first (their own locations come from a scan of the arguments, the
//! environment, and for `--rails-root`/`--rails-env` also the file), and their values
//! are injected as the arguments' defaults before the real parse, so one parser
//! decides every value and reports where it came from ([`Loaded::render`]).
//!
//! The file's keys are the long flags, spelled `max-connections` or
//! `max_connections`; lists are TOML arrays (or one comma-separated string); `[[channels]]`
//! tables declare stream channels as the channels file does. An unknown key, a key
//! given twice, or a value the flag would refuse is an error naming the file and key.
//!
//! The files the flags point at (`--channels-file`, `--jwt-public-key-file`) and
//! Rails' `DATABASE_URL` are read here too, into [`Read`], so [`Config::check`] reads
//! nothing itself; a file that cannot be read is reported by the check, like any bad
//! value (after `--print-config` has printed).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use super::rails::{self, RailsError};
use super::{Config, Secret};
use crate::channels::StreamChannelSpec;

/// Arguments that never come from the file: where the file is, and actions.
const NOT_IN_FILE: [&str; 4] = ["config", "print-config", "help", "version"];

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Bad command-line syntax, or `--help` / `--version` (print it with
    /// [`clap::Error::exit`]).
    #[error(transparent)]
    Usage(#[from] clap::Error),
    /// The config file cannot be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not TOML.
    #[error("config file {path}: not valid TOML: {why}")]
    Toml {
        /// The file.
        path: String,
        /// The parser's message.
        why: String,
    },
    /// A key that is no flag.
    #[error("config file {path}: unknown key `{key}` (keys are the long flags of `ferrocable --help`, e.g. `max-connections`, and `channels`)")]
    UnknownKey {
        /// The file.
        path: String,
        /// The key as written.
        key: String,
    },
    /// The same setting twice (`max-connections` and `max_connections`).
    #[error("config file {path}: `{first}` and `{second}` are the same setting")]
    DuplicateKey {
        /// The file.
        path: String,
        /// One spelling.
        first: String,
        /// The other.
        second: String,
    },
    /// A value of the wrong type, or one the flag refuses.
    #[error("config file {path}: `{key}`: {why}")]
    BadValue {
        /// The file.
        path: String,
        /// The key as written.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// `--rails-root` could not be read.
    #[error("--rails-root: {0}")]
    Rails(#[from] RailsError),
}

/// The parsed configuration and where each value came from.
pub struct Loaded {
    /// The raw configuration (not yet [`Config::check`]ed).
    pub config: Config,
    matches: ArgMatches,
    /// Values injected as defaults, by argument id, with their origin.
    injected: BTreeMap<String, Injected>,
    /// The config file's `[[channels]]`, as written.
    channels: Option<(PathBuf, toml::Value)>,
}

/// What the loader read for [`Config::check`]: the contents of the files the flags
/// name, and Rails' `DATABASE_URL`. Holds secrets: its `Debug` shows none of it.
#[derive(Clone, Default)]
pub struct Read {
    /// `--channels-file`'s text, or why it could not be read; `None` when no file is
    /// named, or when the [`Config`] was not built by [`Loaded`].
    pub channels_file: Option<Result<String, Arc<std::io::Error>>>,
    /// `--jwt-public-key-file`'s bytes, or why they could not be read.
    pub jwt_public_key: Option<Result<Vec<u8>, Arc<std::io::Error>>>,
    /// Rails' `DATABASE_URL` (used only by `--profile-source database` without
    /// `--database-url`).
    pub rails_database_url: Option<Secret>,
}

impl std::fmt::Debug for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Read")
            .field(
                "channels_file",
                &self.channels_file.as_ref().map(Result::is_ok),
            )
            .field(
                "jwt_public_key",
                &self.jwt_public_key.as_ref().map(Result::is_ok),
            )
            .field("rails_database_url", &self.rails_database_url)
            .finish()
    }
}

impl Read {
    /// Reads what `config` names; `env` looks up `DATABASE_URL`.
    fn of(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Read {
        Read {
            channels_file: config
                .channels_file
                .as_ref()
                .map(|p| std::fs::read_to_string(p).map_err(Arc::new)),
            jwt_public_key: config
                .jwt_public_key_file
                .as_ref()
                .map(|p| std::fs::read(p).map_err(Arc::new)),
            rails_database_url: env("DATABASE_URL").map(Secret),
        }
    }
}

/// Values from the file or the Rails app, given to clap as defaults. Holds secrets:
/// deliberately not `Debug`.
#[derive(Clone)]
struct Injected {
    values: Vec<String>,
    origin: String,
}

/// The config file, read and checked against the flags.
struct FileLayer {
    path: PathBuf,
    values: BTreeMap<String, Vec<String>>,
    channels: Option<(Vec<StreamChannelSpec>, toml::Value)>,
}

impl Loaded {
    /// Loads from the process's arguments and environment.
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn from_env() -> Result<Loaded, LoadError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Loaded::from_args(std::env::args_os().collect(), &env)
    }

    /// Loads from `args` (the first is the program name). `env` looks up the
    /// variables read before the parse (`FERROCABLE_CONFIG`, `FERROCABLE_RAILS_ROOT`,
    /// `RAILS_ENV`, `RACK_ENV`, and those `cable.yml`'s ERB reads) and Rails'
    /// `DATABASE_URL`; clap reads the flags' own variables from the process
    /// environment. The files the flags name are read into [`Config::read`].
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn from_args(
        args: Vec<OsString>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Loaded, LoadError> {
        let base = Config::command();
        let file = match scan(&args, "config").or_else(|| env("FERROCABLE_CONFIG")) {
            Some(path) => Some(read_file(&base, Path::new(&path))?),
            None => None,
        };
        let in_file = |id: &str| {
            file.as_ref()
                .and_then(|f| f.values.get(id))
                .and_then(|v| v.first().cloned())
        };
        let mut injected = BTreeMap::new();
        let rails_env = match scan(&args, "rails-env").or_else(|| env("RAILS_ENV")) {
            Some(e) => e,
            None => match env("RACK_ENV") {
                Some(e) => {
                    let origin = "env RACK_ENV".to_owned();
                    injected.insert("rails_env".to_owned(), Injected::one(&e, origin));
                    e
                }
                None => in_file("rails_env").unwrap_or_else(|| "development".to_owned()),
            },
        };
        let rails_root = scan(&args, "rails-root")
            .or_else(|| env("FERROCABLE_RAILS_ROOT"))
            .or_else(|| in_file("rails_root"));
        if let Some(root) = rails_root {
            read_rails(Path::new(&root), &rails_env, env, &mut injected)?;
        }
        let mut channels = None;
        if let Some(file) = file {
            let origin = format!("file {}", file.path.display());
            for (id, values) in file.values {
                if id == "rails_env" && injected.contains_key(&id) {
                    // RACK_ENV, an environment variable, beats the file.
                    continue;
                }
                let origin = origin.clone();
                injected.insert(id, Injected { values, origin });
            }
            channels = file.channels.map(|c| (file.path, c));
        }
        let mut cmd = base;
        for (id, inj) in &injected {
            let values = inj.values.clone();
            cmd = cmd.mut_arg(id.as_str(), |a| a.default_values(values));
        }
        let matches = cmd.try_get_matches_from(args)?;
        let mut config = Config::from_arg_matches(&matches)?;
        config.read = Read::of(&config, env);
        let channels = channels.map(|(path, (specs, raw))| {
            config.inline_channels = specs;
            (path, raw)
        });
        Ok(Loaded {
            config,
            matches,
            injected,
            channels,
        })
    }

    /// Where the value of `arg` came from.
    fn origin(&self, arg: &Arg) -> String {
        let id = arg.get_id().as_str();
        match self.matches.value_source(id) {
            Some(ValueSource::CommandLine) => {
                format!("flag --{}", arg.get_long().unwrap_or(id))
            }
            Some(ValueSource::EnvVariable) => format!(
                "env {}",
                arg.get_env()
                    .map(OsStr::to_string_lossy)
                    .unwrap_or_default()
            ),
            // A default, or an empty list (which has no source of its own).
            _ => match self.injected.get(id) {
                Some(inj) => inj.origin.clone(),
                None => "default".to_owned(),
            },
        }
    }

    /// The effective configuration as TOML that `--config` accepts, each value with a
    /// comment saying where it came from. Secrets (and passwords in URLs) are replaced
    /// by `<redacted>` and their lines commented out, so feeding the output back keeps
    /// taking them from where they came from.
    pub fn render(&self) -> String {
        let cmd = Config::command();
        let mut out = String::from(
            "# ferrocable --print-config: the effective configuration.\n\
             # Precedence: flag > environment variable > config file > --rails-root > default.\n\
             # Secrets are redacted and their lines commented out.\n\n",
        );
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if NOT_IN_FILE.contains(&long) {
                continue;
            }
            let values: Vec<String> = self
                .matches
                .get_raw(arg.get_id().as_str())
                .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let list = matches!(arg.get_action(), ArgAction::Append);
            if values.is_empty() && !list {
                out.push_str(&format!("# {long}: not set\n"));
                continue;
            }
            let origin = self.origin(arg);
            let secret = arg.is_hide_env_values_set() || arg.get_id() == "redis_url";
            let mut redacted = false;
            let shown: Vec<String> = values
                .iter()
                .map(|v| {
                    if !secret {
                        return toml_value(arg, v);
                    }
                    let (text, hidden) = redact(v);
                    redacted |= hidden;
                    toml::Value::String(text).to_string()
                })
                .collect();
            let value = if list {
                format!("[{}]", shown.join(", "))
            } else {
                shown.join("")
            };
            if redacted {
                out.push_str(&format!("# {long} = {value}  # {origin} (redacted)\n"));
            } else {
                out.push_str(&format!("{long} = {value}  # {origin}\n"));
            }
        }
        if let Some((path, raw)) = &self.channels {
            let mut table = toml::Table::new();
            table.insert("channels".into(), raw.clone());
            out.push_str(&format!("\n# channels declared in {}\n", path.display()));
            out.push_str(&toml::to_string(&table).unwrap_or_default());
        }
        out
    }
}

impl std::fmt::Debug for Loaded {
    /// The configuration (its secrets redacted) and the injected settings' origins,
    /// never the raw values clap holds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origins: BTreeMap<&str, &str> = self
            .injected
            .iter()
            .map(|(id, inj)| (id.as_str(), inj.origin.as_str()))
            .collect();
        f.debug_struct("Loaded")
            .field("config", &self.config)
            .field("injected", &origins)
            .finish_non_exhaustive()
    }
}

impl Injected {
    fn one(value: &str, origin: String) -> Injected {
        Injected {
            values: vec![value.to_owned()],
            origin,
        }
    }
}

/// The value of `--long VALUE` or `--long=VALUE` in `args`, before any `--`.
fn scan(args: &[OsString], long: &str) -> Option<String> {
    let flag = format!("--{long}");
    let prefix = format!("{flag}=");
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == flag {
            return it.next().map(|v| v.into_owned()).filter(|v| !v.is_empty());
        }
        if let Some(v) = a.strip_prefix(&prefix) {
            return Some(v.to_owned()).filter(|v| !v.is_empty());
        }
    }
    None
}

/// Adds what the Rails app at `root` says to `injected`.
fn read_rails(
    root: &Path,
    rails_env: &str,
    env: &dyn Fn(&str) -> Option<String>,
    injected: &mut BTreeMap<String, Injected>,
) -> Result<(), LoadError> {
    let cable = rails::read_cable_yml(root, rails_env, env)?;
    let origin = format!("rails-root {} ({rails_env})", cable.path.display());
    if let Some(url) = &cable.redis_url {
        injected.insert("redis_url".into(), Injected::one(url, origin.clone()));
    }
    if let Some(prefix) = &cable.channel_prefix {
        injected.insert("channel_prefix".into(), Injected::one(prefix, origin));
    }
    if let Some((path, secret)) = rails::development_secret(root, rails_env)? {
        let origin = format!("rails-root {}", path.display());
        injected.insert("secret_key_base".into(), Injected::one(&secret, origin));
    }
    Ok(())
}

/// A TOML scalar as the text a flag would be given.
fn scalar_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

fn read_file(cmd: &Command, path: &Path) -> Result<FileLayer, LoadError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: shown.clone(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| LoadError::Toml {
        path: shown.clone(),
        why: e.to_string(),
    })?;
    let bad = |key: &str, why: String| LoadError::BadValue {
        path: shown.clone(),
        key: key.to_owned(),
        why,
    };
    let mut layer = FileLayer {
        path: path.to_owned(),
        values: BTreeMap::new(),
        channels: None,
    };
    let mut spelled: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in table {
        if key == "channels" {
            let specs: Vec<StreamChannelSpec> = value
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| bad(&key, e.to_string()))?;
            layer.channels = Some((specs, value));
            continue;
        }
        let long = key.replace('_', "-");
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && !NOT_IN_FILE.contains(&long.as_str()))
        else {
            return Err(LoadError::UnknownKey { path: shown, key });
        };
        if let Some(first) = spelled.insert(long.clone(), key.clone()) {
            return Err(LoadError::DuplicateKey {
                path: shown,
                first,
                second: key,
            });
        }
        let single = "expected a string, number or boolean";
        let values = match (value, arg.get_action()) {
            (toml::Value::Array(items), ArgAction::Append) => items
                .iter()
                .map(|v| scalar_text(v).ok_or_else(|| bad(&key, format!("list items: {single}"))))
                .collect::<Result<Vec<_>, _>>()?,
            (v, ArgAction::Append) => {
                let text = scalar_text(&v).ok_or_else(|| bad(&key, single.into()))?;
                match arg.get_value_delimiter() {
                    Some(d) => text.split(d).map(str::to_owned).collect(),
                    None => vec![text],
                }
            }
            (v, _) => vec![scalar_text(&v).ok_or_else(|| bad(&key, single.into()))?],
        };
        // The flag's own parser judges each value, as if it were given on the command
        // line.
        let check = Command::new("ferrocable")
            .no_binary_name(true)
            .arg(arg.clone());
        for v in &values {
            check
                .clone()
                .try_get_matches_from([format!("--{long}={v}")])
                .map_err(|e| bad(&key, clap_reason(&e)))?;
        }
        layer.values.insert(arg.get_id().to_string(), values);
    }
    Ok(layer)
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// `value` as a TOML value of the argument's type (numbers and booleans bare).
fn toml_value(arg: &Arg, value: &str) -> String {
    use std::any::TypeId;
    let id = arg.get_value_parser().type_id();
    let typed = [
        TypeId::of::<bool>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<f64>(),
    ]
    .iter()
    .any(|t| id == *t);
    if typed {
        if let Ok(t) = format!("v = {value}").parse::<toml::Table>() {
            if matches!(
                t.get("v"),
                Some(toml::Value::Boolean(_) | toml::Value::Integer(_) | toml::Value::Float(_))
            ) {
                return value.to_owned();
            }
        }
    }
    toml::Value::String(value.to_owned()).to_string()
}

/// A secret value for display: a URL keeps everything but its password; anything else
/// is replaced whole. Returns the text and whether anything was hidden.
pub fn redact(value: &str) -> (String, bool) {
    if let Some((scheme, rest)) = value.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        return match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                let hidden = userinfo.contains(':');
                let userinfo = if hidden {
                    format!("{user}:<redacted>")
                } else {
                    user.to_owned()
                };
                (format!("{scheme}://{userinfo}@{host}{tail}"), hidden)
            }
            None => (value.to_owned(), false),
        };
    }
    ("<redacted>".to_owned(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], vars: &[(&str, &str)]) -> Result<Loaded, LoadError> {
        let mut v: Vec<OsString> = vec!["ferrocable".into()];
        v.extend(args.iter().map(OsString::from));
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Loaded::from_args(v, &env)
    }

    fn file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ferrocable.toml");
        std::fs::write(&path, text).expect("write");
        let shown = path.display().to_string();
        (dir, shown)
    }

    #[test]
    fn file_values_are_defaults_that_flags_override() {
        let (_d, path) = file(
            "max-connections = 7\nmax_subscriptions = 9\nallowed-origins = [\"http://a\", \"/b/\"]\n\
             drain-delay = 2\nstrict-presence = true\n",
        );
        let l = load(&["--config", &path], &[]).expect("loads");
        assert_eq!(l.config.max_connections, 7);
        assert_eq!(l.config.max_subscriptions, 9);
        assert_eq!(l.config.allowed_origins, vec!["http://a", "/b/"]);
        assert_eq!(l.config.drain_delay, 2.0);
        assert!(l.config.strict_presence);
        let l = load(&["--config", &path, "--max-connections", "8"], &[]).expect("loads");
        assert_eq!(l.config.max_connections, 8);
        let text = l.render();
        assert!(
            text.contains("max-connections = 8  # flag --max-connections"),
            "{text}"
        );
        assert!(
            text.contains(&format!("max-subscriptions = 9  # file {path}")),
            "{text}"
        );
        assert!(text.contains("port = 8080  # default"), "{text}");
        // A comma-separated string works for a list too.
        let (_d, path) = file("allowed_origins = \"http://a,http://b\"\n");
        let l = load(&[&format!("--config={path}")], &[]).expect("loads");
        assert_eq!(l.config.allowed_origins, vec!["http://a", "http://b"]);
    }

    #[test]
    fn file_errors_name_the_file_and_key() {
        let (_d, path) = file("max-conections = 7\n");
        let e = load(&["--config", &path], &[]).unwrap_err().to_string();
        assert!(
            e.contains(&path) && e.contains("unknown key `max-conections`"),
            "{e}"
        );
        let (_d, path) = file("max-connections = \"many\"\n");
        let e = load(&["--config", &path], &[]).unwrap_err().to_string();
        assert!(
            e.contains("`max-connections`") && e.contains("invalid"),
            "{e}"
        );
        let (_d, path) = file("port = [1]\n");
        let e = load(&["--config", &path], &[]).unwrap_err().to_string();
        assert!(e.contains("`port`: expected a string"), "{e}");
        let (_d, path) = file("node-ttl = 1\nnode_ttl = 2\n");
        let e = load(&["--config", &path], &[]).unwrap_err();
        assert!(matches!(e, LoadError::DuplicateKey { .. }), "{e}");
        assert!(e.to_string().contains("are the same setting"), "{e}");
        let (_d, path) = file("config = \"other.toml\"\n");
        assert!(matches!(
            load(&["--config", &path], &[]),
            Err(LoadError::UnknownKey { .. })
        ));
        let (_d, path) = file("port = \n");
        assert!(matches!(
            load(&["--config", &path], &[]),
            Err(LoadError::Toml { .. })
        ));
        assert!(matches!(
            load(&["--config", "/nonexistent/ferrocable.toml"], &[]),
            Err(LoadError::Read { .. })
        ));
    }

    #[test]
    fn inline_channels_are_read() {
        let (_d, path) = file(
            "port = 1\n[[channels]]\nname = \"ChatChannel\"\nstream = \"chat_{room}\"\n\
             [channels.actions]\nspeak = [\"text\"]\n",
        );
        let l = load(&["--config", &path], &[]).expect("loads");
        assert_eq!(l.config.inline_channels.len(), 1);
        assert_eq!(l.config.inline_channels[0].name, "ChatChannel");
        let text = l.render();
        assert!(
            text.contains("[[channels]]") && text.contains("chat_{room}"),
            "{text}"
        );
        let round: toml::Table = text.parse().expect("valid TOML");
        assert!(round.contains_key("channels"));
        let checked = l.config.check().expect("valid");
        assert_eq!(checked.channels.declared.len(), 1);
    }

    #[test]
    fn the_file_beats_rails_root_and_can_name_it() {
        let app = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(app.path().join("config")).expect("mkdir");
        std::fs::write(
            app.path().join("config/cable.yml"),
            "production:\n  adapter: redis\n  url: redis://from-rails:6379/1\n  channel_prefix: app_production\n",
        )
        .expect("write");
        let (_d, path) = file(&format!(
            "rails_root = {:?}\nrails-env = \"production\"\nredis-url = \"redis://from-file:6379/2\"\n",
            app.path().display().to_string()
        ));
        let l = load(&["--config", &path], &[]).expect("loads");
        if std::env::var_os("RAILS_ENV").is_some() || std::env::var_os("REDIS_URL").is_some() {
            return; // the process environment outranks the file
        }
        assert_eq!(
            l.config.redis_url.as_deref(),
            Some("redis://from-file:6379/2")
        );
        assert_eq!(l.config.channel_prefix.as_deref(), Some("app_production"));
        let text = l.render();
        assert!(
            text.contains("channel-prefix = \"app_production\"  # rails-root ")
                && text.contains("config/cable.yml (production)"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "redis-url = \"redis://from-file:6379/2\"  # file {path}"
            )),
            "{text}"
        );
        // A flag still beats both.
        let l = load(&["--config", &path, "--channel-prefix", "p"], &[]).expect("loads");
        assert_eq!(l.config.channel_prefix.as_deref(), Some("p"));
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let (_d, path) = file("jwt-secret = \"FILE-SECRET\"\n");
        let l = load(
            &["--config", &path, "--secret-key-base", "FLAG-SECRET"],
            &[],
        )
        .expect("loads");
        let shown = format!("{l:?}");
        assert!(
            !shown.contains("FILE-SECRET") && !shown.contains("FLAG-SECRET"),
            "{shown}"
        );
        assert!(shown.contains("jwt_secret"), "{shown}");
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact("s3cret"), ("<redacted>".into(), true));
        assert_eq!(
            redact("redis://:pw@h:6379/1"),
            ("redis://:<redacted>@h:6379/1".into(), true)
        );
        assert_eq!(
            redact("postgres://u:pw@h/db?x=1"),
            ("postgres://u:<redacted>@h/db?x=1".into(), true)
        );
        assert_eq!(redact("redis://h:6379"), ("redis://h:6379".into(), false));
        assert_eq!(redact("redis://u@h"), ("redis://u@h".into(), false));
    }

    #[test]
    fn rack_env_is_the_fallback_of_rails_env() {
        let l = load(&[], &[("RACK_ENV", "staging")]).expect("loads");
        if std::env::var_os("RAILS_ENV").is_none() {
            assert_eq!(l.config.rails_env, "staging");
            assert!(l
                .render()
                .contains("rails-env = \"staging\"  # env RACK_ENV"));
        }
        assert_eq!(
            scan(
                &["x".into(), "--".into(), "--config".into(), "f".into()],
                "config"
            ),
            None
        );
    }
}
