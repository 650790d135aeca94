//! Tokenlib v1 tokens, byte-compatible with Python `tokenlib` 2.0 (spec §5).
//!
//! A token is `b64u(payload_json ‖ HMAC-SHA256(sig_key, payload_json))` where
//! `sig_key = HKDF(secret, salt = 32 zero bytes, info = "…/signing")`. The Hawk key handed to the
//! client is `b64u(HKDF(secret, salt = payload.salt, info = "…/derive/" + token))`, and the
//! client uses the *ASCII text* of that base64 string as its HMAC key.

use crate::random::{random_bytes, to_hex};
use crate::uid::Uid;
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use ring::{hkdf, hmac};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

const SIGNING_INFO: &[u8] = b"services.mozilla.com/tokenlib/v1/signing";
const DERIVE_INFO: &[u8] = b"services.mozilla.com/tokenlib/v1/derive/";
const SIG_LEN: usize = 32;

/// The claims carried by a token (only the fields this server uses; others are ignored).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenPayload {
    pub uid: Uid,
    /// Node URL the token is valid for (`public_url`).
    pub node: String,
    /// Expiry time, seconds since the epoch.
    pub expires: f64,
    /// Per-token salt for the derived Hawk key.
    pub salt: String,
    /// Raw FxA uid (absent in minimal and legacy tokens).
    pub fxa_uid: Option<String>,
    /// `keys_changed_at`-`client_state` key id.
    pub fxa_kid: Option<String>,
    pub hashed_fxa_uid: Option<String>,
    pub hashed_device_id: Option<String>,
}

/// Why a token was refused. None of these carry token bytes, so they are safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not base64url, too short, or the signed payload is not a JSON object.
    Malformed,
    /// No configured secret produced this signature.
    BadSignature,
    /// `expires <= now` (and, for the authenticator, outside the allowed grace period).
    Expired,
    /// Signed, but a field fails validation; names the field.
    InvalidPayload(&'static str),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed => f.write_str("malformed token"),
            TokenError::BadSignature => f.write_str("invalid token signature"),
            TokenError::Expired => f.write_str("expired token"),
            TokenError::InvalidPayload(field) => write!(f, "invalid token field `{field}`"),
        }
    }
}

impl std::error::Error for TokenError {}

/// A token whose signature and payload checked out.
#[derive(Clone, PartialEq)]
pub struct VerifiedToken {
    pub payload: TokenPayload,
    /// The derived Hawk key as its base64url string (the HMAC key is these ASCII bytes).
    pub key: String,
    /// True when the token is past `expires` but was accepted within the grace period.
    pub expired: bool,
    /// Index in the secrets list of the secret that verified the token.
    pub secret_index: usize,
}

impl fmt::Debug for VerifiedToken {
    // The derived key is a credential: keep it out of any debug/log output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("payload", &self.payload)
            .field("key", &"<redacted>")
            .field("expired", &self.expired)
            .field("secret_index", &self.secret_index)
            .finish()
    }
}

/// RFC 5869 HKDF-SHA256 with a 32-byte output, by `ring::hkdf`: `info` is the concatenation of
/// its parts.
fn hkdf32(ikm: &[u8], salt: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(info, hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out))
        // ring refuses only outputs over 255 blocks or a buffer of another length than asked.
        .expect("a 32-byte HKDF-SHA256 output is always allowed");
    out
}

/// The HMAC key that signs tokens for `secret`.
fn signing_key(secret: &str) -> hmac::Key {
    let sig_key = hkdf32(secret.as_bytes(), &[0u8; 32], &[SIGNING_INFO]);
    hmac::Key::new(hmac::HMAC_SHA256, &sig_key)
}

/// The derived Hawk key (base64url with padding, 44 chars) for `token` minted with `secret`.
pub fn derive_key(secret: &str, token: &str, salt: &str) -> String {
    let key = hkdf32(
        secret.as_bytes(),
        salt.as_bytes(),
        &[DERIVE_INFO, token.as_bytes()],
    );
    URL_SAFE.encode(key)
}

