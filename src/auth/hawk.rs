//! Hawk request authentication (header scheme `Hawk`, SHA-256 only), as Python `hawkauthlib`
//! computes it.
//!
//! Implemented here rather than with the `hawk` crate because that crate's header parser only
//! takes quoted values without escapes and rejects unknown attributes (hawkauthlib accepts
//! unquoted tokens and backslash escapes and ignores unknown names), and its validator returns a
//! bare bool with a mandatory timestamp window, so bad MAC, bad payload hash and stale timestamp
//! could not be told apart and skew could not be left unenforced.

use crate::auth::tokenlib::TokenError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::{digest, hmac};
use std::fmt;

/// Longest `Authorization` value we parse; real ones are ~600 bytes (token ≈ 400).
pub const MAX_HEADER_LEN: usize = 8192;

/// The attributes of a Hawk `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct HawkHeader {
    /// The Hawk id: a tokenlib token.
    pub id: String,
    /// Client timestamp, seconds since the epoch (canonical decimal as sent).
    pub ts: i64,
    pub nonce: String,
    /// Request MAC, standard base64 as sent.
    pub mac: String,
    /// Optional payload hash, standard base64 as sent.
    pub hash: Option<String>,
    /// Optional application data covered by the MAC.
    pub ext: Option<String>,
}

impl fmt::Debug for HawkHeader {
    // The id is a bearer credential (with the derived key): never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HawkHeader")
            .field("id", &"<redacted>")
            .field("ts", &self.ts)
            .field("nonce", &self.nonce)
            .field("hash", &self.hash)
            .field("ext", &self.ext)
            .finish()
    }
}

/// Why a request failed Hawk authentication (all but `Throttled` map to 401; the cause is for
/// logs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HawkError {
    /// No (or an empty) `Authorization` header.
    Missing,
    /// The scheme is not exactly `Hawk`.
    NotHawk,
    /// The header is unparsable or lacks a required attribute; names the problem.
    Malformed(&'static str),
    /// The request MAC does not match.
    BadMac,
    /// The payload hash in the header does not match the body.
    BadHash,
    /// The timestamp is outside the configured skew window.
    StaleTimestamp,
    /// This `(token, nonce)` was already used.
    Replayed,
    /// The account (or the whole process) holds as many unexpired nonces or tokens as it may:
    /// refused rather than forgetting any; retry after this many seconds.
    Throttled(u64),
    /// The Hawk id is not an acceptable token.
    Token(TokenError),
}

impl fmt::Display for HawkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HawkError::Missing => f.write_str("missing Authorization header"),
            HawkError::NotHawk => f.write_str("Authorization scheme is not Hawk"),
            HawkError::Malformed(what) => write!(f, "malformed Hawk header: {what}"),
            HawkError::BadMac => f.write_str("bad Hawk mac"),
            HawkError::BadHash => f.write_str("Hawk payload hash does not match the body"),
            HawkError::StaleTimestamp => f.write_str("Hawk timestamp outside the allowed skew"),
            HawkError::Replayed => f.write_str("replayed Hawk nonce"),
            HawkError::Throttled(_) => f.write_str("too many requests in the replay window"),
            HawkError::Token(e) => write!(f, "bad Hawk id: {e}"),
        }
    }
}

impl std::error::Error for HawkError {}

impl From<TokenError> for HawkError {
    fn from(e: TokenError) -> Self {
        HawkError::Token(e)
    }
}

/// What of the request the MAC covers.
#[derive(Debug, Clone, Copy)]
pub struct HawkRequest<'a> {
    /// HTTP method (upper-cased for the MAC).
    pub method: &'a str,
    /// Raw path and query exactly as the client sent them (`REQUEST_URI`).
    pub path_and_query: &'a str,
    /// Host from the `Host` header, without the port (lower-cased for the MAC).
    pub host: &'a str,
    /// Port from the `Host` header, or 80/443 from the scheme.
    pub port: u16,
    /// `Content-Type` header, if any.
    pub content_type: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// Header bytes that may appear outside quoted strings in an unquoted value.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'"' && b != b',' && b != b'\\'
}

