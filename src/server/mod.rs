//! The network edge: accepting sockets, HTTP, the WebSocket upgrade and the
//! per-connection tasks. This is the module that wires everything else together.
//!
//! # Stop order
//! On shutdown (one `CancellationToken`): 1. the listener stops accepting; after
//! `--drain-delay` the drain token is cancelled and, spread over `--drain-window`, every
//! connection sends `{"type":"disconnect","reason":"server_restart","reconnect":true}`,
//! closes, and runs its unsubscribes (presence leaves); 3. the server waits for the
//! connection tasks up to the grace period, then returns anyway.

pub mod connection;
pub mod frame;
pub mod limits;
pub mod listener;
pub mod upgrade;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Authenticator, Pipeline, ProfileSource};
use crate::broker::{
    BroadcastHandler, BrokerHealth, MemoryBroker, RedisBroker, RedisBrokerConfig, SharedBroker,
};
use crate::channels::turbo::{StreamNameVerifier, TurboStreamsChannel};
use crate::channels::{
    BareChannel, Channels, Membership, PresenceChannel, RedisMembership, Registry, StreamChannel,
    StreamChannelDeps,
};
use crate::config::{Checked, OriginPolicy, ProfileSpec};
use crate::hub::Hub;
use crate::metrics::{MeteredBroker, MeteredPresence, Metrics, SharedMetrics};
use crate::presence::{MemoryStore, PresenceStore, RedisStore, RedisStoreConfig};
use crate::protocol::frames;

/// Rails' heartbeat interval (`BEAT_INTERVAL`).
pub const PING_INTERVAL: Duration = Duration::from_secs(3);

/// The server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The profile source is unusable (a users file, the database).
    #[error(transparent)]
    Profiles(#[from] auth::ProfileError),
    /// Authentication cannot be set up (a key cannot be derived or read).
    #[error("authentication setup failed: {0}")]
    Auth(String),
    /// Redis is unreachable or misconfigured at startup.
    #[error("redis: {0}")]
    Redis(String),
    /// A limit flag is out of range.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A declared channel cannot be built.
    #[error(transparent)]
    Channel(#[from] crate::channels::ChannelSpecError),
}

/// Builds the identification pipeline the configuration asks for.
///
/// # Errors
/// When a key cannot be derived or a JWT key is unusable.
pub fn build_pipeline(
    cfg: &Checked,
    profiles: Arc<dyn ProfileSource>,
) -> Result<Pipeline, ServerError> {
    use crate::auth::identify::{EncryptedCookie, Jwt, SessionKey, SignedCookie};
    use crate::config::IdentifierSpec;
    let verifier = match &cfg.rails {
        Some(secrets) => Some(Arc::new(
            auth::rails::CookieVerifier::new(secrets)
                .map_err(|e| ServerError::Auth(e.to_string()))?,
        )),
        None => None,
    };
    let mut steps: Vec<Box<dyn auth::Identify>> = Vec::new();
    for spec in &cfg.identifiers {
        let need = || {
            verifier
                .clone()
                .ok_or_else(|| ServerError::Auth("cookie identifier without a secret".into()))
        };
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
                let jwt = cfg
                    .jwt
                    .as_ref()
                    .ok_or_else(|| ServerError::Auth("jwt identifier without a key".into()))?;
                Box::new(Jwt {
                    param: cfg.raw.jwt_param.clone(),
                    verifier: auth::jwt::JwtVerifier::new(jwt)
                        .map_err(|e| ServerError::Auth(e.to_string()))?,
                    trust_profile_claims: cfg.raw.jwt_profile_claims,
                })
            }
        });
    }
    if let Some(param) = &cfg.raw.dev_user_param {
        tracing::warn!(
            param = %param,
            "DEVELOPMENT AUTHENTICATION IS ON: any client can claim any user with ?{param}=<id>. Never run this in production."
        );
        steps.push(Box::new(auth::dev::QueryParamIdentifier::new(
            param.clone(),
        )));
    }
    if steps.is_empty() {
        tracing::warn!("no identification method is configured: every connection will be rejected as unauthorized");
    } else {
        tracing::info!(steps = ?steps.iter().map(|s| s.name()).collect::<Vec<_>>(), "identification configured");
    }
    let gid = cfg
        .raw
        .globalid_app
        .as_ref()
        .map(|app| auth::GlobalIdNaming {
            app: app.clone(),
            model: cfg.raw.globalid_model.clone(),
        });
    Ok(Pipeline::new(steps, profiles, gid))
}

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

    /// `ActionCable.server.remote_connections.where(…).disconnect`: Rails 6.1 publishes
    /// `{"type":"disconnect"}` and closes with no frame; 7.1+ adds `"reconnect"` and
    /// sends `{"type":"disconnect","reason":"remote","reconnect":…}` first. We do what
    /// the message's shape asks for.
    fn on_internal(&self, stream: &str, payload: &[u8]) {
        let Some(identifier) = stream.strip_prefix(crate::broker::INTERNAL_PREFIX) else {
            return;
        };
        let Ok(serde_json::Value::Object(msg)) =
            serde_json::from_slice::<serde_json::Value>(payload)
        else {
            tracing::warn!(stream, "internal message is not a JSON object, ignored");
            return;
        };
        if msg.get("type").and_then(|t| t.as_str()) != Some("disconnect") {
            tracing::info!(stream, "internal message of unknown type ignored");
            return;
        }
        let how = match msg.get("reconnect") {
            None => crate::hub::Closing::Close(crate::protocol::CloseCode::Normal),
            Some(v) => crate::hub::Closing::Disconnect(crate::protocol::DisconnectReason::Remote {
                reconnect: v.as_bool().unwrap_or(true),
            }),
        };
        let n = self.hub.close_identified(identifier, how);
        tracing::info!(identifier, connections = n, "remote disconnect");
    }
}

