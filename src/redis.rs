//! Redis connections as both Redis users (the broker and the presence store) make them:
//! one reconnect policy, one set of timeouts.
//!
//! Kept apart from `broker` and `presence` so neither depends on the other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{ClientLike, EventInterface};
use fred::prelude::{Builder, Client, Config as FredConfig, ReconnectPolicy};

/// The longest wait between two reconnect attempts (attempts start 100 ms apart and
/// double up to this), so a returning Redis is reached within about a second.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(1_000);

/// How long one command may take before it counts as failed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the first connection may take at startup with `--redis-required`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long startup waits for Redis before it serves degraded (without
/// `--redis-required`); the connection goes on being attempted in the background.
pub const STARTUP_WAIT: Duration = Duration::from_secs(2);

/// A Redis URL ferrocable cannot use, or a Redis it refuses.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// Not a URL fred can read (bad syntax, missing host, missing
    /// `sentinelServiceName`, …).
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// A scheme other than `redis`, `rediss`, `redis-sentinel`, `rediss-sentinel`.
    #[error(
        "unsupported Redis URL scheme {0:?}: use redis://, rediss:// (TLS) or redis-sentinel:// (rediss-sentinel:// for TLS)"
    )]
    UnsupportedScheme(String),
    /// Redis Cluster, by URL (`redis-cluster://`) or found on connecting.
    #[error(
        "Redis Cluster is not supported{0}: presence runs Lua scripts that change several keys in one step (a room's room:<id>:members, the user's presence:user:<uid>:room:<id>, ferrocable's subs and node keys; the sweeps go over every room), and Cluster refuses a script whose keys are not all in one hash slot, which the app's own key names cannot be. Point ferrocable at a standalone Redis, a primary with replicas, or Sentinel (redis-sentinel://)"
    )]
    Cluster(&'static str),
    /// Redis was not reachable in time while it is required (`--redis-required`).
    #[error("cannot connect the {what} to Redis within {within:?} (--redis-required)")]
    Unreachable {
        /// Which connection.
        what: &'static str,
        /// How long it was given.
        within: Duration,
    },
    /// The first connection failed for good (e.g. authentication).
    #[error("cannot connect the {what} to Redis: {error}")]
    Connect {
        /// Which connection.
        what: &'static str,
        /// fred's error.
        error: String,
    },
}

/// Checks `url` before anything connects: the scheme must be one of the supported
/// ones (cluster URLs are refused with the reason) and fred must be able to read it.
///
/// # Errors
/// [`RedisSetupError`] saying what is wrong.
pub fn check_url(url: &str) -> Result<(), RedisSetupError> {
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .ok_or_else(|| RedisSetupError::InvalidUrl("no scheme (redis://host:port)".into()))?;
    match scheme.as_str() {
        "redis" | "rediss" | "redis-sentinel" | "rediss-sentinel" => {}
        "redis-cluster" | "rediss-cluster" | "valkey-cluster" | "valkeys-cluster" => {
            return Err(RedisSetupError::Cluster(" (redis-cluster:// URL)"))
        }
        other => return Err(RedisSetupError::UnsupportedScheme(other.to_owned())),
    }
    // The message fred gives may echo the URL, password included: keep only its kind.
    FredConfig::from_url(url)
        .map(|_| ())
        .map_err(|e| RedisSetupError::InvalidUrl(e.details().to_string()))
}

/// Builds a client for `url` that reconnects forever with backoff, the first
/// connection included. `events` bounds the pub/sub messages (and other events) that
/// may wait for their reader.
///
/// # Errors
/// When the URL is invalid.
pub fn client_for(url: &str, events: usize) -> Result<Client, fred::error::Error> {
    let mut config = FredConfig::from_url(url)?;
    // A Redis that is down at startup is retried like a lost connection (degraded
    // start); `connect` decides how long startup waits for it.
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    builder
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            100,
            MAX_RECONNECT_DELAY.as_millis() as u32,
            2,
        ))
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            // Half-open TCP (a vanished host) is noticed by the unanswered-frame check.
            c.unresponsive.max_timeout = Some(COMMAND_TIMEOUT);
            c.unresponsive.interval = Duration::from_millis(500);
        })
        .with_performance_config(|p| {
            p.default_command_timeout = COMMAND_TIMEOUT;
            p.broadcast_channel_capacity = events.max(1);
        });
    builder.build()
}

