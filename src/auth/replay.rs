//! The Hawk replay guard ([`ReplayGuard`]).
//!
//! Forgetting a nonce would make a captured request replayable, so the guard **never** forgets
//! a nonce while it could still be accepted: when an account or the whole process reaches its
//! bound, new requests are refused (503 + Retry-After) instead.
//!
//! ## Why nonces need only be kept for minutes
//!
//! The Python server accepted any Hawk timestamp, so clients with wrong clocks synced; we must
//! keep them working. Instead of a fixed window around our clock, the guard learns each token's
//! clock offset (`server now − ts`) from the first request that uses it, and then accepts a
//! request of that token only if its `ts`, shifted by that offset, is within [`WINDOW_SECS`]
//! of our clock. A replay older than the window is stale; one inside it is caught by the nonce,
//! which is kept exactly until its `ts` leaves the window. A client whose clock jumps mid-token
//! gets a 401 and fetches a new token, which learns the new offset.

use crate::uid::Uid;
use ring::digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

/// How far (seconds) a request's offset-corrected timestamp may be from our clock, and so how
/// long a nonce is kept (at most twice this). Hawk's customary window.
pub const WINDOW_SECS: i64 = 60;

/// Bounds of the replay guard. Every bound refuses new requests when reached; none evicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// Nonces remembered by the process. Nonces live at most `2 × WINDOW_SECS`, so this is
    /// sized above what the server can answer in that time (a few thousand requests/s): honest
    /// load cannot reach it.
    pub max_nonces: usize,
    /// Nonces one account (uid) may hold at once: a flooding account is refused on its own
    /// long before the process bound.
    pub max_nonces_per_uid: usize,
    /// Tokens whose clock offset is remembered (each until the token's last use).
    pub max_tokens: usize,
    /// Tokens per account: a few per device (a new one every `token_duration`, each kept
    /// through `expired_token_timeout`).
    pub max_tokens_per_uid: usize,
}

/// Nonces one process remembers at most by default (10–21 bytes each: an 8-byte key in a hash
/// table of its second).
pub const DEFAULT_MAX_NONCES: usize = 1_000_000;

impl ReplayLimits {
    /// The default bounds, with `max_nonces` for the process and a sixteenth of it per account.
    pub fn with_max_nonces(max_nonces: usize) -> Self {
        ReplayLimits {
            max_nonces,
            max_nonces_per_uid: (max_nonces / 16).max(1),
            max_tokens: 100_000,
            max_tokens_per_uid: 1_000,
        }
    }
}

impl Default for ReplayLimits {
    fn default() -> Self {
        Self::with_max_nonces(DEFAULT_MAX_NONCES)
    }
}

/// One signed request as the replay guard sees it.
#[derive(Debug, Clone, Copy)]
pub struct ReplayRequest<'a> {
    /// The token's key (`token_key`).
    pub token: &'a [u8; 16],
    pub uid: Uid,
    /// The Hawk `ts`, on the client's clock.
    pub ts: i64,
    pub nonce: &'a str,
    /// When the token stops being acceptable at all (its expiry plus the grace period); its
    /// clock offset is kept until then.
    pub token_deadline: i64,
}

impl<'a> ReplayRequest<'a> {
    #[cfg(test)]
    pub(crate) fn new(
        token: &'a [u8; 16],
        uid: i64,
        ts: i64,
        nonce: &'a str,
        token_deadline: i64,
    ) -> Self {
        ReplayRequest {
            token,
            uid: Uid::new(uid).expect("a test uid is positive"),
            ts,
            nonce,
            token_deadline,
        }
    }
}

/// A nonce `ReplayGuard::check` accepted: its key, and when it may be forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The `(token, nonce)` key ([`nonce_key`]).
    pub key: [u8; 16],
    /// The second from which the same `ts` is stale, so the nonce no longer matters.
    pub deadline: i64,
}

