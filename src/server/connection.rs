//! One WebSocket connection: authenticate, welcome, then read commands in order while
//! a writer task drains the outbox.
//!
//! Two tasks per connection: the *reader* (this task) reads frames and runs each
//! command to completion before reading the next (Rails runs them unordered on a
//! thread pool); the *writer* owns the socket's write half and writes whatever is
//! queued — command replies, broadcasts, pings — several frames per syscall.
//!
//! The reader is one `select!` over an `Event` (shutdown, drain turn, closing,
//! client frame), looked at in that order; a client frame goes through the pure
//! [`frame::Assembler`] (fragments, pings, close checks) before a whole message meets
//! the command rate limit and runs.
//!
//! Nothing is buffered while a connection is idle: the reader waits for the socket
//! to become readable, reads into a stack buffer and keeps heap bytes only for a frame
//! that is not complete yet; the outbox holds no allocation when empty; the writer
//! builds its buffer per batch.
//!
//! Ending a connection is decided once, through [`Connection::close`] (by the reader on
//! a protocol error or shutdown, by the hub when a frame would take the outbox past its
//! byte budget, by the writer when a socket write makes no progress for the write
//! timeout: both are a slow client); the writer then sends
//! the final frames, the reader waits briefly for the client's close reply, and the
//! connection's subscriptions are removed (which runs presence leaves).
//!
//! **Invariant:** the TCP stream ends (FIN) only after the subscriptions are removed:
//! the writer hands its write half back instead of dropping it (dropping it shuts the
//! socket down), so a client that sees the end of the stream knows the leaves it
//! caused have been applied and published.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::frame::{self, Assembled, Assembler, Frame, FrameError, Opcode, Parsed};
use super::limits::{Admit, CommandBucket};
use super::State;
use crate::auth::{AuthOutcome, HandshakeRequest};
use crate::channels::{CommandOutcome, Subscriptions};
use crate::hub::{Closing, ConnHandle, Connection, Outgoing};
use crate::metrics::OpenConnection;
use crate::protocol::{frames, ClientCommand, CloseCode, DisconnectReason};

/// How long to wait for the client's close reply, and for final frames to be written.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Stop adding frames to one write once this many bytes are batched.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// Bytes read per `read` call (on the stack, never held while idle).
const READ_CHUNK: usize = 4096;

/// Serves one upgraded connection until it ends.
pub async fn run(
    upgraded: TokioIo<Upgraded>,
    req: HandshakeRequest,
    state: Arc<State>,
    shutdown: CancellationToken,
    permit: OwnedSemaphorePermit,
    tasks: TaskTracker,
) {
    let id = state
        .next_conn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let span = tracing::info_span!("conn", id, peer = %req.peer, user = tracing::field::Empty);
    // Take the TCP stream back from hyper (with any bytes it read past the request),
    // so reading needs no buffer of hyper's or ours while idle.
    let parts = match upgraded.into_inner().downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => parts,
        Err(_) => {
            tracing::error!(parent: &span, "upgraded connection is not a TCP stream");
            return;
        }
    };
    // Copy what hyper read past the request and let its read buffer go now: `read_buf`
    // is a view into hyper's 8 KiB buffer, which would otherwise live as long as this
    // function's frame, i.e. the whole connection.
    let pending = parts.read_buf.to_vec();
    drop(parts.read_buf);
    let (rd, wr) = parts.io.into_inner().into_split();
    let reader = Reader {
        rd,
        pending,
        max: state.limits.max_message_size,
    };
    let open = OpenConnection::new(&state.metrics);
    let admitted = admit(id, reader, wr, req, &state, &shutdown)
        .instrument(span.clone())
        .await;
    if let Some(session) = admitted {
        // The steady state runs as a task of its own, so that nothing of the handshake
        // (the request, hyper's upgrade, this function's frame) stays allocated while
        // the connection is open: a task's future keeps every argument of every
        // function it awaits for its whole life.
        tasks.spawn(serve(session, state, shutdown, permit, open).instrument(span));
    }
}

/// What an authenticated connection carries into its steady state.
struct Session {
    id: u64,
    reader: Reader,
    wr: OwnedWriteHalf,
    identity: crate::auth::Identity,
    conn: ConnHandle,
    /// The Rails connection identifier, listened on for remote disconnects.
    internal: Option<String>,
}

/// The read half and the bytes of a frame still incomplete.
struct Reader {
    rd: OwnedReadHalf,
    pending: Vec<u8>,
    max: usize,
}

