//! [`Config::check`]: every flag checked once, and turned into each component's
//! typed settings ([`Checked`]).
//!
//! # Invariants
//! - Every range a component relies on is checked here, so `--print-config` and a
//!   start report the same errors, before anything binds or connects.
//! - Nothing of the flat [`Config`] escapes: components see only their settings.
//! - No I/O: the files the flags name were read by `load` ([`super::Read`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use crate::auth::jwt::{JwtAlgorithm, JwtConfig};
use crate::auth::profile_cache::CacheConfig;
use crate::auth::rails::{CipherMode, RailsSecrets, Serializer};
use crate::auth::sql::DatabaseConfig;
use crate::auth::{AuthSettings, GlobalIdNaming, IdentifierSpec, ProfileSpec};
use crate::broker::{BrokerSettings, RedisBrokerConfig};
use crate::channels::{ChannelsSettings, MembershipSettings, TurboKey};
use crate::presence::PresenceSettings;

use super::settings::{CommandRate, HttpSettings, LimitsSettings, ShutdownSettings};
use super::{
    ChannelsFile, Checked, CipherArg, Config, ConfigError, JwtSettingError, OriginPolicy,
    OriginRule, ProfileSettingError, ProfileSourceArg, SerializerArg,
};

/// A file the flags name, in a [`Config`] not built by [`super::Loaded`].
const NOT_READ: &str = "not read (build the configuration with config::Loaded)";

/// hyper's smallest allowed read buffer (`max_buf_size` panics below it).
const MIN_HEADER_BYTES: usize = 8192;
/// Sixteen times hyper's default: a request head larger than this is not a browser's.
const MAX_HEADER_BYTES: usize = 4 << 20;

/// `value` seconds as a duration, when it is finite and between `min` and an hour.
fn seconds(
    name: &'static str,
    value: f64,
    min: f64,
    what: &'static str,
) -> Result<Duration, ConfigError> {
    if value.is_finite() && value >= min && value <= 3600.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError::BadLimit {
            name,
            what,
            value: value.to_string(),
        })
    }
}

fn at_least_one(name: &'static str, value: usize) -> Result<usize, ConfigError> {
    if value == 0 {
        return Err(ConfigError::BadLimit {
            name,
            what: "at least 1",
            value: value.to_string(),
        });
    }
    Ok(value)
}

fn parse_identifier(s: &str) -> Result<IdentifierSpec, ConfigError> {
    let bad = || ConfigError::BadIdentifier(s.to_owned());
    let mut parts = s.splitn(3, ':');
    let kind = parts.next().unwrap_or_default().trim();
    let a = parts.next().map(str::trim).filter(|x| !x.is_empty());
    let b = parts.next().map(str::trim).filter(|x| !x.is_empty());
    Ok(match (kind, a, b) {
        ("signed_cookie", Some(name), None) => IdentifierSpec::SignedCookie(name.to_owned()),
        ("encrypted_cookie", Some(name), None) => IdentifierSpec::EncryptedCookie(name.to_owned()),
        ("session", Some(cookie), Some(path)) => IdentifierSpec::Session {
            cookie: cookie.to_owned(),
            path: path.split('.').map(str::to_owned).collect(),
        },
        ("jwt", None, None) => IdentifierSpec::Jwt,
        _ => return Err(bad()),
    })
}

impl Config {
    fn jwt_config(&self) -> Result<Option<JwtConfig>, JwtSettingError> {
        let algorithm = match self.jwt_algorithm.to_ascii_uppercase().as_str() {
            "HS256" => JwtAlgorithm::Hs256,
            "HS384" => JwtAlgorithm::Hs384,
            "HS512" => JwtAlgorithm::Hs512,
            "RS256" => JwtAlgorithm::Rs256,
            "ES256" => JwtAlgorithm::Es256,
            other => return Err(JwtSettingError::UnsupportedAlgorithm(other.to_owned())),
        };
        let hmac = matches!(
            algorithm,
            JwtAlgorithm::Hs256 | JwtAlgorithm::Hs384 | JwtAlgorithm::Hs512
        );
        let key = match (&self.jwt_secret, &self.jwt_public_key_file, hmac) {
            (None, None, _) => return Ok(None),
            (Some(s), None, true) => s.0.clone().into_bytes(),
            (None, Some(path), false) => match &self.read.jwt_public_key {
                Some(Ok(key)) => key.clone(),
                Some(Err(source)) => {
                    return Err(JwtSettingError::ReadKey {
                        path: path.display().to_string(),
                        source: source.clone(),
                    })
                }
                None => {
                    return Err(JwtSettingError::ReadKey {
                        path: path.display().to_string(),
                        source: Arc::new(std::io::Error::other(NOT_READ)),
                    })
                }
            },
            (Some(_), _, false) => return Err(JwtSettingError::NeedsKeyFile(algorithm.name())),
            (_, Some(_), true) => return Err(JwtSettingError::NeedsSecret(algorithm.name())),
        };
        Ok(Some(JwtConfig {
            algorithm,
            key,
            user_id_claim: self.jwt_claim.clone(),
            leeway_secs: 0,
            audience: None,
            issuer: None,
        }))
    }

