//! Per-connection limits: the command rate, the deadlines for a connection that never
//! finishes its handshake or its authentication, and the size of the request headers.
//!
//! # Request headers
//! hyper refuses a request head over `--max-header-bytes` itself, with `431`, before
//! any of it reaches us; an upgrade whose `Cookie` headers add up to more than
//! `--max-cookie-bytes` gets `431` before anything reads a cookie. Both count in
//! `ferrocable_limit_triggers_total` (`request_headers`, `cookie_bytes`). These caps,
//! with a cookie jar parsed once and in linear time, are what bound the CPU an
//! upgrade can cost: authentication's identification steps are synchronous, so
//! `--auth-timeout` can only interrupt it between steps and while it waits for the
//! profile source, never inside a step.
//!
//! # Command rate: backpressure, then disconnection
//! Each connection has a token bucket ([`CommandBucket`], 24 bytes in the reader's
//! state, no allocation): `--command-burst` tokens, refilled at
//! `--max-commands-per-second`. A client message takes one token. When none is left
//! the reader *waits* for the next token before handling the message and before
//! reading anything more from the socket, so the kernel's receive buffer fills and TCP
//! flow control slows the client down: nothing a well-behaved client sends is lost or
//! reordered, it only arrives later. A client that stays throttled without a pause for
//! `--command-flood-seconds` (it keeps the socket full of commands) is disconnected
//! with `{"type":"disconnect","reason":"invalid_request","reconnect":false}` and a
//! close 1000, the Action Cable reason for a request the server will not serve, with
//! no reconnect so a runaway client stops.
//!
//! Control frames (ping, pong, close) take no token: they are answered at once and a
//! client that never reads its pongs is caught by the outbox cap.
//!
//! # Invariants
//! - A throttled connection still reacts at once to being closed (slow client, remote
//!   disconnect, shutdown): the wait is abandoned and the message dropped.
//! - A single wait is at most one second (`--max-commands-per-second` is at least 1
//!   when on).

use std::time::{Duration, Instant};

use crate::auth::{AuthError, AuthOutcome, Authenticator, HandshakeRequest};
use crate::config::LimitsSettings;
use crate::hub::ConnHandle;
use crate::metrics::Metrics;

/// The limits, from settings `config` checked at startup. Dereferences to them, so
/// `limits.max_message_size` reads the setting.
#[derive(Debug, Clone)]
pub struct Limits {
    rate: Option<RateLimit>,
    settings: LimitsSettings,
}

impl std::ops::Deref for Limits {
    type Target = LimitsSettings;
    fn deref(&self) -> &LimitsSettings {
        &self.settings
    }
}

#[derive(Debug, Clone)]
struct RateLimit {
    per_sec: u64,
    burst: u64,
    flood_ms: u64,
    epoch: Instant,
}

/// Thousandths of a token.
const MILLI: u64 = 1000;

impl Limits {
    /// The limits `settings` ask for; their clock starts now.
    pub fn new(settings: &LimitsSettings) -> Limits {
        let rate = settings.command_rate.map(|r| RateLimit {
            per_sec: u64::from(r.per_sec),
            burst: u64::from(r.burst),
            flood_ms: r.flood.as_millis() as u64,
            epoch: Instant::now(),
        });
        Limits {
            rate,
            settings: settings.clone(),
        }
    }

    /// A full bucket for a new connection.
    pub fn bucket(&self) -> CommandBucket {
        match &self.rate {
            Some(r) => CommandBucket {
                tokens: r.burst * MILLI,
                last_ms: r.now_ms(),
                throttled_since_ms: None,
            },
            None => CommandBucket::default(),
        }
    }

    /// Takes a token for one client message of `len` bytes, waiting for it when the
    /// bucket is empty (see the module docs).
    pub async fn admit(
        &self,
        bucket: &mut CommandBucket,
        conn: &ConnHandle,
        metrics: &Metrics,
        len: usize,
    ) -> Admit {
        metrics.received(len);
        let Some(rate) = &self.rate else {
            return Admit::Go;
        };
        let now = rate.now_ms();
        let wait_ms = match rate.take(bucket, now) {
            None => return Admit::Go,
            Some(wait_ms) => wait_ms,
        };
        let since = *bucket.throttled_since_ms.get_or_insert_with(|| {
            metrics.rate_limited(conn.id(), rate.per_sec, rate.burst);
            now
        });
        metrics.command_delayed();
        if now + wait_ms - since > rate.flood_ms {
            metrics.flood(conn.id(), (now - since) as f64 / 1000.0);
            return Admit::Flood;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
            _ = conn.closing().cancelled() => return Admit::Closing,
        }
        rate.refill(bucket, rate.now_ms());
        bucket.tokens = bucket.tokens.saturating_sub(MILLI);
        Admit::Go
    }

