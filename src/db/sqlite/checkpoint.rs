//! WAL checkpoints outside the writers' turn.
//!
//! SQLite copies the WAL back into the database file (a checkpoint) from inside the `COMMIT`
//! that makes the WAL reach 1,000 pages: that commit then takes 10–20 ms instead of ~2 ms
//! (copying ~4 MB and two fsyncs), and since it runs inside this process's write turn
//! (`write_queue`), every other writer of the process waits for it. Measured at 16 clients
//! posting 100-record batches, the turn was held ~1.95 ms per commit on average, of which the
//! checkpoints were a fifth, and it was busy ~92% of the time: the turn, not the CPU, bounded
//! the throughput.
//!
//! So each session registers a WAL hook, which replaces SQLite's automatic checkpoint: it only
//! notes the WAL's size after each commit, and the writer whose commit passed the threshold
//! runs a passive checkpoint *after* giving up its turn (one at a time per process). A passive
//! checkpoint never blocks writers or readers; the next writer after a complete one starts the
//! WAL again from its beginning, as with SQLite's own. Other processes on the file do the same
//! with their own hooks. Operator commands write outside the turns and never call us, so their
//! sessions keep SQLite's automatic checkpoint (`SqliteDb::checkpoint_after_turns` is only for
//! the server's pool).

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use rusqlite::{ffi, Connection};

/// WAL pages after which a checkpoint is run: SQLite's own default.
pub const CHECKPOINT_PAGES: u32 = 1000;

/// The WAL size of one database file as this process's sessions last saw it.
#[derive(Debug, Default)]
pub struct WalSize {
    pages: AtomicU32,
    checkpointing: AtomicBool,
}

impl WalSize {
    /// Makes `conn` report its commits' WAL size here instead of checkpointing by itself.
    ///
    /// # Safety
    /// `self` must outlive `conn` (or the hook must be replaced before `self` goes).
    pub unsafe fn watch(&self, conn: &Connection) {
        // SAFETY: the handle is valid while `conn` is; SQLite calls the hook on the
        // connection's own thread with the pointer given here, which the caller keeps alive.
        unsafe {
            ffi::sqlite3_wal_hook(
                conn.handle(),
                Some(note_commit),
                self as *const WalSize as *mut c_void,
            );
        }
    }

    /// Runs a passive checkpoint on `conn` when the WAL has reached [`CHECKPOINT_PAGES`] and no
    /// other session of this process is running one. Call it outside the write turn.
    pub fn checkpoint_if_due(&self, conn: &Connection) {
        if self.pages.load(Ordering::Relaxed) < CHECKPOINT_PAGES
            || self.checkpointing.swap(true, Ordering::Acquire)
        {
            return;
        }
        // (busy, pages in the WAL, pages copied); "busy" only means another process is
        // checkpointing, and a failure is retried after the next commit.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((wal, copied)) if wal >= 0 && copied == wal => {
                // All copied: the next writer starts the WAL again.
                self.pages.store(0, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => log::debug!("checkpoint: {e}"),
        }
        self.checkpointing.store(false, Ordering::Release);
    }

    #[cfg(test)]
    pub fn pages(&self) -> u32 {
        self.pages.load(Ordering::Relaxed)
    }
}

/// SQLite's WAL hook: called after each commit with the WAL's size in pages.
unsafe extern "C" fn note_commit(
    arg: *mut c_void,
    _db: *mut ffi::sqlite3,
    _name: *const c_char,
    pages: c_int,
) -> c_int {
    // SAFETY: `arg` is the `WalSize` given to `watch`, alive as long as the connection.
    let size = unsafe { &*(arg as *const WalSize) };
    size.pages.store(pages.max(0) as u32, Ordering::Relaxed);
    ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn fresh(name: &str) -> (PathBuf, Connection) {
        let dir = std::env::temp_dir().join(format!(
            "syncserver-checkpoint-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        (dir, conn)
    }

    /// Commits 30 MB in 300 transactions, checkpointing after each when `ours`; returns the
    /// WAL file's size in MB.
    fn write_30_mb(conn: &Connection, wal: &WalSize, dir: &Path, ours: bool) -> u64 {
        for _ in 0..300 {
            conn.execute_batch("BEGIN").unwrap();
            for _ in 0..25 {
                conn.execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                    .unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
            if ours {
                wal.checkpoint_if_due(conn);
            }
        }
        std::fs::metadata(dir.join("db.sqlite-wal")).unwrap().len() >> 20
    }

    #[test]
    fn the_wal_stays_small_when_checkpointed_after_the_turn() {
        let (dir, conn) = fresh("ours");
        let wal = WalSize::default();
        // SAFETY: `wal` outlives `conn` within this test (conn is dropped first below).
        unsafe { wal.watch(&conn) };
        let mb = write_30_mb(&conn, &wal, &dir, true);
        assert!(mb < 8, "WAL grew to {mb} MB");
        assert!(wal.pages() < CHECKPOINT_PAGES + 100, "{}", wal.pages());
        drop(conn);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_hook_replaces_sqlites_own_checkpoint() {
        // Without our checkpoint the WAL keeps every page: the hook took SQLite's automatic
        // checkpoint away, so `checkpoint_if_due` is what bounds it.
        let (dir, conn) = fresh("none");
        let wal = WalSize::default();
        // SAFETY: as above.
        unsafe { wal.watch(&conn) };
        let mb = write_30_mb(&conn, &wal, &dir, false);
        assert!(mb >= 29, "WAL only {mb} MB");
        assert!(wal.pages() > 7000, "{}", wal.pages());
        drop(conn);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
