//! The local index from stream names to subscribed connections, and the fan-out.
//!
//! # Invariants
//! - A broadcast is encoded once per distinct identifier on the stream (usually once),
//!   and every connection gets a reference-counted clone of those bytes.
//! - Fan-out never waits: each connection has an outbox bounded in bytes (each frame
//!   charged its length plus [`FRAME_OVERHEAD`]); when a frame would take it past the
//!   budget the connection is closed as a slow client (its writer sends `slow_client`
//!   with `reconnect: true`) and the broadcast goes on to everybody else. A burst of
//!   frames to a client that keeps reading is not slowness: only bytes pending past the
//!   budget are, or a write stalled past the write timeout (the writer's side, in
//!   `server::connection`). Only the connection itself waits
//!   ([`Connection::wait_for_room`]): its reader before reading the client's next
//!   command, and a command's long reply (a presence roster) between frames, so
//!   replies to the client's own commands cannot overflow it.
//! - [`Hub::subscribe`] reports the first local subscriber of a stream and
//!   [`Hub::unsubscribe`] the last (the broker keeps its own reference count).
//! - Connections are also indexed by Rails connection identifier, so a remote
//!   disconnect closes all of a user's local connections.
//! - Streams are sharded by name hash; a shard lock is held only for map work and the
//!   non-blocking `try_send`s of one broadcast.
//! - Subscribing and unsubscribing cost O(1) (amortized) whatever the stream's size:
//!   a stream's identifiers and an identifier's connections are kept in `index`
//!   lists (a `Vec` for the fan-out to walk, plus a key → position map once long).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::protocol::{frames, CloseCode, DisconnectReason, Identifier};
use index::{Indexed, Keyed};

mod index;

/// A connection's process-unique id.
pub type ConnId = u64;

/// What a connection's writer sends.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A text frame.
    Text(Bytes),
    /// A pong answering the client's ping, with its payload.
    Pong(Bytes),
    /// A close frame echoing the client's (its raw payload), after which the writer stops.
    Close(Bytes),
}

/// How a connection ends, once something decided it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Send the disconnect frame, then close with 1000.
    Disconnect(DisconnectReason),
    /// Close with this code and no disconnect frame (protocol errors, Rails-6.1-style
    /// remote disconnects).
    Close(CloseCode),
    /// The peer is gone or closed first: write nothing more.
    PeerGone,
}

impl Closing {
    /// The `reason` label of the server-close metric, or `None` when the server did not
    /// close (the peer did) or the close is counted elsewhere (authentication refusals).
    /// The one place close codes and disconnect reasons become metric labels.
    pub fn metric_label(&self) -> Option<&'static str> {
        Some(match self {
            Closing::Close(CloseCode::Normal) => "remote",
            Closing::Close(CloseCode::InvalidPayload) => "invalid_utf8",
            Closing::Close(CloseCode::MessageTooBig) => "message_too_large",
            Closing::Close(CloseCode::ProtocolError | CloseCode::InternalError) => "protocol_error",
            Closing::Disconnect(DisconnectReason::ServerRestart) => "server_restart",
            Closing::Disconnect(DisconnectReason::SlowClient) => "slow_client",
            Closing::Disconnect(DisconnectReason::InvalidRequest) => "command_flood",
            Closing::Disconnect(DisconnectReason::Remote { .. }) => "remote",
            Closing::Disconnect(DisconnectReason::Unauthorized) | Closing::PeerGone => return None,
        })
    }
}

/// Bytes charged per queued frame on top of its payload (the queue slot, the shared
/// buffer's header), so that a flood of tiny frames also meets the byte budget.
pub const FRAME_OVERHEAD: usize = 64;

/// The shared half of a connection that the hub and the channels push frames into.
///
/// The outbox is a queue bounded in bytes that holds no allocation while empty (an
/// idle connection costs no buffer); the writer takes everything queued in one go, so
/// at most about twice the budget is held for a connection: one budget queued, one
/// being written.
#[derive(Debug)]
pub struct Connection {
    id: ConnId,
    /// Bytes the outbox may hold (frames plus [`FRAME_OVERHEAD`] each).
    budget: usize,
    outbox: parking_lot::Mutex<Outbox>,
    ready: Notify,
    /// Signalled when the writer empties the outbox (see [`Connection::wait_for_room`]).
    room: Notify,
    closing: CancellationToken,
    how: parking_lot::Mutex<Option<Closing>>,
}

