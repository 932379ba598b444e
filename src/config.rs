//! Configuration: command-line flags with environment fallbacks, checked once before
//! any socket binds.
//!
//! Rails' own variable names are used where they exist (`PORT`); everything else is
//! `FERROCABLE_*`. [`Config::check`] turns the raw flags into a [`Checked`] config or a
//! [`ConfigError`] that names the bad value.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use regex::Regex;
use serde::Deserialize;

use crate::channels::StreamChannelSpec;

/// ferrocable: a standalone Action Cable server for Rails apps.
#[derive(Debug, Clone, Parser)]
#[command(name = "ferrocable", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "FERROCABLE_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one; the chosen address is printed).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Path of the WebSocket endpoint (Rails' `mount_path`).
    #[arg(long, env = "FERROCABLE_PATH", default_value = "/cable")]
    pub path: String,

    /// Allowed `Origin` values, comma-separated. An entry written `/…/` is a regular
    /// expression (matching anywhere unless anchored, like Ruby's `===`); anything else
    /// must match exactly. Rails' `allowed_request_origins`.
    #[arg(long, env = "FERROCABLE_ALLOWED_ORIGINS", value_delimiter = ',', num_args = 0..)]
    pub allowed_origins: Vec<String>,

    /// Accept an `Origin` equal to `<scheme>://<Host header>` (Rails'
    /// `allow_same_origin_as_host`).
    #[arg(long, env = "FERROCABLE_ALLOW_SAME_ORIGIN_AS_HOST", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_same_origin_as_host: bool,

    /// Turn the Origin check off (Rails' `disable_request_forgery_protection`).
    #[arg(long, env = "FERROCABLE_DISABLE_FORGERY_PROTECTION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub disable_forgery_protection: bool,

    /// DEVELOPMENT ONLY: identify connections by this query parameter
    /// (`/cable?user_id=1`). Anyone can claim any user; off unless set.
    #[arg(long, env = "FERROCABLE_DEV_USER_PARAM")]
    pub dev_user_param: Option<String>,

    /// A users file (JSON array or TOML `[[users]]` of id, name, avatar_url) naming the
    /// users in presence payloads; ids not in it are refused. Without it every id is a
    /// user with null name and avatar_url.
    #[arg(long, env = "FERROCABLE_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// A TOML file declaring stream channels (`[[channels]]` with name, stream,
    /// actions), e.g. a `ChatChannel`.
    #[arg(long, env = "FERROCABLE_CHANNELS_FILE")]
    pub channels_file: Option<PathBuf>,

    /// Strict Rails presence: do not replay the roster to a new subscriber.
    #[arg(long, env = "FERROCABLE_STRICT_PRESENCE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub strict_presence: bool,

    /// Frames queued per connection before it counts as slow and is disconnected.
    #[arg(long, env = "FERROCABLE_OUTBOX_CAPACITY", default_value_t = 256)]
    pub outbox_capacity: usize,

    /// Largest client message accepted, in bytes; a larger one closes the connection
    /// with code 1009.
    #[arg(long, env = "FERROCABLE_MAX_MESSAGE_SIZE", default_value_t = 1 << 20)]
    pub max_message_size: usize,

    /// Most subscriptions one connection may hold; past it, subscribes are rejected.
    #[arg(long, env = "FERROCABLE_MAX_SUBSCRIPTIONS", default_value_t = 512)]
    pub max_subscriptions: usize,

    /// Most WebSocket connections held at once; past it, upgrades get HTTP 503.
    #[arg(long, env = "FERROCABLE_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,

    /// Seconds to wait for connections to finish after SIGTERM before exiting anyway.
    #[arg(long, env = "FERROCABLE_SHUTDOWN_TIMEOUT", default_value_t = 10.0)]
    pub shutdown_timeout: f64,

    /// Redis URL (`redis://[:password@]host:port[/db]`): run as one node of a fleet,
    /// relaying broadcasts through Redis pub/sub as Rails' `redis` adapter does and
    /// keeping presence in Redis under the app's keys. Unset: embedded (one node, in
    /// memory).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// `channel_prefix` of the app's `cable.yml`: broadcasting `X` is the Redis channel
    /// `<prefix>:X` (unset: `X`). Must match the app's.
    #[arg(long, env = "FERROCABLE_CHANNEL_PREFIX")]
    pub channel_prefix: Option<String>,

    /// This node's id in the fleet (letters, digits, `.`, `_`, `-`, `:`); random when
    /// unset. Redis mode only.
    #[arg(long, env = "FERROCABLE_NODE_ID")]
    pub node_id: Option<String>,

    /// Seconds a node counts as alive after its last refresh in Redis (it refreshes
    /// every third of this). A crashed node's users leave within about 5/3 of it.
    #[arg(long, env = "FERROCABLE_NODE_TTL", default_value_t = 15.0)]
    pub node_ttl: f64,

    /// Log format: `text` or `json`. The level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "FERROCABLE_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// One allowed-origin rule.
