//! Configuration: command-line flags, environment variables, a TOML file and a Rails
//! app's own files, checked once before any socket binds.
//!
//! Precedence, highest first: flag > environment variable > `--config` file >
//! `--rails-root` > built-in default ([`load`] does the layering). Rails' own variable
//! names are used where they exist (`PORT`); everything else is `FERROCABLE_*`.
//! [`Config::check`] turns the raw values into a [`Checked`] config or a
//! [`ConfigError`] that names the bad value.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;
use regex::Regex;
use serde::Deserialize;

use crate::auth::rails::DigestMode;
use crate::auth::AuthSettings;
use crate::broker::BrokerSettings;
use crate::channels::{ChannelsSettings, StreamChannelSpec};
use crate::presence::PresenceSettings;

mod check;
pub mod load;
pub mod rails;
pub mod settings;

pub use crate::auth::{IdentifierSpec, ProfileSpec};
pub use load::{LoadError, Loaded, Read};
pub use settings::{CommandRate, HttpSettings, LimitsSettings, ShutdownSettings};

/// ferrocable: a standalone Action Cable server for Rails apps.
#[derive(Debug, Clone, Parser)]
#[command(name = "ferrocable", version, about, long_about = None)]
pub struct Config {
    /// A TOML configuration file. Its keys are the long flags (`max-connections` or
    /// `max_connections`), plus `[[channels]]` tables; flags and environment variables
    /// override it, and it overrides `--rails-root`.
    #[arg(long, env = "FERROCABLE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML (usable as --config), each value with
    /// where it came from and secrets redacted, and exit.
    #[arg(long)]
    pub print_config: bool,

    /// A Rails app's root directory: read `config/cable.yml` (adapter, url,
    /// channel_prefix) for --rails-env and, in development, the app's
    /// `tmp/local_secret.txt` as the secret_key_base.
    #[arg(long, env = "FERROCABLE_RAILS_ROOT")]
    pub rails_root: Option<PathBuf>,

    /// The Rails environment whose `cable.yml` section is read (`RACK_ENV` when
    /// `RAILS_ENV` is unset).
    #[arg(long, env = "RAILS_ENV", default_value = "development")]
    pub rails_env: String,

    /// Stream channels declared inline in the config file (`[[channels]]`).
    #[arg(skip)]
    pub inline_channels: Vec<StreamChannelSpec>,

    /// What [`Loaded`] read for the check (the files named by flags, `DATABASE_URL`).
    #[arg(skip)]
    pub read: load::Read,

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

    /// The Rails app's `secret_key_base`: keys for its signed, encrypted and session
    /// cookies are derived from it at startup.
    #[arg(long, env = "SECRET_KEY_BASE", hide_env_values = true)]
    pub secret_key_base: Option<Secret>,

    /// Older `secret_key_base` values still accepted when reading cookies (rotation),
    /// comma-separated.
    #[arg(
        long,
        env = "FERROCABLE_OLD_SECRET_KEY_BASES",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub old_secret_key_bases: Vec<Secret>,

    /// PBKDF2 digest of the key generator: `sha1` (Rails ≤ 6.1 defaults), `sha256`
    /// (`load_defaults 7.0`+) or `auto` (both).
    #[arg(long, env = "FERROCABLE_KEY_DIGEST", default_value = "auto")]
    pub key_digest: DigestArg,

    /// HMAC digest of signed cookies (`signed_cookie_digest`): `sha1`, `sha256` or `auto`.
    #[arg(long, env = "FERROCABLE_SIGNED_COOKIE_DIGEST", default_value = "auto")]
    pub signed_cookie_digest: DigestArg,

