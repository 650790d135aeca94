//! Operator queries on a server engine: chunked purges (each chunk its own short
//! transaction, bounded with LIMIT), accounts, figures with the engine's own
//! database size. `backup` names the engine's dump tool instead of copying.
//!
//! Rows the Python server left under `userid 0` on PostgreSQL (every new
//! account's first sync went there) are readable by no token (a uid is never
//! 0); `dead_uids` lists 0 whenever such rows exist, so `purge` removes them.

use std::path::Path;

use super::users::{revoke, SERVICE_NAME};
use super::{dialect, Conn, SqlDb, Value};
use crate::db::admin::{AdminDb, Purged, Stats, UserSummary};
use crate::db::nodes::NodeUser;
use crate::db::{DbError, DbResult};
use crate::timestamp::{now_ms, now_secs};

fn ints(c: &mut dyn Conn, sql: &str, args: &[Value]) -> DbResult<Vec<i64>> {
    c.query(sql, args)?.iter().map(|r| r.int(0)).collect()
}

fn one(c: &mut dyn Conn, sql: &str, args: &[Value]) -> DbResult<i64> {
    c.query_row(sql, args)?
        .map_or(Ok(0), |r| r.opt_int(0).map(|v| v.unwrap_or(0)))
}

impl SqlDb {
    /// One short write transaction.
    fn chunk<T>(&mut self, f: impl FnOnce(&mut dyn Conn) -> DbResult<T>) -> DbResult<T> {
        self.run(|s| {
            s.tx("BEGIN", |s| {
                let c = s.conn()?;
                let out = f(c)?;
                c.commit()?;
                Ok(out)
            })
        })
    }
}

impl AdminDb for SqlDb {
    fn purge_expired(&mut self, before: i64, limit: u64) -> DbResult<u64> {
        let sql = dialect::delete_limited(self.engine(), "bso", "ttl < ?");
        self.chunk(|c| c.execute(&sql, &[before.into(), (limit as i64).into()]))
    }

    fn purge_batches(&mut self, before_ms: i64, limit: u64) -> DbResult<u64> {
        let engine = self.engine();
        self.chunk(|c| {
            let items = c.execute(
                &dialect::delete_limited(engine, "batch_upload_items", "batch < ?"),
                &[before_ms.into(), (limit as i64).into()],
            )?;
            let batches = c.execute(
                &dialect::delete_limited(engine, "batch_uploads", "batch < ?"),
                &[before_ms.into(), (limit as i64).into()],
            )?;
            Ok(items + batches)
        })
    }

    fn dead_uids(&mut self, replaced: bool, replaced_before_ms: i64) -> DbResult<Vec<i64>> {
        self.run(|s| {
            let c = s.conn()?;
            let mut uids = ints(
                c,
                "SELECT uid FROM syncserver_fcgi_deleted_uids
                 UNION
                 SELECT r.uid FROM syncserver_fcgi_revoked_uids r
                 WHERE EXISTS (SELECT 1 FROM user_collections WHERE userid = r.uid)
                    OR EXISTS (SELECT 1 FROM bso WHERE userid = r.uid)",
                &[],
            )?;
            if replaced {
                uids.extend(ints(
                    c,
                    "SELECT u.uid FROM users u WHERE u.replaced_at IS NOT NULL AND u.replaced_at < ?
                       AND (EXISTS (SELECT 1 FROM user_collections WHERE userid = u.uid)
                         OR EXISTS (SELECT 1 FROM bso WHERE userid = u.uid)
                         OR EXISTS (SELECT 1 FROM batch_uploads WHERE userid = u.uid))",
                    &[replaced_before_ms.into()],
                )?);
            }
            let zero = c
                .query_row(
                    "SELECT 1 WHERE EXISTS (SELECT 1 FROM user_collections WHERE userid = 0)
                        OR EXISTS (SELECT 1 FROM bso WHERE userid = 0)
                        OR EXISTS (SELECT 1 FROM batch_uploads WHERE userid = 0)",
                    &[],
                )?
                .is_some();
            if zero {
                log::warn!(
                    "the database holds data under uid 0: the Python server on PostgreSQL wrote \
                     new accounts' first syncs there (its first token said uid 0), mixing \
                     accounts; no token can reach it, and purge removes it"
                );
                uids.push(0);
            }
            uids.sort_unstable();
            uids.dedup();
            Ok(uids)
        })
    }

    fn purge_uid(&mut self, uid: i64, limit: u64) -> DbResult<Purged> {
        let sql = dialect::delete_limited(self.engine(), "bso", "userid = ?");
        self.chunk(|c| {
            let records = c.execute(&sql, &[uid.into(), (limit as i64).into()])?;
            let mut purged = Purged {
                records,
                ..Purged::default()
            };
            if records < limit {
                purged.collections = c.execute(
                    "DELETE FROM user_collections WHERE userid = ?",
                    &[uid.into()],
                )?;
                purged.batch_rows = c.execute(
                    "DELETE FROM batch_upload_items WHERE userid = ?",
                    &[uid.into()],
                )? + c
                    .execute("DELETE FROM batch_uploads WHERE userid = ?", &[uid.into()])?;
                c.execute(
                    "DELETE FROM syncserver_fcgi_deleted_uids WHERE uid = ?",
                    &[uid.into()],
                )?;
                purged.uids = 1;
            }
            Ok(purged)
        })
    }