/// Starts `client`'s connection task and waits for its first connection: at most
/// [`CONNECT_TIMEOUT`] when Redis is `required`, else [`STARTUP_WAIT`], after which
/// startup goes on degraded while the task keeps trying (with the reconnect policy's
/// backoff). Returns whether the client is connected. A connection found to be a
/// Redis Cluster node is refused either way. `what` names the client in logs and
/// errors.
///
/// # Errors
/// [`RedisSetupError::Unreachable`] when required and not connected in time;
/// [`RedisSetupError::Connect`] when the connection task gave up (it only does on
/// errors a retry cannot fix); [`RedisSetupError::Cluster`].
pub async fn connect(
    client: &Client,
    what: &'static str,
    required: bool,
) -> Result<bool, RedisSetupError> {
    let mut connected = client.reconnect_rx();
    let late = client.reconnect_rx();
    let task = client.connect();
    let within = if required {
        CONNECT_TIMEOUT
    } else {
        STARTUP_WAIT
    };
    let up = tokio::select! {
        r = connected.recv() => r.is_ok(),
        _ = tokio::time::sleep(within) => false,
    };
    if !up {
        if task.is_finished() {
            let error = match task.await {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(())) => "the connection task ended".into(),
                Err(e) => e.to_string(),
            };
            return Err(RedisSetupError::Connect { what, error });
        }
        if required {
            return Err(RedisSetupError::Unreachable { what, within });
        }
        tracing::warn!(
            client = what,
            waited_secs = within.as_secs_f64(),
            "redis unreachable at startup: serving degraded, connecting in the background"
        );
        tokio::spawn(check_late_connection(client.clone(), what, late));
        return Ok(false);
    }
    refuse_cluster(client).await?;
    Ok(true)
}

/// After a degraded start: checks the first connection as startup would have. A
/// cluster node found this late cannot stop a server that is already serving, so it
/// is reported as an error (every presence script will fail on it).
async fn check_late_connection(
    client: Client,
    what: &'static str,
    mut connected: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
) {
    if connected.recv().await.is_err() {
        return;
    }
    tracing::info!(
        client = what,
        "redis reachable, connected after a degraded start"
    );
    if let Err(e) = refuse_cluster(&client).await {
        tracing::error!(client = what, error = %e, "redis connected late is unusable");
    }
}

/// Fails when `client` is connected to a Redis Cluster node (`INFO cluster`).
async fn refuse_cluster(client: &Client) -> Result<(), RedisSetupError> {
    match client
        .info::<String>(Some(fred::types::InfoKind::Cluster))
        .await
    {
        Ok(info) if info.lines().any(|l| l.trim() == "cluster_enabled:1") => Err(
            RedisSetupError::Cluster(" (the server runs in cluster mode)"),
        ),
        Ok(_) => Ok(()),
        Err(e) => {
            // Some proxies do not implement INFO; they are not a cluster to us.
            tracing::debug!(error = %e, "INFO cluster unavailable");
            Ok(())
        }
    }
}

/// Whether a client's connection is usable, known as soon as it drops.
///
/// fred keeps reporting a dropped connection as connected until its first reconnect
/// attempt, and commands sent meanwhile wait for [`COMMAND_TIMEOUT`]. The link turns
/// down on the connection's error event (sent when the socket fails) and up on its
/// (re)connect event, so callers can fail fast instead.
pub struct Link {
    up: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Starts watching `client`; call it before connecting. The link starts up, since
    /// it is only consulted once the client has connected.
    pub fn watch(client: &Client) -> Link {
        use tokio::sync::broadcast::error::RecvError;
        let up = Arc::new(AtomicBool::new(true));
        let mut errors = client.error_rx();
        let mut reconnects = client.reconnect_rx();
        let flag = up.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    e = errors.recv() => match e {
                        Ok((error, _)) => {
                            if flag.swap(false, Ordering::SeqCst) {
                                tracing::warn!(error = %error, "redis connection lost, reconnecting");
                            }
                        }
                        Err(RecvError::Lagged(_)) => flag.store(false, Ordering::SeqCst),
                        Err(RecvError::Closed) => return,
                    },
                    r = reconnects.recv() => match r {
                        Ok(_) | Err(RecvError::Lagged(_)) => flag.store(true, Ordering::SeqCst),
                        Err(RecvError::Closed) => return,
                    },
                }
            }
        });
        Link { up, task }
    }

    /// Whether the connection is usable: no error since the last (re)connection, and
    /// fred agrees.
    pub fn is_up(&self, client: &Client) -> bool {
        self.up.load(Ordering::SeqCst) && client.is_connected()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}
