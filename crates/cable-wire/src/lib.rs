//! The client side of WebSocket framing (RFC 6455 §5): masking and writing client
//! frames, and finding server frames in a byte buffer. Shared by ferrocable's load
//! generator (`crates/ferrocable-bench`), the fixture replay in ferrocable's tests
//! (`tests/support/transcript.rs`) and the server frame decoder's unit tests, which
//! used to carry a framer each.
//!
//! # Invariants
//! - Pure functions over byte slices: no I/O, no tokio, and no allocation beyond the
//!   `Vec` a caller hands in (the generator's cost per received frame is a floor under
//!   its figures).
//! - "Need more bytes" ([`Parsed::Incomplete`]) is its own outcome, apart from a frame
//!   the caller does not accept ([`FrameError`]). What is accepted is the caller's
//!   choice ([`Accept`]): the generator refuses anything an Action Cable server never
//!   sends, the replay records whatever arrives.
//! - A refusal is reported as soon as the bytes that show it are in (the first two for
//!   fragments and masks, the length field for size), not once the whole frame is.
//!
//! The server's decoder of client frames (`ferrocable::server::frame`) is separate on
//! purpose: it enforces what a server must refuse from clients, with close codes.

use std::ops::Range;

/// The FIN bit of a frame's first byte: the last (here always the only) frame of a
/// message.
pub const FIN: u8 = 0x80;

/// Frame opcodes (RFC 6455 §5.2), the low four bits of the first byte.
pub mod opcode {
    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// A text message.
    pub const TEXT: u8 = 0x1;
    /// A binary message.
    pub const BINARY: u8 = 0x2;
    /// Close (payload: an optional big-endian code, then a reason).
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong (carries the ping's payload).
    pub const PONG: u8 = 0xA;
}

/// Appends one masked client frame to `out`: `first` is the frame's first byte (FIN,
/// reserved bits and opcode, e.g. `FIN | opcode::TEXT`), the length is written in its
/// shortest form, and `payload` is masked with `mask`.
#[inline]
pub fn encode_client_frame(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(first);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// Unmasks (or masks: the operation is its own inverse) `payload` in place.
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Which server frames a client takes, beyond being well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    /// The largest payload, in bytes.
    pub max_payload: u64,
    /// Whether frames without FIN, and continuation frames, are taken.
    pub fragments: bool,
    /// Whether masked frames are taken (a server must not mask, RFC 6455 §5.1).
    pub masked: bool,
}

impl Accept {
    /// What Action Cable servers send: unmasked, unfragmented frames, up to 64 MiB.
    pub const SINGLE_FRAMES: Accept = Accept {
        max_payload: 64 * 1024 * 1024,
        fragments: false,
        masked: false,
    };

    /// Any well-formed frame, to record what a server sent whether it is right or not.
    pub const ANYTHING: Accept = Accept {
        max_payload: u64::MAX,
        fragments: true,
        masked: true,
    };
}

/// Where a complete frame's parts are, relative to the start of the parsed buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The FIN bit.
    pub fin: bool,
    /// The opcode (see [`opcode`]).
    pub opcode: u8,
    /// Length of the first byte plus the length field (2, 4 or 10): the header
    /// without the masking key.
    pub header_len: usize,
    /// The masking key, when the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Where the payload starts (`header_len`, plus 4 when masked).
    pub payload_start: usize,
    /// The payload's length.
    pub payload_len: usize,
}

impl Head {
    /// The payload's range in the parsed buffer (still masked when [`Head::mask`] is
    /// set).
    pub fn payload(&self) -> Range<usize> {
        self.payload_start..self.payload_start + self.payload_len
    }

    /// How many bytes of the buffer the frame takes.
    pub fn frame_len(&self) -> usize {
        self.payload_start + self.payload_len
    }
}

/// The outcome of looking at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole frame yet: read more and look again.
    Incomplete,
    /// A whole frame is at the front of the buffer.
    Frame(Head),
}

/// A server frame the caller's [`Accept`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame without FIN, or a continuation frame.
    #[error("fragmented frames are not supported")]
    Fragmented,
    /// A masked frame.
    #[error("server frames must not be masked")]
    Masked,
    /// A payload larger than [`Accept::max_payload`].
    #[error("frame of {0} bytes is larger than accepted")]
    TooLarge(u64),
}

