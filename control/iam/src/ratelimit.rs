//! Login attempt limiting, so that passwords cannot be guessed at speed.
//!
//! Every attempt takes one token from two token buckets:
//!
//! - one per (principal, source address), small: one client guessing one
//!   principal's password is slowed to a crawl, without locking the real
//!   owner out from elsewhere;
//! - one per principal over all sources, larger: a botnet spreading guesses
//!   over many addresses is still bounded per principal.
//!
//! Buckets refill by elapsed time, one token per refill period, up to the
//! burst. A bucket that is full again carries no state and may be forgotten.
//!
//! The limiter is plain data owned by one thread (the control thread that
//! serves logins); it takes the time as an argument so tests need no sleep.
//! Principals should arrive validated (tenant and name checked with
//! [`crate::model::check_name`]), which bounds the size of every key.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Limits of a [`LoginLimiter`].
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Attempts one source may make for one principal in a burst.
    pub per_source_burst: u32,
    /// One more attempt per (principal, source) every this many ms (0 counts
    /// as 1).
    pub per_source_refill_ms: u64,
    /// Attempts on one principal, over all sources, in a burst.
    pub per_principal_burst: u32,
    /// One more attempt per principal every this many ms (0 counts as 1).
    pub per_principal_refill_ms: u64,
    /// Buckets kept in each of the two maps, so a flood of made-up principals
    /// or addresses cannot grow memory without bound.
    pub entries_max: usize,
}

impl Default for LoginLimits {
    /// 5 attempts, then one every 6 s, per (principal, source); 20 attempts,
    /// then one per second, per principal; 65,536 buckets per map.
    fn default() -> Self {
        LoginLimits {
            per_source_burst: 5,
            per_source_refill_ms: 6_000,
            per_principal_burst: 20,
            per_principal_refill_ms: 1_000,
            entries_max: 65_536,
        }
    }
}

/// A refused login attempt: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds to wait, rounded up (for an HTTP `Retry-After` header or
    /// a message), so that retrying on time never comes too early.
    pub fn seconds_rounded_up(self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "too many login attempts; retry in {} s",
            self.seconds_rounded_up()
        )
    }
}

impl std::error::Error for RetryAfter {}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// When `tokens` was last exact: refill counts whole periods from here.
    /// For a full bucket it is simply the last time it was looked at, so time
    /// spent full does not turn into extra tokens.
    updated: Instant,
}

/// Burst and refill period of one kind of bucket.
#[derive(Debug, Clone, Copy)]
struct BucketRule {
    burst: u32,
    refill: Duration,
}

impl BucketRule {
    fn new(burst: u32, refill_ms: u64) -> Self {
        BucketRule {
            burst,
            refill: Duration::from_millis(refill_ms.max(1)),
        }
    }

    fn full(self, now: Instant) -> Bucket {
        Bucket {
            tokens: self.burst,
            updated: now,
        }
    }

    /// `bucket` as it stands at `now`, with the whole periods since its last
    /// update turned into tokens (the partial period is kept).
    fn refilled(self, bucket: Bucket, now: Instant) -> Bucket {
        if bucket.tokens >= self.burst {
            return self.full(now);
        }
        let elapsed = now.saturating_duration_since(bucket.updated);
        let earned = elapsed.as_nanos() / self.refill.as_nanos();
        let missing = self.burst - bucket.tokens;
        if earned >= u128::from(missing) {
            return self.full(now);
        }
        // `earned < missing <= u32::MAX`, so neither conversion truncates.
        let earned = earned as u32;
        Bucket {
            tokens: bucket.tokens + earned,
            updated: bucket.updated + self.refill * earned,
        }
    }

    /// Time from `now` until a refilled, not full `bucket` gains a token.
    fn until_next_token(self, bucket: Bucket, now: Instant) -> Duration {
        bucket
            .updated
            .checked_add(self.refill)
            .map_or(self.refill, |next| next.saturating_duration_since(now))
    }

