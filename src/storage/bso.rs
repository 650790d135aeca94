//! Validation of incoming records, with the Python server's rules and reasons.

use serde_json::{Map, Value};

use crate::db::BsoUpdate;

/// Largest `ttl` kept; larger ones are ignored, as the Python server did.
pub const MAX_TTL: i64 = 31_536_000;
pub const MAX_SORTINDEX: i64 = 999_999_999;

/// Why a whole request body is refused (400 with Weave code 8 or 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON at all (code 6).
    InvalidJson,
    /// JSON, but not the expected shape (code 8).
    InvalidBsos,
}

/// Checks that `s` is a valid record id: 1-64 printable ASCII characters.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// Checks that `s` is a valid collection name.
pub fn valid_collection(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Python's `int()` on a JSON value: numbers truncate, strings must be integer literals.
fn python_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 9.0e18)
                .map(|f| f.trunc() as i64)
        }),
        Value::String(s) => {
            let t = s.trim();
            let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            t.parse().ok()
        }
        _ => None,
    }
}

/// A record from a request body: the whole body fails on non-scalar fields;
/// otherwise `Err(reason)` marks just this record as failed.
pub fn parse_bso(
    obj: &Map<String, Value>,
    max_payload_bytes: u64,
) -> Result<Result<(Option<String>, BsoUpdate), String>, BodyError> {
    if obj.values().any(|v| v.is_array() || v.is_object()) {
        return Err(BodyError::InvalidBsos);
    }
    Ok(validate(obj, max_payload_bytes))
}

fn validate(
    obj: &Map<String, Value>,
    max_payload_bytes: u64,
) -> Result<(Option<String>, BsoUpdate), String> {
    let mut out = BsoUpdate::default();
    let mut id = None;
    for (key, value) in obj {
        if value.is_null() {
            // `"ttl": null` means "not given", as in the Python server.
            continue;
        }
        match key.as_str() {
            "id" => match value {
                Value::String(s) if valid_id(s) => id = Some(s.clone()),
                _ => return Err("invalid id".into()),
            },
            "sortindex" => match python_int(value) {
                Some(n) if (-MAX_SORTINDEX..=MAX_SORTINDEX).contains(&n) => out.sortindex = Some(n),
                _ => return Err("invalid sortindex".into()),
            },
            "ttl" => match python_int(value) {
                Some(n) if n >= 0 => out.ttl = (n <= MAX_TTL).then_some(n),
                _ => return Err("invalid ttl".into()),
            },
            "payload" => match value {
                Value::String(s) if s.len() as u64 > max_payload_bytes => {
                    return Err("payload too large".into())
                }
                Value::String(s) => out.payload = Some(s.clone()),
                _ => return Err("payload not a string".into()),
            },
            // Sent by some clients, ignored as the Python server did.
            "collection" | "modified" | "payload_size" => {}
            _ => return Err(format!("unknown field '{key}'")),
        }
    }
    Ok((id, out))
}

/// The known-bad `crypto/keys` upload of an old Firefox bug (all-zero IV).
pub fn is_known_bad_crypto(collection: &str, payload: Option<&str>) -> bool {
    const NEEDLE: &str = "\"IV\":";
    const ZERO_IV: &str = "\"AAAAAAAAAAAAAAAAAAAAAA==\"";
    if collection != "crypto" {
        return false;
    }
    let Some(payload) = payload else {
        return false;
    };
    let mut rest = payload;
    while let Some(at) = rest.find(NEEDLE) {
        let after = rest[at + NEEDLE.len()..].trim_start();
        if after.starts_with(ZERO_IV) {
            return true;
        }
        rest = &rest[at + NEEDLE.len()..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<(Option<String>, BsoUpdate), String> {
        parse_bso(v.as_object().unwrap(), 2 * 1024 * 1024).unwrap()
    }

    #[test]
    fn ids_and_collections() {
        assert!(valid_id("a b~"));
        assert!(valid_id(&"x".repeat(64)));
        assert!(!valid_id(&"x".repeat(65)));
        assert!(!valid_id(""));
        assert!(!valid_id("a\n"));
        assert!(!valid_id("é"));
        assert!(valid_collection("my_coll-1.x"));
        assert!(!valid_collection("a/b"));
        assert!(!valid_collection(&"c".repeat(33)));
    }

    #[test]
    fn fields_are_typed_like_python() {
        let (id, b) =
            check(json!({"id": "a", "sortindex": 2.7, "ttl": "10", "payload": "x"})).unwrap();
        assert_eq!(id.as_deref(), Some("a"));
        assert_eq!(b.sortindex, Some(2));
        assert_eq!(b.ttl, Some(10));
        assert_eq!(b.payload.as_deref(), Some("x"));
        assert_eq!(
            check(json!({"sortindex": "12"})).unwrap().1.sortindex,
            Some(12)
        );
        assert_eq!(
            check(json!({"sortindex": "2.6"})),
            Err("invalid sortindex".to_string())
        );
        assert_eq!(
            check(json!({"sortindex": 1_000_000_000})),
            Err("invalid sortindex".to_string())
        );
        assert_eq!(check(json!({"ttl": -1})), Err("invalid ttl".to_string()));
        assert_eq!(check(json!({"ttl": "4.2"})), Err("invalid ttl".to_string()));
        assert_eq!(check(json!({"ttl": 31_536_001})).unwrap().1.ttl, None);
        assert_eq!(
            check(json!({"payload": 5})),
            Err("payload not a string".to_string())
        );
        assert_eq!(
            check(json!({"foo": 1})),
            Err("unknown field 'foo'".to_string())
        );
        assert_eq!(check(json!({"id": 5})), Err("invalid id".to_string()));
        let nulls = check(json!({"ttl": null, "sortindex": null, "modified": 5})).unwrap();
        assert_eq!(nulls.1, BsoUpdate::default());
    }

    #[test]
    fn non_scalar_fields_fail_the_body() {
        let v = json!({"id": "a", "payload": ["x"]});
        assert_eq!(
            parse_bso(v.as_object().unwrap(), 10),
            Err(BodyError::InvalidBsos)
        );
    }

    #[test]
    fn payload_limit() {
        let v = json!({"payload": "xxxx"});
        assert_eq!(
            parse_bso(v.as_object().unwrap(), 3).unwrap(),
            Err("payload too large".to_string())
        );
    }

    #[test]
    fn bad_crypto_iv() {
        let bad = r#"{"IV": "AAAAAAAAAAAAAAAAAAAAAA==", "x": 1}"#;
        assert!(is_known_bad_crypto("crypto", Some(bad)));
        assert!(!is_known_bad_crypto("meta", Some(bad)));
        assert!(!is_known_bad_crypto("crypto", Some(r#"{"IV": "abc"}"#)));
    }
}