/// Cursor over the parameter list after the scheme.
struct Params<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Params<'a> {
    fn skip_ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// `name`, `=`, then a token or a quoted string (backslash escapes removed).
    fn next_param(&mut self) -> Result<(&'a str, String), HawkError> {
        let start = self.pos;
        while matches!(self.s.get(self.pos), Some(b) if b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        {
            self.pos += 1;
        }
        let name = self.s.get(start..self.pos).unwrap_or_default();
        if name.is_empty() {
            return Err(HawkError::Malformed("expected attribute name"));
        }
        self.skip_ws();
        if self.s.get(self.pos) != Some(&b'=') {
            return Err(HawkError::Malformed("expected '='"));
        }
        self.pos += 1;
        self.skip_ws();
        // Values are copied a run at a time (the token in `id` is hundreds of bytes): byte by
        // byte pushes were a fifth of an info/collections request's instructions.
        let mut value = Vec::new();
        if self.s.get(self.pos) == Some(&b'"') {
            self.pos += 1;
            loop {
                let rest = self.s.get(self.pos..).unwrap_or_default();
                let run = rest
                    .iter()
                    .position(|b| matches!(b, b'"' | b'\\'))
                    .ok_or(HawkError::Malformed("unterminated quoted string"))?;
                value.extend_from_slice(&rest[..run]);
                self.pos += run;
                if self.s[self.pos] == b'"' {
                    break;
                }
                // A backslash: the next byte stands for itself.
                let &escaped = self
                    .s
                    .get(self.pos + 1)
                    .ok_or(HawkError::Malformed("unterminated quoted string"))?;
                value.push(escaped);
                self.pos += 2;
            }
            self.pos += 1;
        } else {
            let rest = self.s.get(self.pos..).unwrap_or_default();
            let run = rest
                .iter()
                .position(|b| !is_token_byte(*b))
                .unwrap_or(rest.len());
            if run == 0 {
                return Err(HawkError::Malformed("empty attribute value"));
            }
            value.extend_from_slice(&rest[..run]);
            self.pos += run;
        }
        // The whole header was checked to be UTF-8 and escapes only drop ASCII backslashes.
        let value = String::from_utf8(value).map_err(|_| HawkError::Malformed("encoding"))?;
        let name = std::str::from_utf8(name).map_err(|_| HawkError::Malformed("encoding"))?;
        Ok((name, value))
    }
}

/// Parse an `Authorization` value: scheme exactly `Hawk`, then `k=v` / `k="v"` pairs separated
/// by commas. Unknown attributes are ignored; `app`/`dlg` (unsupported), duplicates, control
/// characters and values over `MAX_HEADER_LEN` are errors. `id`, `ts`, `nonce`, `mac` are
/// required and `ts` must be a plain decimal integer.
pub fn parse_authorization(value: &[u8]) -> Result<HawkHeader, HawkError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(HawkError::Malformed("header too long"));
    }
    let text = std::str::from_utf8(value).map_err(|_| HawkError::Malformed("encoding"))?;
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(HawkError::Malformed("control character"));
    }
    let text = text.trim_matches(|c| c == ' ' || c == '\t');
    if text.is_empty() {
        return Err(HawkError::Missing);
    }
    let (scheme, rest) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    if scheme != "Hawk" {
        return Err(HawkError::NotHawk);
    }
    let mut p = Params {
        s: rest.as_bytes(),
        pos: 0,
    };
    let mut seen: Vec<&str> = Vec::new();
    let (mut id, mut ts, mut nonce, mut mac, mut hash, mut ext) =
        (None, None, None, None, None, None);
    p.skip_ws();
    while !p.at_end() {
        let (name, v) = p.next_param()?;
        if seen.contains(&name) {
            return Err(HawkError::Malformed("duplicate attribute"));
        }
        seen.push(name);
        match name {
            "id" => id = Some(v),
            "ts" => ts = Some(v),
            "nonce" => nonce = Some(v),
            "mac" => mac = Some(v),
            "hash" => hash = Some(v),
            "ext" => ext = Some(v),
            "app" | "dlg" => return Err(HawkError::Malformed("app/dlg not supported")),
            _ => {}
        }
        p.skip_ws();
        if p.at_end() {
            break;
        }
        if p.s.get(p.pos) != Some(&b',') {
            return Err(HawkError::Malformed("expected ','"));
        }
        p.pos += 1;
        p.skip_ws();
        if p.at_end() {
            return Err(HawkError::Malformed("trailing ','"));
        }
    }
    let ts = ts.ok_or(HawkError::Malformed("missing ts"))?;
    // Only canonical digits, so that `{ts}` in the MAC string is byte-identical to what the
    // client signed (hawkauthlib uses the raw text).
    let canonical = !ts.is_empty()
        && ts.bytes().all(|b| b.is_ascii_digit())
        && (ts == "0" || !ts.starts_with('0'));
    let ts = match ts.parse::<i64>() {
        Ok(n) if canonical => n,
        _ => return Err(HawkError::Malformed("bad ts")),
    };
    let nonempty = |v: Option<String>, what| {
        v.filter(|s| !s.is_empty())
            .ok_or(HawkError::Malformed(what))
    };
    Ok(HawkHeader {
        id: nonempty(id, "missing id")?,
        ts,
        nonce: nonempty(nonce, "missing nonce")?,
        mac: nonempty(mac, "missing mac")?,
        hash,
        ext,
    })
}