    /// When a refilled `bucket` will be full again, if that is representable.
    fn full_at(self, bucket: Bucket) -> Option<Instant> {
        let missing = self.burst.saturating_sub(bucket.tokens);
        bucket
            .updated
            .checked_add(self.refill.checked_mul(missing)?)
    }
}

/// One map of buckets, bounded to `entries_max`.
#[derive(Debug, Clone)]
struct BoundedBuckets<K> {
    buckets: HashMap<K, Bucket>,
    rule: BucketRule,
    entries_max: usize,
    /// No bucket can be full before this instant, so pruning before it would
    /// scan the whole map for nothing. `None` when unknown.
    prune_not_before: Option<Instant>,
}

impl<K: std::hash::Hash + Eq> BoundedBuckets<K> {
    fn new(rule: BucketRule, entries_max: usize) -> Self {
        BoundedBuckets {
            buckets: HashMap::new(),
            rule,
            entries_max,
            prune_not_before: None,
        }
    }

    /// Makes room for one more bucket, forgetting buckets that are full again
    /// (they hold nothing a fresh bucket would not). False if every bucket
    /// still holds state.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.buckets.len() < self.entries_max {
            return true;
        }
        if self
            .prune_not_before
            .is_some_and(|not_before| now < not_before)
        {
            return false;
        }
        let rule = self.rule;
        let mut soonest_full: Option<Instant> = None;
        let mut bound_known = true;
        self.buckets.retain(|_, bucket| {
            let current = rule.refilled(*bucket, now);
            if current.tokens >= rule.burst {
                return false;
            }
            *bucket = current;
            match rule.full_at(current) {
                Some(at) => soonest_full = Some(soonest_full.map_or(at, |soonest| soonest.min(at))),
                None => bound_known = false,
            }
            true
        });
        self.prune_not_before = if bound_known { soonest_full } else { None };
        self.buckets.len() < self.entries_max
    }

    /// Records a bucket that was not in the map (room was made for it).
    fn insert_new(&mut self, key: K, bucket: Bucket) {
        // The new bucket may be full again sooner than any bucket seen by the
        // last pruning, so the pruning bound must not pass its refill time.
        let full_at = self.rule.full_at(bucket);
        self.prune_not_before = match (self.prune_not_before, full_at) {
            (Some(not_before), Some(at)) => Some(not_before.min(at)),
            _ => None,
        };
        self.buckets.insert(key, bucket);
    }
}

/// The key of a per-source bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SourceKey {
    principal: String,
    source: IpAddr,
}