/// What reading produced.
enum Read {
    Frame(Frame),
    /// The peer closed the stream or the socket failed.
    Gone,
    /// A frame the RFC says to fail the connection for.
    Bad(FrameError),
}

impl Reader {
    /// The next frame. Cancel-safe: bytes read are kept in `pending`.
    async fn next(&mut self) -> Read {
        loop {
            match frame::parse(&self.pending, self.max) {
                Err(e) => return Read::Bad(e),
                Ok(Parsed::Frame(f, used)) => {
                    self.pending.drain(..used);
                    if self.pending.is_empty() {
                        // Idle connections hold no read buffer.
                        self.pending = Vec::new();
                    }
                    return Read::Frame(f);
                }
                Ok(Parsed::Incomplete) => {}
            }
            if self.rd.readable().await.is_err() {
                return Read::Gone;
            }
            // The chunk lives on the stack only for this synchronous read.
            let mut chunk = [0u8; READ_CHUNK];
            match self.rd.try_read(&mut chunk) {
                Ok(0) => return Read::Gone,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return Read::Gone,
            }
        }
    }

    /// Reads until the client's close frame, the end of the stream, or [`CLOSE_GRACE`].
    async fn wait_for_close_reply(&mut self) {
        let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Read::Frame(f)) if f.opcode == Opcode::Close => return,
                Ok(Read::Frame(_)) => continue,
                Ok(_) | Err(_) => return,
            }
        }
    }
}

/// Authenticates the connection; on success returns what the steady state needs. A
/// refused or failed authentication is answered and closed here.
async fn admit(
    id: u64,
    mut reader: Reader,
    mut wr: OwnedWriteHalf,
    req: HandshakeRequest,
    state: &State,
    shutdown: &CancellationToken,
) -> Option<Session> {
    let outcome = tokio::select! {
        r = state.limits.authenticate(state.authenticator.as_ref(), &req, id, &state.metrics) => r,
        _ = shutdown.cancelled() => return None,
    };
    drop(req);
    let identity = match outcome {
        Ok(AuthOutcome::Accepted(identity)) => identity,
        Ok(AuthOutcome::Rejected(reason)) => {
            state
                .metrics
                .auth_rejected(id, reason.metric_label(), &reason);
            let mut buf = Vec::new();
            frame::encode(
                &mut buf,
                Opcode::Text,
                &DisconnectReason::Unauthorized.frame(),
            );
            frame::encode(&mut buf, Opcode::Close, &CloseCode::Normal.payload());
            if write_bounded(&mut wr, &buf).await {
                reader.wait_for_close_reply().await;
            }
            return None;
        }
        Err(e) => {
            // Our failure, not the client's: close without `unauthorized` so the client
            // reconnects later instead of giving up.
            tracing::error!(error = %e, "authentication failed to run");
            let mut buf = Vec::new();
            frame::encode(&mut buf, Opcode::Close, &CloseCode::InternalError.payload());
            if write_bounded(&mut wr, &buf).await {
                reader.wait_for_close_reply().await;
            }
            return None;
        }
    };
    tracing::Span::current().record("user", identity.user_id);
    tracing::debug!(via = identity.via, "connection authenticated");

    let conn = Connection::with_budget(id, state.limits.outbox_bytes);
    // As Rails does before the welcome: listen on the connection's internal channel
    // (`action_cable/<gid>`) for remote disconnects.
    let internal = identity.connection_identifier.clone();
    if let Some(gid) = &internal {
        if state.channels.hub.identify(gid, &conn) {
            let channel = format!("{}{gid}", crate::broker::INTERNAL_PREFIX);
            if let Err(e) = state.channels.broker.subscribe(&channel).await {
                tracing::warn!(error = %e, "cannot listen for remote disconnects");
            }
        }
    }

    let mut welcome = Vec::with_capacity(frames::WELCOME.len() + 2);
    frame::encode(&mut welcome, Opcode::Text, frames::WELCOME);
    if !write_bounded(&mut wr, &welcome).await {
        forget_internal(state, internal.as_deref(), id).await;
        return None;
    }
    Some(Session {
        id,
        reader,
        wr,
        identity,
        conn,
        internal,
    })
}

