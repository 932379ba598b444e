//! `PresenceChannel`, natively: the seed's semantics and payloads, without its flaws.
//!
//! As in the seed, subscribing streams from `presence_room_<room_id>` and broadcasts
//! `{"action":"user_joined","user":{…},"member_ids":[…],"member_count":n}` there; the
//! `heartbeat` action refreshes the 30 s presence mark; unsubscribing broadcasts
//! `user_left`. Unlike the seed:
//! - membership counts subscriptions, so a user in two tabs leaves with the last tab
//!   (one `user_left`, not one per tab while still present);
//! - the joiner always gets its own `user_joined`, after its confirm;
//! - unless `strict` is set, a new subscriber first gets, on its own subscription only,
//!   one `user_joined` per member already present, so the seed's unchanged Stimulus
//!   controller shows the whole roster.
//!
//! A shared store (Redis) also finds membership changes nobody unsubscribed for: the
//! users of a crashed node, stale members, users re-registered after Redis lost them.
//! [`run_maintenance`] sweeps it periodically and broadcasts those as `user_left` /
//! `user_joined`, naming the user from the [`ProfileSource`] (id only when unknown).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::{ChannelError, Ctx, Performed, Subscription};
use crate::auth::{ProfileSource, UserProfile};
use crate::broker::SharedBroker;
use crate::presence::{ChangeKind, PresenceChange, PresenceStore, UserId};
use crate::protocol::json;
use crate::protocol::ChannelParams;

/// The `PresenceChannel` class.
pub struct PresenceChannel {
    store: Arc<dyn PresenceStore>,
    broker: SharedBroker,
    profiles: Arc<dyn ProfileSource>,
    strict: bool,
}

impl PresenceChannel {
    /// A presence channel on `store`, broadcasting through `broker`, naming members
    /// with `profiles`. `strict` turns the roster replay off (Rails behaviour).
    pub fn new(
        store: Arc<dyn PresenceStore>,
        broker: SharedBroker,
        profiles: Arc<dyn ProfileSource>,
        strict: bool,
    ) -> Self {
        PresenceChannel {
            store,
            broker,
            profiles,
            strict,
        }
    }
}

/// The stream a room broadcasts on.
pub fn room_stream(room: &str) -> String {
    format!("presence_room_{room}")
}

/// Encodes a presence event as the seed's `broadcast_presence_change` does.
pub fn event_payload(action: &str, user_json: &[u8], member_ids: &[UserId]) -> Bytes {
    let mut out = Vec::with_capacity(96 + user_json.len() + member_ids.len() * 8);
    out.extend_from_slice(b"{\"action\":");
    json::write_str(&mut out, action);
    out.extend_from_slice(b",\"user\":");
    out.extend_from_slice(user_json);
    out.extend_from_slice(b",\"member_ids\":[");
    let mut buf = itoa::Buffer::new();
    for (i, id) in member_ids.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(buf.format(*id).as_bytes());
    }
    out.extend_from_slice(b"],\"member_count\":");
    out.extend_from_slice(buf.format(member_ids.len()).as_bytes());
    out.push(b'}');
    Bytes::from(out)
}

/// Broadcasts one change found by a sweep to its room.
///
/// # Errors
/// When the profile source or the broker fails.
pub async fn broadcast_change(
    change: &PresenceChange,
    broker: &SharedBroker,
    profiles: &dyn ProfileSource,
) -> Result<(), ChannelError> {
    let profile = match profiles.lookup(change.user).await? {
        Some(p) => p,
        None => Arc::new(UserProfile::new(change.user, None, None)),
    };
    let action = match change.kind {
        ChangeKind::Joined => "user_joined",
        ChangeKind::Left => "user_left",
    };
    let payload = event_payload(action, profile.json(), &change.member_ids);
    broker.publish(&room_stream(&change.room), payload).await?;
    Ok(())
}

