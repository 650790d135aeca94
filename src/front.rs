//! The bridge from FastCGI (CGI params as bytes) to a plain [`Request`], and
//! from a [`Response`] back to CGI output. Knows CGI, not Sync.

use std::sync::Arc;

use crate::app::Serving;
use crate::fcgi::{FcgiRequest, Handler};
use crate::http::Request;

/// Builds a request from CGI params, the way nginx and Apache send them.
pub fn request_from_params(
    params: &[(Vec<u8>, Vec<u8>)],
    body: Vec<u8>,
    too_large: bool,
) -> Request {
    let get = |name: &[u8]| -> Option<&[u8]> {
        params
            .iter()
            .rev()
            .find(|(n, _)| n.as_slice() == name)
            .map(|(_, v)| v.as_slice())
    };
    let text = |name: &[u8]| get(name).map(|v| String::from_utf8_lossy(v).into_owned());

    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in params {
        if let Some(h) = name.strip_prefix(b"HTTP_") {
            let h = String::from_utf8_lossy(h)
                .to_ascii_lowercase()
                .replace('_', "-");
            headers.push((h, value.clone()));
        }
    }
    for (param, header) in [
        (&b"CONTENT_TYPE"[..], "content-type"),
        (b"CONTENT_LENGTH", "content-length"),
    ] {
        if let Some(v) = get(param).filter(|v| !v.is_empty()) {
            headers.push((header.to_string(), v.to_vec()));
        }
    }
    // mod_fcgid's FcgidPassHeader sends the raw header as a param of its own.
    if !headers.iter().any(|(n, _)| n == "authorization") {
        if let Some(v) = get(b"Authorization") {
            headers.push(("authorization".into(), v.to_vec()));
        }
    }
    if !headers.iter().any(|(n, _)| n == "host") {
        if let Some(name) = text(b"SERVER_NAME") {
            let host = match text(b"SERVER_PORT") {
                Some(port) if !port.is_empty() => format!("{name}:{port}"),
                _ => name,
            };
            headers.push(("host".into(), host.into_bytes()));
        }
    }

    let (path, query) = match text(b"REQUEST_URI") {
        Some(uri) => match uri.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (uri, text(b"QUERY_STRING").unwrap_or_default()),
        },
        // Without REQUEST_URI fall back to the decoded CGI path (best effort).
        None => (
            format!(
                "{}{}",
                text(b"SCRIPT_NAME").unwrap_or_default(),
                text(b"PATH_INFO").unwrap_or_default()
            ),
            text(b"QUERY_STRING").unwrap_or_default(),
        ),
    };

    Request {
        method: text(b"REQUEST_METHOD")
            .unwrap_or_default()
            .to_ascii_uppercase(),
        path,
        query,
        scheme: scheme(&get),
        // Only used to decide whether forwarded headers count; a missing or
        // odd value just means "not a trusted proxy".
        remote_addr: text(b"REMOTE_ADDR").and_then(|a| a.trim().parse().ok()),
        headers,
        body,
        body_too_large: too_large,
    }
}

/// `https` when the web server terminated TLS (`HTTPS=on`), else
/// `REQUEST_SCHEME`, else `http`. `X-Forwarded-Proto` is a client header: the
/// application decides whether the client is a proxy it trusts.
fn scheme<'a>(get: &dyn Fn(&[u8]) -> Option<&'a [u8]>) -> String {
    if let Some(v) = get(b"HTTPS") {
        if v.eq_ignore_ascii_case(b"on") || v == b"1" {
            return "https".into();
        }
    }
    match get(b"REQUEST_SCHEME") {
        Some(s) if s.eq_ignore_ascii_case(b"https") => "https".into(),
        _ => "http".into(),
    }
}

/// The FastCGI handler: params in, CGI response out.
pub struct FcgiFront(pub Arc<Serving>);

impl Handler for FcgiFront {
    fn handle(&self, req: FcgiRequest) -> Vec<u8> {
        let request = request_from_params(&req.params, req.body, req.body_too_large);
        let response = self.0.handle(&request);
        response.into_cgi(request.method == "HEAD")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
            .collect()
    }

    #[test]
    fn nginx_params() {
        let r = request_from_params(
            &p(&[
                ("QUERY_STRING", b"x=\xe9"),
                ("REQUEST_METHOD", b"get"),
                ("CONTENT_TYPE", b"application/json"),
                ("CONTENT_LENGTH", b""),
                ("REQUEST_URI", b"/sync/1.5/1/storage/a%2Fb?x=%E9"),
                ("HTTP_HOST", b"localhost:8000"),
                ("HTTP_AUTHORIZATION", b"Hawk id=\"x\""),
                ("HTTP_X_IF_MODIFIED_SINCE", b"1.5"),
            ]),
            b"{}".to_vec(),
            false,
        );
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/sync/1.5/1/storage/a%2Fb");
        assert_eq!(r.query, "x=%E9");
        assert_eq!(r.header_str("host"), Some("localhost:8000"));
        assert_eq!(r.header_str("x-if-modified-since"), Some("1.5"));
        assert_eq!(r.header_str("content-type"), Some("application/json"));
        assert_eq!(r.header("content-length"), None);
        assert_eq!(r.scheme, "http");
    }

    #[test]
    fn apache_and_https_params() {
        let r = request_from_params(
            &p(&[
                ("Authorization", b"Hawk a"),
                ("SERVER_NAME", b"example.org"),
                ("SERVER_PORT", b"8443"),
                ("HTTPS", b"on"),
                ("REQUEST_METHOD", b"GET"),
                ("SCRIPT_NAME", b"/sync"),
                ("PATH_INFO", b"/1.5/1"),
            ]),
            Vec::new(),
            false,
        );
        assert_eq!(r.header_str("authorization"), Some("Hawk a"));
        assert_eq!(r.header_str("host"), Some("example.org:8443"));
        assert_eq!(r.scheme, "https");
        assert_eq!(r.path, "/sync/1.5/1");
        // A client's X-Forwarded-Proto is kept as a header, never taken as the scheme.
        let r = request_from_params(
            &p(&[
                ("HTTP_X_FORWARDED_PROTO", b"https"),
                ("REQUEST_SCHEME", b"http"),
                ("REMOTE_ADDR", b"10.1.2.3"),
            ]),
            Vec::new(),
            false,
        );
        assert_eq!(r.scheme, "http");
        assert_eq!(r.header_str("x-forwarded-proto"), Some("https"));
        assert_eq!(r.remote_addr, Some([10, 1, 2, 3].into()));
        let r = request_from_params(&p(&[("REMOTE_ADDR", b"unix:")]), Vec::new(), false);
        assert_eq!(r.remote_addr, None);
    }
}
