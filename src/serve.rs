//! `serve`: build the application (`crate::start`), open the listener and
//! answer requests until SIGTERM/SIGINT.

use std::fmt;
use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::alloc;
use crate::config::NoteLevel;
use crate::devhttp;
use crate::fcgi::{self, ServerOptions};
use crate::front::FcgiFront;
use crate::options::ServeOptions;
use crate::preflight;
use crate::start::{build, init_logging, load_settings};

/// Why serving could not start or stopped on an error.
#[derive(Debug)]
enum ServeError {
    /// `--socket-group` names no group on this system (the message says which).
    UnknownGroup(String),
    Listen(fcgi::ListenerError),
    SocketGroup(io::Error),
    Fcgi(io::Error),
    Http(devhttp::HttpError),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::UnknownGroup(why) => write!(f, "--socket-group: {why}"),
            ServeError::Listen(e) => e.fmt(f),
            ServeError::SocketGroup(e) | ServeError::Fcgi(e) => e.fmt(f),
            ServeError::Http(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::UnknownGroup(_) => None,
            ServeError::Listen(e) => Some(e),
            ServeError::SocketGroup(e) | ServeError::Fcgi(e) => Some(e),
            ServeError::Http(e) => Some(e),
        }
    }
}

/// Where requests come from: the FastCGI socket, or plain HTTP for local trials.
enum Front<'a> {
    Fcgi(fcgi::Listener),
    Http(&'a str),
}

/// Opens the FastCGI socket; a unix socket we bind gets `--socket-group`, and a
/// warning when the web server's user could not connect to it.
fn open_listener(options: &ServeOptions) -> Result<fcgi::Listener, ServeError> {
    let group = match &options.socket_group {
        Some(g) => Some(preflight::lookup_group(g).map_err(ServeError::UnknownGroup)?),
        None => None,
    };
    let listener = fcgi::open_listener(options.bind.as_ref(), options.socket_mode)
        .map_err(ServeError::Listen)?;
    if let Some(gid) = group {
        listener.set_group(gid).map_err(ServeError::SocketGroup)?;
    }
    if let Some(path) = listener.created_path() {
        if let Some(warning) = preflight::socket_warning(path) {
            log::warn!("{warning}");
        }
    }
    Ok(listener)
}

/// `serve`: run the FastCGI responder until SIGTERM/SIGINT.
pub fn run(path: Option<&Path>, options: &ServeOptions) -> ExitCode {
    let settings = match load_settings(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    init_logging(&settings);
    alloc::tune();
    for note in &settings.notes {
        match note.level {
            NoteLevel::Warning => log::warn!("config: {}", note.message),
            NoteLevel::Info => log::info!("config: {}", note.message),
        }
    }
    // The database is ready before the socket accepts: a connectable socket
    // means a server that answers.
    // Without --bind or --http the socket is inherited, and the spawner may run several of us.
    let shared_replay = options.bind.is_none() && options.http.is_none();
    let built = match build(&settings, options.workers, shared_replay) {
        Ok(b) => b,
        Err(e) => {
            log::error!("{e}");
            eprintln!("syncserver-fcgi: {e}");
            return ExitCode::from(1);
        }
    };
    // Handlers before the socket exists: a SIGTERM sent as soon as the socket accepts (a
    // supervisor, a test) must still stop us cleanly and remove the socket.
    let shutdown = fcgi::install_signal_handlers();
    // The local trial listener needs no FastCGI socket.
    let front = match &options.http {
        Some(addr) => Front::Http(addr),
        None => match open_listener(options) {
            Ok(l) => Front::Fcgi(l),
            Err(e) => {
                log::error!("{e}");
                eprintln!("syncserver-fcgi: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let max_body = settings.storage.max_request_bytes as usize;
    let app = Arc::new(built.app);
    let result = match front {
        Front::Fcgi(listener) => {
            log::info!(
                "serving {} on {} with {} worker(s); database {}",
                settings.public_url.url,
                listener.describe(),
                built.workers,
                settings.database
            );
            let defaults = ServerOptions::default();
            let opts = ServerOptions {
                max_connections: options.max_connections,
                // At least one handler per database session, or sessions would sit unused.
                max_requests: defaults.max_requests.max(built.workers),
                max_body,
                ..defaults
            };
            fcgi::serve(listener, Arc::new(FcgiFront(app)), opts, shutdown)
                .map_err(ServeError::Fcgi)
        }
        Front::Http(addr) => {
            log::warn!(
                "serving {} over plain HTTP on {addr} for local trials; use nginx or Apache (FastCGI) in production",
                settings.public_url.url
            );
            devhttp::serve(
                addr,
                &settings.public_url,
                app,
                built.workers,
                max_body,
                shutdown,
            )
            .map_err(ServeError::Http)
        }
    };
    match result {
        Ok(()) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("server failed: {e}");
            eprintln!("syncserver-fcgi: {e}");
            ExitCode::from(1)
        }
    }
}
