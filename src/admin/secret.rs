//! `secret`: the secret in effect, for an operator who needs to share it (an
//! external storage node, a load test). Printed on stdout only, never logged.

use crate::config::{DatabaseUri, Settings};
use crate::db::{self, AdminAccess, DbError, MetaDb};
use crate::random::{random_secret_hex, RandomUnavailable};

use super::AdminError;

/// Why a generated secret could not be had.
#[derive(Debug)]
pub enum SecretError {
    /// No randomness to generate it from.
    Generate {
        /// Which secret, for the message.
        what: &'static str,
        cause: RandomUnavailable,
    },
    /// The database refused to store it.
    Store {
        /// Which secret, for the message.
        what: &'static str,
        cause: DbError,
    },
}

impl std::fmt::Display for SecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretError::Generate { what, cause } => {
                write!(f, "cannot generate a {what}: {cause}")
            }
            SecretError::Store { what, cause } => {
                write!(f, "cannot store the generated {what}: {cause}")
            }
        }
    }
}

impl std::error::Error for SecretError {}

/// A secret kept in the database: generated once, then shared by every
/// worker and restart (the Python server gave each worker its own).
pub fn stored_secret(
    db: &mut dyn MetaDb,
    name: &str,
    what: &'static str,
) -> Result<String, SecretError> {
    if let Ok(Some(existing)) = db.meta_get(name) {
        return Ok(existing);
    }
    let fresh = random_secret_hex(32).map_err(|cause| SecretError::Generate { what, cause })?;
    let stored = db
        .meta_get_or_insert(name, &fresh)
        .map_err(|cause| SecretError::Store { what, cause })?;
    if stored == fresh {
        log::info!("no {what} in the configuration: generated one and stored it in the database");
    }
    Ok(stored)
}

/// The signing secret (or with `metrics`, the metrics secret) in effect: the
/// configured one, else the one stored in the database, generated and stored
/// now if the server never ran, exactly as `serve` would.
pub fn secret(settings: &Settings, metrics: bool) -> Result<String, AdminError> {
    let configured = if metrics {
        settings.metrics_secret.clone()
    } else {
        settings.secrets.last().cloned()
    };
    if let Some(s) = configured {
        if !metrics && settings.secrets.len() > 1 {
            eprintln!(
                "syncserver-fcgi: {} secrets are configured; this is the last one, which signs new tokens",
                settings.secrets.len()
            );
        }
        return Ok(s);
    }
    // Only a new SQLite file made by root needs a word: a server engine's tables
    // belong to its own user.
    let new_file = match &settings.database {
        DatabaseUri::Sqlite(p) => (!p.exists()).then(|| p.clone()),
        DatabaseUri::Memory => {
            return Err(AdminError::Refused(
                "no secret in the configuration and sqluri is :memory:, so each server process generates its own; set secret in the configuration".into(),
            ))
        }
        DatabaseUri::Mysql(_) | DatabaseUri::Postgresql(_) => None,
    };
    let mut db = db::open_admin(&settings.database, AdminAccess::Create).map_err(|cause| {
        AdminError::CreateDb {
            place: settings.database.to_string(),
            cause,
        }
    })?;
    let (name, what) = if metrics {
        ("metrics_secret", "metrics secret (for hashed_fxa_uid)")
    } else {
        ("secret", "secret")
    };
    let value = stored_secret(&mut *db, name, what).map_err(AdminError::Secret)?;
    drop(db);
    // SAFETY: geteuid cannot fail.
    if let Some(path) = new_file.filter(|_| unsafe { libc::geteuid() } == 0) {
        eprintln!(
            "syncserver-fcgi: created the database {} as root; give it to the user that serves (chown USER: {0}) before starting the server",
            path.display()
        );
    }
    Ok(value)
}
