//! Where a request was addressed (scheme, Host, prefix), checked against
//! `public_url`, and the host/port/path that Hawk signatures cover.

use crate::config::{PublicUrl, TrustedProxies};
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
    /// The scheme in `application_url`.
    pub scheme: String,
}

impl Addressed {
    /// Whether the request differs from `public_url` in its scheme only: a
    /// client speaking plain http to an https server (on its default port or on
    /// public_url's), or a proxy that did not (or may not) say it saw https.
    pub fn scheme_only_mismatch(&self, public: &PublicUrl) -> bool {
        self.scheme != public.scheme
            && self.origin.host == public.host
            && (self.origin.port == public.port || self.origin.port == default_port(&self.scheme))
    }
}

/// The scheme the client used: the one a trusted proxy reports in
/// `X-Forwarded-Proto`, else the one the web server saw.
///
/// The trusted proxy's word wins over the web server's: it describes the
/// client's side, which is what the client signed. A proxy appends to (or
/// replaces) the header, so its own value is the last one; values before it
/// came from further away, possibly from the client. Anything but `http` or
/// `https` is ignored.
fn client_scheme(req: &Request, trusted: &TrustedProxies) -> String {
    let from_proxy = req.remote_addr.is_some_and(|a| trusted.contains(a));
    let forwarded = req
        .header("x-forwarded-proto")
        .filter(|_| from_proxy)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match forwarded.as_deref() {
        Some(p @ ("http" | "https")) => p.to_string(),
        _ => req.scheme.clone(),
    }
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
/// scheme, host and port are taken from public_url, as the Python server did;
/// otherwise `X-Forwarded-Proto` counts only from `trusted` proxies.
pub fn address(
    req: &Request,
    public: &PublicUrl,
    force: bool,
    trusted: &TrustedProxies,
) -> Addressed {
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
        let scheme = client_scheme(req, trusted);
        let port = port.unwrap_or_else(|| default_port(&scheme));
        (scheme, host, port)
    };
    let shown_port = if port == default_port(&scheme) {
        String::new()
    } else {
        format!(":{port}")
    };
    Addressed {
        scheme: scheme.clone(),
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

    fn none() -> TrustedProxies {
        TrustedProxies::default()
    }

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
            &none(),
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
            &none(),
        );
        assert_eq!(b.local_path, "/1.5/1/info/collections");
        assert_eq!(b.origin.path_and_query, "/sync/1.5/1/info/collections");
        // "/syncfoo" is not under "/sync".
        let c = address(
            &req("/syncfoo", "", "sync.example.org", "https"),
            &public,
            false,
            &none(),
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
            &none(),
        );
        assert_eq!(a.application_url, "https://sync.example.org");
        assert_eq!(
            (a.origin.host.as_str(), a.origin.port),
            ("sync.example.org", 443)
        );
        let b = address(
            &req("/", "", "127.0.0.1:8080", "http"),
            &public,
            false,
            &none(),
        );
        assert_eq!(b.application_url, "http://127.0.0.1:8080");
    }

    #[test]
    fn forwarded_proto_only_from_trusted_proxies() {
        let public = PublicUrl::parse("https://sync.example.org").unwrap();
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let from = |addr: Option<&str>, proto: &str| {
            let mut r = req("/1.5/1", "", "sync.example.org", "http");
            r.headers
                .push(("x-forwarded-proto".into(), proto.as_bytes().to_vec()));
            r.remote_addr = addr.map(|a| a.parse().unwrap());
            address(&r, &public, false, &trusted)
        };
        for (addr, proto, expected) in [
            (Some("10.9.8.7"), "https", "https://sync.example.org"),
            (Some("10.9.8.7"), "http, HTTPS", "https://sync.example.org"),
            (Some("10.9.8.7"), "https, http", "http://sync.example.org"),
            (Some("10.9.8.7"), "wss", "http://sync.example.org"),
            (Some("11.0.0.1"), "https", "http://sync.example.org"),
            (None, "https", "http://sync.example.org"),
        ] {
            let a = from(addr, proto);
            assert_eq!(a.application_url, expected, "{addr:?} {proto}");
            assert_eq!(
                a.scheme_only_mismatch(&public),
                expected != public.url,
                "{addr:?} {proto}"
            );
        }
        assert_eq!(from(Some("10.9.8.7"), "https").origin.port, 443);
        // Plain http sent to the https port, Host naming it.
        let mut r = req("/", "", "sync.example.org:443", "http");
        r.remote_addr = Some([11, 0, 0, 1].into());
        assert!(address(&r, &public, false, &trusted).scheme_only_mismatch(&public));
        // Another host, or another port, is not a scheme-only mismatch.
        let port = address(
            &req("/", "", "sync.example.org:8443", "http"),
            &public,
            false,
            &trusted,
        );
        assert!(!port.scheme_only_mismatch(&public));
        let other = address(
            &req("/", "", "evil.example", "http"),
            &public,
            false,
            &trusted,
        );
        assert!(!other.scheme_only_mismatch(&public));
    }
}