    /// Where profiles come from; `rails_database_url` reads Rails' `DATABASE_URL`, and
    /// is asked only for `--profile-source database` without `--database-url`.
    pub(super) fn profile_spec(
        &self,
        rails_database_url: impl FnOnce() -> Option<String>,
    ) -> Result<ProfileSpec, ProfileSettingError> {
        let database = |flag: &'static str, url: &str| {
            DatabaseConfig::parse(url, self.profile_query.as_deref())
                .map(|db| ProfileSpec::Database(Box::new(db)))
                .map_err(|source| ProfileSettingError::Database { flag, source })
        };
        let spec = match (self.profile_source, &self.database_url, &self.users_file) {
            (ProfileSourceArg::Auto | ProfileSourceArg::Database, Some(url), _) => {
                database("--database-url", &url.0)?
            }
            (ProfileSourceArg::Database, None, _) => match rails_database_url() {
                Some(url) => database("DATABASE_URL", &url)?,
                None => return Err(ProfileSettingError::DatabaseWithoutUrl),
            },
            (ProfileSourceArg::Auto | ProfileSourceArg::UsersFile, _, Some(path)) => {
                ProfileSpec::UsersFile(path.clone())
            }
            (ProfileSourceArg::UsersFile, _, None) => {
                return Err(ProfileSettingError::UsersFileWithoutFile)
            }
            (ProfileSourceArg::Auto | ProfileSourceArg::IdOnly, _, _) => ProfileSpec::IdOnly,
        };
        if self.profile_query.is_some() && !matches!(spec, ProfileSpec::Database(_)) {
            return Err(ProfileSettingError::QueryWithoutDatabase);
        }
        Ok(spec)
    }

    fn http_settings(&self) -> Result<HttpSettings, ConfigError> {
        if !self.path.starts_with('/') {
            return Err(ConfigError::BadPath(self.path.clone()));
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
        Ok(HttpSettings {
            addr: SocketAddr::new(self.host, self.port),
            path: self.path.clone(),
            origins: Arc::new(OriginPolicy {
                disabled: self.disable_forgery_protection,
                same_as_host: self.allow_same_origin_as_host,
                allowed,
            }),
            max_connections: at_least_one("--max-connections", self.max_connections)?,
        })
    }

    fn limits_settings(&self) -> Result<LimitsSettings, ConfigError> {
        let outbox_bytes = at_least_one("--outbox-bytes", self.outbox_bytes)?;
        let max_identifier_size = at_least_one("--max-identifier-size", self.max_identifier_size)?;
        let max_message_size = at_least_one("--max-message-size", self.max_message_size)?;
        let max_subscriptions = at_least_one("--max-subscriptions", self.max_subscriptions)?;
        let tenth = "between 0.1 and 3600 seconds";
        let write_timeout = seconds("--write-timeout", self.write_timeout, 0.1, tenth)?;
        let handshake_timeout = seconds("--handshake-timeout", self.handshake_timeout, 0.1, tenth)?;
        let auth_timeout = seconds("--auth-timeout", self.auth_timeout, 0.1, tenth)?;
        let flood = seconds(
            "--command-flood-seconds",
            self.command_flood_seconds,
            1.0,
            "between 1 and 3600 seconds",
        )?;
        let command_rate = if self.max_commands_per_second == 0 {
            None
        } else {
            if self.command_burst == 0 {
                return Err(ConfigError::BadLimit {
                    name: "--command-burst",
                    what: "at least 1",
                    value: "0".into(),
                });
            }
            Some(CommandRate {
                per_sec: self.max_commands_per_second,
                burst: self.command_burst,
                flood,
            })
        };
        let bytes = |name, value: usize, min: usize, what| {
            if (min..=MAX_HEADER_BYTES).contains(&value) {
                Ok(value)
            } else {
                Err(ConfigError::BadLimit {
                    name,
                    what,
                    value: value.to_string(),
                })
            }
        };
        // hyper panics on a read buffer under 8 KiB: refused here, by name.
        let max_header_bytes = bytes(
            "--max-header-bytes",
            self.max_header_bytes,
            MIN_HEADER_BYTES,
            "between 8192 and 4194304 bytes",
        )?;
        let max_cookie_bytes = bytes(
            "--max-cookie-bytes",
            self.max_cookie_bytes,
            1,
            "between 1 and 4194304 bytes",
        )?;
        Ok(LimitsSettings {
            outbox_bytes,
            write_timeout,
            max_identifier_size,
            max_message_size,
            max_subscriptions,
            command_rate,
            handshake_timeout,
            auth_timeout,
            max_header_bytes,
            max_cookie_bytes,
        })
    }

    fn shutdown_settings(&self) -> Result<ShutdownSettings, ConfigError> {
        let zero_to_hour = "between 0 and 3600 seconds";
        Ok(ShutdownSettings {
            drain_delay: seconds("--drain-delay", self.drain_delay, 0.0, zero_to_hour)?,
            drain_window: seconds("--drain-window", self.drain_window, 0.0, zero_to_hour)?,
            timeout: seconds(
                "--shutdown-timeout",
                self.shutdown_timeout,
                0.0,
                zero_to_hour,
            )?,
        })
    }

    /// The Redis URL, when one is set (Redis mode).
    fn redis_url(&self) -> Option<&str> {
        self.redis_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    fn channels_settings(
        &self,
        rails: Option<&RailsSecrets>,
    ) -> Result<ChannelsSettings, ConfigError> {
        let mut channels = match &self.channels_file {
            None => ChannelsFile::default(),
            Some(path) => {
                let shown = path.display().to_string();
                let text = match &self.read.channels_file {
                    Some(Ok(text)) => text,
                    Some(Err(e)) => {
                        return Err(ConfigError::ChannelsFile {
                            path: shown,
                            why: e.to_string(),
                        })
                    }
                    None => {
                        return Err(ConfigError::ChannelsFile {
                            path: shown,
                            why: NOT_READ.into(),
                        })
                    }
                };
                toml::from_str(text).map_err(|e| ConfigError::ChannelsFile {
                    path: shown,
                    why: e.to_string(),
                })?
            }
        };
        for spec in &self.inline_channels {
            if channels.channels.iter().any(|c| c.name == spec.name) {
                return Err(ConfigError::DuplicateChannel(spec.name.clone()));
            }
            channels.channels.push(spec.clone());
        }
        crate::channels::check_declarations(
            &channels.channels,
            &crate::channels::DeclarationContext {
                redis: self.redis_url().is_some(),
                globalid_app: self.globalid_app.as_deref(),
            },
        )?;
        let turbo = match (&self.turbo_verifier_key, rails) {
            (Some(key), _) => Some(TurboKey::Explicit(key.0.as_bytes().to_vec())),
            (None, Some(secrets)) => Some(TurboKey::Derived {
                secret_key_base: secrets.secret_key_base.clone(),
                digests: secrets.key_digest.digests(),
            }),
            (None, None) => None,
        };
        let membership = match self.redis_url() {
            Some(url) if channels.channels.iter().any(|c| c.member_of.is_some()) => {
                Some(MembershipSettings {
                    url: url.to_owned(),
                    required: self.redis_required,
                })
            }
            _ => None,
        };
        Ok(ChannelsSettings {
            declared: channels.channels,
            strict_presence: self.strict_presence,
            confirm_unknown: self.confirm_unknown_channels,
            globalid_app: self.globalid_app.clone(),
            turbo,
            membership,
        })
    }

    fn rails_secrets(&self) -> Option<RailsSecrets> {
        let current = self.secret_key_base.as_ref()?;
        let mut secret_key_base = vec![current.0.clone()];
        secret_key_base.extend(self.old_secret_key_bases.iter().map(|s| s.0.clone()));
        Some(RailsSecrets {
            secret_key_base,
            key_digest: self.key_digest.into(),
            signed_cookie_digest: self.signed_cookie_digest.into(),
            encrypted_cookie_cipher: match self.encrypted_cookie_cipher {
                CipherArg::Gcm => CipherMode::Gcm,
                CipherArg::Cbc => CipherMode::Cbc,
                CipherArg::Auto => CipherMode::Auto,
            },
            serializer: match self.cookie_serializer {
                SerializerArg::Json => Serializer::Json,
                SerializerArg::Marshal => Serializer::Marshal,
                SerializerArg::Hybrid => Serializer::Hybrid,
            },
            ..RailsSecrets::default()
        })
    }

    fn auth_settings(&self, rails: Option<RailsSecrets>) -> Result<AuthSettings, ConfigError> {
        let jwt = self.jwt_config()?;
        let mut identifiers = Vec::new();
        for entry in self.identifiers.iter().filter(|s| !s.trim().is_empty()) {
            identifiers.push(parse_identifier(entry)?);
        }
        if identifiers.is_empty() {
            if rails.is_some() {
                identifiers.push(IdentifierSpec::EncryptedCookie("user_id".into()));
                identifiers.push(IdentifierSpec::SignedCookie("user_id".into()));
            }
            if jwt.is_some() {
                identifiers.push(IdentifierSpec::Jwt);
            }
        }
        if rails.is_none() && identifiers.iter().any(IdentifierSpec::needs_secret) {
            return Err(ConfigError::MissingSecret);
        }
        if jwt.is_none() && identifiers.contains(&IdentifierSpec::Jwt) {
            return Err(JwtSettingError::NoKey.into());
        }
        let profiles =
            self.profile_spec(|| self.read.rails_database_url.as_ref().map(|s| s.0.clone()))?;
        Ok(AuthSettings {
            identifiers,
            rails,
            jwt,
            jwt_param: self.jwt_param.clone(),
            jwt_profile_claims: self.jwt_profile_claims,
            dev_user_param: self.dev_user_param.clone(),
            globalid: self.globalid_app.as_ref().map(|app| GlobalIdNaming {
                app: app.clone(),
                model: self.globalid_model.clone(),
            }),
            profiles,
            profile_cache: CacheConfig::new(
                self.profile_cache_size,
                Duration::from_secs(self.profile_cache_ttl),
            ),
        })
    }

    /// The broker's and the presence store's settings: both in Redis when a Redis URL
    /// is set, both in memory otherwise.
    fn backend_settings(&self) -> (BrokerSettings, PresenceSettings) {
        match self.redis_url() {
            None => (BrokerSettings::Memory, PresenceSettings::Memory),
            Some(url) => (
                BrokerSettings::Redis(RedisBrokerConfig {
                    url: url.to_owned(),
                    channel_prefix: self.channel_prefix.clone(),
                    required: self.redis_required,
                }),
                PresenceSettings::Redis {
                    url: url.to_owned(),
                    node_id: self.node_id.clone(),
                    node_ttl: Duration::from_secs_f64(self.node_ttl),
                    required: self.redis_required,
                },
            ),
        }
    }

    /// Checks every value and builds each component's settings.
    ///
    /// # Errors
    /// The first invalid value, named.
    pub fn check(self) -> Result<Checked, ConfigError> {
        let http = self.http_settings()?;
        let limits = self.limits_settings()?;
        let shutdown = self.shutdown_settings()?;
        if self
            .dev_user_param
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
        {
            return Err(ConfigError::EmptyDevParam);
        }
        seconds(
            "--node-ttl",
            self.node_ttl,
            0.3,
            "between 0.3 and 3600 seconds",
        )?;
        if let Some(id) = &self.node_id {
            let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
            if id.is_empty() || !id.chars().all(ok) {
                return Err(ConfigError::BadNodeId(id.clone()));
            }
        }
        let rails = self.rails_secrets();
        let channels = self.channels_settings(rails.as_ref())?;
        let auth = self.auth_settings(rails)?;
        let (broker, presence) = self.backend_settings();
        Ok(Checked {
            http,
            auth,
            broker,
            presence,
            channels,
            limits,
            shutdown,
            log_format: self.log_format,
        })
    }
}