#[derive(Debug, Default)]
struct Outbox {
    items: VecDeque<Outgoing>,
    /// What `items` are charged, in bytes.
    bytes: usize,
    shut: bool,
}

impl Outgoing {
    /// What the frame is charged in an outbox.
    fn cost(&self) -> usize {
        let (Outgoing::Text(b) | Outgoing::Pong(b) | Outgoing::Close(b)) = self;
        b.len() + FRAME_OVERHEAD
    }
}

/// A cheap, cloneable reference to a [`Connection`].
pub type ConnHandle = Arc<Connection>;

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The frame would have taken the outbox past its byte budget: the connection has
    /// been marked evicted.
    Overflow,
    /// The connection is gone.
    Closed,
}

impl Connection {
    /// Creates the shared half of a connection whose outbox holds at most `budget`
    /// bytes (each frame charged its length plus [`FRAME_OVERHEAD`]). A single frame
    /// larger than the budget is still queued when the outbox is empty.
    pub fn with_budget(id: ConnId, budget: usize) -> ConnHandle {
        Arc::new(Connection {
            id,
            budget: budget.max(1),
            outbox: parking_lot::Mutex::new(Outbox::default()),
            ready: Notify::new(),
            room: Notify::new(),
            closing: CancellationToken::new(),
            how: parking_lot::Mutex::new(None),
        })
    }

    /// Moves everything queued into `out` without waiting; returns how many.
    pub fn take_now(&self, out: &mut VecDeque<Outgoing>) -> usize {
        let mut q = self.outbox.lock();
        let n = q.items.len();
        q.bytes = 0;
        if out.is_empty() {
            // The queue's allocation leaves with the frames: an idle connection holds
            // no outbox buffer, and the writer drops it once they are written.
            std::mem::swap(out, &mut q.items);
        } else {
            out.extend(q.items.drain(..));
        }
        drop(q);
        if n > 0 {
            self.room.notify_one();
        }
        n
    }

    /// Waits until at most half the byte budget is in use, or the connection is
    /// closing.
    ///
    /// The reader calls this before reading the client's next frame, and a command
    /// with a long reply (a presence roster) between its frames, so replies to the
    /// client's own commands (confirms, pongs, rosters) wait for the writer instead of
    /// overflowing the outbox: a client sending a burst of commands, or joining a big
    /// room, is slowed down, never disconnected as slow for its own replies. Half the
    /// budget stays free for broadcasts, which never wait. Cancel-safe.
    pub async fn wait_for_room(&self) {
        loop {
            {
                let q = self.outbox.lock();
                if q.shut || q.bytes <= self.budget / 2 || self.closing.is_cancelled() {
                    return;
                }
            }
            // A notification sent between the check and this wait is kept as a permit.
            tokio::select! {
                _ = self.room.notified() => {}
                _ = self.closing.cancelled() => return,
            }
        }
    }

    /// Waits until something is queued, then moves everything queued into `out`.
    pub async fn take(&self, out: &mut VecDeque<Outgoing>) {
        loop {
            if self.take_now(out) > 0 {
                return;
            }
            // A notification sent between the check and this wait is kept as a permit.
            self.ready.notified().await;
        }
    }

    /// Refuses further frames (the writer is gone).
    pub fn shut_outbox(&self) {
        let mut q = self.outbox.lock();
        q.shut = true;
        q.items = VecDeque::new();
        q.bytes = 0;
        drop(q);
        self.room.notify_one();
    }

    /// The connection id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Cancelled once the connection should end; [`Connection::closing_how`] says how.
    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    /// How the connection ends, once [`Connection::close`] was called.
    pub fn closing_how(&self) -> Option<Closing> {
        *self.how.lock()
    }

    /// Asks the connection to end. The first call decides how; later calls are no-ops.
    /// Returns whether this call decided.
    pub fn close(&self, how: Closing) -> bool {
        let mut slot = self.how.lock();
        if slot.is_some() {
            return false;
        }
        *slot = Some(how);
        drop(slot);
        self.closing.cancel();
        true
    }

