//! Verifying FxA OAuth access tokens: JWTs locally against JWKs (configured,
//! or fetched from the account server and cached), opaque tokens remotely
//! through `POST /v1/verify`. Every network call has a timeout; an account
//! server that is down answers `Unavailable` (503), never a hang. Only a few
//! requests may wait on the account server at once (`outbound::Gate`; the
//! others get `Busy`, 503), and failed remote verifications are remembered
//! for a few seconds.
//!
//! A JWT's claims are checked in `claims`.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::claims::{self, expected_jwt_issuer};
use super::jwt::{self, RsaJwk};
use super::outbound::{FailureCache, Gate, Turn, FAILURE_TTL};
use crate::timestamp::now_secs;

/// The scope a Sync access token must carry.
pub const OLDSYNC_SCOPE: &str = "https://identity.mozilla.com/apps/oldsync";
/// Mozilla's production OAuth server.
pub const PRODUCTION_OAUTH: &str = "https://oauth.accounts.firefox.com/v1";
/// The email domain (issuer) of Mozilla's production accounts.
pub const PRODUCTION_ISSUER: &str = "api.accounts.firefox.com";
/// Refetch JWKs for unknown `kid`s at most this often, whatever tokens arrive.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// How to reach the account server.
#[derive(Debug, Clone, Default)]
pub struct OAuthConfig {
    /// `oauth_verifier`: the OAuth server URL.
    pub verifier_url: Option<String>,
    /// `identity_provider`: where `/.well-known/fxa-client-configuration` lives.
    pub identity_provider: Option<String>,
    /// Keys from the configuration; when set, no keys are fetched.
    pub jwks: Vec<RsaJwk>,
    pub timeout: Duration,
    /// `[oauth] default_issuer`: the domain of stored emails.
    pub default_issuer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The account uid (`sub`).
    pub user: String,
    /// `fxa-generation`, when present.
    pub generation: Option<i64>,
    /// The email domain users of this account server are stored under.
    pub issuer: String,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    /// Bad, expired, wrongly signed or wrongly scoped (401 invalid-credentials).
    Invalid(String),
    /// `fxa-generation` is not an integer (401 invalid-generation).
    InvalidGeneration,
    /// The account server could not be asked (503).
    Unavailable(String),
    /// Too many requests are waiting on the account server already (503).
    Busy,
}

#[derive(Debug, Clone)]
struct Endpoints {
    server: String,
    issuer: String,
}

/// The endpoints once known, and how the last discovery went.
#[derive(Default)]
struct Discovery {
    resolved: Option<Endpoints>,
    /// Discoveries tried so far (successful or not).
    attempts: u64,
    /// The last failure, for the requests that waited on that attempt.
    failure: Option<OAuthError>,
}

#[derive(Default)]
struct FetchedKeys {
    keys: Vec<RsaJwk>,
    fetched: Option<Instant>,
    /// When an unknown `kid` last made us fetch again.
    last_refetch: Option<Instant>,
    /// Fetches tried so far (successful or not).
    attempts: u64,
}

/// The verifier, shared by all workers.
pub struct OAuthVerifier {
    config: OAuthConfig,
    agent: ureq::Agent,
    /// Who must have issued JWTs (`iss`), when we know.
    jwt_issuer: Option<String>,
    endpoints: RwLock<Discovery>,
    /// Held by the one request discovering the endpoints.
    discovering: Mutex<()>,
    fetched: RwLock<FetchedKeys>,
    /// Held by the one request fetching the keys.
    fetching: Mutex<()>,
    /// Shared with the other remote verifiers of the tokenserver.
    gate: Arc<Gate>,
    failures: FailureCache<OAuthError>,
}

pub(super) fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn with_v1(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/v1") {
        url.to_string()
    } else {
        format!("{url}/v1")
    }
}

