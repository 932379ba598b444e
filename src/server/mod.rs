//! The network edge: accepting sockets, HTTP, the WebSocket upgrade and the
//! per-connection tasks. `app` is the composition root that builds every other
//! component from its settings ([`App::from_config`]); [`Server`] binds and runs it.
//!
//! # Stop order
//! On shutdown (one `CancellationToken`): 1. the listener stops accepting; after
//! `--drain-delay` the drain token is cancelled and, spread over `--drain-window`, every
//! connection sends `{"type":"disconnect","reason":"server_restart","reconnect":true}`,
//! closes, and runs its unsubscribes (presence leaves); 3. the server waits for the
//! connection tasks up to the grace period, then returns anyway.

mod app;
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

use crate::auth::{self, Authenticator};
use crate::channels::Channels;
use crate::config::{Checked, HttpSettings, ShutdownSettings};
use crate::metrics::SharedMetrics;
use crate::presence::PresenceStore;
use crate::protocol::frames;

pub use app::App;

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
    #[error(transparent)]
    Auth(#[from] auth::AuthSetupError),
    /// The broker cannot start (Redis unreachable or misconfigured).
    #[error("redis broker")]
    Broker(#[from] crate::broker::BrokerError),
    /// The presence store cannot start (Redis unreachable or misconfigured).
    #[error("redis presence store")]
    Presence(#[from] crate::presence::PresenceError),
    /// The `member_of` checker cannot start.
    #[error("redis member_of checker")]
    Membership(#[from] crate::channels::MembershipError),
    /// A declared channel cannot be built.
    #[error(transparent)]
    Channel(#[from] crate::channels::ChannelSpecError),
}

/// Everything a connection needs, shared.
pub struct State {
    /// The endpoint, the Origin check and the connection cap.
    pub http: HttpSettings,
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
    /// Whether the development identifier is on (reported by `/health`).
    pub dev_auth: bool,
    /// Cancelled when connections should start disconnecting (after the drain delay).
    pub drain: CancellationToken,
    /// The drain window (disconnects are spread over it) and the grace periods.
    pub shutdown: ShutdownSettings,
    /// Per-connection limits: sizes, command rate and deadlines.
    pub limits: limits::Limits,
    /// The presence store, for `/health` (Redis mode: a client of its own).
    pub presence: Arc<dyn PresenceStore>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A bound server.
pub struct Server {
    listener: TcpListener,
    app: App,
    shutdown: ShutdownSettings,
}

impl Server {
    /// Checks that the profile source answers, then binds the configured address.
    ///
    /// # Errors
    /// When the profile source is unusable or the address cannot be bound.
    pub async fn bind(cfg: &Checked, app: App) -> Result<Server, ServerError> {
        app.profiles.check().await?;
        let addr = cfg.http.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Server {
            listener,
            app,
            shutdown: cfg.shutdown,
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
            shutdown:
                ShutdownSettings {
                    timeout: shutdown_timeout,
                    drain_delay,
                    drain_window,
                },
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
            window_secs = drain_window.as_secs_f64(),
            "draining connections"
        );
        drain.cancel();
        if tokio::time::timeout(shutdown_timeout + drain_window, tasks.wait())
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
