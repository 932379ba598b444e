//! Observable events: one function per event, writing the log line and updating the
//! Prometheus metrics together, so the two cannot drift apart. `/metrics` renders the
//! registry in the Prometheus text format; `/health` reads a few gauges.
//!
//! Each metric is declared once, in `registry.rs` (field, type and so labels, name,
//! help); the events that move them are below, one function each, grouped by what
//! they observe (connections, commands, broadcasts, Redis, presence); the wrappers
//! that observe the presence store and the broker from outside are in `metered.rs`.
//!
//! # Invariants
//! - Every metric is registered exactly once, in declaration order (the order
//!   `/metrics` lists them), under the `ferrocable_` prefix; counters get `_total`.
//! - Each metric is updated by one event function only, except the shared `limit`
//!   and refused-upgrade counts, updated through one private helper each.
//! - The open-connection gauge changes only through [`OpenConnection`], a drop guard,
//!   so it cannot drift whichever way a connection task ends.
//! - The subscription gauge changes only through [`Metrics::subscriptions_changed`],
//!   called with the table's size difference around each command and at teardown.
//! - No credential, cookie or token value is ever a label or a log field.
//! - Client values (identifiers, stream and room names, action names) are logged
//!   clipped ([`crate::protocol::clip`]), never whole.

mod metered;
mod registry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::{clip, Identifier};

pub use metered::{watch_redis_reconnects, MeteredBroker, MeteredPresence};
pub use registry::{CommandLabel, LimitLabel, Metrics, ReasonLabel, StoreLabel};

