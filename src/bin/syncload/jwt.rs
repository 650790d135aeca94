//! FxA-style OAuth access tokens (RS256 JWTs) signed locally, for the token workload and the
//! `--token-server` mode, plus the JWK set a server must be configured with to accept them.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents, RSA_PKCS1_SHA256};
use serde_json::{json, Value};

/// The scope a Sync access token carries.
const OLDSYNC: &str = "https://identity.mozilla.com/apps/oldsync";
/// keys_changed_at (and generation) every simulated account uses: stable across runs, so a
/// re-run maps to the same user records.
const KEYS_CHANGED_AT: i64 = 1000;

/// Why the signing key is unusable.
#[derive(Debug)]
pub enum JwtError {
    /// The key file could not be read.
    Read(String),
    /// The file is not a DER RSA private key.
    NotRsa,
    /// Signing failed (no randomness).
    Sign,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Read(m) => write!(f, "cannot read the JWT key: {m}"),
            JwtError::NotRsa => write!(
                f,
                "the JWT key is not an RSA private key in DER (PKCS#8 or PKCS#1)"
            ),
            JwtError::Sign => write!(f, "RSA signing failed"),
        }
    }
}

/// An RSA key that signs access tokens under a `kid`.
pub struct Signer {
    pair: RsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl Signer {
    /// Loads a DER RSA private key file (PKCS#8 or PKCS#1).
    pub fn load(path: &Path, kid: &str) -> Result<Signer, JwtError> {
        let der =
            std::fs::read(path).map_err(|e| JwtError::Read(format!("{}: {e}", path.display())))?;
        // PKCS#8 as the brief names it, or the bare PKCS#1 form `openssl genrsa -traditional`
        // writes.
        let pair = RsaKeyPair::from_pkcs8(&der)
            .or_else(|_| RsaKeyPair::from_der(&der))
            .map_err(|_| JwtError::NotRsa)?;
        Ok(Signer {
            pair,
            kid: kid.to_string(),
            rng: SystemRandom::new(),
        })
    }

    /// `{"keys": [<public JWK>]}` for `[oauth] jwks`.
    pub fn jwks(&self) -> Value {
        let c = RsaPublicKeyComponents::<Vec<u8>>::from(self.pair.public());
        json!({"keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e),
        }]})
    }

    /// An access token for simulated account `n`, valid for six hours.
    pub fn access_token(&self, n: u64, now: i64) -> Result<String, JwtError> {
        let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": self.kid});
        let claims = json!({
            "sub": fxa_uid(n), "scope": format!("profile {OLDSYNC}"),
            "fxa-generation": KEYS_CHANGED_AT, "client_id": "5882386c6d801776",
            "iat": now, "exp": now + 6 * 3600, "iss": "syncload", "jti": format!("syncload-{n}-{now}"),
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut sig)
            .map_err(|_| JwtError::Sign)?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// The FxA uid of simulated account `n` (32 hex digits, stable across runs).
pub fn fxa_uid(n: u64) -> String {
    format!("{:032x}", 0x5f_0000_0000_u64 + n)
}

/// `X-KeyID` of simulated account `n`: keys_changed_at and a per-account key fingerprint.
pub fn key_id(n: u64) -> String {
    let mut fp = [0u8; 16];
    fp[..8].copy_from_slice(&n.to_be_bytes());
    fp[8..].copy_from_slice(b"syncload");
    format!("{KEYS_CHANGED_AT}-{}", URL_SAFE_NO_PAD.encode(fp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_differ_per_account_and_parse() {
        let (a, b) = (key_id(1), key_id(2));
        assert_ne!(a, b);
        let (kca, fp) = a.split_once('-').unwrap();
        assert_eq!(kca, "1000");
        assert_eq!(URL_SAFE_NO_PAD.decode(fp).unwrap().len(), 16);
        assert_eq!(fxa_uid(1).len(), 32);
    }

    #[test]
    fn signs_with_the_fixture_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oauth-test-key.pk8");
        let s = Signer::load(&path, "k1").unwrap();
        let t = s.access_token(1, 1_700_000_000).unwrap();
        assert_eq!(t.split('.').count(), 3);
        assert_eq!(s.jwks()["keys"][0]["kid"], "k1");
        assert!(Signer::load(Path::new("/nonexistent"), "k").is_err());
    }
}
