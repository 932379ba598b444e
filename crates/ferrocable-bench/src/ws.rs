//! A minimal client-side WebSocket over a tokio `TcpStream`: just what an Action
//! Cable client needs (handshake, masked text and ping frames out, unmasked frames
//! in; the framing itself is `cable_wire`'s). Its per-message cost is the generator's
//! floor, so it does no allocation per received frame and no JSON parsing: callers
//! scan the frame's bytes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use base64::Engine;
use cable_wire::{opcode, Accept, Parsed, FIN};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Where a generator connects: a loopback `ws://` URL, split once.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's socket address (always loopback).
    pub addr: SocketAddr,
    /// `host:port` as written in the URL, for `Host` and `Origin`.
    pub authority: String,
    /// Path plus any query from the URL (e.g. `/cable` or `/cable?x=1`).
    pub path: String,
}

impl Target {
    /// Parses `ws://HOST:PORT/PATH`; refuses anything but a loopback address.
    ///
    /// # Errors
    /// A message naming what is wrong with the URL.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/cable"),
        };
        let addr = parse_loopback(authority, 80)?;
        Ok(Target {
            addr,
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The request path for one client, with `extra` (`k=v`) appended to the query.
    pub fn path_with(&self, extra: &str) -> String {
        if extra.is_empty() {
            self.path.clone()
        } else if self.path.contains('?') {
            format!("{}&{extra}", self.path)
        } else {
            format!("{}?{extra}", self.path)
        }
    }
}

/// Parses `host[:port]` and checks that it is a loopback address.
///
/// # Errors
/// When the host is not loopback or does not parse.
pub fn parse_loopback(authority: &str, default_port: u16) -> Result<SocketAddr, String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6
            .split_once(']')
            .ok_or_else(|| format!("{authority}: bad IPv6 literal"))?;
        (h, p.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("{authority}: bad port"))?,
        None => default_port,
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse()
            .map_err(|_| format!("{authority}: host must be a loopback IP address"))?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "{authority}: refusing a non-loopback address; this tool only loads the local machine"
        ));
    }
    Ok(SocketAddr::new(ip, port))
}

