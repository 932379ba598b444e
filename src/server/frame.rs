//! Decoding client WebSocket frames (RFC 6455 §5), as pure functions over a byte
//! buffer, so the reader holds no buffer while a connection is idle.
//!
//! "Need more bytes" ([`Parsed::Incomplete`]) is its own outcome, apart from bad input
//! ([`FrameError`]), which maps to the close code the RFC prescribes. The
//! [`Assembler`] then turns frames into messages (fragments joined, control frames
//! checked), also without I/O; it holds bytes only while a fragmented message is
//! unfinished.

use crate::protocol::CloseCode;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Continuation of a fragmented message.
    Continuation,
    /// Text.
    Text,
    /// Binary.
    Binary,
    /// Close.
    Close,
    /// Ping.
    Ping,
    /// Pong.
    Pong,
}

/// One decoded (unmasked) frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: Opcode,
    /// The unmasked payload.
    pub payload: Vec<u8>,
}

/// The outcome of looking at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole frame yet.
    Incomplete,
    /// A frame, and how many bytes of the buffer it used.
    Frame(Frame, usize),
}

/// A frame the RFC says to fail the connection for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Reserved bits set, an unknown opcode, an unmasked client frame, or a malformed
    /// control frame: close 1002.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The payload is larger than allowed: close 1009.
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(u64),
    /// A fragmented message grew larger than allowed (at least this many bytes): close
    /// 1009.
    #[error("fragmented message of {0} bytes or more exceeds the limit")]
    MessageTooLarge(usize),
    /// A close frame's reason is not UTF-8: close 1007.
    #[error("close reason is not UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    /// The close code to answer with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::Protocol(_) => CloseCode::ProtocolError,
            FrameError::TooLarge(_) | FrameError::MessageTooLarge(_) => CloseCode::MessageTooBig,
            FrameError::InvalidUtf8 => CloseCode::InvalidPayload,
        }
    }
}

/// Checks a client close frame's payload (RFC 6455 §5.5.1, §7.4): empty, or a status
/// code a peer may send followed by a UTF-8 reason. Codes allowed on the wire are
/// 1000–1003, 1007–1014 and 3000–4999; 1004 is reserved, 1005, 1006 and 1015 only
/// stand for "no code" locally, and the rest are unassigned.
///
/// # Errors
/// [`FrameError::Protocol`] (1002) for a one-byte payload or a code not allowed,
/// [`FrameError::InvalidUtf8`] (1007) for a reason that is not UTF-8.
pub fn check_close(payload: &[u8]) -> Result<(), FrameError> {
    let [hi, lo, reason @ ..] = payload else {
        return match payload {
            [] => Ok(()),
            _ => Err(FrameError::Protocol("one-byte close payload")),
        };
    };
    match u16::from_be_bytes([*hi, *lo]) {
        1000..=1003 | 1007..=1014 | 3000..=4999 => {}
        _ => return Err(FrameError::Protocol("close code not allowed on the wire")),
    }
    std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
    Ok(())
}

/// What a client frame amounts to, once [`Assembler::push`] has seen it.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// A whole data message (a final frame, or the fragments joined).
    Message {
        /// Text, as opposed to binary.
        text: bool,
        /// The message's bytes (not checked for UTF-8).
        payload: Vec<u8>,
    },
    /// A ping, to answer with a pong carrying this payload.
    Ping(Vec<u8>),
    /// A valid close frame, with its raw payload (to echo).
    Close(Vec<u8>),
    /// Nothing to act on: a fragment of an unfinished message, or a pong.
    Nothing,
}

/// Joins fragmented messages (RFC 6455 §5.4) and checks close frames (§5.5.1), over
/// frames [`parse`] returned. Control frames may come between fragments.
///
/// **Invariant:** holds bytes only while a fragmented message is unfinished; a whole
/// message never exceeds the limit given to [`Assembler::new`].
#[derive(Debug)]
pub struct Assembler {
    /// The message being collected: (is text, bytes so far).
    partial: Option<(bool, Vec<u8>)>,
    /// The largest message allowed, in bytes.
    max: usize,
}

