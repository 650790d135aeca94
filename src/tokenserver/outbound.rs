//! Limits on what token verification may cost the rest of the server.
//!
//! A remote verification (`/v1/verify`, a JWKS fetch, endpoint discovery, a
//! BrowserID verifier) blocks the FastCGI connection thread that asked for it,
//! for up to `[oauth] timeout`. Connection threads are shared with storage, so
//! a slow (not down) accounts server used to take all of them and other
//! users' storage requests waited in the listen backlog. The [`Gate`] bounds
//! how many threads may wait on the accounts server at once; a request that
//! finds it full is answered 503 + Retry-After at once. The [`FailureCache`]
//! remembers refused or failed verifications for a few seconds, so a client
//! retrying in a loop neither takes a slot nor reaches the accounts server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::digest::{digest, SHA256};

/// How long a failed verification is remembered: long enough to absorb a
/// client's retry loop, short enough that a recovered accounts server (or a
/// token that becomes valid) is noticed quickly. Well-behaved clients wait
/// for Retry-After (longer) anyway.
pub const FAILURE_TTL: Duration = Duration::from_secs(5);
/// At most this many remembered failures (a hash, a time and a short reason:
/// ~2 MB in all at worst); when full, new failures go unremembered until old
/// ones expire, so a flood of junk tokens cannot grow memory.
const FAILURE_CAPACITY: usize = 10_000;

/// A bound on concurrent remote verifications.
#[derive(Debug)]
pub struct Gate {
    in_flight: AtomicUsize,
    max: usize,
}

/// One slot of a [`Gate`], given back on drop.
#[derive(Debug)]
pub struct Permit<'a>(&'a Gate);

impl Gate {
    /// A gate letting `max` (at least 1) callers through at once.
    pub fn new(max: usize) -> Gate {
        Gate {
            in_flight: AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    /// The bound for a server with `workers` database sessions: half of them,
    /// at least one. Connection threads number at least `workers`, so storage
    /// keeps at least half the workers' threads whatever the accounts server
    /// does.
    pub fn for_workers(workers: usize) -> Gate {
        Gate::new(workers / 2)
    }

    /// How many callers may hold a permit at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A permit if a slot is free; never waits.
    pub fn try_enter(&self) -> Option<Permit<'_>> {
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            if current >= self.max {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Permit(self)),
                Err(now) => current = now,
            }
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateFull;

/// A request's permit, taken only when the request is about to wait on the
/// network (or on another request's fetch), and at most once: a request that
/// needs keys and then discovery still counts as one.
#[derive(Debug)]
pub struct Turn<'a> {
    gate: &'a Gate,
    permit: Option<Permit<'a>>,
}

impl<'a> Turn<'a> {
    pub fn new(gate: &'a Gate) -> Turn<'a> {
        Turn { gate, permit: None }
    }

    /// Holds a permit from here on, or says the gate is full.
    pub fn claim(&mut self) -> Result<(), GateFull> {
        if self.permit.is_none() {
            self.permit = Some(self.gate.try_enter().ok_or(GateFull)?);
        }
        Ok(())
    }
}

/// Failed verifications by token hash, each for [`FAILURE_TTL`]. Tokens are
/// never kept: only their SHA-256.
#[derive(Debug)]
pub struct FailureCache<E> {
    entries: Mutex<HashMap<[u8; 32], (Instant, E)>>,
    ttl: Duration,
}

impl<E: Clone> FailureCache<E> {
    /// An empty cache keeping failures for `ttl`.
    pub fn new(ttl: Duration) -> FailureCache<E> {
        FailureCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn key(token: &str) -> [u8; 32] {
        let mut key = [0u8; 32];
        key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        key
    }

    /// The failure remembered for `token`, if still fresh.
    pub fn get(&self, token: &str) -> Option<E> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&Self::key(token))
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, e)| e.clone())
    }

    /// Remembers that `token` failed with `error`.
    pub fn put(&self, token: &str, error: E) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= FAILURE_CAPACITY {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        if entries.len() < FAILURE_CAPACITY {
            entries.insert(Self::key(token), (Instant::now(), error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_bounds_and_releases() {
        let gate = Gate::new(2);
        let a = gate.try_enter().expect("first");
        let _b = gate.try_enter().expect("second");
        assert!(gate.try_enter().is_none());
        drop(a);
        assert!(gate.try_enter().is_some());
        assert_eq!(Gate::for_workers(1).max(), 1);
        assert_eq!(Gate::for_workers(4).max(), 2);
        assert_eq!(Gate::new(0).max(), 1);
    }

    #[test]
    fn a_turn_takes_one_permit_at_most() {
        let gate = Gate::new(1);
        let mut turn = Turn::new(&gate);
        assert_eq!(turn.claim(), Ok(()));
        assert_eq!(turn.claim(), Ok(()));
        assert_eq!(Turn::new(&gate).claim(), Err(GateFull));
        drop(turn);
        assert_eq!(Turn::new(&gate).claim(), Ok(()));
    }

    #[test]
    fn failures_expire_and_memory_is_bounded() {
        let cache = FailureCache::new(Duration::from_millis(50));
        cache.put("token-a", 7);
        assert_eq!(cache.get("token-a"), Some(7));
        assert_eq!(cache.get("token-b"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("token-a"), None);

        let cache = FailureCache::new(Duration::from_secs(60));
        for i in 0..FAILURE_CAPACITY + 10 {
            cache.put(&format!("t{i}"), i);
        }
        assert_eq!(cache.entries.lock().unwrap().len(), FAILURE_CAPACITY);
        assert_eq!(cache.get("t0"), Some(0));
        assert_eq!(cache.get(&format!("t{FAILURE_CAPACITY}")), None);
    }
}