/// The string the MAC covers:
/// `hawk.1.header\n{ts}\n{nonce}\n{METHOD}\n{path?query}\n{host}\n{port}\n{hash}\n{ext}\n`.
pub fn normalized_string(h: &HawkHeader, r: &HawkRequest) -> String {
    format!(
        "hawk.1.header\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        h.ts,
        h.nonce,
        r.method.to_ascii_uppercase(),
        r.path_and_query,
        r.host.to_ascii_lowercase(),
        r.port,
        h.hash.as_deref().unwrap_or(""),
        h.ext.as_deref().unwrap_or(""),
    )
}

/// base64(SHA-256("hawk.1.payload\n" + lower-case MIME type without parameters + "\n" + body +
/// "\n")).
pub fn payload_hash(content_type: &[u8], body: &[u8]) -> String {
    let mime = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .to_ascii_lowercase();
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"hawk.1.payload\n");
    ctx.update(&mime);
    ctx.update(b"\n");
    ctx.update(body);
    ctx.update(b"\n");
    STANDARD.encode(ctx.finish())
}

/// The HMAC key for a derived token key: its base64 *text*, as tokenlib clients use it.
fn mac_key(key: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes())
}

/// base64(HMAC-SHA256(key ASCII, normalized string)).
pub fn compute_mac(key: &str, h: &HawkHeader, r: &HawkRequest) -> String {
    let tag = hmac::sign(&mac_key(key), normalized_string(h, r).as_bytes());
    STANDARD.encode(tag)
}

/// Check the header's MAC in constant time (a MAC that is not valid base64 is just wrong).
pub fn verify_mac(key: &str, h: &HawkHeader, r: &HawkRequest) -> Result<(), HawkError> {
    let sent = STANDARD
        .decode(h.mac.as_bytes())
        .map_err(|_| HawkError::BadMac)?;
    hmac::verify(&mac_key(key), normalized_string(h, r).as_bytes(), &sent)
        .map_err(|_| HawkError::BadMac)
}

/// If the header carries a payload `hash`, check it against the body and content type.
pub fn verify_payload_hash(h: &HawkHeader, r: &HawkRequest) -> Result<(), HawkError> {
    match &h.hash {
        None => Ok(()),
        Some(sent) if *sent == payload_hash(r.content_type.unwrap_or_default(), r.body) => Ok(()),
        Some(_) => Err(HawkError::BadHash),
    }
}

