//! The target side of `migrate` (see `db/migrate.rs`, which reads the SQLite source
//! and decides what to copy): a MySQL/MariaDB or PostgreSQL database with the
//! Python server's tables, written one user per transaction, read back for the
//! verification, and finally given sequences above every copied id.
//!
//! What a migration has done is recorded in the target itself, so that a second
//! run catches up instead of starting over: the source it copies from (the meta
//! row `migrated_from`) and, per uid, the state of the source it copied
//! (`syncserver_fcgi_migration`). A user's rows and its progress row change in
//! the same transaction, so an interrupted run leaves every user either copied
//! and recorded, or as before.

use std::collections::HashMap;

use super::conn::{Conn, Engine, Value};
use super::{dialect, latin1, schema, text_limit, users, TextLimit};
use crate::db::migrate::{BsoRow, Checksum, Held, Shared, UserRow};
use crate::db::{DbError, DbResult};

/// The meta row naming the source a migration copies from.
const MIGRATED_FROM: &str = "migrated_from";

/// Per uid: the state of the source copied, and what was copied.
const PROGRESS: &str = "CREATE TABLE IF NOT EXISTS syncserver_fcgi_migration (
        uid BIGINT NOT NULL PRIMARY KEY,
        fingerprint VARCHAR(64) NOT NULL,
        records BIGINT NOT NULL,
        bytes BIGINT NOT NULL,
        checksum VARCHAR(64) NOT NULL,
        copied_at BIGINT NOT NULL
    ){opts}";

/// Rows per multi-row INSERT, and the payload bytes after which one is sent early
/// (well under MariaDB's default 16 MiB `max_allowed_packet`).
const CHUNK_ROWS: usize = 200;
const CHUNK_BYTES: usize = 2 << 20;

const BSO_COLUMNS: &str =
    "INSERT INTO bso (userid, collection, id, sortindex, modified, payload, payload_size, ttl) VALUES ";

/// What `claim` found in the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Empty: this run starts the migration.
    Fresh,
    /// An earlier run from the same source: this one catches up.
    Resumed,
    /// Data not written by a migration from this source, described for the operator.
    Foreign(String),
    /// Another `migrate` is working on the target right now.
    Busy,
}

/// A connection to the migration's target.
pub struct Target {
    conn: Box<dyn Conn>,
    text: TextLimit,
    /// Rows waiting for the next multi-row INSERT, and their payload bytes.
    pending: Vec<Value>,
    pending_bytes: usize,
}

impl Target {
    /// Connects for a long job: no statement time limit (a big user's rows are
    /// deleted in one statement), the tables created as `serve` would.
    pub fn connect(params: &super::ServerParams) -> DbResult<Target> {
        let mut conn = super::connect(params)?;
        for sql in dialect::unlimited_statements(conn.engine()) {
            // MySQL has max_execution_time, MariaDB max_statement_time: one fails.
            let _ = conn.batch(sql);
        }
        Ok(Target {
            conn,
            text: TextLimit::Any,
            pending: Vec::new(),
            pending_bytes: 0,
        })
    }

    /// Takes the target for this run (a lock held until the connection closes)
    /// and says whether it may be written: empty, or holding an earlier migration
    /// from `source` (then nothing else is checked: users copied before are
    /// compared with the source one by one). Only then are the tables created, as
    /// `serve` would, with the progress table; a refused target is left as it was.
    pub fn claim(&mut self, source: &str) -> DbResult<Claim> {
        let c = self.conn.as_mut();
        let granted = c.query_row(dialect::migrate_lock(c.engine()), &[])?;
        if granted.map(|r| r.opt_int(0)).transpose()?.flatten() != Some(1) {
            return Ok(Claim::Busy);
        }
        let from = match exists(c, "syncserver_fcgi_meta")? {
            true => c
                .query_row(
                    "SELECT value FROM syncserver_fcgi_meta WHERE name = ?",
                    &[MIGRATED_FROM.into()],
                )?
                .map(|r| r.text(0))
                .transpose()?,
            false => None,
        };
        let claim = match from {
            Some(from) if from == source => Claim::Resumed,
            Some(from) => {
                return Ok(Claim::Foreign(format!(
                    "it holds a migration from another database ({from})"
                )))
            }
            None => {
                let found = data_found(c)?;
                if !found.is_empty() {
                    return Ok(Claim::Foreign(format!("it holds {}", found.join(", "))));
                }
                Claim::Fresh
            }
        };
        schema::ensure(c)?;
        let opts = match c.engine() {
            Engine::Mysql => " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            Engine::Postgresql => "",
        };
        c.batch(&PROGRESS.replace("{opts}", opts))?;
        self.text = text_limit(c)?;
        if claim == Claim::Fresh {
            c.execute(
                "INSERT INTO syncserver_fcgi_meta (name, value) VALUES (?, ?)",
                &[MIGRATED_FROM.into(), source.into()],
            )?;
        }
        Ok(claim)
    }

