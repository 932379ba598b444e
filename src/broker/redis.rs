//! The Redis broker: Rails' own `redis` subscription adapter, spoken from our side, so a
//! Rails app's `ActionCable.server.broadcast` reaches our clients and ours reach the
//! app's other cable servers.
//!
//! Two connections, as Rails uses: a publisher for `PUBLISH` and a dedicated subscriber
//! for `SUBSCRIBE`/`UNSUBSCRIBE`. A broadcasting `X` is the Redis channel
//! `<channel_prefix>:X`, or `X` when no prefix is configured (an empty prefix is kept:
//! `:X`, as Rails keeps it). Plain channels only, never patterns.
//!
//! What arrives is handed to the [`BroadcastHandler`] re-encoded as Rails re-encodes it
//! (`ActiveSupport::JSON.decode` then `encode`: key order kept, whitespace gone, `2.50`
//! as `2.5`, `<>&` escaped; see [`crate::protocol::json`]). A payload that is not JSON
//! is dropped and logged, as Rails drops it. Our own publishes are the exact JSON bytes
//! we were given. Internal channels (`action_cable/…`) go to
//! [`BroadcastHandler::on_internal`] with the raw payload.
//!
//! # Invariants
//! - **At most once.** Redis pub/sub keeps nothing: a broadcast published while the
//!   subscriber is disconnected, or before the re-`SUBSCRIBE` after a reconnect, is lost
//!   and never replayed (Rails behaves the same). A subscriber that falls more than
//!   [`MESSAGE_BUFFER`] messages behind loses the overflow (logged).
//! - Order holds per Redis channel per publishing connection, and nothing more.
//! - Reference-counted: a Redis channel is `SUBSCRIBE`d on its first
//!   [`Broker::subscribe`] and `UNSUBSCRIBE`d on the matching last
//!   [`Broker::unsubscribe`], whatever order concurrent calls for one channel arrive in
//!   (each channel's calls are serialised on its own lock).
//! - [`Broker::subscribe`] returns only after Redis acknowledged the `SUBSCRIBE`.
//!   While Redis is unreachable it fails at once (the subscription is then rejected);
//!   it never queues.
//! - [`Broker::health`] is up only while both connections are ready and the subscriber
//!   has re-subscribed since its last (re)connection.
//! - After a reconnect every channel with local subscribers is `SUBSCRIBE`d again as soon
//!   as the connection is back (reconnect attempts back off from 100 ms to
//!   [`crate::redis::MAX_RECONNECT_DELAY`]).
//! - Standalone Redis (or a proxy in front of one), over TLS or found through Sentinel;
//!   Redis Cluster is refused at startup ([`crate::redis::check_url`]).
//! - Without [`RedisBrokerConfig::required`], a Redis that is down at startup is not an
//!   error: the broker starts down and comes up when Redis answers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::prelude::Client;
use fred::types::Value as RedisValue;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::{BroadcastHandler, Broker, BrokerError, BrokerHealth};
use crate::protocol::json;
use crate::redis::{client_for, connect, Link};

/// Messages the subscriber may be behind before it loses some.
pub const MESSAGE_BUFFER: usize = 16_384;

/// What the Redis broker needs.
#[derive(Debug, Clone)]
pub struct RedisBrokerConfig {
    /// `redis://[user:password@]host:port[/db]` (the db number does not matter to
    /// pub/sub).
    pub url: String,
    /// `channel_prefix` from the app's `cable.yml`; `None` when it has none.
    pub channel_prefix: Option<String>,
    /// Fail [`RedisBroker::connect`] when Redis is unreachable at startup; otherwise
    /// start degraded and connect in the background.
    pub required: bool,
}

impl RedisBrokerConfig {
    /// The Redis channel of broadcasting `stream`, as Action Cable's `ChannelPrefix`
    /// names it.
    pub fn redis_channel(&self, stream: &str) -> String {
        match &self.channel_prefix {
            Some(p) => format!("{p}:{stream}"),
            None => stream.to_owned(),
        }
    }

    /// The broadcasting of Redis channel `channel`, or `None` when it is not ours.
    pub fn stream_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        match &self.channel_prefix {
            Some(p) => channel.strip_prefix(p.as_str())?.strip_prefix(':'),
            None => Some(channel),
        }
    }
}

