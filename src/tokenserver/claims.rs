//! The claims of an access token whose signature verified.
//!
//! Checked: `exp`; `nbf` and `iat` (with a minute's leeway for clocks, and
//! `iat` no later than `exp`); `iss` when we know which account server issues
//! the tokens; the oldsync `scope`; `sub`; `fxa-generation` (an integer).
//!
//! `aud` is not checked, as Mozilla's server does not: FxA sets it to
//! Mozilla's tokenserver URL (or the client id), never to a self-hosted
//! server's, so checking it would refuse every real token; the signature and
//! the oldsync scope already say the token is meant for Sync.

use serde_json::{Map, Value};

use super::oauth::{covers, generation, host_of, OAuthConfig, OAuthError, OLDSYNC_SCOPE};

/// The `iss` of Mozilla's production access tokens: FxA's issuer is the
/// public URL of its content server (the `identity_provider`).
pub const PRODUCTION_JWT_ISSUER: &str = "https://accounts.firefox.com";
/// Clock skew allowed between us and the account server on `nbf` and `iat`.
const CLOCK_LEEWAY_SECS: f64 = 60.0;
/// Longest `iss` value quoted in the log.
const SHOWN_ISSUER_CHARS: usize = 200;

/// The `iss` JWTs must carry, when the configuration says which account server
/// issues them: the `identity_provider` (FxA's issuer is its content server's
/// public URL), or Mozilla's when its OAuth server is used explicitly or by
/// default. Unknown when only another `oauth_verifier`, or only configured
/// keys, are given: then `iss` is not checked rather than refusing real tokens
/// on a guess (the keys already say who signed).
pub fn expected_jwt_issuer(config: &OAuthConfig) -> Option<String> {
    if let Some(idp) = &config.identity_provider {
        return Some(idp.trim_end_matches('/').to_string());
    }
    match &config.verifier_url {
        Some(url) if host_of(url) == "oauth.accounts.firefox.com" => {
            Some(PRODUCTION_JWT_ISSUER.to_string())
        }
        Some(_) => None,
        None if config.jwks.is_empty() => Some(PRODUCTION_JWT_ISSUER.to_string()),
        None => None,
    }
}

/// Same issuer, up to a trailing slash and the case of the scheme and host.
fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn invalid(why: &str) -> OAuthError {
    OAuthError::Invalid(why.to_string())
}

/// A time claim (`nbf`, `iat`): absent is fine, anything but a number is not.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, OAuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| OAuthError::Invalid(format!("{name} is not a number"))),
    }
}