/// Where the replay state lives: in the process ([`MemoryReplay`]) when one process serves
/// every request, or in a store shared by every process (under mod_fcgid) so that a request
/// accepted by one process is a replay for all. Both apply the rules of `ReplayGuard`.
pub trait ReplayStore: Send + Sync {
    /// Accepts the request at `now` (seconds) or says why not; see `ReplayGuard::check`.
    fn check(&self, req: &ReplayRequest<'_>, now: i64) -> Result<(), ReplayError>;
    /// Number of remembered nonces (for tests and stats).
    fn nonces(&self) -> usize;
}

/// The replay guard of a process that serves every request itself.
#[derive(Debug)]
pub struct MemoryReplay(Mutex<ReplayGuard>);

impl MemoryReplay {
    /// An empty guard with these bounds.
    pub fn new(limits: ReplayLimits) -> Self {
        MemoryReplay(Mutex::new(ReplayGuard::new(limits)))
    }

    fn lock(&self) -> MutexGuard<'_, ReplayGuard> {
        // The guard's maps stay consistent if a holder panicked: every update is one insert.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ReplayStore for MemoryReplay {
    fn check(&self, req: &ReplayRequest<'_>, now: i64) -> Result<(), ReplayError> {
        self.lock().check(req, now).map(|_| ())
    }

    fn nonces(&self) -> usize {
        self.lock().nonces()
    }
}

/// Why the replay guard refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// The timestamp, corrected by the token's offset, is outside the window.
    Stale,
    /// The `(token, nonce)` pair was already accepted.
    Replayed,
    /// This account holds as many nonces or tokens as it may; retry after this many seconds.
    AccountBusy(u64),
    /// The process holds as many as it may; retry after this many seconds.
    Full(u64),
    /// The shared store could not be read or written (logged where it happened); refused,
    /// since accepting could accept a replay.
    Unavailable,
}

/// A token's learned clock offset.
#[derive(Debug, Clone, Copy)]
struct TokenClock {
    offset: i64,
    uid: Uid,
}

#[derive(Debug, Default, Clone, Copy)]
struct AccountUse {
    nonces: usize,
    tokens: usize,
}

/// Hashes a key that is already a slice of SHA-256 output by taking it as is: hashing it
/// again (SipHash) would cost time and add nothing.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for our keys; anything else still hashes evenly.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The nonces whose timestamps leave the window in the same second.
///
/// A request's bucket is fixed by its `ts` and its token's learned offset, both of which a
/// replay repeats (the `ts` is under the MAC, the offset is the token's for its whole life),
/// so a replay is always looked for in the one bucket where its original went. A whole bucket
/// is dropped when its second comes: nothing is kept at a table's peak size afterwards.
#[derive(Debug, Default)]
struct NonceBucket {
    /// The first 8 bytes of each nonce key: 8 bytes instead of 16 per nonce. Two different
    /// nonces of one second collide with odds ~n/2⁶⁴ (n in the thousands); a collision can only
    /// refuse a fresh request (the client retries with a new nonce), never accept a replay.
    keys: HashSet<u64, BuildHasherDefault<KeyHasher>>,
    /// Nonces per account in this bucket, released when the bucket goes.
    per_uid: HashMap<Uid, usize>,
}

/// Replay protection for one process: learned token clocks and the nonces of the window.
#[derive(Debug)]
pub struct ReplayGuard {
    limits: ReplayLimits,
    clocks: HashMap<[u8; 16], TokenClock>,
    clock_deadlines: BTreeMap<i64, Vec<[u8; 16]>>,
    /// Nonce buckets by the second from which their requests are stale.
    nonces: BTreeMap<i64, NonceBucket>,
    /// Nonces remembered in all buckets.
    nonce_count: usize,
    accounts: HashMap<Uid, AccountUse>,
}

/// 128 bits of SHA-256 over a token: fixed-size keys keep entries small and never store the
/// bearer token itself.
pub fn token_key(token: &str) -> [u8; 16] {
    truncate(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// The key of a `(token, nonce)` pair.
pub fn nonce_key(token: &[u8; 16], nonce: &str) -> [u8; 16] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(token);
    ctx.update(nonce.as_bytes());
    truncate(ctx.finish())
}

/// The in-memory form of a nonce key: its first 8 bytes.
fn short_key(key: &[u8; 16]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_le_bytes(b)
}

fn truncate(d: digest::Digest) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    out
}

impl ReplayGuard {
    /// An empty guard with these bounds.
    pub fn new(limits: ReplayLimits) -> Self {
        ReplayGuard {
            limits,
            clocks: HashMap::new(),
            clock_deadlines: BTreeMap::new(),
            nonces: BTreeMap::new(),
            nonce_count: 0,
            accounts: HashMap::new(),
        }
    }

