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
//! - Client values (identifiers, stream and room names, action names) are logged
//!   clipped ([`crate::protocol::clip`]), never whole.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use bytes::Bytes;

use crate::broker::{Broker, BrokerError, BrokerHealth, SharedBroker};
use crate::presence::{
    ChangeKind, Join, Leave, Maintenance, PresenceChange, PresenceError, PresenceStore,
    SubscriptionKey, UserId,
};
use crate::protocol::{clip, Identifier};

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
    /// `command_rate`, `command_flood`, `handshake_deadline` or `auth_deadline`.
    pub limit: &'static str,
}

/// A `store` label: `memory` or `redis`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabel {
    /// The presence store.
    pub store: &'static str,
}

/// Process-wide metrics.
pub struct Metrics {
    limit_triggers: Family<LimitLabel, Counter>,
    commands_delayed: Counter,
    received_bytes: Counter,
    broadcast_bytes: Counter,
    published: Counter,
    published_bytes: Counter,
    publish_failures: Counter,
    subscriptions_rejected: Family<ReasonLabel, Counter>,
    redis_up: Gauge,
    redis_reconnects: Counter,
    presence_joins: Family<StoreLabel, Counter>,
    presence_leaves: Family<StoreLabel, Counter>,
    presence_sweeps: Family<StoreLabel, Counter>,
    presence_sweep_failures: Family<StoreLabel, Counter>,
    presence_swept_changes: Family<StoreLabel, Counter>,
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
            limit_triggers: Family::default(),
            commands_delayed: Counter::default(),
            received_bytes: Counter::default(),
            broadcast_bytes: Counter::default(),
            published: Counter::default(),
            published_bytes: Counter::default(),
            publish_failures: Counter::default(),
            subscriptions_rejected: Family::default(),
            redis_up: Gauge::default(),
            redis_reconnects: Counter::default(),
            presence_joins: Family::default(),
            presence_leaves: Family::default(),
            presence_sweeps: Family::default(),
            presence_sweep_failures: Family::default(),
            presence_swept_changes: Family::default(),
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
        registry.register(
            "limit_triggers",
            "Times a limit triggered, by limit",
            m.limit_triggers.clone(),
        );
        registry.register(
            "commands_delayed",
            "Client commands delayed by the per-connection rate limit",
            m.commands_delayed.clone(),
        );
        registry.register(
            "received_bytes",
            "Bytes of client messages received (payloads, after reassembly)",
            m.received_bytes.clone(),
        );
        registry.register(
            "broadcast_bytes",
            "Broadcast payload bytes queued to clients (payload size times deliveries)",
            m.broadcast_bytes.clone(),
        );
        registry.register(
            "broadcasts_published",
            "Broadcasts published by this node (presence events, channel actions)",
            m.published.clone(),
        );
        registry.register(
            "broadcasts_published_bytes",
            "Payload bytes published by this node",
            m.published_bytes.clone(),
        );
        registry.register(
            "broadcast_publish_failures",
            "Publishes that failed (the broadcast was lost)",
            m.publish_failures.clone(),
        );
        registry.register(
            "subscriptions_rejected",
            "Subscribe commands answered with reject_subscription, by reason",
            m.subscriptions_rejected.clone(),
        );
        registry.register(
            "redis_up",
            "1 while Redis is reachable and re-subscribed (Redis mode only)",
            m.redis_up.clone(),
        );
        registry.register(
            "redis_reconnects",
            "Reconnections of the broadcast subscriber to Redis",
            m.redis_reconnects.clone(),
        );
        registry.register(
            "presence_joins",
            "Users who became members of a room",
            m.presence_joins.clone(),
        );
        registry.register(
            "presence_leaves",
            "Users who stopped being members of a room",
            m.presence_leaves.clone(),
        );
        registry.register(
            "presence_sweeps",
            "Presence sweeps run",
            m.presence_sweeps.clone(),
        );
        registry.register(
            "presence_sweep_failures",
            "Presence sweeps that failed",
            m.presence_sweep_failures.clone(),
        );
        registry.register(
            "presence_swept_changes",
            "Membership changes found by sweeps (dead nodes, stale members, restores)",
            m.presence_swept_changes.clone(),
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
        if reason == "capacity" {
            self.limit("connections");
        }
        tracing::info!(peer = %peer, reason, detail = %clip(detail), "upgrade refused");
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
        self.limit("outbox");
        tracing::warn!(conn, "slow client disconnected");
    }

    /// The server closed a connection (protocol error, limit, shutdown).
    pub fn server_close(&self, conn: u64, reason: &'static str) {
        self.closes.get_or_create(&ReasonLabel { reason }).inc();
        if reason == "message_too_large" {
            self.limit("message_size");
        }
        tracing::info!(conn, reason, "connection closed by the server");
    }

    /// A broadcast was fanned out on this node.
    pub fn broadcast(&self, stream: &str, delivered: usize) {
        self.broadcasts.inc();
        self.deliveries.inc_by(delivered as u64);
        tracing::trace!(stream = %clip(stream), delivered, "broadcast fanned out");
    }

    /// A broadcast of `payload_len` bytes was fanned out to `delivered` subscribers.
    pub fn broadcast_bytes(&self, payload_len: usize, delivered: usize) {
        self.broadcast_bytes
            .inc_by((payload_len as u64).saturating_mul(delivered as u64));
    }

    fn limit(&self, limit: &'static str) {
        self.limit_triggers
            .get_or_create(&LimitLabel { limit })
            .inc();
    }

