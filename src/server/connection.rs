//! One WebSocket connection: authenticate, welcome, then read commands in order while
//! a writer task drains the outbox.
//!
//! Two tasks per connection, because reading a frame cannot be cancelled halfway
//! without losing bytes: the *reader* (this task) reads frames and runs each command
//! to completion before reading the next (Rails runs them unordered on a thread
//! pool); the *writer* owns the socket's write half and writes whatever is queued —
//! command replies, broadcasts, pings — several frames per syscall.
//!
//! Ending a connection is decided once, through [`Connection::close`] (by the reader on
//! a protocol error or shutdown, by the hub on outbox overflow); the writer then sends
//! the final frames, the reader waits briefly for the client's close reply, and the
//! connection's subscriptions are removed (which runs presence leaves).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Role, WebSocketError, WebSocketRead};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::State;
use crate::auth::{AuthOutcome, HandshakeRequest};
use crate::channels::{CommandOutcome, Subscriptions};
use crate::hub::{Closing, ConnHandle, Connection, Outgoing};
use crate::metrics::OpenConnection;
use crate::protocol::{frames, ClientCommand, DisconnectReason};

type Io = TokioIo<Upgraded>;
type Reader = WebSocketRead<ReadHalf<Io>>;

/// How long to wait for the client's close reply, and for final frames to be written.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Stop adding frames to one write once this many bytes are batched.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Serves one upgraded connection until it ends.
pub async fn run(
    io: Io,
    req: HandshakeRequest,
    state: Arc<State>,
    shutdown: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let id = state
        .next_conn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let span = tracing::info_span!("conn", id, peer = %req.peer, user = tracing::field::Empty);
    serve(id, io, req, state, shutdown, permit)
        .instrument(span)
        .await;
}

