//! A client's credentials, made without the code under test: tokenlib tokens with RustCrypto's
//! HKDF and HMAC (the server uses ring), Hawk headers with the `hawk` crate (the server has its
//! own). A bug shared by signing and verifying would otherwise pass every test. The spec's
//! test vectors (`python-syncserver.md` §5) pin both down in `tests/client_auth_vectors.rs`.

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::time::{Duration, UNIX_EPOCH};

const SIGNING_INFO: &[u8] = b"services.mozilla.com/tokenlib/v1/signing";
const DERIVE_INFO: &str = "services.mozilla.com/tokenlib/v1/derive/";

fn hkdf(ikm: &[u8], salt: &[u8], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

/// tokenlib's signing key for `secret`.
pub fn signing_key(secret: &str) -> [u8; 32] {
    hkdf(secret.as_bytes(), &[0u8; 32], SIGNING_INFO)
}

/// `json.dumps` of a flat object with Python's default separators, keys in the given order.
pub fn python_json(fields: &[(&str, Value)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}: {}", Value::from(*k), v))
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// A tokenlib token over `payload` (JSON text holding a `salt`) and its derived Hawk key.
pub fn mint_payload(secret: &str, payload: &str, salt: &str) -> (String, String) {
    let mut mac = Hmac::<Sha256>::new_from_slice(&signing_key(secret)).expect("any key length");
    mac.update(payload.as_bytes());
    let mut raw = payload.as_bytes().to_vec();
    raw.extend_from_slice(&mac.finalize().into_bytes());
    let token = URL_SAFE.encode(raw);
    let info = format!("{DERIVE_INFO}{token}");
    let key = URL_SAFE.encode(hkdf(secret.as_bytes(), salt.as_bytes(), info.as_bytes()));
    (token, key)
}

/// The token the tokenserver would issue for `uid` on `node`, in its field order.
pub fn mint(secret: &str, uid: u64, node: &str, expires: i64, salt: &str) -> (String, String) {
    let payload = python_json(&[
        ("node", Value::from(node)),
        ("fxa_uid", Value::from(format!("fxa{uid}"))),
        ("hashed_device_id", Value::from("device")),
        ("uid", Value::from(uid)),
        ("hashed_fxa_uid", Value::from(format!("hashed{uid}"))),
        ("fxa_kid", Value::from("0000000000001-qqo")),
        ("expires", Value::from(expires)),
        ("salt", Value::from(salt)),
    ]);
    mint_payload(secret, &payload, salt)
}

/// What a Hawk header covers.
pub struct Signed<'a> {
    /// The token (Hawk id) and its derived key, as text.
    pub id: &'a str,
    /// The derived key, whose ASCII text is the HMAC key.
    pub key: &'a str,
    /// Client time, seconds.
    pub ts: i64,
    /// Client nonce.
    pub nonce: &'a str,
    /// Request method.
    pub method: &'a str,
    /// Raw path and query.
    pub path: &'a str,
    /// Host (lower case) and port as signed.
    pub host: &'a str,
    /// Port as signed.
    pub port: u16,
    /// `(content type, body)` when the payload hash is to be sent.
    pub payload: Option<(&'a [u8], &'a [u8])>,
}

/// The `Authorization` header value for `req`.
pub fn hawk_header(req: &Signed) -> String {
    let credentials = hawk::Credentials {
        id: req.id.to_string(),
        key: hawk::Key::new(req.key.as_bytes(), hawk::SHA256).expect("hawk key"),
    };
    let hash = req.payload.map(|(content_type, body)| {
        // Hawk hashes the bare media type, lower case, without parameters.
        let media = content_type
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii()
            .to_ascii_lowercase();
        hawk::PayloadHasher::hash(media, hawk::SHA256, body).expect("payload hash")
    });
    let ts = UNIX_EPOCH + Duration::from_secs(req.ts.max(0) as u64);
    // The reference implementation signs the method in upper case whatever was sent; the
    // `hawk` crate signs it as given.
    let method = req.method.to_ascii_uppercase();
    let header = hawk::RequestBuilder::new(&method, req.host, req.port, req.path)
        .hash(hash.as_deref())
        .request()
        .make_header_full(&credentials, ts, req.nonce)
        .expect("hawk header");
    format!("Hawk {header}")
}