/// Sign the given JSON text as-is and return `(token, derived_key)`; for test vectors and
/// interop checks. A missing or non-string `salt` in the JSON derives the key with an empty salt.
pub fn mint_raw(secret: &str, payload_json: &str) -> (String, String) {
    let key = signing_key(secret);
    let mut bytes = payload_json.as_bytes().to_vec();
    bytes.extend_from_slice(hmac::sign(&key, payload_json.as_bytes()).as_ref());
    let token = URL_SAFE.encode(&bytes);
    let salt = serde_json::from_str::<Value>(payload_json)
        .ok()
        .and_then(|v| v.get("salt").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let derived = derive_key(secret, &token, &salt);
    (token, derived)
}

/// A fresh 6-hex-digit salt. Salts only need to differ between tokens, so if the OS RNG fails
/// we fall back to a clock/counter mix rather than refusing to issue tokens.
fn new_salt() -> String {
    if let Ok(b) = random_bytes(3) {
        return to_hex(&b);
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mix = nanos ^ COUNTER.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    format!("{:06x}", mix & 0xff_ffff)
}

/// `expires` as Python prints it: tokenserver always uses an int; fractional values fall back
/// to the shortest round-trip form; a non-finite value is written as 0 (an expired token).
fn push_py_json_number(out: &mut String, x: f64) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: larger floats are not exact integers
    if !x.is_finite() {
        out.push('0');
    } else if x.fract() == 0.0 && x.abs() < EXACT {
        out.push_str(&format!("{}", x as i64));
    } else {
        out.push_str(&format!("{x}"));
    }
}

/// Mint a token as Python tokenlib 2.0 + tokenserver do: `json.dumps` with `", "`/`": "`
/// separators, `ensure_ascii`, key order node, fxa_uid, hashed_device_id, uid, hashed_fxa_uid,
/// fxa_kid, expires, salt (absent optionals omitted). An empty `salt` is replaced by 3 random
/// bytes as 6 lower-case hex digits. Returns `(token, derived_key)`.
pub fn mint(secret: &str, payload: &TokenPayload) -> (String, String) {
    let salt = if payload.salt.is_empty() {
        new_salt()
    } else {
        payload.salt.clone()
    };
    let mut json = String::with_capacity(256);
    json.push_str("{\"node\": ");
    crate::pyjson::push_str(&mut json, &payload.node);
    let optional = |json: &mut String, name: &str, value: &Option<String>| {
        if let Some(v) = value {
            json.push_str(", \"");
            json.push_str(name);
            json.push_str("\": ");
            crate::pyjson::push_str(json, v);
        }
    };
    optional(&mut json, "fxa_uid", &payload.fxa_uid);
    optional(&mut json, "hashed_device_id", &payload.hashed_device_id);
    json.push_str(&format!(", \"uid\": {}", payload.uid.wire()));
    optional(&mut json, "hashed_fxa_uid", &payload.hashed_fxa_uid);
    optional(&mut json, "fxa_kid", &payload.fxa_kid);
    json.push_str(", \"expires\": ");
    push_py_json_number(&mut json, payload.expires);
    json.push_str(", \"salt\": ");
    crate::pyjson::push_str(&mut json, &salt);
    json.push('}');
    mint_raw(secret, &json)
}

/// `^[A-Za-z0-9=\-_]{1,64}$`: the backstop the Python storage server applies to FxA ids.
fn valid_fxa_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'-' || b == b'_')
}

/// A present field must be a string matching the FxA id pattern.
fn fxa_id(data: &Map<String, Value>, field: &'static str) -> Result<Option<String>, TokenError> {
    match data.get(field) {
        None => Ok(None),
        Some(Value::String(s)) if valid_fxa_id(s) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::InvalidPayload(field)),
    }
}

/// A field that must be present (or the whole legacy/new group is rejected).
fn required_fxa_id(data: &Map<String, Value>, field: &'static str) -> Result<String, TokenError> {
    fxa_id(data, field)?.ok_or(TokenError::InvalidPayload(field))
}

