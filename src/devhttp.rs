//! A small HTTP listener for trying the server out without a web server
//! (`serve --http 127.0.0.1:5000`, the old README's `make serve`). It feeds the
//! same [`Request`]s to the same application as the FastCGI front. Not for
//! production: no TLS, no keep-alive tuning, no request timeouts; put nginx or
//! Apache in front for real use.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::http::Request;

/// Why the listener could not start.
#[derive(Debug)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Serves HTTP on `addr` with `workers` threads until `shutdown` is set.
pub fn serve(
    addr: &str,
    app: Arc<App>,
    workers: usize,
    max_body: usize,
    shutdown: Arc<AtomicBool>,
) -> Result<(), HttpError> {
    let server = Arc::new(
        tiny_http::Server::http(addr)
            .map_err(|e| HttpError(format!("cannot listen on {addr}: {e}")))?,
    );
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

fn answer(app: &App, mut req: tiny_http::Request, max_body: usize) {
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
