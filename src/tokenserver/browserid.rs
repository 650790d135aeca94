//! BrowserID assertions for old clients, checked by a remote verifier
//! (`browserid_verifier`); without one, BrowserID is answered `Unsupported`.

use std::time::Duration;

use serde_json::{json, Value};

use super::rules::Claims;
use super::{Identity, TokenserverError};

/// A remote verifier (`POST {"assertion", "audience"}` → `{"status": "okay", ...}`).
pub struct RemoteVerifier {
    url: String,
    audience: String,
    agent: ureq::Agent,
}

impl RemoteVerifier {
    /// A verifier at `url` for assertions made out to `audience`.
    pub fn new(url: String, audience: String, timeout: Duration) -> RemoteVerifier {
        RemoteVerifier {
            url,
            audience,
            agent: ureq::AgentBuilder::new().timeout(timeout).build(),
        }
    }

    /// Verifies an assertion; the client state comes from `X-Client-State`.
    pub(super) fn identity(
        &self,
        assertion: &str,
        client_state: Option<String>,
    ) -> Result<Identity, TokenserverError> {
        let body = json!({"assertion": assertion, "audience": self.audience}).to_string();
        let resp = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .send_string(&body);
        let text = match resp {
            Ok(r) => r.into_string().ok(),
            // Verifiers answer refusals with 4xx and a JSON reason.
            Err(ureq::Error::Status(code, r)) if (400..500).contains(&code) => r.into_string().ok(),
            Err(e) => return Err(TokenserverError::Unavailable(format!("{}: {e}", self.url))),
        };
        let v: Value = text
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| {
                TokenserverError::Unavailable(format!("{} did not answer JSON", self.url))
            })?;
        if v.get("status").and_then(Value::as_str) != Some("okay") {
            let reason = v
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let status = if reason.contains("expired") || reason.contains("issued later than") {
                "invalid-timestamp"
            } else {
                "invalid-credentials"
            };
            return Err(TokenserverError::unauthorized(
                status,
                format!("BrowserID refused: {reason}"),
            ));
        }
        let email = v
            .get("email")
            .and_then(Value::as_str)
            .filter(|e| e.contains('@'))
            .ok_or_else(|| {
                TokenserverError::unauthorized(
                    "invalid-credentials",
                    "BrowserID answer without email",
                )
            })?;
        let claims = v.get("idpClaims").cloned().unwrap_or(Value::Null);
        if claims.get("fxa-tokenVerified") == Some(&Value::Bool(false)) {
            return Err(TokenserverError::unauthorized(
                "invalid-credentials",
                "unverified token",
            ));
        }
        let int = |name: &str, status: &'static str| -> Result<i64, TokenserverError> {
            match claims.get(name) {
                None => Ok(0),
                Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or(0)),
                Some(_) => Err(TokenserverError::unauthorized(
                    status,
                    format!("{name} is not an integer"),
                )),
            }
        };
        Ok(Identity {
            fxa_uid: email.split('@').next().unwrap_or("").to_string(),
            email: email.to_string(),
            claims: Claims {
                generation: int("fxa-generation", "invalid-generation")?,
                keys_changed_at: int("fxa-keysChangedAt", "invalid-credentials")?,
                client_state: client_state.unwrap_or_default(),
            },
        })
    }
}
