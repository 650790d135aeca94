//! Start-up wiring: settings → logging → database → application. Everything
//! that can be done once is done here, not per request; the commands
//! (`serve`, `check-config`, the operator commands) start from here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::admin::{stored_secret, SecretError};
use crate::app::{App, AppConfig};
use crate::auth::{node_secret, Authenticator, ReplayLimits, DEFAULT_MAX_TOKENS};
use crate::config::{self, DatabaseUri, Role, Settings};
use crate::db::nodes::{NodeStore, NodesDb};
use crate::db::{self, DbError, Pool};
use crate::storage::{Storage, StorageConfig};
use crate::tokenserver::jwt::{parse_jwks, JwkError, RsaJwk};
use crate::tokenserver::oauth::OAuthConfig;
use crate::tokenserver::rules::Admission;
use crate::tokenserver::{self, Assignment, Tokenserver, TokenserverConfig};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads the settings, printing a clear message on failure.
pub fn load_settings(path: Option<&Path>) -> Result<Settings, ExitCode> {
    let path = path
        .map(Path::to_path_buf)
        .or_else(|| config::default_config_path(&env));
    config::load(path.as_deref(), &env).map_err(|e| {
        eprintln!("syncserver-fcgi: configuration error: {e}");
        ExitCode::from(2)
    })
}

/// A logger at `default` (RUST_LOG overrides it) that never carries statement
/// parameters: at debug the PostgreSQL driver logs each statement's parameters
/// (secrets, emails, payloads), so its level is capped whatever RUST_LOG says.
pub(crate) fn log_builder(default: &str) -> env_logger::Builder {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    builder.filter_module("tokio_postgres", log::LevelFilter::Info);
    builder
}

/// Logs at `[syncserver] loglevel` (RUST_LOG overrides it), and logs panics.
pub fn init_logging(settings: &Settings) {
    let default = settings.loglevel.clone().unwrap_or_else(|| {
        if settings.debug_enabled {
            "debug"
        } else {
            "info"
        }
        .to_string()
    });
    let _ = log_builder(&default).format_timestamp_millis().try_init();
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
        /// The configured database (boxed: keeps the error small).
        uri: Box<DatabaseUri>,
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
                write!(f, "cannot open the database {uri}: {cause}")
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

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Database { cause, .. } => Some(cause),
            StartError::Secret(e) => Some(e),
            StartError::Jwks(e) | StartError::JwksFile { cause: e, .. } => Some(e),
            StartError::JwksFileUnreadable { cause, .. } => Some(cause),
        }
    }
}

impl From<SecretError> for StartError {
    fn from(e: SecretError) -> Self {
        StartError::Secret(e)
    }
}

/// Everything start-up builds before serving.
pub struct Built {
    pub app: App,
    /// Sessions in the pool.
    pub workers: usize,
}