/// Whether a token's scopes cover `target` (exact, or a parent URL scope;
/// `:write` suffixes allowed), as FxA matches them.
pub fn covers(scopes: &[&str], target: &str) -> bool {
    scopes.iter().any(|s| {
        let s = s.strip_suffix(":write").unwrap_or(s);
        s == target || (s.starts_with("https://") && target.starts_with(&format!("{s}/")))
    })
}

impl OAuthVerifier {
    /// A verifier; nothing is fetched until the first token arrives. `gate`
    /// bounds the requests waiting on the account server at once.
    pub fn new(config: OAuthConfig, gate: Arc<Gate>) -> OAuthVerifier {
        let agent = ureq::AgentBuilder::new()
            .timeout(config.timeout)
            .user_agent(concat!("syncserver-fcgi/", env!("CARGO_PKG_VERSION")))
            .build();
        let discovery = Discovery {
            resolved: static_endpoints(&config),
            ..Discovery::default()
        };
        OAuthVerifier {
            jwt_issuer: expected_jwt_issuer(&config),
            config,
            agent,
            endpoints: RwLock::new(discovery),
            discovering: Mutex::new(()),
            fetched: RwLock::new(FetchedKeys::default()),
            fetching: Mutex::new(()),
            gate,
            failures: FailureCache::new(FAILURE_TTL),
        }
    }

    /// The OAuth server URL (ending in /v1), if it is known without a fetch.
    pub fn describe(&self) -> String {
        match (&self.config.verifier_url, &self.config.identity_provider) {
            (Some(v), _) => with_v1(v),
            (None, Some(idp)) => format!("from {idp}"),
            (None, None) => PRODUCTION_OAUTH.to_string(),
        }
    }

    /// The endpoints, discovering them first if need be. One request
    /// discovers at a time (holding a permit); requests that waited for it use
    /// its outcome, even a failure, instead of each trying again in turn (with
    /// a slow account server, a timeout each). The state lock is never held
    /// across the network call, so once known the endpoints never wait.
    fn endpoints(&self, turn: &mut Turn<'_>) -> Result<Endpoints, OAuthError> {
        let seen = {
            let d = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = &d.resolved {
                return Ok(e.clone());
            }
            d.attempts
        };
        turn.claim().map_err(|_| OAuthError::Busy)?;
        let _one = self.discovering.lock().unwrap_or_else(|e| e.into_inner());
        {
            let d = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = &d.resolved {
                return Ok(e.clone());
            }
            if d.attempts != seen {
                return Err(d.failure.clone().unwrap_or_else(|| {
                    OAuthError::Unavailable("account server discovery failed just now".into())
                }));
            }
        }
        let result = self.discover_endpoints();
        let mut d = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        d.attempts = d.attempts.wrapping_add(1);
        match &result {
            Ok(e) => d.resolved = Some(e.clone()),
            Err(e) => d.failure = Some(e.clone()),
        }
        result
    }

