//! uids are handed out once and revoked for good (our own state; the Python
//! `users` table stays exactly as it is).
//!
//! `users.uid` is an `INTEGER PRIMARY KEY` without AUTOINCREMENT, so SQLite on
//! its own gives a new row `max(uid) + 1`: after the newest account is deleted,
//! the next account would get its uid, and the deleted account's tokens (valid
//! for up to `token_duration`) would read and write the new account's data.
//! Two pieces of state prevent that:
//!
//! - a high-water mark (`syncserver_fcgi_meta` row `uid_high_water`): the
//!   highest uid ever removed from `users`. New rows get
//!   `max(high-water mark, max(users.uid)) + 1`, inside the write transaction
//!   that inserts them, so every process agrees.
//! - tombstones (`syncserver_fcgi_revoked_uids`): uids whose account an
//!   administrator deleted. Every storage request looks its uid up there, so
//!   a deleted account's token is refused by every process as soon as the
//!   deletion commits. Tokens carry only a uid, which is why this is a list of
//!   dead uids rather than a check that the uid is in `users`: tokens minted
//!   outside the tokenserver (tests, load tools, other tokenservers sharing
//!   the secret) name uids without a row.
//!
//! A key change (a new uid for the same account, older rows marked replaced)
//! revokes nothing: the old uid's data belongs to the same person.

use crate::uid::Uid;
use rusqlite::{params, Connection, OptionalExtension};

/// The meta row holding the high-water mark.
const HIGH_WATER: &str = "uid_high_water";

/// The uid for a new `users` row; call inside the inserting write transaction.
pub fn next(conn: &Connection) -> rusqlite::Result<Uid> {
    conn.prepare_cached(
        "SELECT MAX(COALESCE((SELECT MAX(uid) FROM users), 0),
                    COALESCE((SELECT CAST(value AS INTEGER) FROM syncserver_fcgi_meta
                              WHERE name = ?1), 0)) + 1",
    )?
    .query_row([HIGH_WATER], |r| r.get(0))
}

/// Raises the high-water mark to at least `uid`.
fn raise(conn: &Connection, uid: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO syncserver_fcgi_meta (name, value) VALUES (?1, CAST(?2 AS TEXT))
         ON CONFLICT (name) DO UPDATE SET
           value = CAST(MAX(CAST(value AS INTEGER), ?2) AS TEXT)",
    )?
    .execute(params![HIGH_WATER, uid])?;
    Ok(())
}

/// Records that `uids` were removed from `users`: tombstones, and a
/// high-water mark above them. Call in the transaction that deletes the rows.
pub fn revoke(conn: &Connection, uids: &[i64], now_ms: i64) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO syncserver_fcgi_revoked_uids (uid, revoked_at) VALUES (?1, ?2)",
    )?;
    for uid in uids {
        insert.execute(params![uid, now_ms])?;
    }
    if let Some(max) = uids.iter().max() {
        raise(conn, *max)?;
    }
    Ok(())
}

/// Whether `uid` belongs to a deleted account (one primary-key lookup).
pub fn is_revoked(conn: &Connection, uid: Uid) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM syncserver_fcgi_revoked_uids WHERE uid = ?1")?
        .query_row([uid], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
}

