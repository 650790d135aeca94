//! A small, synchronous FastCGI responder.
//!
//! This module knows the FastCGI protocol and nothing about Sync. The application sees one
//! [`FcgiRequest`] at a time (params as raw bytes, body fully read) and answers with CGI-style
//! bytes (`Status:` and other header lines, a blank line, the body).
//!
//! # Using it
//!
//! ```rust,ignore
//! use std::sync::Arc;
//! use syncserver_fastcgi::*;
//! struct Hello;
//! impl Handler for Hello {
//!     fn handle(&self, _req: FcgiRequest) -> Vec<u8> {
//!         b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello".to_vec()
//!     }
//! }
//! let bind: Option<BindAddr> = None; // from --bind
//! let listener = open_listener(bind.as_ref(), 0o660).unwrap_or_else(|e| {
//!     eprintln!("{e}");
//!     std::process::exit(2)
//! });
//! log::info!("listening on {}", listener.describe());
//! let shutdown = install_signal_handlers();
//! serve(listener, Arc::new(Hello), ServerOptions::default(), shutdown).unwrap();
//! ```
//!
//! # Where the socket comes from
//!
//! [`open_listener`] tries, in order: an explicit `--bind` address (nginx, Apache
//! mod_proxy_fcgi), a systemd-activated socket on fd 3, and a listening socket on fd 0 (Apache
//! mod_fcgid, spawn-fcgi).
//!
//! # Concurrency and limits
//!
//! One thread accepts, receives and sends for every connection (non-blocking sockets and
//! poll(2)); only complete requests go to at most [`ServerOptions::max_requests`] handler
//! threads. So idle, half-sent and slow connections never keep a request waiting: they cost a
//! buffer and a file descriptor, never a handler thread. Requests on one connection run one
//! after the other (no multiplexing, which no common web server uses). Up to
//! [`ServerOptions::max_connections`] connections stay open; beyond that the one idle longest
//! is closed to make room, or new ones wait in the kernel backlog. A request's head (params)
//! must arrive within [`ServerOptions::header_timeout`], shorter than the
//! [`ServerOptions::io_timeout`] allowed to a body that stops moving. Params and bodies are
//! capped; malformed input closes the connection with one warning and never panics; a
//! panicking handler becomes a 500 and the thread survives.
//!
//! # Aborted requests
//!
//! An FCGI_ABORT_REQUEST that arrives while the request is still being received ends it with
//! END_REQUEST (protocol status REQUEST_COMPLETE, app status 0) and no STDOUT; the handler is
//! not called. Once the handler runs, the abort is only seen after it returns and is ignored.
//!
//! # Shutdown
//!
//! [`serve`] returns after its `shutdown` flag is set: it stops accepting, lets in-flight
//! requests finish (up to [`ServerOptions::drain_timeout`]) and closes idle keep-alive
//! connections. [`install_signal_handlers`] sets such a flag on SIGTERM/SIGINT.
//! The unix socket file [`open_listener`] bound itself is removed when the listener is
//! dropped, if it is still the same file (an inherited socket is never removed).

#![deny(missing_docs)]

mod conn;
mod listener;
pub mod record;
mod server;
mod signal;
mod sys;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub use listener::{open_listener, BindAddr, Listener, ListenerError};

/// One FastCGI request as received: params as raw bytes (never lossy-converted), body fully read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FcgiRequest {
    /// Name-value pairs in the order the web server sent them, duplicates included.
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
    /// The request body; empty when `body_too_large`.
    pub body: Vec<u8>,
    /// The body (declared or received) exceeded `max_body` and was discarded: answer 413.
    pub body_too_large: bool,
}

impl FcgiRequest {
    /// The value of param `name`; if it was sent more than once, the last occurrence wins
    /// (nginx sends a param twice when a config sets it twice).
    pub fn param(&self, name: &[u8]) -> Option<&[u8]> {
        self.params
            .iter()
            .rev()
            .find(|(n, _)| n.as_slice() == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// The application: returns a CGI-style response, i.e. header lines
/// "Status: 200 OK\r\nContent-Type: ...\r\n" then "\r\n" then the body bytes.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request; called on a connection thread, possibly concurrently.
    fn handle(&self, req: FcgiRequest) -> Vec<u8>;
}

/// Limits and timeouts of [`serve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Connections held open at once (idle, receiving, being answered); also announced as
    /// FCGI_MAX_CONNS/MAX_REQS. Each costs a file descriptor and its buffers, no thread.
    pub max_connections: usize,
    /// Requests handled at once: the number of handler threads, spawned as needed.
    pub max_requests: usize,
    /// Largest body handed to the handler; bigger ones arrive as `body_too_large`.
    pub max_body: usize,
    /// Largest total size of one request's encoded params; bigger closes the connection.
    pub max_params: usize,
    /// How long a kept-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// How long a new connection may take to start a request, and a request to deliver its
    /// head (BEGIN_REQUEST and all PARAMS) once started. Web servers send the head at once,
    /// so this is short: it closes connections whose peer never finishes a request.
    pub header_timeout: Duration,
    /// How long a body being received, or an answer being sent, may stop moving.
    pub io_timeout: Duration,
    /// How long `serve` waits for in-flight requests after shutdown is requested.
    pub drain_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            // Well above what a web server opens to one backend (nginx's upstream keepalive
            // cache, Apache's threads per child), and within the usual 1024 open files.
            max_connections: 768,
            max_requests: 64,
            // Above Mozilla's max_request_bytes (2.5 MiB) so the app, not this layer, decides.
            max_body: 4 * 1024 * 1024,
            max_params: 256 * 1024,
            // Longer than nginx's default upstream keepalive_timeout (60 s), so nginx rather
            // than we ends an idle kept connection: no race with a request it is sending.
            idle_timeout: Duration::from_secs(120),
            header_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serve until `shutdown` becomes true, then stop accepting, let in-flight requests finish (up
/// to drain_timeout), close idle keep-alive connections, return. Errors only when the listener
/// itself is unusable (e.g. not a listening socket).
pub fn serve(
    listener: Listener,
    handler: Arc<dyn Handler>,
    opts: ServerOptions,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<()> {
    server::serve(listener, handler, opts, shutdown)
}

/// Installs SIGTERM/SIGINT handlers that set the returned flag (always the same flag, however
/// often this is called). A second signal while draining exits at once with status 130.
pub fn install_signal_handlers() -> Arc<AtomicBool> {
    signal::install()
}

/// Number of requests currently being received or handled, process-wide.
pub fn in_flight() -> usize {
    conn::in_flight()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_last_occurrence_wins() {
        let req = FcgiRequest {
            params: vec![
                (b"HTTP_HOST".to_vec(), b"a".to_vec()),
                (b"X".to_vec(), b"\xe9".to_vec()),
                (b"HTTP_HOST".to_vec(), b"b:8080".to_vec()),
            ],
            ..FcgiRequest::default()
        };
        assert_eq!(req.param(b"HTTP_HOST"), Some(&b"b:8080"[..]));
        assert_eq!(req.param(b"X"), Some(&b"\xe9"[..]));
        assert_eq!(req.param(b"x"), None);
    }

    #[test]
    fn signal_flag_is_shared_and_set_by_sigterm() {
        let a = install_signal_handlers();
        let b = install_signal_handlers();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!a.load(std::sync::atomic::Ordering::SeqCst));
        signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
        assert!(b.load(std::sync::atomic::Ordering::SeqCst));
    }
}