/// Everything a connection needs, shared.
pub struct State {
    /// WebSocket endpoint path.
    pub path: String,
    /// The Origin check.
    pub origins: Arc<OriginPolicy>,
    /// Who the user is.
    pub authenticator: Arc<dyn Authenticator>,
    /// Channels, hub and broker.
    pub channels: Arc<Channels>,
    /// Counters.
    pub metrics: SharedMetrics,
    /// The latest ping frame; every writer sends it when it changes.
    pub ping: watch::Receiver<Bytes>,
    /// Connection ids.
    pub next_conn: AtomicU64,
    /// Connection slots.
    pub slots: Arc<Semaphore>,
    /// Bytes queued per connection before it counts as slow.
    pub outbox_bytes: usize,
    /// How long a socket write may make no progress before the client counts as slow.
    pub write_timeout: Duration,
    /// Largest subscription identifier accepted.
    pub max_identifier_size: usize,
    /// Largest client message.
    pub max_message_size: usize,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Whether the development identifier is on (reported by `/health`).
    pub dev_auth: bool,
    /// Cancelled when connections should start disconnecting (after the drain delay).
    pub drain: CancellationToken,
    /// Disconnects are spread over this window.
    pub drain_window: Duration,
    /// Command rate and deadlines.
    pub limits: limits::Limits,
    /// The presence store, for `/health` (Redis mode: a client of its own).
    pub presence: Arc<dyn PresenceStore>,
}

/// The wired-up application, before it binds.
pub struct App {
    /// Shared state.
    pub state: Arc<State>,
    ping_tx: watch::Sender<Bytes>,
    /// The presence store (exposed for tests and embedding).
    pub presence: Arc<dyn PresenceStore>,
    /// The broker (exposed for tests and embedding: publish to reach subscribers).
    pub broker: SharedBroker,
    /// Stops background work (presence sweeps).
    background: CancellationToken,
    /// Where user profiles come from.
    pub profiles: Arc<dyn ProfileSource>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl App {
    /// Builds the embedded (single-node, in-memory) application from a checked config.
    ///
    /// # Errors
    /// When the users file cannot be loaded or the database URL cannot be used.
    pub fn embedded(cfg: &Checked) -> Result<App, ServerError> {
        let metrics: SharedMetrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(64));
        let broker: SharedBroker = Arc::new(MemoryBroker::new(Arc::new(HubRelay {
            hub: hub.clone(),
            metrics: metrics.clone(),
        })));
        let presence: Arc<dyn PresenceStore> = Arc::new(MemoryStore::new());
        Self::assemble(cfg, metrics, hub, broker, presence, None)
    }