/// `s` as a quoted-string value (escaping `"` and `\`).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A complete client `Authorization` value (`Hawk id="…", ts="…", nonce="…", [hash="…", ]
/// mac="…"`) for tests and the load tool.
pub fn client_header(
    key: &str,
    id: &str,
    ts: i64,
    nonce: &str,
    r: &HawkRequest,
    with_hash: bool,
) -> String {
    let h = HawkHeader {
        id: id.to_owned(),
        ts,
        nonce: nonce.to_owned(),
        mac: String::new(),
        hash: with_hash.then(|| payload_hash(r.content_type.unwrap_or_default(), r.body)),
        ext: None,
    };
    let mac = compute_mac(key, &h, r);
    let hash = h
        .hash
        .as_deref()
        .map(|x| format!("hash={}, ", quoted(x)))
        .unwrap_or_default();
    format!(
        "Hawk id={}, ts=\"{ts}\", nonce={}, {hash}mac=\"{mac}\"",
        quoted(id),
        quoted(nonce)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "QqYf8YMxrySlxDBOCGMFmpzGEn2RR5vjEj4YxwP21Dk=";

    fn vector_request() -> HawkRequest<'static> {
        HawkRequest {
            method: "GET",
            path_and_query: "/storage/1.5/1/info/collections?x=1",
            host: "localhost",
            port: 5000,
            content_type: None,
            body: b"",
        }
    }

    fn header(s: &str) -> Result<HawkHeader, HawkError> {
        parse_authorization(s.as_bytes())
    }

    #[test]
    fn spec_vector_normalized_string_and_mac() {
        let value = client_header(
            KEY,
            "tok",
            1_700_000_000,
            "abcdef",
            &vector_request(),
            false,
        );
        let h = header(&value).unwrap();
        assert_eq!(
            normalized_string(&h, &vector_request()),
            "hawk.1.header\n1700000000\nabcdef\nGET\n/storage/1.5/1/info/collections?x=1\nlocalhost\n5000\n\n\n"
        );
        assert_eq!(h.mac, "laisfElADDItnDISekjtkEb/QbIQgWYQDtuHpbMsw8g=");
        assert_eq!(verify_mac(KEY, &h, &vector_request()), Ok(()));
        // Method and host case do not matter; path, port and key do.
        let mut r = vector_request();
        r.method = "get";
        r.host = "LocalHost";
        assert_eq!(verify_mac(KEY, &h, &r), Ok(()));
        r.port = 5001;
        assert_eq!(verify_mac(KEY, &h, &r), Err(HawkError::BadMac));
        let mut r = vector_request();
        r.path_and_query = "/storage/1.5/1/info/collections?x=2";
        assert_eq!(verify_mac(KEY, &h, &r), Err(HawkError::BadMac));
        assert_eq!(
            verify_mac("other", &h, &vector_request()),
            Err(HawkError::BadMac)
        );
        let mut bad = h.clone();
        bad.mac = "not base64!".into();
        assert_eq!(
            verify_mac(KEY, &bad, &vector_request()),
            Err(HawkError::BadMac)
        );
    }

    #[test]
    fn payload_hash_known_value() {
        let expected = "Yi9LfIIFRtBEPt74PVmbTF/xVAwPn7ub15ePICfgnuY=";
        assert_eq!(
            payload_hash(b"text/plain", b"Thank you for flying Hawk"),
            expected
        );
        assert_eq!(
            payload_hash(b" Text/Plain ; charset=utf-8", b"Thank you for flying Hawk"),
            expected
        );
        assert_ne!(
            payload_hash(b"text/html", b"Thank you for flying Hawk"),
            expected
        );
    }

    #[test]
    fn payload_hash_check() {
        let mut r = vector_request();
        r.method = "POST";
        r.content_type = Some(b"application/json; charset=utf-8");
        r.body = b"[{\"id\": \"a\"}]";
        let h = header(&client_header(KEY, "tok", 5, "n", &r, true)).unwrap();
        assert!(h.hash.is_some());
        assert_eq!(verify_mac(KEY, &h, &r), Ok(()));
        assert_eq!(verify_payload_hash(&h, &r), Ok(()));
        r.body = b"[{\"id\": \"b\"}]";
        assert_eq!(verify_payload_hash(&h, &r), Err(HawkError::BadHash));
        let no_hash = header(&client_header(KEY, "tok", 5, "n", &r, false)).unwrap();
        assert_eq!(verify_payload_hash(&no_hash, &r), Ok(()));
    }

    #[test]
    fn parses_quoted_unquoted_escapes_and_spaces() {
        let h = header("Hawk id=\"a-b\", ts=\"12\", nonce=\"x y\", mac=\"bQ==\"").unwrap();
        assert_eq!(
            (h.id.as_str(), h.ts, h.nonce.as_str(), h.mac.as_str()),
            ("a-b", 12, "x y", "bQ==")
        );
        assert_eq!((h.hash, h.ext), (None, None));

        let h = header(
            "  Hawk \t id = tok ,ts=0,nonce=n1,   mac=ab+/c=, hash=\"h\" , ext=\"a\\\"b\\\\c,d\" ",
        )
        .unwrap();
        assert_eq!(h.id, "tok");
        assert_eq!(h.ts, 0);
        assert_eq!(h.mac, "ab+/c=");
        assert_eq!(h.hash.as_deref(), Some("h"));
        assert_eq!(h.ext.as_deref(), Some("a\"b\\c,d"));

        // Unknown attributes are ignored; UTF-8 in quoted values is kept.
        let h = header("Hawk id=\"i\", ts=\"1\", nonce=\"n\", mac=\"m\", foo=\"bar\", ext=\"é\"")
            .unwrap();
        assert_eq!(h.ext.as_deref(), Some("é"));

        // The debug form never shows the token.
        assert!(!format!("{h:?}").contains("\"i\""));
    }

    #[test]
    fn rejects_bad_headers() {
        let ok = "id=\"i\", ts=\"1\", nonce=\"n\", mac=\"m\"";
        assert_eq!(header(""), Err(HawkError::Missing));
        assert_eq!(header("   "), Err(HawkError::Missing));
        assert_eq!(header(&format!("hawk {ok}")), Err(HawkError::NotHawk));
        assert_eq!(header(&format!("HAWK {ok}")), Err(HawkError::NotHawk));
        assert_eq!(header("Bearer abc"), Err(HawkError::NotHawk));
        assert_eq!(header(&format!("Hawk,{ok}")), Err(HawkError::NotHawk));
        let malformed = [
            "Hawk",
            "Hawk id=\"i\", ts=\"1\", nonce=\"n\"",
            "Hawk id=\"i\", ts=\"1\", mac=\"m\"",
            "Hawk id=\"i\", nonce=\"n\", mac=\"m\"",
            "Hawk ts=\"1\", nonce=\"n\", mac=\"m\"",
            "Hawk id=\"\", ts=\"1\", nonce=\"n\", mac=\"m\"",
            "Hawk id=\"i\", ts=\"1\", nonce=\"n\", mac=\"m",
            "Hawk id=\"i\", ts=\"1\", nonce=\"n\", mac=\"m\\",
            "Hawk id=\"i\", ts=\"1\", nonce=\"n\", mac=",
            "Hawk id=\"i\", ts=\"1\", nonce=\"n\", mac=\"m\",",
            "Hawk id=\"i\", ts=\"1\", nonce=\"n\", mac=\"m\" x",
            "Hawk id=\"i\",, ts=\"1\", nonce=\"n\", mac=\"m\"",
            "Hawk id=\"i\" ts=\"1\", nonce=\"n\", mac=\"m\"",
            "Hawk id=\"i\", id=\"j\", ts=\"1\", nonce=\"n\", mac=\"m\"",
            "Hawk id=\"i\", ts=\"1\", nonce=\"n\", mac=\"m\", app=\"a\"",
            "Hawk id=\"i\", ts=\"1\", nonce=\"n\", mac=\"m\", dlg=\"d\"",
            "Hawk id=\"i\", ts=\"+1\", nonce=\"n\", mac=\"m\"",
            "Hawk id=\"i\", ts=\"-1\", nonce=\"n\", mac=\"m\"",
            "Hawk id=\"i\", ts=\"01\", nonce=\"n\", mac=\"m\"",
            "Hawk id=\"i\", ts=\"1.5\", nonce=\"n\", mac=\"m\"",
            "Hawk id=\"i\", ts=\"99999999999999999999\", nonce=\"n\", mac=\"m\"",
            "Hawk id=\"i\", ts=\"1\", nonce=\"n\", mac=\"m\", =\"x\"",
            "Hawk id=\"i\n\", ts=\"1\", nonce=\"n\", mac=\"m\"",
        ];
        for bad in malformed {
            assert!(
                matches!(header(bad), Err(HawkError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_authorization(b"Hawk id=\"\xff\", ts=\"1\", nonce=\"n\", mac=\"m\""),
            Err(HawkError::Malformed(_))
        ));
        let huge = format!("Hawk {ok}, ext=\"{}\"", "x".repeat(MAX_HEADER_LEN));
        assert_eq!(header(&huge), Err(HawkError::Malformed("header too long")));
    }

    #[test]
    fn client_header_escapes_and_round_trips() {
        let value = client_header(KEY, "t", 3, "a\"b", &vector_request(), false);
        let h = header(&value).unwrap();
        assert_eq!(h.nonce, "a\"b");
        assert_eq!(verify_mac(KEY, &h, &vector_request()), Ok(()));
    }
}