/// Runs an admitted connection until it ends.
async fn serve(
    session: Session,
    state: Arc<State>,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
    _open: OpenConnection,
) {
    let Session {
        id,
        mut reader,
        wr,
        identity,
        conn,
        internal,
    } = session;

    let mut ping = state.ping.clone();
    // Only pings sent from now on; the first comes within one interval.
    ping.borrow_and_update();
    let writer = tokio::spawn(
        write_loop(wr, ping, conn.clone(), state.limits.write_timeout).in_current_span(),
    );

    let mut subs = Subscriptions::new(
        conn.clone(),
        identity,
        state.limits.max_subscriptions,
        state.limits.max_identifier_size,
    );
    let client_closed = read_loop(&mut reader, &conn, &mut subs, &state, &shutdown).await;
    let why = conn.closing_how().and_then(|how| how.metric_label());
    if let Some(why) = why {
        state.metrics.server_close(id, why);
    }
    if !client_closed
        && matches!(
            conn.closing_how(),
            Some(Closing::Disconnect(_) | Closing::Close(_))
        )
    {
        reader.wait_for_close_reply().await;
    }
    // Presence leaves and stream removal, whatever ended the connection.
    let held = subs.len();
    Box::pin(subs.clear(&state.channels)).await;
    state.metrics.subscriptions_changed(-(held as i64));
    forget_internal(&state, internal.as_deref(), id).await;
    let mut writer = writer;
    // After a client close the writer ends by itself once the echo is out. Its write
    // half, handed back, is dropped (FIN) only here, after the leaves above.
    if !client_closed
        || tokio::time::timeout(CLOSE_GRACE, &mut writer)
            .await
            .is_err()
    {
        conn.close(Closing::PeerGone);
        if tokio::time::timeout(CLOSE_GRACE, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    }
    conn.shut_outbox();
    tracing::debug!("connection closed");
}

/// This connection's place in the drain window: spread evenly by a hash of its id.
fn spread(id: u64, window: Duration) -> Duration {
    if window.is_zero() {
        return Duration::ZERO;
    }
    let fraction = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    window.mul_f64(fraction)
}

/// Stops listening for remote disconnects of `gid` when this was its last connection.
async fn forget_internal(state: &State, gid: Option<&str>, id: u64) {
    let Some(gid) = gid else { return };
    if state.channels.hub.forget(gid, id) {
        let channel = format!("{}{gid}", crate::broker::INTERNAL_PREFIX);
        if let Err(e) = state.channels.broker.unsubscribe(&channel).await {
            tracing::debug!(error = %e, "unsubscribe of the internal channel failed");
        }
    }
}

/// What the reader loop reacts to, in the order it looks at them.
enum Event {
    /// The server started stopping: close now, or at this connection's turn in the
    /// drain window.
    Shutdown,
    /// This connection's turn in the drain window came.
    DrainTurn,
    /// Something else decided that the connection ends (the hub, the writer, a remote
    /// disconnect).
    Closing,
    /// The client sent a frame, broke the protocol, or went away.
    Client(Read),
}

/// Reads and runs commands until the connection ends. Returns true when the client
/// closed first (its close echo is then queued, and nothing was decided).
async fn read_loop(
    reader: &mut Reader,
    conn: &ConnHandle,
    subs: &mut Subscriptions,
    state: &State,
    shutdown: &CancellationToken,
) -> bool {
    let mut messages = Assembler::new(state.limits.max_message_size);
    // When draining: the moment this connection is told `server_restart`.
    let mut leave_at: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut bucket = state.limits.bucket();
    loop {
        let event = tokio::select! {
            biased;
            _ = shutdown.cancelled(), if leave_at.is_none() => Event::Shutdown,
            _ = async {
                match leave_at.as_mut() {
                    Some(sleep) => sleep.await,
                    None => std::future::pending().await,
                }
            }, if leave_at.is_some() => Event::DrainTurn,
            _ = conn.closing().cancelled() => Event::Closing,
            // Replies to this client's commands wait for room in its outbox: the
            // next frame is read only once the writer has caught up (backpressure,
            // as the command rate limit does), so a burst of commands cannot make the
            // client overflow its own outbox. Broadcasts never wait (hub invariant).
            r = async {
                conn.wait_for_room().await;
                reader.next().await
            } => Event::Client(r),
        };
        let frame = match event {
            Event::Shutdown => {
                let delay = spread(conn.id(), state.shutdown.drain_window);
                if !delay.is_zero() {
                    // Keep serving until this connection's turn in the drain window.
                    leave_at = Some(Box::pin(tokio::time::sleep(delay)));
                    continue;
                }
                conn.close(Closing::Disconnect(DisconnectReason::ServerRestart));
                return false;
            }
            Event::DrainTurn => {
                conn.close(Closing::Disconnect(DisconnectReason::ServerRestart));
                return false;
            }
            Event::Closing => {
                if conn.closing_how() == Some(Closing::Disconnect(DisconnectReason::SlowClient)) {
                    state.metrics.slow_client(conn.id());
                }
                return false;
            }
            Event::Client(Read::Gone) => {
                conn.close(Closing::PeerGone);
                return false;
            }
            Event::Client(Read::Bad(e)) => return fail(conn, e),
            Event::Client(Read::Frame(f)) => f,
        };
        let (text, payload) = match messages.push(frame) {
            Err(e) => return fail(conn, e),
            Ok(Assembled::Nothing) => continue,
            Ok(Assembled::Ping(payload)) => {
                // A full outbox closes the connection; nothing more to do.
                let _ = conn.send(Outgoing::Pong(Bytes::from(payload)));
                continue;
            }
            Ok(Assembled::Close(payload)) => {
                // Echo the client's close; the writer ends after it.
                let _ = conn.send(Outgoing::Close(Bytes::from(payload)));
                return true;
            }
            Ok(Assembled::Message { text, payload }) => (text, payload),
        };
        if on_message(text, &payload, &mut bucket, conn, subs, state)
            .await
            .is_break()
        {
            return false;
        }
    }
}

/// Closes the connection with the code the RFC prescribes for `e`. Returns false, what
/// [`read_loop`] returns: the client did not close first.
fn fail(conn: &ConnHandle, e: FrameError) -> bool {
    tracing::info!(error = %e, "client broke the WebSocket protocol");
    conn.close(Closing::Close(e.close_code()));
    false
}

/// Runs one whole client message, once the command rate limit admits it. Breaks when
/// the connection is to end.
async fn on_message(
    text: bool,
    payload: &[u8],
    bucket: &mut CommandBucket,
    conn: &ConnHandle,
    subs: &mut Subscriptions,
    state: &State,
) -> ControlFlow<()> {
    match (state.limits)
        .admit(bucket, conn, &state.metrics, payload.len())
        .await
    {
        Admit::Go => {}
        Admit::Closing => return ControlFlow::Continue(()),
        Admit::Flood => {
            conn.close(Closing::Disconnect(DisconnectReason::InvalidRequest));
            return ControlFlow::Break(());
        }
    }
    if !text {
        state.metrics.bad_command(
            conn.id(),
            &"binary frame ignored (Action Cable is text only)",
        );
        return ControlFlow::Continue(());
    }
    if std::str::from_utf8(payload).is_err() {
        conn.close(Closing::Close(CloseCode::InvalidPayload));
        tracing::info!("text message is not UTF-8");
        return ControlFlow::Break(());
    }
    // Boxed: the command's state exists only while it runs, not in every idle
    // connection's task.
    Box::pin(handle_text(payload, conn, subs, state)).await;
    ControlFlow::Continue(())
}

async fn handle_text(bytes: &[u8], conn: &ConnHandle, subs: &mut Subscriptions, state: &State) {
    let command = match ClientCommand::decode(bytes) {
        Ok(c) => c,
        Err(e) => {
            state.metrics.bad_command(conn.id(), &e);
            return;
        }
    };
    let before = subs.len();
    let started = std::time::Instant::now();
    let outcome = match &command {
        ClientCommand::Subscribe { identifier } => {
            subs.subscribe(&state.channels, identifier.clone()).await
        }
        ClientCommand::Unsubscribe { identifier } => {
            subs.unsubscribe(&state.channels, identifier).await
        }
        ClientCommand::Message { identifier, data } => subs.perform(identifier, data).await,
    };
    let name = match &command {
        ClientCommand::Subscribe { .. } => "subscribe",
        ClientCommand::Unsubscribe { .. } => "unsubscribe",
        ClientCommand::Message { .. } => "message",
    };
    state.metrics.command(name, started.elapsed());
    state
        .metrics
        .subscriptions_changed(subs.len() as i64 - before as i64);
    match outcome {
        CommandOutcome::Confirmed => state.metrics.subscribed(conn.id(), command.identifier()),
        CommandOutcome::Unsubscribed => state.metrics.unsubscribed(conn.id(), command.identifier()),
        CommandOutcome::Reconfirmed | CommandOutcome::Performed => {}
        CommandOutcome::Rejected(why) => {
            state
                .metrics
                .subscription_rejected(conn.id(), command.identifier(), why)
        }
        CommandOutcome::Ignored(why) => state.metrics.bad_command(conn.id(), &why),
    }
}

fn encode_outgoing(buf: &mut Vec<u8>, item: &Outgoing) -> bool {
    match item {
        Outgoing::Text(b) => frame::encode(buf, Opcode::Text, b),
        Outgoing::Pong(b) => frame::encode(buf, Opcode::Pong, b),
        Outgoing::Close(b) => {
            frame::encode(buf, Opcode::Close, b);
            return true;
        }
    }
    false
}

async fn write_bounded(wr: &mut OwnedWriteHalf, buf: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(CLOSE_GRACE, wr.write_all(buf)).await,
        Ok(Ok(()))
    )
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut ping: watch::Receiver<Bytes>,
    conn: ConnHandle,
    stall: Duration,
) -> OwnedWriteHalf {
    // Whether the last write was cut off halfway, which forbids writing anything more.
    let mut torn = false;
    let mut items: std::collections::VecDeque<Outgoing> = std::collections::VecDeque::new();
    loop {
        tokio::select! {
            biased;
            _ = conn.closing().cancelled() => break,
            _ = conn.take(&mut items) => {}
            changed = ping.changed() => match changed {
                Ok(()) => items.push_back(Outgoing::Text(ping.borrow_and_update().clone())),
                // The server is stopping; the connection will be told to close.
                Err(_) => {
                    conn.closing().cancelled().await;
                    break;
                }
            },
        }
        // The buffer lives only while frames are in flight.
        let mut buf = Vec::new();
        let mut echoed_close = false;
        for item in items.drain(..) {
            if echoed_close {
                break;
            }
            echoed_close = encode_outgoing(&mut buf, &item);
            if buf.len() >= MAX_BATCH_BYTES {
                // Write what we have, then go on with the rest of this batch.
                if !write_all(&mut wr, &buf, &conn, stall, &mut torn).await {
                    break;
                }
                buf.clear();
            }
        }
        items = std::collections::VecDeque::new();
        if torn || !write_all(&mut wr, &buf, &conn, stall, &mut torn).await {
            break;
        }
        if echoed_close {
            conn.close(Closing::PeerGone);
            break;
        }
    }
    conn.shut_outbox();
    if torn {
        return wr;
    }
    let mut buf = Vec::new();
    match conn.closing_how() {
        Some(Closing::Disconnect(reason)) => {
            frame::encode(&mut buf, Opcode::Text, &reason.frame());
            frame::encode(&mut buf, Opcode::Close, &CloseCode::Normal.payload());
        }
        Some(Closing::Close(code)) => frame::encode(&mut buf, Opcode::Close, &code.payload()),
        Some(Closing::PeerGone) | None => {}
    }
    if !buf.is_empty() {
        write_bounded(&mut wr, &buf).await;
    }
    wr
}

