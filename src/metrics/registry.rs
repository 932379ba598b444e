//! Every metric, declared once: its field, type (and so its labels), exposed name and
//! help, in the order `/metrics` lists them. The events that move them are in the
//! parent module.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
            $( $(#[doc = $doc])* pub(super) $field: $ty, )*
            pub(super) registry: Registry,
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
    /// Open connections; moved only by [`OpenConnection`](super::OpenConnection).
    connections: Gauge = ("connections", "Open WebSocket connections");
    /// Moved only by [`OpenConnection::new`](super::OpenConnection::new).
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