/// Start-up work, in the schema transaction; returns what changed, for the log.
///
/// - The high-water mark starts above every uid in use or queued for purging
///   (a Python server's database, or one written before this existed).
/// - Accounts deleted by an earlier version (still queued in
///   `syncserver_fcgi_deleted_uids`) get their tombstones.
/// - A tombstone whose uid is in `users` again means another server (the
///   Python one, after a rollback) gave the uid to a new account: that
///   account must not be locked out, so the tombstone goes.
pub fn migrate(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut changes = Vec::new();
    let seed: i64 = conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(uid) FROM users), 0),
                    COALESCE((SELECT MAX(uid) FROM syncserver_fcgi_deleted_uids), 0),
                    COALESCE((SELECT MAX(uid) FROM syncserver_fcgi_revoked_uids), 0))",
        [],
        |r| r.get(0),
    )?;
    let had_mark = conn
        .query_row(
            "SELECT 1 FROM syncserver_fcgi_meta WHERE name = ?1",
            [HIGH_WATER],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    raise(conn, seed)?;
    if !had_mark && seed > 0 {
        changes.push(format!(
            "new uids start above {seed} and are never handed out twice"
        ));
    }
    let queued = conn.execute(
        "INSERT OR IGNORE INTO syncserver_fcgi_revoked_uids (uid, revoked_at)
         SELECT uid, deleted_at FROM syncserver_fcgi_deleted_uids
         WHERE uid NOT IN (SELECT uid FROM users)",
        [],
    )?;
    if queued > 0 {
        changes.push(format!(
            "{queued} uid(s) of accounts deleted earlier are now refused"
        ));
    }
    let reused: Vec<i64> = {
        let mut stmt = conn.prepare(
            "SELECT uid FROM syncserver_fcgi_revoked_uids
             WHERE uid IN (SELECT uid FROM users) ORDER BY uid",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if !reused.is_empty() {
        conn.execute(
            "DELETE FROM syncserver_fcgi_revoked_uids WHERE uid IN (SELECT uid FROM users)",
            [],
        )?;
        changes.push(format!(
            "uid(s) {reused:?} of deleted accounts were given to new accounts by another server; \
             those accounts are served again (tokens of the deleted accounts that are still \
             valid would reach them too)"
        ));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sqlite::schema;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::ensure(&mut conn).unwrap();
        conn
    }

    fn add_user(conn: &Connection, uid: i64) {
        conn.execute(
            "INSERT INTO users (uid, service, email, generation, client_state, created_at)
             VALUES (?1, 'sync-1.5', ?2, 0, '', 0)",
            params![uid, format!("u{uid}@x")],
        )
        .unwrap();
    }

    #[test]
    fn never_twice() {
        let conn = db();
        assert_eq!(next(&conn).unwrap(), crate::uid::Uid::new(1).unwrap());
        add_user(&conn, 1);
        add_user(&conn, 2);
        assert_eq!(next(&conn).unwrap(), crate::uid::Uid::new(3).unwrap());
        conn.execute("DELETE FROM users WHERE uid = 2", []).unwrap();
        revoke(&conn, &[2], 5).unwrap();
        assert_eq!(next(&conn).unwrap(), crate::uid::Uid::new(3).unwrap());
        assert!(is_revoked(&conn, crate::uid::Uid::new(2).unwrap()).unwrap());
        assert!(!is_revoked(&conn, crate::uid::Uid::new(1).unwrap()).unwrap());
        // An older, lower deletion never lowers the mark.
        revoke(&conn, &[1], 6).unwrap();
        assert_eq!(next(&conn).unwrap(), crate::uid::Uid::new(3).unwrap());
    }

    #[test]
    fn migration_seeds_and_heals() {
        let conn = db();
        // A Python-made database: users up to 7, a queued deletion of 9 by an
        // earlier version, and a revoked uid 4 that another server reused.
        add_user(&conn, 7);
        add_user(&conn, 4);
        conn.execute_batch(
            "DELETE FROM syncserver_fcgi_meta;
             INSERT INTO syncserver_fcgi_deleted_uids VALUES (9, 1);
             INSERT INTO syncserver_fcgi_revoked_uids VALUES (4, 1);",
        )
        .unwrap();
        let changes = migrate(&conn).unwrap();
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert_eq!(next(&conn).unwrap(), crate::uid::Uid::new(10).unwrap());
        assert!(is_revoked(&conn, crate::uid::Uid::new(9).unwrap()).unwrap());
        assert!(!is_revoked(&conn, crate::uid::Uid::new(4).unwrap()).unwrap());
        assert!(migrate(&conn).unwrap().is_empty());
    }
}