/// Looks for a server frame at the front of `buf`.
///
/// # Errors
/// A [`FrameError`] for a frame `accept` refuses, as soon as its first bytes show it.
#[inline]
pub fn parse_server_frame(buf: &[u8], accept: &Accept) -> Result<Parsed, FrameError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(Parsed::Incomplete);
    };
    let fin = b0 & FIN != 0;
    let op = b0 & 0x0F;
    if !accept.fragments && (!fin || op == opcode::CONTINUATION) {
        return Err(FrameError::Fragmented);
    }
    let masked = b1 & 0x80 != 0;
    if masked && !accept.masked {
        return Err(FrameError::Masked);
    }
    let (header_len, len) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(l) => (4, u64::from(u16::from_be_bytes([l[0], l[1]]))),
            None => return Ok(Parsed::Incomplete),
        },
        127 => match buf.get(2..10) {
            Some(l) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(l);
                (10, u64::from_be_bytes(b))
            }
            None => return Ok(Parsed::Incomplete),
        },
        n => (2, u64::from(n)),
    };
    if len > accept.max_payload {
        return Err(FrameError::TooLarge(len));
    }
    let mask = if masked {
        match buf.get(header_len..header_len + 4) {
            Some(k) => Some([k[0], k[1], k[2], k[3]]),
            None => return Ok(Parsed::Incomplete),
        }
    } else {
        None
    };
    let payload_start = header_len + if masked { 4 } else { 0 };
    // A length this machine cannot hold can never arrive whole.
    let Ok(payload_len) = usize::try_from(len) else {
        return Ok(Parsed::Incomplete);
    };
    match payload_start.checked_add(payload_len) {
        Some(end) if end <= buf.len() => Ok(Parsed::Frame(Head {
            fin,
            opcode: op,
            header_len,
            mask,
            payload_start,
            payload_len,
        })),
        _ => Ok(Parsed::Incomplete),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(b: &[u8]) -> Result<Parsed, FrameError> {
        parse_server_frame(b, &Accept::SINGLE_FRAMES)
    }

    fn head(opcode: u8, header_len: usize, payload_len: usize) -> Parsed {
        Parsed::Frame(Head {
            fin: true,
            opcode,
            header_len,
            mask: None,
            payload_start: header_len,
            payload_len,
        })
    }

    #[test]
    fn server_frames_parse_in_each_length_form() {
        assert_eq!(strict(&[]), Ok(Parsed::Incomplete));
        assert_eq!(strict(&[0x81]), Ok(Parsed::Incomplete));
        assert_eq!(strict(&[0x81, 2, b'h']), Ok(Parsed::Incomplete));
        assert_eq!(strict(&[0x81, 2, b'h', b'i']), Ok(head(1, 2, 2)));
        // Bytes after the frame belong to the next one.
        assert_eq!(strict(&[0x8A, 0, 0x81]), Ok(head(0xA, 2, 0)));

        let mut big = vec![0x81, 126, 0x01, 0x00];
        assert_eq!(strict(&big[..3]), Ok(Parsed::Incomplete));
        big.resize(4 + 256, b'x');
        assert_eq!(strict(&big), Ok(head(1, 4, 256)));
        assert_eq!(strict(&big[..100]), Ok(Parsed::Incomplete));

        let mut huge = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(strict(&huge[..9]), Ok(Parsed::Incomplete));
        huge.resize(10 + 65_536, 0);
        let Ok(Parsed::Frame(h)) = strict(&huge) else {
            panic!("a 64 KiB frame")
        };
        assert_eq!(
            (h.header_len, h.payload(), h.frame_len()),
            (10, 10..65_546, 65_546)
        );
    }

    #[test]
    fn refusals_come_as_soon_as_the_bytes_show_them() {
        assert_eq!(strict(&[0x01, 0]), Err(FrameError::Fragmented), "no FIN");
        assert_eq!(
            strict(&[0x80, 0]),
            Err(FrameError::Fragmented),
            "continuation"
        );
        assert_eq!(strict(&[0x81, 0x85]), Err(FrameError::Masked));
        let over = [0x81, 127, 0, 0, 0, 0, 4, 0, 0, 1];
        assert_eq!(
            strict(&over),
            Err(FrameError::TooLarge(64 * 1024 * 1024 + 1))
        );
        let limit = Accept {
            max_payload: 100,
            ..Accept::SINGLE_FRAMES
        };
        assert_eq!(
            parse_server_frame(&[0x81, 126, 0, 101], &limit),
            Err(FrameError::TooLarge(101))
        );
        // Anything well formed is taken when the caller says so.
        for b in [&[0x01, 0][..], &[0x80, 0], &over[..]] {
            assert!(parse_server_frame(b, &Accept::ANYTHING).is_ok(), "{b:?}");
        }
    }

    #[test]
    fn masked_frames_round_trip() {
        // RFC 6455 §5.7: a masked "Hello".
        let mut out = Vec::new();
        encode_client_frame(
            &mut out,
            FIN | opcode::TEXT,
            b"Hello",
            [0x37, 0xfa, 0x21, 0x3d],
        );
        let rfc = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(out, rfc);
        assert_eq!(
            parse_server_frame(&rfc[..5], &Accept::ANYTHING),
            Ok(Parsed::Incomplete),
            "the key is not all there"
        );
        let Ok(Parsed::Frame(h)) = parse_server_frame(&out, &Accept::ANYTHING) else {
            panic!("a whole frame")
        };
        assert_eq!((h.header_len, h.mask), (2, Some([0x37, 0xfa, 0x21, 0x3d])));
        let mut payload = out[h.payload()].to_vec();
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(payload, b"Hello");

        for (len, header) in [(125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let payload = vec![7u8; len];
            let mut out = Vec::new();
            encode_client_frame(&mut out, opcode::BINARY, &payload, [1, 2, 3, 4]);
            let Ok(Parsed::Frame(h)) = parse_server_frame(&out, &Accept::ANYTHING) else {
                panic!("{len}: a whole frame")
            };
            assert_eq!((h.fin, h.opcode), (false, opcode::BINARY));
            assert_eq!(
                (h.header_len, h.payload_len, h.frame_len()),
                (header, len, out.len())
            );
            apply_mask(&mut out[h.payload()], [1, 2, 3, 4]);
            assert_eq!(&out[h.payload()], &payload[..], "{len}");
        }
    }
}