/// Opens a TCP connection from `source` (port chosen at connect time, so many
/// connections can share a source address towards different destinations).
///
/// # Errors
/// Socket, bind or connect errors.
pub async fn tcp_connect(source: Option<IpAddr>, to: SocketAddr) -> io::Result<TcpStream> {
    let sock = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        // Without IP_BIND_ADDRESS_NO_PORT, bind() picks an ephemeral port before it
        // knows the destination, and each source address runs out at ~28k sockets.
        let one: libc::c_int = 1;
        // SAFETY: a valid fd, a pointer to a c_int and its size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = sock.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One received frame; text and binary payloads borrow the connection's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A text frame's payload.
    Text(&'a [u8]),
    /// A pong (its payload).
    Pong(&'a [u8]),
    /// A close frame (its code, 1005 when none).
    Close(u16),
}

/// A client WebSocket.
pub struct Ws {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Start of unread bytes in `buf`.
    pos: usize,
    /// End of valid bytes in `buf`.
    end: usize,
    /// Where the previous returned frame ends; consumed on the next call.
    consumed: usize,
    rng: u64,
    out: Vec<u8>,
}

/// What went wrong opening a WebSocket.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// TCP or socket I/O.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The server answered something other than 101.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The response was not a valid upgrade.
    #[error("bad upgrade response: {0}")]
    Bad(&'static str),
}

const READ_CHUNK: usize = 4096;

impl Ws {
    /// Performs the client handshake on `stream` for `path` at `authority`, offering
    /// the Action Cable subprotocols and a same-origin `Origin`, plus `extra_headers`
    /// (`"Name: value\r\n"` lines).
    ///
    /// # Errors
    /// I/O errors, a non-101 status or an invalid accept key.
    pub async fn handshake(
        mut stream: TcpStream,
        authority: &str,
        path: &str,
        extra_headers: &str,
        seed: u64,
    ) -> Result<Ws, HandshakeError> {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut key_bytes = [0u8; 16];
        for chunk in key_bytes.chunks_mut(8) {
            chunk.copy_from_slice(&xorshift(&mut rng).to_le_bytes());
        }
        let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: actioncable-v1-json, actioncable-unsupported\r\n\
             Origin: http://{authority}\r\n{extra_headers}\r\n"
        );
        stream.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut end = 0;
        let head_end = loop {
            if end == buf.len() {
                if buf.len() >= 64 * 1024 {
                    return Err(HandshakeError::Bad("response head too large"));
                }
                buf.resize(buf.len() * 2, 0);
            }
            let n = stream.read(&mut buf[end..]).await?;
            if n == 0 {
                return Err(HandshakeError::Bad("closed during handshake"));
            }
            end += n;
            if let Some(i) = find(&buf[..end], b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = std::str::from_utf8(&buf[..head_end])
            .map_err(|_| HandshakeError::Bad("non-UTF-8 response head"))?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(HandshakeError::Bad("no status line"))?;
        if status != 101 {
            return Err(HandshakeError::Status(status));
        }
        let want = {
            let mut h = Sha1::new();
            h.update(key.as_bytes());
            h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
            base64::engine::general_purpose::STANDARD.encode(h.finalize())
        };
        let accepted = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == want
            })
        });
        if !accepted {
            return Err(HandshakeError::Bad("wrong Sec-WebSocket-Accept"));
        }
        Ok(Ws {
            stream,
            buf,
            pos: head_end,
            end,
            consumed: head_end,
            rng,
            out: Vec::with_capacity(256),
        })
    }

    /// The next text, pong or close frame; `None` when the peer closed the TCP stream.
    /// Pings are answered and skipped. Cancel-safe: a dropped call loses no bytes.
    ///
    /// # Errors
    /// I/O errors and frames this client does not support (fragments, masked or
    /// oversized frames).
    pub async fn next(&mut self) -> io::Result<Option<Frame<'_>>> {
        self.pos = self.consumed;
        loop {
            let parsed = cable_wire::parse_server_frame(
                &self.buf[self.pos..self.end],
                &Accept::SINGLE_FRAMES,
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            match parsed {
                Parsed::Frame(head) => {
                    let start = self.pos + head.payload_start;
                    let stop = start + head.payload_len;
                    self.consumed = stop;
                    match head.opcode {
                        opcode::TEXT | opcode::BINARY => {
                            return Ok(Some(Frame::Text(&self.buf[start..stop])));
                        }
                        opcode::PONG => return Ok(Some(Frame::Pong(&self.buf[start..stop]))),
                        opcode::CLOSE => {
                            let code = if head.payload_len >= 2 {
                                u16::from_be_bytes([self.buf[start], self.buf[start + 1]])
                            } else {
                                1005
                            };
                            return Ok(Some(Frame::Close(code)));
                        }
                        opcode::PING => {
                            let payload = self.buf[start..stop].to_vec();
                            self.pos = stop;
                            self.send(opcode::PONG, &payload).await?;
                        }
                        op => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("unsupported opcode {op}"),
                            ))
                        }
                    }
                }
                Parsed::Incomplete => {
                    // Need more bytes: make room, then read.
                    if self.pos == self.end {
                        self.pos = 0;
                        self.end = 0;
                    } else if self.buf.len() - self.end < READ_CHUNK {
                        self.buf.copy_within(self.pos..self.end, 0);
                        self.end -= self.pos;
                        self.pos = 0;
                        if self.buf.len() - self.end < READ_CHUNK {
                            let grown = (self.buf.len() * 2).max(self.end + READ_CHUNK);
                            self.buf.resize(grown, 0);
                        }
                    }
                    self.consumed = self.pos;
                    let n = self.stream.read(&mut self.buf[self.end..]).await?;
                    if n == 0 {
                        return Ok(None);
                    }
                    self.end += n;
                }
            }
        }
    }

    /// Sends a text frame.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send_text(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(opcode::TEXT, payload).await
    }

    /// Sends a ping frame (the server answers with a pong carrying `payload`).
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send_ping(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(opcode::PING, payload).await
    }

    async fn send(&mut self, op: u8, payload: &[u8]) -> io::Result<()> {
        let mask = (xorshift(&mut self.rng) as u32).to_ne_bytes();
        self.out.clear();
        cable_wire::encode_client_frame(&mut self.out, FIN | op, payload, mask);
        self.stream.write_all(&self.out).await
    }
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// The first index of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last = hay.len() - needle.len();
    let mut i = 0;
    while i <= last {
        match hay[i..=last].iter().position(|&b| b == first) {
            None => return None,
            Some(off) => {
                i += off;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// Bounds `fut` by `d`, turning elapsed time into an `io::ErrorKind::TimedOut`.
///
/// # Errors
/// The future's error, or a timeout.
pub async fn within<T>(
    d: Duration,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match tokio::time::timeout(d, fut).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls() {
        let t = Target::parse("ws://127.0.0.1:3000/cable").expect("loopback");
        assert_eq!(t.addr, "127.0.0.1:3000".parse().expect("addr"));
        assert_eq!(t.path_with("user_id=3"), "/cable?user_id=3");
        assert!(Target::parse("ws://localhost:1/cable?a=b").is_ok());
        assert!(Target::parse("ws://[::1]:1/cable").is_ok());
        assert!(Target::parse("ws://10.0.0.1:3000/cable").is_err());
        assert!(Target::parse("ws://example.com/cable").is_err());
        assert!(Target::parse("wss://127.0.0.1/cable").is_err());
    }

    #[test]
    fn find_finds() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"xx\"seq\":1", b"\"seq\":"), Some(2));
    }
}
