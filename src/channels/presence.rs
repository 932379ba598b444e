//! `PresenceChannel`, natively: the seed's semantics and payloads, without its flaws.
//!
//! As in the seed, subscribing streams from `presence_room_<room_id>` and broadcasts
//! `{"action":"user_joined","user":{…},"member_ids":[…],"member_count":n}` there; the
//! `heartbeat` action refreshes the 30 s presence mark; unsubscribing broadcasts
//! `user_left`. Unlike the seed:
//! - membership counts subscriptions, so a user in two tabs leaves with the last tab
//!   (one `user_left`, not one per tab while still present);
//! - the join is made once the room's stream is live and before the confirm
//!   (`Subscription::prepare`): a store failure rejects the subscription, and no
//!   member joining at the same moment is missed (whoever joins later is announced on
//!   the stream, whoever joined earlier is in the join's member list); a confirmed
//!   joiner always gets its own `user_joined`, after its confirm (a roster member
//!   whose profile cannot be looked up is shown by id only);
//! - unless `strict` is set, a new subscriber first gets, on its own subscription only,
//!   one `user_joined` per member already present, so the seed's unchanged Stimulus
//!   controller shows the whole roster.
//!
//! # The roster replay
//! Roster frames are ours (Rails sends none), and carry
//! `{"action":"user_joined","user":{…},"member_count":n}`: the user and the room's
//! count, **no `member_ids`**. The seed's controller reads only `user` and
//! `member_count`, so it renders every member and the right count; the full
//! `member_ids` list reaches the newcomer once, in its own `user_joined` broadcast right
//! after the roster. With the list in every roster frame a newcomer's bytes grew with
//! the square of the room (10,000 members: 10,000 frames of ~60 KB); without it they
//! are linear. Broadcasts (`user_joined` / `user_left` to the whole room) keep Rails'
//! exact shape, `member_ids` included.
//!
//! The replay waits for room in the connection's outbox before each frame
//! ([`Ctx::has_room`]), so a room of any size goes out at the pace the newcomer reads:
//! it is never cut off as a slow client for its own roster, and the half of the outbox
//! kept for broadcasts stays free. It stops early if the connection closes.
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
use crate::presence::{ChangeKind, Join, PresenceChange, PresenceStore, UserId};
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
    encode_event(action, user_json, Some(member_ids), member_ids.len())
}

/// Encodes a roster frame: `user_joined` with the user and the room's `member_count`,
/// without `member_ids` (see the module docs).
pub fn roster_payload(user_json: &[u8], member_count: usize) -> Bytes {
    encode_event("user_joined", user_json, None, member_count)
}

