//! `serve`: build the application (`crate::start`), open the listener and
//! answer requests until SIGTERM/SIGINT.

use std::fmt;
use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::alloc;
use crate::app::Serving;
use crate::config::NoteLevel;
use crate::config::Settings;
use crate::db::DbError;
use crate::devhttp;
use crate::fcgi::{self, ServerOptions};
use crate::front::FcgiFront;
use crate::options::ServeOptions;
use crate::preflight;
use crate::start::{build, init_logging, load_settings, StartError};
use std::time::Duration;

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

/// Whether start-up failed only because a database server could not be reached
/// (down, still booting, refusing connections): worth waiting for.
fn unreachable_server(e: &StartError) -> bool {
    matches!(
        e,
        StartError::Database {
            cause: DbError::Unavailable(_),
            ..
        }
    )
}

/// Builds the application once the database server answers, retrying with a
/// growing pause (1 s up to 10 s), and then starts serving with it.
fn build_when_reachable(
    settings: Settings,
    workers: usize,
    shared_replay: bool,
    serving: &Arc<Serving>,
) {
    let serving = Arc::clone(serving);
    std::thread::spawn(move || {
        let mut pause = Duration::from_secs(1);
        loop {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(10));
            match build(&settings, workers, shared_replay) {
                Ok(built) => {
                    log::info!("the database answers now: serving");
                    serving.set(built.app);
                    return;
                }
                Err(e) if unreachable_server(&e) => {
                    log::warn!("{e}; retrying in {} s", pause.as_secs());
                }
                Err(e) => log::error!("{e}; retrying in {} s", pause.as_secs()),
            }
        }
    });
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
    // means a server that answers (only a database server that cannot be reached
    // yet makes it answer 503 until it can).
    // Without --bind or --http the socket is inherited, and the spawner may run several of us.
    let shared_replay = options.bind.is_none() && options.http.is_none();
    let (serving, workers) = match build(&settings, options.workers, shared_replay) {
        Ok(b) => (Arc::new(Serving::ready(b.app)), b.workers),
        Err(e) if unreachable_server(&e) => {
            log::error!("{e}: answering 503 with Retry-After and retrying in the background");
            let serving = Arc::new(Serving::waiting());
            build_when_reachable(settings.clone(), options.workers, shared_replay, &serving);
            (serving, options.workers)
        }
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
    let result = match front {
        Front::Fcgi(listener) => {
            log::info!(
                "serving {} on {} with {} worker(s); database {}",
                settings.public_url.url,
                listener.describe(),
                workers,
                settings.database
            );
            let defaults = ServerOptions::default();
            let opts = ServerOptions {
                max_connections: options.max_connections,
                // At least one handler per database session, or sessions would sit unused.
                max_requests: defaults.max_requests.max(workers),
                max_body,
                ..defaults
            };
            fcgi::serve(listener, Arc::new(FcgiFront(serving)), opts, shutdown)
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
                serving,
                workers,
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
