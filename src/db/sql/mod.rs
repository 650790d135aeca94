//! MySQL/MariaDB and PostgreSQL, on exactly the tables the Python server made there
//! (`schema.rs`), with one implementation of the storage rules for both engines
//! (`storage.rs`, `users.rs`, `admin.rs`) over the small connection trait of
//! `conn.rs`; the engines differ only in `dialect.rs` and their driver glue.
//!
//! Sessions: one connection each (a pool session serves one request at a time).
//! A lost connection fails the request that saw it with `Unavailable` (503 +
//! Retry-After); the session opens a new connection on its next use, so a
//! restarted database server needs no restart of ours.
//!
//! Concurrency, without SQLite's single write lock but with its guarantees:
//! every write transaction of a user first takes that user's lock
//! ([`dialect::lock_key`]: PostgreSQL's `pg_advisory_xact_lock(uid)`, MySQL's row
//! of `syncserver_fcgi_locks`), so a user's writes run one at a time, each gets
//! a timestamp later than the last, and preconditions are checked after the
//! lock, inside the transaction. Writes of different users never wait on each
//! other. A first sign-in locks on (a hash of) the email the same way, so
//! concurrent first requests create one `users` row.
//!
//! MySQL caveat, kept as the Python server had it: its storage tables are
//! latin1 with the case-insensitive, PAD SPACE collation `latin1_swedish_ci`,
//! so ids that differ only in letter case (or trailing spaces) name the same
//! record and collection names likewise. We keep those tables as they are (a
//! rollback to the Python server must keep working); unlike the Python server
//! the stored id keeps its first spelling. Text a latin1 column cannot hold is
//! refused with `DbError::UnstorableText` (400) before anything is written, as
//! is a NUL character on PostgreSQL.

mod admin;
pub mod conn;
pub mod dialect;
pub mod migrate;
mod mysql;
mod postgres;
pub mod schema;
mod storage;
mod users;

use std::collections::HashMap;
use std::sync::Arc;

pub use conn::{connect, Conn, Engine, Host, Row, ServerParams, Value};
pub use schema::present;

use crate::db::{DbError, DbResult};

/// The name ↔ id map of `collections`, cached per session (rows are never
/// deleted or renumbered). A database in standard-collections mode (its
/// `(99, '')` row) keeps the fixed ids, which are not stored.
#[derive(Debug, Default)]
struct Collections {
    standard: bool,
    by_name: HashMap<String, i64>,
    by_id: HashMap<i64, String>,
}

impl Collections {
    fn reload(&mut self, c: &mut dyn Conn) -> DbResult<()> {
        self.by_name.clear();
        self.by_id.clear();
        for row in c.query("SELECT collectionid, name FROM collections", &[])? {
            let (id, name) = (row.int(0)?, row.text(1)?);
            if id == 99 && name.is_empty() {
                self.standard = true;
            } else {
                self.insert(id, name);
            }
        }
        if self.standard {
            for (id, name) in crate::db::sqlite::collections::STANDARD {
                self.insert(*id, name.to_string());
            }
        }
        Ok(())
    }

    fn insert(&mut self, id: i64, name: String) {
        self.by_id.insert(id, name.clone());
        self.by_name.insert(name, id);
    }

    fn id(&mut self, c: &mut dyn Conn, name: &str) -> DbResult<Option<i64>> {
        if let Some(id) = self.by_name.get(name) {
            return Ok(Some(*id));
        }
        let row = c.query_row(
            "SELECT collectionid, name FROM collections WHERE name = ?",
            &[name.into()],
        )?;
        let Some(row) = row else { return Ok(None) };
        let id = row.int(0)?;
        // MySQL's collation may match another spelling: cache the stored one too.
        self.insert(id, row.text(1)?);
        self.by_name.insert(name.to_string(), id);
        Ok(Some(id))
    }

