//! The authentication component's settings ([`AuthSettings`], built and checked by
//! `config`) and its constructors: [`Pipeline::from_settings`] and [`profile_source`].
//!
//! # Invariants
//! - Settings are plain values: nothing here reads a file or the environment except
//!   [`profile_source`], which loads the users file it is pointed at.
//! - A secret in the settings never reaches a log or an error message.

use std::path::PathBuf;
use std::sync::Arc;

use super::identify::{EncryptedCookie, Jwt, SessionKey, SignedCookie};
use super::jwt::{JwtConfig, JwtConfigError, JwtVerifier};
use super::profile_cache::CacheConfig;
use super::rails::{CookieVerifier, RailsConfigError, RailsSecrets};
use super::sql::DatabaseConfig;
use super::{dev, profiles, sql, GlobalIdNaming, Identify, Pipeline, ProfileError, ProfileSource};

/// Everything the authentication pipeline is built from.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Identification steps, in order (`--identifiers`, or the default from the secrets
    /// given).
    pub identifiers: Vec<IdentifierSpec>,
    /// Rails cookie settings, when a `secret_key_base` is set.
    pub rails: Option<RailsSecrets>,
    /// JWT settings, when a key is set (the key file already read).
    pub jwt: Option<JwtConfig>,
    /// The query parameter carrying the token (`--jwt-param`).
    pub jwt_param: String,
    /// Trust a token's profile claims (`--jwt-profile-claims`).
    pub jwt_profile_claims: bool,
    /// The development query-parameter identifier (`--dev-user-param`), when on.
    pub dev_user_param: Option<String>,
    /// How connections are named for remote disconnects (`--globalid-app`, `--globalid-model`).
    pub globalid: Option<GlobalIdNaming>,
    /// Where user profiles come from.
    pub profiles: ProfileSpec,
    /// The cache in front of database profiles.
    pub profile_cache: CacheConfig,
}

/// One identification step, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentifierSpec {
    /// `cookies.signed[name]`.
    SignedCookie(String),
    /// `cookies.encrypted[name]`.
    EncryptedCookie(String),
    /// A key path in the cookie-store session.
    Session {
        /// The session cookie's name.
        cookie: String,
        /// The key path.
        path: Vec<String>,
    },
    /// A JWT.
    Jwt,
}

impl IdentifierSpec {
    /// Whether the step reads a Rails cookie (and so needs a `secret_key_base`).
    pub fn needs_secret(&self) -> bool {
        !matches!(self, IdentifierSpec::Jwt)
    }
}

/// Where user profiles come from, as configured.
#[derive(Debug, Clone)]
pub enum ProfileSpec {
    /// The app's database (boxed: its connect options are large, the other variants
    /// small).
    Database(Box<DatabaseConfig>),
    /// A users file.
    UsersFile(PathBuf),
    /// Every id is a user.
    IdOnly,
}

/// The authentication pipeline cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The Rails cookie keys cannot be derived.
    #[error("authentication setup failed: Rails cookies")]
    Rails(#[source] RailsConfigError),
    /// The JWT key is unusable.
    #[error("authentication setup failed: JWT")]
    Jwt(#[source] JwtConfigError),
    /// A cookie step without a `secret_key_base` (the config check refuses this).
    #[error("authentication setup failed: cookie identifier without a secret")]
    MissingSecret,
    /// A `jwt` step without a key (the config check refuses this).
    #[error("authentication setup failed: jwt identifier without a key")]
    MissingJwtKey,
}

impl Pipeline {
    /// Builds the identification pipeline `settings` asks for, looking users up in
    /// `profiles`. Logs the steps, and loudly when development authentication is on.
    ///
    /// # Errors
    /// When a key cannot be derived or a JWT key is unusable.
    pub fn from_settings(
        settings: &AuthSettings,
        profiles: Arc<dyn ProfileSource>,
    ) -> Result<Pipeline, AuthSetupError> {
        let verifier = match &settings.rails {
            Some(secrets) => Some(Arc::new(
                CookieVerifier::new(secrets).map_err(AuthSetupError::Rails)?,
            )),
            None => None,
        };
        let mut steps: Vec<Box<dyn Identify>> = Vec::new();
        for spec in &settings.identifiers {
            let need = || verifier.clone().ok_or(AuthSetupError::MissingSecret);
            steps.push(match spec {
                IdentifierSpec::SignedCookie(name) => Box::new(SignedCookie {
                    name: name.clone(),
                    verifier: need()?,
                }),
                IdentifierSpec::EncryptedCookie(name) => Box::new(EncryptedCookie {
                    name: name.clone(),
                    verifier: need()?,
                }),
                IdentifierSpec::Session { cookie, path } => Box::new(SessionKey {
                    cookie: cookie.clone(),
                    path: path.clone(),
                    verifier: need()?,
                }),
                IdentifierSpec::Jwt => {
                    let jwt = settings.jwt.as_ref().ok_or(AuthSetupError::MissingJwtKey)?;
                    Box::new(Jwt {
                        param: settings.jwt_param.clone(),
                        verifier: JwtVerifier::new(jwt).map_err(AuthSetupError::Jwt)?,
                        trust_profile_claims: settings.jwt_profile_claims,
                    })
                }
            });
        }
        if let Some(param) = &settings.dev_user_param {
            tracing::warn!(
                param = %param,
                "DEVELOPMENT AUTHENTICATION IS ON: any client can claim any user with ?{param}=<id>. Never run this in production."
            );
            steps.push(Box::new(dev::QueryParamIdentifier::new(param.clone())));
        }
        if steps.is_empty() {
            tracing::warn!("no identification method is configured: every connection will be rejected as unauthorized");
        } else {
            tracing::info!(steps = ?steps.iter().map(|s| s.name()).collect::<Vec<_>>(), "identification configured");
        }
        Ok(Pipeline::new(steps, profiles, settings.globalid.clone()))
    }
}

/// The profile source `settings` names: the database (connected lazily; check it with
/// [`ProfileSource::check`] before serving), the users file (loaded now) or ids only.
///
/// # Errors
/// When the users file cannot be loaded or the database URL cannot be used.
pub fn profile_source(settings: &AuthSettings) -> Result<Arc<dyn ProfileSource>, ProfileError> {
    Ok(match &settings.profiles {
        ProfileSpec::Database(db) => sql::cached_source(db, settings.profile_cache)?,
        ProfileSpec::UsersFile(path) => {
            let file = profiles::UsersFile::load(path)?;
            tracing::info!(path = %path.display(), users = file.len(), "users file loaded");
            Arc::new(file)
        }
        ProfileSpec::IdOnly => Arc::new(profiles::IdOnly),
    })
}
