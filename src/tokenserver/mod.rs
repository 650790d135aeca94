//! The tokenserver: `GET /token/1.0/sync/1.5` (and Mozilla's `/1.0/sync/1.5`).
//!
//! A client proves who it is with an FxA OAuth access token (`Authorization:
//! Bearer`) plus `X-KeyID`, or, for old clients and only when a remote verifier
//! is configured, a BrowserID assertion. We find or allocate its user record
//! (the Python `users` table), then hand out a tokenlib token and its Hawk key
//! for the storage half.

mod browserid;
mod claims;
mod error;
pub(crate) mod jwt;
mod keyid;
pub(crate) mod oauth;
mod outbound;
pub(crate) mod rules;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::auth::{metrics, mint, node_secret, TokenPayload};
use crate::db::nodes::{NodeStore, NodesDb};
use crate::db::{Pool, UserPlan, UserRecord};
use crate::http::{query_pairs, Request, Response};
use crate::timestamp::{now_ms, now_secs};
pub use error::TokenserverError;
use keyid::{fxa_kid, parse_key_id, valid_client_state};
use oauth::{OAuthConfig, OAuthError, OAuthVerifier, OLDSYNC_SCOPE};
use outbound::Gate;
use rules::{Admission, Claims, Refusal};

#[derive(Debug, Clone)]
pub struct TokenserverConfig {
    /// The node URL written into tokens (`[tokenserver] node_url`, default public_url).
    pub node_url: String,
    /// public_url, for the discovery document.
    pub public_url: String,
    /// The secret that signs new tokens (the last configured one); with node
    /// assignment, the master secret each node's own secret is derived from.
    pub signing_secret: String,
    /// Key for `hashed_fxa_uid`, stable across workers and restarts.
    pub metrics_secret: String,
    /// `token_duration` in seconds.
    pub token_duration: u64,
    /// `allow_new_users` and `max_users`.
    pub admission: Admission,
    /// `allowed_users`: account uids or stored emails; empty = everyone.
    pub allowed_users: Vec<String>,
    /// `browserid_verifier`: remote BrowserID verifier for old clients.
    pub browserid_verifier: Option<String>,
    /// BrowserID audience (public_url's origin).
    pub audience: String,
    pub oauth: OAuthConfig,
}

/// Where accounts' data lives.
pub enum Assignment {
    /// Every account on one node (`node_url`), its records in the storage
    /// database (the Python server's static node backend).
    Static(Arc<Pool>),
    /// Accounts spread over the nodes of the tokenserver's own database
    /// (Python's `sqlnode` backend); each token is signed with its node's secret.
    Nodes(Arc<Pool<NodeStore>>),
}

impl Assignment {
    fn sessions(&self) -> usize {
        match self {
            Assignment::Static(pool) => pool.size(),
            Assignment::Nodes(pool) => pool.size(),
        }
    }
}

/// The tokenserver, shared by all workers.
pub struct Tokenserver {
    config: TokenserverConfig,
    oauth: OAuthVerifier,
    browserid: Option<browserid::RemoteVerifier>,
    /// Bounds the requests waiting on the account server (or BrowserID
    /// verifier) at once, so they never hold every connection thread.
    gate: Arc<Gate>,
    assignment: Assignment,
}

/// Who the client is, after verification.
struct Identity {
    fxa_uid: String,
    email: String,
    claims: Claims,
}

impl Tokenserver {
    /// Builds the tokenserver; nothing is fetched until the first request.
    pub fn new(config: TokenserverConfig, assignment: Assignment) -> Tokenserver {
        let browserid = config.browserid_verifier.clone().map(|url| {
            browserid::RemoteVerifier::new(url, config.audience.clone(), config.oauth.timeout)
        });
        let gate = Arc::new(Gate::for_workers(assignment.sessions()));
        Tokenserver {
            oauth: OAuthVerifier::new(config.oauth.clone(), Arc::clone(&gate)),
            browserid,
            gate,
            config,
            assignment,
        }
    }

    /// Whether the database holding the accounts answers (for `/__heartbeat__`).
    pub fn ping(&self) -> crate::db::DbResult<()> {
        match &self.assignment {
            Assignment::Static(pool) => pool.get()?.ping(),
            Assignment::Nodes(pool) => pool.get()?.nodes().map(|_| ()),
        }
    }

    /// Where access tokens are verified, for the start-up log.
    pub fn describe(&self) -> String {
        format!(
            "{} (at most {} request(s) waiting on it at once)",
            self.oauth.describe(),
            self.gate.max()
        )
    }

