//! The SQLite backend: one file shared by every worker and process, in WAL mode.
//!
//! Writes take the database write lock up front (`BEGIN IMMEDIATE`) and hold it
//! for one short transaction; a writer that cannot get it within the busy
//! timeout answers `DbError::Busy` (503 with Retry-After), never a 500.

mod admin;
mod checkpoint;
pub(crate) mod collections;
pub(crate) mod reads;
pub mod replay;
pub mod schema;
pub mod shm;
mod uids;
pub mod users;
mod write_queue;
pub(crate) mod writes;

#[cfg(test)]
mod plans;

use crate::uid::Uid;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{
    Bso, BsoQuery, BsoUpdate, CollectionInfo, DbError, DbResult, MetaDb, PageEnd, Precondition,
    StorageDb, WriteCtx, WriteOutcome,
};
use crate::timestamp::Ms;
use collections::Collections;

/// How long a writer waits for another one before giving up with 503.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file on disk.
    File(PathBuf),
    /// A private in-memory database (single worker only).
    Memory,
}

/// One connection plus its caches.
pub struct SqliteDb {
    // Dropped before `queue`, whose WAL size its hook writes to.
    conn: Connection,
    collections: Collections,
    /// This process's writers of the same file, found once per session (none in memory).
    queue: Option<Arc<write_queue::WriteQueue>>,
}

/// Maps SQLite failures onto the storage error kinds.
pub(crate) fn map_err(e: rusqlite::Error) -> DbError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => return DbError::Busy,
            ErrorCode::ReadOnly | ErrorCode::DiskFull | ErrorCode::CannotOpen => {
                return DbError::Unwritable(e.into())
            }
            ErrorCode::PermissionDenied | ErrorCode::SystemIoFailure => {
                return DbError::Unwritable(e.into())
            }
            _ => {}
        }
    }
    DbError::Backend(e.into())
}

/// Opens a connection with our pragmas (no schema work).
pub fn connect(location: &Location) -> rusqlite::Result<Connection> {
    let conn = match location {
        Location::File(path) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?,
        Location::Memory => Connection::open_in_memory()?,
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    if matches!(location, Location::File(_)) {
        // WAL lets readers run while one writer commits; NORMAL keeps every
        // committed transaction across a process crash (only an OS crash can
        // lose the last ones, never corrupt the file).
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!("SQLite refused WAL mode (got {mode}); concurrent workers will wait on each other more");
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    }
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    Ok(conn)
}

impl SqliteDb {
    /// Opens a session on a database whose schema is already in place.
    pub fn open(location: &Location) -> DbResult<SqliteDb> {
        let conn = retry_busy(|| connect(location)).map_err(map_err)?;
        let collections = retry_busy(|| Collections::load(&conn)).map_err(map_err)?;
        Ok(SqliteDb::new(conn, collections))
    }

    /// Opens a session on an existing connection (used with `:memory:`).
    pub fn from_connection(conn: Connection) -> DbResult<SqliteDb> {
        let collections = Collections::load(&conn).map_err(map_err)?;
        Ok(SqliteDb::new(conn, collections))
    }

    fn new(conn: Connection, collections: Collections) -> SqliteDb {
        let queue = match conn.path() {
            Some(path) if !path.is_empty() => Some(write_queue::for_file(Path::new(path))),
            _ => None,
        };
        SqliteDb {
            conn,
            collections,
            queue,
        }
    }

    /// Leaves this session's WAL checkpoints to the end of its write turns (`checkpoint`):
    /// for the server's sessions, which take turns. Other connections (operator commands,
    /// which write outside the turns) keep SQLite's automatic checkpoint.
    pub fn checkpoint_after_turns(self) -> SqliteDb {
        if let Some(queue) = &self.queue {
            // SAFETY: the queue (and its `wal`) is kept by this session, whose connection is
            // dropped first (fields drop in order).
            unsafe { queue.wal.watch(&self.conn) };
        }
        self
    }

    /// The underlying connection, for operator commands.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Runs `f` and, on failure, drops collection ids cached inside the failed
    /// transaction.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> DbResult<T>) -> DbResult<T> {
        let out = f(self);
        // Answers such as 404 or 412 change nothing; only a failed transaction
        // may have seen an id that was rolled back.
        if matches!(
            out,
            Err(DbError::Busy
                | DbError::Unwritable(_)
                | DbError::Unavailable(_)
                | DbError::Backend(_))
        ) {
            let _ = self.collections.forget_uncommitted(&self.conn);
        }
        out
    }

    /// A write transaction: [`guarded`](Self::guarded), and run again (after
    /// a few ms) when its timestamp would have run ahead of the clock.
    fn write<T>(&mut self, mut f: impl FnMut(&mut Self) -> DbResult<T>) -> DbResult<T> {
        self.in_turn(|s| s.guarded(|s| writes::retry_when_ahead(s, &mut f)))
    }

    /// Runs a write transaction when this process's earlier writers are done
    /// (`write_queue`); a file-less database has one session and no queue.
    fn in_turn<T>(&mut self, f: impl FnOnce(&mut Self) -> DbResult<T>) -> DbResult<T> {
        let Some(queue) = self.queue.clone() else {
            return f(self);
        };
        let out = {
            let _turn = queue.wait(BUSY_TIMEOUT).ok_or(DbError::Busy)?;
            f(self)
        };
        queue.wal.checkpoint_if_due(&self.conn);
        out
    }
}

