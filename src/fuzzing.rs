//! Entry points for the fuzz targets in `fuzz/` and for `tests/fuzz_corpora.rs`, which
//! replays every corpus file through the same functions as an ordinary test.
//!
//! Each function takes arbitrary bytes and must return without panicking, whatever
//! they are; the checks inside assert the properties the callers rely on. Not part of
//! the public API.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use hyper::header::{HeaderValue, AUTHORIZATION, COOKIE, SEC_WEBSOCKET_PROTOCOL};

use crate::auth::identify::{EncryptedCookie, Jwt, SessionKey, SignedCookie};
use crate::auth::jwt::{JwtConfig, JwtVerifier};
use crate::auth::rails::{
    marshal, message, CipherMode, CookieVerifier, DigestMode, RailsSecrets, Serializer,
};
use crate::auth::{HandshakeRequest, Identify};
use crate::protocol::{ClientCommand, CloseCode};
use crate::server::frame::{self, Assembled, Assembler, Frame, Opcode, Parsed};

/// The secrets of `src/auth/rails/vectors/vectors.json`, so seeds from the vectors
/// authenticate and mutations reach the code behind the MAC check.
pub const SECRET_KEY_BASE: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbccccccccccccccccccccccccccccccccdddddddddddddddddddddddddddddddd";
/// The older secret of the vectors (rotation).
pub const OLD_SECRET_KEY_BASE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The reference app's JWT secret.
pub const JWT_SECRET: &str = "refapp-jwt-secret";

/// The frame parser: consumes `data` as a stream of client frames with a small size
/// limit; every frame returned lies inside the buffer and respects the limit.
pub fn frame_parser(data: &[u8]) {
    const MAX: usize = 4096;
    let mut rest = data;
    loop {
        match frame::parse(rest, MAX) {
            Ok(Parsed::Frame(f, used)) => {
                assert!(used >= 2 && used <= rest.len(), "frame uses bytes it has");
                assert!(f.payload.len() <= MAX, "payload within the limit");
                rest = &rest[used..];
            }
            Ok(Parsed::Incomplete) => {
                // Incomplete must stay incomplete (never an error) for every prefix.
                for cut in 0..rest.len() {
                    assert_eq!(frame::parse(&rest[..cut], MAX), Ok(Parsed::Incomplete));
                }
                return;
            }
            Err(e) => {
                assert!(matches!(
                    e.close_code(),
                    CloseCode::ProtocolError | CloseCode::MessageTooBig
                ));
                return;
            }
        }
    }
}

/// The message assembler, over a compact stream of frames: per frame a head byte (FIN
/// in the high bit, the opcode in the low three: continuation, text, binary, close,
/// ping, pong, then text and continuation again), a length byte (modulo 32) and that
/// many payload bytes. Until the first error (which fails the connection): every
/// message is within the limit and is exactly its fragments joined, and every close
/// passed [`frame::check_close`].
pub fn assembler(data: &[u8]) {
    const MAX: usize = 64;
    let mut messages = Assembler::new(MAX);
    // The fragments of the unfinished message, as this function saw them go in.
    let mut fragments: Vec<u8> = Vec::new();
    let mut rest = data;
    while let [head, len, tail @ ..] = rest {
        let n = usize::from(len % 32).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        let opcode = match head & 7 {
            0 | 7 => Opcode::Continuation,
            1 | 6 => Opcode::Text,
            2 => Opcode::Binary,
            3 => Opcode::Close,
            4 => Opcode::Ping,
            _ => Opcode::Pong,
        };
        let f = Frame {
            fin: head & 0x80 != 0,
            opcode,
            payload: payload.to_vec(),
        };
        let data_frame = matches!(opcode, Opcode::Continuation | Opcode::Text | Opcode::Binary);
        match messages.push(f) {
            Err(_) => return,
            Ok(Assembled::Message { payload: whole, .. }) => {
                assert!(whole.len() <= MAX, "message within the limit");
                fragments.extend_from_slice(payload);
                assert_eq!(whole, fragments, "a message is its fragments joined");
                fragments.clear();
            }
            Ok(Assembled::Nothing) if data_frame => fragments.extend_from_slice(payload),
            Ok(Assembled::Close(p)) => assert_eq!(frame::check_close(&p), Ok(())),
            Ok(Assembled::Nothing | Assembled::Ping(_)) => {}
        }
    }
}

/// The command decoder, then the identifier's params, as the reader and the channels
/// use them.
pub fn command_decoder(data: &[u8]) {
    if let Ok(command) = ClientCommand::decode(data) {
        let identifier = command.identifier();
        if let Ok(params) = identifier.params() {
            let _ = params.param_text("room_id");
            let _ = params.param_text("channel");
        }
    }
}

