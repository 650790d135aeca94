//! A small HTTP listener for trying the server out without a web server
//! (`serve --http 127.0.0.1:5000`, the old README's `make serve`). It feeds the
//! same [`Request`]s to the same application as the FastCGI front. Not for
//! production: no TLS, no keep-alive tuning, no request timeouts; put nginx or
//! Apache in front for real use.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::app::Serving;
use crate::config::PublicUrl;
use crate::http::Request;

/// The trial listener could not listen on `addr`.
#[derive(Debug)]
pub struct HttpError {
    addr: String,
    cause: Box<dyn std::error::Error + Send + Sync>,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.cause)
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.cause)
    }
}

/// Serves HTTP on `addr` with `workers` threads until `shutdown` is set.
/// Once listening, prints on stdout the URL to open (see [`banner`]).
pub fn serve(
    addr: &str,
    public: &PublicUrl,
    app: Arc<Serving>,
    workers: usize,
    max_body: usize,
    shutdown: Arc<AtomicBool>,
) -> Result<(), HttpError> {
    let server = Arc::new(tiny_http::Server::http(addr).map_err(|cause| HttpError {
        addr: addr.to_string(),
        cause,
    })?);
    if let Some(bound) = server.server_addr().to_ip() {
        println!("{}", banner(public, bound));
    }
    let threads: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (server, app, shutdown) =
                (Arc::clone(&server), Arc::clone(&app), Arc::clone(&shutdown));
            std::thread::spawn(move || {
                while !shutdown.load(Ordering::Relaxed) {
                    match server.recv_timeout(Duration::from_millis(250)) {
                        Ok(Some(req)) => answer(&app, req, max_body),
                        Ok(None) => {}
                        Err(e) => log::warn!("HTTP listener: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// What `serve --http` prints once it listens: the address to open, the
/// token server URL for Firefox, and, when `public_url` names another host,
/// port or scheme than the listener, that requests must use public_url's
/// (tokens and signatures name it; other addresses get 421).
pub fn banner(public: &PublicUrl, bound: SocketAddr) -> String {
    let url = &public.url;
    let mut text = format!(
        "syncserver-fcgi: plain HTTP on {bound}, for local trials (use nginx or Apache in production).\n\
         Open {url}/ to see it answer; in Firefox set about:config\n\
         identity.sync.tokenserver.uri = {url}/token/1.0/sync/1.5"
    );
    let host = match bound.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let same_host = bound.ip().is_unspecified() || public.host == host;
    if public.scheme != "http" || public.port != bound.port() || !same_host {
        text.push_str(&format!(
            "\nNote: public_url is {url}, but this listens on http://{bound}: requests must use \
             public_url's scheme, host and port (others get 421 Misdirected Request). \
             Open {url}/, or set public_url = http://{bound}/ in the config file."
        ));
    }
    text
}

fn answer(app: &Serving, mut req: tiny_http::Request, max_body: usize) {
    let url = req.url().to_string();
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (url, String::new()),
    };
    let headers: Vec<(String, Vec<u8>)> = req
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_bytes().to_vec(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let limit = max_body as u64 + 1;
    let too_large = match req.as_reader().take(limit).read_to_end(&mut body) {
        Ok(n) => n as u64 >= limit,
        Err(e) => {
            log::info!("HTTP listener: reading the body failed: {e}");
            return;
        }
    };
    if too_large {
        body.clear();
    }
    let method = req.method().as_str().to_ascii_uppercase();
    let request = Request {
        method: method.clone(),
        path,
        query,
        headers,
        scheme: "http".into(),
        remote_addr: req.remote_addr().map(|a| a.ip()),
        body,
        body_too_large: too_large,
    };
    let resp = app.handle(&request);
    let body = if method == "HEAD" || resp.status == 304 {
        Vec::new()
    } else {
        resp.body
    };
    let mut out = tiny_http::Response::from_data(body).with_status_code(resp.status);
    for (name, value) in &resp.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            out.add_header(h);
        }
    }
    if let Err(e) = req.respond(out) {
        log::debug!("HTTP listener: client went away: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(url: &str) -> PublicUrl {
        PublicUrl::parse(url).unwrap()
    }

    #[test]
    fn banner_names_the_url_to_open() {
        let bound: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b = banner(&public("http://127.0.0.1:5000/"), bound);
        assert!(b.contains("Open http://127.0.0.1:5000/ "), "{b}");
        assert!(
            b.contains("tokenserver.uri = http://127.0.0.1:5000/token/1.0/sync/1.5"),
            "{b}"
        );
        assert!(!b.contains("Note:"), "{b}");
        // Listening everywhere: any host may be the right one.
        let any: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        assert!(!banner(&public("http://sync.lan:5000"), any).contains("Note:"));
    }

    #[test]
    fn banner_warns_when_public_url_names_another_address() {
        let bound: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        for url in [
            "http://localhost:5000/",
            "http://127.0.0.1:5001/",
            "https://127.0.0.1:5000/",
        ] {
            let b = banner(&public(url), bound);
            assert!(b.contains("Note: public_url is"), "{url}: {b}");
            assert!(b.contains("421"), "{url}: {b}");
            assert!(b.contains("public_url = http://127.0.0.1:5000/"), "{b}");
        }
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        assert!(!banner(&public("http://[::1]:5000"), v6).contains("Note:"));
    }
}
