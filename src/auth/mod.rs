//! Authentication of Sync requests.
//!
//! - `tokenlib`: the tokens the token endpoint issues ([`mint`]) and the storage side checks
//!   ([`parse`]), byte-compatible with Python `tokenlib` so tokens survive a cut-over.
//! - `hawk`: the Hawk `Authorization` header every storage request carries: parsing, MAC and
//!   payload-hash checks, and [`client_header`] for tests and load tools.
//! - [`Authenticator`]: what a storage handler calls once per request; it ties the two together
//!   with a token cache, the expired-token grace period, an optional clock window and replay
//!   protection. The caller still has to check `payload.node` against this server's node URL
//!   and `payload.uid` against the URL's uid (spec §6 steps 4 and 8).
//! - `metrics`: `hashed_fxa_uid` / `hashed_device_id` for the token endpoint.
//!
//! Nothing here logs tokens, keys or secrets; `Debug` output of credentials is redacted.

mod expiring;
mod hawk;
pub(crate) mod metrics;
mod node_secret;
pub(crate) mod replay;
mod tokenlib;

pub use expiring::DEFAULT_MAX_TOKENS;
pub use hawk::{
    client_header, normalized_string, parse_authorization, payload_hash, HawkError, HawkHeader,
    HawkRequest,
};
pub use metrics::{hash_device_id, hash_fxa_uid};
pub use node_secret::node_secret;
pub use replay::{
    nonce_key, Accepted, MemoryReplay, ReplayError, ReplayLimits, ReplayRequest, ReplayStore,
    DEFAULT_MAX_NONCES, WINDOW_SECS,
};
pub use tokenlib::{derive_key, mint, mint_raw, parse, TokenError, TokenPayload, VerifiedToken};

use expiring::{ceil_secs, floor_secs, ExpiringMap};
use replay::token_key;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

/// Retry-After (seconds) when the shared replay store fails.
const RETRY_UNAVAILABLE: u64 = 10;

/// A verified token as cached: payload, derived key, index of the secret that verified it, and
/// the token's key in the replay guard (hashed once, here).
type CachedToken = (TokenPayload, String, usize, [u8; 16]);

/// Per-process request authenticator; share one across worker threads.
pub struct Authenticator {
    secrets: Vec<String>,
    expired_token_timeout: u64,
    timestamp_skew: Option<u64>,
    /// token string → verified payload, so HKDF and JSON parsing run once per token.
    tokens: Mutex<ExpiringMap<String, CachedToken>>,
    replays: Box<dyn ReplayStore>,
}

impl fmt::Debug for Authenticator {
    // Secrets and cached keys stay out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("secrets", &self.secrets.len())
            .field("expired_token_timeout", &self.expired_token_timeout)
            .field("timestamp_skew", &self.timestamp_skew)
            .finish_non_exhaustive()
    }
}