    /// Queues a frame without waiting.
    ///
    /// # Errors
    /// [`SendError::Overflow`] when the frame would take the outbox past its byte
    /// budget: the connection is then closed as a slow client. [`SendError::Closed`]
    /// when the connection is gone.
    pub fn send(&self, item: Outgoing) -> Result<(), SendError> {
        let cost = item.cost();
        let mut q = self.outbox.lock();
        if q.shut {
            return Err(SendError::Closed);
        }
        if q.bytes > 0 && q.bytes + cost > self.budget {
            let pending = q.bytes;
            drop(q);
            if self.close(Closing::Disconnect(DisconnectReason::SlowClient)) {
                tracing::warn!(
                    conn = self.id,
                    pending,
                    budget = self.budget,
                    "outbox over its byte budget, disconnecting slow client"
                );
            }
            return Err(SendError::Overflow);
        }
        q.bytes += cost;
        q.items.push_back(item);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// Queues a text frame (see [`Connection::send`]).
    ///
    /// # Errors
    /// As [`Connection::send`].
    pub fn send_text(&self, frame: Bytes) -> Result<(), SendError> {
        self.send(Outgoing::Text(frame))
    }
}

/// The connections subscribed to one stream under one identifier.
struct Group {
    identifier: Identifier,
    members: Indexed<ConnHandle>,
}

impl Keyed for Group {
    type Key = Identifier;
    fn key(&self) -> &Identifier {
        &self.identifier
    }
}

impl Keyed for ConnHandle {
    type Key = ConnId;
    fn key(&self) -> &ConnId {
        &self.id
    }
}

#[derive(Default)]
struct Shard {
    /// A stream's groups, one per distinct identifier; a stream with no subscriber
    /// has no entry.
    streams: HashMap<Arc<str>, Indexed<Group>>,
}

/// Outcome of a broadcast on this node.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    /// Frames queued.
    pub delivered: usize,
    /// Connections evicted because their outbox was full.
    pub overflowed: usize,
    /// Distinct identifiers, i.e. how many times the frame was encoded.
    pub encodings: usize,
}

