//! The composition root: builds every component from its settings and wires them
//! together into an [`App`], ready for [`super::Server::bind`].
//!
//! Order: metrics and hub; the broker ([`crate::broker::BrokerSettings::connect`],
//! delivering into the hub through [`HubRelay`]); the presence store
//! ([`crate::presence::PresenceSettings::connect`]); the profile source and the authentication
//! pipeline; the channels' own backends and registry; then the shared [`State`].
//! Each component is built by its own constructor from its own settings; this file
//! only decides the order and hands one component's result to the next.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Pipeline, ProfileSource};
use crate::broker::{BroadcastHandler, BrokerHealth, ConnectedBroker, SharedBroker};
use crate::channels::{BareChannel, Channel, ChannelDeps, Channels, Registry};
use crate::config::Checked;
use crate::hub::{Closing, Hub};
use crate::metrics::{MeteredBroker, MeteredPresence, Metrics, SharedMetrics};
use crate::presence::PresenceStore;
use crate::protocol::{frames, CloseCode, DisconnectReason, InternalMessage};

use super::{limits::Limits, now_unix, ServerError, State};

/// Hands broker deliveries to the hub.
struct HubRelay {
    hub: Arc<Hub>,
    metrics: SharedMetrics,
}

impl BroadcastHandler for HubRelay {
    fn on_broadcast(&self, stream: &str, payload: &[u8]) {
        let fan = self.hub.broadcast(stream, payload);
        self.metrics.broadcast(stream, payload.len(), fan.delivered);
    }

    /// `ActionCable.server.remote_connections.where(…).disconnect`: we do what the
    /// message's shape asks for (see [`InternalMessage`]).
    fn on_internal(&self, stream: &str, payload: &[u8]) {
        let Some(identifier) = stream.strip_prefix(crate::broker::INTERNAL_PREFIX) else {
            return;
        };
        let how = match InternalMessage::decode(payload) {
            Ok(InternalMessage::Disconnect { reconnect: None }) => {
                Closing::Close(CloseCode::Normal)
            }
            Ok(InternalMessage::Disconnect {
                reconnect: Some(reconnect),
            }) => Closing::Disconnect(DisconnectReason::Remote { reconnect }),
            Err(e @ crate::protocol::InternalError::NotAnObject) => {
                tracing::warn!(stream, "{e}, ignored");
                return;
            }
            Err(e @ crate::protocol::InternalError::UnknownType) => {
                tracing::info!(stream, "{e} ignored");
                return;
            }
        };
        let n = self.hub.close_identified(identifier, how);
        tracing::info!(identifier, connections = n, "remote disconnect");
    }
}

/// The wired-up application, before it binds.
pub struct App {
    /// Shared state.
    pub state: Arc<State>,
    pub(super) ping_tx: watch::Sender<Bytes>,
    /// The presence store (exposed for tests and embedding).
    pub presence: Arc<dyn PresenceStore>,
    /// The broker (exposed for tests and embedding: publish to reach subscribers).
    pub broker: SharedBroker,
    /// Stops background work (presence sweeps, the reconnect watcher).
    pub(super) background: CancellationToken,
    /// Where user profiles come from.
    pub profiles: Arc<dyn ProfileSource>,
}

impl App {
    /// Builds the application the configuration asks for: a fleet node (Redis
    /// pub/sub, presence in Redis, swept for dead nodes) when a Redis URL is set,
    /// embedded (one node, in memory) otherwise.
    ///
    /// # Errors
    /// When the users file cannot be loaded, the database URL cannot be used, or
    /// Redis cannot be reached.
    pub async fn from_config(cfg: &Checked) -> Result<App, ServerError> {
        let metrics: SharedMetrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(64));
        let relay = Arc::new(HubRelay {
            hub: hub.clone(),
            metrics: metrics.clone(),
        });
        let ConnectedBroker {
            broker,
            redis: redis_broker,
        } = cfg.broker.connect(relay).await?;
        let presence = cfg.presence.connect().await?;
        let background = CancellationToken::new();
        if let Some(redis) = &redis_broker {
            if let Some(m) = presence.maintenance() {
                // A sweep after a Redis restart broadcasts the restored members: only
                // once this node receives broadcasts again.
                redis.notify_after_resubscribe(m.wake);
            }
            tokio::spawn(crate::metrics::watch_redis_reconnects(
                redis.reconnect_events(),
                metrics.clone(),
                background.clone(),
            ));
        }
        // Its own connection, only when a channel checks set membership.
        let membership = match &cfg.channels.membership {
            Some(settings) => Some(settings.connect().await?),
            None => None,
        };

        let presence = MeteredPresence::wrap(presence, metrics.clone(), cfg.presence.kind());
        let broker = MeteredBroker::wrap(broker, metrics.clone());
        // A database connects lazily; `Server::bind` checks it answers before binding.
        let profiles = auth::profile_source(&cfg.auth)?;
        let authenticator = Arc::new(Pipeline::from_settings(&cfg.auth, profiles.clone())?);
        if presence.maintenance().is_some() {
            tokio::spawn(crate::channels::presence::run_maintenance(
                presence.clone(),
                broker.clone(),
                profiles.clone(),
                background.clone(),
            ));
        }
        let registry = Registry::standard(
            &cfg.channels,
            ChannelDeps {
                presence: presence.clone(),
                broker: broker.clone(),
                profiles: profiles.clone(),
                membership,
            },
        )?;

        let (ping_tx, ping_rx) = watch::channel(frames::ping(now_unix()));
        let state = Arc::new(State {
            http: cfg.http.clone(),
            authenticator,
            channels: Arc::new(Channels {
                registry,
                hub,
                broker: broker.clone(),
                unknown: cfg
                    .channels
                    .confirm_unknown
                    .then(|| Arc::new(BareChannel) as Arc<dyn Channel>),
            }),
            metrics,
            ping: ping_rx,
            next_conn: AtomicU64::new(1),
            slots: Arc::new(Semaphore::new(cfg.http.max_connections)),
            dev_auth: cfg.auth.dev_user_param.is_some(),
            drain: CancellationToken::new(),
            shutdown: cfg.shutdown,
            limits: Limits::new(&cfg.limits),
            presence: presence.clone(),
        });
        Ok(App {
            state,
            ping_tx,
            presence,
            broker,
            background,
            profiles,
        })
    }

    /// `"embedded"` or `"redis"`.
    pub fn mode(&self) -> &'static str {
        match self.broker.health() {
            BrokerHealth::Embedded => "embedded",
            BrokerHealth::Redis { .. } => "redis",
        }
    }
}