    /// Runs `auth` for `req` within `--auth-timeout`.
    ///
    /// # Errors
    /// The authenticator's error, or [`AuthError::Deadline`] when it took too long.
    pub async fn authenticate(
        &self,
        auth: &dyn Authenticator,
        req: &HandshakeRequest,
        conn: u64,
        metrics: &Metrics,
    ) -> Result<AuthOutcome, AuthError> {
        // The deadline is looked at first on every poll (`biased`), so once a
        // synchronous step has overrun it, the pipeline's next yield ends the wait;
        // `timeout` would poll the pipeline first and let it run on.
        tokio::select! {
            biased;
            _ = tokio::time::sleep(self.auth_timeout) => {
                metrics.auth_deadline(conn, self.auth_timeout);
                Err(AuthError::Deadline)
            }
            r = auth.authenticate(req) => r,
        }
    }
}

impl RateLimit {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn refill(&self, b: &mut CommandBucket, now: u64) {
        let elapsed = now.saturating_sub(b.last_ms);
        // `per_sec` tokens a second is `per_sec` thousandths a millisecond.
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst * MILLI);
        b.last_ms = now;
    }

    /// Takes a token now (`None`), or says how many milliseconds until one is there.
    fn take(&self, b: &mut CommandBucket, now: u64) -> Option<u64> {
        self.refill(b, now);
        if b.tokens >= MILLI {
            b.tokens -= MILLI;
            // A token was waiting: the client paused, so it is not flooding.
            b.throttled_since_ms = None;
            return None;
        }
        Some((MILLI - b.tokens).div_ceil(self.per_sec).max(1))
    }
}

/// One connection's command bucket.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommandBucket {
    tokens: u64,
    last_ms: u64,
    throttled_since_ms: Option<u64>,
}

/// What to do with a client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Handle it.
    Go,
    /// The connection is closing: drop it.
    Closing,
    /// The client keeps flooding: disconnect it (`invalid_request`).
    Flood,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn limits(args: &[&str]) -> Limits {
        let mut v = vec!["ferrocable"];
        v.extend_from_slice(args);
        let cfg = crate::config::Config::try_parse_from(v).expect("flags");
        Limits::new(&cfg.check().expect("valid").limits)
    }

    #[test]
    fn the_bucket_refills_at_the_rate_and_caps_at_the_burst() {
        let l = limits(&["--max-commands-per-second", "10", "--command-burst", "3"]);
        let r = l.rate.clone().expect("on");
        let mut b = CommandBucket {
            tokens: 3 * MILLI,
            last_ms: 0,
            throttled_since_ms: None,
        };
        for _ in 0..3 {
            assert_eq!(r.take(&mut b, 0), None);
        }
        // Empty: one token every 100 ms.
        assert_eq!(r.take(&mut b, 0), Some(100));
        assert_eq!(r.take(&mut b, 40), Some(60));
        assert_eq!(r.take(&mut b, 100), None);
        // A long pause refills only up to the burst.
        for _ in 0..3 {
            assert_eq!(r.take(&mut b, 60_000), None);
        }
        assert!(r.take(&mut b, 60_000).is_some());
    }

    struct Never;

    #[async_trait::async_trait]
    impl Authenticator for Never {
        async fn authenticate(&self, _: &HandshakeRequest) -> Result<AuthOutcome, AuthError> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn authentication_has_a_deadline() {
        let l = limits(&["--auth-timeout", "2"]);
        let m = Metrics::new();
        let req = HandshakeRequest::new(
            Default::default(),
            None,
            "127.0.0.1:1".parse().expect("addr"),
        );
        let started = tokio::time::Instant::now();
        let r = l.authenticate(&Never, &req, 1, &m).await;
        assert!(matches!(r, Err(AuthError::Deadline)), "{r:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(m
            .render(0)
            .contains(r#"ferrocable_limit_triggers_total{limit="auth_deadline"} 1"#));
    }

    /// A synchronous step that takes `.0` of wall-clock time, standing in for CPU work.
    struct Slow(Duration);

    impl crate::auth::Identify for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn identify(&self, _: &HandshakeRequest) -> crate::auth::Found {
            std::thread::sleep(self.0);
            crate::auth::Found::Nothing
        }
    }

    struct Names(i64);

    impl crate::auth::Identify for Names {
        fn name(&self) -> &'static str {
            "names"
        }
        fn identify(&self, _: &HandshakeRequest) -> crate::auth::Found {
            crate::auth::Found::User(self.0)
        }
    }

    #[tokio::test]
    async fn the_deadline_interrupts_authentication_between_steps() {
        // A step cannot be interrupted, but once it has overrun the deadline the next
        // step does not run.
        let l = limits(&["--auth-timeout", "0.1"]);
        let m = Metrics::new();
        let pipeline = crate::auth::Pipeline::new(
            vec![
                Box::new(Slow(Duration::from_millis(300))),
                Box::new(Names(1)),
            ],
            std::sync::Arc::new(crate::auth::profiles::IdOnly),
            None,
        );
        let req = HandshakeRequest::new(
            Default::default(),
            None,
            "127.0.0.1:1".parse().expect("addr"),
        );
        let r = l.authenticate(&pipeline, &req, 1, &m).await;
        assert!(matches!(r, Err(AuthError::Deadline)), "{r:?}");
    }
}