fn verifier() -> &'static Arc<CookieVerifier> {
    static V: OnceLock<Arc<CookieVerifier>> = OnceLock::new();
    V.get_or_init(|| {
        let secrets = RailsSecrets {
            secret_key_base: vec![SECRET_KEY_BASE.to_owned(), OLD_SECRET_KEY_BASE.to_owned()],
            key_digest: DigestMode::Auto,
            signed_cookie_digest: DigestMode::Auto,
            encrypted_cookie_cipher: CipherMode::Auto,
            serializer: Serializer::Hybrid,
            ..RailsSecrets::default()
        };
        // Fixed, valid secrets: this cannot fail.
        Arc::new(CookieVerifier::new(&secrets).unwrap_or_else(|e| panic!("fuzz verifier: {e}")))
    })
}

fn request(
    headers: &[(hyper::header::HeaderName, &[u8])],
    query: Option<String>,
) -> HandshakeRequest {
    let mut map = hyper::HeaderMap::new();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            map.append(name.clone(), v);
        }
    }
    HandshakeRequest::new(map, query, std::net::SocketAddr::from(([127, 0, 0, 1], 1)))
}

/// Signed and encrypted cookie verification and the session path, on `data` as a
/// `Cookie:` header; then the code behind the MAC (metadata envelope, JSON/Marshal
/// deserialisation) on `data` as an authentic payload.
pub fn cookie(data: &[u8]) {
    let v = verifier();
    let req = request(&[(COOKIE, data)], None);
    let steps: [Box<dyn Identify>; 4] = [
        Box::new(SignedCookie {
            name: "user_id".into(),
            verifier: v.clone(),
        }),
        Box::new(EncryptedCookie {
            name: "user_id".into(),
            verifier: v.clone(),
        }),
        Box::new(SessionKey {
            cookie: "_refapp_session".into(),
            path: vec!["warden.user.user.key".into()],
            verifier: v.clone(),
        }),
        Box::new(SessionKey {
            cookie: "_refapp_session".into(),
            path: vec!["user_id".into()],
            verifier: v.clone(),
        }),
    ];
    for step in &steps {
        let _ = step.identify(&req);
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_832_000);
    if let Ok(inner) = message::unwrap_metadata(data, "user_id", now) {
        let _ = message::deserialize(&inner, Serializer::Hybrid);
    }
    let _ = message::deserialize(data, Serializer::Hybrid);
}

/// The Marshal parser (the data-only subset read from `:hybrid` cookies).
pub fn marshal_parser(data: &[u8]) {
    if let Ok(value) = marshal::load(data) {
        // Whatever it read is a JSON value that serialises.
        let _ = serde_json::to_vec(&value).map_err(|e| panic!("unserialisable value: {e}"));
    }
}

fn jwt_step() -> &'static Jwt {
    static J: OnceLock<Jwt> = OnceLock::new();
    J.get_or_init(|| Jwt {
        param: "token".into(),
        verifier: JwtVerifier::new(&JwtConfig::hs256(JWT_SECRET))
            .unwrap_or_else(|e| panic!("fuzz jwt: {e}")),
        // Trusted: the fuzzer then also reaches the profile-from-claims code.
        trust_profile_claims: true,
    })
}

/// The JWT path: the token from a query parameter, an `Authorization` header or a
/// subprotocol entry (chosen by the first byte), verified.
pub fn jwt(data: &[u8]) {
    let Some((&which, token)) = data.split_first() else {
        return;
    };
    let step = jwt_step();
    let req = match which % 3 {
        0 => request(
            &[],
            Some(format!("token={}", String::from_utf8_lossy(token))),
        ),
        1 => {
            let mut h = b"Bearer ".to_vec();
            h.extend_from_slice(token);
            request(&[(AUTHORIZATION, &h)], None)
        }
        _ => {
            let mut h = b"actioncable-v1-json, ".to_vec();
            h.extend_from_slice(token);
            request(&[(SEC_WEBSOCKET_PROTOCOL, &h)], None)
        }
    };
    let _ = step.identify(&req);
    if let Ok(text) = std::str::from_utf8(token) {
        let _ = step.verifier.verify(text);
    }
}

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every target by its `fuzz/fuzz_targets/<name>.rs` name.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_parser", frame_parser),
    ("assembler", assembler),
    ("command_decoder", command_decoder),
    ("cookie", cookie),
    ("marshal_parser", marshal_parser),
    ("jwt", jwt),
];