    /// Accepts `req` at `now` (seconds), or says why not.
    pub fn check(&mut self, req: &ReplayRequest<'_>, now: i64) -> Result<Accepted, ReplayError> {
        let ReplayRequest {
            token,
            uid,
            ts,
            nonce,
            ..
        } = *req;
        self.purge(now);
        let offset = match self.clocks.get(token) {
            Some(clock) => clock.offset,
            None => self.learn(req, now.saturating_sub(ts), now)?,
        };
        let corrected = ts.saturating_add(offset);
        if corrected.abs_diff(now) > WINDOW_SECS as u64 {
            return Err(ReplayError::Stale);
        }
        let key = nonce_key(token, nonce);
        let short = short_key(&key);
        // At `corrected + WINDOW_SECS + 1` the same ts is stale, so the nonce can go.
        let deadline = corrected + WINDOW_SECS + 1;
        if self
            .nonces
            .get(&deadline)
            .is_some_and(|b| b.keys.contains(&short))
        {
            return Err(ReplayError::Replayed);
        }
        if self.nonce_count >= self.limits.max_nonces {
            return Err(ReplayError::Full(WINDOW_SECS as u64));
        }
        let account = self.accounts.entry(uid).or_default();
        if account.nonces >= self.limits.max_nonces_per_uid {
            return Err(ReplayError::AccountBusy(WINDOW_SECS as u64));
        }
        account.nonces += 1;
        let bucket = self.nonces.entry(deadline).or_default();
        bucket.keys.insert(short);
        *bucket.per_uid.entry(uid).or_default() += 1;
        self.nonce_count += 1;
        Ok(Accepted { key, deadline })
    }

    /// The clock offset learned for `token`, if any.
    pub fn offset(&self, token: &[u8; 16]) -> Option<i64> {
        self.clocks.get(token).map(|c| c.offset)
    }

    /// Takes `offset` as the clock offset of `req`'s token (learned elsewhere: another
    /// process) unless one is known already; refused like a first-seen token when the account
    /// or process is full.
    pub fn adopt(
        &mut self,
        req: &ReplayRequest<'_>,
        offset: i64,
        now: i64,
    ) -> Result<(), ReplayError> {
        self.purge(now);
        if !self.clocks.contains_key(req.token) {
            self.learn(req, offset, now)?;
        }
        Ok(())
    }

    /// Remembers a first-seen token's offset; refused when the account or process is full.
    fn learn(
        &mut self,
        req: &ReplayRequest<'_>,
        offset: i64,
        now: i64,
    ) -> Result<i64, ReplayError> {
        if req.token_deadline <= now {
            // Unacceptable from now on anyway; nothing to remember.
            return Ok(offset);
        }
        // Retry when some of the held tokens have expired; they live for hours, so say minutes.
        let retry = 5 * WINDOW_SECS as u64;
        if self.clocks.len() >= self.limits.max_tokens {
            return Err(ReplayError::Full(retry));
        }
        let account = self.accounts.entry(req.uid).or_default();
        if account.tokens >= self.limits.max_tokens_per_uid {
            return Err(ReplayError::AccountBusy(retry));
        }
        account.tokens += 1;
        self.clocks.insert(
            *req.token,
            TokenClock {
                offset,
                uid: req.uid,
            },
        );
        self.clock_deadlines
            .entry(req.token_deadline)
            .or_default()
            .push(*req.token);
        Ok(offset)
    }

    /// Forgets every nonce and token clock whose deadline is `<= now`.
    fn purge(&mut self, now: i64) {
        while let Some(bucket) = self.nonces.first_entry() {
            if *bucket.key() > now {
                break;
            }
            let bucket = bucket.remove();
            self.nonce_count -= bucket.keys.len();
            for (uid, n) in bucket.per_uid {
                self.release(uid, |a| &mut a.nonces, n);
            }
        }
        while let Some(bucket) = self.clock_deadlines.first_entry() {
            if *bucket.key() > now {
                break;
            }
            for key in bucket.remove() {
                if let Some(clock) = self.clocks.remove(&key) {
                    self.release(clock.uid, |a| &mut a.tokens, 1);
                }
            }
        }
    }

