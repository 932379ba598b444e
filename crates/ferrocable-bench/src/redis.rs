//! A Redis PUBLISH over a raw TCP stream (RESP2), so the generator needs no Redis
//! client: publishing as a Rails app does, `PUBLISH <prefix>:<broadcasting> <json>`.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ws::parse_loopback;

/// A connection used only for PUBLISH.
pub struct Publisher {
    stream: TcpStream,
    out: Vec<u8>,
    inbuf: Vec<u8>,
}

/// The Redis channel Rails publishes `broadcasting` on (redis-adapter spec §2): the
/// prefix and the name joined by `:`, with an absent prefix left out.
pub fn channel(prefix: Option<&str>, broadcasting: &str) -> String {
    match prefix {
        Some(p) => format!("{p}:{broadcasting}"),
        None => broadcasting.to_owned(),
    }
}

/// Encodes `PUBLISH channel payload` as a RESP array of bulk strings.
pub fn encode_publish(out: &mut Vec<u8>, channel: &[u8], payload: &[u8]) {
    out.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n");
    for part in [channel, payload] {
        out.push(b'$');
        out.extend_from_slice(part.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

impl Publisher {
    /// Connects to `redis://HOST:PORT[/db]` (loopback only; no auth, no TLS).
    ///
    /// # Errors
    /// A bad or non-loopback URL, or the connect error.
    pub async fn connect(url: &str) -> Result<Publisher, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{url}: only redis:// URLs are supported"))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        if authority.contains('@') {
            return Err(format!("{url}: credentials are not supported"));
        }
        let addr = parse_loopback(authority, 6379)?;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("redis {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Publisher {
            stream,
            out: Vec::with_capacity(256),
            inbuf: Vec::with_capacity(64),
        })
    }

    /// Publishes and returns how many Redis subscribers received it.
    ///
    /// # Errors
    /// I/O errors or an error reply.
    pub async fn publish(&mut self, channel: &[u8], payload: &[u8]) -> io::Result<u64> {
        self.out.clear();
        encode_publish(&mut self.out, channel, payload);
        self.stream.write_all(&self.out).await?;
        self.inbuf.clear();
        let mut byte = [0u8; 64];
        while !self.inbuf.ends_with(b"\r\n") {
            let n = self.stream.read(&mut byte).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "redis closed"));
            }
            self.inbuf.extend_from_slice(&byte[..n]);
        }
        let line = String::from_utf8_lossy(&self.inbuf);
        line.trim_end()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| io::Error::other(format!("redis replied {line:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_is_resp() {
        let mut out = Vec::new();
        encode_publish(&mut out, b"app:chat_x", br#"{"seq":1}"#);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$10\r\napp:chat_x\r\n$9\r\n{\"seq\":1}\r\n".to_vec()
        );
        assert_eq!(channel(Some("app"), "chat_x"), "app:chat_x");
        assert_eq!(channel(Some(""), "chat_x"), ":chat_x");
        assert_eq!(channel(None, "chat_x"), "chat_x");
    }
}
