//! Bounded, self-expiring caches: the Hawk replay (nonce) cache and the verified-token cache.
//!
//! Every entry carries a deadline (whole seconds). Entries whose deadline has passed are purged
//! on each insert, oldest deadline first, so the cache holds only what is still useful. A hard
//! cap bounds memory whatever the traffic: when full, the entries closest to their deadline are
//! evicted first, because they are the ones whose protection ends soonest anyway.

use ring::digest;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Default cap on remembered nonces per process.
///
/// Entries live until their token can no longer be accepted (`expires + expired_token_timeout`,
/// ~2 h by default), so the steady-state size is about requests/second × 7200. 100,000
/// entries cover ~14 requests/s sustained for that whole time, far above what a household's
/// browsers send, in about 5 MB (roughly 50 bytes per entry: a 16-byte key in a hash map plus
/// its slot in a deadline bucket), so memory stays flat whatever the load (a million entries
/// took ~50 MB under a benchmark). Only requests with a valid MAC are recorded, so reaching
/// the cap takes an authenticated client; past it, the entries closest to expiry go first.
pub const DEFAULT_MAX_NONCES: usize = 100_000;

/// Default cap on cached verified tokens (each ~1 KB; a client fetches a new one every ~5 min).
pub const DEFAULT_MAX_TOKENS: usize = 10_000;

/// Seconds since the epoch rounded down, saturating (NaN → 0).
pub(crate) fn floor_secs(t: f64) -> i64 {
    t.floor() as i64
}

/// Seconds since the epoch rounded up, saturating (NaN → 0).
pub(crate) fn ceil_secs(t: f64) -> i64 {
    t.ceil() as i64
}

/// A map whose entries disappear at their deadline, with a hard size cap.
#[derive(Debug)]
pub(crate) struct ExpiringMap<K, V> {
    entries: HashMap<K, (i64, V)>,
    /// Keys grouped by deadline; tokens expire on whole seconds, so buckets are few and large.
    by_deadline: BTreeMap<i64, Vec<K>>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> ExpiringMap<K, V> {
    /// An empty map holding at most `cap` entries.
    pub(crate) fn new(cap: usize) -> Self {
        ExpiringMap {
            entries: HashMap::new(),
            by_deadline: BTreeMap::new(),
            cap,
        }
    }

    /// Number of live-or-not-yet-purged entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value for `key` if its deadline is after `now`.
    pub(crate) fn get<Q>(&self, key: &Q, now: i64) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.entries.get(key) {
            Some((deadline, v)) if *deadline > now => Some(v),
            _ => None,
        }
    }

    /// Drop every entry whose deadline is `<= now`.
    pub(crate) fn purge(&mut self, now: i64) {
        while let Some(entry) = self.by_deadline.first_entry() {
            if *entry.key() > now {
                break;
            }
            for key in entry.remove() {
                self.entries.remove(&key);
            }
        }
    }

    /// Remove the one entry with the nearest deadline; false if there was nothing to remove.
    fn evict_one(&mut self) -> bool {
        let Some(mut entry) = self.by_deadline.first_entry() else {
            return false;
        };
        if let Some(key) = entry.get_mut().pop() {
            self.entries.remove(&key);
        }
        if entry.get().is_empty() {
            entry.remove();
        }
        true
    }

    /// Insert `key` until `deadline` unless it is already present and live; returns whether it
    /// was inserted. Entries already past `deadline <= now` are not stored.
    pub(crate) fn insert(&mut self, key: K, deadline: i64, value: V, now: i64) -> bool {
        self.purge(now);
        if self.entries.contains_key(&key) {
            return false;
        }
        if deadline <= now || self.cap == 0 {
            return true;
        }
        while self.entries.len() >= self.cap {
            if !self.evict_one() {
                break;
            }
        }
        self.by_deadline
            .entry(deadline)
            .or_default()
            .push(key.clone());
        self.entries.insert(key, (deadline, value));
        true
    }
}

/// Remembers `(token, nonce)` pairs until their token stops being acceptable.
#[derive(Debug)]
pub struct ReplayCache {
    seen: ExpiringMap<[u8; 16], ()>,
}

