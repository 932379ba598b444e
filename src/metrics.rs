//! Observable events: one function per event, writing the log line and updating the
//! Prometheus metrics together, so the two cannot drift apart. `/metrics` renders the
//! registry in the Prometheus text format; `/health` reads a few gauges.
//!
//! # Invariants
//! - The open-connection gauge changes only through [`OpenConnection`], a drop guard,
//!   so it cannot drift whichever way a connection task ends.
//! - The subscription gauge changes only through [`Metrics::subscriptions_changed`],
//!   called with the table's size difference around each command and at teardown.
//! - No credential, cookie or token value is ever a label or a log field.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::protocol::Identifier;

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: &'static str,
}

/// A `command` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    /// `subscribe`, `unsubscribe` or `message`.
    pub command: &'static str,
}

/// Process-wide metrics.
pub struct Metrics {
    registry: Registry,
    connections: Gauge,
    connections_accepted: Counter,
    upgrades_refused: Family<ReasonLabel, Counter>,
    auth_rejections: Family<ReasonLabel, Counter>,
    subscriptions: Gauge,
    streams: Gauge,
    commands: Family<CommandLabel, Counter>,
    command_seconds: Family<CommandLabel, Histogram>,
    bad_commands: Counter,
    slow_clients: Counter,
    closes: Family<ReasonLabel, Counter>,
    broadcasts: Counter,
    deliveries: Counter,
}

/// Shared metrics.
pub type SharedMetrics = Arc<Metrics>;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered under the `ferrocable_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ferrocable");
        let m = Metrics {
            connections: Gauge::default(),
            connections_accepted: Counter::default(),
            upgrades_refused: Family::default(),
            auth_rejections: Family::default(),
            subscriptions: Gauge::default(),
            streams: Gauge::default(),
            commands: Family::default(),
            command_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
            }),
            bad_commands: Counter::default(),
            slow_clients: Counter::default(),
            closes: Family::default(),
            broadcasts: Counter::default(),
            deliveries: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "WebSocket upgrades accepted",
            m.connections_accepted.clone(),
        );
        registry.register(
            "upgrades_refused",
            "Upgrade requests refused, by reason",
            m.upgrades_refused.clone(),
        );
        registry.register(
            "auth_rejections",
            "Connections refused as unauthorized, by reason",
            m.auth_rejections.clone(),
        );
        registry.register(
            "subscriptions",
            "Live subscriptions",
            m.subscriptions.clone(),
        );
        registry.register(
            "streams",
            "Streams with a local subscriber",
            m.streams.clone(),
        );
        registry.register(
            "commands",
            "Client commands handled, by command",
            m.commands.clone(),
        );
        registry.register(
            "command_duration_seconds",
            "Time to handle a client command",
            m.command_seconds.clone(),
        );
        registry.register(
            "bad_commands",
            "Client frames ignored or rejected",
            m.bad_commands.clone(),
        );
        registry.register(
            "slow_client_disconnects",
            "Connections closed because their outbox overflowed",
            m.slow_clients.clone(),
        );
        registry.register(
            "closes",
            "Connections closed by the server, by reason",
            m.closes.clone(),
        );
        registry.register(
            "broadcasts",
            "Broadcasts fanned out on this node",
            m.broadcasts.clone(),
        );
        registry.register(
            "deliveries",
            "Frames queued by broadcasts",
            m.deliveries.clone(),
        );
        Metrics { registry, ..m }
    }

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

    /// An upgrade request was refused before the 101.
    pub fn upgrade_refused(&self, reason: &'static str, peer: &std::net::SocketAddr, detail: &str) {
        self.upgrades_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
        tracing::info!(peer = %peer, reason, detail, "upgrade refused");
    }

    /// A connection was refused by authentication.
    pub fn auth_rejected(&self, conn: u64, kind: &'static str, reason: &dyn std::fmt::Display) {
        self.auth_rejections
            .get_or_create(&ReasonLabel { reason: kind })
            .inc();
        tracing::info!(conn, reason = %reason, "connection rejected: unauthorized");
    }

    /// A subscription table changed size by `delta`.
    pub fn subscriptions_changed(&self, delta: i64) {
        self.subscriptions.inc_by(delta);
    }

    /// A command was handled in `took`.
    pub fn command(&self, command: &'static str, took: Duration) {
        let label = CommandLabel { command };
        self.commands.get_or_create(&label).inc();
        self.command_seconds
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// A subscription was confirmed.
    pub fn subscribed(&self, conn: u64, identifier: &Identifier) {
        tracing::debug!(conn, identifier = %identifier, "subscription confirmed");
    }

    /// A subscription ended.
    pub fn unsubscribed(&self, conn: u64, identifier: &Identifier) {
        tracing::debug!(conn, identifier = %identifier, "subscription removed");
    }

    /// A command was ignored or rejected.
    pub fn bad_command(&self, conn: u64, why: &dyn std::fmt::Display) {
        self.bad_commands.inc();
        tracing::info!(conn, why = %why, "command not processed");
    }

    /// A connection was closed because its outbox overflowed.
    pub fn slow_client(&self, conn: u64) {
        self.slow_clients.inc();
        tracing::warn!(conn, "slow client disconnected");
    }

    /// The server closed a connection (protocol error, limit, shutdown).
    pub fn server_close(&self, conn: u64, reason: &'static str) {
        self.closes.get_or_create(&ReasonLabel { reason }).inc();
        tracing::info!(conn, reason, "connection closed by the server");
    }

    /// A broadcast was fanned out on this node.
    pub fn broadcast(&self, stream: &str, delivered: usize) {
        self.broadcasts.inc();
        self.deliveries.inc_by(delivered as u64);
        tracing::trace!(stream, delivered, "broadcast fanned out");
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
