//! A bounded cache with a TTL in front of a [`ProfileSource`], so that a reconnect
//! storm after a deploy costs the database one query per user, not one per socket.
//!
//! # Invariants
//! - At most `capacity` users are held; past it the least useful entries go (quick_cache's
//!   S3-FIFO eviction).
//! - A profile is served at most `ttl` after it was read; a miss (no such user) at most
//!   `miss_ttl`, shorter, so a user created a moment ago is not refused for long.
//! - Errors are never cached: the next lookup asks the source again.
//! - Concurrent lookups of one user share one query (the others wait for its answer).
//! - Expiry reads `tokio::time::Instant`, so tests drive it with a paused clock.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use tokio::time::Instant;

use super::profiles::{ProfileError, ProfileSource, UserProfile};

/// The longest a miss is cached, whatever the TTL.
pub const MAX_MISS_TTL: Duration = Duration::from_secs(5);

/// How much to cache, for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Users held at most.
    pub capacity: usize,
    /// How long a found profile is served.
    pub ttl: Duration,
    /// How long "no such user" is served.
    pub miss_ttl: Duration,
}

impl CacheConfig {
    /// `capacity` users for `ttl`; misses for `ttl` or [`MAX_MISS_TTL`], whichever is
    /// shorter.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        CacheConfig {
            capacity,
            ttl,
            miss_ttl: ttl.min(MAX_MISS_TTL),
        }
    }

    /// Whether anything would be cached (a zero size or TTL turns the cache off).
    pub fn enabled(&self) -> bool {
        self.capacity > 0 && !self.ttl.is_zero()
    }
}

#[derive(Clone)]
struct Entry {
    profile: Option<Arc<UserProfile>>,
    expires: Instant,
}

/// `inner`, with answers remembered for a while.
pub struct CachedProfiles<S> {
    inner: S,
    entries: Cache<i64, Entry>,
    config: CacheConfig,
}

impl<S: ProfileSource> CachedProfiles<S> {
    /// Caches `inner`'s answers as `config` says.
    pub fn new(inner: S, config: CacheConfig) -> Self {
        CachedProfiles {
            inner,
            entries: Cache::new(config.capacity.max(1)),
            config,
        }
    }

    /// Users currently held (fresh or expired).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no user is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The source behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: ProfileSource> ProfileSource for CachedProfiles<S> {
    async fn lookup(&self, id: i64) -> Result<Option<Arc<UserProfile>>, ProfileError> {
        // Fast path under the shard's read lock.
        if let Some(e) = self.entries.get(&id) {
            if e.expires > Instant::now() {
                return Ok(e.profile);
            }
        }
        let fresh = |_: &i64, e: &mut Entry| {
            if e.expires > Instant::now() {
                EntryAction::Retain(e.profile.clone())
            } else {
                EntryAction::ReplaceWithGuard
            }
        };
        let guard = match self.entries.entry_async(&id, fresh).await {
            EntryResult::Retained(profile) => return Ok(profile),
            EntryResult::Vacant(g) | EntryResult::Replaced(g, _) => g,
            // Neither happens: `fresh` never removes, and only the blocking `entry`
            // times out. Asking the source is right anyway.
            EntryResult::Removed(..) | EntryResult::Timeout => return self.inner.lookup(id).await,
        };
        // On an error the guard drops unfilled and a waiting lookup asks again.
        let found = self.inner.lookup(id).await?;
        let ttl = if found.is_some() {
            self.config.ttl
        } else {
            self.config.miss_ttl
        };
        // Err only if the guard was abandoned meanwhile: then just don't cache.
        let _ = guard.insert(Entry {
            profile: found.clone(),
            expires: Instant::now() + ttl,
        });
        Ok(found)
    }

