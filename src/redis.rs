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

/// How long the first connection may take at startup.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a client for `url` that reconnects forever with backoff. `events` bounds the
/// pub/sub messages (and other events) that may wait for their reader.
///
/// # Errors
/// When the URL is invalid.
pub fn client_for(url: &str, events: usize) -> Result<Client, fred::error::Error> {
    let config = FredConfig::from_url(url)?;
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

/// Connects `client`, waiting at most [`CONNECT_TIMEOUT`]; `what` names it in errors.
///
/// # Errors
/// When the first connection fails or takes too long.
pub async fn connect(client: &Client, what: &str) -> Result<(), String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, client.init()).await {
        Ok(Ok(_task)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot connect the {what} to Redis: {e}")),
        Err(_) => Err(format!(
            "cannot connect the {what} to Redis within {CONNECT_TIMEOUT:?}"
        )),
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
