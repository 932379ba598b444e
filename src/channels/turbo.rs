//! `Turbo::StreamsChannel`: the channel `turbo_stream_from` subscribes to.
//!
//! The client sends `signed_stream_name`, a token turbo-rails made with
//! `ActiveSupport::MessageVerifier.new(key, digest: "SHA256", serializer: JSON)`:
//! `base64(JSON(stream name))--hex(HMAC-SHA256(key, base64 text))`, where the key is
//! `config.turbo.signed_stream_verifier_key` or, by default, derived from
//! `secret_key_base` with the salt `turbo/signed_stream_verifier_key` (64 bytes,
//! PBKDF2 with SHA1 before `load_defaults 7.0`, SHA256 after). A valid token streams
//! from the decoded name; anything else is rejected. What the app broadcasts with
//! `Turbo::StreamsChannel.broadcast_*` arrives through the Redis relay.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::streams::ListenOnly;
use super::{ChannelError, Ctx, Subscription};
use crate::auth::rails::keys::{derive_key, Digest};
use crate::protocol::ChannelParams;

/// The salt turbo-rails derives its key with.
pub const TURBO_SALT: &[u8] = b"turbo/signed_stream_verifier_key";

/// Verifies signed stream names with one or more keys (secret rotation, both PBKDF2
/// digests while a fleet upgrades).
#[derive(Clone)]
pub struct StreamNameVerifier {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for StreamNameVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamNameVerifier({} keys)", self.keys.len())
    }
}

impl StreamNameVerifier {
    /// Keys derived from each `secret_key_base` with each of `digests`.
    pub fn derived(secrets: &[String], digests: &[Digest]) -> Self {
        let mut keys = Vec::new();
        for secret in secrets {
            for d in digests {
                let mut key = vec![0u8; 64];
                derive_key(secret.as_bytes(), TURBO_SALT, *d, &mut key);
                keys.push(key);
            }
        }
        StreamNameVerifier { keys }
    }

    /// An explicit `signed_stream_verifier_key`.
    pub fn with_key(key: &[u8]) -> Self {
        StreamNameVerifier {
            keys: vec![key.to_vec()],
        }
    }

    /// The stream name inside `token`, or `None` when it is not authentic.
    pub fn verify(&self, token: &str) -> Option<String> {
        if token.len() > 4096 {
            return None;
        }
        let (data, digest) = token.rsplit_once("--")?;
        let digest = hex::decode(digest).ok()?;
        let authentic = self.keys.iter().any(|key| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
                return false;
            };
            mac.update(data.as_bytes());
            // Constant-time comparison.
            mac.verify_slice(&digest).is_ok()
        });
        if !authentic {
            return None;
        }
        let json = base64::engine::general_purpose::STANDARD
            .decode(data)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(data))
            .ok()?;
        match serde_json::from_slice::<Value>(&json).ok()? {
            Value::String(name) => Some(name),
            _ => None,
        }
    }
}

/// The `Turbo::StreamsChannel` class.
pub struct TurboStreamsChannel {
    verifier: StreamNameVerifier,
}

impl TurboStreamsChannel {
    /// A channel accepting names signed with `verifier`'s keys.
    pub fn new(verifier: StreamNameVerifier) -> Self {
        TurboStreamsChannel { verifier }
    }
}

#[async_trait]
impl super::Channel for TurboStreamsChannel {
    async fn subscribe(
        &self,
        _ctx: &Ctx<'_>,
        params: &ChannelParams,
    ) -> Result<Option<Box<dyn Subscription>>, ChannelError> {
        let Some(Value::String(token)) = params.params.get("signed_stream_name") else {
            return Ok(None);
        };
        match self.verifier.verify(token) {
            Some(name) => Ok(Some(Box::new(ListenOnly(Some(Arc::from(name)))))),
            None => {
                tracing::info!("signed_stream_name does not verify; subscription rejected");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // redis-adapter.md §6.4, computed with real ActiveSupport.
    const SECRET: &str = "569ceeda1d37437198001a03cb05ac9f31b1b368970ed76dff0d100f27b7fa984a037f6cf346f4b39655e414cfbeffa88fffbc2b09d4dcdefd63daed620b8998";

    #[test]
    fn the_spec_vectors_verify_with_both_digests() {
        let v = StreamNameVerifier::derived(&[SECRET.to_owned()], &[Digest::Sha1, Digest::Sha256]);
        let cases = [
            ("IloybGtPaTh2YlhrdFlYQndMMUp2YjIwdk53Ig==--b8151673d406692b1248451c7c0db6c1a7ad3af8f5bcce1ec9b2ca988c12e15a", "Z2lkOi8vbXktYXBwL1Jvb20vNw"),
            ("IloybGtPaTh2YlhrdFlYQndMMUp2YjIwdk53Ig==--221fc40790a916de76531a6e2d5050d58d3dcda35bebaaddddd6f8c002f380cb", "Z2lkOi8vbXktYXBwL1Jvb20vNw"),
            ("IloybGtPaTh2YlhrdFlYQndMMUp2YjIwdk53Om1lc3NhZ2VzIg==--56ca782e859f82a41f0ba9c5e81dbd12e2283e20b53afbd3b8e98fdd2c45e5d0", "Z2lkOi8vbXktYXBwL1Jvb20vNw:messages"),
            ("IloybGtPaTh2YlhrdFlYQndMMUp2YjIwdk53Om1lc3NhZ2VzIg==--a2e03d4aca64cb2c631c3e908cb09b7cb2d75d4def5ba4a2f85a246beb193308", "Z2lkOi8vbXktYXBwL1Jvb20vNw:messages"),
        ];
        for (token, name) in cases {
            assert_eq!(v.verify(token).as_deref(), Some(name), "{token}");
        }
        let sha1_only = StreamNameVerifier::derived(&[SECRET.to_owned()], &[Digest::Sha1]);
        assert_eq!(
            sha1_only.verify(cases[1].0),
            None,
            "a SHA256-derived token needs the SHA256 key"
        );
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let v = StreamNameVerifier::derived(&[SECRET.to_owned()], &[Digest::Sha1]);
        let good = "IloybGtPaTh2YlhrdFlYQndMMUp2YjIwdk53Ig==--b8151673d406692b1248451c7c0db6c1a7ad3af8f5bcce1ec9b2ca988c12e15a";
        for bad in [
            good.replace("b815", "b816"),
            good.replace("IloybGtP", "IloybGtQ"),
            good.replace("--", ""),
            "nope".to_owned(),
            String::new(),
            format!("{good}--00"),
            "x".repeat(5000),
        ] {
            assert_eq!(v.verify(&bad), None, "{bad}");
        }
        let other = StreamNameVerifier::derived(&["other".to_owned()], &[Digest::Sha1]);
        assert_eq!(other.verify(good), None);
    }
}