    fn user_records(&mut self) -> DbResult<Vec<NodeUser>> {
        self.run(|s| {
            let rows = s.conn()?.query(
                "SELECT uid, email, generation, client_state, created_at, replaced_at,
                        keys_changed_at
                 FROM users WHERE service = ? ORDER BY uid",
                &[SERVICE_NAME.into()],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(NodeUser {
                        uid: r.int(0)?,
                        email: r.text(1)?,
                        generation: r.opt_int(2)?.unwrap_or(0),
                        client_state: r.opt_text(3)?.unwrap_or_default(),
                        created_at: r.opt_int(4)?.unwrap_or(0),
                        replaced_at: r.opt_int(5)?,
                        keys_changed_at: r.opt_int(6)?,
                    })
                })
                .collect()
        })
    }

    fn list_users(&mut self) -> DbResult<Vec<UserSummary>> {
        let now = now_secs() as i64;
        self.run(|s| {
            let rows = s.conn()?.query(
                "SELECT u.uid, u.email, u.created_at, u.replaced_at,
                        COALESCE(b.n, 0), COALESCE(b.bytes, 0),
                        COALESCE(b.expired, 0), COALESCE(b.expired_bytes, 0)
                 FROM users u
                 LEFT JOIN (SELECT userid,
                                   SUM(CASE WHEN ttl > ? THEN 1 ELSE 0 END) AS n,
                                   SUM(CASE WHEN ttl > ? THEN payload_size ELSE 0 END) AS bytes,
                                   SUM(CASE WHEN ttl <= ? THEN 1 ELSE 0 END) AS expired,
                                   SUM(CASE WHEN ttl <= ? THEN payload_size ELSE 0 END) AS expired_bytes
                            FROM bso GROUP BY userid) b ON b.userid = u.uid
                 WHERE u.service = ?
                 ORDER BY u.email, u.created_at, u.uid",
                &[
                    now.into(),
                    now.into(),
                    now.into(),
                    now.into(),
                    SERVICE_NAME.into(),
                ],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(UserSummary {
                        uid: r.int(0)?,
                        email: r.text(1)?,
                        created_at: r.int(2)?,
                        replaced_at: r.opt_int(3)?,
                        records: r.int(4)?,
                        bytes: r.int(5)?,
                        expired_records: r.int(6)?,
                        expired_bytes: r.int(7)?,
                    })
                })
                .collect()
        })
    }

    fn remove_account(&mut self, email: &str) -> DbResult<Vec<i64>> {
        let begin = self.begin_locked(super::email_key(email));
        self.run(|s| {
            s.tx(&begin, |s| {
                let c = s.conn()?;
                let uids = ints(
                    c,
                    "SELECT uid FROM users WHERE email = ? AND service = ?",
                    &[email.into(), SERVICE_NAME.into()],
                )?;
                let now = now_ms();
                for uid in &uids {
                    c.execute(
                        "INSERT INTO syncserver_fcgi_deleted_uids (uid, deleted_at) VALUES (?, ?)
                         ON CONFLICT (uid) DO UPDATE SET deleted_at = EXCLUDED.deleted_at",
                        &[(*uid).into(), now.into()],
                    )?;
                }
                revoke(c, &uids, now)?;
                c.execute(
                    "DELETE FROM users WHERE email = ? AND service = ?",
                    &[email.into(), SERVICE_NAME.into()],
                )?;
                c.commit()?;
                Ok(uids)
            })
        })
    }

    fn stats(&mut self) -> DbResult<Stats> {
        let now = now_secs() as i64;
        let size = dialect::database_size(self.engine());
        self.run(|s| {
            let c = s.conn()?;
            let row = c
                .query_row(
                    "SELECT
                       (SELECT COUNT(DISTINCT email) FROM users WHERE service = ? AND replaced_at IS NULL),
                       (SELECT COUNT(*) FROM users),
                       (SELECT COUNT(*) FROM user_collections),
                       (SELECT COUNT(*) FROM bso WHERE ttl > ?),
                       (SELECT COUNT(*) FROM bso WHERE ttl <= ?),
                       (SELECT COALESCE(SUM(payload_size), 0) FROM bso WHERE ttl > ?),
                       (SELECT COUNT(*) FROM batch_uploads),
                       (SELECT MIN(ttl) FROM bso WHERE ttl <= ?)",
                    &[
                        SERVICE_NAME.into(),
                        now.into(),
                        now.into(),
                        now.into(),
                        now.into(),
                    ],
                )?
                .ok_or_else(|| DbError::Backend("no row".into()))?;
            Ok(Stats {
                accounts: row.int(0)?,
                user_rows: row.int(1)?,
                collections: row.int(2)?,
                records: row.int(3)?,
                expired_records: row.int(4)?,
                bytes: row.int(5)?,
                batches: row.int(6)?,
                oldest_expired: row.opt_int(7)?,
                database_bytes: one(c, size, &[])?,
            })
        })
    }

    fn backup(&mut self, target: &Path) -> DbResult<()> {
        Err(DbError::Unwritable(
            format!(
                "{} is a database server: dump it with {}",
                self.place(),
                self.dump_command(target).unwrap_or_default()
            )
            .into(),
        ))
    }

    fn dump_command(&self, target: &Path) -> Option<String> {
        Some(self.params.dump_command(target))
    }
}
