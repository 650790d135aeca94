//! Start-up: settings → logging → database → application → FastCGI server.
//! Everything that can be done once is done here, not per request.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::admin;
use crate::admin::{stored_secret, SecretError};
use crate::app::{App, AppConfig};
use crate::auth::{Authenticator, ReplayLimits, DEFAULT_MAX_TOKENS};
use crate::cli::{AdminCommand, ServeOptions};
use crate::config::{self, DatabaseUri, NoteLevel, Settings};
use crate::db::{self, DbError};
use crate::devhttp;
use crate::fcgi::{self, ServerOptions};
use crate::front::FcgiFront;
use crate::preflight;
use crate::storage::{Storage, StorageConfig};
use crate::tokenserver::jwt::{parse_jwks, JwkError, RsaJwk};
use crate::tokenserver::oauth::OAuthConfig;
use crate::tokenserver::rules::Admission;
use crate::tokenserver::{self, Tokenserver, TokenserverConfig};

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

/// `check-config`: print the effective settings, then check the database as
/// `serve` will open it (as `as_user` when given) and report every problem.
pub fn check_config(path: Option<&Path>, as_user: Option<&str>) -> ExitCode {
    let settings = match load_settings(path) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let user = match as_user.map(preflight::lookup_user).transpose() {
        Ok(user) => user.unwrap_or_else(preflight::current_user),
        Err(e) => {
            eprintln!("syncserver-fcgi: --as-user: {e}");
            return ExitCode::from(2);
        }
    };
    println!("{}", config::report(&settings));
    let files: Vec<&Path> = [&settings.config_path, &settings.oauth_jwks_file]
        .into_iter()
        .filter_map(|f| f.as_deref())
        .collect();
    let checks = || {
        let mut p = preflight::unreadable_files(&files);
        p.extend(preflight::database_problems(&settings.database));
        p
    };
    let problems = match preflight::run_as(&user, checks) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("syncserver-fcgi: {e}");
            return ExitCode::from(2);
        }
    };
    println!("Files and database, checked as {user}:");
    if problems.is_empty() {
        println!("  OK: serve can read its files and open the database.");
    }
    for p in &problems {
        println!("  [problem] {p}");
    }
    if user.uid == 0 {
        println!(
            "  (root may write anywhere: use --as-user USER to check as the user that serves)"
        );
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
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

/// Why start-up could not build the application.
#[derive(Debug)]
pub enum StartError {
    /// The database could not be opened or prepared.
    Database {
        /// The configured database.
        uri: DatabaseUri,
        /// Why.
        cause: DbError,
    },
    /// A secret that is not configured could not be generated or stored.
    Secret(SecretError),
    /// `[oauth] jwks` does not parse.
    Jwks(JwkError),
    /// `[oauth] jwks_file` cannot be read.
    JwksFileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// `[oauth] jwks_file` does not parse.
    JwksFile {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: JwkError,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Database { uri, cause } => {
                write!(f, "cannot open the database {uri:?}: {cause}")
            }
            StartError::Secret(e) => e.fmt(f),
            StartError::Jwks(e) => write!(f, "[oauth] jwks: {e}"),
            StartError::JwksFileUnreadable { path, cause } => {
                write!(f, "[oauth] jwks_file {}: {cause}", path.display())
            }
            StartError::JwksFile { path, cause } => {
                write!(f, "[oauth] jwks_file {}: {cause}", path.display())
            }
        }
    }
}

impl std::error::Error for StartError {}

impl From<SecretError> for StartError {
    fn from(e: SecretError) -> Self {
        StartError::Secret(e)
    }
}

/// Everything start-up builds before serving.
pub struct Built {
    /// The application.
    pub app: App,
    /// Sessions in the pool.
    pub workers: usize,
}