    /// Asks `identity_provider` where its OAuth server is.
    fn discover_endpoints(&self) -> Result<Endpoints, OAuthError> {
        let Some(idp) = &self.config.identity_provider else {
            // static_endpoints covers every configuration without one.
            return Ok(Endpoints {
                server: PRODUCTION_OAUTH.into(),
                issuer: email_domain(&self.config, PRODUCTION_OAUTH),
            });
        };
        let url = format!(
            "{}/.well-known/fxa-client-configuration",
            idp.trim_end_matches('/')
        );
        let doc = self.get_json(&url)?;
        let oauth = doc
            .get("oauth_server_base_url")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                OAuthError::Unavailable(format!("{url} has no oauth_server_base_url"))
            })?;
        let issuer = match (
            &self.config.default_issuer,
            doc.get("auth_server_base_url").and_then(Value::as_str),
        ) {
            (Some(i), _) => i.clone(),
            (None, Some(auth)) => host_of(auth),
            (None, None) => host_of(oauth),
        };
        Ok(Endpoints {
            server: with_v1(oauth),
            issuer,
        })
    }

    fn get_json(&self, url: &str) -> Result<Value, OAuthError> {
        let resp = self
            .agent
            .get(url)
            .call()
            .map_err(|e| unavailable(url, e))?;
        let text = resp
            .into_string()
            .map_err(|e| OAuthError::Unavailable(format!("{url}: {e}")))?;
        serde_json::from_str(&text)
            .map_err(|_| OAuthError::Unavailable(format!("{url} did not answer JSON")))
    }

    /// Verifies an access token for the oldsync scope.
    pub fn verify(&self, token: &str) -> Result<Access, OAuthError> {
        let mut turn = Turn::new(&self.gate);
        let kid = jwt::kid(token);
        if kid.is_err() {
            if let Some(e) = self.failures.get(token) {
                return Err(remembered(e));
            }
        }
        let endpoints = self.endpoints(&mut turn)?;
        match kid {
            Err(_) => {
                turn.claim().map_err(|_| OAuthError::Busy)?;
                let result = self.verify_remote(token, &endpoints);
                if let Err(e) = &result {
                    self.failures.put(token, e.clone());
                }
                result
            }
            Ok(kid) => self.verify_jwt(token, kid.as_deref(), &endpoints, &mut turn),
        }
    }

    fn verify_jwt(
        &self,
        token: &str,
        kid: Option<&str>,
        ep: &Endpoints,
        turn: &mut Turn<'_>,
    ) -> Result<Access, OAuthError> {
        let verified = if self.config.jwks.is_empty() {
            jwt::verify(token, &self.remote_keys(kid, ep, turn)?)
        } else {
            jwt::verify(token, &self.config.jwks)
        }
        .map_err(|e| OAuthError::Invalid(format!("access token refused: {e:?}")))?;
        let (user, generation) =
            claims::check(&verified.claims, self.jwt_issuer.as_deref(), now_secs())?;
        Ok(Access {
            user,
            generation,
            issuer: ep.issuer.clone(),
        })
    }

    /// The fetched keys, fetching them first when none are cached, or when
    /// `kid` is unknown (a key rotation). Unknown-kid refetches are limited to
    /// one per [`JWKS_REFETCH_INTERVAL`], so junk kids cannot make us hammer the
    /// account server; the first one after a fetch goes through at once, so a
    /// real rotation is picked up without waiting.
    fn remote_keys(
        &self,
        kid: Option<&str>,
        ep: &Endpoints,
        turn: &mut Turn<'_>,
    ) -> Result<Vec<RsaJwk>, OAuthError> {
        let cached = |f: &FetchedKeys| {
            let has_kid =
                kid.is_none_or(|k| f.keys.iter().any(|key| key.kid.as_deref() == Some(k)));
            let throttled = f
                .last_refetch
                .is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL);
            (f.fetched.is_some() && (has_kid || throttled)).then(|| f.keys.clone())
        };
        let attempts_seen = {
            let f = self.fetched.read().unwrap_or_else(|e| e.into_inner());
            if let Some(keys) = cached(&f) {
                return Ok(keys);
            }
            f.attempts
        };
        // One fetch at a time: requests that waited here use its result, even
        // a failure (else a slow account server would cost each one a timeout).
        // Waiting here ties up a connection thread too: only with a permit.
        turn.claim().map_err(|_| OAuthError::Busy)?;
        let _one = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        let refetch = {
            let f = self.fetched.read().unwrap_or_else(|e| e.into_inner());
            if f.attempts != attempts_seen {
                return match (f.fetched, f.keys.is_empty()) {
                    (Some(_), false) => Ok(f.keys.clone()),
                    _ => Err(OAuthError::Unavailable(
                        "signing keys could not be fetched just now".into(),
                    )),
                };
            }
            if let Some(keys) = cached(&f) {
                return Ok(keys);
            }
            f.fetched.is_some()
        };
        let url = format!("{}/jwks", ep.server);
        let fetched = self.get_json(&url).and_then(|doc| {
            jwt::parse_jwks(&doc.to_string())
                .map_err(|e| OAuthError::Unavailable(format!("{url} answered {e}")))
        });
        let mut f = self.fetched.write().unwrap_or_else(|e| e.into_inner());
        f.attempts = f.attempts.wrapping_add(1);
        if refetch {
            f.last_refetch = Some(Instant::now());
        }
        match fetched {
            Ok(keys) => {
                log::info!("fetched {} signing key(s) from {url}", keys.len());
                f.keys = keys;
                f.fetched = Some(Instant::now());
                Ok(f.keys.clone())
            }
            // Keep serving with the keys we have if a refresh fails.
            Err(e) if !f.keys.is_empty() => {
                log::warn!("could not refresh signing keys: {e:?}");
                Ok(f.keys.clone())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_remote(&self, token: &str, ep: &Endpoints) -> Result<Access, OAuthError> {
        let url = format!("{}/verify", ep.server);
        let resp = self
            .agent
            .post(&url)
            .set("Content-Type", "application/json")
            .send_string(&json!({ "token": token }).to_string());
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) if (400..500).contains(&code) => {
                return Err(invalid(&format!(
                    "the account server refused the token ({code})"
                )));
            }
            Err(e) => return Err(unavailable(&url, e)),
        };
        let body: Value = resp
            .into_string()
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| OAuthError::Unavailable(format!("{url} did not answer JSON")))?;
        let user = body
            .get("user")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OAuthError::Unavailable(format!("{url} answered without a user")))?;
        let scopes: Vec<&str> = match body.get("scope") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(s)) => s.split_whitespace().collect(),
            _ => Vec::new(),
        };
        if !covers(&scopes, OLDSYNC_SCOPE) {
            return Err(invalid("access token lacks the oldsync scope"));
        }
        Ok(Access {
            user: user.to_string(),
            generation: generation(
                body.get("generation")
                    .or_else(|| body.get("fxa-generation")),
            )?,
            issuer: body
                .get("issuer")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| ep.issuer.clone()),
        })
    }
}