/// Prepares the databases this process's role needs and builds the application.
/// `shared_replay`: keep the Hawk replay state where every process on this database
/// sees it (for a socket inherited from mod_fcgid or spawn-fcgi, which may start
/// several processes).
pub fn build(
    settings: &Settings,
    workers: usize,
    shared_replay: bool,
) -> Result<Built, StartError> {
    let role = settings.role;
    let nodes = match &settings.nodes_database {
        Some(uri) if role.serves_tokens() => Some(open_nodes(uri, workers)?),
        _ => None,
    };
    // A tokenserver without node assignment keeps its accounts in the storage database.
    let mut opened = if role.serves_storage() || nodes.is_none() {
        let opened =
            db::open(&settings.database, workers).map_err(|cause| StartError::Database {
                uri: Box::new(settings.database.clone()),
                cause,
            })?;
        for change in &opened.changes {
            log::info!("database upgraded: {change}");
        }
        Some(opened)
    } else {
        None
    };
    let secrets = match (&mut opened, settings.secrets.is_empty()) {
        (Some(opened), true) => vec![stored_secret(&mut *opened.first, "secret", "secret")?],
        // The configuration insists on a secret wherever processes share tokens.
        _ => settings.secrets.clone(),
    };
    let metrics_secret = match (&settings.metrics_secret, &mut opened) {
        (Some(s), _) => s.clone(),
        (None, Some(opened)) => stored_secret(
            &mut *opened.first,
            "metrics_secret",
            "metrics secret (for hashed_fxa_uid)",
        )?,
        // Stable across restarts and shared by every tokenserver process of the site.
        (None, None) => node_secret(
            secrets.last().map_or("", String::as_str),
            "syncserver-fcgi/hashed_fxa_uid",
        ),
    };
    let jwks = configured_jwks(settings)?;

    // The start-up session is the first one; the others open on demand.
    let (workers, pool, replay_opener) = match opened {
        Some(opened) => {
            let workers = opened.sessions;
            let (pool, replay_opener) = opened.into_pool();
            (workers, Some(Arc::new(pool)), replay_opener)
        }
        None => (workers, None, None),
    };

    let tokenserver = if role.serves_tokens() {
        let assignment = match (nodes, &pool) {
            (Some(nodes), _) => Assignment::Nodes(Arc::new(nodes)),
            (None, Some(pool)) => Assignment::Static(Arc::clone(pool)),
            (None, None) => unreachable!("the storage database is open without node assignment"),
        };
        let tokenserver = Tokenserver::new(
            tokenserver_config(settings, &secrets, metrics_secret, jwks),
            assignment,
        );
        log::info!("access tokens are verified by {}", tokenserver.describe());
        Some(tokenserver)
    } else {
        None
    };

    let storage = match pool {
        Some(pool) if role.serves_storage() => {
            let limits = ReplayLimits::with_max_nonces(
                usize::try_from(settings.max_nonces).unwrap_or(usize::MAX),
            );
            let mut authenticator = Authenticator::with_limits(
                verifying_secrets(settings, &secrets),
                settings.expired_token_timeout,
                settings.timestamp_skew,
                DEFAULT_MAX_TOKENS,
                limits,
            );
            if let (true, Some(opener)) = (shared_replay, replay_opener) {
                let place = opener.place();
                // Refusing to start would take reads down too (mod_fcgid answers 500 for a worker
                // that exits); each process then keeps its own nonces, as before, and says so
                // loudly.
                match opener.open(limits) {
                    Ok(shared) => {
                        log::info!("Hawk nonces are shared by every process through {place}");
                        authenticator = authenticator.with_replay_store(shared);
                    }
                    Err(e) => log::error!(
                        "cannot open the replay file {place} ({e}): each process keeps its own Hawk nonces, so a replay sent to another process is not caught; make that place writable by the serving user"
                    ),
                }
            }
            Some(Storage::new(
                StorageConfig {
                    limits: settings.storage.clone(),
                    quota: settings.quota_size.map(|q| q.min(i64::MAX as u64) as i64),
                    batch_enabled: settings.batch_upload_enabled,
                    node: settings.public_url.url.clone(),
                },
                authenticator,
                pool,
            ))
        }
        _ => None,
    };
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

/// The tokenserver database's session pool (`[tokenserver] sqluri` with `sqlnode`).
fn open_nodes(uri: &DatabaseUri, workers: usize) -> Result<Pool<NodeStore>, StartError> {
    let failed = |cause| StartError::Database {
        uri: Box::new(uri.clone()),
        cause,
    };
    let mut first = db::open_nodes(uri).map_err(failed)?;
    if first.nodes().map_err(failed)?.is_empty() {
        log::warn!("the tokenserver database {uri} lists no storage node: first sign-ins are answered 503 until `syncserver-fcgi nodes add URL --capacity N` adds one");
    }
    let opener = first.opener();
    Ok(Pool::new(Box::new(first), workers, opener))
}

/// The secrets a storage node checks tokens with. A node of a site with node
/// assignment checks its own secret, derived from the master one (or configured
/// as `[storage] node_secret`); an all-in-one server that assigns nodes also
/// takes tokens signed before it did, with the master secret itself.
fn verifying_secrets(settings: &Settings, secrets: &[String]) -> Vec<String> {
    let node = settings.public_url.url.as_str();
    if let Some(own) = &settings.node_secret {
        return vec![own.clone()];
    }
    let derived = secrets.iter().map(|m| node_secret(m, node));
    match settings.role {
        Role::Storage => derived.collect(),
        _ if settings.nodes_database.is_some() => secrets.iter().cloned().chain(derived).collect(),
        _ => secrets.to_vec(),
    }
}

fn tokenserver_config(
    settings: &Settings,
    secrets: &[String],
    metrics_secret: String,
    jwks: Vec<RsaJwk>,
) -> TokenserverConfig {
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
