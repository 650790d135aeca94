//! `backup FILE`: a consistent copy of the live database (SQLite); on a database server,
//! the exact dump command of its own tool instead.

use std::path::Path;

use super::{open, parent_exists, AdminError};
use crate::config::Settings;
use crate::db::DbError;

/// Writes a copy through SQLite's online backup while the server keeps serving.
pub fn backup(settings: &Settings, target: &Path) -> Result<String, AdminError> {
    let mut db = open(settings, false)?;
    // A database server is dumped with its own tool: say exactly how.
    if let Some(command) = db.dump_command(target) {
        return Err(AdminError::Refused(format!(
            "backup copies SQLite databases only; this one is on a database server. Dump it \
             with the server's own tool (it asks for the password):\n    {command}"
        )));
    }
    if !parent_exists(target) {
        return Err(AdminError::Refused(format!(
            "the directory for {} does not exist",
            target.display()
        )));
    }
    if target.exists() {
        return Err(AdminError::Refused(format!(
            "{} exists already; backup never overwrites a file, choose a new name",
            target.display()
        )));
    }
    // The target, not the server's database, is what cannot be written.
    db.backup(target).map_err(|e| match e {
        cause @ DbError::Unwritable(_) => AdminError::Backup {
            path: target.to_path_buf(),
            cause,
        },
        other => AdminError::Db(other),
    })?;
    let size = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    Ok(format!(
        "backup written to {} ({size} bytes, integrity checked)",
        target.display()
    ))
}
