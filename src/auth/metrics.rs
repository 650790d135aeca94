//! Metrics identifiers (`hashed_fxa_uid`, `hashed_device_id`).
//!
//! The tokenserver puts these hashes into tokens and its response so that logs and metrics can
//! correlate a user's requests without ever holding the raw FxA uid. The algorithm is the one of
//! Python tokenserver (spec §4.6): `hex(HMAC-SHA256(key, message))[:32]`.

use crate::random::to_hex;
use ring::hmac;

/// First 32 hex digits of HMAC-SHA256(key, message).
fn hmac_hex32(key: &str, message: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes());
    let tag = hmac::sign(&key, message);
    // 16 bytes of a 32-byte tag give the 32 hex digits Python keeps with `[:32]`.
    let short: Vec<u8> = tag.as_ref().iter().take(16).copied().collect();
    to_hex(&short)
}

/// `hashed_fxa_uid`: hex(HMAC-SHA256(metrics_secret, fxa_uid))[..32]; `fxa_uid` is the part of
/// the FxA email before `@` (the raw FxA uid).
pub fn hash_fxa_uid(metrics_secret: &str, fxa_uid: &str) -> String {
    hmac_hex32(metrics_secret, fxa_uid.as_bytes())
}

/// `hashed_device_id`: hex(HMAC-SHA256(metrics_secret, hashed_fxa_uid + device))[..32], with
/// `device` = `"none"` when the client sent no device id (always the case for OAuth).
pub fn hash_device_id(metrics_secret: &str, hashed_fxa_uid: &str, device: Option<&str>) -> String {
    let mut message = String::with_capacity(hashed_fxa_uid.len() + 36);
    message.push_str(hashed_fxa_uid);
    message.push_str(device.unwrap_or("none"));
    hmac_hex32(metrics_secret, message.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn spec_vector_hashed_fxa_uid() {
        assert_eq!(
            hash_fxa_uid(KEY, "user1"),
            "94218eeae3fffc550f8af5dde12cdf43"
        );
    }

    #[test]
    fn spec_vector_hashed_device_id_none() {
        let uid = hash_fxa_uid(KEY, "user1");
        assert_eq!(
            hash_device_id(KEY, &uid, None),
            "edc47c9c0d414316e4113196f8babfd8"
        );
        assert_eq!(
            hash_device_id(KEY, &uid, Some("none")),
            hash_device_id(KEY, &uid, None)
        );
        assert_ne!(
            hash_device_id(KEY, &uid, Some("dev1")),
            hash_device_id(KEY, &uid, None)
        );
    }
}