/// Validate the signed JSON as the Python storage server's `_parse_token` does (spec §6 step 3).
fn payload_from_json(bytes: &[u8]) -> Result<TokenPayload, TokenError> {
    let data = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => map,
        _ => return Err(TokenError::Malformed),
    };
    // JSON integers only: `1.0`, `"42"`, `true` and negatives are all refused, and so is
    // 0 (the Python server's first tokens on PostgreSQL named uid 0 for every new account).
    let uid = data
        .get("uid")
        .and_then(Value::as_u64)
        .and_then(Uid::from_wire)
        .ok_or(TokenError::InvalidPayload("uid"))?;
    let node = match data.get("node") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(TokenError::InvalidPayload("node")),
    };
    let expires = data
        .get("expires")
        .and_then(Value::as_f64)
        .ok_or(TokenError::InvalidPayload("expires"))?;
    let salt = match data.get("salt") {
        Some(Value::String(s)) if s.is_ascii() => s.clone(),
        _ => return Err(TokenError::InvalidPayload("salt")),
    };
    // Old tokenservers put the *hashed* uid in `fxa_uid`; newer ones send both (spec §6).
    let (fxa_uid, hashed_fxa_uid, fxa_kid) = if data.contains_key("hashed_fxa_uid") {
        (
            Some(required_fxa_id(&data, "fxa_uid")?),
            Some(required_fxa_id(&data, "hashed_fxa_uid")?),
            Some(required_fxa_id(&data, "fxa_kid")?),
        )
    } else {
        (None, fxa_id(&data, "fxa_uid")?, None)
    };
    let hashed_device_id = match fxa_id(&data, "hashed_device_id")? {
        Some(id) => Some(id),
        None => fxa_id(&data, "device_id")?,
    };
    Ok(TokenPayload {
        uid,
        node,
        expires,
        salt,
        fxa_uid,
        fxa_kid,
        hashed_fxa_uid,
        hashed_device_id,
    })
}

/// Check the signature against every secret and validate the payload, without looking at
/// `expires`. Returns `(payload, derived_key, secret_index)`.
pub fn verify(
    secrets: &[String],
    token: &str,
) -> Result<(TokenPayload, String, usize), TokenError> {
    let raw = URL_SAFE
        .decode(token.as_bytes())
        .map_err(|_| TokenError::Malformed)?;
    if raw.len() <= SIG_LEN {
        return Err(TokenError::Malformed);
    }
    let (payload, sig) = raw.split_at(raw.len() - SIG_LEN);
    let index = secrets
        .iter()
        .position(|secret| hmac::verify(&signing_key(secret), payload, sig).is_ok())
        .ok_or(TokenError::BadSignature)?;
    // JSON is only parsed once the bytes are known to come from us.
    let data = payload_from_json(payload)?;
    let secret = secrets.get(index).ok_or(TokenError::BadSignature)?;
    let key = derive_key(secret, token, &data.salt);
    Ok((data, key, index))
}

