//! `X-KeyID` and `X-Client-State`: which encryption keys the client holds.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// A parsed `X-KeyID: <keys_changed_at>-<base64url(sha256(kB)[:16])>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId {
    /// Milliseconds when the keys last changed.
    pub keys_changed_at: i64,
    /// Lower-case hex of the key fingerprint.
    pub client_state: String,
}

/// Parses `X-KeyID`; `None` when malformed (401 invalid-credentials).
pub fn parse_key_id(value: &str) -> Option<KeyId> {
    let (kca, fingerprint) = value.trim().split_once('-')?;
    if kca.is_empty() || kca.len() > 18 || !kca.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(fingerprint.trim_end_matches('='))
        .ok()?;
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    Some(KeyId {
        keys_changed_at: kca.parse().ok()?,
        client_state: bytes.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// Checks an `X-Client-State` value: the regex of both references, plus hex
/// (a non-hex value broke the Python server after it had created the row).
pub fn valid_client_state(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 32
        && value.len().is_multiple_of(2)
        && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `fxa_kid` as tokens carry it: 13-digit timestamp, `-`, base64url of the state.
pub fn fxa_kid(timestamp: i64, client_state: &str) -> String {
    let bytes: Vec<u8> = (0..client_state.len() / 2)
        .filter_map(|i| u8::from_str_radix(client_state.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect();
    format!("{:013}-{}", timestamp, URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids() {
        let k = parse_key_id("1234-qqo").unwrap();
        assert_eq!((k.keys_changed_at, k.client_state.as_str()), (1234, "aaaa"));
        assert_eq!(parse_key_id("0001234-qqo").unwrap().keys_changed_at, 1234);
        for bad in [
            "",
            "1234",
            "-qqo",
            "12a-qqo",
            "1234-",
            "1234-!!",
            "1234-qqo-x",
            "-1-qqo",
        ] {
            assert_eq!(parse_key_id(bad), None, "{bad}");
        }
        let long = URL_SAFE_NO_PAD.encode([0u8; 17]);
        assert_eq!(parse_key_id(&format!("1-{long}")), None);
    }

    #[test]
    fn client_states() {
        assert!(valid_client_state("aabb"));
        assert!(valid_client_state("AABB"));
        assert!(!valid_client_state("zz"));
        assert!(!valid_client_state("a.b"));
        assert!(!valid_client_state("abc"));
        assert!(!valid_client_state(&"a".repeat(34)));
    }

    #[test]
    fn fxa_kids_match_python() {
        assert_eq!(fxa_kid(900, "aaaa"), "0000000000900-qqo");
        assert_eq!(fxa_kid(5, ""), "0000000000005-");
    }
}
