//! Where a request was addressed (scheme, Host, prefix), checked against
//! `public_url`, and the host/port/path that Hawk signatures cover.

use crate::config::PublicUrl;
use crate::http::Request;
use crate::storage::Origin;

/// The outcome of looking at a request's address.
pub struct Addressed {
    /// The path below the public_url prefix, raw.
    pub local_path: String,
    /// Hawk's view of the request.
    pub origin: Origin,
    /// `scheme://host[:port]/prefix` as the request shows it.
    pub application_url: String,
}

/// Splits a Host header into host and optional port (`[::1]:80` works too).
pub fn split_host(host: &str) -> (String, Option<u16>) {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (format!("[{}]", h.to_ascii_lowercase()), port);
        }
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.to_ascii_lowercase(), Some(port)),
            Err(_) => (host.to_ascii_lowercase(), None),
        },
        _ => (host.to_ascii_lowercase(), None),
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// Works out the request's address. With `force` (`force_wsgi_environ`) the
/// scheme, host and port are taken from public_url, as the Python server did.
pub fn address(req: &Request, public: &PublicUrl, force: bool) -> Addressed {
    let prefix = public.path.as_str();
    // REQUEST_URI keeps the prefix; a proxy that stripped it is tolerated, and
    // the client's signature then still covers the prefixed path.
    let (local_path, signed_path) = match req.path.strip_prefix(prefix) {
        Some(rest) if prefix.is_empty() || rest.is_empty() || rest.starts_with('/') => {
            (rest.to_string(), req.path.clone())
        }
        _ => (req.path.clone(), format!("{prefix}{}", req.path)),
    };
    let path_and_query = if req.query.is_empty() {
        signed_path
    } else {
        format!("{signed_path}?{}", req.query)
    };
    let (scheme, host, port) = if force {
        (public.scheme.clone(), public.host.clone(), public.port)
    } else {
        let (host, port) = split_host(req.header_str("host").unwrap_or(""));
        let scheme = req.scheme.clone();
        let port = port.unwrap_or_else(|| default_port(&scheme));
        (scheme, host, port)
    };
    let shown_port = if port == default_port(&scheme) {
        String::new()
    } else {
        format!(":{port}")
    };
    Addressed {
        local_path,
        application_url: format!("{scheme}://{host}{shown_port}{prefix}"),
        origin: Origin {
            host,
            port,
            path_and_query,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, query: &str, host: &str, scheme: &str) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            headers: vec![("host".into(), host.as_bytes().to_vec())],
            scheme: scheme.into(),
            ..Request::default()
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            split_host("Example.org:8000"),
            ("example.org".into(), Some(8000))
        );
        assert_eq!(split_host("example.org"), ("example.org".into(), None));
        assert_eq!(split_host("[::1]:5000"), ("[::1]".into(), Some(5000)));
        assert_eq!(split_host("h:x"), ("h:x".into(), None));
    }

    #[test]
    fn prefix_and_origin() {
        let public = PublicUrl::parse("https://sync.example.org/sync/").unwrap();
        let a = address(
            &req(
                "/sync/1.5/1/info/collections",
                "x=1",
                "sync.example.org",
                "https",
            ),
            &public,
            false,
        );
        assert_eq!(a.local_path, "/1.5/1/info/collections");
        assert_eq!(a.application_url, "https://sync.example.org/sync");
        assert_eq!(a.origin.port, 443);
        assert_eq!(a.origin.path_and_query, "/sync/1.5/1/info/collections?x=1");
        // A proxy that stripped the prefix.
        let b = address(
            &req("/1.5/1/info/collections", "", "sync.example.org", "https"),
            &public,
            false,
        );
        assert_eq!(b.local_path, "/1.5/1/info/collections");
        assert_eq!(b.origin.path_and_query, "/sync/1.5/1/info/collections");
        // "/syncfoo" is not under "/sync".
        let c = address(
            &req("/syncfoo", "", "sync.example.org", "https"),
            &public,
            false,
        );
        assert_eq!(c.local_path, "/syncfoo");
    }

    #[test]
    fn forced_environ_uses_public_url() {
        let public = PublicUrl::parse("https://sync.example.org").unwrap();
        let a = address(
            &req("/1.5/1/info/collections", "", "127.0.0.1:8080", "http"),
            &public,
            true,
        );
        assert_eq!(a.application_url, "https://sync.example.org");
        assert_eq!(
            (a.origin.host.as_str(), a.origin.port),
            ("sync.example.org", 443)
        );
        let b = address(&req("/", "", "127.0.0.1:8080", "http"), &public, false);
        assert_eq!(b.application_url, "http://127.0.0.1:8080");
    }
}