    /// Inside the caller's write transaction; a concurrent creator of the same
    /// name makes this wait for it and then read its id.
    fn id_or_create(&mut self, c: &mut dyn Conn, name: &str) -> DbResult<i64> {
        if let Some(id) = self.id(c, name)? {
            return Ok(id);
        }
        if self.standard {
            // Custom collections start at 100 (the Python server moved its
            // sequence there); a concurrent creation of another name collides
            // on the key and answers Busy (503), the client retries.
            c.execute(
                "INSERT INTO collections (collectionid, name)
                 SELECT GREATEST(COALESCE(MAX(collectionid), 0) + 1, 100), ?t FROM collections",
                &[name.into()],
            )
            .map_err(|e| match e {
                DbError::Backend(_) => DbError::Busy,
                e => e,
            })?;
        } else {
            c.execute(
                "INSERT INTO collections (name) VALUES (?) ON CONFLICT DO NOTHING",
                &[name.into()],
            )?;
        }
        self.id(c, name)?
            .ok_or_else(|| DbError::Backend(format!("collection {name} not created").into()))
    }

    fn name(&mut self, c: &mut dyn Conn, id: i64) -> DbResult<Option<String>> {
        if !self.by_id.contains_key(&id) {
            self.reload(c)?;
        }
        Ok(self.by_id.get(&id).cloned())
    }
}

/// What the storage tables can hold, learnt when the session connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextLimit {
    /// Any Unicode except NUL (PostgreSQL).
    NoNul,
    /// latin1 as MySQL has it (cp1252), the Python server's MySQL tables.
    Latin1,
    /// Anything (a MySQL table in utf8mb4).
    Any,
}

/// One session on a MySQL/MariaDB or PostgreSQL database.
pub struct SqlDb {
    params: Arc<ServerParams>,
    conn: Option<Box<dyn Conn>>,
    collections: Collections,
    text: TextLimit,
}

impl SqlDb {
    /// A session on a database whose schema is in place; connects now.
    pub fn open(params: Arc<ServerParams>) -> DbResult<SqlDb> {
        let mut db = SqlDb {
            params,
            conn: None,
            collections: Collections::default(),
            text: TextLimit::Any,
        };
        db.conn()?;
        Ok(db)
    }

    /// The database, for messages.
    pub fn place(&self) -> String {
        self.params.place()
    }

    fn engine(&self) -> Engine {
        self.params.engine
    }

    /// The connection, opened anew when there is none (first use, or lost).
    fn conn(&mut self) -> DbResult<&mut dyn Conn> {
        if self.conn.as_ref().is_some_and(|c| c.broken()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let mut c = connect(&self.params)?;
            self.collections = Collections::default();
            self.collections.reload(c.as_mut())?;
            self.text = text_limit(c.as_mut())?;
            self.conn = Some(c);
        }
        Ok(self.conn.as_deref_mut().expect("connected above"))
    }

    /// The connection and the collection cache, for the storage code.
    fn parts(&mut self) -> DbResult<(&mut dyn Conn, &mut Collections)> {
        self.conn()?;
        let conn = self.conn.as_deref_mut().expect("connected above");
        Ok((conn, &mut self.collections))
    }

    /// Runs one request's work; afterwards a lost connection is dropped (the next
    /// request reconnects) and collection ids possibly cached inside a failed
    /// transaction are forgotten.
    fn run<T>(&mut self, f: impl FnOnce(&mut Self) -> DbResult<T>) -> DbResult<T> {
        let out = f(self);
        if let Err(e) = &out {
            if matches!(e, DbError::Unavailable(_))
                || self.conn.as_ref().is_some_and(|c| c.broken())
            {
                self.conn = None;
            } else if matches!(e, DbError::Busy | DbError::Backend(_)) {
                self.collections = Collections::default();
                if let Some(c) = self.conn.as_deref_mut() {
                    let _ = self.collections.reload(c);
                }
            }
        }
        out
    }

    /// Runs `f` in a transaction (committed by `f` itself or here), rolled back
    /// when it fails.
    /// `begin` may be empty when `f` begins the transaction itself.
    fn tx<T>(&mut self, begin: &str, f: impl FnOnce(&mut Self) -> DbResult<T>) -> DbResult<T> {
        if !begin.is_empty() {
            self.conn()?.batch(begin)?;
        }
        let out = f(self);
        if out.is_err() {
            if let Some(c) = self.conn.as_deref_mut() {
                if c.rollback().is_err() {
                    self.conn = None;
                }
            }
        }
        out
    }