    /// Encrypted cookie format: `gcm` (Rails 5.2+), `cbc` (legacy) or `auto`.
    #[arg(
        long,
        env = "FERROCABLE_ENCRYPTED_COOKIE_CIPHER",
        default_value = "auto"
    )]
    pub encrypted_cookie_cipher: CipherArg,

    /// Cookie serializer (`cookies_serializer`): `json`, `marshal` or `hybrid`
    /// (Marshal is read as a safe data-only subset).
    #[arg(long, env = "FERROCABLE_COOKIE_SERIALIZER", default_value = "json")]
    pub cookie_serializer: SerializerArg,

    /// How to identify a connection, tried in order, comma-separated:
    /// `signed_cookie:NAME`, `encrypted_cookie:NAME`, `session:COOKIE:key.path`
    /// (e.g. `session:_myapp_session:warden.user.user.key`), `jwt`. Default:
    /// `encrypted_cookie:user_id,signed_cookie:user_id` when a secret_key_base is set,
    /// then `jwt` when a JWT key is set.
    #[arg(long, env = "FERROCABLE_IDENTIFIERS", value_delimiter = ',')]
    pub identifiers: Vec<String>,

    /// Shared secret of HS256/384/512 tokens.
    #[arg(long, env = "FERROCABLE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// PEM public key file of RS256/ES256 tokens.
    #[arg(long, env = "FERROCABLE_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// The one JWT algorithm accepted: HS256, HS384, HS512, RS256 or ES256.
    #[arg(long, env = "FERROCABLE_JWT_ALGORITHM", default_value = "HS256")]
    pub jwt_algorithm: String,

    /// The claim holding the user id.
    #[arg(long, env = "FERROCABLE_JWT_CLAIM", default_value = "user_id")]
    pub jwt_claim: String,

    /// The query parameter carrying the token (`/cable?token=…`).
    #[arg(long, env = "FERROCABLE_JWT_PARAM", default_value = "token")]
    pub jwt_param: String,

    /// Trust a token's `name` and `avatar_url` claims as the user's profile: such a
    /// token connects without a profile lookup, so a user missing from the users file
    /// or database (deleted, say) still connects while the token is valid. Off: the
    /// token names the user id only, and the profile source decides who exists.
    #[arg(long, env = "FERROCABLE_JWT_PROFILE_CLAIMS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub jwt_profile_claims: bool,

    /// GlobalID app name (the Rails application module, underscored) used to name
    /// connections as `current_user.to_gid_param` does; needed for remote disconnects.
    #[arg(long, env = "FERROCABLE_GLOBALID_APP")]
    pub globalid_app: Option<String>,

    /// The user model's class name in GlobalIDs.
    #[arg(long, env = "FERROCABLE_GLOBALID_MODEL", default_value = "User")]
    pub globalid_model: String,

    /// `config.turbo.signed_stream_verifier_key`, when the app sets one. Otherwise
    /// `Turbo::StreamsChannel` derives it from `secret_key_base`, as turbo-rails does.
    #[arg(long, env = "FERROCABLE_TURBO_VERIFIER_KEY", hide_env_values = true)]
    pub turbo_verifier_key: Option<Secret>,

    /// A users file (JSON array or TOML `[[users]]` of id, name, avatar_url) naming the
    /// users in presence payloads; ids not in it are refused. Without it every id is a
    /// user with null name and avatar_url.
    #[arg(long, env = "FERROCABLE_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// Where user profiles come from: `auto` (the database if --database-url is set,
    /// else the users file if set, else every id is a user with null name and
    /// avatar_url), `database`, `users-file` or `id-only`. `database` also falls back to
    /// Rails' own `DATABASE_URL`; `auto` never reads it, so a ferrocable started in the
    /// app's environment does not query the app's database unless told to.
    #[arg(long, env = "FERROCABLE_PROFILE_SOURCE", default_value = "auto")]
    pub profile_source: ProfileSourceArg,

    /// The Rails app's database, queried for user profiles: `postgres://…`,
    /// `mysql://…` (also Rails' `mysql2://`, `trilogy://`, and `mariadb://`) or
    /// `sqlite:path` (also `sqlite3:path`). Users without a row are refused.
    #[arg(long, env = "FERROCABLE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// The profile query; its one parameter is the user id, and it returns columns
    /// `id`, and optionally `name` and `avatar_url`. Default: `SELECT id, name,
    /// avatar_url FROM users WHERE id = $1` (`?` instead of `$1` on MySQL and SQLite).
    #[arg(long, env = "FERROCABLE_PROFILE_QUERY")]
    pub profile_query: Option<String>,

    /// Users whose database profiles are cached; 0 turns the cache off.
    #[arg(long, env = "FERROCABLE_PROFILE_CACHE_SIZE", default_value_t = 10_000)]
    pub profile_cache_size: usize,

    /// Seconds a cached database profile is served (an unknown user: at most 5
    /// seconds); 0 turns the cache off.
    #[arg(long, env = "FERROCABLE_PROFILE_CACHE_TTL", default_value_t = 60)]
    pub profile_cache_ttl: u64,

    /// A TOML file declaring stream channels (`[[channels]]` with name, stream,
    /// actions), e.g. a `ChatChannel`.
    #[arg(long, env = "FERROCABLE_CHANNELS_FILE")]
    pub channels_file: Option<PathBuf>,

    /// Confirm subscriptions to channels that are neither built in nor declared, with
    /// no streams (as Rails confirms a channel that streams nothing); off: rejected.
    #[arg(long, env = "FERROCABLE_CONFIRM_UNKNOWN_CHANNELS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub confirm_unknown_channels: bool,

    /// Strict Rails presence: do not replay the roster to a new subscriber.
    #[arg(long, env = "FERROCABLE_STRICT_PRESENCE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub strict_presence: bool,

    /// Bytes queued per connection (each frame counted with a 64-byte overhead)
    /// before it counts as slow and is disconnected (`slow_client`). A client that
    /// keeps reading is never cut off for a burst that fits.
    #[arg(long, env = "FERROCABLE_OUTBOX_BYTES", default_value_t = 1 << 20)]
    pub outbox_bytes: usize,

    /// Seconds a socket write may make no progress (the client reads nothing) before
    /// the connection counts as slow and is disconnected.
    #[arg(long, env = "FERROCABLE_WRITE_TIMEOUT", default_value_t = 2.0)]
    pub write_timeout: f64,

    /// Largest subscription identifier accepted, in bytes (it holds the channel
    /// params: room ids, signed stream names); a larger one is rejected
    /// (`reject_subscription`) and its other commands ignored.
    #[arg(long, env = "FERROCABLE_MAX_IDENTIFIER_SIZE", default_value_t = 4096)]
    pub max_identifier_size: usize,

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

    /// Commands (client messages) one connection may send per second, sustained;
    /// past it the server stops reading that socket until the bucket refills
    /// (backpressure). `0` turns the limit off.
    #[arg(
        long,
        env = "FERROCABLE_MAX_COMMANDS_PER_SECOND",
        default_value_t = 100
    )]
    pub max_commands_per_second: u32,

    /// Commands one connection may send at once before the rate limit applies (the
    /// token bucket's size).
    #[arg(long, env = "FERROCABLE_COMMAND_BURST", default_value_t = 200)]
    pub command_burst: u32,

    /// Seconds a connection may stay rate-limited without a pause before it is
    /// disconnected as flooding (`invalid_request`, no reconnect).
    #[arg(long, env = "FERROCABLE_COMMAND_FLOOD_SECONDS", default_value_t = 10.0)]
    pub command_flood_seconds: f64,

    /// Seconds a client may take to send its HTTP request headers (slow-loris bound);
    /// also how long an idle keep-alive HTTP connection is kept.
    #[arg(long, env = "FERROCABLE_HANDSHAKE_TIMEOUT", default_value_t = 10.0)]
    pub handshake_timeout: f64,

    /// Largest HTTP request head (request line and headers) in bytes; a larger one is
    /// answered `431 Request Header Fields Too Large` and the connection closed.
    #[arg(long, env = "FERROCABLE_MAX_HEADER_BYTES", default_value_t = 65536)]
    pub max_header_bytes: usize,

    /// Largest `Cookie` header (all of them together) of a WebSocket upgrade, in
    /// bytes; a larger one is answered 431 before any cookie is read.
    #[arg(long, env = "FERROCABLE_MAX_COOKIE_BYTES", default_value_t = 16384)]
    pub max_cookie_bytes: usize,

    /// Seconds authentication (cookie, token, profile lookup) may take after the
    /// upgrade; past it the connection is closed with 1011 and the client retries.
    #[arg(long, env = "FERROCABLE_AUTH_TIMEOUT", default_value_t = 10.0)]
    pub auth_timeout: f64,

    /// Seconds to wait for connections to finish after SIGTERM before exiting anyway.
    #[arg(long, env = "FERROCABLE_SHUTDOWN_TIMEOUT", default_value_t = 10.0)]
    pub shutdown_timeout: f64,

    /// Seconds to keep serving after SIGTERM before disconnecting anyone (time for a
    /// load balancer to deregister this node); the listener stops at once.
    #[arg(long, env = "FERROCABLE_DRAIN_DELAY", default_value_t = 0.0)]
    pub drain_delay: f64,

    /// Seconds over which clients are told `server_restart`, spread evenly, so a fleet
    /// restart does not make every client reconnect at the same instant.
    #[arg(long, env = "FERROCABLE_DRAIN_WINDOW", default_value_t = 0.0)]
    pub drain_window: f64,

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

    /// Refuse to start when Redis is unreachable (within 10 s). Off by default: the
    /// server then starts degraded (`/health` says so, subscriptions that need Redis
    /// are rejected) and connects as soon as Redis answers.
    #[arg(long, env = "FERROCABLE_REDIS_REQUIRED", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub redis_required: bool,

    /// Log format: `text` or `json`. The level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "FERROCABLE_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// A secret value: parsed from a flag or the environment, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `sha1`, `sha256` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DigestArg {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// Either.
    Auto,
}

