//! The `member_of` authorization rule: `reject unless REDIS.sismember("room:#{params[:room]}:allowed", current_user.id)`.
//!
//! A [`Membership`] answers whether a user id is in a named set. The Redis one asks
//! `SISMEMBER <set> <user id>` on its own connection (made like the broker's and the
//! presence store's, [`crate::redis::client_for`]), so a slow set lookup never delays
//! broadcasts or presence writes.
//!
//! # Invariants
//! - A failure (Redis down, a timeout, a key of the wrong type) is an `Err`, never a
//!   "no": the caller rejects the subscription and logs, and never confirms on an error.
//! - While the connection is known to be down the check fails at once instead of
//!   waiting for the command timeout.

use async_trait::async_trait;
use fred::interfaces::SetsInterface;
use fred::prelude::Client;

use crate::redis::{client_for, connect, Link};

/// A membership check failed (not "not a member": the answer is unknown).
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The checker's Redis connection is down: nothing was asked.
    #[error("member_of check SISMEMBER {set}: redis is not connected")]
    Unavailable {
        /// The set asked about.
        set: String,
    },
    /// Redis could not answer. The cause is also in the message, so a log line that
    /// prints only this error still says why.
    #[error("member_of check SISMEMBER {set}: {source}")]
    Backend {
        /// The set asked about.
        set: String,
        /// Why it failed.
        #[source]
        source: fred::error::Error,
    },
    /// The checker's Redis connection cannot be set up (bad URL, unreachable while
    /// required).
    #[error("member_of checker: {0}")]
    Setup(#[from] crate::redis::RedisSetupError),
}

/// Answers set-membership questions.
#[async_trait]
pub trait Membership: Send + Sync + 'static {
    /// Whether `member` is in the set `set`.
    ///
    /// # Errors
    /// When the backend cannot answer.
    async fn is_member(&self, set: &str, member: &str) -> Result<bool, MembershipError>;
}

/// [`Membership`] in Redis sets.
pub struct RedisMembership {
    client: Client,
    link: Link,
}

impl RedisMembership {
    /// Connects to `url` as the broker does: when Redis is not `required`, an
    /// unreachable Redis means a degraded start (checks fail, so subscriptions are
    /// rejected, until it comes up).
    ///
    /// # Errors
    /// When the URL is invalid, or Redis is required and cannot be reached.
    pub async fn connect(url: &str, required: bool) -> Result<RedisMembership, MembershipError> {
        let client = client_for(url, 8)
            .map_err(|e| crate::redis::RedisSetupError::InvalidUrl(e.details().to_string()))?;
        let link = Link::watch(&client);
        connect(&client, "member_of checker", required).await?;
        tracing::info!("redis member_of checker connected");
        Ok(RedisMembership { client, link })
    }
}

#[async_trait]
impl Membership for RedisMembership {
    async fn is_member(&self, set: &str, member: &str) -> Result<bool, MembershipError> {
        if !self.link.is_up(&self.client) {
            return Err(MembershipError::Unavailable {
                set: set.to_owned(),
            });
        }
        self.client
            .sismember::<bool, _, _>(set, member)
            .await
            .map_err(|source| MembershipError::Backend {
                set: set.to_owned(),
                source,
            })
    }
}