async fn serve(
    id: u64,
    io: Io,
    req: HandshakeRequest,
    state: Arc<State>,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let _open = OpenConnection::new(&state.metrics);
    let (rd, mut wr) = tokio::io::split(io);
    let (mut reader, _) =
        fastwebsockets::after_handshake_split(rd, tokio::io::sink(), Role::Server);
    reader.set_max_message_size(state.max_message_size);
    reader.set_auto_close(true);
    reader.set_auto_pong(true);

    let outcome = tokio::select! {
        r = state.authenticator.authenticate(&req) => r,
        _ = shutdown.cancelled() => return,
    };
    let identity = match outcome {
        Ok(AuthOutcome::Accepted(identity)) => identity,
        Ok(AuthOutcome::Rejected(reason)) => {
            let kind = match &reason {
                crate::auth::RejectReason::NoCredentials => "no_credentials",
                crate::auth::RejectReason::Invalid(_) => "invalid",
                crate::auth::RejectReason::UnknownUser(_) => "unknown_user",
            };
            state.metrics.auth_rejected(id, kind, &reason);
            let mut buf = Vec::new();
            encode(
                &mut buf,
                OpCode::Text,
                &DisconnectReason::Unauthorized.frame(),
            );
            encode(&mut buf, OpCode::Close, &1000u16.to_be_bytes());
            if write_bounded(&mut wr, &buf).await {
                wait_for_close_reply(&mut reader).await;
            }
            return;
        }
        Err(e) => {
            // Our failure, not the client's: close without `unauthorized` so the client
            // reconnects later instead of giving up.
            tracing::error!(error = %e, "authentication failed to run");
            let mut buf = Vec::new();
            encode(&mut buf, OpCode::Close, &1011u16.to_be_bytes());
            if write_bounded(&mut wr, &buf).await {
                wait_for_close_reply(&mut reader).await;
            }
            return;
        }
    };
    tracing::Span::current().record("user", identity.user_id);
    tracing::debug!(via = identity.via, "connection authenticated");

    let mut welcome = Vec::with_capacity(frames::WELCOME.len() + 2);
    encode(&mut welcome, OpCode::Text, frames::WELCOME);
    if !write_bounded(&mut wr, &welcome).await {
        return;
    }

    let (conn, outbox) = Connection::new(id, state.outbox_capacity);
    let mut ping = state.ping.clone();
    // Only pings sent from now on; the first comes within one interval.
    ping.borrow_and_update();
    let writer = tokio::spawn(write_loop(wr, outbox, ping, conn.clone()).in_current_span());

    let mut subs = Subscriptions::new(conn.clone(), identity, state.max_subscriptions);
    let client_closed = read_loop(&mut reader, &conn, &mut subs, &state, &shutdown).await;
    let why = match conn.closing_how() {
        Some(Closing::Close(1007)) => Some("invalid_utf8"),
        Some(Closing::Close(1009)) => Some("message_too_large"),
        Some(Closing::Close(_)) => Some("protocol_error"),
        Some(Closing::Disconnect(DisconnectReason::ServerRestart)) => Some("server_restart"),
        Some(Closing::Disconnect(DisconnectReason::SlowClient)) => Some("slow_client"),
        Some(Closing::Disconnect(DisconnectReason::Remote { .. })) => Some("remote"),
        Some(Closing::Disconnect(DisconnectReason::Unauthorized))
        | Some(Closing::PeerGone)
        | None => None,
    };
    if let Some(why) = why {
        state.metrics.server_close(id, why);
    }

    if !client_closed
        && matches!(
            conn.closing_how(),
            Some(Closing::Disconnect(_) | Closing::Close(_))
        )
    {
        wait_for_close_reply(&mut reader).await;
    }
    // Presence leaves and stream removal, whatever ended the connection.
    let held = subs.len();
    subs.clear(&state.channels).await;
    state.metrics.subscriptions_changed(-(held as i64));
    let mut writer = writer;
    // After a client close the writer ends by itself once the echo is out.
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
    tracing::debug!("connection closed");
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
    let mut obligated = obligated_sender(conn);
    // A fragmented message being collected: (is_text, bytes so far).
    let mut partial: Option<(bool, Vec<u8>)> = None;
    loop {
        let frame = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                conn.close(Closing::Disconnect(DisconnectReason::ServerRestart));
                return false;
            }
            _ = conn.closing().cancelled() => {
                if conn.closing_how() == Some(Closing::Disconnect(DisconnectReason::SlowClient)) {
                    state.metrics.slow_client(conn.id());
                }
                return false;
            }
            f = reader.read_frame(&mut obligated) => f,
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let code = close_code_for(&e);
                tracing::debug!(error = %e, code, "read failed");
                conn.close(if code == 0 {
                    Closing::PeerGone
                } else {
                    Closing::Close(code)
                });
                return false;
            }
        };
        let message: Option<(bool, Vec<u8>)> = match (frame.opcode, frame.fin) {
            (OpCode::Text | OpCode::Binary, _) if partial.is_some() => {
                conn.close(Closing::Close(1002));
                tracing::info!("new data frame inside a fragmented message");
                return false;
            }
            (OpCode::Text, true) => Some((true, frame.payload.to_vec())),
            (OpCode::Binary, true) => Some((false, Vec::new())),
            (OpCode::Text, false) => {
                partial = Some((true, frame.payload.to_vec()));
                None
            }
            (OpCode::Binary, false) => {
                partial = Some((false, Vec::new()));
                None
            }
            (OpCode::Continuation, fin) => {
                let Some((is_text, mut buf)) = partial.take() else {
                    conn.close(Closing::Close(1002));
                    tracing::info!("continuation frame without a message");
                    return false;
                };
                if is_text {
                    if buf.len() + frame.payload.len() > state.max_message_size {
                        conn.close(Closing::Close(1009));
                        tracing::info!(
                            limit = state.max_message_size,
                            "fragmented message too large"
                        );
                        return false;
                    }
                    buf.extend_from_slice(&frame.payload);
                }
                if fin {
                    Some((is_text, buf))
                } else {
                    partial = Some((is_text, buf));
                    None
                }
            }
            (OpCode::Close, _) => {
                // The echo was queued by the obligated sender; the writer ends after it.
                return true;
            }
            _ => None, // ping (answered automatically), pong
        };
        let Some((is_text, bytes)) = message else {
            continue;
        };
        if !is_text {
            state.metrics.bad_command(
                conn.id(),
                &"binary frame ignored (Action Cable is text only)",
            );
            continue;
        }
        if std::str::from_utf8(&bytes).is_err() {
            conn.close(Closing::Close(1007));
            tracing::info!("text message is not UTF-8");
            return false;
        }
        handle_text(&bytes, conn, subs, state).await;
    }
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
            tracing::info!(identifier = %command.identifier(), why, "subscription rejected");
        }
        CommandOutcome::Ignored(why) => state.metrics.bad_command(conn.id(), &why),
    }
}

/// The close code for a read error: 0 when the peer is simply gone.
fn close_code_for(e: &WebSocketError) -> u16 {
    match e {
        WebSocketError::UnexpectedEOF
        | WebSocketError::IoError(_)
        | WebSocketError::ConnectionClosed => 0,
        WebSocketError::InvalidUTF8 => 1007,
        WebSocketError::FrameTooLarge => 1009,
        _ => 1002,
    }
}

