//! `syncserver.ini` + `SYNCSERVER_*` environment variables → one typed, validated [`Settings`].
//!
//! - [`load`] reads the Python server's ini file with its exact rules ([`ini`]), applies the
//!   environment overrides, validates everything once and returns [`Settings`]; anything that
//!   would stop the server is a [`ConfigError`] whose message says how to fix it.
//! - Things worth telling the operator but not fatal (unknown keys, Python-only settings we
//!   ignore, values we read differently from the Python server) are [`ConfigNote`]s in
//!   `Settings::notes`; the caller logs them at start-up.
//! - [`report`] renders the effective settings for the `check-config` command, secrets masked.
//! - [`default_config_path`] finds the ini file when no `--config` is given.
//!
//! Decisions where the Python server was ambiguous or unsafe (see also spec README items 2, 6,
//! 11):
//! - an ini boolean written `yes`/`on`/`no`/`off` is read as the word says (Python read any
//!   non-empty string, even `no`, as true); a note records when that differs;
//! - a relative `sqlite:///path` is resolved against the ini file's directory (Python used the
//!   working directory, which under FastCGI is rarely meaningful); env-only configs use the
//!   working directory; a note records when the two differ;
//! - `[storage] sqluri` is used only when `[syncserver] sqluri` is absent and `[storage] backend`
//!   is set, because that is the only case in which the Python server stored data there;
//! - `SYNCSERVER_ALLOW_NEW_USERS` beats `[tokenserver] allow_new_users` (Python let the ini win);
//! - `token_duration` defaults to 3600 s as Mozilla's current server does (Python: 300 s).

mod build;
mod dburi;
mod error;
pub mod ini;
mod interp;
mod known;
mod proxies;
mod read;
mod report;
mod url;

use std::fmt;
use std::path::{Path, PathBuf};

pub use dburi::{
    EngineOptions, MysqlCharset, MysqlOptions, Password, PgSslMode, PostgresOptions, ServerHost,
    ServerUri, MYSQL_DEFAULT_PORT, MYSQL_SCHEMES, POSTGRES_DEFAULT_PORT,
    POSTGRES_DEFAULT_SOCKET_DIR, POSTGRES_SCHEMES,
};
pub use error::{ConfigError, Origin};
pub use ini::{Ini, IniError, IniErrorKind, Value};
pub use proxies::TrustedProxies;
pub use report::report;
pub use url::{DatabaseUri, PublicUrl};

/// The environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV_VAR: &str = "SYNCSERVER_CONFIG";

/// Everything the server needs from its configuration, validated.
#[derive(Clone)]
pub struct Settings {
    /// The ini file read, or None when configured from the environment only (Docker style).
    pub config_path: Option<PathBuf>,
    /// `[syncserver] public_url`, normalised.
    pub public_url: PublicUrl,
    /// From `sqluri`; `syncserver.db` beside the ini file when absent.
    pub database: DatabaseUri,
    /// Token secrets, oldest first: the last one signs, all verify. Empty = not configured:
    /// the caller generates one once and stores it in the database.
    pub secrets: Vec<String>,
    /// `[syncserver] identity_provider` (the FxA server whose well-known config is fetched).
    pub identity_provider: Option<String>,
    /// `[syncserver] oauth_verifier` (alias `[oauth] server_url`).
    pub oauth_verifier: Option<String>,
    /// `[syncserver] browserid_verifier` (alias `[browserid] verifier_url`).
    pub browserid_verifier: Option<String>,
    /// Whether unknown accounts may sign up (default true).
    pub allow_new_users: bool,
    /// Trust public_url over the request's scheme/host/path (default false).
    pub force_wsgi_environ: bool,
    /// `[syncserver] trusted_proxies` (our addition): clients whose
    /// `X-Forwarded-Proto` counts; empty (the default) = nobody's.
    pub trusted_proxies: TrustedProxies,
    /// `[syncserver] debug_enabled` (default false).
    pub debug_enabled: bool,
    /// `[syncserver] loglevel` (our addition): error, warn, info, debug or trace.
    pub loglevel: Option<String>,
    /// The limits advertised by `/info/configuration`.
    pub storage: StorageLimits,
    /// `[storage] quota_size` in bytes; None = no quota.
    pub quota_size: Option<u64>,
    /// `[storage] batch_upload_enabled` (default true).
    pub batch_upload_enabled: bool,
    /// `[hawkauth] expired_token_timeout` seconds (default 7200).
    pub expired_token_timeout: u64,
    /// `[hawkauth] timestamp_skew` seconds (our addition); None = no clock window.
    pub timestamp_skew: Option<u64>,
    /// `[hawkauth] max_nonces` (our addition): how many nonces one process may remember at once;
    /// one account may hold a sixteenth of them. Reaching either answers 503, never forgets.
    pub max_nonces: u64,
    /// `[tokenserver] token_duration` seconds (default 3600).
    pub token_duration: u64,
    /// `[tokenserver] node_url`, normalised; defaults to `public_url`.
    pub node_url: String,
    /// `[fxa] metrics_uid_secret_key`; None = the caller picks one.
    pub metrics_secret: Option<String>,
    /// `[tokenserver] allowed_users` (our addition); empty = everyone.
    pub allowed_users: Vec<String>,
    /// `[tokenserver] max_users` (our addition).
    pub max_users: Option<u64>,
    /// `[oauth] jwks`: a JSON JWK set, checked to be a JSON object.
    pub oauth_jwks: Option<String>,
    /// `[oauth] jwks_file` (our addition), checked to hold a JSON object.
    pub oauth_jwks_file: Option<PathBuf>,
    /// `[oauth] timeout` seconds for verifier requests (default 30).
    pub oauth_timeout: u64,
    /// `[oauth] default_issuer`: the email domain for OAuth users when no IdP says otherwise.
    pub oauth_default_issuer: Option<String>,
    /// `[syncserver] role` (our addition): which half of Sync this process serves.
    pub role: Role,
    /// `[tokenserver] sqluri` when `[tokenserver] backend` is Python's `sqlnode`:
    /// the tokenserver's own database, which assigns accounts to storage nodes.
    pub nodes_database: Option<DatabaseUri>,
    /// `[storage] node_secret` (our addition): this node's own secret, derived from
    /// the master secret (`nodes secret URL`), for a node that should not hold the
    /// master secret.
    pub node_secret: Option<String>,
    /// Things the operator should know; none of them stopped the load.
    pub notes: Vec<ConfigNote>,
}