/// Checks `claims` at time `now` (seconds); gives the account uid (`sub`)
/// and `fxa-generation`.
pub fn check(
    claims: &Map<String, Value>,
    issuer: Option<&str>,
    now: f64,
) -> Result<(String, Option<i64>), OAuthError> {
    let exp = claims
        .get("exp")
        .and_then(Value::as_f64)
        .ok_or_else(|| invalid("no exp"))?;
    if exp <= now {
        return Err(invalid("access token expired"));
    }
    if time_claim(claims, "nbf")?.is_some_and(|nbf| nbf > now + CLOCK_LEEWAY_SECS) {
        return Err(invalid("access token not valid yet (nbf)"));
    }
    if let Some(iat) = time_claim(claims, "iat")? {
        if iat > now + CLOCK_LEEWAY_SECS {
            return Err(invalid("access token issued in the future (iat)"));
        }
        if iat > exp {
            return Err(invalid("access token issued after it expires (iat > exp)"));
        }
    }
    if let Some(expected) = issuer {
        match claims.get("iss").and_then(Value::as_str) {
            Some(iss) if same_issuer(iss, expected) => {}
            Some(iss) => {
                let shown: String = iss.chars().take(SHOWN_ISSUER_CHARS).collect();
                return Err(OAuthError::Invalid(format!(
                    "access token issued by {shown:?}, not by the account server {expected}"
                )));
            }
            None => return Err(invalid("access token without an issuer (iss)")),
        }
    }
    let scopes: Vec<&str> = match claims.get("scope") {
        Some(Value::String(s)) => s.split_whitespace().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !covers(&scopes, OLDSYNC_SCOPE) {
        return Err(invalid("access token lacks the oldsync scope"));
    }
    let user = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("no sub"))?;
    Ok((user.to_string(), generation(claims.get("fxa-generation"))?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenserver::jwt;
    use serde_json::json;

    const NOW: f64 = 1_800_000_000.0;
    const ISS: &str = "https://fxa.example.org";

    fn claims(extra: Value) -> Map<String, Value> {
        let mut c = json!({
            "sub": "abc", "scope": OLDSYNC_SCOPE, "exp": NOW + 3600.0, "iat": NOW, "iss": ISS,
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c.as_object().unwrap().clone()
    }

    fn refused(extra: Value, issuer: Option<&str>) -> bool {
        matches!(
            check(&claims(extra), issuer, NOW),
            Err(OAuthError::Invalid(_))
        )
    }

    #[test]
    fn times() {
        assert_eq!(
            check(&claims(json!({})), Some(ISS), NOW),
            Ok(("abc".to_string(), None))
        );
        assert!(refused(json!({"exp": NOW}), None));
        assert!(refused(json!({"exp": null}), None));
        assert!(refused(json!({"nbf": NOW + 61.0}), None));
        assert!(!refused(json!({"nbf": NOW + 59.0}), None));
        assert!(refused(json!({"nbf": "later"}), None));
        assert!(refused(json!({"iat": NOW + 61.0}), None));
        assert!(!refused(json!({"iat": NOW + 59.0}), None));
        assert!(!refused(json!({"iat": null}), None));
        assert!(refused(json!({"iat": true}), None));
        assert!(refused(json!({"iat": NOW + 50.0, "exp": NOW + 40.0}), None));
    }

    #[test]
    fn issuers() {
        assert!(!refused(json!({"iss": format!("{ISS}/")}), Some(ISS)));
        assert!(!refused(
            json!({"iss": "HTTPS://FXA.example.org"}),
            Some(ISS)
        ));
        assert!(refused(
            json!({"iss": "https://fxa.example.org.evil"}),
            Some(ISS)
        ));
        assert!(refused(json!({"iss": null}), Some(ISS)));
        assert!(refused(json!({"iss": 5}), Some(ISS)));
        assert!(!refused(json!({"iss": "anyone"}), None));
        assert!(!refused(json!({"aud": "https://elsewhere"}), Some(ISS)));
    }

    #[test]
    fn expected_issuers() {
        let issuer = |verifier_url: Option<&str>, idp: Option<&str>, jwks: bool| {
            expected_jwt_issuer(&OAuthConfig {
                verifier_url: verifier_url.map(String::from),
                identity_provider: idp.map(String::from),
                jwks: if jwks {
                    jwt::parse_jwks(r#"{"kty": "RSA", "n": "AQAB", "e": "AQAB"}"#).unwrap()
                } else {
                    Vec::new()
                },
                ..OAuthConfig::default()
            })
        };
        let production = Some(PRODUCTION_JWT_ISSUER.to_string());
        assert_eq!(issuer(None, None, false), production);
        assert_eq!(
            issuer(Some("https://oauth.accounts.firefox.com/v1"), None, false),
            production
        );
        assert_eq!(
            issuer(None, Some("https://accounts.firefox.com/"), false),
            production
        );
        assert_eq!(
            issuer(
                Some("https://oauth.example.org"),
                Some("https://fxa.example.org/"),
                true
            ),
            Some(ISS.to_string())
        );
        assert_eq!(issuer(Some("https://oauth.example.org"), None, false), None);
        assert_eq!(issuer(None, None, true), None);
    }
}
