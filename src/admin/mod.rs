//! Operator commands: `purge`, `users list|delete`, `stats`, `backup`, `secret`,
//! `migrate`, `nodes ...`, `migrate-to-nodes`.
//!
//! Each works on the same database (and the same `--config`) as the running
//! server, through the `db::admin` interface, and is safe to run while the
//! server is serving.

mod backup;
mod migrate;
mod nodes;
mod purge;
mod secret;
mod stats;
mod table;
mod users;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Settings;
use crate::db::admin::AdminDb;
use crate::db::{self, AdminAccess, AdminOpenError, DbError, MigrateError};
use crate::options::AdminCommand;
use crate::start::load_settings;

pub use backup::backup;
pub use migrate::migrate;
pub use nodes::{flag as node_flag, migrate_to_nodes, nodes};
pub use purge::{purge, PurgeOptions};
pub use secret::{secret, stored_secret, SecretError};
pub use stats::stats;
pub use users::{delete_user, list_users};

/// Why an operator command failed. `Display` is the message printed to the
/// operator; the cause, where there is one, is kept as `source`.
#[derive(Debug)]
pub enum AdminError {
    /// The server's database could not be opened for the command.
    Open(AdminOpenError),
    /// `secret` could not open (or create) the database at `place`.
    CreateDb {
        place: String,
        cause: AdminOpenError,
    },
    /// A database step failed; nothing more is known than the engine said.
    Db(DbError),
    /// The backup file at `path` could not be written.
    Backup { path: PathBuf, cause: DbError },
    /// A secret could not be generated or stored.
    Secret(SecretError),
    /// The account's rows are gone but emptying its data stopped: `purge`
    /// finishes the job, and the message has to say so, or a retry would
    /// report "no account matches" and leave the operator guessing.
    DataLeft {
        email: String,
        cause: Box<AdminError>,
    },
    /// `migrate` stopped (users copied before stay copied; a rerun resumes).
    Migrate(MigrateError),
    /// The command was not carried out, for the reason given to the operator
    /// (no such account, a file that exists already, a "no" at the prompt).
    Refused(String),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Open(e) => write!(f, "{e}"),
            AdminError::CreateDb { place, cause } => match cause {
                AdminOpenError::Prepare { cause, .. } | AdminOpenError::Open { cause, .. } => {
                    write!(f, "cannot open the database {place}: {cause}")
                }
                other => write!(f, "{other}"),
            },
            AdminError::Db(e) => db_message(f, e),
            AdminError::Backup { path, cause } => match cause {
                DbError::Unwritable(why) => {
                    write!(f, "cannot write the backup {}: {why}", path.display())
                }
                other => db_message(f, other),
            },
            AdminError::Secret(e) => write!(f, "{e}"),
            AdminError::DataLeft { email, cause } => write!(
                f,
                "account {email} was removed, but removing its data stopped ({cause}); \
                 run `purge` to finish (it removes the rest)"
            ),
            AdminError::Migrate(e) => write!(f, "{e}"),
            AdminError::Refused(why) => f.write_str(why),
        }
    }
}

/// A failed database step as the operator needs to hear it: a busy database
/// is worth retrying, and nothing was changed.
fn db_message(f: &mut std::fmt::Formatter<'_>, e: &DbError) -> std::fmt::Result {
    match e {
        DbError::Busy => f.write_str(
            "the database stayed locked by another writer; try again (nothing was changed by the failed step)",
        ),
        other => write!(f, "{other}"),
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminError::Open(e) | AdminError::CreateDb { cause: e, .. } => Some(e),
            AdminError::Db(e) | AdminError::Backup { cause: e, .. } => Some(e),
            AdminError::Secret(e) => Some(e),
            AdminError::DataLeft { cause, .. } => Some(&**cause),
            AdminError::Migrate(e) => Some(e),
            AdminError::Refused(_) => None,
        }
    }
}

impl From<DbError> for AdminError {
    fn from(e: DbError) -> Self {
        AdminError::Db(e)
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
    db::open_admin(&settings.database, access).map_err(AdminError::Open)
}

/// Runs an operator command with the server's configuration.
pub fn run(path: Option<&Path>, command: &AdminCommand, json: bool) -> ExitCode {
    let settings = match load_settings(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let _ = crate::start::log_builder("warn").try_init();
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
        AdminCommand::Migrate { to } => migrate(&settings, to),
        AdminCommand::Nodes(command) => nodes(&settings, command, json),
        AdminCommand::MigrateToNodes { to, capacity } => {
            migrate_to_nodes(&settings, to, *capacity, json)
        }
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

    #[test]
    fn errors_keep_their_cause() {
        use std::error::Error;
        let busy = AdminError::from(DbError::Busy);
        assert!(busy.to_string().starts_with("the database stayed locked"));
        assert!(busy.source().is_some());
        let left = AdminError::DataLeft {
            email: "a@b".into(),
            cause: Box::new(DbError::Busy.into()),
        };
        assert!(left.to_string().contains("(the database stayed locked"));
        assert!(left.source().is_some());
        assert!(AdminError::Refused("not deleted".into()).source().is_none());
    }
}
