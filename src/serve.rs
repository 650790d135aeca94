//! Start-up: settings → logging → database → application → FastCGI server.
//! Everything that can be done once is done here, not per request.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::app::{App, AppConfig};
use crate::auth::{metrics::random_secret_hex, Authenticator};
use crate::cli::ServeOptions;
use crate::config::{self, DatabaseUri, NoteLevel, Settings};
use crate::db::sqlite::{self, schema, Location, SqliteDb};
use crate::db::{Pool, StorageDb};
use crate::fcgi::{self, ServerOptions};
use crate::front::FcgiFront;
use crate::storage::{Limits, Storage, StorageConfig};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads the settings, printing a clear message on failure.
fn load_settings(path: Option<&Path>) -> Result<Settings, ExitCode> {
    let path = path
        .map(Path::to_path_buf)
        .or_else(|| config::default_config_path(&env));
    config::load(path.as_deref(), &env).map_err(|e| {
        eprintln!("syncserver-fcgi: configuration error: {e}");
        ExitCode::from(2)
    })
}

/// `check-config`: print the effective settings and every problem found.
pub fn check_config(path: Option<&Path>) -> ExitCode {
    match load_settings(path) {
        Ok(settings) => {
            println!("{}", config::report(&settings));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn init_logging(settings: &Settings) {
    let default = settings.loglevel.clone().unwrap_or_else(|| {
        if settings.debug_enabled {
            "debug"
        } else {
            "info"
        }
        .to_string()
    });
    let env = env_logger::Env::default().default_filter_or(default);
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .try_init();
    // Panics are bugs: log them once, without backtraces (RUST_BACKTRACE is often
    // set in shells and made each panic slow and memory-hungry).
    std::panic::set_hook(Box::new(|info| {
        log::error!("internal error (a bug, please report it): {info}");
    }));
}

fn location(settings: &Settings) -> Location {
    match &settings.database {
        DatabaseUri::Sqlite(path) => Location::File(path.clone()),
        DatabaseUri::Memory => Location::Memory,
    }
}

/// Everything start-up builds before serving.
pub struct Built {
    /// The application.
    pub app: App,
    /// Sessions in the pool.
    pub workers: usize,
}

/// Prepares the database and builds the application.
pub fn build(settings: &Settings, workers: usize) -> Result<Built, String> {
    let location = location(settings);
    let (conn, migration) = sqlite::prepare(&location)
        .map_err(|e| format!("cannot open the database {:?}: {e}", settings.database))?;
    for change in &migration.changes {
        log::info!("database upgraded: {change}");
    }
    let secrets = if settings.secrets.is_empty() {
        let fresh = random_secret_hex(32).map_err(|e| format!("cannot generate a secret: {e}"))?;
        let stored = schema::meta_get_or_insert(&conn, "secret", &fresh)
            .map_err(|e| format!("cannot store the generated secret: {e}"))?;
        if stored == fresh {
            log::info!(
                "no secret in the configuration: generated one and stored it in the database"
            );
        }
        vec![stored]
    } else {
        settings.secrets.clone()
    };

    let workers = if location == Location::Memory && workers > 1 {
        log::warn!("sqluri is :memory:, which no two workers can share: using 1 worker");
        1
    } else {
        workers
    };
    let mut sessions: Vec<Box<dyn StorageDb>> = Vec::with_capacity(workers);
    if location == Location::Memory {
        sessions.push(Box::new(
            SqliteDb::from_connection(conn).map_err(|e| e.to_string())?,
        ));
    } else {
        drop(conn);
        for _ in 0..workers {
            sessions.push(Box::new(
                SqliteDb::open(&location).map_err(|e| e.to_string())?,
            ));
        }
    }

    let s = &settings.storage;
    let storage = Storage::new(
        StorageConfig {
            limits: Limits {
                max_request_bytes: s.max_request_bytes,
                max_record_payload_bytes: s.max_record_payload_bytes,
                max_post_records: s.max_post_records,
                max_post_bytes: s.max_post_bytes,
                max_total_records: s.max_total_records,
                max_total_bytes: s.max_total_bytes,
            },
            quota: settings.quota_size.map(|q| q.min(i64::MAX as u64) as i64),
            batch_enabled: settings.batch_upload_enabled,
            node: settings.public_url.url.clone(),
        },
        Authenticator::new(
            secrets,
            settings.expired_token_timeout,
            settings.timestamp_skew,
        ),
        Pool::new(sessions),
    );
    let app = App::new(
        AppConfig {
            public_url: settings.public_url.clone(),
            force_wsgi_environ: settings.force_wsgi_environ,
        },
        storage,
    );
    Ok(Built { app, workers })
}

/// `serve`: run the FastCGI responder until SIGTERM/SIGINT.
pub fn run(path: Option<&Path>, options: &ServeOptions) -> ExitCode {
    let settings = match load_settings(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    init_logging(&settings);
    for note in &settings.notes {
        match note.level {
            NoteLevel::Warning => log::warn!("config: {}", note.message),
            NoteLevel::Info => log::info!("config: {}", note.message),
        }
    }
    let listener = match fcgi::open_listener(options.bind.as_ref(), options.socket_mode) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            eprintln!("syncserver-fcgi: {e}");
            return ExitCode::from(2);
        }
    };
    let built = match build(&settings, options.workers) {
        Ok(b) => b,
        Err(e) => {
            log::error!("{e}");
            eprintln!("syncserver-fcgi: {e}");
            return ExitCode::from(1);
        }
    };
    log::info!(
        "serving {} on {} with {} worker(s); database {:?}",
        settings.public_url.url,
        listener.describe(),
        built.workers,
        settings.database
    );
    let shutdown = fcgi::install_signal_handlers();
    let opts = ServerOptions {
        max_connections: options.max_connections.max(built.workers),
        // A little slack over max_request_bytes: the app answers 413 itself.
        max_body: settings.storage.max_request_bytes as usize,
        ..ServerOptions::default()
    };
    let app = Arc::new(built.app);
    match fcgi::serve(listener, Arc::new(FcgiFront(app)), opts, shutdown) {
        Ok(()) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("server failed: {e}");
            ExitCode::from(1)
        }
    }
}