    /// `GET /token/`: what this tokenserver offers.
    pub fn discovery(&self) -> Response {
        let mut doc = json!({
            "services": {"sync": ["1.5"]},
            "auth": format!("{}/token", self.config.public_url),
            "oauth": {
                "default_issuer": self.config.oauth.default_issuer,
                "scope": OLDSYNC_SCOPE,
                "server_url": self.oauth.describe(),
            },
        });
        if let Some(url) = &self.config.browserid_verifier {
            doc["browserid"] =
                json!({"allowed_issuers": null, "trusted_issuers": null, "verifier_url": url});
        }
        Response::json(200, doc.to_string())
    }

    /// `GET /token/1.0/{application}/{version}`.
    pub fn handle(
        &self,
        req: &Request,
        application: &str,
        version: &str,
    ) -> Result<Response, TokenserverError> {
        if application != "sync" {
            return Err(TokenserverError::UnknownApplication);
        }
        if version != "1.5" {
            return Err(TokenserverError::UnknownVersion(version.to_string()));
        }
        if !matches!(req.method.as_str(), "GET" | "HEAD") {
            return Err(TokenserverError::MethodNotAllowed);
        }
        let client_state = match req.header("x-client-state") {
            None => None,
            Some([]) => None,
            Some(v) => match std::str::from_utf8(v)
                .ok()
                .filter(|s| valid_client_state(s))
            {
                Some(s) => Some(s.to_string()),
                None => return Err(TokenserverError::InvalidClientStateHeader),
            },
        };
        let authorization = req
            .header_str("authorization")
            .ok_or_else(|| TokenserverError::unauthorized("error", "no Authorization header"))?;
        let mut parts = authorization.trim().splitn(2, char::is_whitespace);
        let scheme = parts.next().unwrap_or("").to_ascii_lowercase();
        let credential = parts.next().map(str::trim).filter(|t| !t.is_empty());
        let Some(credential) = credential else {
            return Err(TokenserverError::unauthorized(
                "error",
                "Authorization header without credentials",
            ));
        };
        let identity = match (scheme.as_str(), &self.browserid) {
            ("bearer", _) => self.oauth_identity(req, credential, client_state)?,
            ("browserid", Some(verifier)) => {
                let _permit = self
                    .gate
                    .try_enter()
                    .ok_or(TokenserverError::VerifierBusy)?;
                verifier.identity(credential, client_state)?
            }
            _ => return Err(TokenserverError::UnsupportedScheme),
        };
        self.check_allowed(&identity)?;
        self.issue(req, identity)
    }

    fn oauth_identity(
        &self,
        req: &Request,
        token: &str,
        client_state: Option<String>,
    ) -> Result<Identity, TokenserverError> {
        let key_id = req
            .header_str("x-keyid")
            .ok_or_else(|| TokenserverError::unauthorized("invalid-key-id", "no X-KeyID header"))?;
        let key_id = parse_key_id(key_id).ok_or_else(|| {
            TokenserverError::unauthorized("invalid-credentials", "malformed X-KeyID")
        })?;
        if let Some(cs) = client_state {
            if !cs.eq_ignore_ascii_case(&key_id.client_state) {
                return Err(TokenserverError::unauthorized(
                    "invalid-client-state",
                    "X-Client-State does not match X-KeyID",
                ));
            }
        }
        let access = self.oauth.verify(token).map_err(|e| match e {
            OAuthError::Invalid(why) => TokenserverError::unauthorized("invalid-credentials", why),
            OAuthError::InvalidGeneration => TokenserverError::unauthorized(
                "invalid-generation",
                "fxa-generation is not an integer",
            ),
            OAuthError::Unavailable(why) => TokenserverError::Unavailable(why),
            OAuthError::Busy => TokenserverError::VerifierBusy,
        })?;
        Ok(Identity {
            email: format!("{}@{}", access.user, access.issuer),
            fxa_uid: access.user,
            claims: Claims {
                generation: access.generation.unwrap_or(0),
                keys_changed_at: key_id.keys_changed_at,
                client_state: key_id.client_state,
            },
        })
    }