    /// uid → the source state an earlier run copied.
    pub fn progress(&mut self) -> DbResult<HashMap<i64, String>> {
        let mut out = HashMap::new();
        self.conn.query_each(
            "SELECT uid, fingerprint FROM syncserver_fcgi_migration",
            &[],
            &mut |r| {
                out.insert(r.int(0)?, r.text(1)?);
                Ok(true)
            },
        )?;
        Ok(out)
    }

    /// Starts copying `uid`: a transaction that first removes what the target
    /// holds of it.
    pub fn begin_user(&mut self, uid: i64) -> DbResult<()> {
        self.pending.clear();
        self.pending_bytes = 0;
        self.conn.begin()?;
        delete_user(self.conn.as_mut(), uid)
    }

    /// The user's `users` row.
    pub fn insert_user(&mut self, u: &UserRow) -> DbResult<()> {
        self.conn.execute(
            "INSERT INTO users (uid, service, email, generation, client_state, created_at,
                                replaced_at, keys_changed_at, node)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                u.uid.into(),
                u.service.as_str().into(),
                u.email.as_str().into(),
                u.generation.into(),
                u.client_state.as_str().into(),
                u.created_at.into(),
                u.replaced_at.into(),
                u.keys_changed_at.into(),
                u.node.clone().into(),
            ],
        )?;
        Ok(())
    }

    /// The user's `user_collections` rows: (collection, last_modified).
    pub fn insert_collections(&mut self, uid: i64, rows: &[(i64, i64)]) -> DbResult<()> {
        for (collection, last_modified) in rows {
            self.conn.execute(
                "INSERT INTO user_collections (userid, collection, last_modified) VALUES (?, ?, ?)",
                &[uid.into(), (*collection).into(), (*last_modified).into()],
            )?;
        }
        Ok(())
    }

    /// One record, sent with others in a multi-row INSERT. Text the tables cannot
    /// hold is refused here, naming the record.
    pub fn push_bso(&mut self, uid: i64, r: BsoRow) -> DbResult<()> {
        for (what, text) in [("id", &r.id), ("payload", &r.payload)] {
            if let Some(why) = self.unstorable(text) {
                return Err(DbError::UnstorableText(format!(
                    "the {what} of record {:?} in collection {} holds {why}",
                    r.id, r.collection
                )));
            }
        }
        self.pending_bytes += r.payload.len() + r.id.len();
        self.pending.extend([
            uid.into(),
            r.collection.into(),
            r.id.into(),
            r.sortindex.into(),
            r.modified.into(),
            r.payload.into(),
            r.payload_size.into(),
            r.ttl.into(),
        ]);
        if self.pending.len() >= CHUNK_ROWS * 8 || self.pending_bytes >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> DbResult<()> {
        let rows = self.pending.len() / 8;
        if rows == 0 {
            return Ok(());
        }
        let mut sql = String::with_capacity(BSO_COLUMNS.len() + rows * 20);
        sql.push_str(BSO_COLUMNS);
        for i in 0..rows {
            sql.push_str(if i == 0 { "" } else { ", " });
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?)");
        }
        let args = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.conn.execute(&sql, &args)?;
        Ok(())
    }

    /// What the target holds of `uid`, inside the copying transaction (so a
    /// mismatch is rolled back with the copy): its `users` row, its
    /// `user_collections` rows in collection order, and the checksum of its records.
    pub fn read_back(&mut self, uid: i64) -> DbResult<Held> {
        self.flush()?;
        let c = self.conn.as_mut();
        let user = match c.query_row(
            "SELECT uid, service, email, generation, client_state, created_at,
                    replaced_at, keys_changed_at, node
             FROM users WHERE uid = ?",
            &[uid.into()],
        )? {
            Some(r) => Some(UserRow {
                uid: r.int(0)?,
                service: r.text(1)?,
                email: r.text(2)?,
                generation: r.int(3)?,
                client_state: r.text(4)?,
                created_at: r.int(5)?,
                replaced_at: r.opt_int(6)?,
                keys_changed_at: r.opt_int(7)?,
                node: r.opt_text(8)?,
            }),
            None => None,
        };
        let collections = c
            .query(
                "SELECT collection, last_modified FROM user_collections
                 WHERE userid = ? ORDER BY collection",
                &[uid.into()],
            )?
            .iter()
            .map(|r| Ok((r.int(0)?, r.int(1)?)))
            .collect::<DbResult<Vec<_>>>()?;
        let mut sum = Checksum::default();
        c.query_each(
            "SELECT collection, id, sortindex, modified, payload, payload_size, ttl
             FROM bso WHERE userid = ?",
            &[uid.into()],
            &mut |mut r| {
                sum.add(&BsoRow {
                    collection: r.int(0)?,
                    id: r.take_text(1)?,
                    sortindex: r.opt_int(2)?,
                    modified: r.int(3)?,
                    payload: r.take_text(4)?,
                    payload_size: r.int(5)?,
                    ttl: r.int(6)?,
                });
                Ok(true)
            },
        )?;
        Ok(Held {
            user,
            collections,
            records: sum,
        })
    }

    /// Records what was copied of `uid` and commits its transaction.
    pub fn commit_user(
        &mut self,
        uid: i64,
        fingerprint: &str,
        records: i64,
        bytes: i64,
        checksum: &str,
        now_ms: i64,
    ) -> DbResult<()> {
        self.conn.execute(
            "INSERT INTO syncserver_fcgi_migration
               (uid, fingerprint, records, bytes, checksum, copied_at)
             VALUES (?, ?, ?, ?, ?, ?)",
            &[
                uid.into(),
                fingerprint.into(),
                records.into(),
                bytes.into(),
                checksum.into(),
                now_ms.into(),
            ],
        )?;
        self.conn.commit()
    }

    /// Abandons the current user's transaction.
    pub fn rollback(&mut self) {
        self.pending.clear();
        let _ = self.conn.rollback();
    }

    /// Removes a uid the source no longer holds (an account deleted and purged
    /// there since an earlier run), in one transaction.
    pub fn remove_user(&mut self, uid: i64) -> DbResult<()> {
        self.conn.begin()?;
        match delete_user(self.conn.as_mut(), uid).and_then(|()| self.conn.commit()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// Makes the target's shared tables what the source holds, in one transaction
    /// (collections added, never renumbered; meta values copied, the uid
    /// high-water mark raised to the source's; the deleted and revoked uids
    /// mirrored); returns the number of rows changed.
    pub fn sync_shared(&mut self, s: &Shared) -> DbResult<usize> {
        self.conn.begin()?;
        let out = sync_shared(self.conn.as_mut(), s).and_then(|n| {
            self.conn.commit()?;
            Ok(n)
        });
        if out.is_err() {
            self.rollback();
        }
        out
    }

    /// After the copy: the uid high-water mark and tombstones brought up to date
    /// as at start-up, and the engine's sequences (PostgreSQL `setval`, MySQL
    /// `AUTO_INCREMENT`) moved above every copied uid, the high-water mark and
    /// every collection id, so neither we nor the Python server ever hands out an
    /// id in use.
    pub fn finish(&mut self) -> DbResult<()> {
        let c = self.conn.as_mut();
        schema::ensure(c)?;
        let row = c
            .query_row(
                "SELECT (SELECT COALESCE(MAX(uid), 0) FROM users),
                        (SELECT COALESCE(MAX(uid), 0) FROM syncserver_fcgi_migration),
                        (SELECT COALESCE(MAX(collectionid), 0) FROM collections)",
                &[],
            )?
            .ok_or_else(|| DbError::Backend("no row".into()))?;
        // Also above uids that hold data without a `users` row (tokens minted
        // elsewhere): a new account must not find data waiting for it.
        let copied = row.int(1)?;
        if users::high_water(c)? < copied {
            users::raise(c, copied)?;
        }
        let uid = row.int(0)?.max(users::high_water(c)?);
        let collection = row.int(2)?;
        for (table, column, top) in [
            ("users", "uid", uid),
            ("collections", "collectionid", collection),
        ] {
            if top > 0 {
                let sql = dialect::sequence_above(c.engine(), table, column, top);
                c.batch(&sql)?;
            }
        }
        Ok(())
    }

    /// Totals of everything migrations copied: (uids, user collections, records,
    /// bytes); summed here (PostgreSQL's SUM of a BIGINT is NUMERIC).
    pub fn totals(&mut self) -> DbResult<(i64, i64, i64, i64)> {
        let (mut uids, mut records, mut bytes) = (0, 0, 0);
        self.conn.query_each(
            "SELECT records, bytes FROM syncserver_fcgi_migration",
            &[],
            &mut |r| {
                uids += 1;
                records += r.int(0)?;
                bytes += r.int(1)?;
                Ok(true)
            },
        )?;
        let collections = self
            .conn
            .query_row("SELECT COUNT(*) FROM user_collections", &[])?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        Ok((uids, collections, records, bytes))
    }

    fn unstorable(&self, text: &str) -> Option<&'static str> {
        match self.text {
            TextLimit::Any => None,
            TextLimit::NoNul => text.contains('\0').then_some("a NUL character"),
            TextLimit::Latin1 => text
                .chars()
                .any(|c| !latin1(c))
                .then_some("characters outside latin1 (the character set of the MySQL table)"),
        }
    }
}

