//! The `users` table as the Python server's static-node backend used it.

use crate::uid::Uid;
use rusqlite::{params, Connection, TransactionBehavior};

use super::{map_err, uids, SqliteDb};
use crate::db::users::{apply_plan, without_writing, UserRows};
use crate::db::{DbResult, NewUser, UserPlan, UserRecord, UserState, UsersDb};

/// The service string stored in `users.service`.
pub const SERVICE: &str = "sync-1.5";

fn rows(conn: &Connection, email: &str) -> rusqlite::Result<Vec<UserRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT uid, generation, client_state, keys_changed_at, created_at, replaced_at
         FROM users WHERE email = ?1 AND service = ?2
         ORDER BY created_at DESC, uid DESC LIMIT 20",
    )?;
    let rows = stmt.query_map(params![email, SERVICE], |r| {
        Ok(UserRecord {
            uid: r.get(0)?,
            generation: r.get(1)?,
            client_state: r.get(2)?,
            keys_changed_at: r.get(3)?,
            created_at: r.get(4)?,
            replaced_at: r.get(5)?,
        })
    })?;
    rows.collect()
}

fn accounts(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT COUNT(DISTINCT email) FROM users WHERE service = ?1 AND replaced_at IS NULL",
    )?
    .query_row([SERVICE], |r| r.get(0))
}

fn insert(conn: &Connection, email: &str, new: &NewUser, now_ms: i64) -> rusqlite::Result<Uid> {
    // An explicit uid: SQLite's own choice (max + 1) would hand a deleted
    // account's uid to the next account.
    let uid = uids::next(conn)?;
    conn.prepare_cached(
        "INSERT INTO users (uid, service, email, generation, client_state, created_at,
                            replaced_at, keys_changed_at, node)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8)",
    )?
    .execute(params![
        uid,
        SERVICE,
        email,
        new.generation,
        new.client_state,
        now_ms,
        new.keys_changed_at,
        new.node
    ])?;
    Ok(uid)
}

/// The row operations of `token_user` on an SQLite write transaction.
struct Rows<'a>(&'a Connection);

impl UserRows for Rows<'_> {
    fn rows(&mut self, email: &str) -> DbResult<Vec<UserRecord>> {
        rows(self.0, email).map_err(map_err)
    }
    fn set_replaced(&mut self, uid: Uid, at: i64) -> DbResult<()> {
        self.0
            .prepare_cached("UPDATE users SET replaced_at = ?1 WHERE uid = ?2")
            .and_then(|mut st| st.execute(params![at, uid]))
            .map(drop)
            .map_err(map_err)
    }
    fn accounts(&mut self) -> DbResult<i64> {
        accounts(self.0).map_err(map_err)
    }
    fn insert(&mut self, email: &str, new: &NewUser, created_at: i64) -> DbResult<Uid> {
        insert(self.0, email, new, created_at).map_err(map_err)
    }
    fn replace_others(&mut self, email: &str, at: i64, keep: Uid) -> DbResult<()> {
        self.0
            .prepare_cached(
                "UPDATE users SET replaced_at = ?1
                 WHERE service = ?2 AND email = ?3 AND replaced_at IS NULL AND uid != ?4",
            )
            .and_then(|mut st| st.execute(params![at, SERVICE, email, keep]))
            .map(drop)
            .map_err(map_err)
    }
    fn update(&mut self, uid: Uid, generation: i64, keys_changed_at: Option<i64>) -> DbResult<()> {
        self.0
            .prepare_cached("UPDATE users SET generation = ?1, keys_changed_at = ?2 WHERE uid = ?3")
            .and_then(|mut st| st.execute(params![generation, keys_changed_at, uid]))
            .map(drop)
            .map_err(map_err)
    }
}

impl UsersDb for SqliteDb {
    fn token_user(
        &mut self,
        email: &str,
        now_ms: i64,
        decide: &mut dyn FnMut(&UserState) -> UserPlan,
    ) -> DbResult<Option<UserRecord>> {
        // A returning user with nothing to change needs no write lock.
        let existing = rows(self.connection(), email).map_err(map_err)?;
        if let Some(answer) = without_writing(&existing, decide) {
            return Ok(answer);
        }
        self.in_turn(|s| {
            let tx = s
                .connection()
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let current = apply_plan(&mut Rows(&tx), email, now_ms, decide)?;
            if current.is_some() {
                tx.commit().map_err(map_err)?;
            }
            Ok(current)
        })
    }

    fn uid_revoked(&mut self, uid: Uid) -> DbResult<bool> {
        uids::is_revoked(self.connection(), uid).map_err(map_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sqlite::{schema, Location};

    fn db() -> SqliteDb {
        let (mut conn, _) = crate::db::sqlite::prepare(&Location::Memory).unwrap();
        schema::ensure(&mut conn).unwrap();
        SqliteDb::from_connection(conn).unwrap()
    }

    fn new(cs: &str, generation: i64) -> NewUser {
        NewUser {
            generation,
            client_state: cs.into(),
            keys_changed_at: Some(generation),
            node: "http://n".into(),
        }
    }

    #[test]
    fn create_keep_replace() {
        let mut db = db();
        let first = db
            .token_user("a@b", 1000, &mut |s| {
                assert!(s.rows.is_empty());
                UserPlan::Create(new("aa", 1))
            })
            .unwrap()
            .unwrap();
        assert_eq!(first.uid, crate::uid::Uid::new(1).unwrap());
        let kept = db
            .token_user("a@b", 2000, &mut |s| {
                assert_eq!(s.rows.len(), 1);
                UserPlan::Keep
            })
            .unwrap()
            .unwrap();
        assert_eq!(kept, first);
        let replaced = db
            .token_user("a@b", 1000, &mut |_| UserPlan::Replace(new("bb", 2)))
            .unwrap()
            .unwrap();
        assert_eq!(replaced.uid, crate::uid::Uid::new(2).unwrap());
        assert!(replaced.created_at > first.created_at);
        db.token_user("a@b", 3000, &mut |s| {
            assert_eq!(s.rows[0].uid, crate::uid::Uid::new(2).unwrap());
            assert_eq!(s.rows[1].replaced_at, Some(replaced.created_at));
            UserPlan::Keep
        })
        .unwrap();
        assert_eq!(
            db.token_user("a@b", 1, &mut |_| UserPlan::Reject).unwrap(),
            None
        );
    }

    #[test]
    fn counts_accounts_for_new_ones() {
        let mut db = db();
        db.token_user("a@b", 1, &mut |_| UserPlan::Create(new("", 0)))
            .unwrap();
        db.token_user("c@d", 1, &mut |s| {
            assert_eq!(s.accounts, 1);
            UserPlan::Reject
        })
        .unwrap();
    }
}