    /// `BEGIN` plus taking the lock of `key` (a uid, or [`email_key`]), in one
    /// round trip.
    fn begin_locked(&self, key: i64) -> String {
        let lock = dialect::translate(
            self.engine(),
            &inline(dialect::lock_key(self.engine()), &[key]),
        );
        format!("BEGIN; {lock}")
    }

    /// Refuses text the storage tables cannot hold, before anything is written.
    fn check_text(&self, text: &str) -> DbResult<()> {
        let bad = match self.text {
            TextLimit::Any => None,
            TextLimit::NoNul => text.contains('\0').then_some("a NUL character (\\u0000)"),
            TextLimit::Latin1 => text
                .chars()
                .any(|c| !latin1(c))
                .then_some("characters outside latin1 (the table's character set)"),
        };
        match bad {
            Some(what) => Err(DbError::UnstorableText(format!(
                "the database cannot store {what}"
            ))),
            None => Ok(()),
        }
    }
}

/// What the storage tables can hold (MySQL: the charset of `bso.payload`).
fn text_limit(c: &mut dyn Conn) -> DbResult<TextLimit> {
    Ok(match c.engine() {
        Engine::Postgresql => TextLimit::NoNul,
        Engine::Mysql => {
            let row = c.query_row(
                "SELECT character_set_name FROM information_schema.columns
                 WHERE table_schema = DATABASE() AND table_name = 'bso' AND column_name = 'payload'",
                &[],
            )?;
            match row.and_then(|r| r.opt_text(0).ok().flatten()) {
                Some(cs) if cs.eq_ignore_ascii_case("latin1") => TextLimit::Latin1,
                _ => TextLimit::Any,
            }
        }
    })
}

/// Whether MySQL's latin1 (which is Windows-1252, its five undefined bytes mapping
/// to the C1 controls of the same number) holds `c`.
fn latin1(c: char) -> bool {
    const CP1252: &str = "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ";
    match c as u32 {
        0..=0x7f | 0xa0..=0xff => true,
        0x81 | 0x8d | 0x8f | 0x90 | 0x9d => true,
        0x80..=0x9f => false,
        _ => CP1252.contains(c),
    }
}

/// Puts integer literals in place of the `?`s of `sql` (for statements sent
/// together with others in one round trip; integers only, so nothing to escape).
fn inline(sql: &str, ints: &[i64]) -> String {
    let mut out = String::with_capacity(sql.len() + ints.len() * 8);
    let mut ints = ints.iter();
    for c in sql.chars() {
        match (c, c == '?') {
            (_, true) => out.push_str(&ints.next().map_or("NULL".into(), i64::to_string)),
            (c, false) => out.push(c),
        }
    }
    out
}

/// The lock key of an email: negative, so it never meets a uid's (FNV-1a).
pub(crate) fn email_key(email: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in email.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    -((h >> 1) as i64) - 1
}

/// Connects to `params`, creates or brings up to date the schema, and returns the
/// first session with what changed.
pub fn prepare(params: Arc<ServerParams>) -> DbResult<(SqlDb, Vec<String>)> {
    let mut c = connect(&params)?;
    let changes = schema::ensure(c.as_mut())?;
    drop(c);
    let db = SqlDb::open(params)?;
    Ok((db, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_cp1252() {
        for c in ['a', 'é', 'ÿ', '€', 'Ÿ', '\u{81}', '\0'] {
            assert!(latin1(c), "{c:?}");
        }
        for c in ['中', '😀', '\u{80}', '\u{9f}', 'Ā'] {
            assert!(!latin1(c), "{c:?}");
        }
    }

    #[test]
    fn keys_and_literals() {
        assert!(email_key("a@b") < 0 && email_key("") < 0);
        assert_ne!(email_key("a@b"), email_key("a@c"));
        assert_eq!(inline("x = ? AND y = ?", &[1, -2]), "x = 1 AND y = -2");
    }
}