/// The stream index. Cheap to share behind an `Arc`.
pub struct Hub {
    shards: Box<[RwLock<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    /// Connections by Rails connection identifier (`current_user.to_gid_param`), for
    /// remote disconnects.
    identified: parking_lot::Mutex<HashMap<Arc<str>, Vec<ConnHandle>>>,
}

impl Hub {
    /// Creates a hub with `shards` lock shards (rounded up to at least one).
    pub fn new(shards: usize) -> Self {
        let shards = (0..shards.max(1))
            .map(|_| RwLock::new(Shard::default()))
            .collect();
        Hub {
            shards,
            hasher: std::collections::hash_map::RandomState::new(),
            identified: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    fn shard(&self, stream: &str) -> &RwLock<Shard> {
        // The modulo keeps the index in range.
        &self.shards[(self.hasher.hash_one(stream) as usize) % self.shards.len()]
    }

    /// Adds `conn` under `identifier` to `stream`. Returns true when this is the first
    /// local subscriber of the stream. Subscribing the same (identifier, connection)
    /// twice is a no-op. O(1), however many subscribers the stream has.
    pub fn subscribe(&self, stream: &str, identifier: &Identifier, conn: &ConnHandle) -> bool {
        let mut shard = self.shard(stream).write();
        let Some(groups) = shard.streams.get_mut(stream) else {
            let group = Group {
                identifier: identifier.clone(),
                members: Indexed::one(conn.clone()),
            };
            shard.streams.insert(Arc::from(stream), Indexed::one(group));
            return true;
        };
        match groups.get_mut(identifier) {
            Some(g) => {
                if g.members.get_mut(&conn.id).is_none() {
                    g.members.push_new(conn.clone());
                }
            }
            None => groups.push_new(Group {
                identifier: identifier.clone(),
                members: Indexed::one(conn.clone()),
            }),
        }
        false
    }

    /// Removes `conn` under `identifier` from `stream`. Returns true when the stream has
    /// no local subscriber left. O(1), however many subscribers the stream has.
    pub fn unsubscribe(&self, stream: &str, identifier: &Identifier, conn: ConnId) -> bool {
        let mut shard = self.shard(stream).write();
        let Some(groups) = shard.streams.get_mut(stream) else {
            return false;
        };
        if let Some(g) = groups.get_mut(identifier) {
            g.members.remove(&conn);
            if g.members.is_empty() {
                groups.remove(identifier);
            }
        }
        if groups.is_empty() {
            shard.streams.remove(stream);
            true
        } else {
            false
        }
    }

    /// Sends `payload` (encoded JSON) to every local subscriber of `stream`, as
    /// `{"identifier":…,"message":payload}` with each subscription's identifier.
    pub fn broadcast(&self, stream: &str, payload: &[u8]) -> FanOut {
        let shard = self.shard(stream).read();
        let mut out = FanOut::default();
        let Some(groups) = shard.streams.get(stream) else {
            return out;
        };
        for g in groups.items() {
            let frame = frames::message(&g.identifier, payload);
            out.encodings += 1;
            for conn in g.members.items() {
                match conn.send_text(frame.clone()) {
                    Ok(()) => out.delivered += 1,
                    Err(SendError::Overflow) => out.overflowed += 1,
                    Err(SendError::Closed) => {}
                }
            }
        }
        out
    }

    /// Records `conn` under its Rails connection identifier. Returns true for the
    /// identifier's first local connection (the broker then subscribes its internal
    /// channel).
    pub fn identify(&self, identifier: &str, conn: &ConnHandle) -> bool {
        let mut map = self.identified.lock();
        let first = !map.contains_key(identifier);
        map.entry(Arc::from(identifier))
            .or_default()
            .push(conn.clone());
        first
    }

    /// Forgets `conn`. Returns true when the identifier has no local connection left.
    pub fn forget(&self, identifier: &str, conn: ConnId) -> bool {
        let mut map = self.identified.lock();
        let Some(conns) = map.get_mut(identifier) else {
            return false;
        };
        conns.retain(|c| c.id != conn);
        if conns.is_empty() {
            map.remove(identifier);
            true
        } else {
            false
        }
    }

    /// Closes every local connection of `identifier` (a remote disconnect); returns
    /// how many.
    pub fn close_identified(&self, identifier: &str, how: Closing) -> usize {
        let conns: Vec<ConnHandle> = self
            .identified
            .lock()
            .get(identifier)
            .cloned()
            .unwrap_or_default();
        for c in &conns {
            c.close(how);
        }
        conns.len()
    }

    /// Number of streams with at least one local subscriber.
    pub fn stream_count(&self) -> usize {
        self.shards.iter().map(|s| s.read().streams.len()).sum()
    }

    /// Whether `stream` has a local subscriber.
    pub fn has_stream(&self, stream: &str) -> bool {
        self.shard(stream).read().streams.contains_key(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn take_waits_for_a_frame_and_loses_no_wakeup() {
        let conn = Connection::with_budget(1, 4096);
        let c = conn.clone();
        let waiter = tokio::spawn(async move {
            let mut out = VecDeque::new();
            c.take(&mut out).await;
            out.len()
        });
        conn.send_text(Bytes::from_static(b"1")).expect("queued");
        assert_eq!(waiter.await.expect("task"), 1);
        // Sent before anyone waits: the permit is kept.
        conn.send_text(Bytes::from_static(b"2")).expect("queued");
        let mut out = VecDeque::new();
        conn.take(&mut out).await;
        assert_eq!(out.len(), 1);
    }

    fn text(o: Outgoing) -> Bytes {
        match o {
            Outgoing::Text(b) => b,
            other => panic!("expected text, got {other:?}"),
        }
    }

    fn one(conn: &Connection) -> Outgoing {
        let mut v = VecDeque::new();
        assert_eq!(conn.take_now(&mut v), 1);
        v.pop_front().expect("one frame")
    }

    #[test]
    fn broadcast_encodes_once_per_identifier_and_shares_bytes() {
        let hub = Hub::new(4);
        let a = Identifier::new(r#"{"channel":"C","r":"1"}"#);
        let b = Identifier::new(r#"{"r":"1","channel":"C"}"#);
        let c1 = Connection::with_budget(1, 4096);
        let c2 = Connection::with_budget(2, 4096);
        let c3 = Connection::with_budget(3, 4096);
        assert!(hub.subscribe("s", &a, &c1));
        assert!(!hub.subscribe("s", &a, &c2));
        assert!(!hub.subscribe("s", &b, &c3));
        let fan = hub.broadcast("s", b"42");
        assert_eq!(
            fan,
            FanOut {
                delivered: 3,
                overflowed: 0,
                encodings: 2
            }
        );
        let f1 = text(one(&c1));
        let f2 = text(one(&c2));
        let f3 = text(one(&c3));
        assert_eq!(
            f1.as_ptr(),
            f2.as_ptr(),
            "same identifier shares one buffer"
        );
        assert_eq!(
            &f3[..],
            br#"{"identifier":"{\"r\":\"1\",\"channel\":\"C\"}","message":42}"#
        );
    }

    #[test]
    fn overflow_evicts_only_the_slow_connection() {
        let hub = Hub::new(1);
        let id = Identifier::new("{}");
        // Room for one frame: the first is queued into the empty outbox.
        let slow = Connection::with_budget(1, 1);
        let fast = Connection::with_budget(2, 4096);
        hub.subscribe("s", &id, &slow);
        hub.subscribe("s", &id, &fast);
        hub.broadcast("s", b"1");
        let fan = hub.broadcast("s", b"2");
        assert_eq!(fan.overflowed, 1);
        assert!(slow.closing().is_cancelled());
        assert_eq!(
            slow.closing_how(),
            Some(Closing::Disconnect(DisconnectReason::SlowClient))
        );
        assert!(!fast.closing().is_cancelled());
        let mut got = VecDeque::new();
        assert_eq!(fast.take_now(&mut got), 2);
        slow.shut_outbox();
        assert_eq!(slow.send_text(Bytes::new()), Err(SendError::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn the_reader_waits_for_room_until_the_writer_drains() {
        // Room for four empty frames.
        let conn = Connection::with_budget(1, 4 * FRAME_OVERHEAD);
        // Half full or less: no wait.
        for _ in 0..2 {
            conn.send_text(Bytes::new()).expect("room");
        }
        conn.wait_for_room().await;
        conn.send_text(Bytes::new()).expect("room");
        let wait = std::time::Duration::from_secs(1);
        assert!(
            tokio::time::timeout(wait, conn.wait_for_room())
                .await
                .is_err(),
            "three of four queued: the reader waits"
        );
        let waiting = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.wait_for_room().await })
        };
        let mut out = VecDeque::new();
        assert_eq!(conn.take_now(&mut out), 3);
        waiting.await.expect("woken by the drain");
        // Closing also ends the wait.
        for _ in 0..4 {
            conn.send_text(Bytes::new()).expect("room");
        }
        let waiting = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.wait_for_room().await })
        };
        conn.close(Closing::PeerGone);
        waiting.await.expect("woken by the close");
    }

    #[test]
    fn the_budget_counts_bytes_not_frames() {
        let conn = Connection::with_budget(1, 10 * (FRAME_OVERHEAD + 100));
        // Many small frames fit where few large ones do.
        for _ in 0..10 {
            conn.send_text(Bytes::from(vec![b'x'; 100])).expect("room");
        }
        assert_eq!(
            conn.send_text(Bytes::from_static(b"1")),
            Err(SendError::Overflow)
        );
        assert_eq!(
            conn.closing_how(),
            Some(Closing::Disconnect(DisconnectReason::SlowClient))
        );

        // Draining gives the budget back; a frame larger than the whole budget still
        // goes into an empty outbox (a big broadcast is not slowness), not after one.
        let conn = Connection::with_budget(2, 1000);
        for _ in 0..3 {
            let mut out = VecDeque::new();
            conn.send_text(Bytes::from(vec![b'x'; 5000]))
                .expect("empty outbox");
            assert_eq!(conn.take_now(&mut out), 1);
        }
        conn.send_text(Bytes::from(vec![b'x'; 5000]))
            .expect("empty outbox");
        assert_eq!(
            conn.send_text(Bytes::from_static(b"1")),
            Err(SendError::Overflow)
        );
    }

    #[test]
    fn remote_disconnect_closes_every_connection_of_the_identifier() {
        let hub = Hub::new(1);
        let (a, b, other) = (
            Connection::with_budget(1, 1),
            Connection::with_budget(2, 1),
            Connection::with_budget(3, 1),
        );
        assert!(hub.identify("gid1", &a));
        assert!(!hub.identify("gid1", &b));
        assert!(hub.identify("gid2", &other));
        assert_eq!(
            hub.close_identified("gid1", Closing::Close(CloseCode::Normal)),
            2
        );
        assert!(a.closing().is_cancelled() && b.closing().is_cancelled());
        assert!(!other.closing().is_cancelled());
        assert!(!hub.forget("gid1", 1));
        assert!(hub.forget("gid1", 2));
        assert_eq!(
            hub.close_identified("gid1", Closing::Close(CloseCode::Normal)),
            0
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any sequence of subscribes and unsubscribes (enough connections and
        /// identifiers for the lists to switch to their position maps and back) agrees
        /// with a plain model: first/last reports, deliveries and encodings.
        #[test]
        fn the_index_agrees_with_a_model(
            ops in proptest::collection::vec((proptest::bool::ANY, 0..2usize, 0..20usize, 0..40u64), 0..300)
        ) {
            use std::collections::{BTreeMap, BTreeSet};
            let hub = Hub::new(2);
            let streams = ["s0", "s1"];
            let ids: Vec<Identifier> = (0..20).map(|i| Identifier::new(&format!("{{\"i\":{i}}}"))).collect();
            let conns: Vec<ConnHandle> = (0..40).map(|c| Connection::with_budget(c, 64 * 1024)).collect();
            let mut model: BTreeMap<usize, BTreeMap<usize, BTreeSet<u64>>> = BTreeMap::new();
            for (add, s, i, c) in ops {
                if add {
                    let first = !model.contains_key(&s);
                    model.entry(s).or_default().entry(i).or_default().insert(c);
                    proptest::prop_assert_eq!(hub.subscribe(streams[s], &ids[i], &conns[c as usize]), first);
                } else {
                    let last = match model.get_mut(&s) {
                        None => false,
                        Some(groups) => {
                            if let Some(members) = groups.get_mut(&i) {
                                members.remove(&c);
                                if members.is_empty() {
                                    groups.remove(&i);
                                }
                            }
                            groups.is_empty()
                        }
                    };
                    if last {
                        model.remove(&s);
                    }
                    proptest::prop_assert_eq!(hub.unsubscribe(streams[s], &ids[i], c), last);
                }
                for (s, name) in streams.iter().enumerate() {
                    let fan = hub.broadcast(name, b"1");
                    let groups = model.get(&s);
                    let expected = FanOut {
                        delivered: groups.map_or(0, |g| g.values().map(BTreeSet::len).sum()),
                        overflowed: 0,
                        encodings: groups.map_or(0, BTreeMap::len),
                    };
                    proptest::prop_assert_eq!(fan, expected);
                    proptest::prop_assert_eq!(hub.has_stream(name), groups.is_some());
                    for (c, conn) in conns.iter().enumerate() {
                        let mut got = VecDeque::new();
                        conn.take_now(&mut got);
                        let want = groups.map_or(0, |g| g.values().filter(|m| m.contains(&(c as u64))).count());
                        proptest::prop_assert_eq!(got.len(), want, "connection {} on {}", c, name);
                    }
                }
            }
        }
    }

    #[test]
    fn first_and_last_subscriber_are_reported() {
        let hub = Hub::new(2);
        let id = Identifier::new("{}");
        let c1 = Connection::with_budget(1, 1);
        let c2 = Connection::with_budget(2, 1);
        assert!(hub.subscribe("s", &id, &c1));
        assert!(!hub.subscribe("s", &id, &c1), "idempotent");
        assert!(!hub.subscribe("s", &id, &c2));
        assert!(!hub.unsubscribe("s", &id, 1));
        assert!(hub.unsubscribe("s", &id, 2));
        assert!(!hub.has_stream("s"));
        assert_eq!(hub.broadcast("s", b"1").delivered, 0);
    }
}
