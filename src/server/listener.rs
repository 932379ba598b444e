//! The accept loop: one task per TCP connection, serving HTTP/1.1 until the request
//! is upgraded to a WebSocket.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{upgrade, State};

/// Accepts until `shutdown` is cancelled. Accept errors (e.g. out of file descriptors)
/// are logged and retried with backoff; they never stop the server.
pub async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (sock, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::from_millis(5);
                x
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        let tracker = tasks.clone();
        tasks.spawn(serve_http(sock, peer, state, tracker, shutdown));
    }
}

async fn serve_http(
    sock: TcpStream,
    peer: std::net::SocketAddr,
    state: Arc<State>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    // Frames are written whole and batched by the writer; Nagle would only delay them.
    if let Err(e) = sock.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let metrics = state.metrics.clone();
    let handshake_timeout = state.limits.handshake_timeout;
    let max_header_bytes = state.limits.max_header_bytes;
    let service = service_fn(move |req| {
        let state = state.clone();
        let tasks = tasks.clone();
        async move { Ok::<_, std::convert::Infallible>(upgrade::handle(req, peer, state, tasks)) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        // A longer head is answered 431 by hyper (checked >= its 8 KiB minimum).
        .max_buf_size(max_header_bytes)
        .auto_date_header(false)
        .title_case_headers(true);
    let conn = builder
        .serve_connection(TokioIo::new(sock), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            match r {
                Err(e) if e.is_timeout() => metrics.handshake_deadline(&peer, handshake_timeout),
                Err(e) if e.is_parse_too_large() => {
                    metrics.headers_too_large("request_headers", &peer, None)
                }
                Err(e) => tracing::debug!(error = %e, peer = %peer, "http connection error"),
                Ok(()) => {}
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
