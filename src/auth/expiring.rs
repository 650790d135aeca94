//! The verified-token cache's map: entries disappear at their deadline, and a hard cap evicts
//! the entries nearest their deadline first. Forgetting a cached token only costs one more HMAC
//! and HKDF, so evicting is fine here (the replay guard, which must never forget, refuses
//! instead: see `replay.rs`).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

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
    #[cfg(test)]
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn expiring_map_cap_evicts_soonest_deadline_first() {
        let mut m: ExpiringMap<&str, ()> = ExpiringMap::new(2);
        assert!(m.insert("late", 500, (), 0));
        assert!(m.insert("soon", 100, (), 0));
        assert!(m.insert("new", 400, (), 0));
        assert_eq!(m.len(), 2);
        assert!(m.get("soon", 0).is_none());
        assert!(m.get("late", 0).is_some());
    }
}
