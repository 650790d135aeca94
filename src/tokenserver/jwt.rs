//! RS256 access tokens (JWTs) checked against JSON Web Keys, with `ring`.
//!
//! Only what FxA issues is accepted: `alg` RS256 (never `none`, never HMAC,
//! whatever the header says), `typ` `at+jwt`, RSA keys. Claims are checked by
//! the caller.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{Map, Value};

/// An RSA public key from a JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaJwk {
    pub kid: Option<String>,
    n: Vec<u8>,
    e: Vec<u8>,
}

/// Why a JWK set is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwkError {
    /// Not JSON, or not a key / key list / `{"keys": [...]}`.
    Malformed,
    /// A key that is not RSA (wrong `kty`), or lacks `n`/`e`.
    NotRsa,
}

impl std::fmt::Display for JwkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwkError::Malformed => write!(f, "not a JSON Web Key set"),
            JwkError::NotRsa => write!(f, "a JSON Web Key that is not an RSA public key"),
        }
    }
}

impl std::error::Error for JwkError {}

/// Parses `{"keys": [...]}`, a list of keys, or a single key. Keys that are
/// not RSA make the whole set an error, so a misconfiguration is loud.
pub fn parse_jwks(text: &str) -> Result<Vec<RsaJwk>, JwkError> {
    let value: Value = serde_json::from_str(text).map_err(|_| JwkError::Malformed)?;
    let keys = match value {
        Value::Object(ref o) if o.contains_key("keys") => match o.get("keys") {
            Some(Value::Array(keys)) => keys.clone(),
            _ => return Err(JwkError::Malformed),
        },
        Value::Array(keys) => keys,
        Value::Object(_) => vec![value],
        _ => return Err(JwkError::Malformed),
    };
    keys.iter().map(parse_jwk).collect()
}

fn parse_jwk(v: &Value) -> Result<RsaJwk, JwkError> {
    let o = v.as_object().ok_or(JwkError::Malformed)?;
    if o.get("kty").and_then(Value::as_str) != Some("RSA") {
        return Err(JwkError::NotRsa);
    }
    let b64 = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
            .filter(|b| !b.is_empty())
            .ok_or(JwkError::NotRsa)
    };
    Ok(RsaJwk {
        kid: o.get("kid").and_then(Value::as_str).map(String::from),
        n: b64("n")?,
        e: b64("e")?,
    })
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts with a JSON header: maybe an opaque token.
    NotAJwt,
    /// A JWT, but not one we accept (alg, typ, claims layout).
    Unacceptable(&'static str),
    /// No known key has this `kid`.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
}

/// A JWT whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    pub claims: Map<String, Value>,
}

/// The header's `kid`, if the token looks like a JWT at all.
pub fn kid(token: &str) -> Result<Option<String>, JwtError> {
    let header = split(token)?.0;
    Ok(header.get("kid").and_then(Value::as_str).map(String::from))
}

type Parts<'a> = (Map<String, Value>, &'a str, &'a str);

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::NotAJwt);
    };
    let header_bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| JwtError::NotAJwt)?;
    let Ok(Value::Object(header)) = serde_json::from_slice(&header_bytes) else {
        return Err(JwtError::NotAJwt);
    };
    let signed_len = h.len() + 1 + p.len();
    Ok((header, &token[..signed_len], s))
}

/// Verifies `token` against `keys` (by `kid` when the header has one).
pub fn verify(token: &str, keys: &[RsaJwk]) -> Result<VerifiedJwt, JwtError> {
    let (header, signed, sig_b64) = split(token)?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(JwtError::Unacceptable("alg is not RS256"));
    }
    let typ = header
        .get("typ")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    if !matches!(typ.as_deref(), Some("at+jwt") | Some("application/at+jwt")) {
        return Err(JwtError::Unacceptable("typ is not at+jwt"));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| JwtError::Unacceptable("signature is not base64url"))?;
    let kid = header.get("kid").and_then(Value::as_str);
    let candidates: Vec<&RsaJwk> = keys
        .iter()
        .filter(|k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
        .collect();
    if candidates.is_empty() {
        return Err(JwtError::UnknownKey);
    }
    let ok = candidates.iter().any(|k| {
        RsaPublicKeyComponents { n: &k.n, e: &k.e }
            .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &sig)
            .is_ok()
    });
    if !ok {
        return Err(JwtError::BadSignature);
    }
    let payload_b64 = signed.split('.').nth(1).unwrap_or("");
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| JwtError::Unacceptable("claims are not base64url"))?;
    match serde_json::from_slice(&payload) {
        Ok(Value::Object(claims)) => Ok(VerifiedJwt { claims }),
        _ => Err(JwtError::Unacceptable("claims are not a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwk_sets() {
        let key = r#"{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}"#;
        assert_eq!(parse_jwks(key).unwrap().len(), 1);
        assert_eq!(parse_jwks(&format!("[{key}, {key}]")).unwrap().len(), 2);
        assert_eq!(
            parse_jwks(&format!(r#"{{"keys": [{key}]}}"#)).unwrap()[0]
                .kid
                .as_deref(),
            Some("k1")
        );
        assert_eq!(
            parse_jwks(r#"{"kty": "EC", "x": "a"}"#),
            Err(JwkError::NotRsa)
        );
        assert_eq!(
            parse_jwks(r#"{"kty": "oct", "k": "AQAB"}"#),
            Err(JwkError::NotRsa)
        );
        assert_eq!(parse_jwks("nope"), Err(JwkError::Malformed));
        assert_eq!(parse_jwks(r#"{"keys": 5}"#), Err(JwkError::Malformed));
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn refuses_other_algorithms_before_any_key() {
        let keys = parse_jwks(r#"{"kty": "RSA", "n": "AQAB", "e": "AQAB"}"#).unwrap();
        let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"at+jwt"}"#), b64("{}"));
        assert_eq!(
            verify(&none, &keys).unwrap_err(),
            JwtError::Unacceptable("alg is not RS256")
        );
        let hs = format!(
            "{}.{}.AAAA",
            b64(r#"{"alg":"HS256","typ":"at+jwt"}"#),
            b64("{}")
        );
        assert_eq!(
            verify(&hs, &keys).unwrap_err(),
            JwtError::Unacceptable("alg is not RS256")
        );
        let typ = format!(
            "{}.{}.AAAA",
            b64(r#"{"alg":"RS256","typ":"JWT"}"#),
            b64("{}")
        );
        assert_eq!(
            verify(&typ, &keys).unwrap_err(),
            JwtError::Unacceptable("typ is not at+jwt")
        );
        let bad = format!(
            "{}.{}.AAAA",
            b64(r#"{"alg":"RS256","typ":"at+jwt"}"#),
            b64("{}")
        );
        assert_eq!(verify(&bad, &keys).unwrap_err(), JwtError::BadSignature);
        let other_kid = format!(
            "{}.{}.AAAA",
            b64(r#"{"alg":"RS256","typ":"at+jwt","kid":"x"}"#),
            b64("{}")
        );
        let kid_keys =
            parse_jwks(r#"{"kty": "RSA", "kid": "y", "n": "AQAB", "e": "AQAB"}"#).unwrap();
        assert_eq!(
            verify(&other_kid, &kid_keys).unwrap_err(),
            JwtError::UnknownKey
        );
    }

    #[test]
    fn opaque_tokens_are_not_jwts() {
        for t in ["abcdef0123456789", "a.b", "a.b.c.d", "!!.x.y"] {
            assert_eq!(verify(t, &[]).unwrap_err(), JwtError::NotAJwt, "{t}");
        }
    }
}