impl From<DigestArg> for DigestMode {
    fn from(d: DigestArg) -> Self {
        match d {
            DigestArg::Sha1 => DigestMode::Sha1,
            DigestArg::Sha256 => DigestMode::Sha256,
            DigestArg::Auto => DigestMode::Auto,
        }
    }
}

/// `gcm`, `cbc` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CipherArg {
    /// AES-256-GCM.
    Gcm,
    /// Legacy AES-256-CBC + HMAC.
    Cbc,
    /// Either.
    Auto,
}

/// `json`, `marshal` or `hybrid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SerializerArg {
    /// JSON.
    Json,
    /// Ruby Marshal (safe subset).
    Marshal,
    /// JSON, falling back to Marshal.
    Hybrid,
}

/// `--profile-source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileSourceArg {
    /// The database if configured, else the users file if given, else id only.
    Auto,
    /// The database (`--database-url`, else Rails' `DATABASE_URL`).
    Database,
    /// The users file.
    UsersFile,
    /// Every id is a user; name and avatar_url are null.
    IdOnly,
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

/// A configuration that passed every check: each component's settings.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Where to listen and what to accept.
    pub http: HttpSettings,
    /// Who the users are.
    pub auth: AuthSettings,
    /// Which broker carries broadcasts.
    pub broker: BrokerSettings,
    /// Where presence lives.
    pub presence: PresenceSettings,
    /// The channels.
    pub channels: ChannelsSettings,
    /// Per-connection limits.
    pub limits: LimitsSettings,
    /// The stop sequence.
    pub shutdown: ShutdownSettings,
    /// How logs are written.
    pub log_format: LogFormat,
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
    /// A declared channel is unusable.
    #[error("channels file: {0}")]
    Channel(#[from] crate::channels::ChannelSpecError),
    /// The dev user param is empty.
    #[error("--dev-user-param must not be empty")]
    EmptyDevParam,
    /// An `--identifiers` entry is malformed.
    #[error("--identifiers entry {0:?} is not one of signed_cookie:NAME, encrypted_cookie:NAME, session:COOKIE:key.path, jwt")]
    BadIdentifier(String),
    /// A cookie identifier is configured without a secret_key_base.
    #[error("--identifiers uses cookies but SECRET_KEY_BASE / --secret-key-base is not set")]
    MissingSecret,
    /// `jwt` is configured without a key, or the key is unusable.
    #[error(transparent)]
    Jwt(#[from] JwtSettingError),
    /// The node id has characters our Redis keys cannot hold.
    #[error("--node-id must be letters, digits, '.', '_', '-' or ':', got {0:?}")]
    BadNodeId(String),
    /// A channel is declared twice (config file and channels file, or twice in one).
    #[error("channel {0:?} is declared twice (config file [[channels]] and --channels-file)")]
    DuplicateChannel(String),
    /// The profile source is misconfigured (a bad database URL, a missing file flag).
    #[error(transparent)]
    Profiles(#[from] ProfileSettingError),
}

/// A JWT setting is unusable.
#[derive(Debug, thiserror::Error)]
pub enum JwtSettingError {
    /// `--jwt-algorithm` names no algorithm we accept.
    #[error("JWT: unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// An RS/ES algorithm with a secret.
    #[error("JWT: {0} needs --jwt-public-key-file, not a secret")]
    NeedsKeyFile(&'static str),
    /// An HS algorithm with a key file.
    #[error("JWT: {0} needs --jwt-secret, not a key file")]
    NeedsSecret(&'static str),
    /// `--jwt-public-key-file` cannot be read.
    #[error("JWT: cannot read {path}: {source}")]
    ReadKey {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    /// `--identifiers` has `jwt` but no key is set.
    #[error("JWT: --identifiers has jwt but no --jwt-secret or --jwt-public-key-file")]
    NoKey,
}

/// The profile source is misconfigured.
#[derive(Debug, thiserror::Error)]
pub enum ProfileSettingError {
    /// The database URL cannot be used (the URL itself is never shown).
    #[error("profiles: {flag}: {source}")]
    Database {
        /// `--database-url` or `DATABASE_URL`.
        flag: &'static str,
        /// Why.
        #[source]
        source: crate::auth::ProfileError,
    },
    /// `--profile-source database` and no URL.
    #[error("profiles: --profile-source database needs --database-url (FERROCABLE_DATABASE_URL) or Rails' DATABASE_URL")]
    DatabaseWithoutUrl,
    /// `--profile-source users-file` and no file.
    #[error("profiles: --profile-source users-file needs --users-file")]
    UsersFileWithoutFile,
    /// `--profile-query` without a database.
    #[error("profiles: --profile-query is set but profiles do not come from a database")]
    QueryWithoutDatabase,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags as [`Loaded`] parses them (reading the files they name), with no
    /// environment.
    fn parse(args: &[&str]) -> Config {
        let mut v = vec!["ferrocable".into()];
        v.extend(args.iter().map(Into::into));
        Loaded::from_args(v, &|_| None).expect("valid flags").config
    }

    #[test]
    fn defaults_check() {
        let c = parse(&[]).check().expect("defaults are valid");
        assert_eq!(c.http.path, "/cable");
        assert!(c.http.origins.same_as_host && !c.http.origins.disabled);
        assert!(matches!(c.broker, BrokerSettings::Memory));
        assert!(matches!(c.presence, PresenceSettings::Memory));
    }

    #[test]
    fn origins_parse_exact_and_patterns() {
        let c = parse(&[
            "--allowed-origins",
            "http://a.test,/^https?:\\/\\/localhost:\\d+$/",
        ])
        .check()
        .expect("valid");
        let allowed = &c.http.origins.allowed;
        assert!(allowed[0].matches("http://a.test"));
        assert!(!allowed[0].matches("http://a.test/"));
        assert!(allowed[1].matches("http://localhost:3000"));
        assert!(!allowed[1].matches("http://localhost:x"));
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
        let e = parse(&["--outbox-bytes", "0"]).check().unwrap_err();
        assert!(e.to_string().contains("--outbox-bytes"), "{e}");
        let e = parse(&["--max-identifier-size", "0"]).check().unwrap_err();
        assert!(e.to_string().contains("--max-identifier-size"), "{e}");
        let e = parse(&["--write-timeout", "0"]).check().unwrap_err();
        assert!(e.to_string().contains("--write-timeout"), "{e}");
        let e = parse(&["--channels-file", "/nonexistent/x.toml"])
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("channels file"), "{e}");
        assert!(Config::try_parse_from(["ferrocable", "--port", "nope"]).is_err());
        let e = parse(&["--identifiers", "signed_cookie:user_id"])
            .check()
            .unwrap_err();
        assert!(matches!(e, ConfigError::MissingSecret), "{e}");
        let e = parse(&["--identifiers", "cookie:x"]).check().unwrap_err();
        assert!(matches!(e, ConfigError::BadIdentifier(_)), "{e}");
        let e = parse(&["--identifiers", "jwt"]).check().unwrap_err();
        assert!(matches!(e, ConfigError::Jwt(JwtSettingError::NoKey)), "{e}");
        let e = parse(&["--jwt-secret", "s", "--jwt-algorithm", "none"])
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("unsupported algorithm"), "{e}");
    }

    #[test]
    fn connection_limits_are_checked_with_the_rest() {
        // Once checked only when the server started (after Redis): now here, so
        // --print-config names them too.
        for (flag, value) in [
            ("--auth-timeout", "0"),
            ("--handshake-timeout", "0.05"),
            ("--command-flood-seconds", "0.5"),
            ("--command-burst", "0"),
            // hyper panics on a read buffer under 8 KiB: refused here, by name.
            ("--max-header-bytes", "8191"),
            ("--max-cookie-bytes", "0"),
        ] {
            let e = parse(&[flag, value]).check().unwrap_err();
            assert!(e.to_string().contains(flag), "{e}");
        }
        // Rate 0 is off, whatever the burst.
        let c = parse(&["--command-burst", "0", "--max-commands-per-second", "0"])
            .check()
            .expect("valid");
        assert_eq!(c.limits.command_rate, None);
        let c = parse(&["--max-commands-per-second", "10", "--command-burst", "3"])
            .check()
            .expect("valid");
        assert_eq!(
            c.limits.command_rate,
            Some(CommandRate {
                per_sec: 10,
                burst: 3,
                flood: std::time::Duration::from_secs(10)
            })
        );
    }

    #[test]
    fn profiles_come_from_the_database_then_the_file_then_ids() {
        let spec = |args: &[&str], rails: Option<&str>| {
            parse(args).profile_spec(|| rails.map(str::to_owned))
        };
        let both = [
            "--database-url",
            "postgres://h/db",
            "--users-file",
            "u.json",
        ];
        assert!(matches!(spec(&both, None), Ok(ProfileSpec::Database(_))));
        assert!(matches!(
            spec(&["--users-file", "u.json"], Some("postgres://h/db")),
            Ok(ProfileSpec::UsersFile(_))
        ));
        assert!(
            matches!(spec(&[], Some("postgres://h/db")), Ok(ProfileSpec::IdOnly)),
            "auto never reads DATABASE_URL"
        );
        let Ok(ProfileSpec::Database(db)) = spec(
            &["--profile-source", "database"],
            Some("mysql2://root@h/app"),
        ) else {
            panic!("database reads DATABASE_URL")
        };
        assert!(db.query.ends_with("WHERE id = ?"));
        assert!(spec(&["--profile-source", "database"], None).is_err());
        assert!(spec(&["--profile-source", "users-file"], None).is_err());
        assert!(matches!(
            spec(
                &["--profile-source", "id-only", "--users-file", "u.json"],
                None
            ),
            Ok(ProfileSpec::IdOnly)
        ));
        let e = spec(&["--profile-query", "SELECT 1"], None).unwrap_err();
        assert!(e.to_string().contains("--profile-query"), "{e}");
    }

    #[test]
    fn a_bad_database_url_is_named_before_anything_connects() {
        let e = parse(&["--database-url", "redis://h"]).check().unwrap_err();
        assert!(
            e.to_string().contains("--database-url")
                && e.to_string().contains("unsupported database URL scheme"),
            "{e}"
        );
        let e = parse(&["--database-url", "postgres://u:pw@h:port/db"])
            .check()
            .unwrap_err();
        assert!(!e.to_string().contains("pw@"), "{e}");
        let c = parse(&["--database-url", "sqlite:x.db", "--profile-cache-ttl", "0"])
            .check()
            .expect("valid");
        assert!(!c.auth.profile_cache.enabled());
        let args = ["--database-url", "postgres://u:hunter2@h/db"];
        let c = parse(&args).check().expect("valid");
        assert!(
            !format!("{:?}", parse(&args)).contains("hunter2")
                && !format!("{c:?}").contains("hunter2"),
            "the password is redacted in Debug"
        );
    }

    #[test]
    fn identifiers_default_from_the_secrets_given() {
        let c = parse(&["--secret-key-base", "x", "--jwt-secret", "y"])
            .check()
            .expect("valid");
        assert_eq!(
            c.auth.identifiers,
            vec![
                IdentifierSpec::EncryptedCookie("user_id".into()),
                IdentifierSpec::SignedCookie("user_id".into()),
                IdentifierSpec::Jwt
            ]
        );
        let c = parse(&[
            "--secret-key-base",
            "x",
            "--identifiers",
            "session:_app_session:warden.user.user.key,jwt",
            "--jwt-secret",
            "y",
        ])
        .check()
        .expect("valid");
        assert_eq!(
            c.auth.identifiers[0],
            IdentifierSpec::Session {
                cookie: "_app_session".into(),
                path: vec!["warden".into(), "user".into(), "user".into(), "key".into()]
            }
        );
        assert!(
            !format!("{c:?}").contains("\"x\""),
            "secrets are redacted in Debug"
        );
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
        let BrokerSettings::Redis(broker) = &c.broker else {
            panic!("redis broker: {:?}", c.broker)
        };
        assert_eq!(broker.url, "redis://127.0.0.1:6390/0");
        assert_eq!(broker.channel_prefix.as_deref(), Some("refapp"));
        let PresenceSettings::Redis {
            url,
            node_id,
            node_ttl,
            required,
        } = &c.presence
        else {
            panic!("redis presence: {:?}", c.presence)
        };
        assert_eq!(url, "redis://127.0.0.1:6390/0");
        assert_eq!(node_id.as_deref(), Some("web-1.a_b:2"));
        assert_eq!(*node_ttl, std::time::Duration::from_millis(1500));
        assert!(!required);
        // Rails keeps an empty prefix (`:chat_lobby`); so do we.
        let c = parse(&["--channel-prefix", "", "--redis-url", "redis://h"])
            .check()
            .expect("valid");
        let BrokerSettings::Redis(broker) = &c.broker else {
            panic!("redis broker")
        };
        assert_eq!(broker.channel_prefix.as_deref(), Some(""));
    }
}
