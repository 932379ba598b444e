//! What a subscription means: the subscribe / perform / unsubscribe flow.
//!
//! A [`Channel`] is looked up by its Rails class name in the [`Registry`] and, like a
//! Rails channel class, makes one [`Subscription`] object per subscribe. The
//! [`Subscriptions`] table of a connection runs the flow around it:
//!
//! 1. an identifier already subscribed on this connection gets a fresh
//!    `confirm_subscription` and nothing else (Rails ignores it, and 6.1.5+ clients then
//!    resubscribe every 0.5 s forever);
//! 2. an identifier that is not a JSON object with a `channel` is ignored and logged,
//!    as in Rails; an unknown channel gets `reject_subscription` (Rails stays silent),
//!    or, with `--confirm-unknown-channels`, a confirmation and no streams;
//! 3. the channel accepts (naming its streams, and doing whatever must succeed before
//!    the client is told it is in: the presence join) or rejects;
//! 4. the streams are added to the hub and to the broker (which reference-counts
//!    them: one backend subscription per stream per node) and returns once they are
//!    live; if that fails, [`Subscription::abandoned`] undoes step 3 and the client
//!    gets `reject_subscription`;
//! 5. `confirm_subscription` is queued, then [`Subscription::confirmed`] runs (presence
//!    announces the join here, so the joiner's own `user_joined` always follows its
//!    confirm). Nothing in it may leave the subscription half done: what it cannot do
//!    is logged, and the subscription stands.
//!
//! Unsubscribing removes the streams first, then runs [`Subscription::unsubscribed`],
//! so a leaver never receives its own `user_left`.
//!
//! # Invariants
//! - One connection's commands run one at a time, in order (the connection awaits each).
//! - Every hub entry is matched by exactly one broker subscribe and one unsubscribe,
//!   so the broker's count is the number of local subscriptions to the stream.

pub mod membership;
pub mod naming;
pub mod presence;
pub mod streams;
mod table;
pub mod turbo;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::auth::Identity;
use crate::broker::SharedBroker;
use crate::hub::{ConnHandle, Hub};
use crate::presence::SubscriptionKey;
use crate::protocol::{frames, ChannelParams, Identifier};

pub use membership::{Membership, MembershipError, RedisMembership};
pub use presence::PresenceChannel;
pub use streams::{
    check_declarations, BareChannel, ChannelSpecError, DeclarationContext, StreamChannel,
    StreamChannelDeps, StreamChannelSpec,
};

/// What a channel sees of the subscribing connection.
pub struct Ctx<'a> {
    /// The connection's user.
    pub identity: &'a Identity,
    /// The subscription's identifier.
    pub identifier: &'a Identifier,
    /// This subscription's key (unique on this node).
    pub key: SubscriptionKey,
    /// The connection, to transmit to this subscription only.
    pub conn: &'a ConnHandle,
}

impl Ctx<'_> {
    /// Sends `payload` (encoded JSON) to this subscription only, like Rails' `transmit`.
    pub fn transmit(&self, payload: &[u8]) {
        // A full outbox evicts the connection; nothing else to do here.
        let _ = self
            .conn
            .send_text(frames::message(self.identifier, payload));
    }

    /// Waits until the connection's outbox has room ([`crate::hub::Connection::wait_for_room`]);
    /// returns false when the connection is closing instead. A reply of many frames
    /// (a presence roster) calls this before each [`Ctx::transmit`], so it goes out at
    /// the pace the client reads and never overflows the outbox.
    pub async fn has_room(&self) -> bool {
        self.conn.wait_for_room().await;
        !self.conn.closing().is_cancelled()
    }
}

/// The outcome of a `perform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Performed {
    /// The action ran.
    Done,
    /// The channel has no such action (Rails logs "Unable to process").
    UnknownAction,
}