impl Assembler {
    /// An assembler for messages of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Assembler { partial: None, max }
    }

    /// Takes the next frame of the connection.
    ///
    /// # Errors
    /// [`FrameError::Protocol`] for a data frame inside a fragmented message, a
    /// continuation without one, or a bad close frame; [`FrameError::MessageTooLarge`]
    /// when the fragments add up to more than the limit; [`FrameError::InvalidUtf8`]
    /// for a close reason that is not UTF-8. The connection is to be failed: the
    /// assembler's state is then meaningless.
    pub fn push(&mut self, f: Frame) -> Result<Assembled, FrameError> {
        let text = match f.opcode {
            Opcode::Ping => return Ok(Assembled::Ping(f.payload)),
            Opcode::Pong => return Ok(Assembled::Nothing),
            Opcode::Close => {
                check_close(&f.payload)?;
                return Ok(Assembled::Close(f.payload));
            }
            Opcode::Text | Opcode::Binary if self.partial.is_some() => {
                return Err(FrameError::Protocol(
                    "new data frame inside a fragmented message",
                ));
            }
            Opcode::Text | Opcode::Binary if f.fin => {
                return Ok(Assembled::Message {
                    text: f.opcode == Opcode::Text,
                    payload: f.payload,
                });
            }
            Opcode::Text | Opcode::Binary => {
                self.partial = Some((f.opcode == Opcode::Text, f.payload));
                return Ok(Assembled::Nothing);
            }
            Opcode::Continuation => {
                let Some((text, buf)) = self.partial.as_mut() else {
                    return Err(FrameError::Protocol("continuation frame without a message"));
                };
                let total = buf.len().saturating_add(f.payload.len());
                if total > self.max {
                    return Err(FrameError::MessageTooLarge(total));
                }
                buf.extend_from_slice(&f.payload);
                *text
            }
        };
        if !f.fin {
            return Ok(Assembled::Nothing);
        }
        let payload = self.partial.take().map(|(_, b)| b).unwrap_or_default();
        Ok(Assembled::Message { text, payload })
    }
}

