//! The channels component's settings ([`ChannelsSettings`], built and checked by
//! `config`) and the standard [`Registry`] they describe ([`Registry::standard`]).

use std::sync::Arc;

use crate::auth::rails::Digest;
use crate::auth::ProfileSource;
use crate::broker::SharedBroker;
use crate::presence::PresenceStore;

use super::turbo::{StreamNameVerifier, TurboStreamsChannel};
use super::{
    BareChannel, ChannelSpecError, Membership, MembershipError, PresenceChannel, RedisMembership,
    Registry, StreamChannel, StreamChannelDeps, StreamChannelSpec,
};

/// What the channels are, and how they behave.
#[derive(Debug, Clone, Default)]
pub struct ChannelsSettings {
    /// Declared stream channels (`--channels-file` and the config file's
    /// `[[channels]]`), checked.
    pub declared: Vec<StreamChannelSpec>,
    /// `--strict-presence`: no roster replay to a new subscriber.
    pub strict_presence: bool,
    /// `--confirm-unknown-channels`: confirm unknown channels with no streams.
    pub confirm_unknown: bool,
    /// `--globalid-app`, for `stream_for`.
    pub globalid_app: Option<String>,
    /// The key `Turbo::StreamsChannel` verifies stream names with; no Turbo channel
    /// without one.
    pub turbo: Option<TurboKey>,
    /// The `member_of` checker's Redis, when a declared channel needs one (Redis mode).
    pub membership: Option<MembershipSettings>,
}

/// Where Turbo's stream-name verifier key comes from.
#[derive(Clone)]
pub enum TurboKey {
    /// `--turbo-verifier-key`.
    Explicit(Vec<u8>),
    /// Derived from each `secret_key_base` with each digest, as turbo-rails does.
    Derived {
        /// Current, then older, `secret_key_base` values.
        secret_key_base: Vec<String>,
        /// The key generator's digests (`--key-digest`).
        digests: &'static [Digest],
    },
}

impl std::fmt::Debug for TurboKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TurboKey::Explicit(_) => f.write_str("TurboKey::Explicit(<redacted>)"),
            TurboKey::Derived { .. } => f.write_str("TurboKey::Derived(<redacted>)"),
        }
    }
}

impl TurboKey {
    /// The verifier this key makes.
    pub fn verifier(&self) -> StreamNameVerifier {
        match self {
            TurboKey::Explicit(key) => StreamNameVerifier::with_key(key),
            TurboKey::Derived {
                secret_key_base,
                digests,
            } => StreamNameVerifier::derived(secret_key_base, digests),
        }
    }
}

/// The `member_of` checker's connection.
#[derive(Debug, Clone)]
pub struct MembershipSettings {
    /// `--redis-url`.
    pub url: String,
    /// `--redis-required`.
    pub required: bool,
}

impl MembershipSettings {
    /// Connects the checker (see [`RedisMembership::connect`]).
    ///
    /// # Errors
    /// When the URL is invalid, or Redis is required and cannot be reached.
    pub async fn connect(&self) -> Result<Arc<dyn Membership>, MembershipError> {
        Ok(Arc::new(
            RedisMembership::connect(&self.url, self.required).await?,
        ))
    }
}

/// What the standard channels are built on.
pub struct ChannelDeps {
    /// The presence store (`PresenceChannel`).
    pub presence: Arc<dyn PresenceStore>,
    /// Where channels broadcast.
    pub broker: SharedBroker,
    /// Who the users are (presence payloads).
    pub profiles: Arc<dyn ProfileSource>,
    /// The `member_of` checker, when [`ChannelsSettings::membership`] asked for one.
    pub membership: Option<Arc<dyn Membership>>,
}

impl Registry {
    /// The channels `settings` describe: `PresenceChannel`, the base classes, Turbo's
    /// when a key is known, and every declared stream channel.
    ///
    /// # Errors
    /// When a declared channel cannot be built.
    pub fn standard(
        settings: &ChannelsSettings,
        deps: ChannelDeps,
    ) -> Result<Registry, ChannelSpecError> {
        let mut registry = Registry::new();
        registry.register(
            "PresenceChannel",
            Arc::new(PresenceChannel::new(
                deps.presence,
                deps.broker.clone(),
                deps.profiles,
                settings.strict_presence,
            )),
        );
        registry.register("ApplicationCable::Channel", Arc::new(BareChannel));
        registry.register("ActionCable::Channel::Base", Arc::new(BareChannel));
        if let Some(key) = &settings.turbo {
            registry.register(
                "Turbo::StreamsChannel",
                Arc::new(TurboStreamsChannel::new(key.verifier())),
            );
        }
        let stream_deps = StreamChannelDeps {
            broker: deps.broker,
            globalid_app: settings.globalid_app.clone(),
            membership: deps.membership,
        };
        for spec in &settings.declared {
            registry.register(
                spec.name.clone(),
                Arc::new(StreamChannel::new(spec.clone(), stream_deps.clone())?),
            );
        }
        tracing::info!(channels = ?registry.names(), "channels registered");
        Ok(registry)
    }
}
