//! Plain request and response values, independent of FastCGI and of Sync.
//!
//! The FastCGI front (`crate::front`) and the local trial listener both build a
//! [`Request`]; the application turns it into a [`Response`], which is written
//! back as a CGI-style header block plus body.

use std::fmt::Write as _;

/// One HTTP request as the web server handed it to us.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Upper-case method, e.g. `GET`.
    pub method: String,
    /// The raw path as the client sent it (still percent-encoded), without the query.
    pub path: String,
    /// The raw query string (without `?`), empty when there is none.
    pub query: String,
    /// Request headers, names lower-case with `-` (e.g. `x-if-modified-since`), values raw.
    pub headers: Vec<(String, Vec<u8>)>,
    /// `http` or `https`, as the web server received the request (a proxy in
    /// front of it may have seen https: see `crate::app::origin`).
    pub scheme: String,
    /// The address of the HTTP client the web server talked to (`REMOTE_ADDR`).
    pub remote_addr: Option<std::net::IpAddr>,
    pub body: Vec<u8>,
    /// The body was larger than we accept; `body` is empty.
    pub body_too_large: bool,
}

impl Request {
    /// The last value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// A header as text; `None` when absent or not valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The raw path and query, exactly as the client signed them.
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

/// A response: status, headers in order, body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// Header names and values, in the order they are sent.
    pub headers: Vec<(&'static str, String)>,
    /// The body bytes (dropped on the wire for HEAD and 304).
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body and a content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: body.into(),
        }
    }

    /// `application/json` with the given serialized JSON text.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status, "application/json", body)
    }

    /// A response without body and without content type (304).
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn set_header(&mut self, name: &'static str, value: impl Into<String>) {
        let value = value.into();
        if let Some(h) = self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            h.1 = value;
        } else {
            self.headers.push((name, value));
        }
    }

    /// Builder form of [`Response::set_header`].
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.set_header(name, value);
        self
    }

    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Serializes as a CGI response (`Status:` line, headers, blank line, body).
    /// `head` drops the body but keeps its Content-Length, as HTTP wants for HEAD.
    /// The body's own buffer carries the result (the head is inserted before it), so a
    /// multi-megabyte listing page is never held twice.
    pub fn into_cgi(self, head: bool) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        let _ = write!(out, "Status: {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            // A value may never smuggle a header line of its own.
            let clean: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            let _ = write!(out, "{name}: {clean}\r\n");
        }
        // nginx keeps our Content-Length on 304 even though it drops the body.
        if self.status != 304 {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.push_str("\r\n");
        if head || self.status == 304 {
            return out.into_bytes();
        }
        let mut bytes = self.body;
        bytes.splice(0..0, out.into_bytes());
        bytes
    }
}

/// The reason phrase for the statuses we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Decodes `%XX` escapes; `None` on a malformed escape or non-UTF-8 result.
///
/// `percent-encoding` decodes; it keeps a malformed escape as typed, so the strictness (a
/// path segment with a stray `%` names nothing) is checked here first.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(Into::into)
}

/// Query-string pairs, `+` as space, percent-decoded like WebOb: a malformed
/// escape stays as typed, bytes that are not UTF-8 become U+FFFD (which no
/// id, timestamp or number accepts, so validation answers 400). Empty pairs
/// (`a=1&&b=2`) are skipped; a name without `=` has an empty value. This is
/// exactly `application/x-www-form-urlencoded` parsing, so `form_urlencoded` does it.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_serialization_has_status_and_length() {
        let r = Response::json(412, "0").with_header("X-Last-Modified", "1.00");
        let text = String::from_utf8(r.into_cgi(false)).unwrap();
        assert!(text.starts_with("Status: 412 Precondition Failed\r\n"));
        assert!(text.contains("Content-Length: 1\r\n"));
        assert!(text.ends_with("\r\n\r\n0"));
    }

    #[test]
    fn head_and_304_have_no_body() {
        let r = Response::json(200, "[1]");
        let text = String::from_utf8(r.into_cgi(true)).unwrap();
        assert!(text.ends_with("Content-Length: 3\r\n\r\n"));
        let r = Response::empty(304);
        let text = String::from_utf8(r.into_cgi(false)).unwrap();
        assert_eq!(text, "Status: 304 Not Modified\r\n\r\n");
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let r = Response::json(200, "").with_header("X-A", "a\r\nSet-Cookie: x");
        let text = String::from_utf8(r.into_cgi(false)).unwrap();
        assert!(text.contains("X-A: aSet-Cookie: x\r\n"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fc").as_deref(), Some("a/c"));
        assert_eq!(percent_decode("%7Bx%7d").as_deref(), Some("{x}"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%e9"), None);
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("%%41"), None);
        assert_eq!(percent_decode("%c3%a9+").as_deref(), Some("\u{e9}+"));
    }

    #[test]
    fn query_parsing() {
        let q = query_pairs("full=1&ids=a,b&&newer=1.5&x");
        assert_eq!(q[0], ("full".into(), "1".into()));
        assert_eq!(q[1], ("ids".into(), "a,b".into()));
        assert_eq!(q[3], ("x".into(), "".into()));
        let q = query_pairs("ids=%FF&a=%zz&b=a+b%2B");
        assert_eq!(q[0].1, "\u{fffd}");
        assert_eq!(q[1].1, "%zz");
        assert_eq!(q[2].1, "a b+");
        let q = query_pairs("a=%&%41=%4&=v&k=x=y&e=%C3%A9%C3");
        assert_eq!(q[0], ("a".into(), "%".into()));
        assert_eq!(q[1], ("A".into(), "%4".into()));
        assert_eq!(q[2], ("".into(), "v".into()));
        assert_eq!(q[3], ("k".into(), "x=y".into()));
        assert_eq!(q[4], ("e".into(), "\u{e9}\u{fffd}".into()));
    }
}
