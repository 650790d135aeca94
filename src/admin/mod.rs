//! Operator commands: `purge`, `users list|delete`, `stats`, `backup`, `secret`.
//!
//! Each works on the same database (and the same `--config`) as the running
//! server, through the `db::admin` interface, and is safe to run while the
//! server is serving.

mod backup;
mod purge;
mod secret;
mod stats;
mod table;
mod users;

use std::path::Path;
use std::process::ExitCode;

use crate::config::Settings;
use crate::db::admin::AdminDb;
use crate::db::{self, AdminAccess};
use crate::options::AdminCommand;
use crate::start::load_settings;

pub use backup::backup;
pub use purge::{purge, PurgeOptions};
pub use secret::{secret, stored_secret, SecretError};
pub use stats::stats;
pub use users::{delete_user, list_users};

/// An operator command's failure: a message for the person at the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError(pub String);

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<crate::db::DbError> for AdminError {
    fn from(e: crate::db::DbError) -> Self {
        AdminError(match e {
            crate::db::DbError::Busy => {
                "the database stayed locked by another writer; try again (nothing was changed by the failed step)"
                    .to_string()
            }
            other => other.to_string(),
        })
    }
}

/// Opens the server's existing database; `write` also brings its schema up
/// to date (as the server would at start-up).
pub fn open(settings: &Settings, write: bool) -> Result<Box<dyn AdminDb>, AdminError> {
    let access = if write {
        AdminAccess::Write
    } else {
        AdminAccess::Read
    };
    db::open_admin(&settings.database, access).map_err(|e| AdminError(e.to_string()))
}

/// Runs an operator command with the server's configuration.
pub fn run(path: Option<&Path>, command: &AdminCommand, json: bool) -> ExitCode {
    let settings = match load_settings(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let result = match command {
        AdminCommand::Purge(opts) => purge(&settings, opts, json),
        AdminCommand::ListUsers => list_users(&settings, json),
        AdminCommand::DeleteUser { target, yes } => {
            let stdin = std::io::stdin();
            delete_user(
                &settings,
                target,
                *yes,
                &mut stdin.lock(),
                &mut std::io::stderr(),
            )
        }
        AdminCommand::Stats => stats(&settings, json),
        AdminCommand::Backup(file) => backup(&settings, file),
        AdminCommand::Secret { metrics } => secret(&settings, *metrics),
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

/// Formats epoch milliseconds as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn format_ms(ms: i64) -> String {
    format_secs(ms.div_euclid(1000))
}

/// Formats epoch seconds as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn format_secs(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for any epoch day.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Whether a path's parent directory exists (for clear backup errors).
pub fn parent_exists(path: &Path) -> bool {
    path.parent()
        .map(|p| p.as_os_str().is_empty() || p.is_dir())
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_secs(0), "1970-01-01 00:00:00");
        assert_eq!(format_secs(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_ms(2_100_000_000_000), "2036-07-18 13:20:00");
        assert_eq!(format_secs(951_782_400), "2000-02-29 00:00:00");
    }
}
