//! Observable events: one function per event, writing the log line and updating the
//! Prometheus metrics together, so the two cannot drift apart. `/metrics` renders the
//! registry in the Prometheus text format; `/health` reads a few gauges.
//!
//! Each metric is declared once, in the [`Metrics`] declaration below (field, type and
//! so labels, name, help); the events that move them are in `events.rs`, grouped by
//! what they observe (connections, commands, broadcasts, Redis, presence), and the
//! wrappers that observe the presence store and the broker from outside are in
//! `metered.rs`.
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

mod events;
mod metered;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use metered::{watch_redis_reconnects, MeteredBroker, MeteredPresence};

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

/// A `limit` label: which limit triggered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    /// `connections`, `message_size`, `subscriptions`, `identifier_size`, `outbox`,
    /// `command_rate`, `command_flood`, `handshake_deadline`, `auth_deadline`,
    /// `request_headers` or `cookie_bytes`.
    pub limit: &'static str,
}

/// A `store` label: `memory` or `redis`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabel {
    /// The presence store.
    pub store: &'static str,
}

/// Declares [`Metrics`]: each line is one metric, `field: Type = ("name", "help")`,
/// optionally with a constructor as a third element (otherwise `Default`).
macro_rules! declare_metrics {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = ($name:literal, $help:literal $(, $init:expr)?);
    )*) => {
        /// Process-wide metrics, each declared once below (Rust field, type with its
        /// labels, exposed name without the `ferrocable_` prefix, help text).
        pub struct Metrics {
            $( $(#[doc = $doc])* $field: $ty, )*
            registry: Registry,
        }

        impl Metrics {
            /// A fresh registry with every metric registered under the `ferrocable_`
            /// prefix, in declaration order.
            pub fn new() -> Self {
                let mut registry = Registry::with_prefix("ferrocable");
                $(
                    let $field: $ty = declare_metrics!(@init $($init)?);
                    registry.register($name, $help, $field.clone());
                )*
                Metrics { $($field,)* registry }
            }
        }
    };
    (@init) => { Default::default() };
    (@init $init:expr) => { $init };
}

declare_metrics! {
    /// Open connections; moved only by [`OpenConnection`].
    connections: Gauge = ("connections", "Open WebSocket connections");
    /// Moved only by [`OpenConnection::new`].
    connections_accepted: Counter = ("connections_accepted", "WebSocket upgrades accepted");
    /// `reason`: `capacity`, `cookie_too_large` and the upgrade's own refusals.
    upgrades_refused: Family<ReasonLabel, Counter> =
        ("upgrades_refused", "Upgrade requests refused, by reason");
    /// `reason`: the authenticator's rejection kind.
    auth_rejections: Family<ReasonLabel, Counter> =
        ("auth_rejections", "Connections refused as unauthorized, by reason");
    subscriptions: Gauge = ("subscriptions", "Live subscriptions");
    /// Set from the hub at each render.
    streams: Gauge = ("streams", "Streams with a local subscriber");
    commands: Family<CommandLabel, Counter> =
        ("commands", "Client commands handled, by command");
    command_seconds: Family<CommandLabel, Histogram> = (
        "command_duration_seconds",
        "Time to handle a client command",
        Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 16)))
    );
    bad_commands: Counter = ("bad_commands", "Client frames ignored or rejected");
    slow_clients: Counter = (
        "slow_client_disconnects",
        "Connections closed because their outbox overflowed"
    );
    /// `reason`: the close reason the connection task names.
    closes: Family<ReasonLabel, Counter> =
        ("closes", "Connections closed by the server, by reason");
    broadcasts: Counter = ("broadcasts", "Broadcasts fanned out on this node");
    deliveries: Counter = ("deliveries", "Frames queued by broadcasts");
    /// `limit`: see [`LimitLabel`].
    limit_triggers: Family<LimitLabel, Counter> =
        ("limit_triggers", "Times a limit triggered, by limit");
    commands_delayed: Counter = (
        "commands_delayed",
        "Client commands delayed by the per-connection rate limit"
    );
    received_bytes: Counter = (
        "received_bytes",
        "Bytes of client messages received (payloads, after reassembly)"
    );
    broadcast_bytes: Counter = (
        "broadcast_bytes",
        "Broadcast payload bytes queued to clients (payload size times deliveries)"
    );
    published: Counter = (
        "broadcasts_published",
        "Broadcasts published by this node (presence events, channel actions)"
    );
    published_bytes: Counter =
        ("broadcasts_published_bytes", "Payload bytes published by this node");
    publish_failures: Counter = (
        "broadcast_publish_failures",
        "Publishes that failed (the broadcast was lost)"
    );
    /// `reason`: `unknown_channel`, `too_many`, `too_large`, `channel`, `backend`,
    /// `other`.
    subscriptions_rejected: Family<ReasonLabel, Counter> = (
        "subscriptions_rejected",
        "Subscribe commands answered with reject_subscription, by reason"
    );
    redis_up: Gauge = (
        "redis_up",
        "1 while Redis is reachable and re-subscribed (Redis mode only)"
    );
    redis_reconnects: Counter = (
        "redis_reconnects",
        "Reconnections of the broadcast subscriber to Redis"
    );
    presence_joins: Family<StoreLabel, Counter> =
        ("presence_joins", "Users who became members of a room");
    presence_leaves: Family<StoreLabel, Counter> =
        ("presence_leaves", "Users who stopped being members of a room");
    presence_sweeps: Family<StoreLabel, Counter> = ("presence_sweeps", "Presence sweeps run");
    presence_sweep_failures: Family<StoreLabel, Counter> =
        ("presence_sweep_failures", "Presence sweeps that failed");
    presence_swept_changes: Family<StoreLabel, Counter> = (
        "presence_swept_changes",
        "Membership changes found by sweeps (dead nodes, stale members, restores)"
    );
}

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
    use std::time::Duration;

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