/// Shared metrics.
pub type SharedMetrics = Arc<Metrics>;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Renders every metric in the Prometheus text format.
    pub fn render(&self, streams: usize) -> String {
        self.streams.set(streams as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Open connections now.
    pub fn open_connections(&self) -> i64 {
        self.connections.get()
    }

    /// Live subscriptions now.
    pub fn live_subscriptions(&self) -> i64 {
        self.subscriptions.get()
    }
}

/// Shared counts, each written in one place.
impl Metrics {
    /// A limit triggered (several events are also a limit).
    fn limit(&self, limit: &'static str) {
        self.limit_triggers
            .get_or_create(&LimitLabel { limit })
            .inc();
    }

    /// An upgrade was refused before the 101 (by the upgrade itself or by a 431).
    fn refuse_upgrade(&self, reason: &'static str) {
        self.upgrades_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}

/// Connections: the HTTP edge, authentication and server-side closes.
impl Metrics {
    /// An upgrade request was refused before the 101.
    pub fn upgrade_refused(&self, reason: &'static str, peer: &SocketAddr, detail: &str) {
        self.refuse_upgrade(reason);
        if reason == "capacity" {
            self.limit("connections");
        }
        tracing::info!(peer = %peer, reason, detail = %clip(detail), "upgrade refused");
    }

    /// A client did not send its HTTP request headers in time.
    pub fn handshake_deadline(&self, peer: &SocketAddr, timeout: Duration) {
        self.limit("handshake_deadline");
        tracing::info!(peer = %peer, timeout_secs = timeout.as_secs_f64(), "HTTP request headers not received in time, connection closed");
    }

    /// A request was refused with 431: its head was over `--max-header-bytes`
    /// (`limit` `request_headers`, refused by hyper) or its cookies over
    /// `--max-cookie-bytes` (`cookie_bytes`, with the size seen; also a refused upgrade,
    /// reason `cookie_too_large`).
    pub fn headers_too_large(&self, limit: &'static str, peer: &SocketAddr, bytes: Option<usize>) {
        self.limit(limit);
        if limit == "cookie_bytes" {
            // A refused upgrade, like one past the connection cap.
            self.refuse_upgrade("cookie_too_large");
        }
        tracing::info!(peer = %peer, limit, bytes, "request headers too large, answered 431");
    }

    /// A connection was refused by authentication.
    pub fn auth_rejected(&self, conn: u64, kind: &'static str, reason: &dyn std::fmt::Display) {
        self.auth_rejections
            .get_or_create(&ReasonLabel { reason: kind })
            .inc();
        tracing::info!(conn, reason = %reason, "connection rejected: unauthorized");
    }

    /// Authentication did not finish in time.
    pub fn auth_deadline(&self, conn: u64, timeout: Duration) {
        self.limit("auth_deadline");
        tracing::warn!(
            conn,
            timeout_secs = timeout.as_secs_f64(),
            "authentication did not finish in time"
        );
    }

    /// The server closed a connection (protocol error, limit, shutdown).
    pub fn server_close(&self, conn: u64, reason: &'static str) {
        self.closes.get_or_create(&ReasonLabel { reason }).inc();
        if reason == "message_too_large" {
            self.limit("message_size");
        }
        tracing::info!(conn, reason, "connection closed by the server");
    }

    /// A connection was closed because its outbox overflowed.
    pub fn slow_client(&self, conn: u64) {
        self.slow_clients.inc();
        self.limit("outbox");
        tracing::warn!(conn, "slow client disconnected");
    }
}

/// Commands: what clients send, and the subscriptions they hold.
impl Metrics {
    /// A client message of `len` bytes arrived.
    pub fn received(&self, len: usize) {
        self.received_bytes.inc_by(len as u64);
    }

    /// A command was handled in `took`.
    pub fn command(&self, command: &'static str, took: Duration) {
        let label = CommandLabel { command };
        self.commands.get_or_create(&label).inc();
        self.command_seconds
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// A command was ignored or rejected.
    pub fn bad_command(&self, conn: u64, why: &dyn std::fmt::Display) {
        self.bad_commands.inc();
        tracing::info!(conn, why = %why, "command not processed");
    }

    /// A connection ran out of command tokens (once per throttled stretch).
    pub fn rate_limited(&self, conn: u64, per_sec: u64, burst: u64) {
        self.limit("command_rate");
        tracing::info!(
            conn,
            per_sec,
            burst,
            "command rate limit reached, reading slowed down"
        );
    }

    /// One command waited for a token.
    pub fn command_delayed(&self) {
        self.commands_delayed.inc();
    }

    /// A connection stayed throttled for `secs` without a pause: it is disconnected.
    pub fn flood(&self, conn: u64, secs: f64) {
        self.limit("command_flood");
        tracing::warn!(
            conn,
            throttled_secs = secs,
            "client keeps flooding commands, disconnected as invalid_request"
        );
    }

    /// A subscription table changed size by `delta`.
    pub fn subscriptions_changed(&self, delta: i64) {
        self.subscriptions.inc_by(delta);
    }

    /// A subscription was confirmed.
    pub fn subscribed(&self, conn: u64, identifier: &Identifier) {
        tracing::debug!(conn, identifier = %identifier, "subscription confirmed");
    }

    /// A subscription ended.
    pub fn unsubscribed(&self, conn: u64, identifier: &Identifier) {
        tracing::debug!(conn, identifier = %identifier, "subscription removed");
    }

    /// A subscribe was answered with `reject_subscription`.
    pub fn subscription_rejected(&self, conn: u64, identifier: &Identifier, why: &'static str) {
        let reason = match why {
            "unknown channel" => "unknown_channel",
            "too many subscriptions on this connection" => {
                self.limit("subscriptions");
                "too_many"
            }
            "identifier too large (--max-identifier-size)" => {
                self.limit("identifier_size");
                "too_large"
            }
            "rejected by channel" => "channel",
            "backend failure" => "backend",
            _ => "other",
        };
        self.subscriptions_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
        tracing::info!(conn, identifier = %identifier, why, "subscription rejected");
    }
}

/// Broadcasts: fanned out here, published from here.
impl Metrics {
    /// A broadcast of `payload_len` bytes was fanned out on this node to `delivered`
    /// subscribers.
    pub fn broadcast(&self, stream: &str, payload_len: usize, delivered: usize) {
        self.broadcasts.inc();
        self.deliveries.inc_by(delivered as u64);
        self.broadcast_bytes
            .inc_by((payload_len as u64).saturating_mul(delivered as u64));
        tracing::trace!(stream = %clip(stream), delivered, "broadcast fanned out");
    }

    /// This node published a broadcast (or failed to).
    pub fn published(&self, stream: &str, len: usize, error: Option<&dyn std::fmt::Display>) {
        match error {
            None => {
                self.published.inc();
                self.published_bytes.inc_by(len as u64);
                tracing::trace!(stream = %clip(stream), bytes = len, "broadcast published");
            }
            Some(e) => {
                self.publish_failures.inc();
                tracing::warn!(stream = %clip(stream), error = %e, "broadcast not published, lost");
            }
        }
    }
}

/// Redis: the link state and the broadcast subscriber's reconnections.
impl Metrics {
    /// Sets the Redis state gauge (Redis mode).
    pub fn redis_state(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }

    /// The broadcast subscriber reconnected to Redis.
    pub fn redis_reconnected(&self) {
        self.redis_reconnects.inc();
        tracing::info!("redis subscriber reconnected");
    }
}

/// Presence: membership changes and sweeps (reported by `MeteredPresence`).
impl Metrics {
    /// A user became a member of `room`.
    pub fn presence_joined(&self, store: &'static str, room: &str, user: i64) {
        self.presence_joins
            .get_or_create(&StoreLabel { store })
            .inc();
        tracing::debug!(store, room = %clip(room), user, "presence join");
    }

    /// A user stopped being a member of `room`.
    pub fn presence_left(&self, store: &'static str, room: &str, user: i64) {
        self.presence_leaves
            .get_or_create(&StoreLabel { store })
            .inc();
        tracing::debug!(store, room = %clip(room), user, "presence leave");
    }

    /// A presence sweep ran: `Ok(changes found)` or the failure.
    pub fn presence_swept(
        &self,
        store: &'static str,
        outcome: Result<usize, &dyn std::fmt::Display>,
    ) {
        let label = StoreLabel { store };
        self.presence_sweeps.get_or_create(&label).inc();
        match outcome {
            Ok(0) => tracing::trace!(store, "presence sweep: nothing to do"),
            Ok(n) => {
                self.presence_swept_changes
                    .get_or_create(&label)
                    .inc_by(n as u64);
                tracing::info!(store, changes = n, "presence sweep found changes");
            }
            Err(e) => {
                self.presence_sweep_failures.get_or_create(&label).inc();
                tracing::warn!(store, error = %e, "presence sweep failed");
            }
        }
    }
}

/// A drop guard counting one open connection.
pub struct OpenConnection(SharedMetrics);

impl OpenConnection {
    /// Counts a new connection until the guard drops.
    pub fn new(m: &SharedMetrics) -> Self {
        m.connections.inc();
        m.connections_accepted.inc();
        OpenConnection(m.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_and_the_guard_cannot_drift() {
        let m: SharedMetrics = Arc::new(Metrics::new());
        {
            let _a = OpenConnection::new(&m);
            let _b = OpenConnection::new(&m);
            assert_eq!(m.open_connections(), 2);
        }
        assert_eq!(m.open_connections(), 0);
        m.auth_rejected(1, "invalid", &"bad signature");
        m.command("subscribe", Duration::from_micros(30));
        let text = m.render(3);
        assert!(
            text.contains("ferrocable_connections_accepted_total 2"),
            "{text}"
        );
        assert!(
            text.contains(r#"ferrocable_auth_rejections_total{reason="invalid"} 1"#),
            "{text}"
        );
        assert!(text.contains("ferrocable_streams 3"), "{text}");
        assert!(
            text.contains(r#"ferrocable_command_duration_seconds_count{command="subscribe"} 1"#),
            "{text}"
        );
    }
}