/// Opens (creating if needed) the database file and brings its schema up to date.
pub fn prepare(location: &Location) -> DbResult<(Connection, schema::Migration)> {
    if let Location::File(path) = location {
        check_directory(path)?;
    }
    let mut conn = retry_busy(|| connect(location)).map_err(map_err)?;
    let migration = retry_busy(|| schema::ensure(&mut conn)).map_err(map_err)?;
    Ok((conn, migration))
}

/// Repeats `f` while SQLite answers "busy", for up to the busy timeout.
///
/// Needed at start-up only: switching a brand-new file to WAL, or another
/// process's WAL recovery, can answer SQLITE_BUSY at once without calling the
/// busy handler, so several processes starting together on a new database
/// would otherwise fail (the Python server crashed there).
pub fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        match f() {
            Err(e)
                if matches!(map_err_ref(&e), Some(DbError::Busy))
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn map_err_ref(e: &rusqlite::Error) -> Option<DbError> {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            Some(DbError::Busy)
        }
        _ => None,
    }
}

fn check_directory(path: &Path) -> DbResult<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(DbError::Unwritable(
            format!(
                "the directory {} for the database does not exist",
                dir.display()
            )
            .into(),
        ));
    }
    Ok(())
}

impl MetaDb for SqliteDb {
    fn meta_get(&mut self, name: &str) -> DbResult<Option<String>> {
        schema::meta_get(&self.conn, name).map_err(map_err)
    }
    fn meta_get_or_insert(&mut self, name: &str, value: &str) -> DbResult<String> {
        schema::meta_get_or_insert(&self.conn, name, value).map_err(map_err)
    }
}

impl StorageDb for SqliteDb {
    fn collection_timestamps(&mut self, uid: Uid) -> DbResult<Vec<CollectionInfo>> {
        self.guarded(|s| reads::per_collection(s, uid, reads::PerCollection::Timestamps))
    }
    fn collection_counts(&mut self, uid: Uid) -> DbResult<Vec<CollectionInfo>> {
        self.guarded(|s| reads::per_collection(s, uid, reads::PerCollection::Counts))
    }
    fn collection_usage(&mut self, uid: Uid) -> DbResult<Vec<CollectionInfo>> {
        self.guarded(|s| reads::per_collection(s, uid, reads::PerCollection::Usage))
    }
    fn total_usage(&mut self, uid: Uid) -> DbResult<i64> {
        reads::total_usage(&self.conn, uid).map_err(map_err)
    }
    fn storage_timestamp(&mut self, uid: Uid) -> DbResult<Ms> {
        reads::storage_timestamp(&self.conn, uid).map_err(map_err)
    }
    fn list_bsos(
        &mut self,
        uid: Uid,
        collection: &str,
        query: &BsoQuery,
        pre: Precondition,
        each: &mut dyn FnMut(Bso),
    ) -> DbResult<PageEnd> {
        self.guarded(|s| reads::list_bsos(s, uid, collection, query, pre, each))
    }
    fn get_bso(
        &mut self,
        uid: Uid,
        collection: &str,
        id: &str,
        pre: Precondition,
    ) -> DbResult<Bso> {
        self.guarded(|s| reads::get_bso(s, uid, collection, id, pre))
    }
    fn put_bso(&mut self, ctx: WriteCtx, item: &BsoUpdate) -> DbResult<WriteOutcome> {
        self.write(|s| writes::put_bso(s, ctx, item))
    }
    fn post_bsos(&mut self, ctx: WriteCtx, items: &[BsoUpdate]) -> DbResult<WriteOutcome> {
        self.write(|s| writes::post_bsos(s, ctx, items))
    }
    fn delete_collection(&mut self, ctx: WriteCtx) -> DbResult<Ms> {
        self.write(|s| writes::delete_collection(s, ctx))
    }
    fn delete_bsos(&mut self, ctx: WriteCtx, ids: &[String]) -> DbResult<Ms> {
        self.write(|s| writes::delete_bsos(s, ctx, ids))
    }
    fn delete_bso(&mut self, ctx: WriteCtx, id: &str) -> DbResult<Ms> {
        self.write(|s| writes::delete_bso(s, ctx, id))
    }
    fn delete_storage(&mut self, uid: Uid, pre: Precondition) -> DbResult<()> {
        self.in_turn(|s| s.guarded(|s| writes::delete_storage(s, uid, pre)))
    }
    fn create_batch(&mut self, ctx: WriteCtx, items: &[BsoUpdate]) -> DbResult<(i64, Option<Ms>)> {
        self.in_turn(|s| s.guarded(|s| writes::create_batch(s, ctx, items)))
    }
    fn append_batch(
        &mut self,
        ctx: WriteCtx,
        batch: i64,
        items: &[BsoUpdate],
    ) -> DbResult<Option<Ms>> {
        self.in_turn(|s| s.guarded(|s| writes::append_batch(s, ctx, batch, items)))
    }
    fn commit_batch(
        &mut self,
        ctx: WriteCtx,
        batch: Option<i64>,
        items: &[BsoUpdate],
    ) -> DbResult<WriteOutcome> {
        self.write(|s| writes::commit_batch(s, ctx, batch, items))
    }
    fn ping(&mut self) -> DbResult<()> {
        self.conn
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(map_err)
    }
}

impl rusqlite::ToSql for Uid {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.get().into())
    }
}

/// A stored uid that cannot be an account's (0, negative) reads as out of range.
impl rusqlite::types::FromSql for Uid {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let raw = i64::column_result(value)?;
        Uid::new(raw).ok_or(rusqlite::types::FromSqlError::OutOfRange(raw))
    }
}