/// The endpoints known from the configuration alone (all but discovery).
fn static_endpoints(config: &OAuthConfig) -> Option<Endpoints> {
    let server = match (&config.verifier_url, &config.identity_provider) {
        (Some(url), _) => with_v1(url),
        (None, None) => PRODUCTION_OAUTH.into(),
        // Mozilla's own accounts need no discovery (and no network at start).
        (None, Some(idp)) if host_of(idp) == "accounts.firefox.com" => PRODUCTION_OAUTH.into(),
        (None, Some(_)) => return None,
    };
    Some(Endpoints {
        issuer: email_domain(config, &server),
        server,
    })
}

/// The domain of stored emails for users of the OAuth server at `server`.
fn email_domain(config: &OAuthConfig, server: &str) -> String {
    config.default_issuer.clone().unwrap_or_else(|| {
        if host_of(server) == "oauth.accounts.firefox.com" {
            PRODUCTION_ISSUER.to_string()
        } else {
            host_of(server)
        }
    })
}

/// A failure answered from the cache, saying so in the log.
fn remembered(e: OAuthError) -> OAuthError {
    let note = "(remembered from a verification in the last few seconds)";
    match e {
        OAuthError::Invalid(why) => OAuthError::Invalid(format!("{why} {note}")),
        OAuthError::Unavailable(why) => OAuthError::Unavailable(format!("{why} {note}")),
        other => other,
    }
}

fn invalid(why: &str) -> OAuthError {
    OAuthError::Invalid(why.to_string())
}

fn unavailable(url: &str, e: ureq::Error) -> OAuthError {
    OAuthError::Unavailable(match e {
        ureq::Error::Status(code, _) => format!("{url} answered {code}"),
        ureq::Error::Transport(t) => format!("{url}: {t}"),
    })
}

