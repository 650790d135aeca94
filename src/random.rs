//! Random secrets from the operating system's generator, and the hex they are written in.

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