fn encode_event(
    action: &str,
    user_json: &[u8],
    member_ids: Option<&[UserId]>,
    member_count: usize,
) -> Bytes {
    let ids = member_ids.unwrap_or_default();
    let mut out = Vec::with_capacity(96 + user_json.len() + ids.len() * 8);
    out.extend_from_slice(b"{\"action\":");
    json::write_str(&mut out, action);
    out.extend_from_slice(b",\"user\":");
    out.extend_from_slice(user_json);
    let mut buf = itoa::Buffer::new();
    if member_ids.is_some() {
        out.extend_from_slice(b",\"member_ids\":[");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(buf.format(*id).as_bytes());
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"member_count\":");
    out.extend_from_slice(buf.format(member_count).as_bytes());
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
        // The join is made in `prepare`, once the room's stream is live and before the
        // confirm, so a store that fails (a Redis outage, or its client still
        // reconnecting while the broker's is back) rejects the subscription instead of
        // failing after the client was told it is in, and no member who joins
        // meanwhile is missed. A store known to be down is refused here, at once.
        if !self.store.is_up() {
            return Err(crate::presence::PresenceError::Unavailable.into());
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
            announce: None,
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
    /// Whether the store holds this subscription (until it leaves or is abandoned).
    joined: bool,
    /// The join made by `prepare`, before the confirm, announced once confirmed.
    announce: Option<Join>,
}

impl PresenceSubscription {
    /// The profile of `id`, or `None` when the source failed. A member this node's
    /// source does not know (joined through another server) is shown with its id only.
    async fn profile(&self, id: UserId) -> Option<Arc<UserProfile>> {
        match self.profiles.lookup(id).await {
            Ok(Some(p)) => Some(p),
            Ok(None) => Some(Arc::new(UserProfile::new(id, None, None))),
            Err(e) => {
                tracing::warn!(error = %e, user = id, "profile lookup failed: member shown by id only");
                None
            }
        }
    }

    /// Sends the newcomer `me` one roster frame per other member, paced by its outbox
    /// (see the module docs). Stops early when the connection closes. Once the profile
    /// source has failed, the rest of the roster is shown by id without asking it
    /// again: a room of thousands must not wait on (or log) thousands of failures.
    async fn replay_roster(&self, ctx: &Ctx<'_>, me: UserId, member_ids: &[UserId]) {
        let mut source_failed = false;
        for &member in member_ids.iter().filter(|&&m| m != me) {
            if !ctx.has_room().await {
                return;
            }
            let profile = if source_failed {
                None
            } else {
                self.profile(member).await
            };
            source_failed |= profile.is_none();
            let profile = profile.unwrap_or_else(|| Arc::new(UserProfile::new(member, None, None)));
            ctx.transmit(&roster_payload(profile.json(), member_ids.len()));
        }
    }
}

#[async_trait]
impl Subscription for PresenceSubscription {
    fn streams(&self) -> &[Arc<str>] {
        &self.streams
    }

    async fn prepare(&mut self, ctx: &Ctx<'_>) -> Result<(), ChannelError> {
        // The room's stream is live here: whoever joins after this join's snapshot is
        // announced on it, whoever joined before is in the snapshot, so the roster
        // replayed after the confirm plus the broadcasts miss nobody.
        let join = self
            .store
            .join(&self.room, ctx.identity.user_id, ctx.key)
            .await?;
        self.joined = true;
        self.announce = Some(join);
        Ok(())
    }

    async fn confirmed(&mut self, ctx: &Ctx<'_>) -> Result<(), ChannelError> {
        let Some(join) = self.announce.take() else {
            return Ok(());
        };
        let me = ctx.identity.user_id;
        if !self.strict {
            self.replay_roster(ctx, me, &join.member_ids).await;
        }
        let payload = event_payload("user_joined", ctx.identity.profile.json(), &join.member_ids);
        if let Err(e) = self.broker.publish(&self.streams[0], payload.clone()).await {
            // Lost for the others, as any broadcast during an outage (at most once);
            // the joiner, confirmed, still sees its own join.
            ctx.transmit(&payload);
            return Err(e.into());
        }
        Ok(())
    }

    async fn abandoned(&mut self, ctx: &Ctx<'_>) {
        if !std::mem::take(&mut self.joined) {
            return;
        }
        // Never announced: leave without `user_left`.
        if let Err(e) = self
            .store
            .leave(&self.room, ctx.identity.user_id, ctx.key)
            .await
        {
            tracing::warn!(error = %e, room = %self.room, "abandoned subscription not removed from presence");
        }
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
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::auth::{Identity, ProfileError};
    use crate::broker::{BroadcastHandler, Broker, BrokerError, MemoryBroker};
    use crate::channels::{Channels, CommandOutcome, Registry, Subscriptions};
    use crate::hub::{ConnHandle, Connection, Hub, Outgoing};
    use crate::presence::{Join, Leave, MemoryStore, PresenceError, SubscriptionKey};
    use crate::protocol::Identifier;

    /// The memory store, whose joins fail on demand while it reports itself up (the
    /// store going down between the health check and the join).
    #[derive(Default)]
    struct FlakyStore {
        inner: MemoryStore,
        fail_joins: AtomicBool,
    }

    #[async_trait]
    impl PresenceStore for FlakyStore {
        async fn join(
            &self,
            room: &str,
            user: UserId,
            sub: SubscriptionKey,
        ) -> Result<Join, PresenceError> {
            if self.fail_joins.load(Ordering::SeqCst) {
                return Err(PresenceError::backend("JOIN", "injected"));
            }
            self.inner.join(room, user, sub).await
        }
        async fn leave(
            &self,
            room: &str,
            user: UserId,
            sub: SubscriptionKey,
        ) -> Result<Leave, PresenceError> {
            self.inner.leave(room, user, sub).await
        }
        async fn heartbeat(&self, room: &str, user: UserId) -> Result<(), PresenceError> {
            self.inner.heartbeat(room, user).await
        }
        async fn members(&self, room: &str) -> Result<Vec<UserId>, PresenceError> {
            self.inner.members(room).await
        }
    }

    /// Names every user `U<id>`, except that looking `broken` up fails; counts lookups.
    struct Profiles {
        broken: UserId,
        lookups: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl ProfileSource for Profiles {
        async fn lookup(&self, id: i64) -> Result<Option<Arc<UserProfile>>, ProfileError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if id == self.broken {
                return Err(ProfileError::Database("injected".into()));
            }
            Ok(Some(Arc::new(UserProfile::new(
                id,
                Some(format!("U{id}")),
                None,
            ))))
        }
    }

    struct Relay(Arc<Hub>);

    impl BroadcastHandler for Relay {
        fn on_broadcast(&self, stream: &str, payload: &[u8]) {
            self.0.broadcast(stream, payload);
        }
    }

    /// The memory broker, whose subscribes or publishes fail on demand.
    struct FlakyBroker {
        inner: MemoryBroker,
        fail_subscribes: AtomicBool,
        fail_publishes: AtomicBool,
    }

    #[async_trait]
    impl Broker for FlakyBroker {
        async fn publish(&self, stream: &str, payload: Bytes) -> Result<(), BrokerError> {
            if self.fail_publishes.load(Ordering::SeqCst) {
                return Err(BrokerError::backend("PUBLISH", "injected"));
            }
            self.inner.publish(stream, payload).await
        }
        async fn subscribe(&self, stream: &str) -> Result<(), BrokerError> {
            if self.fail_subscribes.load(Ordering::SeqCst) {
                return Err(BrokerError::backend("SUBSCRIBE", "injected"));
            }
            self.inner.subscribe(stream).await
        }
        async fn unsubscribe(&self, stream: &str) -> Result<(), BrokerError> {
            self.inner.unsubscribe(stream).await
        }
    }

    struct World {
        store: Arc<FlakyStore>,
        broker: Arc<FlakyBroker>,
        profiles: Arc<Profiles>,
        channels: Channels,
    }

    fn world(broken_profile: UserId) -> World {
        let store = Arc::new(FlakyStore::default());
        let hub = Arc::new(Hub::new(1));
        let broker = Arc::new(FlakyBroker {
            inner: MemoryBroker::new(Arc::new(Relay(hub.clone()))),
            fail_subscribes: AtomicBool::new(false),
            fail_publishes: AtomicBool::new(false),
        });
        let shared: SharedBroker = broker.clone();
        let profiles = Arc::new(Profiles {
            broken: broken_profile,
            lookups: Default::default(),
        });
        let channel = PresenceChannel::new(store.clone(), shared.clone(), profiles.clone(), false);
        let mut registry = Registry::new();
        registry.register("PresenceChannel", Arc::new(channel));
        World {
            store,
            broker,
            profiles,
            channels: Channels {
                registry,
                hub,
                broker: shared,
                unknown: None,
            },
        }
    }

    fn user(id: UserId) -> (ConnHandle, Subscriptions) {
        let conn = Connection::with_budget(id as u64, 64 * 1024);
        let identity = Identity {
            user_id: id,
            connection_identifier: None,
            profile: Arc::new(UserProfile::new(id, Some(format!("U{id}")), None)),
            via: "test",
        };
        (conn.clone(), Subscriptions::new(conn, identity, 8, 4096))
    }

    /// The text frames queued for `conn`.
    fn frames(conn: &Connection) -> Vec<String> {
        let mut out = VecDeque::new();
        conn.take_now(&mut out);
        out.into_iter()
            .map(|o| match o {
                Outgoing::Text(b) => String::from_utf8_lossy(&b).into_owned(),
                other => panic!("expected a text frame, got {other:?}"),
            })
            .collect()
    }

    fn room(id: &str) -> Identifier {
        Identifier::new(&format!(
            r#"{{"channel":"PresenceChannel","room_id":{id}}}"#
        ))
    }

    fn joined(identifier: &Identifier, user: &str, ids: &str) -> String {
        let payload = format!(
            r#"{{"action":"user_joined","user":{user},"member_ids":[{ids}],"member_count":{}}}"#,
            ids.split(',').filter(|s| !s.is_empty()).count()
        );
        String::from_utf8_lossy(&crate::protocol::frames::message(
            identifier,
            payload.as_bytes(),
        ))
        .into_owned()
    }

    #[tokio::test]
    async fn a_join_failing_after_the_health_check_rejects_the_subscription() {
        let w = world(0);
        let (conn, mut subs) = user(1);
        let id = room(r#""1""#);
        w.store.fail_joins.store(true, Ordering::SeqCst);
        assert_eq!(
            subs.subscribe(&w.channels, id.clone()).await,
            CommandOutcome::Rejected("backend failure")
        );
        assert_eq!(
            frames(&conn),
            [String::from_utf8_lossy(&crate::protocol::frames::reject(
                &id
            ))]
        );
        assert!(!w.channels.hub.has_stream("presence_room_1"));
        // Once the store answers, the same subscription goes through.
        w.store.fail_joins.store(false, Ordering::SeqCst);
        assert_eq!(
            subs.subscribe(&w.channels, id.clone()).await,
            CommandOutcome::Confirmed
        );
        assert_eq!(w.store.members("1").await.expect("memory"), [1]);
    }

    /// A roster frame: the member and the count, no `member_ids`.
    fn rostered(identifier: &Identifier, user: &str, count: usize) -> String {
        let payload = format!(r#"{{"action":"user_joined","user":{user},"member_count":{count}}}"#);
        String::from_utf8_lossy(&crate::protocol::frames::message(
            identifier,
            payload.as_bytes(),
        ))
        .into_owned()
    }

    #[tokio::test]
    async fn a_profile_failure_in_the_roster_still_completes_the_join() {
        let w = world(2);
        let id = room(r#""1""#);
        let (_c2, mut s2) = user(2);
        assert_eq!(
            s2.subscribe(&w.channels, id.clone()).await,
            CommandOutcome::Confirmed
        );
        let (c3, mut s3) = user(3);
        assert_eq!(
            s3.subscribe(&w.channels, id.clone()).await,
            CommandOutcome::Confirmed
        );
        assert_eq!(
            frames(&c3),
            [
                String::from_utf8_lossy(&crate::protocol::frames::confirm(&id)).into_owned(),
                // User 2's profile could not be looked up: shown by id only.
                rostered(&id, r#"{"id":2,"name":null,"avatar_url":null}"#, 2),
                joined(&id, r#"{"id":3,"name":"U3","avatar_url":null}"#, "2,3"),
            ]
        );
    }

    #[tokio::test]
    async fn after_a_profile_failure_the_roster_asks_the_source_no_more() {
        let w = world(2);
        let id = room(r#""1""#);
        let mut others = Vec::new();
        for u in [2, 4, 5] {
            let (c, mut s) = user(u);
            assert_eq!(
                s.subscribe(&w.channels, id.clone()).await,
                CommandOutcome::Confirmed
            );
            others.push((c, s));
        }
        w.profiles.lookups.store(0, Ordering::SeqCst);
        let (c3, mut s3) = user(3);
        assert_eq!(
            s3.subscribe(&w.channels, id.clone()).await,
            CommandOutcome::Confirmed
        );
        // Members come in id order: 2 fails, so 4 and 5 are shown by id, unasked.
        assert_eq!(w.profiles.lookups.load(Ordering::SeqCst), 1);
        let by_id = |u: UserId| format!(r#"{{"id":{u},"name":null,"avatar_url":null}}"#);
        assert_eq!(
            frames(&c3),
            [
                String::from_utf8_lossy(&crate::protocol::frames::confirm(&id)).into_owned(),
                rostered(&id, &by_id(2), 4),
                rostered(&id, &by_id(4), 4),
                rostered(&id, &by_id(5), 4),
                joined(&id, r#"{"id":3,"name":"U3","avatar_url":null}"#, "2,3,4,5"),
            ]
        );
    }

    #[tokio::test]
    async fn a_subscription_refused_after_the_join_leaves_no_member_behind() {
        let w = world(0);
        let (conn, mut subs) = user(1);
        let id = room(r#""1""#);
        w.broker.fail_subscribes.store(true, Ordering::SeqCst);
        assert_eq!(
            subs.subscribe(&w.channels, id.clone()).await,
            CommandOutcome::Rejected("backend failure")
        );
        assert_eq!(frames(&conn).len(), 1, "the reject only");
        assert!(w.store.members("1").await.expect("memory").is_empty());
    }

    #[tokio::test]
    async fn a_lost_announcement_still_shows_the_joiner_its_join() {
        let w = world(0);
        let (conn, mut subs) = user(1);
        let id = room(r#""1""#);
        w.broker.fail_publishes.store(true, Ordering::SeqCst);
        assert_eq!(
            subs.subscribe(&w.channels, id.clone()).await,
            CommandOutcome::Confirmed
        );
        assert_eq!(
            frames(&conn)[1..],
            [joined(
                &id,
                r#"{"id":1,"name":"U1","avatar_url":null}"#,
                "1"
            )]
        );
    }

    #[tokio::test]
    async fn room_ids_interpolate_like_ruby() {
        let w = world(0);
        let (_conn, mut subs) = user(1);
        // `"#{params[:room_id]}"` of JSON.parse's 1.5 is "1.5": the stream and the
        // store's room (its Redis keys) are the ones a Rails node uses.
        assert_eq!(
            subs.subscribe(&w.channels, room("1.50")).await,
            CommandOutcome::Confirmed
        );
        assert!(w.channels.hub.has_stream("presence_room_1.5"));
        assert_eq!(w.store.members("1.5").await.expect("memory"), [1]);
        assert_eq!(
            subs.subscribe(&w.channels, room("1e2")).await,
            CommandOutcome::Confirmed
        );
        assert!(w.channels.hub.has_stream("presence_room_100.0"));
        // An array is refused rather than named unlike Rails.
        assert_eq!(
            subs.subscribe(&w.channels, room("[1]")).await,
            CommandOutcome::Rejected("rejected by channel")
        );
    }

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

    #[test]
    fn roster_frames_carry_the_user_and_the_count_only() {
        let bob = UserProfile::new(2, Some("Bob".into()), None);
        assert_eq!(
            &roster_payload(bob.json(), 3)[..],
            br#"{"action":"user_joined","user":{"id":2,"name":"Bob","avatar_url":null},"member_count":3}"#
        );
    }
}