/// `fxa-generation`: absent is fine, anything but an integer is not.
pub(super) fn generation(v: Option<&Value>) -> Result<Option<i64>, OAuthError> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(OAuthError::InvalidGeneration),
        Some(_) => Err(OAuthError::InvalidGeneration),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_matching() {
        assert!(covers(&[OLDSYNC_SCOPE], OLDSYNC_SCOPE));
        assert!(covers(
            &["profile", "https://identity.mozilla.com/apps/oldsync:write"],
            OLDSYNC_SCOPE
        ));
        assert!(covers(
            &["https://identity.mozilla.com/apps"],
            OLDSYNC_SCOPE
        ));
        assert!(!covers(
            &["https://identity.mozilla.com/apps/old"],
            OLDSYNC_SCOPE
        ));
        assert!(!covers(&["profile"], OLDSYNC_SCOPE));
        assert!(!covers(&[], OLDSYNC_SCOPE));
    }

    #[test]
    fn generations() {
        assert_eq!(generation(None), Ok(None));
        assert_eq!(generation(Some(&json!(12))), Ok(Some(12)));
        for bad in [json!("12"), json!(null), json!([1]), json!(1.5)] {
            assert_eq!(
                generation(Some(&bad)),
                Err(OAuthError::InvalidGeneration),
                "{bad}"
            );
        }
    }

    fn verifier(config: OAuthConfig) -> OAuthVerifier {
        OAuthVerifier::new(config, Arc::new(Gate::new(1)))
    }

    #[test]
    fn endpoints_without_network() {
        let v = verifier(OAuthConfig {
            identity_provider: Some("https://accounts.firefox.com/".into()),
            timeout: Duration::from_secs(1),
            ..OAuthConfig::default()
        });
        // Known without the network, so without a permit either.
        let full = Gate::new(1);
        let _taken = full.try_enter();
        let e = v.endpoints(&mut Turn::new(&full)).unwrap();
        assert_eq!(
            (e.server.as_str(), e.issuer.as_str()),
            (PRODUCTION_OAUTH, PRODUCTION_ISSUER)
        );
        let v = verifier(OAuthConfig {
            verifier_url: Some("http://127.0.0.1:9/".into()),
            timeout: Duration::from_secs(1),
            ..OAuthConfig::default()
        });
        let e = v.endpoints(&mut Turn::new(&full)).unwrap();
        assert_eq!(
            (e.server.as_str(), e.issuer.as_str()),
            ("http://127.0.0.1:9/v1", "127.0.0.1:9")
        );
    }

    #[test]
    fn a_full_gate_refuses_before_the_network() {
        let gate = Arc::new(Gate::new(1));
        let v = OAuthVerifier::new(
            OAuthConfig {
                verifier_url: Some("http://127.0.0.1:9".into()),
                timeout: Duration::from_secs(2),
                ..OAuthConfig::default()
            },
            Arc::clone(&gate),
        );
        let taken = gate.try_enter();
        assert_eq!(v.verify("opaque-token"), Err(OAuthError::Busy));
        drop(taken);
        assert!(matches!(
            v.verify("opaque-token"),
            Err(OAuthError::Unavailable(_))
        ));
        // Remembered: answered without the network, even with the gate full.
        let _taken = gate.try_enter();
        assert!(matches!(
            v.verify("opaque-token"),
            Err(OAuthError::Unavailable(why)) if why.contains("remembered")
        ));
    }

    #[test]
    fn unreachable_server_is_unavailable() {
        let v = verifier(OAuthConfig {
            verifier_url: Some("http://127.0.0.1:9".into()),
            timeout: Duration::from_secs(2),
            ..OAuthConfig::default()
        });
        assert!(matches!(
            v.verify("opaque-token"),
            Err(OAuthError::Unavailable(_))
        ));
    }
}