/// Decodes the frame at the front of `buf`, refusing payloads over `max_payload`.
///
/// # Errors
/// A [`FrameError`] when the bytes can never form an acceptable client frame.
pub fn parse(buf: &[u8], max_payload: usize) -> Result<Parsed, FrameError> {
    if buf.len() < 2 {
        return Ok(Parsed::Incomplete);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameError::Protocol("reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = match b0 & 0x0f {
        0 => Opcode::Continuation,
        1 => Opcode::Text,
        2 => Opcode::Binary,
        8 => Opcode::Close,
        9 => Opcode::Ping,
        10 => Opcode::Pong,
        _ => return Err(FrameError::Protocol("unknown opcode")),
    };
    if b1 & 0x80 == 0 {
        return Err(FrameError::Protocol("client frame not masked"));
    }
    let control = matches!(opcode, Opcode::Close | Opcode::Ping | Opcode::Pong);
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(Parsed::Incomplete);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(Parsed::Incomplete);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(FrameError::Protocol("length has the high bit set"));
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    if control && (!fin || len > 125) {
        return Err(FrameError::Protocol(
            "fragmented or oversized control frame",
        ));
    }
    if len > max_payload as u64 {
        return Err(FrameError::TooLarge(len));
    }
    if buf.len() < at + 4 {
        return Ok(Parsed::Incomplete);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    // `len` is at most `max_payload`, a usize.
    let len = len as usize;
    if buf.len() < at + len {
        return Ok(Parsed::Incomplete);
    }
    let mut payload = buf[at..at + len].to_vec();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
    Ok(Parsed::Frame(
        Frame {
            fin,
            opcode,
            payload,
        },
        at + len,
    ))
}

/// Appends one unmasked, final server frame.
pub fn encode(buf: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    let code = match opcode {
        Opcode::Continuation => 0,
        Opcode::Text => 1,
        Opcode::Binary => 2,
        Opcode::Close => 8,
        Opcode::Ping => 9,
        Opcode::Pong => 10,
    };
    let len = payload.len();
    buf.reserve(len + 10);
    buf.push(0x80 | code);
    if len < 126 {
        buf.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        buf.push(126);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
    buf.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame with first byte `first` (which may be invalid on purpose),
    /// masked with the RFC's sample key.
    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        cable_wire::encode_client_frame(&mut out, first, payload, [0x37, 0xfa, 0x21, 0x3d]);
        out
    }

    #[test]
    fn decodes_the_rfc_sample_and_reports_incomplete() {
        // RFC 6455 §5.7: a masked "Hello".
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let want = Frame {
            fin: true,
            opcode: Opcode::Text,
            payload: b"Hello".to_vec(),
        };
        assert_eq!(parse(&hello, 100), Ok(Parsed::Frame(want, hello.len())));
        for cut in 0..hello.len() {
            assert_eq!(
                parse(&hello[..cut], 100),
                Ok(Parsed::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn long_lengths_and_trailing_bytes() {
        let body = vec![b'x'; 70_000];
        let mut buf = masked(0x81, &body);
        let len = buf.len();
        buf.extend_from_slice(&masked(0x89, b"p"));
        let Ok(Parsed::Frame(f, used)) = parse(&buf, 100_000) else {
            panic!("expected a frame")
        };
        assert_eq!((f.payload.len(), used), (70_000, len));
        assert_eq!(
            parse(&buf[used..], 10),
            Ok(Parsed::Frame(
                Frame {
                    fin: true,
                    opcode: Opcode::Ping,
                    payload: b"p".to_vec()
                },
                7
            ))
        );
        let mid = masked(0x01, &vec![b'y'; 300]);
        assert!(matches!(
            parse(&mid, 1000),
            Ok(Parsed::Frame(Frame { fin: false, .. }, _))
        ));
    }

    #[test]
    fn bad_frames_are_errors_with_rfc_codes() {
        assert_eq!(
            parse(&masked(0x81, &[b'x'; 200]), 100),
            Err(FrameError::TooLarge(200))
        );
        // Too large is known from the header alone, before the payload arrives.
        assert_eq!(
            parse(&masked(0x81, &[b'x'; 200])[..4], 100),
            Err(FrameError::TooLarge(200))
        );
        assert_eq!(
            parse(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o'], 100)
                .map_err(|e| e.close_code().code()),
            Err(1002)
        );
        assert_eq!(
            parse(&masked(0xC1, b"x"), 100).map_err(|e| e.close_code().code()),
            Err(1002)
        );
        assert_eq!(
            parse(&masked(0x83, b"x"), 100).map_err(|e| e.close_code().code()),
            Err(1002)
        );
        assert_eq!(
            parse(&masked(0x09, b"x"), 100).map_err(|e| e.close_code().code()),
            Err(1002)
        );
        assert_eq!(
            parse(&masked(0x89, &[0; 126]), 1000).map_err(|e| e.close_code().code()),
            Err(1002)
        );
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            parse(&huge, 100).map_err(|e| e.close_code().code()),
            Err(1002)
        );
    }

    #[test]
    fn close_payloads_are_checked_as_rfc_6455_section_7_4_says() {
        let close = |code: u16, reason: &[u8]| {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice(reason);
            check_close(&p).map_err(|e| e.close_code().code())
        };
        assert_eq!(check_close(b""), Ok(()));
        assert_eq!(
            check_close(&[0x03]).map_err(|e| e.close_code().code()),
            Err(1002)
        );
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 4001, 4999,
        ] {
            assert_eq!(close(ok, b"bye"), Ok(()), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(close(bad, b""), Err(1002), "{bad}");
        }
        assert_eq!(close(1000, "très bien".as_bytes()), Ok(()));
        assert_eq!(close(1000, &[0xff, 0xfe]), Err(1007));
        // A reason cut inside a multi-byte character is not UTF-8 either.
        assert_eq!(close(1000, &"é".as_bytes()[..1]), Err(1007));
    }

    fn frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Frame {
        Frame {
            fin,
            opcode,
            payload: payload.to_vec(),
        }
    }

    fn message(text: bool, payload: &[u8]) -> Result<Assembled, FrameError> {
        Ok(Assembled::Message {
            text,
            payload: payload.to_vec(),
        })
    }

    #[test]
    fn assembler_joins_fragments_around_control_frames() {
        let mut a = Assembler::new(10);
        assert_eq!(
            a.push(frame(true, Opcode::Text, b"whole")),
            message(true, b"whole")
        );
        assert_eq!(
            a.push(frame(true, Opcode::Binary, b"")),
            message(false, b"")
        );
        assert_eq!(
            a.push(frame(false, Opcode::Text, b"ab")),
            Ok(Assembled::Nothing)
        );
        assert_eq!(
            a.push(frame(true, Opcode::Ping, b"p")),
            Ok(Assembled::Ping(b"p".to_vec()))
        );
        assert_eq!(
            a.push(frame(true, Opcode::Pong, b"q")),
            Ok(Assembled::Nothing)
        );
        assert_eq!(
            a.push(frame(false, Opcode::Continuation, b"cd")),
            Ok(Assembled::Nothing)
        );
        assert_eq!(
            a.push(frame(true, Opcode::Continuation, b"e")),
            message(true, b"abcde")
        );
        // Done: nothing held, a new message may start.
        assert!(a.partial.is_none());
        assert_eq!(
            a.push(frame(false, Opcode::Binary, b"x")),
            Ok(Assembled::Nothing)
        );
        assert_eq!(
            a.push(frame(true, Opcode::Continuation, b"")),
            message(false, b"x")
        );
        assert_eq!(
            a.push(frame(true, Opcode::Close, &1000u16.to_be_bytes())),
            Ok(Assembled::Close(vec![0x03, 0xe8]))
        );
    }

    #[test]
    fn assembler_errors_carry_rfc_close_codes() {
        let code = |frames: &[Frame]| {
            let mut a = Assembler::new(10);
            frames
                .iter()
                .try_for_each(|f| a.push(f.clone()).map(drop))
                .map_err(|e| e.close_code().code())
        };
        let start = frame(false, Opcode::Text, b"12345");
        assert_eq!(code(&[frame(true, Opcode::Continuation, b"x")]), Err(1002));
        assert_eq!(
            code(&[start.clone(), frame(true, Opcode::Text, b"x")]),
            Err(1002)
        );
        assert_eq!(
            code(&[start.clone(), frame(true, Opcode::Binary, b"x")]),
            Err(1002)
        );
        // Exactly the limit is allowed, one byte more is not.
        assert_eq!(
            code(&[start.clone(), frame(true, Opcode::Continuation, b"67890")]),
            Ok(())
        );
        assert_eq!(
            code(&[start, frame(true, Opcode::Continuation, b"678901")]),
            Err(1009)
        );
        assert_eq!(code(&[frame(true, Opcode::Close, &[0x03])]), Err(1002));
        assert_eq!(
            code(&[frame(true, Opcode::Close, &[0x03, 0xe8, 0xff])]),
            Err(1007)
        );
    }

    #[test]
    fn server_frames_use_the_shortest_length_form() {
        // The reference's handshake_raw: `81 12` for the welcome, `81 7e 00 c5` for 197 bytes.
        let mut b = Vec::new();
        encode(&mut b, Opcode::Text, br#"{"type":"welcome"}"#);
        assert_eq!(&b[..2], &[0x81, 0x12]);
        let mut b = Vec::new();
        encode(&mut b, Opcode::Text, &[b'x'; 197]);
        assert_eq!(&b[..4], &[0x81, 0x7e, 0x00, 0xc5]);
        let mut b = Vec::new();
        encode(&mut b, Opcode::Text, &vec![b'x'; 70_000]);
        assert_eq!(&b[..2], &[0x81, 127]);
        let mut b = Vec::new();
        encode(&mut b, Opcode::Close, &1000u16.to_be_bytes());
        assert_eq!(b, [0x88, 0x02, 0x03, 0xe8]);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep; the fuzz targets go further.
        let mut x: u32 = 12345;
        for _ in 0..20_000 {
            let len = (x % 24) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                buf.push((x >> 16) as u8);
            }
            let _ = parse(&buf, 64);
        }
    }
}