/// Prepares the database and builds the application. `shared_replay`: keep the Hawk replay
/// state where every process on this database sees it (for a socket inherited from mod_fcgid
/// or spawn-fcgi, which may start several processes).
pub fn build(
    settings: &Settings,
    workers: usize,
    shared_replay: bool,
) -> Result<Built, StartError> {
    let mut opened =
        db::open(&settings.database, workers).map_err(|cause| StartError::Database {
            uri: settings.database.clone(),
            cause,
        })?;
    for change in &opened.changes {
        log::info!("database upgraded: {change}");
    }
    let secrets = if settings.secrets.is_empty() {
        vec![stored_secret(&mut *opened.first, "secret", "secret")?]
    } else {
        settings.secrets.clone()
    };
    let metrics_secret = match &settings.metrics_secret {
        Some(s) => s.clone(),
        None => stored_secret(
            &mut *opened.first,
            "metrics_secret",
            "metrics secret (for hashed_fxa_uid)",
        )?,
    };
    let jwks = configured_jwks(settings)?;

    // The start-up session is the first one; the others open on demand.
    let workers = opened.sessions;
    let (pool, replay_opener) = opened.into_pool();
    let pool = Arc::new(pool);

    let tokenserver = Tokenserver::new(
        TokenserverConfig {
            node_url: settings.node_url.clone(),
            public_url: settings.public_url.url.clone(),
            signing_secret: secrets.last().cloned().unwrap_or_default(),
            metrics_secret,
            token_duration: settings.token_duration,
            admission: Admission {
                allow_new_users: settings.allow_new_users,
                max_users: settings.max_users,
            },
            allowed_users: settings.allowed_users.clone(),
            browserid_verifier: settings.browserid_verifier.clone(),
            audience: settings.public_url.origin(),
            oauth: OAuthConfig {
                verifier_url: settings.oauth_verifier.clone(),
                identity_provider: settings.identity_provider.clone(),
                jwks,
                timeout: tokenserver::timeout(settings.oauth_timeout),
                default_issuer: settings.oauth_default_issuer.clone(),
            },
        },
        Arc::clone(&pool),
    );
    log::info!("access tokens are verified by {}", tokenserver.describe());

    let limits =
        ReplayLimits::with_max_nonces(usize::try_from(settings.max_nonces).unwrap_or(usize::MAX));
    let mut authenticator = Authenticator::with_limits(
        secrets,
        settings.expired_token_timeout,
        settings.timestamp_skew,
        DEFAULT_MAX_TOKENS,
        limits,
    );
    if let (true, Some(opener)) = (shared_replay, replay_opener) {
        let place = opener.place();
        // Refusing to start would take reads down too (mod_fcgid answers 500 for a worker that
        // exits); each process then keeps its own nonces, as before, and says so loudly.
        match opener.open(limits) {
            Ok(shared) => {
                log::info!("Hawk nonces are shared by every process through {place}");
                authenticator = authenticator.with_replay_store(shared);
            }
            Err(e) => log::error!(
                "cannot open the replay file {place} ({e}): each process keeps its own Hawk nonces, so a replay sent to another process is not caught; make the database directory writable"
            ),
        }
    }
    let storage = Storage::new(
        StorageConfig {
            limits: settings.storage.clone(),
            quota: settings.quota_size.map(|q| q.min(i64::MAX as u64) as i64),
            batch_enabled: settings.batch_upload_enabled,
            node: settings.public_url.url.clone(),
        },
        authenticator,
        pool,
    );
    let app = App::new(
        AppConfig {
            public_url: settings.public_url.clone(),
            force_wsgi_environ: settings.force_wsgi_environ,
            trusted_proxies: settings.trusted_proxies.clone(),
        },
        storage,
        tokenserver,
    );
    Ok(Built { app, workers })
}

/// glibc's defaults suit neither a small box nor our request sizes: one malloc
/// arena per thread made RSS grow to ~100 MB under load, and trimming the heap
/// after every ~100 KB response made each request fault its pages in again.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any worker
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}

/// The JWKs from `[oauth] jwks` and `jwks_file` (both may be given: rotation).
fn configured_jwks(settings: &Settings) -> Result<Vec<RsaJwk>, StartError> {
    let mut keys = Vec::new();
    if let Some(text) = &settings.oauth_jwks {
        keys.extend(parse_jwks(text).map_err(StartError::Jwks)?);
    }
    if let Some(path) = &settings.oauth_jwks_file {
        let text =
            std::fs::read_to_string(path).map_err(|cause| StartError::JwksFileUnreadable {
                path: path.clone(),
                cause,
            })?;
        let parsed = parse_jwks(&text).map_err(|cause| StartError::JwksFile {
            path: path.clone(),
            cause,
        })?;
        keys.extend(parsed);
    }
    Ok(keys)
}

/// Opens the FastCGI socket; a unix socket we bind gets `--socket-group`, and a
/// warning when the web server's user could not connect to it.
fn open_listener(options: &ServeOptions) -> Result<fcgi::Listener, String> {
    let group = match &options.socket_group {
        Some(g) => Some(preflight::lookup_group(g).map_err(|e| format!("--socket-group: {e}"))?),
        None => None,
    };
    let listener = fcgi::open_listener(options.bind.as_ref(), options.socket_mode)
        .map_err(|e| e.to_string())?;
    if let Some(gid) = group {
        listener.set_group(gid).map_err(|e| e.to_string())?;
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
    tune_allocator();
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
    // The local trial listener needs no FastCGI socket.
    let listener = match &options.http {
        Some(_) => None,
        None => match open_listener(options) {
            Ok(l) => Some(l),
            Err(e) => {
                log::error!("{e}");
                eprintln!("syncserver-fcgi: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let shutdown = fcgi::install_signal_handlers();
    let max_body = settings.storage.max_request_bytes as usize;
    let app = Arc::new(built.app);
    let result = match (listener, &options.http) {
        (Some(listener), _) => {
            log::info!(
                "serving {} on {} with {} worker(s); database {:?}",
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
                .map_err(|e| e.to_string())
        }
        (None, Some(addr)) => {
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
            .map_err(|e| e.to_string())
        }
        (None, None) => Err("no listener".to_string()),
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

/// Runs an operator command with the server's configuration.
pub fn admin(path: Option<&Path>, command: &AdminCommand, json: bool) -> ExitCode {
    let settings = match load_settings(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let result = match command {
        AdminCommand::Purge(opts) => admin::purge(&settings, opts, json),
        AdminCommand::ListUsers => admin::list_users(&settings, json),
        AdminCommand::DeleteUser { target, yes } => {
            let stdin = std::io::stdin();
            admin::delete_user(
                &settings,
                target,
                *yes,
                &mut stdin.lock(),
                &mut std::io::stderr(),
            )
        }
        AdminCommand::Stats => admin::stats(&settings, json),
        AdminCommand::Backup(file) => admin::backup(&settings, file),
        AdminCommand::Secret { metrics } => admin::secret(&settings, *metrics),
    };
    match result {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("syncserver-fcgi: {e}");
            ExitCode::from(1)
        }
    }
}
