//! `backup FILE`: a consistent copy of the live database.

use std::path::Path;

use super::{open, parent_exists, AdminError};
use crate::config::Settings;
use crate::db::admin::AdminDb;

/// Writes a copy through SQLite's online backup while the server keeps serving.
pub fn backup(settings: &Settings, target: &Path) -> Result<String, AdminError> {
    if !parent_exists(target) {
        return Err(AdminError(format!(
            "the directory for {} does not exist",
            target.display()
        )));
    }
    let mut db = open(settings, false)?;
    db.backup(target)?;
    let size = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    Ok(format!(
        "backup written to {} ({size} bytes, integrity checked)",
        target.display()
    ))
}