    async fn check(&self) -> Result<(), ProfileError> {
        self.inner.check().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Users 1..=3 exist; counts queries; can be made to fail or to wait for a gate.
    #[derive(Default)]
    struct Counting {
        queries: AtomicUsize,
        failing: std::sync::atomic::AtomicBool,
        gate: Option<Arc<tokio::sync::Semaphore>>,
    }

    #[async_trait]
    impl ProfileSource for Counting {
        async fn lookup(&self, id: i64) -> Result<Option<Arc<UserProfile>>, ProfileError> {
            self.queries.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = &self.gate {
                let _ = gate.acquire().await.expect("gate never closes");
            }
            if self.failing.load(Ordering::SeqCst) {
                return Err(ProfileError::Database("down".into()));
            }
            Ok((1..=3)
                .contains(&id)
                .then(|| Arc::new(UserProfile::new(id, Some(format!("user{id}")), None))))
        }
    }

    fn cached(capacity: usize, ttl_secs: u64) -> CachedProfiles<Counting> {
        CachedProfiles::new(
            Counting::default(),
            CacheConfig::new(capacity, Duration::from_secs(ttl_secs)),
        )
    }

    fn queries(c: &CachedProfiles<Counting>) -> usize {
        c.inner().queries.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn hits_are_served_until_the_ttl() {
        let c = cached(100, 60);
        assert_eq!(c.lookup(1).await.expect("ok").expect("user").id, 1);
        assert_eq!(c.lookup(1).await.expect("ok").expect("user").id, 1);
        assert_eq!(queries(&c), 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        c.lookup(1).await.expect("ok");
        assert_eq!(queries(&c), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        c.lookup(1).await.expect("ok");
        assert_eq!(queries(&c), 2, "expired at the TTL");
        c.lookup(1).await.expect("ok");
        assert_eq!(queries(&c), 2, "and cached again");
    }

    #[tokio::test(start_paused = true)]
    async fn misses_are_cached_for_a_shorter_time() {
        let c = cached(100, 60);
        assert_eq!(c.config.miss_ttl, MAX_MISS_TTL);
        assert!(c.lookup(999).await.expect("ok").is_none());
        assert!(c.lookup(999).await.expect("ok").is_none());
        assert_eq!(queries(&c), 1);
        tokio::time::advance(MAX_MISS_TTL).await;
        assert!(c.lookup(999).await.expect("ok").is_none());
        assert_eq!(queries(&c), 2);
        assert_eq!(
            CacheConfig::new(1, Duration::from_secs(2)).miss_ttl,
            Duration::from_secs(2),
            "never longer than the TTL"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_not_cached() {
        let c = cached(100, 60);
        c.inner().failing.store(true, Ordering::SeqCst);
        assert!(matches!(c.lookup(1).await, Err(ProfileError::Database(_))));
        c.inner().failing.store(false, Ordering::SeqCst);
        assert!(c.lookup(1).await.expect("ok").is_some());
        assert_eq!(queries(&c), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_lookups_of_one_user_share_a_query() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let c = Arc::new(CachedProfiles::new(
            Counting {
                gate: Some(gate.clone()),
                ..Counting::default()
            },
            CacheConfig::new(100, Duration::from_secs(60)),
        ));
        let a = tokio::spawn({
            let c = c.clone();
            async move { c.lookup(2).await }
        });
        let b = tokio::spawn({
            let c = c.clone();
            async move { c.lookup(2).await }
        });
        // Both tasks run until they block: one on the gate, one on the first's guard.
        while c.inner().queries.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(10);
        let (a, b) = (a.await.expect("task"), b.await.expect("task"));
        assert_eq!(a.expect("ok").expect("user").id, 2);
        assert_eq!(b.expect("ok").expect("user").id, 2);
        assert_eq!(c.inner().queries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded() {
        let c = cached(16, 60);
        for id in 0..1000 {
            c.lookup(id).await.expect("ok");
        }
        assert!(c.len() <= 16, "holds {}", c.len());
    }

    #[test]
    fn zero_turns_it_off() {
        assert!(CacheConfig::new(10_000, Duration::from_secs(60)).enabled());
        assert!(!CacheConfig::new(0, Duration::from_secs(60)).enabled());
        assert!(!CacheConfig::new(10, Duration::ZERO).enabled());
    }
}