    /// A client message of `len` bytes arrived.
    pub fn received(&self, len: usize) {
        self.received_bytes.inc_by(len as u64);
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

    /// A client did not send its HTTP request headers in time.
    pub fn handshake_deadline(&self, peer: &std::net::SocketAddr, timeout: Duration) {
        self.limit("handshake_deadline");
        tracing::info!(peer = %peer, timeout_secs = timeout.as_secs_f64(), "HTTP request headers not received in time, connection closed");
    }

    /// A request was refused with 431: its head was over `--max-header-bytes`
    /// (`limit` `request_headers`, refused by hyper) or its cookies over
    /// `--max-cookie-bytes` (`cookie_bytes`, with the size seen; also a refused upgrade,
    /// reason `cookie_too_large`).
    pub fn headers_too_large(
        &self,
        limit: &'static str,
        peer: &std::net::SocketAddr,
        bytes: Option<usize>,
    ) {
        self.limit(limit);
        if limit == "cookie_bytes" {
            // A refused upgrade, like one past the connection cap.
            self.upgrades_refused
                .get_or_create(&ReasonLabel {
                    reason: "cookie_too_large",
                })
                .inc();
        }
        tracing::info!(peer = %peer, limit, bytes, "request headers too large, answered 431");
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

    /// Sets the Redis state gauge (Redis mode).
    pub fn redis_state(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }

    /// The broadcast subscriber reconnected to Redis.
    pub fn redis_reconnected(&self) {
        self.redis_reconnects.inc();
        tracing::info!("redis subscriber reconnected");
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

/// A presence store that reports joins, leaves and sweeps to the metrics.
pub struct MeteredPresence {
    inner: Arc<dyn PresenceStore>,
    metrics: SharedMetrics,
    store: &'static str,
}

impl MeteredPresence {
    /// Wraps `inner`, labelled `store` (`memory` or `redis`).
    pub fn wrap(
        inner: Arc<dyn PresenceStore>,
        metrics: SharedMetrics,
        store: &'static str,
    ) -> Arc<dyn PresenceStore> {
        Arc::new(MeteredPresence {
            inner,
            metrics,
            store,
        })
    }
}

#[async_trait::async_trait]
impl PresenceStore for MeteredPresence {
    async fn join(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<Join, PresenceError> {
        let join = self.inner.join(room, user, sub).await?;
        if join.first {
            self.metrics.presence_joined(self.store, room, user);
        }
        Ok(join)
    }

    async fn leave(
        &self,
        room: &str,
        user: UserId,
        sub: SubscriptionKey,
    ) -> Result<Leave, PresenceError> {
        let leave = self.inner.leave(room, user, sub).await?;
        if leave.last {
            self.metrics.presence_left(self.store, room, user);
        }
        Ok(leave)
    }

    async fn heartbeat(&self, room: &str, user: UserId) -> Result<(), PresenceError> {
        self.inner.heartbeat(room, user).await
    }

    async fn members(&self, room: &str) -> Result<Vec<UserId>, PresenceError> {
        self.inner.members(room).await
    }

    fn is_up(&self) -> bool {
        self.inner.is_up()
    }

    fn maintenance(&self) -> Option<Maintenance> {
        self.inner.maintenance()
    }

    async fn sweep(&self) -> Result<Vec<PresenceChange>, PresenceError> {
        let r = self.inner.sweep().await;
        match &r {
            Ok(changes) => {
                for c in changes {
                    match c.kind {
                        ChangeKind::Joined => {
                            self.metrics.presence_joined(self.store, &c.room, c.user)
                        }
                        ChangeKind::Left => self.metrics.presence_left(self.store, &c.room, c.user),
                    }
                }
                self.metrics.presence_swept(self.store, Ok(changes.len()));
            }
            Err(e) => self.metrics.presence_swept(self.store, Err(e)),
        }
        r
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

/// A broker that reports what this node publishes to the metrics.
pub struct MeteredBroker {
    inner: SharedBroker,
    metrics: SharedMetrics,
}

impl MeteredBroker {
    /// Wraps `inner`.
    pub fn wrap(inner: SharedBroker, metrics: SharedMetrics) -> SharedBroker {
        Arc::new(MeteredBroker { inner, metrics })
    }
}

#[async_trait::async_trait]
impl Broker for MeteredBroker {
    async fn publish(&self, stream: &str, payload: Bytes) -> Result<(), BrokerError> {
        let len = payload.len();
        let r = self.inner.publish(stream, payload).await;
        self.metrics
            .published(stream, len, r.as_ref().err().map(|e| e as _));
        r
    }

    async fn subscribe(&self, stream: &str) -> Result<(), BrokerError> {
        self.inner.subscribe(stream).await
    }

    async fn unsubscribe(&self, stream: &str) -> Result<(), BrokerError> {
        self.inner.unsubscribe(stream).await
    }

    fn health(&self) -> BrokerHealth {
        self.inner.health()
    }
}

/// Counts the broadcast subscriber's Redis reconnections until `stop`; `events` is
/// subscribed after the first connection, so every event is a reconnection.
pub async fn watch_redis_reconnects(
    mut events: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    metrics: SharedMetrics,
    stop: tokio_util::sync::CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            e = events.recv() => match e {
                Ok(_) => metrics.redis_reconnected(),
                Err(RecvError::Lagged(n)) => {
                    for _ in 0..n {
                        metrics.redis_reconnected();
                    }
                }
                Err(RecvError::Closed) => return,
            },
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