    fn release(&mut self, uid: Uid, field: impl Fn(&mut AccountUse) -> &mut usize, by: usize) {
        if let Some(account) = self.accounts.get_mut(&uid) {
            let n = field(account);
            *n = n.saturating_sub(by);
            if account.nonces == 0 && account.tokens == 0 {
                self.accounts.remove(&uid);
            }
        }
    }

    pub fn nonces(&self) -> usize {
        self.nonce_count
    }

    /// Number of tokens whose clock offset is remembered.
    #[cfg(test)]
    fn tokens(&self) -> usize {
        self.clocks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the guard accepted, without the accepted nonce's details.
    fn check(g: &mut ReplayGuard, req: &ReplayRequest<'_>, now: i64) -> Result<(), ReplayError> {
        g.check(req, now).map(|_| ())
    }

    const NOW: i64 = 1_700_000_000;
    const LATER: i64 = NOW + 7200;

    fn guard() -> ReplayGuard {
        ReplayGuard::new(ReplayLimits::default())
    }

    #[test]
    fn replay_refused_while_in_window_then_stale() {
        let mut g = guard();
        let t = token_key("t");
        assert_eq!(
            check(&mut g, &ReplayRequest::new(&t, 1, NOW, "n1", LATER), NOW),
            Ok(())
        );
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&t, 1, NOW, "n1", LATER),
                NOW + 30
            ),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&t, 1, NOW, "n2", LATER),
                NOW + 30
            ),
            Ok(())
        );
        // Other tokens' nonces are separate.
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&token_key("u"), 1, NOW, "n1", LATER),
                NOW
            ),
            Ok(())
        );
        // Once the ts has left the window the nonce is forgotten, and the request is stale.
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&t, 1, NOW, "n1", LATER),
                NOW + WINDOW_SECS + 1
            ),
            Err(ReplayError::Stale)
        );
        assert_eq!(g.nonces(), 0);
    }

    #[test]
    fn a_busy_minute_leaves_no_big_table_behind() {
        let mut g = guard();
        let t = token_key("t");
        for i in 0..20_000 {
            let nonce = format!("n{i}");
            // Spread over the minute, as a steady load would be.
            let ts = NOW + i / 400;
            let req = ReplayRequest::new(&t, 1, ts, &nonce, LATER);
            assert_eq!(check(&mut g, &req, ts), Ok(()));
        }
        assert_eq!(g.nonces(), 20_000);
        assert_eq!(g.nonces.len(), 50);
        // Nonces leave a second at a time, each second's table with them.
        let mid = NOW + 25 + WINDOW_SECS + 1;
        let req = ReplayRequest::new(&t, 1, mid, "mid", LATER);
        assert_eq!(check(&mut g, &req, mid), Ok(()));
        assert_eq!(g.nonces(), 20_000 - 26 * 400 + 1);
        let later = NOW + 50 + WINDOW_SECS + 1;
        let req = ReplayRequest::new(&t, 1, later, "fresh", LATER);
        assert_eq!(check(&mut g, &req, later), Ok(()));
        assert_eq!(g.nonces(), 2);
        assert_eq!(g.nonces.len(), 2);
        assert_eq!(g.accounts[&Uid::new(1).unwrap()].nonces, 2);
    }

    #[test]
    fn a_replay_is_found_whatever_the_second_it_arrives_in() {
        let mut g = guard();
        let t = token_key("t");
        // A client 100 s behind: every request of its token lands in the bucket its own ts
        // and the learned offset give, and so does each replay of it.
        for (i, now) in (NOW..NOW + 5).enumerate() {
            let ts = now - 100;
            let nonce = format!("n{i}");
            assert_eq!(
                check(&mut g, &ReplayRequest::new(&t, 1, ts, &nonce, LATER), now),
                Ok(())
            );
        }
        for i in 0..5 {
            let nonce = format!("n{i}");
            let ts = NOW + i - 100;
            for later in [NOW + 5, NOW + 30, NOW + WINDOW_SECS] {
                assert_eq!(
                    check(&mut g, &ReplayRequest::new(&t, 1, ts, &nonce, LATER), later),
                    Err(ReplayError::Replayed),
                    "n{i} at +{}",
                    later - NOW
                );
            }
        }
    }

    #[test]
    fn skewed_clocks_keep_working() {
        let mut g = guard();
        let t = token_key("t");
        // A client a day behind: its first request fixes the offset.
        let behind = NOW - 86_400;
        assert_eq!(
            check(&mut g, &ReplayRequest::new(&t, 1, behind, "a", LATER), NOW),
            Ok(())
        );
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&t, 1, behind + 600, "b", LATER),
                NOW + 600
            ),
            Ok(())
        );
        // A captured request replayed ten minutes later is stale for this token.
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&t, 1, behind, "c", LATER),
                NOW + 600
            ),
            Err(ReplayError::Stale)
        );
        // A request whose ts is ahead of the learned clock by more than the window too.
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&t, 1, behind + 700 + WINDOW_SECS, "d", LATER),
                NOW + 600
            ),
            Err(ReplayError::Stale)
        );
        assert_eq!(g.tokens(), 1);
    }

    #[test]
    fn nonces_are_never_evicted_a_flooding_account_is_refused() {
        let mut g = ReplayGuard::new(ReplayLimits {
            max_nonces: 10,
            max_nonces_per_uid: 4,
            max_tokens: 10,
            max_tokens_per_uid: 10,
        });
        let victim = token_key("victim");
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&victim, 1, NOW, "captured", LATER),
                NOW
            ),
            Ok(())
        );
        let flood = token_key("flood");
        let mut refused = 0;
        for i in 0..100 {
            match check(
                &mut g,
                &ReplayRequest::new(&flood, 2, NOW, &i.to_string(), LATER),
                NOW,
            ) {
                Ok(()) => {}
                Err(ReplayError::AccountBusy(s)) => {
                    refused += 1;
                    assert!(s > 0);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(refused, 96);
        // The victim's captured request is still a replay, and the victim can go on.
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&victim, 1, NOW, "captured", LATER),
                NOW + 1
            ),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&victim, 1, NOW, "next", LATER),
                NOW + 1
            ),
            Ok(())
        );
        // When the window has passed the flooder may send again.
        let t = NOW + WINDOW_SECS + 1;
        assert_eq!(
            check(&mut g, &ReplayRequest::new(&flood, 2, t, "again", LATER), t),
            Ok(())
        );
    }

    #[test]
    fn full_process_refuses_instead_of_forgetting() {
        let mut g = ReplayGuard::new(ReplayLimits {
            max_nonces: 3,
            max_nonces_per_uid: 3,
            max_tokens: 2,
            max_tokens_per_uid: 2,
        });
        for uid in 1..4i64 {
            let t = token_key(&uid.to_string());
            let r = check(&mut g, &ReplayRequest::new(&t, uid, NOW, "n", LATER), NOW);
            if uid < 3 {
                assert_eq!(r, Ok(()));
            } else {
                assert!(matches!(r, Err(ReplayError::Full(_))), "{r:?}");
            }
        }
        let t0 = token_key("1");
        assert_eq!(
            check(&mut g, &ReplayRequest::new(&t0, 1, NOW, "m", LATER), NOW),
            Ok(())
        );
        assert!(matches!(
            check(&mut g, &ReplayRequest::new(&t0, 1, NOW, "o", LATER), NOW),
            Err(ReplayError::Full(_))
        ));
        assert_eq!(
            check(&mut g, &ReplayRequest::new(&t0, 1, NOW, "n", LATER), NOW),
            Err(ReplayError::Replayed)
        );
        // Token clocks go when their token can no longer be used.
        g.purge(LATER);
        assert_eq!(g.tokens(), 0);
        assert_eq!(g.nonces(), 0);
    }

    #[test]
    fn per_account_token_bound() {
        let mut g = ReplayGuard::new(ReplayLimits {
            max_tokens_per_uid: 2,
            ..ReplayLimits::default()
        });
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&token_key("a"), 7, NOW, "n", LATER),
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&token_key("b"), 7, NOW, "n", LATER),
                NOW
            ),
            Ok(())
        );
        assert!(matches!(
            check(
                &mut g,
                &ReplayRequest::new(&token_key("c"), 7, NOW, "n", LATER),
                NOW
            ),
            Err(ReplayError::AccountBusy(_))
        ));
        assert_eq!(
            check(
                &mut g,
                &ReplayRequest::new(&token_key("c"), 8, NOW, "n", LATER),
                NOW
            ),
            Ok(())
        );
    }
}
