//! `secret`: the secret in effect, for an operator who needs to share it (an
//! external storage node, a load test). Printed on stdout only, never logged.

use crate::auth::metrics::random_secret_hex;
use crate::config::{DatabaseUri, Settings};
use crate::db::sqlite::{self, schema, Location};

use super::AdminError;

/// A secret kept in our meta table: generated once, then shared by every
/// worker and restart (the Python server gave each worker its own).
pub fn stored_secret(
    conn: &rusqlite::Connection,
    name: &str,
    what: &str,
) -> Result<String, String> {
    if let Ok(Some(existing)) = schema::meta_get(conn, name) {
        return Ok(existing);
    }
    let fresh = random_secret_hex(32).map_err(|e| format!("cannot generate a {what}: {e}"))?;
    let stored = schema::meta_get_or_insert(conn, name, &fresh)
        .map_err(|e| format!("cannot store the generated {what}: {e}"))?;
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
    let path = match &settings.database {
        DatabaseUri::Sqlite(p) => p.clone(),
        DatabaseUri::Memory => {
            return Err(AdminError(
                "no secret in the configuration and sqluri is :memory:, so each server process generates its own; set secret in the configuration".into(),
            ))
        }
    };
    let existed = path.exists();
    let (conn, _) = sqlite::prepare(&Location::File(path.clone()))
        .map_err(|e| AdminError(format!("cannot open the database {}: {e}", path.display())))?;
    let (name, what) = if metrics {
        ("metrics_secret", "metrics secret (for hashed_fxa_uid)")
    } else {
        ("secret", "secret")
    };
    let value = stored_secret(&conn, name, what).map_err(AdminError)?;
    drop(conn);
    // SAFETY: geteuid cannot fail.
    if !existed && unsafe { libc::geteuid() } == 0 {
        eprintln!(
            "syncserver-fcgi: created the database {} as root; give it to the user that serves (chown USER: {0}) before starting the server",
            path.display()
        );
    }
    Ok(value)
}