    /// Builds the application the configuration asks for: Redis mode when a Redis URL
    /// is set, embedded otherwise.
    ///
    /// # Errors
    /// When the users file cannot be loaded or Redis cannot be reached.
    pub async fn from_config(cfg: &Checked) -> Result<App, ServerError> {
        match cfg.raw.redis_url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => Self::with_redis(cfg, url).await,
            _ => Self::embedded(cfg),
        }
    }

    /// Builds a fleet node: broadcasts through Redis pub/sub (Rails' channel names,
    /// `--channel-prefix`), presence in Redis (the seed's keys), swept for dead nodes.
    ///
    /// # Errors
    /// When the users file cannot be loaded or Redis cannot be reached.
    pub async fn with_redis(cfg: &Checked, url: &str) -> Result<App, ServerError> {
        let metrics: SharedMetrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(64));
        let relay = Arc::new(HubRelay {
            hub: hub.clone(),
            metrics: metrics.clone(),
        });
        let broker_cfg = RedisBrokerConfig {
            url: url.to_owned(),
            channel_prefix: cfg.raw.channel_prefix.clone(),
            required: cfg.raw.redis_required,
        };
        let redis_broker = RedisBroker::connect(broker_cfg, relay)
            .await
            .map_err(|e| ServerError::Redis(e.to_string()))?;
        let node_id = cfg
            .raw
            .node_id
            .clone()
            .unwrap_or_else(crate::presence::redis::random_node_id);
        let mut store_cfg = RedisStoreConfig::new(url, node_id);
        store_cfg.node_ttl = Duration::from_secs_f64(cfg.raw.node_ttl);
        store_cfg.required = cfg.raw.redis_required;
        let store = RedisStore::connect(store_cfg)
            .await
            .map_err(|e| ServerError::Redis(e.to_string()))?;
        if let Some(m) = store.maintenance() {
            // A sweep after a Redis restart broadcasts the restored members: only once
            // this node receives broadcasts again.
            redis_broker.notify_after_resubscribe(m.wake);
        }
        let reconnects = redis_broker.reconnect_events();
        let broker: SharedBroker = Arc::new(redis_broker);
        let presence: Arc<dyn PresenceStore> = Arc::new(store);
        // Its own connection, only when a channel checks set membership.
        let membership: Option<Arc<dyn Membership>> =
            if cfg.channels.channels.iter().any(|c| c.member_of.is_some()) {
                Some(Arc::new(
                    RedisMembership::connect(url, cfg.raw.redis_required)
                        .await
                        .map_err(ServerError::Redis)?,
                ))
            } else {
                None
            };
        let app = Self::assemble(cfg, metrics, hub, broker, presence, membership)?;
        tokio::spawn(crate::metrics::watch_redis_reconnects(
            reconnects,
            app.state.metrics.clone(),
            app.background.clone(),
        ));
        Ok(app)
    }

    /// `"embedded"` or `"redis"`.
    pub fn mode(&self) -> &'static str {
        match self.broker.health() {
            BrokerHealth::Embedded => "embedded",
            BrokerHealth::Redis { .. } => "redis",
        }
    }

    /// Stops background work and tells a shared presence store this node is gone; run
    /// after the connections have drained.
    pub async fn stop(&self) {
        self.background.cancel();
        self.presence.close().await;
    }

    fn assemble(
        cfg: &Checked,
        metrics: SharedMetrics,
        hub: Arc<Hub>,
        broker: SharedBroker,
        presence: Arc<dyn PresenceStore>,
        membership: Option<Arc<dyn Membership>>,
    ) -> Result<App, ServerError> {
        let limits = limits::Limits::new(&cfg.raw)?;
        let store = match broker.health() {
            BrokerHealth::Embedded => "memory",
            BrokerHealth::Redis { .. } => "redis",
        };
        let presence = MeteredPresence::wrap(presence, metrics.clone(), store);
        let broker = MeteredBroker::wrap(broker, metrics.clone());
        let profiles: Arc<dyn ProfileSource> = match &cfg.profiles {
            // Connects lazily; `Server::bind` checks it answers before binding.
            ProfileSpec::Database(db) => auth::sql::cached_source(db, cfg.profile_cache)?,
            ProfileSpec::UsersFile(path) => {
                let file = auth::profiles::UsersFile::load(path)?;
                tracing::info!(path = %path.display(), users = file.len(), "users file loaded");
                Arc::new(file)
            }
            ProfileSpec::IdOnly => Arc::new(auth::profiles::IdOnly),
        };
        let authenticator: Arc<dyn Authenticator> =
            Arc::new(build_pipeline(cfg, profiles.clone())?);

        let background = CancellationToken::new();
        if presence.maintenance().is_some() {
            tokio::spawn(crate::channels::presence::run_maintenance(
                presence.clone(),
                broker.clone(),
                profiles.clone(),
                background.clone(),
            ));
        }
        let mut registry = Registry::new();
        registry.register(
            "PresenceChannel",
            Arc::new(PresenceChannel::new(
                presence.clone(),
                broker.clone(),
                profiles.clone(),
                cfg.raw.strict_presence,
            )),
        );
        registry.register("ApplicationCable::Channel", Arc::new(BareChannel));
        registry.register("ActionCable::Channel::Base", Arc::new(BareChannel));
        let turbo = match (&cfg.raw.turbo_verifier_key, &cfg.rails) {
            (Some(key), _) => Some(StreamNameVerifier::with_key(key.0.as_bytes())),
            (None, Some(secrets)) => Some(StreamNameVerifier::derived(
                &secrets.secret_key_base,
                secrets.key_digest.digests(),
            )),
            (None, None) => None,
        };
        if let Some(verifier) = turbo {
            registry.register(
                "Turbo::StreamsChannel",
                Arc::new(TurboStreamsChannel::new(verifier)),
            );
        }
        let deps = StreamChannelDeps {
            broker: broker.clone(),
            globalid_app: cfg.raw.globalid_app.clone(),
            membership,
        };
        for spec in &cfg.channels.channels {
            registry.register(
                spec.name.clone(),
                Arc::new(StreamChannel::new(spec.clone(), deps.clone())?),
            );
        }
        tracing::info!(channels = ?registry.names(), "channels registered");

        let (ping_tx, ping_rx) = watch::channel(frames::ping(now_unix()));
        let state = Arc::new(State {
            path: cfg.raw.path.clone(),
            origins: cfg.origins.clone(),
            authenticator,
            channels: Arc::new(Channels {
                registry,
                hub,
                broker: broker.clone(),
                unknown: cfg
                    .raw
                    .confirm_unknown_channels
                    .then(|| Arc::new(BareChannel) as Arc<dyn crate::channels::Channel>),
            }),
            metrics,
            ping: ping_rx,
            next_conn: AtomicU64::new(1),
            slots: Arc::new(Semaphore::new(cfg.raw.max_connections)),
            outbox_bytes: cfg.raw.outbox_bytes,
            write_timeout: Duration::from_secs_f64(cfg.raw.write_timeout),
            max_identifier_size: cfg.raw.max_identifier_size,
            max_message_size: cfg.raw.max_message_size,
            max_subscriptions: cfg.raw.max_subscriptions,
            dev_auth: cfg.raw.dev_user_param.is_some(),
            drain: CancellationToken::new(),
            drain_window: Duration::from_secs_f64(cfg.raw.drain_window),
            limits,
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
}

/// A bound server.
pub struct Server {
    listener: TcpListener,
    app: App,
    shutdown_timeout: Duration,
    drain_delay: Duration,
}

impl Server {
    /// Checks that the profile source answers, then binds the configured address.
    ///
    /// # Errors
    /// When the profile source is unusable or the address cannot be bound.
    pub async fn bind(cfg: &Checked, app: App) -> Result<Server, ServerError> {
        app.profiles.check().await?;
        let listener = TcpListener::bind(cfg.addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: cfg.addr,
                source,
            })?;
        Ok(Server {
            listener,
            app,
            shutdown_timeout: cfg.shutdown_timeout,
            drain_delay: Duration::from_secs_f64(cfg.raw.drain_delay),
        })
    }

    /// The bound address (useful with port 0).
    ///
    /// # Errors
    /// When the OS cannot tell.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then drains (see the module docs).
    pub async fn run(self, shutdown: CancellationToken) {
        let Server {
            listener,
            app,
            shutdown_timeout,
            drain_delay,
        } = self;
        let tasks = TaskTracker::new();
        let drain = app.state.drain.clone();
        // Connections keep getting pings until they are told to go.
        let pinger = tokio::spawn(ping_loop(app.ping_tx, drain.clone()));
        listener::accept_loop(listener, app.state.clone(), &tasks, shutdown.clone()).await;
        tasks.close();
        if !drain_delay.is_zero() {
            tracing::info!(
                delay_secs = drain_delay.as_secs_f64(),
                "listener stopped; serving on before draining"
            );
            tokio::time::sleep(drain_delay).await;
        }
        tracing::info!(
            open = app.state.metrics.open_connections(),
            window_secs = app.state.drain_window.as_secs_f64(),
            "draining connections"
        );
        drain.cancel();
        if tokio::time::timeout(shutdown_timeout + app.state.drain_window, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = tasks.len(),
                "grace period over, exiting with connections still open"
            );
        }
        pinger.abort();
        app.background.cancel();
        app.presence.close().await;
        tracing::info!("server stopped");
    }
}

/// One process-wide timer, as in Rails: every connection gets the same ping, encoded
/// once per tick.
async fn ping_loop(tx: watch::Sender<Bytes>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                // send_replace: no receiver is not an error here.
                tx.send_replace(frames::ping(now_unix()));
            }
        }
    }
}