/// Runs `store`'s sweeps until `shutdown`, every [`crate::presence::Maintenance`]
/// interval and whenever the store asks (e.g. after a Redis reconnect), broadcasting
/// every change found. Returns at once for a store that needs no maintenance.
///
/// Sweeps are skipped while the broker reports Redis down (or not yet re-subscribed):
/// what they would announce could not reach this node's clients. A sweep also keeps the
/// node alive, so a node cut off from Redis pub/sub for longer than its node TTL is
/// counted as gone by the others (its users get `user_left`) and re-registers itself,
/// with `user_joined`, when it is back.
pub async fn run_maintenance(
    store: Arc<dyn PresenceStore>,
    broker: SharedBroker,
    profiles: Arc<dyn ProfileSource>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let Some(m) = store.maintenance() else {
        return;
    };
    let mut tick = tokio::time::interval(m.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            _ = m.wake.notified() => {}
        }
        // While broadcasts cannot reach this node (Redis down, or back but not yet
        // re-subscribed), what a sweep announces would be lost: wait. The broker wakes
        // us once it has re-subscribed.
        if matches!(
            broker.health(),
            crate::broker::BrokerHealth::Redis { up: false }
        ) {
            continue;
        }
        match store.sweep().await {
            Ok(changes) => {
                for change in &changes {
                    if let Err(e) = broadcast_change(change, &broker, profiles.as_ref()).await {
                        tracing::warn!(error = %e, room = %change.room, user = change.user, "presence change not broadcast");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "presence sweep failed, retrying next period"),
        }
    }
}

#[async_trait]
impl super::Channel for PresenceChannel {
    async fn subscribe(
        &self,
        _ctx: &Ctx<'_>,
        params: &ChannelParams,
    ) -> Result<Option<Box<dyn Subscription>>, ChannelError> {
        // The join runs after the confirm; with the store unreachable (a Redis outage,
        // or its client still reconnecting while the broker's is back) it would fail
        // after the client was told it is in. Refuse now instead, as Rails' channel
        // would fail in `subscribed`.
        if !self.store.is_up() {
            return Err(crate::presence::PresenceError::Backend(
                "presence store unreachable".into(),
            )
            .into());
        }
        // `"#{params[:room_id]}"`: nil interpolates as the empty string; an array or
        // object is refused (see `protocol::ruby`).
        let room = match params.param_text("room_id") {
            Ok(room) => room.unwrap_or_default(),
            Err(e) => {
                tracing::info!(error = %e, "room_id cannot be interpolated: subscription rejected");
                return Ok(None);
            }
        };
        let stream: Arc<str> = Arc::from(room_stream(&room));
        Ok(Some(Box::new(PresenceSubscription {
            room,
            streams: [stream],
            store: self.store.clone(),
            broker: self.broker.clone(),
            profiles: self.profiles.clone(),
            strict: self.strict,
            joined: false,
        })))
    }
}

struct PresenceSubscription {
    room: String,
    streams: [Arc<str>; 1],
    store: Arc<dyn PresenceStore>,
    broker: SharedBroker,
    profiles: Arc<dyn ProfileSource>,
    strict: bool,
    joined: bool,
}

impl PresenceSubscription {
    async fn profile(&self, id: UserId) -> Result<Arc<UserProfile>, ChannelError> {
        // A member this node's source does not know (joined through another server)
        // is still shown, with its id only.
        Ok(match self.profiles.lookup(id).await? {
            Some(p) => p,
            None => Arc::new(UserProfile::new(id, None, None)),
        })
    }
}

#[async_trait]
impl Subscription for PresenceSubscription {
    fn streams(&self) -> &[Arc<str>] {
        &self.streams
    }

    async fn confirmed(&mut self, ctx: &Ctx<'_>) -> Result<(), ChannelError> {
        let me = ctx.identity.user_id;
        let join = self.store.join(&self.room, me, ctx.key).await?;
        self.joined = true;
        if !self.strict {
            for &member in join.member_ids.iter().filter(|&&m| m != me) {
                let profile = self.profile(member).await?;
                ctx.transmit(&event_payload(
                    "user_joined",
                    profile.json(),
                    &join.member_ids,
                ));
            }
        }
        let payload = event_payload("user_joined", ctx.identity.profile.json(), &join.member_ids);
        self.broker.publish(&self.streams[0], payload).await?;
        Ok(())
    }

    async fn perform(
        &mut self,
        ctx: &Ctx<'_>,
        action: &str,
        _data: &Map<String, Value>,
    ) -> Result<Performed, ChannelError> {
        match action {
            "heartbeat" => {
                self.store
                    .heartbeat(&self.room, ctx.identity.user_id)
                    .await?;
                Ok(Performed::Done)
            }
            _ => Ok(Performed::UnknownAction),
        }
    }

    async fn unsubscribed(&mut self, ctx: &Ctx<'_>) -> Result<(), ChannelError> {
        if !self.joined {
            return Ok(());
        }
        self.joined = false;
        let leave = self
            .store
            .leave(&self.room, ctx.identity.user_id, ctx.key)
            .await?;
        if leave.last {
            let payload =
                event_payload("user_left", ctx.identity.profile.json(), &leave.member_ids);
            self.broker.publish(&self.streams[0], payload).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_matches_the_seed() {
        let alice = UserProfile::new(
            1,
            Some("Alice".into()),
            Some("https://example.test/avatars/alice.png".into()),
        );
        assert_eq!(
            &event_payload("user_joined", alice.json(), &[1])[..],
            br#"{"action":"user_joined","user":{"id":1,"name":"Alice","avatar_url":"https://example.test/avatars/alice.png"},"member_ids":[1],"member_count":1}"#
        );
        assert_eq!(
            &event_payload("user_left", alice.json(), &[])[..],
            br#"{"action":"user_left","user":{"id":1,"name":"Alice","avatar_url":"https://example.test/avatars/alice.png"},"member_ids":[],"member_count":0}"#
        );
    }
}
