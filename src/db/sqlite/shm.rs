//! SQLite's shared-memory file (`syncserver.db-shm`), and the one way it kills the process.
//!
//! In WAL mode every connection maps the `-shm` file read-write and writes to it on every
//! transaction, reads included (read marks). When the file is made immutable
//! (`chattr +i`) under a running process, the kernel refuses the next write to the mapping
//! with SIGBUS: the process dies without a log line, in the middle of whatever it did, and
//! closing a connection (which checkpoints through the mapping) dies the same way. A process
//! that starts while the file is immutable maps it read-only instead and gets ordinary
//! "read-only" errors, so only a file that changes under us is fatal.
//!
//! So the pool asks [`ShmGuard::check`] before it lends or opens a session: one `statx` call
//! (about a microsecond) that reads the immutable attribute without opening the file. While
//! the flag is set, requests that need the database get [`DbError::Unwritable`] (503 with
//! Retry-After, and a rate-limited log line naming the file and the fix) and SQLite never
//! touches the mapping; once the flag is removed, the same sessions carry on. The flag can
//! still be set between the check and SQLite's next write: for that window
//! [`ShmGuard::report_sigbus`] makes the crash at least say why.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::db::{DbError, DbResult};

/// Checks a database's `-shm` file before SQLite may touch its mapping.
#[derive(Debug, Clone)]
pub struct ShmGuard {
    shm: PathBuf,
    /// The path as a C string for statx, built once.
    c_path: Option<CString>,
}

impl ShmGuard {
    /// The guard for the database file `db` (its `-shm` sits beside it, as SQLite names it).
    pub fn for_database(db: &Path) -> ShmGuard {
        let mut name = db.as_os_str().to_owned();
        name.push("-shm");
        let shm = PathBuf::from(name);
        let c_path = CString::new(shm.as_os_str().as_bytes()).ok();
        ShmGuard { shm, c_path }
    }

    /// The `-shm` path.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.shm
    }

    /// `Err(Unwritable)` when the `-shm` file is immutable. A missing file is fine (SQLite
    /// creates it), and so is a failed probe: SQLite then reports its own error.
    pub fn check(&self) -> DbResult<()> {
        if self.is_immutable() {
            let shm = self.shm.display();
            return Err(DbError::Unwritable(
                format!(
                    "{shm} is immutable (chattr +i) and SQLite maps it: reads are refused too, \
                 since touching it would crash the process; fix: chattr -i {shm}"
                )
                .into(),
            ));
        }
        Ok(())
    }

    fn is_immutable(&self) -> bool {
        let Some(path) = &self.c_path else {
            return false;
        };
        // SAFETY: statx is plain data filled by the kernel; path is NUL-terminated.
        unsafe {
            let mut stx: libc::statx = std::mem::zeroed();
            let r = libc::statx(
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::AT_STATX_SYNC_AS_STAT,
                0,
                &mut stx,
            );
            let flag = libc::STATX_ATTR_IMMUTABLE as u64;
            r == 0 && stx.stx_attributes_mask & flag != 0 && stx.stx_attributes & flag != 0
        }
    }

    /// Installs a SIGBUS handler that writes one line naming this file and the fix to stderr
    /// (where the log goes), then lets the signal kill the process as before: after a SIGBUS
    /// inside SQLite nothing can safely continue, but the operator learns why.
    pub fn report_sigbus(&self) {
        let shm = self.shm.display();
        let line = format!(
            "syncserver-fcgi: fatal SIGBUS, most likely from SQLite's shared memory file {shm}: \
             it became immutable (chattr +i) or was truncated while in use. \
             Fix: chattr -i {shm}, then restart.\n"
        );
        if SIGBUS_LINE.set(line.into_bytes()).is_err() {
            return; // installed already (one database per process)
        }
        // SAFETY: installs a handler that only reads an initialised OnceLock and calls
        // write(2) and raise(3), both async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) != 0 {
                log::debug!(
                    "cannot install the SIGBUS report: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// The line the SIGBUS handler writes; set once before the handler is installed.
static SIGBUS_LINE: OnceLock<Vec<u8>> = OnceLock::new();

extern "C" fn on_sigbus(_sig: libc::c_int) {
    if let Some(line) = SIGBUS_LINE.get() {
        // SAFETY: write(2) of a buffer that lives for the whole process.
        unsafe { libc::write(2, line.as_ptr() as *const libc::c_void, line.len()) };
    }
    // SA_RESETHAND restored the default action, and SIGBUS stays blocked until we return:
    // the raised one is then delivered and terminates the process as it would have without
    // us (a supervisor sees the same signal), also when the signal came from kill(2).
    // SAFETY: raise(3) is async-signal-safe.
    unsafe { libc::raise(libc::SIGBUS) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_path_and_missing_file() {
        let g = ShmGuard::for_database(Path::new("/nonexistent/dir/sync.db"));
        assert_eq!(g.path(), Path::new("/nonexistent/dir/sync.db-shm"));
        assert!(g.check().is_ok(), "a missing -shm is SQLite's to create");
    }

    #[test]
    fn ordinary_file_passes() {
        let dir = std::env::temp_dir().join(format!("shm-guard-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("x.db");
        std::fs::write(dir.join("x.db-shm"), b"").unwrap();
        assert!(ShmGuard::for_database(&db).check().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