fn backend(
    op: &str,
    channel: &str,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> BrokerError {
    BrokerError::backend(format!("redis {op} {channel}"), e)
}

/// Per-channel reference counts, each behind its own async lock so the Redis round trip
/// of one channel never waits for another's.
#[derive(Default)]
struct Channels {
    counts: Mutex<HashMap<String, Arc<tokio::sync::Mutex<usize>>>>,
    /// Channels that should be subscribed (count > 0, or a SUBSCRIBE in flight): what a
    /// reconnect re-subscribes.
    wanted: Mutex<HashSet<String>>,
}

impl Channels {
    fn entry(&self, channel: &str) -> Arc<tokio::sync::Mutex<usize>> {
        self.counts
            .lock()
            .entry(channel.to_owned())
            .or_default()
            .clone()
    }

    /// Drops the entry of `channel` when nobody holds it and its count is zero.
    fn forget_if_idle(&self, channel: &str, entry: Arc<tokio::sync::Mutex<usize>>) {
        let mut counts = self.counts.lock();
        // Only the map and `entry` hold it, and a clone is only made under this lock.
        if Arc::strong_count(&entry) == 2 {
            if let Ok(n) = entry.try_lock() {
                if *n == 0 {
                    counts.remove(channel);
                }
            }
        }
    }

    fn wanted(&self) -> Vec<String> {
        self.wanted.lock().iter().cloned().collect()
    }
}

/// Tells whether every (re)connection of the subscriber has been re-subscribed.
///
/// fred announces a connection (reconnect event) before it reports itself connected,
/// so once the subscriber is connected, its event is already queued on `seen`; the
/// connection is usable for delivery only when `done` caught up with it.
struct Resync {
    /// Our own receiver of the reconnect events, drained by [`RedisBroker::health`].
    seen: Mutex<(
        tokio::sync::broadcast::Receiver<fred::types::config::Server>,
        u64,
    )>,
    /// Reconnect events whose re-SUBSCRIBE has finished.
    done: std::sync::atomic::AtomicU64,
    /// Notified after each re-SUBSCRIBE (the presence sweeper waits for it).
    notify: Mutex<Option<Arc<tokio::sync::Notify>>>,
}

impl Resync {
    fn seen(&self) -> u64 {
        use tokio::sync::broadcast::error::TryRecvError;
        let mut g = self.seen.lock();
        loop {
            match g.0.try_recv() {
                Ok(_) => g.1 += 1,
                Err(TryRecvError::Lagged(n)) => g.1 += n,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return g.1,
            }
        }
    }

    fn finished(&self, events: u64) {
        self.done
            .fetch_add(events, std::sync::atomic::Ordering::SeqCst);
        if let Some(n) = self.notify.lock().as_ref() {
            n.notify_one();
        }
    }
}

/// Broadcasts through Redis pub/sub (see the module docs).
pub struct RedisBroker {
    cfg: RedisBrokerConfig,
    publisher: Client,
    subscriber: Client,
    publisher_link: Link,
    subscriber_link: Link,
    channels: Arc<Channels>,
    resync: Arc<Resync>,
    tasks: Vec<JoinHandle<()>>,
}

impl RedisBroker {
    /// Connects both clients and starts delivering to `handler`. Without
    /// [`RedisBrokerConfig::required`], an unreachable Redis is not an error: the
    /// broker starts down (subscribes fail, `health` says so) and comes up, re-
    /// subscribing what is wanted by then, as soon as Redis answers.
    ///
    /// # Errors
    /// When the URL is invalid or names Redis Cluster, the server is a cluster node,
    /// or (when required) Redis cannot be reached within
    /// [`crate::redis::CONNECT_TIMEOUT`].
    pub async fn connect(
        cfg: RedisBrokerConfig,
        handler: Arc<dyn BroadcastHandler>,
    ) -> Result<RedisBroker, BrokerError> {
        crate::redis::check_url(&cfg.url)?;
        let invalid = |e: fred::error::Error| {
            BrokerError::Setup(crate::redis::RedisSetupError::InvalidUrl(
                e.details().to_string(),
            ))
        };
        let publisher = client_for(&cfg.url, 32).map_err(invalid)?;
        let subscriber = client_for(&cfg.url, MESSAGE_BUFFER).map_err(invalid)?;
        // Listen before connecting, so nothing published after the first SUBSCRIBE is
        // missed.
        let messages = subscriber.message_rx();
        let reconnects = subscriber.reconnect_rx();
        let publisher_link = Link::watch(&publisher);
        let subscriber_link = Link::watch(&subscriber);
        let resync = Arc::new(Resync {
            seen: Mutex::new((subscriber.reconnect_rx(), 0)),
            done: std::sync::atomic::AtomicU64::new(0),
            notify: Mutex::new(None),
        });
        // Both connect concurrently, so a degraded start waits once, not twice.
        let (publisher_up, subscriber_up) = tokio::join!(
            connect(&publisher, "broadcast publisher", cfg.required),
            connect(&subscriber, "broadcast subscriber", cfg.required),
        );
        let up = publisher_up? && subscriber_up?;
        let channels = Arc::new(Channels::default());
        let deliver = tokio::spawn(deliver_loop(messages, cfg.clone(), handler));
        let resubscribe = tokio::spawn(resubscribe_loop(
            reconnects,
            subscriber.clone(),
            channels.clone(),
            resync.clone(),
        ));
        tracing::info!(
            prefix = cfg.channel_prefix.as_deref().unwrap_or("(none)"),
            connected = up,
            "redis broker started"
        );
        Ok(RedisBroker {
            cfg,
            publisher,
            subscriber,
            publisher_link,
            subscriber_link,
            channels,
            resync,
            tasks: vec![deliver, resubscribe],
        })
    }

    /// Notifies `notify` each time the subscriber has re-subscribed after a
    /// (re)connection, i.e. when broadcasts published from then on reach this node again.
    pub fn notify_after_resubscribe(&self, notify: Arc<tokio::sync::Notify>) {
        *self.resync.notify.lock() = Some(notify);
    }

    /// The subscriber connection's (re)connection events from now on (for metrics:
    /// after [`RedisBroker::connect`] returned, each one is a reconnection).
    pub fn reconnect_events(
        &self,
    ) -> tokio::sync::broadcast::Receiver<fred::types::config::Server> {
        self.subscriber.reconnect_rx()
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisBrokerConfig {
        &self.cfg
    }

    /// The Redis channels subscribed (or being subscribed) on this node.
    pub fn subscribed_channels(&self) -> Vec<String> {
        let mut v = self.channels.wanted();
        v.sort_unstable();
        v
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Hands every message to the handler, re-encoded as Rails does.
async fn deliver_loop(
    mut rx: tokio::sync::broadcast::Receiver<fred::types::Message>,
    cfg: RedisBrokerConfig,
    handler: Arc<dyn BroadcastHandler>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(msg) => deliver(&cfg, handler.as_ref(), &msg.channel, &msg.value),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(lost = n, "redis subscriber fell behind, broadcasts lost");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn deliver(cfg: &RedisBrokerConfig, handler: &dyn BroadcastHandler, channel: &str, v: &RedisValue) {
    let Some(stream) = cfg.stream_of(channel) else {
        tracing::debug!(channel, "message on a channel outside our prefix ignored");
        return;
    };
    let Some(payload) = v.as_bytes() else {
        tracing::warn!(channel, "non-string pub/sub message dropped");
        return;
    };
    if super::is_internal(stream) {
        handler.on_internal(stream, payload);
        return;
    }
    match reencode(payload) {
        Some(bytes) => handler.on_broadcast(stream, &bytes),
        None => tracing::warn!(
            channel,
            payload = %String::from_utf8_lossy(&payload[..payload.len().min(200)]),
            "broadcast is not JSON, dropped (JSON::ParserError in Rails)"
        ),
    }
}

/// Decodes and re-encodes a payload as `ActiveSupport::JSON` does, or `None` when it is
/// not JSON.
pub fn reencode(payload: &[u8]) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Some(json::to_vec(&v))
}

/// `SUBSCRIBE`s `channels` and returns once Redis has processed it.
///
/// fred resolves `subscribe` as soon as the command is written (Redis answers it out of
/// band), so a `PING` follows on the same connection: Redis answers commands in order,
/// so its reply proves the `SUBSCRIBE` took effect.
async fn subscribe_acked(subscriber: &Client, channels: Vec<String>) -> Result<(), String> {
    subscriber
        .subscribe(channels)
        .await
        .map_err(|e| e.to_string())?;
    subscriber
        .ping::<RedisValue>(None)
        .await
        .map_err(|e| format!("no reply after SUBSCRIBE: {e}"))?;
    Ok(())
}

/// SUBSCRIBEs every wanted channel again after each (re)connection.
async fn resubscribe_loop(
    mut rx: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    subscriber: Client,
    channels: Arc<Channels>,
    resync: Arc<Resync>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let events = match rx.recv().await {
            Ok(_) => 1,
            // The skipped events need no separate re-SUBSCRIBE: this one covers them.
            Err(RecvError::Lagged(n)) => n,
            Err(RecvError::Closed) => return,
        };
        let wanted = channels.wanted();
        if wanted.is_empty() {
            resync.finished(events);
            continue;
        }
        let mut ok = 0usize;
        for batch in wanted.chunks(256) {
            match subscribe_acked(&subscriber, batch.to_vec()).await {
                Ok(()) => ok += batch.len(),
                Err(e) => {
                    tracing::error!(error = %e, channels = batch.len(), "re-SUBSCRIBE after reconnect failed")
                }
            }
        }
        tracing::info!(channels = ok, "redis reconnected, channels re-subscribed");
        resync.finished(events);
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, stream: &str, payload: Bytes) -> Result<(), BrokerError> {
        let channel = self.cfg.redis_channel(stream);
        if !self.publisher_link.is_up(&self.publisher) {
            return Err(backend("PUBLISH", &channel, "not connected"));
        }
        self.publisher
            .publish::<i64, _, _>(channel.as_str(), payload)
            .await
            .map_err(|e| backend("PUBLISH", &channel, e))?;
        Ok(())
    }

    async fn subscribe(&self, stream: &str) -> Result<(), BrokerError> {
        let channel = self.cfg.redis_channel(stream);
        let entry = self.channels.entry(&channel);
        let mut count = entry.lock().await;
        if *count == 0 {
            if !self.subscriber_link.is_up(&self.subscriber) {
                drop(count);
                self.channels.forget_if_idle(&channel, entry);
                return Err(backend("SUBSCRIBE", &channel, "not connected"));
            }
            // Wanted before it is sent: a reconnect racing this SUBSCRIBE repeats it.
            self.channels.wanted.lock().insert(channel.clone());
            if let Err(e) = subscribe_acked(&self.subscriber, vec![channel.clone()]).await {
                self.channels.wanted.lock().remove(&channel);
                drop(count);
                self.channels.forget_if_idle(&channel, entry);
                return Err(backend("SUBSCRIBE", &channel, e));
            }
            tracing::debug!(channel = %channel, "redis SUBSCRIBE acknowledged");
        }
        *count += 1;
        Ok(())
    }

    async fn unsubscribe(&self, stream: &str) -> Result<(), BrokerError> {
        let channel = self.cfg.redis_channel(stream);
        let entry = self.channels.entry(&channel);
        let mut count = entry.lock().await;
        let mut result = Ok(());
        if *count > 0 {
            *count -= 1;
            if *count == 0 {
                self.channels.wanted.lock().remove(&channel);
                // While disconnected there is nothing to undo: the new connection will
                // not re-subscribe a channel that is no longer wanted.
                if self.subscriber_link.is_up(&self.subscriber) {
                    result = self
                        .subscriber
                        .unsubscribe(channel.as_str())
                        .await
                        .map_err(|e| backend("UNSUBSCRIBE", &channel, e));
                }
            }
        }
        drop(count);
        self.channels.forget_if_idle(&channel, entry);
        result
    }

    fn health(&self) -> BrokerHealth {
        let connected = self.publisher_link.is_up(&self.publisher)
            && self.subscriber_link.is_up(&self.subscriber);
        // Read `seen` only once connected: the connection's event is queued by then.
        let up = connected
            && self.resync.done.load(std::sync::atomic::Ordering::SeqCst) >= self.resync.seen();
        BrokerHealth::Redis { up }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(prefix: Option<&str>) -> RedisBrokerConfig {
        RedisBrokerConfig {
            url: "redis://127.0.0.1:1".into(),
            channel_prefix: prefix.map(str::to_owned),
            required: false,
        }
    }

    #[test]
    fn channel_names_follow_action_cable_channel_prefix() {
        // The table of spec/redis-adapter.md §2.
        assert_eq!(cfg(None).redis_channel("chat_lobby"), "chat_lobby");
        assert_eq!(
            cfg(Some("myapp_production")).redis_channel("chat_lobby"),
            "myapp_production:chat_lobby"
        );
        assert_eq!(
            cfg(Some("myapp_production")).redis_channel("chat:Z2lkOi8vbXktYXBwL1Jvb20vNw"),
            "myapp_production:chat:Z2lkOi8vbXktYXBwL1Jvb20vNw"
        );
        assert_eq!(cfg(Some("")).redis_channel("chat_lobby"), ":chat_lobby");
        assert_eq!(
            cfg(Some("refapp")).stream_of("refapp:chat_pub"),
            Some("chat_pub")
        );
        assert_eq!(cfg(Some("refapp")).stream_of("chat_pub"), None);
        assert_eq!(cfg(Some("refapp")).stream_of("refappx:chat_pub"), None);
        assert_eq!(cfg(Some("")).stream_of(":a:b"), Some("a:b"));
        assert_eq!(cfg(None).stream_of("a:b"), Some("a:b"));
    }

    #[test]
    fn payloads_are_reencoded_as_rails_does() {
        // The payloads of the reference's `redis_publish` scenario.
        let cases: [(&str, Option<&str>); 8] = [
            (
                r#"{"text":"from redis","n":1}"#,
                Some(r#"{"text":"from redis","n":1}"#),
            ),
            (
                r#"{ "z" : 1 ,  "a" : [1, 2.50, 1e3, -0.0, 10000000000000000000] }"#,
                Some(r#"{"z":1,"a":[1,2.5,1000.0,-0.0,10000000000000000000]}"#),
            ),
            (
                r#"{"html":"<b>&amp;</b>","u":"caf\u00e9 ✓ \u2028","slash":"a/b"}"#,
                Some(
                    r#"{"html":"\u003cb\u003e\u0026amp;\u003c/b\u003e","u":"café ✓ \u2028","slash":"a/b"}"#,
                ),
            ),
            (r#""just a string""#, Some(r#""just a string""#)),
            ("42", Some("42")),
            ("null", Some("null")),
            ("hello world", None),
            (
                r#"{"identifier":"x","type":"ping"}"#,
                Some(r#"{"identifier":"x","type":"ping"}"#),
            ),
        ];
        for (input, want) in cases {
            let got = reencode(input.as_bytes()).map(|b| String::from_utf8(b).expect("utf-8"));
            assert_eq!(got.as_deref(), want, "payload {input}");
        }
    }

    struct Recorder(Mutex<Vec<(String, String, bool)>>);

    impl BroadcastHandler for Recorder {
        fn on_broadcast(&self, stream: &str, payload: &[u8]) {
            self.0.lock().push((
                stream.into(),
                String::from_utf8_lossy(payload).into(),
                false,
            ));
        }
        fn on_internal(&self, stream: &str, payload: &[u8]) {
            self.0
                .lock()
                .push((stream.into(), String::from_utf8_lossy(payload).into(), true));
        }
    }

    #[test]
    fn deliveries_are_routed_by_channel() {
        let r = Recorder(Mutex::new(Vec::new()));
        let c = cfg(Some("refapp"));
        let s = |t: &str| RedisValue::String(t.to_owned().into());
        deliver(&c, &r, "refapp:chat_pub", &s(r#"{ "a" : 1 }"#));
        deliver(&c, &r, "chat_pub", &s(r#"{"a":2}"#));
        deliver(&c, &r, "refapp:chat_pub", &s("hello world"));
        deliver(
            &c,
            &r,
            "refapp:action_cable/Z2lkOi8vcmVmYXBwL1VzZXIvMQ",
            &s(r#"{"type":"disconnect"}"#),
        );
        assert_eq!(
            *r.0.lock(),
            vec![
                ("chat_pub".into(), r#"{"a":1}"#.into(), false),
                (
                    "action_cable/Z2lkOi8vcmVmYXBwL1VzZXIvMQ".into(),
                    r#"{"type":"disconnect"}"#.into(),
                    true
                ),
            ]
        );
    }
}