/// Writes `buf`: at once when the socket takes it (the usual case), else through
/// [`write_or_tear`]. That slow path, with its stall timer, is boxed and exists only
/// while a socket is full, so the writer's future, which every idle connection
/// keeps, holds no timer.
async fn write_all(
    wr: &mut OwnedWriteHalf,
    mut buf: &[u8],
    conn: &ConnHandle,
    stall: Duration,
    torn: &mut bool,
) -> bool {
    while !buf.is_empty() {
        match wr.try_write(buf) {
            Ok(n) if n > 0 => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Box::pin(write_or_tear(wr, buf, conn, stall, torn)).await;
            }
            // As in `write_or_tear`: nothing written, or an error, means the peer is gone.
            _ => {
                conn.close(Closing::PeerGone);
                return false;
            }
        }
    }
    true
}

/// Writes `buf` unless the connection starts closing meanwhile, or the socket takes
/// no byte for `stall` (the client stopped reading: it is closed as a slow client);
/// either way the write is abandoned halfway and `torn` is set. Returns whether the
/// bytes were written.
///
/// The stall bound is on progress, not on the whole buffer: a client that reads
/// slowly but steadily is never cut off, one that reads nothing is within `stall`.
async fn write_or_tear(
    wr: &mut OwnedWriteHalf,
    mut buf: &[u8],
    conn: &ConnHandle,
    stall: Duration,
    torn: &mut bool,
) -> bool {
    while !buf.is_empty() {
        let wrote = tokio::select! {
            r = tokio::time::timeout(stall, wr.write(buf)) => r,
            _ = conn.closing().cancelled() => {
                *torn = true;
                return false;
            }
        };
        match wrote {
            Ok(Ok(n)) if n > 0 => buf = &buf[n..],
            Ok(_) => {
                conn.close(Closing::PeerGone);
                return false;
            }
            Err(_) => {
                *torn = true;
                if conn.close(Closing::Disconnect(DisconnectReason::SlowClient)) {
                    tracing::warn!(
                        stalled_secs = stall.as_secs_f64(),
                        "socket write stalled, disconnecting slow client"
                    );
                }
                return false;
            }
        }
    }
    true
}
