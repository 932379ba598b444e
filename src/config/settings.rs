//! The server's own settings: the HTTP edge, the per-connection limits and shutdown.
//!
//! The other components' settings live next to the component they build
//! ([`crate::auth::AuthSettings`], [`crate::broker::BrokerSettings`],
//! [`crate::presence::PresenceSettings`], [`crate::channels::ChannelsSettings`]);
//! [`super::Config::check`] builds all of them, and [`super::Checked`] holds them.
//! Every value here has passed its check: the ranges are stated on the fields.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::OriginPolicy;

/// The HTTP edge: where to listen and what to accept.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `--host`, `--port`.
    pub addr: SocketAddr,
    /// `--path`: the WebSocket endpoint (starts with `/`).
    pub path: String,
    /// The Origin check (`--allowed-origins`, `--allow-same-origin-as-host`,
    /// `--disable-forgery-protection`).
    pub origins: Arc<OriginPolicy>,
    /// `--max-connections` (at least 1).
    pub max_connections: usize,
}

/// Per-connection limits (`server::limits` applies the command rate and deadlines).
#[derive(Debug, Clone)]
pub struct LimitsSettings {
    /// `--outbox-bytes` (at least 1).
    pub outbox_bytes: usize,
    /// `--write-timeout` (0.1 s to 1 h).
    pub write_timeout: Duration,
    /// `--max-identifier-size` (at least 1).
    pub max_identifier_size: usize,
    /// `--max-message-size` (at least 1).
    pub max_message_size: usize,
    /// `--max-subscriptions` (at least 1).
    pub max_subscriptions: usize,
    /// `--max-commands-per-second` and `--command-burst` (both at least 1); `None`
    /// when the rate limit is off (`0`).
    pub command_rate: Option<CommandRate>,
    /// `--handshake-timeout` (0.1 s to 1 h).
    pub handshake_timeout: Duration,
    /// `--auth-timeout` (0.1 s to 1 h).
    pub auth_timeout: Duration,
    /// `--max-header-bytes` (8 KiB, hyper's least, to 4 MiB).
    pub max_header_bytes: usize,
    /// `--max-cookie-bytes` (1 to 4 MiB).
    pub max_cookie_bytes: usize,
}

/// The command rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandRate {
    /// Commands a second, sustained.
    pub per_sec: u32,
    /// The token bucket's size.
    pub burst: u32,
    /// `--command-flood-seconds` (1 s to 1 h): how long a connection may stay
    /// throttled before it is disconnected.
    pub flood: Duration,
}

/// The stop sequence (see `server`'s module docs).
#[derive(Debug, Clone, Copy)]
pub struct ShutdownSettings {
    /// `--shutdown-timeout` (0 to 1 h): how long connections get to finish.
    pub timeout: Duration,
    /// `--drain-delay` (0 to 1 h): serving on after the listener stops.
    pub drain_delay: Duration,
    /// `--drain-window` (0 to 1 h): `server_restart` is spread over it.
    pub drain_window: Duration,
}
