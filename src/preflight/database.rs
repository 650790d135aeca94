//! The database as `serve` will open it: SQLite opens the file read-write,
//! creating it if missing, and creates `-wal` and `-shm` files beside it, so
//! the directory must exist and be writable, and every file already there must
//! be readable and writable. A database server is connected to and its
//! privileges probed instead. Nothing is created or changed here.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::users::current_user;
use crate::config::DatabaseUri;

fn access(path: &Path, mode: libc::c_int) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid C string; access only reads it. The real uid is checked, which equals
    // the effective one here (check-config is not setuid; run_as sets both).
    if unsafe { libc::access(c.as_ptr(), mode) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Every problem `serve`, run as the current user, would have with the database
/// of `uri`; empty when there is none.
pub fn database_problems(uri: &DatabaseUri) -> Vec<String> {
    let path = match uri {
        DatabaseUri::Sqlite(path) => path,
        DatabaseUri::Memory => return Vec::new(),
        DatabaseUri::Mysql(server) | DatabaseUri::Postgresql(server) => {
            return crate::db::server_problems(server)
        }
    };
    let who = current_user();
    // Root can write anywhere: name the user to give things to in the advice instead.
    let owner = if who.uid == 0 {
        "USER".to_string()
    } else {
        who.name.clone()
    };
    let mut problems = Vec::new();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            problems.push(format!(
                "{} (the database's directory) is not a directory",
                dir.display()
            ));
            return problems;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            problems.push(format!(
                "the database directory {} does not exist: create it (mkdir -p {0}) and give it to the user the server runs as (chown {who_name}: {0})",
                dir.display(),
                who_name = owner
            ));
            return problems;
        }
        Err(e) => {
            problems.push(format!(
                "{who} cannot reach the database directory {}: {e} (every directory above it needs search permission, x)",
                dir.display()
            ));
            return problems;
        }
    }
    if let Err(e) = access(dir, libc::W_OK | libc::X_OK) {
        problems.push(format!(
            "{who} cannot create files in the database directory {}: {e}; SQLite creates the database and its -wal and -shm files there (chown {}: {0})",
            dir.display(),
            owner
        ));
    }
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => problems.push(format!(
            "cannot inspect the database {}: {e}",
            path.display()
        )),
        Ok(m) if !m.is_file() => problems.push(format!(
            "the database {} is not a regular file",
            path.display()
        )),
        Ok(_) => {
            if let Err(e) = access(path, libc::R_OK | libc::W_OK) {
                problems.push(format!(
                    "{who} cannot read and write the database {}: {e}",
                    path.display()
                ));
            } else if let Err(why) = sqlite_header(path) {
                problems.push(format!("the database {}: {why}", path.display()));
            }
        }
    }
    for side in crate::db::side_files(path) {
        if side.exists() {
            if let Err(e) = access(&side, libc::R_OK | libc::W_OK) {
                problems.push(format!(
                    "{who} cannot read and write {}: {e} (chown it like the database)",
                    side.display()
                ));
            }
        }
    }
    problems
}

/// The files `serve` reads at start-up (the ini, a JWKs file) that the current
/// user cannot read.
pub fn unreadable_files(files: &[&Path]) -> Vec<String> {
    let who = current_user();
    files
        .iter()
        .filter_map(|f| {
            access(f, libc::R_OK).err().map(|e| {
                format!(
                    "{who} cannot read {}: {e} (serve reads it at start-up)",
                    f.display()
                )
            })
        })
        .collect()
}

/// An empty file is a new database to SQLite; anything else must start with its header.
fn sqlite_header(path: &Path) -> Result<(), String> {
    let mut head = Vec::with_capacity(16);
    fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(|e| format!("cannot read: {e}"))?;
    if head.is_empty() || head == b"SQLite format 3\0" {
        Ok(())
    } else {
        Err("is not an SQLite database".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_a_missing_directory_and_a_foreign_file() {
        let base = std::env::temp_dir().join(format!("preflight-db-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let missing = DatabaseUri::Sqlite(base.join("nope/sync.db"));
        let p = database_problems(&missing);
        assert!(p.len() == 1 && p[0].contains("does not exist"), "{p:?}");
        fs::create_dir_all(&base).unwrap();
        let db = base.join("sync.db");
        assert!(database_problems(&DatabaseUri::Sqlite(db.clone())).is_empty());
        fs::write(&db, b"not a database at all").unwrap();
        let p = database_problems(&DatabaseUri::Sqlite(db));
        assert!(p.len() == 1 && p[0].contains("not an SQLite"), "{p:?}");
        assert!(database_problems(&DatabaseUri::Memory).is_empty());
        fs::remove_dir_all(&base).unwrap();
    }
}