impl ReplayCache {
    /// A cache holding at most `cap` nonces.
    pub fn new(cap: usize) -> Self {
        ReplayCache {
            seen: ExpiringMap::new(cap),
        }
    }

    /// 128 bits of SHA-256 over the pair: fixed-size keys keep memory per entry small and
    /// never store the bearer token itself.
    fn key(token: &str, nonce: &str) -> [u8; 16] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&(token.len() as u64).to_be_bytes());
        ctx.update(token.as_bytes());
        ctx.update(nonce.as_bytes());
        let mut out = [0u8; 16];
        for (o, b) in out.iter_mut().zip(ctx.finish().as_ref()) {
            *o = *b;
        }
        out
    }

    /// Record the pair until `deadline` (seconds); false if it was already seen (a replay).
    pub fn check_and_record(&mut self, token: &str, nonce: &str, deadline: f64, now: f64) -> bool {
        self.seen.insert(
            Self::key(token, nonce),
            ceil_secs(deadline),
            (),
            floor_secs(now),
        )
    }

    /// Number of remembered nonces.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_detected_until_deadline() {
        let mut c = ReplayCache::new(10);
        assert!(c.check_and_record("t", "n1", 100.0, 50.0));
        assert!(!c.check_and_record("t", "n1", 100.0, 60.0));
        assert!(c.check_and_record("t", "n2", 100.0, 60.0));
        assert!(c.check_and_record("u", "n1", 100.0, 60.0));
        // Key separation: ("ab","c") and ("a","bc") differ.
        assert!(c.check_and_record("ab", "c", 100.0, 60.0));
        assert!(c.check_and_record("a", "bc", 100.0, 60.0));
        assert!(!c.check_and_record("t", "n1", 100.0, 99.9));
        // At the deadline the token is unacceptable anyway and the entry is purged.
        assert!(c.check_and_record("t", "n1", 200.0, 100.0));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn fractional_deadline_is_kept_at_least_until_it() {
        let mut c = ReplayCache::new(10);
        assert!(c.check_and_record("t", "n", 100.5, 0.0));
        assert!(!c.check_and_record("t", "n", 100.5, 100.4));
        assert!(!c.check_and_record("t", "n", 100.5, 100.9));
        assert!(c.check_and_record("t", "n", 300.0, 101.0));
    }

    #[test]
    fn cap_evicts_soonest_deadline_first() {
        let mut c = ReplayCache::new(3);
        assert!(c.check_and_record("late", "1", 500.0, 0.0));
        assert!(c.check_and_record("soon", "1", 100.0, 0.0));
        assert!(c.check_and_record("mid", "1", 300.0, 0.0));
        assert!(c.check_and_record("new", "1", 400.0, 0.0));
        assert_eq!(c.len(), 3);
        // "soon" was evicted, the others are still remembered.
        assert!(!c.check_and_record("late", "1", 500.0, 0.0));
        assert!(!c.check_and_record("mid", "1", 300.0, 0.0));
        assert!(!c.check_and_record("new", "1", 400.0, 0.0));
        assert!(c.check_and_record("soon", "1", 100.0, 0.0));
    }

    #[test]
    fn dead_on_arrival_and_zero_cap_are_not_stored() {
        let mut c = ReplayCache::new(3);
        assert!(c.check_and_record("t", "n", 10.0, 20.0));
        assert!(c.is_empty());
        let mut z = ReplayCache::new(0);
        assert!(z.check_and_record("t", "n", 100.0, 0.0));
        assert!(z.is_empty());
    }

    #[test]
    fn expiring_map_get_respects_deadline() {
        let mut m: ExpiringMap<String, u32> = ExpiringMap::new(2);
        assert!(m.insert("a".into(), 10, 1, 0));
        assert_eq!(m.get("a", 9), Some(&1));
        assert_eq!(m.get("a", 10), None);
        assert!(!m.insert("a".into(), 10, 2, 5));
        assert_eq!(m.get("a", 5), Some(&1));
        m.purge(10);
        assert_eq!(m.len(), 0);
        assert_eq!(floor_secs(f64::NAN), 0);
        assert_eq!(ceil_secs(f64::INFINITY), i64::MAX);
    }
}