/// Lock a mutex, ignoring poisoning: the caches stay structurally valid if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Authenticator {
    /// An authenticator for `secrets` (all verify), with the `expired_token_timeout` grace period
    /// in seconds and an optional strict clock window `timestamp_skew` in seconds.
    pub fn new(
        secrets: Vec<String>,
        expired_token_timeout: u64,
        timestamp_skew: Option<u64>,
    ) -> Self {
        Self::with_limits(
            secrets,
            expired_token_timeout,
            timestamp_skew,
            DEFAULT_MAX_TOKENS,
            ReplayLimits::default(),
        )
    }

    /// Like [`Authenticator::new`] with explicit bounds on cached tokens and on the replay guard.
    pub fn with_limits(
        secrets: Vec<String>,
        expired_token_timeout: u64,
        timestamp_skew: Option<u64>,
        max_tokens: usize,
        replay: ReplayLimits,
    ) -> Self {
        Authenticator {
            secrets,
            expired_token_timeout,
            timestamp_skew,
            tokens: Mutex::new(ExpiringMap::new(max_tokens)),
            replays: Box::new(MemoryReplay::new(replay)),
        }
    }

    /// Keeps the replay state in `store` instead of in this process.
    pub fn with_replay_store(mut self, store: Box<dyn ReplayStore>) -> Self {
        self.replays = store;
        self
    }

    /// The time after which a token can no longer be accepted, even with the grace period.
    fn last_use(&self, payload: &TokenPayload) -> f64 {
        payload.expires + self.expired_token_timeout as f64
    }

    /// Verify a token's signature and payload, through the cache.
    fn verify_token(&self, token: &str, now: f64) -> Result<CachedToken, TokenError> {
        if let Some(hit) = lock(&self.tokens).get(token, floor_secs(now)) {
            return Ok(hit.clone());
        }
        // Verify without holding the lock so other workers are not serialised behind HKDF.
        let (payload, key, index) = tokenlib::verify(&self.secrets, token)?;
        let verified = (payload, key, index, token_key(token));
        let deadline = ceil_secs(self.last_use(&verified.0));
        lock(&self.tokens).insert(
            token.to_owned(),
            deadline,
            verified.clone(),
            floor_secs(now),
        );
        Ok(verified)
    }

    /// Authenticate one request (`now` in seconds): parse the header, verify the token (cached),
    /// apply expiry (with `allow_expired`, tokens expired less than `expired_token_timeout` ago
    /// pass with `expired = true`), check the MAC in constant time, the payload hash if the
    /// header has one, the clock window if configured, and finally reject a replayed
    /// `(token, nonce)`. Nonces are recorded only for requests that passed every other check.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        req: &HawkRequest,
        now: f64,
        allow_expired: bool,
    ) -> Result<VerifiedToken, HawkError> {
        let header = parse_authorization(authorization.ok_or(HawkError::Missing)?)?;
        let (payload, key, secret_index, token) = self.verify_token(&header.id, now)?;
        let expired = payload.expires <= now;
        if expired && !(allow_expired && self.last_use(&payload) > now) {
            return Err(HawkError::Token(TokenError::Expired));
        }
        hawk::verify_mac(&key, &header, req)?;
        hawk::verify_payload_hash(&header, req)?;
        if let Some(skew) = self.timestamp_skew {
            if (now - header.ts as f64).abs() > skew as f64 {
                return Err(HawkError::StaleTimestamp);
            }
        }
        self.replays
            .check(
                &ReplayRequest {
                    token: &token,
                    uid: payload.uid,
                    ts: header.ts,
                    nonce: &header.nonce,
                    token_deadline: ceil_secs(self.last_use(&payload)),
                },
                floor_secs(now),
            )
            .map_err(|e| match e {
                ReplayError::Stale => HawkError::StaleTimestamp,
                ReplayError::Replayed => HawkError::Replayed,
                ReplayError::AccountBusy(s) | ReplayError::Full(s) => HawkError::Throttled(s),
                ReplayError::Unavailable => HawkError::Throttled(RETRY_UNAVAILABLE),
            })?;
        Ok(VerifiedToken {
            payload,
            key,
            expired,
            secret_index,
        })
    }

    /// Number of nonces currently remembered (for stats and tests).
    pub fn remembered_nonces(&self) -> usize {
        self.replays.nonces()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const NOW: f64 = 1_700_000_000.0;
    const VECTOR_TOKEN: &str = "eyJub2RlIjogImh0dHA6Ly9sb2NhbGhvc3Q6NTAwMCIsICJ1aWQiOiAxLCAiZnhhX2tpZCI6ICIwMDAwMDAwMDAwOTAwLXFxbyIsICJleHBpcmVzIjogMTcwMDAwMDMwMCwgImZ4YV91aWQiOiAidXNlcjEiLCAiaGFzaGVkX2RldmljZV9pZCI6ICJmZGUyYzBiNjY0NTkyYzZkODk0ZGY2MGQ5ZTY4NjkxYyIsICJoYXNoZWRfZnhhX3VpZCI6ICI4N2RiYzlhMjM4OGQwZjFkZDdiMjFjZTM3ZmFiZDc3ZCIsICJzYWx0IjogIjBhZWJmYSJ9v-1qEBdJHREE0BW89ty2kA7egf8EDUowiH-puMbDwnw=";

    fn auth(skew: Option<u64>) -> Authenticator {
        Authenticator::new(vec!["old".into(), SECRET.into()], 7200, skew)
    }

    /// A fresh token expiring 300 s after NOW, and its key.
    fn token() -> (String, String) {
        let payload = TokenPayload {
            uid: crate::uid::Uid::new(42).unwrap(),
            node: "http://localhost:5000".into(),
            expires: NOW + 300.0,
            salt: "abcdef".into(),
            fxa_uid: Some("user1".into()),
            fxa_kid: Some("0000000000900-qqo".into()),
            hashed_fxa_uid: Some(hash_fxa_uid("m", "user1")),
            hashed_device_id: None,
        };
        mint(SECRET, &payload)
    }

    fn get() -> HawkRequest<'static> {
        HawkRequest {
            method: "GET",
            path_and_query: "/storage/1.5/42/info/collections",
            host: "localhost",
            port: 5000,
            content_type: None,
            body: b"",
        }
    }

    fn post(body: &'static [u8]) -> HawkRequest<'static> {
        HawkRequest {
            method: "POST",
            path_and_query: "/storage/1.5/42/storage/bookmarks",
            content_type: Some(b"application/json"),
            body,
            ..get()
        }
    }

    fn signed(r: &HawkRequest, nonce: &str, ts: i64, with_hash: bool) -> String {
        let (id, key) = token();
        client_header(&key, &id, ts, nonce, r, with_hash)
    }

    fn run(
        a: &Authenticator,
        h: &str,
        r: &HawkRequest,
        now: f64,
        allow: bool,
    ) -> Result<VerifiedToken, HawkError> {
        a.authenticate(Some(h.as_bytes()), r, now, allow)
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Authenticator>();
    }

    #[test]
    fn spec_vector_request_authenticates() {
        let a = Authenticator::new(vec![SECRET.into()], 7200, None);
        let h = format!(
            "Hawk id=\"{VECTOR_TOKEN}\", ts=\"1700000000\", nonce=\"abcdef\", mac=\"laisfElADDItnDISekjtkEb/QbIQgWYQDtuHpbMsw8g=\""
        );
        let r = HawkRequest {
            path_and_query: "/storage/1.5/1/info/collections?x=1",
            ..get()
        };
        let v = run(&a, &h, &r, NOW, false).unwrap();
        assert_eq!(v.payload.uid, crate::uid::Uid::new(1).unwrap());
        assert_eq!(v.key, "QqYf8YMxrySlxDBOCGMFmpzGEn2RR5vjEj4YxwP21Dk=");
        assert_eq!(v.secret_index, 0);
    }

    #[test]
    fn good_request_then_replay() {
        let a = auth(None);
        let h = signed(&get(), "n1", NOW as i64, false);
        let v = run(&a, &h, &get(), NOW, false).unwrap();
        assert_eq!(v.payload.uid, crate::uid::Uid::new(42).unwrap());
        assert!(!v.expired);
        assert_eq!(v.secret_index, 1);
        assert_eq!(
            run(&a, &h, &get(), NOW + 1.0, false),
            Err(HawkError::Replayed)
        );
        let h2 = signed(&get(), "n2", NOW as i64, false);
        assert!(run(&a, &h2, &get(), NOW + 1.0, false).is_ok());
        assert_eq!(a.remembered_nonces(), 2);
        // Much later, while the token could still be accepted with the grace period, the
        // nonces are forgotten but their timestamp is outside the token's window.
        assert_eq!(
            run(&a, &h, &get(), NOW + 7000.0, true),
            Err(HawkError::StaleTimestamp)
        );
        assert_eq!(a.remembered_nonces(), 0);
    }

    #[test]
    fn bad_mac_is_rejected_and_not_remembered() {
        let a = auth(None);
        let good = signed(&get(), "n1", NOW as i64, false);
        let (id, _) = token();
        let forged = client_header("wrong key", &id, NOW as i64, "n1", &get(), false);
        assert_eq!(run(&a, &forged, &get(), NOW, false), Err(HawkError::BadMac));
        let other_path = HawkRequest {
            path_and_query: "/storage/1.5/43/info/collections",
            ..get()
        };
        assert_eq!(
            run(&a, &good, &other_path, NOW, false),
            Err(HawkError::BadMac)
        );
        assert_eq!(a.remembered_nonces(), 0);
        // The genuine request with the same nonce still goes through.
        assert!(run(&a, &good, &get(), NOW, false).is_ok());
    }

    #[test]
    fn payload_hash_checked_only_when_present() {
        let a = auth(None);
        let h = signed(&post(b"[1]"), "n1", NOW as i64, true);
        assert_eq!(
            run(&a, &h, &post(b"[2]"), NOW, false),
            Err(HawkError::BadHash)
        );
        assert!(run(&a, &h, &post(b"[1]"), NOW, false).is_ok());
        let no_hash = signed(&post(b"[1]"), "n2", NOW as i64, false);
        assert!(run(&a, &no_hash, &post(b"anything"), NOW, false).is_ok());
    }

    #[test]
    fn expired_tokens_only_with_grace() {
        let a = auth(None);
        let expires = NOW + 300.0;
        // Each request is signed at the time it is sent, as a client does.
        let at = |nonce: &str, now: f64, allow: bool| {
            run(
                &a,
                &signed(&get(), nonce, now as i64, false),
                &get(),
                now,
                allow,
            )
        };
        let expired = Err(HawkError::Token(TokenError::Expired));
        assert!(at("a", expires - 0.5, false).is_ok());
        assert_eq!(at("b", expires, false), expired);
        assert!(at("c", expires, true).unwrap().expired);
        assert!(at("d", expires + 7199.0, true).unwrap().expired);
        assert_eq!(at("e", expires + 7200.0, true), expired);
        assert_eq!(at("f", expires + 1e6, true), expired);
    }

    #[test]
    fn timestamp_skew_only_when_configured() {
        let old = signed(&get(), "n1", NOW as i64 - 100_000, false);
        assert!(run(&auth(None), &old, &get(), NOW, false).is_ok());
        let strict = auth(Some(60));
        assert_eq!(
            run(&strict, &old, &get(), NOW, false),
            Err(HawkError::StaleTimestamp)
        );
        let future = signed(&get(), "n2", NOW as i64 + 61, false);
        assert_eq!(
            run(&strict, &future, &get(), NOW, false),
            Err(HawkError::StaleTimestamp)
        );
        let close = signed(&get(), "n3", NOW as i64 - 60, false);
        assert!(run(&strict, &close, &get(), NOW, false).is_ok());
        assert_eq!(strict.remembered_nonces(), 1);
    }

    #[test]
    fn header_and_token_failures() {
        let a = auth(None);
        assert_eq!(
            a.authenticate(None, &get(), NOW, false),
            Err(HawkError::Missing)
        );
        assert_eq!(
            run(&a, "Basic abc", &get(), NOW, false),
            Err(HawkError::NotHawk)
        );
        let (_, key) = token();
        let garbage = client_header(&key, "garbage!", NOW as i64, "n", &get(), false);
        assert_eq!(
            run(&a, &garbage, &get(), NOW, false),
            Err(HawkError::Token(TokenError::Malformed))
        );
        let stranger = Authenticator::new(vec!["someone else".into()], 7200, None);
        let h = signed(&get(), "n", NOW as i64, false);
        assert_eq!(
            run(&stranger, &h, &get(), NOW, false),
            Err(HawkError::Token(TokenError::BadSignature))
        );
    }

    #[test]
    fn token_cache_is_bounded_and_rechecks_expiry() {
        let a =
            Authenticator::with_limits(vec![SECRET.into()], 7200, None, 1, ReplayLimits::default());
        let h = signed(&get(), "n1", NOW as i64, false);
        assert!(run(&a, &h, &get(), NOW, false).is_ok());
        assert_eq!(lock(&a.tokens).len(), 1);
        assert!(run(
            &a,
            &signed(&get(), "n3", NOW as i64, false),
            &get(),
            NOW,
            false
        )
        .is_ok());
        assert_eq!(lock(&a.tokens).len(), 1);
        // A cached token is still refused once expired.
        let h2 = signed(&get(), "n2", NOW as i64, false);
        assert_eq!(
            run(&a, &h2, &get(), NOW + 300.0, false),
            Err(HawkError::Token(TokenError::Expired))
        );
        let v = a.authenticate(
            Some(format!("Hawk id=\"{VECTOR_TOKEN}\", ts=\"1700000000\", nonce=\"abcdef\", mac=\"laisfElADDItnDISekjtkEb/QbIQgWYQDtuHpbMsw8g=\"").as_bytes()),
            &HawkRequest { path_and_query: "/storage/1.5/1/info/collections?x=1", ..get() },
            NOW,
            false,
        );
        assert!(v.is_ok());
        assert_eq!(lock(&a.tokens).len(), 1);
    }
}