/// Verify `token` with any of `secrets` (rotation: all are tried), validate its payload and
/// refuse it if `expires <= now` (seconds). `expired` is always false in the result.
pub fn parse(secrets: &[String], token: &str, now: f64) -> Result<VerifiedToken, TokenError> {
    let (payload, key, secret_index) = verify(secrets, token)?;
    if payload.expires <= now {
        return Err(TokenError::Expired);
    }
    Ok(VerifiedToken {
        payload,
        key,
        expired: false,
        secret_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const VECTOR_JSON: &str = "{\"node\": \"http://localhost:5000\", \"uid\": 1, \"fxa_kid\": \"0000000000900-qqo\", \"expires\": 1700000300, \"fxa_uid\": \"user1\", \"hashed_device_id\": \"fde2c0b664592c6d894df60d9e68691c\", \"hashed_fxa_uid\": \"87dbc9a2388d0f1dd7b21ce37fabd77d\", \"salt\": \"0aebfa\"}";
    const VECTOR_TOKEN: &str = "eyJub2RlIjogImh0dHA6Ly9sb2NhbGhvc3Q6NTAwMCIsICJ1aWQiOiAxLCAiZnhhX2tpZCI6ICIwMDAwMDAwMDAwOTAwLXFxbyIsICJleHBpcmVzIjogMTcwMDAwMDMwMCwgImZ4YV91aWQiOiAidXNlcjEiLCAiaGFzaGVkX2RldmljZV9pZCI6ICJmZGUyYzBiNjY0NTkyYzZkODk0ZGY2MGQ5ZTY4NjkxYyIsICJoYXNoZWRfZnhhX3VpZCI6ICI4N2RiYzlhMjM4OGQwZjFkZDdiMjFjZTM3ZmFiZDc3ZCIsICJzYWx0IjogIjBhZWJmYSJ9v-1qEBdJHREE0BW89ty2kA7egf8EDUowiH-puMbDwnw=";
    const VECTOR_KEY: &str = "QqYf8YMxrySlxDBOCGMFmpzGEn2RR5vjEj4YxwP21Dk=";

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn vector_payload() -> TokenPayload {
        TokenPayload {
            uid: crate::uid::Uid::new(1).unwrap(),
            node: "http://localhost:5000".into(),
            expires: 1_700_000_300.0,
            salt: "0aebfa".into(),
            fxa_uid: Some("user1".into()),
            fxa_kid: Some("0000000000900-qqo".into()),
            hashed_fxa_uid: Some("87dbc9a2388d0f1dd7b21ce37fabd77d".into()),
            hashed_device_id: Some("fde2c0b664592c6d894df60d9e68691c".into()),
        }
    }

    /// Re-sign `json` and return just the token.
    fn token_for(json: &str) -> String {
        mint_raw(SECRET, json).0
    }

    #[test]
    fn spec_vector_sig_key() {
        let sig_key = hkdf32(SECRET.as_bytes(), &[0u8; 32], &[SIGNING_INFO]);
        assert_eq!(
            to_hex(&sig_key),
            "808ca5c7e5a926ee25bb701543bb0069cdf76479e3c3b30c44fb2e60786fbee7"
        );
    }

    /// Against an independent implementation (RustCrypto's `hkdf`), with a multi-part info.
    #[test]
    fn hkdf_matches_rustcrypto_hkdf() {
        let mut expected = [0u8; 32];
        ::hkdf::Hkdf::<sha2::Sha256>::new(Some(b"0aebfa"), SECRET.as_bytes())
            .expand(&[DERIVE_INFO, b"tok"].concat(), &mut expected)
            .unwrap();
        assert_eq!(
            hkdf32(SECRET.as_bytes(), b"0aebfa", &[DERIVE_INFO, b"tok"]),
            expected
        );
    }

    /// RFC 5869 appendix A.1 (test case 1), split info included.
    #[test]
    fn hkdf_rfc5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00u8..=0x0c).collect();
        let okm = hkdf32(
            &ikm,
            &salt,
            &[
                &[0xf0, 0xf1, 0xf2, 0xf3, 0xf4],
                &[0xf5, 0xf6, 0xf7, 0xf8, 0xf9],
            ],
        );
        assert_eq!(
            to_hex(&okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    #[test]
    fn spec_vector_token_and_key() {
        let (token, key) = mint_raw(SECRET, VECTOR_JSON);
        assert_eq!(token, VECTOR_TOKEN);
        assert_eq!(key, VECTOR_KEY);
        assert_eq!(derive_key(SECRET, VECTOR_TOKEN, "0aebfa"), VECTOR_KEY);
    }

    #[test]
    fn mint_uses_tokenserver_key_order() {
        let (token, key) = mint(SECRET, &vector_payload());
        let raw = URL_SAFE.decode(&token).unwrap();
        let json = std::str::from_utf8(&raw[..raw.len() - 32]).unwrap();
        assert_eq!(
            json,
            "{\"node\": \"http://localhost:5000\", \"fxa_uid\": \"user1\", \"hashed_device_id\": \"fde2c0b664592c6d894df60d9e68691c\", \"uid\": 1, \"hashed_fxa_uid\": \"87dbc9a2388d0f1dd7b21ce37fabd77d\", \"fxa_kid\": \"0000000000900-qqo\", \"expires\": 1700000300, \"salt\": \"0aebfa\"}"
        );
        assert_eq!(token, token_for(json));
        assert_eq!(key, derive_key(SECRET, &token, "0aebfa"));
        let parsed = parse(&secrets(&[SECRET]), &token, 1_700_000_000.0).unwrap();
        assert_eq!(parsed.payload, vector_payload());
        assert_eq!(parsed.key, key);
    }

    #[test]
    fn mint_minimal_and_random_salt() {
        let p = TokenPayload {
            uid: crate::uid::Uid::new(7).unwrap(),
            node: "http://x".into(),
            expires: 100.5,
            salt: String::new(),
            fxa_uid: None,
            fxa_kid: None,
            hashed_fxa_uid: None,
            hashed_device_id: None,
        };
        let (token, _) = mint(SECRET, &p);
        let raw = URL_SAFE.decode(&token).unwrap();
        let json = std::str::from_utf8(&raw[..raw.len() - 32]).unwrap();
        assert!(json
            .starts_with("{\"node\": \"http://x\", \"uid\": 7, \"expires\": 100.5, \"salt\": \""));
        let parsed = parse(&secrets(&[SECRET]), &token, 0.0).unwrap().payload;
        assert_eq!(parsed.salt.len(), 6);
        assert!(parsed.salt.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(parsed.expires, 100.5);
    }

    #[test]
    fn python_json_string_escapes() {
        // Expected output checked against Python 3 `json.dumps` (DEL is escaped too).
        let mut out = String::new();
        crate::pyjson::push_str(&mut out, "a\"b\\c\n\u{1}\u{7f}é😀");
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001\\u007f\\u00e9\\ud83d\\ude00\"");
    }

    #[test]
    fn parse_vector_token() {
        let v = parse(&secrets(&[SECRET]), VECTOR_TOKEN, 1_700_000_000.0).unwrap();
        assert_eq!(v.payload, vector_payload());
        assert_eq!(v.key, VECTOR_KEY);
        assert_eq!(v.secret_index, 0);
        assert!(!v.expired);
    }

    #[test]
    fn parse_with_rotation_list() {
        let list = secrets(&["old-secret", SECRET, "newest-secret"]);
        let v = parse(&list, VECTOR_TOKEN, 1_700_000_000.0).unwrap();
        assert_eq!(v.secret_index, 1);
        assert_eq!(v.key, VECTOR_KEY);
    }

    #[test]
    fn wrong_secret_or_tampering_is_bad_signature() {
        assert_eq!(
            parse(&secrets(&["nope", "other"]), VECTOR_TOKEN, 0.0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(parse(&[], VECTOR_TOKEN, 0.0), Err(TokenError::BadSignature));
        let mut raw = URL_SAFE.decode(VECTOR_TOKEN).unwrap();
        raw[10] ^= 1;
        let tampered = URL_SAFE.encode(&raw);
        assert_eq!(
            parse(&secrets(&[SECRET]), &tampered, 0.0),
            Err(TokenError::BadSignature)
        );
        let last = raw.len() - 1;
        raw[10] ^= 1;
        raw[last] ^= 0x80;
        assert_eq!(
            parse(&secrets(&[SECRET]), &URL_SAFE.encode(&raw), 0.0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let s = secrets(&[SECRET]);
        for bad in [
            "",
            "!!!!",
            "abc",
            "eyJ=",
            "a b c d",
            "Zm9v",
            &VECTOR_TOKEN[1..],
        ] {
            assert_eq!(parse(&s, bad, 0.0), Err(TokenError::Malformed), "{bad:?}");
        }
        // Signed but not a JSON object.
        assert_eq!(
            parse(&s, &token_for("[1, 2]"), 0.0),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            parse(&s, &token_for("not json"), 0.0),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn payload_field_validation() {
        let s = secrets(&[SECRET]);
        let check = |json: &str| parse(&s, &token_for(json), 0.0).map(|v| v.payload);
        let base = |uid: &str| {
            format!("{{\"uid\": {uid}, \"node\": \"n\", \"expires\": 10, \"salt\": \"aa\"}}")
        };
        assert!(check(&base("42")).is_ok());
        for bad_uid in [
            "\"42\"",
            "-1",
            "1.0",
            "true",
            "null",
            "18446744073709551616",
        ] {
            assert_eq!(
                check(&base(bad_uid)),
                Err(TokenError::InvalidPayload("uid")),
                "{bad_uid}"
            );
        }
        assert_eq!(
            check("{\"uid\": 1, \"node\": 5, \"expires\": 10, \"salt\": \"aa\"}"),
            Err(TokenError::InvalidPayload("node"))
        );
        assert_eq!(
            check("{\"uid\": 1, \"node\": \"n\", \"expires\": \"10\", \"salt\": \"aa\"}"),
            Err(TokenError::InvalidPayload("expires"))
        );
        assert_eq!(
            check("{\"uid\": 1, \"node\": \"n\", \"expires\": 10}"),
            Err(TokenError::InvalidPayload("salt"))
        );
        // hashed_fxa_uid requires fxa_uid and fxa_kid, all matching the id pattern.
        let with = |extra: &str| {
            check(&format!(
                "{{\"uid\": 1, \"node\": \"n\", \"expires\": 10, \"salt\": \"aa\"{extra}}}"
            ))
        };
        assert_eq!(
            with(", \"hashed_fxa_uid\": \"h\", \"fxa_uid\": \"u\""),
            Err(TokenError::InvalidPayload("fxa_kid"))
        );
        assert_eq!(
            with(", \"hashed_fxa_uid\": \"h\", \"fxa_uid\": \"u/\", \"fxa_kid\": \"k\""),
            Err(TokenError::InvalidPayload("fxa_uid"))
        );
        let long = "a".repeat(65);
        assert_eq!(
            with(&format!(
                ", \"hashed_fxa_uid\": \"{long}\", \"fxa_uid\": \"u\", \"fxa_kid\": \"k\""
            )),
            Err(TokenError::InvalidPayload("hashed_fxa_uid"))
        );
        assert_eq!(
            with(", \"fxa_uid\": \"\""),
            Err(TokenError::InvalidPayload("fxa_uid"))
        );
        assert_eq!(
            with(", \"hashed_device_id\": 3"),
            Err(TokenError::InvalidPayload("hashed_device_id"))
        );
        assert_eq!(
            with(", \"device_id\": \"a b\""),
            Err(TokenError::InvalidPayload("device_id"))
        );
        // Legacy tokens: bare fxa_uid is the hashed uid, device_id the hashed device id.
        let legacy =
            with(", \"fxa_uid\": \"abc-_=\", \"device_id\": \"d1\", \"fxa_kid\": \"x y\"").unwrap();
        assert_eq!(legacy.hashed_fxa_uid.as_deref(), Some("abc-_="));
        assert_eq!(legacy.fxa_uid, None);
        assert_eq!(legacy.fxa_kid, None);
        assert_eq!(legacy.hashed_device_id.as_deref(), Some("d1"));
    }

    #[test]
    fn expiry_boundary() {
        let s = secrets(&[SECRET]);
        assert!(parse(&s, VECTOR_TOKEN, 1_700_000_299.999).is_ok());
        assert_eq!(
            parse(&s, VECTOR_TOKEN, 1_700_000_300.0),
            Err(TokenError::Expired)
        );
        assert_eq!(
            parse(&s, VECTOR_TOKEN, 1_800_000_000.0),
            Err(TokenError::Expired)
        );
        // Expiry is judged only after the signature: a forged expired token is BadSignature.
        assert_eq!(
            parse(&secrets(&["x"]), VECTOR_TOKEN, 1_800_000_000.0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn debug_hides_key() {
        let v = parse(&secrets(&[SECRET]), VECTOR_TOKEN, 0.0).unwrap();
        assert!(!format!("{v:?}").contains(VECTOR_KEY));
    }
}
