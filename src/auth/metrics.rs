//! Metrics identifiers (`hashed_fxa_uid`, `hashed_device_id`) and random hex secrets.
//!
//! The tokenserver puts these hashes into tokens and its response so that logs and metrics can
//! correlate a user's requests without ever holding the raw FxA uid. The algorithm is the one of
//! Python tokenserver (spec §4.6): `hex(HMAC-SHA256(key, message))[:32]`.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

/// Lower-case hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

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

/// The operating system's random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomUnavailable;

impl fmt::Display for RandomUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the system random number generator is unavailable")
    }
}

impl std::error::Error for RandomUnavailable {}

/// `bytes` bytes from the system CSPRNG.
pub(crate) fn random_bytes(bytes: usize) -> Result<Vec<u8>, RandomUnavailable> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| RandomUnavailable)?;
    Ok(buf)
}

/// `bytes` random bytes from the system CSPRNG as lower-case hex (e.g. a generated `secret`).
///
/// Returns an error rather than a weak value if the OS cannot supply randomness: a secret that
/// is not random would let anyone forge tokens.
pub fn random_secret_hex(bytes: usize) -> Result<String, RandomUnavailable> {
    random_bytes(bytes).map(|b| to_hex(&b))
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

    #[test]
    fn random_hex_shape() {
        let a = random_secret_hex(32).unwrap();
        let b = random_secret_hex(32).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_eq!(random_secret_hex(0).unwrap(), "");
    }

    #[test]
    fn hex_encoding() {
        assert_eq!(to_hex(&[0x00, 0x0a, 0xff, 0x10]), "000aff10");
    }
}