/// Hands the frames the protocol obliges us to send (pong, close echo) to the writer.
fn obligated_sender(
    conn: &ConnHandle,
) -> impl FnMut(Frame<'_>) -> std::future::Ready<Result<(), std::convert::Infallible>> {
    let conn = conn.clone();
    move |frame: Frame<'_>| {
        let payload = Bytes::copy_from_slice(&frame.payload);
        let item = match frame.opcode {
            OpCode::Close => Some(Outgoing::Close(payload)),
            OpCode::Pong => Some(Outgoing::Pong(payload)),
            _ => None,
        };
        if let Some(item) = item {
            // A full outbox closes the connection; nothing more to do.
            let _ = conn.send(item);
        }
        std::future::ready(Ok(()))
    }
}

/// Reads until the client's close frame, the end of the stream, or [`CLOSE_GRACE`].
async fn wait_for_close_reply(reader: &mut Reader) {
    let mut ignore = |_: Frame<'_>| std::future::ready(Ok::<(), std::convert::Infallible>(()));
    let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
    loop {
        match tokio::time::timeout_at(deadline, reader.read_frame(&mut ignore)).await {
            Ok(Ok(f)) if f.opcode == OpCode::Close => return,
            Ok(Ok(_)) => continue,
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// Appends one unmasked, final server frame.
fn encode(buf: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let len = payload.len();
    buf.reserve(len + 10);
    buf.push(0x80 | opcode as u8);
    if len < 126 {
        buf.push(len as u8);
    } else if len <= u16::MAX as usize {
        buf.push(126);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
    buf.extend_from_slice(payload);
}

fn encode_outgoing(buf: &mut Vec<u8>, item: &Outgoing) -> bool {
    match item {
        Outgoing::Text(b) => encode(buf, OpCode::Text, b),
        Outgoing::Pong(b) => encode(buf, OpCode::Pong, b),
        Outgoing::Close(b) => {
            encode(buf, OpCode::Close, b);
            return true;
        }
    }
    false
}

async fn write_bounded(wr: &mut WriteHalf<Io>, buf: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(CLOSE_GRACE, wr.write_all(buf)).await,
        Ok(Ok(()))
    )
}

async fn write_loop(
    mut wr: WriteHalf<Io>,
    mut outbox: mpsc::Receiver<Outgoing>,
    mut ping: watch::Receiver<Bytes>,
    conn: ConnHandle,
) {
    // Whether the last write was cut off halfway, which forbids writing anything more.
    let mut torn = false;
    loop {
        let first = tokio::select! {
            biased;
            _ = conn.closing().cancelled() => break,
            item = outbox.recv() => match item {
                Some(item) => item,
                None => break,
            },
            changed = ping.changed() => match changed {
                Ok(()) => Outgoing::Text(ping.borrow_and_update().clone()),
                // The server is stopping; the connection will be told to close.
                Err(_) => {
                    conn.closing().cancelled().await;
                    break;
                }
            },
        };
        // The buffer lives only while frames are in flight.
        let mut buf = Vec::new();
        let mut echoed_close = encode_outgoing(&mut buf, &first);
        while !echoed_close && buf.len() < MAX_BATCH_BYTES {
            match outbox.try_recv() {
                Ok(item) => echoed_close = encode_outgoing(&mut buf, &item),
                Err(_) => break,
            }
        }
        let written = tokio::select! {
            r = wr.write_all(&buf) => r.is_ok(),
            _ = conn.closing().cancelled() => {
                torn = true;
                false
            }
        };
        if !written {
            conn.close(Closing::PeerGone);
            break;
        }
        if echoed_close {
            conn.close(Closing::PeerGone);
            break;
        }
    }
    if torn {
        return;
    }
    let mut buf = Vec::new();
    match conn.closing_how() {
        Some(Closing::Disconnect(reason)) => {
            encode(&mut buf, OpCode::Text, &reason.frame());
            encode(&mut buf, OpCode::Close, &1000u16.to_be_bytes());
        }
        Some(Closing::Close(code)) => encode(&mut buf, OpCode::Close, &code.to_be_bytes()),
        Some(Closing::PeerGone) | None => {}
    }
    if !buf.is_empty() {
        write_bounded(&mut wr, &buf).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_use_the_shortest_length_form() {
        // The reference's handshake_raw: `81 12` for the welcome, `81 7e 00 c5` for 197 bytes.
        let mut b = Vec::new();
        encode(&mut b, OpCode::Text, frames::WELCOME);
        assert_eq!(&b[..2], &[0x81, 0x12]);
        let mut b = Vec::new();
        encode(&mut b, OpCode::Text, &[b'x'; 197]);
        assert_eq!(&b[..4], &[0x81, 0x7e, 0x00, 0xc5]);
        let mut b = Vec::new();
        encode(&mut b, OpCode::Text, &vec![b'x'; 70_000]);
        assert_eq!(&b[..2], &[0x81, 127]);
        let mut b = Vec::new();
        encode(&mut b, OpCode::Close, &1000u16.to_be_bytes());
        assert_eq!(b, [0x88, 0x02, 0x03, 0xe8]);
    }
}