#[derive(Debug, Clone)]
pub enum OriginRule {
    /// Exact string equality.
    Exact(String),
    /// A regular expression (unanchored unless written with anchors).
    Pattern(Regex),
}

impl OriginRule {
    /// Whether `origin` is allowed by this rule.
    pub fn matches(&self, origin: &str) -> bool {
        match self {
            OriginRule::Exact(s) => s == origin,
            OriginRule::Pattern(r) => r.is_match(origin),
        }
    }
}

/// The Origin check, as Rails' `allow_request_origin?` does it.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// `disable_request_forgery_protection`.
    pub disabled: bool,
    /// `allow_same_origin_as_host`.
    pub same_as_host: bool,
    /// `allowed_request_origins`.
    pub allowed: Vec<OriginRule>,
}

/// The channels file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsFile {
    /// Declared stream channels.
    #[serde(default)]
    pub channels: Vec<StreamChannelSpec>,
}

/// A configuration that passed every check.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The raw flags.
    pub raw: Config,
    /// Where to bind.
    pub addr: SocketAddr,
    /// The Origin check.
    pub origins: Arc<OriginPolicy>,
    /// Declared channels.
    pub channels: ChannelsFile,
    /// Shutdown grace period.
    pub shutdown_timeout: Duration,
}

/// A configuration value is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The endpoint path does not start with `/`.
    #[error("--path must start with '/', got {0:?}")]
    BadPath(String),
    /// An origin regex does not compile.
    #[error("allowed origin {pattern:?} is not a valid regular expression: {source}")]
    BadOriginPattern {
        /// The pattern.
        pattern: String,
        /// Why.
        #[source]
        source: regex::Error,
    },
    /// A numeric limit is zero or out of range.
    #[error("{name} must be {what}, got {value}")]
    BadLimit {
        /// The flag.
        name: &'static str,
        /// The constraint.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// The channels file cannot be read or parsed.
    #[error("channels file {path}: {why}")]
    ChannelsFile {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The dev user param is empty.
    #[error("--dev-user-param must not be empty")]
    EmptyDevParam,
    /// The node id has characters our Redis keys cannot hold.
    #[error("--node-id must be letters, digits, '.', '_', '-' or ':', got {0:?}")]
    BadNodeId(String),
}

impl Config {
    /// Parses flags and environment, exiting with a usage message on bad syntax.
    pub fn from_args() -> Self {
        Config::parse()
    }

    /// Checks every value and derives what the server needs.
    ///
    /// # Errors
    /// The first invalid value, named.
    pub fn check(self) -> Result<Checked, ConfigError> {
        if !self.path.starts_with('/') {
            return Err(ConfigError::BadPath(self.path));
        }
        let mut allowed = Vec::new();
        for entry in self
            .allowed_origins
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            if entry.len() >= 2 && entry.starts_with('/') && entry.ends_with('/') {
                let pattern = &entry[1..entry.len() - 1];
                let re = Regex::new(pattern).map_err(|source| ConfigError::BadOriginPattern {
                    pattern: pattern.to_owned(),
                    source,
                })?;
                allowed.push(OriginRule::Pattern(re));
            } else {
                allowed.push(OriginRule::Exact(entry.to_owned()));
            }
        }
        for (name, value) in [
            ("--outbox-capacity", self.outbox_capacity),
            ("--max-message-size", self.max_message_size),
            ("--max-subscriptions", self.max_subscriptions),
            ("--max-connections", self.max_connections),
        ] {
            if value == 0 {
                return Err(ConfigError::BadLimit {
                    name,
                    what: "at least 1",
                    value: value.to_string(),
                });
            }
        }
        if !(self.shutdown_timeout.is_finite() && (0.0..=3600.0).contains(&self.shutdown_timeout)) {
            return Err(ConfigError::BadLimit {
                name: "--shutdown-timeout",
                what: "between 0 and 3600 seconds",
                value: self.shutdown_timeout.to_string(),
            });
        }
        if self
            .dev_user_param
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
        {
            return Err(ConfigError::EmptyDevParam);
        }
        if !(self.node_ttl.is_finite() && (0.3..=3600.0).contains(&self.node_ttl)) {
            return Err(ConfigError::BadLimit {
                name: "--node-ttl",
                what: "between 0.3 and 3600 seconds",
                value: self.node_ttl.to_string(),
            });
        }
        if let Some(id) = &self.node_id {
            let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
            if id.is_empty() || !id.chars().all(ok) {
                return Err(ConfigError::BadNodeId(id.clone()));
            }
        }
        let channels = match &self.channels_file {
            None => ChannelsFile::default(),
            Some(path) => {
                let shown = path.display().to_string();
                let text =
                    std::fs::read_to_string(path).map_err(|e| ConfigError::ChannelsFile {
                        path: shown.clone(),
                        why: e.to_string(),
                    })?;
                toml::from_str(&text).map_err(|e| ConfigError::ChannelsFile {
                    path: shown,
                    why: e.to_string(),
                })?
            }
        };
        Ok(Checked {
            addr: SocketAddr::new(self.host, self.port),
            origins: Arc::new(OriginPolicy {
                disabled: self.disable_forgery_protection,
                same_as_host: self.allow_same_origin_as_host,
                allowed,
            }),
            channels,
            shutdown_timeout: Duration::from_secs_f64(self.shutdown_timeout),
            raw: self,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut v = vec!["ferrocable"];
        v.extend_from_slice(args);
        Config::try_parse_from(v).expect("valid flags")
    }

    #[test]
    fn defaults_check() {
        let c = parse(&[]).check().expect("defaults are valid");
        assert_eq!(c.raw.path, "/cable");
        assert!(c.origins.same_as_host && !c.origins.disabled);
    }

    #[test]
    fn origins_parse_exact_and_patterns() {
        let c = parse(&[
            "--allowed-origins",
            "http://a.test,/^https?:\\/\\/localhost:\\d+$/",
        ])
        .check()
        .expect("valid");
        assert!(c.origins.allowed[0].matches("http://a.test"));
        assert!(!c.origins.allowed[0].matches("http://a.test/"));
        assert!(c.origins.allowed[1].matches("http://localhost:3000"));
        assert!(!c.origins.allowed[1].matches("http://localhost:x"));
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse(&["--allowed-origins", "/(/"]).check().unwrap_err();
        assert!(
            e.to_string().contains("not a valid regular expression"),
            "{e}"
        );
        let e = parse(&["--path", "cable"]).check().unwrap_err();
        assert!(e.to_string().contains("--path"), "{e}");
        let e = parse(&["--outbox-capacity", "0"]).check().unwrap_err();
        assert!(e.to_string().contains("--outbox-capacity"), "{e}");
        let e = parse(&["--channels-file", "/nonexistent/x.toml"])
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("channels file"), "{e}");
        assert!(Config::try_parse_from(["ferrocable", "--port", "nope"]).is_err());
        let e = parse(&["--node-id", "a/b"]).check().unwrap_err();
        assert!(e.to_string().contains("--node-id"), "{e}");
        let e = parse(&["--node-ttl", "0"]).check().unwrap_err();
        assert!(e.to_string().contains("--node-ttl"), "{e}");
    }

    #[test]
    fn redis_flags_parse() {
        let c = parse(&[
            "--redis-url",
            "redis://127.0.0.1:6390/0",
            "--channel-prefix",
            "refapp",
            "--node-id",
            "web-1.a_b:2",
            "--node-ttl",
            "1.5",
        ])
        .check()
        .expect("valid");
        assert_eq!(c.raw.redis_url.as_deref(), Some("redis://127.0.0.1:6390/0"));
        assert_eq!(c.raw.channel_prefix.as_deref(), Some("refapp"));
        assert_eq!(c.raw.node_id.as_deref(), Some("web-1.a_b:2"));
        assert_eq!(c.raw.node_ttl, 1.5);
        // Rails keeps an empty prefix (`:chat_lobby`); so do we.
        let c = parse(&["--channel-prefix", ""]).check().expect("valid");
        assert_eq!(c.raw.channel_prefix.as_deref(), Some(""));
    }
}