/// Limits login attempts per (principal, source) and per principal.
#[derive(Debug, Clone)]
pub struct LoginLimiter {
    sources: BoundedBuckets<SourceKey>,
    principals: BoundedBuckets<String>,
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        LoginLimiter {
            sources: BoundedBuckets::new(
                BucketRule::new(limits.per_source_burst, limits.per_source_refill_ms),
                limits.entries_max,
            ),
            principals: BoundedBuckets::new(
                BucketRule::new(limits.per_principal_burst, limits.per_principal_refill_ms),
                limits.entries_max,
            ),
        }
    }

    /// Counts a login attempt on `principal` from `source` at `now`, before
    /// the secret is checked (so refused attempts cost no hashing).
    ///
    /// Takes a token from both the (principal, source) and the principal
    /// bucket, or, when either is empty, takes nothing and returns the time
    /// until both hold a token again.
    ///
    /// When a new bucket is needed and its map is full of buckets that still
    /// hold state, the attempt is refused with one refill period of that
    /// map. Failing closed is deliberate: forgetting a partly drained bucket
    /// to make room would hand an attacker who floods the map a fresh burst
    /// of guesses, whereas refusing only delays logins while the map is
    /// flooded and clears up as buckets refill.
    pub fn attempt(
        &mut self,
        principal: &str,
        source: IpAddr,
        now: Instant,
    ) -> Result<(), RetryAfter> {
        // A login runs argon2 for tens of ms, so one small key allocation
        // here costs nothing that matters.
        let source_key = SourceKey {
            principal: principal.to_owned(),
            source,
        };
        let source_rule = self.sources.rule;
        let principal_rule = self.principals.rule;
        let source_known = self.sources.buckets.get(&source_key).copied();
        let principal_known = self.principals.buckets.get(principal).copied();
        let source_bucket = source_known.map_or(source_rule.full(now), |bucket| {
            source_rule.refilled(bucket, now)
        });
        let principal_bucket = principal_known.map_or(principal_rule.full(now), |bucket| {
            principal_rule.refilled(bucket, now)
        });

        let waits = [
            (source_bucket.tokens == 0).then(|| source_rule.until_next_token(source_bucket, now)),
            (principal_bucket.tokens == 0)
                .then(|| principal_rule.until_next_token(principal_bucket, now)),
        ];
        if let Some(wait) = waits.into_iter().flatten().max() {
            return Err(RetryAfter(wait));
        }

        // Make room in both maps before taking anything, so a refusal leaves
        // both buckets untouched.
        if source_known.is_none() && !self.sources.make_room(now) {
            return Err(RetryAfter(source_rule.refill));
        }
        if principal_known.is_none() && !self.principals.make_room(now) {
            return Err(RetryAfter(principal_rule.refill));
        }

        let source_bucket = Bucket {
            tokens: source_bucket.tokens - 1,
            ..source_bucket
        };
        let principal_bucket = Bucket {
            tokens: principal_bucket.tokens - 1,
            ..principal_bucket
        };
        match self.sources.buckets.get_mut(&source_key) {
            Some(bucket) => *bucket = source_bucket,
            None => self.sources.insert_new(source_key, source_bucket),
        }
        match self.principals.buckets.get_mut(principal) {
            Some(bucket) => *bucket = principal_bucket,
            None => self
                .principals
                .insert_new(principal.to_owned(), principal_bucket),
        }
        Ok(())
    }

    /// Gives back the token a successful login took: only failed attempts
    /// count against the limits, so people who log in often are never
    /// throttled, while guessing still is (each guess costs a token before
    /// its secret is checked).
    pub fn refund(&mut self, principal: &str, source: IpAddr, now: Instant) {
        let source_key = SourceKey {
            principal: principal.to_owned(),
            source,
        };
        let source_rule = self.sources.rule;
        if let Some(bucket) = self.sources.buckets.get_mut(&source_key) {
            let refilled = source_rule.refilled(*bucket, now);
            *bucket = Bucket {
                tokens: (refilled.tokens + 1).min(source_rule.burst),
                ..refilled
            };
        }
        let principal_rule = self.principals.rule;
        if let Some(bucket) = self.principals.buckets.get_mut(principal) {
            let refilled = principal_rule.refilled(*bucket, now);
            *bucket = Bucket {
                tokens: (refilled.tokens + 1).min(principal_rule.burst),
                ..refilled
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    #[test]
    fn successful_logins_are_refunded() {
        let mut limiter = LoginLimiter::new(LoginLimits::default());
        let now = Instant::now();
        let source = address(1);
        for _ in 0..50 {
            limiter.attempt("acme/alice", source, now).unwrap();
            limiter.refund("acme/alice", source, now);
        }
        for _ in 0..LoginLimits::default().per_source_burst {
            limiter.attempt("acme/alice", source, now).unwrap();
        }
        assert!(limiter.attempt("acme/alice", source, now).is_err());
    }

    fn address(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn milliseconds(count: u64) -> Duration {
        Duration::from_millis(count)
    }

    #[test]
    fn burst_then_refusal() {
        let mut limiter = LoginLimiter::new(LoginLimits::default());
        let now = Instant::now();
        for attempt in 0..5 {
            assert_eq!(
                limiter.attempt("acme/alice", address(1), now),
                Ok(()),
                "{attempt}"
            );
        }
        let refused = limiter
            .attempt("acme/alice", address(1), now)
            .expect_err("refused");
        assert_eq!(refused, RetryAfter(milliseconds(6_000)));
        assert_eq!(refused.to_string(), "too many login attempts; retry in 6 s");
        // A refusal takes nothing, so it does not push the next token back.
        let later = now + milliseconds(2_500);
        let refused = limiter
            .attempt("acme/alice", address(1), later)
            .expect_err("refused");
        assert_eq!(refused, RetryAfter(milliseconds(3_500)));
        assert_eq!(refused.to_string(), "too many login attempts; retry in 4 s");
    }

    #[test]
    fn refill_after_time() {
        let mut limiter = LoginLimiter::new(LoginLimits::default());
        let start = Instant::now();
        for _ in 0..5 {
            limiter
                .attempt("acme/alice", address(1), start)
                .expect("burst");
        }
        let almost = start + milliseconds(5_999);
        assert!(limiter.attempt("acme/alice", address(1), almost).is_err());
        let one_period = start + milliseconds(6_000);
        assert_eq!(
            limiter.attempt("acme/alice", address(1), one_period),
            Ok(())
        );
        assert!(limiter
            .attempt("acme/alice", address(1), one_period)
            .is_err());
        // Two and a half periods later: two tokens, the half period kept.
        let later = one_period + milliseconds(15_000);
        assert_eq!(limiter.attempt("acme/alice", address(1), later), Ok(()));
        assert_eq!(limiter.attempt("acme/alice", address(1), later), Ok(()));
        let refused = limiter
            .attempt("acme/alice", address(1), later)
            .expect_err("empty");
        assert_eq!(refused, RetryAfter(milliseconds(3_000)));
        // Long idle: back to a full burst, never more.
        let idle = later + Duration::from_secs(3_600);
        for _ in 0..5 {
            assert_eq!(limiter.attempt("acme/alice", address(1), idle), Ok(()));
        }
        assert!(limiter.attempt("acme/alice", address(1), idle).is_err());
    }

    #[test]
    fn per_principal_limit_across_sources() {
        let mut limiter = LoginLimiter::new(LoginLimits::default());
        let now = Instant::now();
        for source in 0..20 {
            assert_eq!(limiter.attempt("acme/alice", address(source), now), Ok(()));
        }
        let refused = limiter
            .attempt("acme/alice", address(200), now)
            .expect_err("refused");
        assert_eq!(refused, RetryAfter(milliseconds(1_000)));
        // Other principals are not affected.
        assert_eq!(limiter.attempt("acme/bob", address(200), now), Ok(()));
        // The principal refills one per second, for any source.
        let later = now + milliseconds(1_000);
        assert_eq!(limiter.attempt("acme/alice", address(201), later), Ok(()));
        assert!(limiter.attempt("acme/alice", address(202), later).is_err());
    }

    #[test]
    fn refusal_waits_for_both_buckets() {
        let limits = LoginLimits {
            per_source_burst: 1,
            per_source_refill_ms: 10_000,
            per_principal_burst: 1,
            per_principal_refill_ms: 30_000,
            ..LoginLimits::default()
        };
        let mut limiter = LoginLimiter::new(limits);
        let now = Instant::now();
        limiter
            .attempt("acme/alice", address(1), now)
            .expect("first");
        let refused = limiter
            .attempt("acme/alice", address(1), now)
            .expect_err("refused");
        assert_eq!(refused, RetryAfter(milliseconds(30_000)));
        assert_eq!(refused.seconds_rounded_up(), 30);
    }

    #[test]
    fn separate_sources_are_independent() {
        let mut limiter = LoginLimiter::new(LoginLimits::default());
        let now = Instant::now();
        for _ in 0..5 {
            limiter
                .attempt("acme/alice", address(1), now)
                .expect("burst");
        }
        assert!(limiter.attempt("acme/alice", address(1), now).is_err());
        let v6: IpAddr = "2001:db8::1".parse().expect("address");
        for source in [address(2), v6] {
            for _ in 0..5 {
                assert_eq!(limiter.attempt("acme/alice", source, now), Ok(()));
            }
            assert!(limiter.attempt("acme/alice", source, now).is_err());
        }
        // The same source on another principal has its own bucket.
        assert_eq!(limiter.attempt("acme/bob", address(1), now), Ok(()));
    }

    #[test]
    fn entries_are_bounded() {
        let limits = LoginLimits {
            entries_max: 2,
            ..LoginLimits::default()
        };
        let mut limiter = LoginLimiter::new(limits);
        let now = Instant::now();
        limiter
            .attempt("acme/alice", address(1), now)
            .expect("first");
        limiter
            .attempt("acme/bob", address(1), now)
            .expect("second");
        // Both maps are full of buckets that still hold state: fail closed
        // with one period of the map that is out of room.
        let refused = limiter
            .attempt("acme/carol", address(1), now)
            .expect_err("full");
        assert_eq!(refused, RetryAfter(milliseconds(6_000)));
        // Known buckets keep working while the maps are full.
        assert_eq!(limiter.attempt("acme/alice", address(1), now), Ok(()));
        assert!(limiter.sources.buckets.len() <= 2);
        assert!(limiter.principals.buckets.len() <= 2);

        // Once bob's source bucket is full again it is forgotten to make
        // room; alice's (two tokens taken) still holds state and stays. Both
        // principal buckets refill within the 6 s and are forgotten too.
        let later = now + milliseconds(6_000);
        assert_eq!(limiter.attempt("acme/carol", address(1), later), Ok(()));
        let source_principals = |limiter: &LoginLimiter| {
            let mut names: Vec<String> = limiter
                .sources
                .buckets
                .keys()
                .map(|key| key.principal.clone())
                .collect();
            names.sort();
            names
        };
        assert_eq!(source_principals(&limiter), ["acme/alice", "acme/carol"]);
        assert_eq!(limiter.principals.buckets.len(), 1);
        assert!(limiter.principals.buckets.contains_key("acme/carol"));
    }

    #[test]
    fn entries_bound_on_principals_refuses_with_principal_period() {
        let limits = LoginLimits {
            per_source_burst: 5,
            per_source_refill_ms: 1_000,
            per_principal_burst: 20,
            per_principal_refill_ms: 60_000,
            entries_max: 1,
        };
        let mut limiter = LoginLimiter::new(limits);
        let now = Instant::now();
        limiter
            .attempt("acme/alice", address(1), now)
            .expect("first");
        // A second source while alice's source bucket holds state.
        let refused = limiter
            .attempt("acme/alice", address(2), now)
            .expect_err("full");
        assert_eq!(refused, RetryAfter(milliseconds(1_000)));
        // A second later alice's source bucket is full and makes room, but
        // her principal bucket still holds state: refused with the
        // per-principal period.
        let later = now + milliseconds(1_000);
        let refused = limiter
            .attempt("acme/bob", address(1), later)
            .expect_err("full");
        assert_eq!(refused, RetryAfter(milliseconds(60_000)));
        let later = now + milliseconds(60_000);
        assert_eq!(limiter.attempt("acme/bob", address(1), later), Ok(()));
        assert!(limiter.principals.buckets.contains_key("acme/bob"));
    }

    proptest! {
        /// For one (principal, source): never more than the burst plus one
        /// attempt per elapsed period, and after a refusal, retrying when
        /// told to succeeds.
        #[test]
        fn bucket_bound_and_retry(steps_ms in proptest::collection::vec(0u64..3_000, 1..200)) {
            let limits = LoginLimits::default();
            let mut limiter = LoginLimiter::new(limits);
            let start = Instant::now();
            let mut now = start;
            let mut allowed = 0u64;
            for step_ms in steps_ms {
                now += milliseconds(step_ms);
                match limiter.attempt("acme/alice", address(1), now) {
                    Ok(()) => allowed += 1,
                    Err(RetryAfter(wait)) => {
                        prop_assert!(wait > Duration::ZERO);
                        prop_assert!(wait <= milliseconds(limits.per_source_refill_ms));
                        let mut probe = limiter.clone();
                        prop_assert_eq!(probe.attempt("acme/alice", address(1), now + wait), Ok(()));
                    }
                }
                let elapsed_ms = u64::try_from((now - start).as_millis()).unwrap_or(u64::MAX);
                let bound = u64::from(limits.per_source_burst) + elapsed_ms / limits.per_source_refill_ms;
                prop_assert!(allowed <= bound, "{} allowed, bound {}", allowed, bound);
            }
        }
    }
}