    fn check_allowed(&self, id: &Identity) -> Result<(), TokenserverError> {
        let allowed = &self.config.allowed_users;
        let listed = allowed
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&id.fxa_uid) || a.eq_ignore_ascii_case(&id.email));
        if allowed.is_empty() || listed {
            Ok(())
        } else {
            Err(TokenserverError::unauthorized(
                "new-users-disabled",
                format!("account {} is not in allowed_users", id.fxa_uid),
            ))
        }
    }

    /// The account's current record, the node holding its data and `api_endpoint`.
    fn assign(
        &self,
        id: &Identity,
        refusal: &mut Option<Refusal>,
    ) -> Result<Option<(UserRecord, String, String)>, TokenserverError> {
        let node = self.config.node_url.as_str();
        let mut decide = |state: &crate::db::UserState| match rules::decide(
            state,
            &id.claims,
            &self.config.admission,
            node,
        ) {
            Ok(plan) => plan,
            Err(r) => {
                *refusal = Some(r);
                UserPlan::Reject
            }
        };
        Ok(match &self.assignment {
            Assignment::Static(pool) => pool
                .get()?
                .token_user(&id.email, now_ms(), &mut decide)?
                .map(|record| {
                    let endpoint = format!("{node}/storage/1.5/{}", record.uid);
                    (record, node.to_string(), endpoint)
                }),
            Assignment::Nodes(pool) => pool
                .get()?
                .token_user(&id.email, now_ms(), &mut decide)?
                .map(|a| (a.record, a.node, a.endpoint)),
        })
    }

    fn issue(&self, req: &Request, id: Identity) -> Result<Response, TokenserverError> {
        let mut refusal = None;
        let assigned = self.assign(&id, &mut refusal)?;
        let Some((record, node, endpoint)) = assigned else {
            return Err(refusal_error(
                refusal.unwrap_or(Refusal::NewUsersDisabled),
                &id,
            ));
        };
        let duration = requested_duration(&req.query, self.config.token_duration);
        let hashed_fxa_uid = metrics::hash_fxa_uid(&self.config.metrics_secret, &id.fxa_uid);
        let kid_ts = record
            .keys_changed_at
            .filter(|k| *k > 0)
            .unwrap_or(record.generation);
        let payload = TokenPayload {
            uid: record.uid,
            node: node.clone(),
            expires: (now_secs() as u64 + duration) as f64,
            salt: String::new(),
            fxa_uid: Some(id.fxa_uid.clone()),
            fxa_kid: Some(fxa_kid(kid_ts, &record.client_state)),
            hashed_device_id: Some(metrics::hash_device_id(
                &self.config.metrics_secret,
                &hashed_fxa_uid,
                None,
            )),
            hashed_fxa_uid: Some(hashed_fxa_uid.clone()),
        };
        let (token, key) = match &self.assignment {
            Assignment::Static(_) => mint(&self.config.signing_secret, &payload),
            Assignment::Nodes(_) => {
                mint(&node_secret(&self.config.signing_secret, &node), &payload)
            }
        };
        let body = json!({
            "id": token,
            "key": key,
            "uid": record.uid.wire(),
            "api_endpoint": endpoint,
            "duration": duration,
            "hashalg": "sha256",
            "hashed_fxa_uid": hashed_fxa_uid,
            "node_type": null,
        });
        Ok(Response::json(200, body.to_string()).with_header("X-Content-Type-Options", "nosniff"))
    }
}

fn refusal_error(r: Refusal, id: &Identity) -> TokenserverError {
    let why = format!("account {}", id.fxa_uid);
    match r {
        Refusal::NewUsersDisabled => TokenserverError::unauthorized("new-users-disabled", why),
        Refusal::InvalidGeneration => TokenserverError::unauthorized("invalid-generation", why),
        Refusal::InvalidKeysChangedAt => {
            TokenserverError::unauthorized("invalid-keysChangedAt", why)
        }
        Refusal::InvalidClientState(description) => TokenserverError::Unauthorized {
            status: "invalid-client-state",
            location: "header",
            name: "X-Client-State",
            description,
            why,
        },
    }
}

/// `?duration=N` shortens the token's life when `0 < N < default`.
fn requested_duration(query: &str, default: u64) -> u64 {
    query_pairs(query)
        .iter()
        .rev()
        .find(|(k, _)| k == "duration")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .filter(|n| *n > 0 && *n < default)
        .unwrap_or(default)
}

/// A network timeout for account-server calls.
pub fn timeout(secs: u64) -> Duration {
    Duration::from_secs(secs.clamp(1, 300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(requested_duration("", 3600), 3600);
        assert_eq!(requested_duration("duration=60", 3600), 60);
        assert_eq!(requested_duration("duration=7200", 3600), 3600);
        assert_eq!(requested_duration("duration=0", 3600), 3600);
        assert_eq!(requested_duration("duration=abc", 3600), 3600);
    }
}
