//! Operator queries on SQLite: chunked purges, account listing and removal,
//! figures, and the online backup.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

use super::users::SERVICE;
use super::{map_err, SqliteDb};
use crate::db::admin::{AdminDb, Purged, Stats, UserSummary};
use crate::db::nodes::NodeUser;
use crate::db::{DbError, DbResult};
use crate::timestamp::{now_ms, now_secs};

impl SqliteDb {
    /// Runs one short write transaction.
    fn write_chunk<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> DbResult<T> {
        let tx = self
            .connection()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let out = f(&tx).map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        Ok(out)
    }
}

fn count(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> rusqlite::Result<i64> {
    conn.query_row(sql, args, |r| r.get(0))
}

impl AdminDb for SqliteDb {
    fn purge_expired(&mut self, before: i64, limit: u64) -> DbResult<u64> {
        self.write_chunk(|c| {
            c.execute(
                "DELETE FROM bso WHERE rowid IN (SELECT rowid FROM bso WHERE ttl < ?1 LIMIT ?2)",
                params![before, limit as i64],
            )
            .map(|n| n as u64)
        })
    }

    fn purge_batches(&mut self, before_ms: i64, limit: u64) -> DbResult<u64> {
        self.write_chunk(|c| {
            let items = c.execute(
                "DELETE FROM batch_upload_items WHERE rowid IN
                   (SELECT rowid FROM batch_upload_items WHERE batch < ?1 LIMIT ?2)",
                params![before_ms, limit as i64],
            )?;
            let batches = c.execute(
                "DELETE FROM batch_uploads WHERE rowid IN
                   (SELECT rowid FROM batch_uploads WHERE batch < ?1 LIMIT ?2)",
                params![before_ms, limit as i64],
            )?;
            Ok((items + batches) as u64)
        })
    }

    fn dead_uids(&mut self, replaced: bool, replaced_before_ms: i64) -> DbResult<Vec<i64>> {
        let conn = self.connection();
        let mut uids: Vec<i64> = Vec::new();
        // The queue, plus deleted accounts' uids that have data again: a write
        // that passed its revocation check just before `users delete` committed
        // may land after the deletion emptied the uid.
        let mut stmt = conn
            .prepare(
                "SELECT uid FROM syncserver_fcgi_deleted_uids
                 UNION
                 SELECT uid FROM syncserver_fcgi_revoked_uids r
                 WHERE EXISTS (SELECT 1 FROM user_collections WHERE userid = r.uid)
                    OR EXISTS (SELECT 1 FROM bso WHERE userid = r.uid)
                 ORDER BY uid",
            )
            .map_err(map_err)?;
        for uid in stmt.query_map([], |r| r.get(0)).map_err(map_err)? {
            uids.push(uid.map_err(map_err)?);
        }
        if replaced {
            // Only uids that still have data: the rows stay (they keep the
            // stale-key check working), their storage namespace goes.
            let mut stmt = conn
                .prepare(
                    "SELECT uid FROM users WHERE replaced_at IS NOT NULL AND replaced_at < ?1
                       AND (EXISTS (SELECT 1 FROM user_collections WHERE userid = uid)
                         OR EXISTS (SELECT 1 FROM bso WHERE userid = uid)
                         OR EXISTS (SELECT 1 FROM batch_uploads WHERE userid = uid))
                     ORDER BY uid",
                )
                .map_err(map_err)?;
            for uid in stmt
                .query_map([replaced_before_ms], |r| r.get(0))
                .map_err(map_err)?
            {
                uids.push(uid.map_err(map_err)?);
            }
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    fn purge_uid(&mut self, uid: i64, limit: u64) -> DbResult<Purged> {
        self.write_chunk(|c| {
            let records = c.execute(
                "DELETE FROM bso WHERE rowid IN (SELECT rowid FROM bso WHERE userid = ?1 LIMIT ?2)",
                params![uid, limit as i64],
            )? as u64;
            let mut purged = Purged {
                records,
                ..Purged::default()
            };
            if records < limit {
                purged.collections =
                    c.execute("DELETE FROM user_collections WHERE userid = ?1", [uid])? as u64;
                purged.batch_rows = (c
                    .execute("DELETE FROM batch_upload_items WHERE userid = ?1", [uid])?
                    + c.execute("DELETE FROM batch_uploads WHERE userid = ?1", [uid])?)
                    as u64;
                c.execute(
                    "DELETE FROM syncserver_fcgi_deleted_uids WHERE uid = ?1",
                    [uid],
                )?;
                purged.uids = 1;
            }
            Ok(purged)
        })
    }

    fn settle(&mut self) {
        // PASSIVE: copies what no reader still needs and waits for nobody; the
        // server's writers go on meanwhile. Otherwise the WAL a purge grows is
        // copied back by whichever connection commits past the auto-checkpoint
        // size, often a server request holding its process's write turn.
        if let Err(e) =
            self.connection()
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            log::debug!("checkpoint between purge chunks: {e}");
        }
    }

    fn user_records(&mut self) -> DbResult<Vec<NodeUser>> {
        let conn = self.connection();
        let mut stmt = conn
            .prepare(
                "SELECT uid, email, generation, client_state, created_at, replaced_at,
                        keys_changed_at
                 FROM users WHERE service = ?1 ORDER BY uid",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![SERVICE], |r| {
                Ok(NodeUser {
                    uid: r.get(0)?,
                    email: r.get(1)?,
                    generation: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    client_state: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    created_at: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                    replaced_at: r.get(5)?,
                    keys_changed_at: r.get(6)?,
                })
            })
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }

    fn list_users(&mut self) -> DbResult<Vec<UserSummary>> {
        let conn = self.connection();
        let mut stmt = conn
            .prepare(
                "SELECT u.uid, u.email, u.created_at, u.replaced_at,
                        COALESCE(b.n, 0), COALESCE(b.bytes, 0),
                        COALESCE(b.expired, 0), COALESCE(b.expired_bytes, 0)
                 FROM users u
                 LEFT JOIN (SELECT userid,
                                   SUM(ttl > ?1) AS n,
                                   SUM(CASE WHEN ttl > ?1 THEN payload_size ELSE 0 END) AS bytes,
                                   SUM(ttl <= ?1) AS expired,
                                   SUM(CASE WHEN ttl <= ?1 THEN payload_size ELSE 0 END) AS expired_bytes
                            FROM bso GROUP BY userid) b ON b.userid = u.uid
                 WHERE u.service = ?2
                 ORDER BY u.email, u.created_at, u.uid",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![now_secs() as i64, SERVICE], |r| {
                Ok(UserSummary {
                    uid: r.get(0)?,
                    email: r.get(1)?,
                    created_at: r.get(2)?,
                    replaced_at: r.get(3)?,
                    records: r.get(4)?,
                    bytes: r.get(5)?,
                    expired_records: r.get(6)?,
                    expired_bytes: r.get(7)?,
                })
            })
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }

    fn remove_account(&mut self, email: &str) -> DbResult<Vec<i64>> {
        self.write_chunk(|c| {
            let uids: Vec<i64> = {
                let mut stmt = c.prepare("SELECT uid FROM users WHERE email = ?1 AND service = ?2")?;
                let rows = stmt.query_map(params![email, SERVICE], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let now = now_ms();
            for uid in &uids {
                c.execute(
                    "INSERT OR REPLACE INTO syncserver_fcgi_deleted_uids (uid, deleted_at) VALUES (?1, ?2)",
                    params![uid, now],
                )?;
            }
            // In the same transaction: once the rows are gone, no process
            // accepts the uids' tokens, and no new account gets the uids.
            super::uids::revoke(c, &uids, now)?;
            c.execute(
                "DELETE FROM users WHERE email = ?1 AND service = ?2",
                params![email, SERVICE],
            )?;
            Ok(uids)
        })
    }

    fn stats(&mut self) -> DbResult<Stats> {
        let now = now_secs() as i64;
        let conn = self.connection();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(map_err)?;
        let c: &Connection = &tx;
        let mut s = Stats {
            accounts: count(
                c,
                "SELECT COUNT(DISTINCT email) FROM users WHERE service = ?1 AND replaced_at IS NULL",
                [SERVICE],
            )
            .map_err(map_err)?,
            user_rows: count(c, "SELECT COUNT(*) FROM users", []).map_err(map_err)?,
            collections: count(c, "SELECT COUNT(*) FROM user_collections", []).map_err(map_err)?,
            records: count(c, "SELECT COUNT(*) FROM bso WHERE ttl > ?1", [now]).map_err(map_err)?,
            expired_records: count(c, "SELECT COUNT(*) FROM bso WHERE ttl <= ?1", [now]).map_err(map_err)?,
            bytes: count(c, "SELECT COALESCE(SUM(payload_size), 0) FROM bso WHERE ttl > ?1", [now])
                .map_err(map_err)?,
            batches: count(c, "SELECT COUNT(*) FROM batch_uploads", []).map_err(map_err)?,
            ..Stats::default()
        };
        s.oldest_expired = c
            .query_row("SELECT MIN(ttl) FROM bso WHERE ttl <= ?1", [now], |r| {
                r.get(0)
            })
            .map_err(map_err)?;
        let pages = count(c, "PRAGMA page_count", []).map_err(map_err)?;
        let page_size = count(c, "PRAGMA page_size", []).map_err(map_err)?;
        let wal = c
            .path()
            .and_then(|p| std::fs::metadata(format!("{p}-wal")).ok())
            .map(|m| m.len() as i64)
            .unwrap_or(0);
        s.database_bytes = pages * page_size + wal;
        Ok(s)
    }

    fn backup(&mut self, target: &Path) -> DbResult<()> {
        if target.exists() {
            return Err(DbError::Unwritable(
                format!(
                    "{} exists already; choose a new file name",
                    target.display()
                )
                .into(),
            ));
        }
        let partial = target.with_file_name(format!(
            ".{}.partial-{}",
            target
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("backup"),
            std::process::id()
        ));
        // A hard link (unlike rename) refuses a target that appeared meanwhile.
        let result = copy_to(self.connection(), &partial).and_then(|()| {
            std::fs::hard_link(&partial, target).map_err(|e| {
                DbError::Unwritable(
                    format!("cannot write the backup {}: {e}", target.display()).into(),
                )
            })
        });
        let _ = std::fs::remove_file(&partial);
        result
    }
}

/// Copies page by page while writers go on, checks the copy, makes it a
/// self-contained rollback-journal file, and syncs it to disk.
fn copy_to(source: &Connection, path: &Path) -> DbResult<()> {
    // The caller names the target; `path` is only its temporary sibling.
    let unwritable = |e: rusqlite::Error| DbError::Unwritable(e.into());
    let mut dest = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )
    .map_err(unwritable)?;
    {
        let backup = rusqlite::backup::Backup::new(source, &mut dest).map_err(unwritable)?;
        // Small steps with pauses let the server's writers in between.
        backup
            .run_to_completion(256, Duration::from_millis(2), None)
            .map_err(map_err)?;
    }
    let check: String = dest
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(unwritable)?;
    if check != "ok" {
        return Err(DbError::Backend(
            format!("the copy failed its integrity check: {check}").into(),
        ));
    }
    dest.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .map_err(unwritable)?;
    drop(dest);
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| DbError::Unwritable(e.into()))
}
