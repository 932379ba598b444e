//! Observable events: one function per event, writing the log line and updating the
//! counters together, so the two cannot drift apart.
//!
//! The counters are plain atomics read by `/health`; a Prometheus exporter is a later
//! step (see ARCHITECTURE.md).
//!
//! # Invariants
//! - `connections` is changed only through [`OpenConnection`], a drop guard, so the
//!   gauge cannot drift when a connection task ends by any path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use crate::protocol::Identifier;

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open, authenticated-or-authenticating WebSocket connections.
    pub connections: AtomicI64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused by authentication.
    pub auth_rejections: AtomicU64,
    /// Live subscriptions.
    pub subscriptions: AtomicI64,
    /// Commands that were ignored or rejected.
    pub bad_commands: AtomicU64,
    /// Connections closed as slow clients.
    pub slow_clients: AtomicU64,
    /// Broadcasts received from the broker.
    pub broadcasts: AtomicU64,
    /// Frames queued by broadcasts.
    pub deliveries: AtomicU64,
}

/// Shared metrics.
pub type SharedMetrics = Arc<Metrics>;

/// A drop guard counting one open connection.
pub struct OpenConnection(SharedMetrics);

impl OpenConnection {
    /// Counts a new connection until the guard drops.
    pub fn new(m: &SharedMetrics) -> Self {
        m.connections.fetch_add(1, Ordering::Relaxed);
        m.connections_total.fetch_add(1, Ordering::Relaxed);
        OpenConnection(m.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// A connection was refused by authentication.
    pub fn auth_rejected(&self, conn: u64, reason: &dyn std::fmt::Display) {
        self.auth_rejections.fetch_add(1, Ordering::Relaxed);
        tracing::info!(conn, reason = %reason, "connection rejected: unauthorized");
    }

    /// A subscription was confirmed.
    pub fn subscribed(&self, conn: u64, identifier: &Identifier) {
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(conn, identifier = %identifier, "subscription confirmed");
    }

    /// A subscription ended.
    pub fn unsubscribed(&self, conn: u64, identifier: &Identifier) {
        self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(conn, identifier = %identifier, "subscription removed");
    }

    /// A command was ignored or rejected.
    pub fn bad_command(&self, conn: u64, why: &dyn std::fmt::Display) {
        self.bad_commands.fetch_add(1, Ordering::Relaxed);
        tracing::info!(conn, why = %why, "command not processed");
    }

    /// A connection was closed because its outbox overflowed.
    pub fn slow_client(&self, conn: u64) {
        self.slow_clients.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(conn, "slow client disconnected");
    }

    /// A broadcast was fanned out on this node.
    pub fn broadcast(&self, stream: &str, delivered: usize) {
        self.broadcasts.fetch_add(1, Ordering::Relaxed);
        self.deliveries
            .fetch_add(delivered as u64, Ordering::Relaxed);
        tracing::trace!(stream, delivered, "broadcast fanned out");
    }
}