/// A channel could not do its work because a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The presence store failed.
    #[error(transparent)]
    Presence(#[from] crate::presence::PresenceError),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    /// The profile source failed.
    #[error(transparent)]
    Profile(#[from] crate::auth::ProfileError),
    /// A `member_of` check could not be answered.
    #[error(transparent)]
    Membership(#[from] MembershipError),
}

/// A channel class: makes subscriptions.
#[async_trait]
pub trait Channel: Send + Sync + 'static {
    /// Runs `subscribed`: returns the new subscription, or `None` to reject it.
    ///
    /// # Errors
    /// When a backend fails; the subscription is then rejected.
    async fn subscribe(
        &self,
        ctx: &Ctx<'_>,
        params: &ChannelParams,
    ) -> Result<Option<Box<dyn Subscription>>, ChannelError>;
}

/// One live subscription (a channel instance, in Rails terms).
#[async_trait]
pub trait Subscription: Send + Sync + 'static {
    /// The streams it listens to.
    fn streams(&self) -> &[Arc<str>];

    /// Runs once the subscription's streams are live (in the hub and the broker) and
    /// before `confirm_subscription` is queued: the place for work that may still
    /// refuse the subscription and must not miss a broadcast made after it (the
    /// presence join: a member who joins later is announced on a stream this
    /// connection already hears, and one who joined earlier is in the join's member
    /// list). An `Err` rejects the subscription: its streams are removed and
    /// [`Subscription::abandoned`] runs.
    ///
    /// # Errors
    /// When a backend fails; the error is logged and the client gets
    /// `reject_subscription`.
    async fn prepare(&mut self, _ctx: &Ctx<'_>) -> Result<(), ChannelError> {
        Ok(())
    }

    /// Runs right after `confirm_subscription` was queued. The subscription stands
    /// whatever this returns, so it must do everything it can even when one part
    /// fails (anything that may refuse the subscription belongs in
    /// [`Channel::subscribe`] or [`Subscription::prepare`]).
    ///
    /// # Errors
    /// When a backend fails; the error is logged.
    async fn confirmed(&mut self, _ctx: &Ctx<'_>) -> Result<(), ChannelError> {
        Ok(())
    }

    /// Runs instead of [`Subscription::confirmed`] when the subscription is refused
    /// after the channel accepted it (its streams could not be subscribed, or
    /// [`Subscription::prepare`] failed): undoes what was done, silently, since nobody
    /// was told of it.
    async fn abandoned(&mut self, _ctx: &Ctx<'_>) {}

    /// Runs an action (`perform` on the client).
    ///
    /// # Errors
    /// When a backend fails.
    async fn perform(
        &mut self,
        ctx: &Ctx<'_>,
        action: &str,
        data: &Map<String, Value>,
    ) -> Result<Performed, ChannelError>;

    /// Runs `unsubscribed`, after the streams were removed.
    ///
    /// # Errors
    /// When a backend fails.
    async fn unsubscribed(&mut self, _ctx: &Ctx<'_>) -> Result<(), ChannelError> {
        Ok(())
    }
}

/// Channels by Rails class name.
#[derive(Default, Clone)]
pub struct Registry {
    channels: HashMap<String, Arc<dyn Channel>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `channel` under `name` (e.g. `PresenceChannel`), replacing any other.
    pub fn register(&mut self, name: impl Into<String>, channel: Arc<dyn Channel>) {
        self.channels.insert(name.into(), channel);
    }

    /// The channel called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Channel>> {
        self.channels.get(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.channels.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// What the channels need from the rest of the server, shared by all connections.
pub struct Channels {
    /// Channel classes.
    pub registry: Registry,
    /// The local stream index.
    pub hub: Arc<Hub>,
    /// The cross-node relay.
    pub broker: SharedBroker,
    /// What subscribes to a channel that is not registered: `None` rejects
    /// (the default); `--confirm-unknown-channels` sets a [`BareChannel`].
    pub unknown: Option<Arc<dyn Channel>>,
}

struct Entry {
    sub: Box<dyn Subscription>,
    key: SubscriptionKey,
}

/// What happened to a command (for logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Subscribed and confirmed.
    Confirmed,
    /// Already subscribed: confirmed again.
    Reconfirmed,
    /// Rejected by the channel, or the channel is unknown.
    Rejected(&'static str),
    /// Ignored, as Rails ignores it; the text says why.
    Ignored(String),
    /// Unsubscribed.
    Unsubscribed,
    /// An action ran.
    Performed,
}

/// One connection's subscriptions, keyed by the exact identifier string.
pub struct Subscriptions {
    conn: ConnHandle,
    identity: Identity,
    entries: table::Table<Identifier, Entry>,
    next_seq: u32,
    max: usize,
    max_identifier: usize,
}

impl Subscriptions {
    /// An empty table for `conn`, authenticated as `identity`, holding at most `max`
    /// subscriptions whose identifiers are at most `max_identifier` bytes each, so a
    /// connection's subscriptions pin a bounded amount of memory.
    pub fn new(conn: ConnHandle, identity: Identity, max: usize, max_identifier: usize) -> Self {
        Subscriptions {
            conn,
            identity,
            entries: table::Table::new(),
            next_seq: 0,
            max,
            max_identifier,
        }
    }

    /// How many subscriptions are live.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no subscription is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn send(&self, frame: Bytes) {
        let _ = self.conn.send_text(frame);
    }

    /// Handles `subscribe`.
    pub async fn subscribe(
        &mut self,
        channels: &Channels,
        identifier: Identifier,
    ) -> CommandOutcome {
        if self.entries.contains_key(&identifier) {
            self.send(frames::confirm(&identifier));
            return CommandOutcome::Reconfirmed;
        }
        let params = match identifier.params() {
            Ok(p) => p,
            Err(e) => return CommandOutcome::Ignored(e.to_string()),
        };
        // An oversized identifier is not kept: its streams, room and params would be
        // held as long as the subscription. (Parsing it first, bounded by the message
        // size, keeps Rails' silence for an identifier that is not JSON.)
        if identifier.as_str().len() > self.max_identifier {
            self.send(frames::reject(&identifier));
            return CommandOutcome::Rejected("identifier too large (--max-identifier-size)");
        }
        let channel = match (channels.registry.get(&params.channel), &channels.unknown) {
            (Some(channel), _) => channel,
            (None, Some(fallback)) => {
                tracing::info!(
                    channel = %crate::protocol::clip(&params.channel),
                    "unknown channel confirmed with no streams (--confirm-unknown-channels)"
                );
                fallback
            }
            (None, None) => {
                self.send(frames::reject(&identifier));
                return CommandOutcome::Rejected("unknown channel");
            }
        };
        if self.entries.len() >= self.max {
            self.send(frames::reject(&identifier));
            return CommandOutcome::Rejected("too many subscriptions on this connection");
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        let key = SubscriptionKey {
            conn: self.conn.id(),
            seq: self.next_seq,
        };
        let ctx = Ctx {
            identity: &self.identity,
            identifier: &identifier,
            key,
            conn: &self.conn,
        };
        let mut sub = match channel.subscribe(&ctx, &params).await {
            Ok(Some(sub)) => sub,
            Ok(None) => {
                self.send(frames::reject(&identifier));
                return CommandOutcome::Rejected("rejected by channel");
            }
            Err(e) => {
                tracing::error!(error = %e, identifier = %identifier, "subscribe failed");
                self.send(frames::reject(&identifier));
                return CommandOutcome::Rejected("backend failure");
            }
        };
        for (i, stream) in sub.streams().iter().enumerate() {
            channels.hub.subscribe(stream, &identifier, &self.conn);
            // Every subscriber asks the broker, which counts references: a second
            // subscriber then also waits until the first one's SUBSCRIBE is live.
            if let Err(e) = channels.broker.subscribe(stream).await {
                tracing::error!(error = %e, stream = %stream, "broker subscribe failed");
                channels
                    .hub
                    .unsubscribe(stream, &identifier, self.conn.id());
                for s in &sub.streams()[..i] {
                    self.remove_stream(channels, s, &identifier).await;
                }
                sub.abandoned(&ctx).await;
                self.send(frames::reject(&identifier));
                return CommandOutcome::Rejected("backend failure");
            }
        }
        if let Err(e) = sub.prepare(&ctx).await {
            tracing::error!(error = %e, identifier = %identifier, "subscription could not be prepared: rejected");
            for s in sub.streams() {
                self.remove_stream(channels, s, &identifier).await;
            }
            sub.abandoned(&ctx).await;
            self.send(frames::reject(&identifier));
            return CommandOutcome::Rejected("backend failure");
        }
        self.send(frames::confirm(&identifier));
        if let Err(e) = sub.confirmed(&ctx).await {
            tracing::error!(error = %e, identifier = %identifier, "after-confirm work failed");
        }
        self.entries.insert(identifier, Entry { sub, key });
        CommandOutcome::Confirmed
    }

    async fn remove_stream(&self, channels: &Channels, stream: &str, identifier: &Identifier) {
        channels.hub.unsubscribe(stream, identifier, self.conn.id());
        if let Err(e) = channels.broker.unsubscribe(stream).await {
            tracing::warn!(error = %e, stream = %stream, "broker unsubscribe failed");
        }
    }

    /// Handles `unsubscribe`.
    pub async fn unsubscribe(
        &mut self,
        channels: &Channels,
        identifier: &Identifier,
    ) -> CommandOutcome {
        let Some(mut entry) = self.entries.remove(identifier) else {
            return CommandOutcome::Ignored("unable to find subscription".into());
        };
        for stream in entry.sub.streams() {
            self.remove_stream(channels, stream, identifier).await;
        }
        let ctx = Ctx {
            identity: &self.identity,
            identifier,
            key: entry.key,
            conn: &self.conn,
        };
        if let Err(e) = entry.sub.unsubscribed(&ctx).await {
            tracing::error!(error = %e, identifier = %identifier, "unsubscribed callback failed");
        }
        CommandOutcome::Unsubscribed
    }

    /// Handles `message` (perform). The action is `data["action"]`, `receive` when
    /// missing or blank, as in Rails.
    pub async fn perform(
        &mut self,
        identifier: &Identifier,
        data: &Map<String, Value>,
    ) -> CommandOutcome {
        let Some(entry) = self.entries.get_mut(identifier) else {
            return CommandOutcome::Ignored("unable to find subscription".into());
        };
        let action = match data.get("action") {
            Some(Value::String(a)) if !a.trim().is_empty() => a.as_str(),
            _ => "receive",
        };
        let ctx = Ctx {
            identity: &self.identity,
            identifier,
            key: entry.key,
            conn: &self.conn,
        };
        match entry.sub.perform(&ctx, action, data).await {
            Ok(Performed::Done) => CommandOutcome::Performed,
            Ok(Performed::UnknownAction) => CommandOutcome::Ignored(format!(
                "unknown action {:?}",
                crate::protocol::clip(action)
            )),
            Err(e) => {
                let action = crate::protocol::clip(action);
                tracing::error!(error = %e, identifier = %identifier, action = %action, "action failed");
                CommandOutcome::Ignored("action failed".into())
            }
        }
    }

    /// Unsubscribes everything (the connection is closing).
    pub async fn clear(&mut self, channels: &Channels) {
        let ids: Vec<Identifier> = self.entries.keys().cloned().collect();
        for id in ids {
            self.unsubscribe(channels, &id).await;
        }
    }
}