/// Which requests a process answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Tokenserver and storage (the Python server's only layout; the default).
    All,
    /// `/token/...` only: a site's one tokenserver in front of several storage nodes.
    Tokenserver,
    /// `/storage/...` only: one storage node, answering for `public_url`.
    Storage,
}

impl Role {
    pub fn serves_tokens(self) -> bool {
        self != Role::Storage
    }
    pub fn serves_storage(self) -> bool {
        self != Role::Tokenserver
    }
}

impl fmt::Debug for Settings {
    // Hand-written so that a stray `{:?}` never prints a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("config_path", &self.config_path)
            .field("public_url", &self.public_url.url)
            .field("database", &self.database)
            .field(
                "secrets",
                &self.secrets.iter().map(|s| mask(s)).collect::<Vec<_>>(),
            )
            .field("identity_provider", &self.identity_provider)
            .field("oauth_verifier", &self.oauth_verifier)
            .field("browserid_verifier", &self.browserid_verifier)
            .field("allow_new_users", &self.allow_new_users)
            .field("trusted_proxies", &self.trusted_proxies.to_string())
            .field("storage", &self.storage)
            .field("quota_size", &self.quota_size)
            .field("token_duration", &self.token_duration)
            .field("node_url", &self.node_url)
            .field("metrics_secret", &self.metrics_secret.as_deref().map(mask))
            .field("role", &self.role)
            .field("nodes_database", &self.nodes_database)
            .field("node_secret", &self.node_secret.as_deref().map(mask))
            .field("notes", &self.notes.len())
            .finish_non_exhaustive()
    }
}

/// `****(64 chars)`: how secrets are shown.
pub fn mask(secret: &str) -> String {
    format!("****({} chars)", secret.chars().count())
}

/// The limits advertised by `/info/configuration` (the Python server's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageLimits {
    /// Largest request body (default 2101248).
    pub max_request_bytes: u64,
    /// Largest BSO payload (default 2097152).
    pub max_record_payload_bytes: u64,
    /// Most BSOs per POST (default 100).
    pub max_post_records: u64,
    /// Most payload bytes per POST (default 2097152).
    pub max_post_bytes: u64,
    /// Most BSOs per batch (default 10000).
    pub max_total_records: u64,
    /// Most payload bytes per batch (default 209715200).
    pub max_total_bytes: u64,
}

impl Default for StorageLimits {
    fn default() -> StorageLimits {
        StorageLimits {
            max_request_bytes: 2_101_248,
            max_record_payload_bytes: 2_097_152,
            max_post_records: 100,
            max_post_bytes: 2_097_152,
            max_total_records: 10_000,
            max_total_bytes: 209_715_200,
        }
    }
}

/// How much a note matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteLevel {
    /// Worth knowing; nothing to do.
    Info,
    /// Probably a mistake, or a setting that does not do what it did before.
    Warning,
}

/// A non-fatal remark about the configuration, to be logged at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigNote {
    /// How much it matters.
    pub level: NoteLevel,
    /// One sentence for the operator.
    pub message: String,
}

/// Loads the configuration: the ini file at `path` (None → environment only), then the
/// `SYNCSERVER_*` overrides from `env` (production passes `|k| std::env::var(k).ok()`).
pub fn load(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    load_in(path, env, &cwd)
}

/// [`load`] with an explicit working directory (for tests and for relative paths).
pub fn load_in(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<Settings, ConfigError> {
    let (ini, file) = match path {
        Some(p) => {
            let file = url::absolute(p, cwd);
            let ini = read_ini(&file, env)?;
            (ini, Some(file))
        }
        None => (Ini::empty(), None),
    };
    let mut ctx = read::Ctx::new(&ini, file.as_deref(), env, cwd);
    build::build(&mut ctx)
}

fn read_ini(file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Ini, ConfigError> {
    let what = "config file".to_string();
    let bytes = std::fs::read(file).map_err(|source| ConfigError::Io {
        path: file.to_path_buf(),
        what: what.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 {
        path: file.to_path_buf(),
        what,
    })?;
    let here = file.parent().unwrap_or(Path::new("/"));
    Ini::parse(&text, here, env).map_err(|e| ConfigError::Ini(e.with_file(file)))
}

/// The config file to use without `--config`: `$SYNCSERVER_CONFIG`, else `./syncserver.ini`
/// if it exists, else None (environment only).
pub fn default_config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = env(CONFIG_ENV_VAR).filter(|p| !p.trim().is_empty()) {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("syncserver.ini");
    local.is_file().then_some(local)
}

#[cfg(test)]
mod tests;
