//! Per-node secrets for a site with several storage nodes (mozsvc's
//! `DerivedSecrets`): the tokenserver signs a token with the secret of the node it
//! names, and each node holds only its own, so a node that leaks its secret cannot
//! mint tokens another node accepts.

use ring::hkdf;

const INFO_PREFIX: &[u8] = b"services.mozilla.com/mozsvc/v1/node_secret/";

/// An HKDF output length `ring` accepts for any byte count.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// `hex(HKDF-SHA256(master, salt = none, info = prefix + node, len(master) / 2))`: as
/// long as the master secret, in hex, like the master secrets Python generated.
pub fn node_secret(master: &str, node: &str) -> String {
    // Python's HKDF with salt None uses a hash-length block of zeros.
    // HKDF-SHA256 yields at most 255 blocks: a master secret over 16,320 characters
    // (none a person or our generator writes) gets a node secret of that bound.
    let size = (master.len() / 2).clamp(1, 255 * 32);
    let mut out = vec![0u8; size];
    let info = [INFO_PREFIX, node.as_bytes()];
    hkdf::Salt::new(hkdf::HKDF_SHA256, &[0u8; 32])
        .extract(master.as_bytes())
        .expand(&info, Len(size))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-SHA256 allows up to 255 blocks of output");
    out.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rustcrypto_hkdf() {
        let master = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let node = "https://sync2.example.com";
        let mut want = [0u8; 32];
        ::hkdf::Hkdf::<sha2::Sha256>::new(None, master.as_bytes())
            .expand(&[INFO_PREFIX, node.as_bytes()].concat(), &mut want)
            .unwrap();
        let want: String = want.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(node_secret(master, node), want);
        assert_eq!(want.len(), master.len());
    }

    #[test]
    fn differs_per_node_and_master() {
        let a = node_secret("aaaa", "https://n1");
        assert_eq!(a.len(), 4);
        assert_ne!(a, node_secret("aaaa", "https://n2"));
        assert_ne!(a, node_secret("aaab", "https://n1"));
        assert_eq!(node_secret("a", "x").len(), 2);
    }
}