fn delete_user(c: &mut dyn Conn, uid: i64) -> DbResult<()> {
    for sql in [
        "DELETE FROM bso WHERE userid = ?",
        "DELETE FROM user_collections WHERE userid = ?",
        "DELETE FROM users WHERE uid = ?",
        "DELETE FROM syncserver_fcgi_migration WHERE uid = ?",
    ] {
        c.execute(sql, &[uid.into()])?;
    }
    Ok(())
}

fn exists(c: &mut dyn Conn, table: &str) -> DbResult<bool> {
    Ok(
        c.query_row(dialect::table_exists(c.engine()), &[table.into()])?
            .is_some(),
    )
}

/// The tables that hold data, each with how many rows it holds (counted up to a
/// thousand), for a refusal.
fn data_found(c: &mut dyn Conn) -> DbResult<Vec<String>> {
    let mut found = Vec::new();
    for (table, what) in [
        ("users", "account row(s)"),
        ("bso", "record(s)"),
        ("user_collections", "user collection(s)"),
        ("collections", "collection name(s)"),
        ("batch_uploads", "pending batch(es)"),
        ("syncserver_fcgi_deleted_uids", "deleted uid(s)"),
        ("syncserver_fcgi_revoked_uids", "revoked uid(s)"),
    ] {
        if !exists(c, table)? {
            continue;
        }
        let n = c
            .query_row(
                &format!("SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT 1001) AS x"),
                &[],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        if n > 1000 {
            found.push(format!("over 1000 {what} in {table}"));
        } else if n > 0 {
            found.push(format!("{n} {what} in {table}"));
        }
    }
    Ok(found)
}

fn sync_shared(c: &mut dyn Conn, s: &Shared) -> DbResult<usize> {
    let mut changed = 0;
    let mut have: HashMap<i64, String> = HashMap::new();
    for r in c.query("SELECT collectionid, name FROM collections", &[])? {
        have.insert(r.int(0)?, r.text(1)?);
    }
    for (id, name) in &s.collections {
        match have.get(id) {
            Some(n) if n == name => {}
            Some(n) => {
                return Err(DbError::Backend(
                    format!("collection id {id} is {name:?} in the source but {n:?} in the target")
                        .into(),
                ))
            }
            None => {
                c.execute(
                    "INSERT INTO collections (collectionid, name) VALUES (?, ?)",
                    &[(*id).into(), name.as_str().into()],
                )?;
                changed += 1;
            }
        }
    }
    let mut meta: HashMap<String, String> = HashMap::new();
    for r in c.query("SELECT name, value FROM syncserver_fcgi_meta", &[])? {
        meta.insert(r.text(0)?, r.text(1)?);
    }
    for (name, value) in &s.meta {
        if name == users::HIGH_WATER {
            let mark = value.trim().parse().unwrap_or(0);
            if users::high_water(c)? < mark {
                users::raise(c, mark)?;
                changed += 1;
            }
        } else if meta.get(name) != Some(value) && name != MIGRATED_FROM {
            c.execute(
                "INSERT INTO syncserver_fcgi_meta (name, value) VALUES (?, ?)
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                &[name.as_str().into(), value.as_str().into()],
            )?;
            changed += 1;
        }
    }
    for (table, at, rows) in [
        ("syncserver_fcgi_deleted_uids", "deleted_at", &s.deleted),
        ("syncserver_fcgi_revoked_uids", "revoked_at", &s.revoked),
    ] {
        let mut have: HashMap<i64, i64> = HashMap::new();
        for r in c.query(&format!("SELECT uid, {at} FROM {table}"), &[])? {
            have.insert(r.int(0)?, r.int(1)?);
        }
        let want: HashMap<i64, i64> = rows.iter().copied().collect();
        for uid in have.keys().filter(|u| !want.contains_key(u)) {
            c.execute(
                &format!("DELETE FROM {table} WHERE uid = ?"),
                &[(*uid).into()],
            )?;
            changed += 1;
        }
        for (uid, when) in &want {
            if have.get(uid) != Some(when) {
                c.execute(
                    &format!(
                        "INSERT INTO {table} (uid, {at}) VALUES (?, ?)
                         ON CONFLICT (uid) DO UPDATE SET {at} = EXCLUDED.{at}"
                    ),
                    &[(*uid).into(), (*when).into()],
                )?;
                changed += 1;
            }
        }
    }
    Ok(changed)
}
