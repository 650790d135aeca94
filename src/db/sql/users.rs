//! `users` (the tokenserver's rows), our meta values, and uids handed out once
//! and revoked for good, as `db/sqlite/uids.rs` explains: new rows get an explicit
//! uid above both `max(users.uid)` and the high-water mark in
//! `syncserver_fcgi_meta`, never 0 and never a deleted account's; on PostgreSQL
//! the Python server's `users_uid_seq` is moved past it, so that a rollback to the
//! Python server cannot hand it out again (MySQL's AUTO_INCREMENT follows by
//! itself).

use super::{dialect, email_key, Conn, SqlDb, Value};
use crate::db::sqlite::users::SERVICE;
use crate::db::users::{apply_plan, without_writing, UserRows};

/// `users.service` of our rows.
pub(super) const SERVICE_NAME: &str = SERVICE;
use crate::db::{DbError, DbResult, MetaDb, NewUser, UserPlan, UserRecord, UserState, UsersDb};
use crate::uid::Uid;

/// The meta row holding the high-water mark.
pub(super) const HIGH_WATER: &str = "uid_high_water";

fn uid(raw: i64) -> DbResult<Uid> {
    Uid::new(raw).ok_or_else(|| DbError::Backend(format!("stored uid {raw} out of range").into()))
}

fn rows(c: &mut dyn Conn, email: &str) -> DbResult<Vec<UserRecord>> {
    let rows = c.query(
        "SELECT uid, generation, client_state, keys_changed_at, created_at, replaced_at
         FROM users WHERE email = ? AND service = ?
         ORDER BY created_at DESC, uid DESC LIMIT 20",
        &[email.into(), SERVICE.into()],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        // A uid-0 row cannot be the Python server's (serial uids start at 1); skip
        // rather than hand it out.
        let Some(u) = Uid::new(r.int(0)?) else {
            log::warn!("users row with uid {} for an account ignored", r.int(0)?);
            continue;
        };
        out.push(UserRecord {
            uid: u,
            generation: r.int(1)?,
            client_state: r.text(2)?,
            keys_changed_at: r.opt_int(3)?,
            created_at: r.int(4)?,
            replaced_at: r.opt_int(5)?,
        });
    }
    Ok(out)
}

/// The high-water mark (0 when none).
pub(super) fn high_water(c: &mut dyn Conn) -> DbResult<i64> {
    let v = c.query_row(
        "SELECT value FROM syncserver_fcgi_meta WHERE name = ?",
        &[HIGH_WATER.into()],
    )?;
    Ok(match v {
        Some(r) => r.text(0)?.trim().parse().unwrap_or(0),
        None => 0,
    })
}

/// Raises the high-water mark to at least `to`.
pub(super) fn raise(c: &mut dyn Conn, to: i64) -> DbResult<()> {
    let value = high_water(c)?.max(to);
    c.execute(
        "INSERT INTO syncserver_fcgi_meta (name, value) VALUES (?, ?)
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        &[HIGH_WATER.into(), value.to_string().into()],
    )?;
    Ok(())
}

/// Tombstones for `uids` and a high-water mark above them (in the transaction
/// that deletes their rows).
pub(super) fn revoke(c: &mut dyn Conn, uids: &[i64], now_ms: i64) -> DbResult<()> {
    for u in uids {
        c.execute(
            "INSERT INTO syncserver_fcgi_revoked_uids (uid, revoked_at) VALUES (?, ?)
             ON CONFLICT DO NOTHING",
            &[(*u).into(), now_ms.into()],
        )?;
    }
    if let Some(max) = uids.iter().max() {
        raise(c, *max)?;
    }
    Ok(())
}

/// The lock key that orders uid choices: no uid is 0, and email keys are negative.
const NEW_UID_LOCK: i64 = 0;

fn insert(c: &mut dyn Conn, email: &str, new: &NewUser, created: i64) -> DbResult<Uid> {
    // The caller holds the email's lock, which does not order two different emails:
    // without a lock of its own, two first sign-ins would both pick max + 1. Held
    // until commit; the read below then sees the previous holder's row (READ
    // COMMITTED on both engines).
    let lock = dialect::translate(
        c.engine(),
        &super::inline(dialect::lock_key(c.engine()), &[NEW_UID_LOCK]),
    );
    c.batch(&lock)?;
    let row = c.query_row(
        "SELECT (SELECT COALESCE(MAX(uid), 0) FROM users),
                (SELECT value FROM syncserver_fcgi_meta WHERE name = ?)",
        &[HIGH_WATER.into()],
    )?;
    let (max, mark) = match row {
        Some(r) => (r.int(0)?, r.opt_text(1)?),
        None => (0, None),
    };
    let mark: i64 = mark.and_then(|m| m.trim().parse().ok()).unwrap_or(0);
    let next = uid(max.max(mark) + 1)?;
    c.execute(
        "INSERT INTO users (uid, service, email, generation, client_state, created_at,
                            replaced_at, keys_changed_at, node)
         VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        &[
            next.into(),
            SERVICE.into(),
            email.into(),
            new.generation.into(),
            new.client_state.as_str().into(),
            created.into(),
            new.keys_changed_at.into(),
            new.node.as_str().into(),
        ],
    )?;
    if let Some(sql) = dialect::after_explicit_uid(c.engine()) {
        c.query_row(sql, &[next.into()])?;
    }
    Ok(next)
}

/// The row operations of `token_user` inside the session's transaction.
struct Rows<'a>(&'a mut dyn Conn);

impl UserRows for Rows<'_> {
    fn rows(&mut self, email: &str) -> DbResult<Vec<UserRecord>> {
        rows(self.0, email)
    }
    fn set_replaced(&mut self, uid: Uid, at: i64) -> DbResult<()> {
        self.0
            .execute(
                "UPDATE users SET replaced_at = ? WHERE uid = ?",
                &[at.into(), uid.into()],
            )
            .map(drop)
    }
    fn accounts(&mut self) -> DbResult<i64> {
        self.0
            .query_row(
                "SELECT COUNT(DISTINCT email) FROM users WHERE service = ? AND replaced_at IS NULL",
                &[SERVICE.into()],
            )?
            .map_or(Ok(0), |r| r.int(0))
    }
    fn insert(&mut self, email: &str, new: &NewUser, created_at: i64) -> DbResult<Uid> {
        insert(self.0, email, new, created_at)
    }
    fn replace_others(&mut self, email: &str, at: i64, keep: Uid) -> DbResult<()> {
        self.0
            .execute(
                "UPDATE users SET replaced_at = ?
                 WHERE service = ? AND email = ? AND replaced_at IS NULL AND uid <> ?",
                &[at.into(), SERVICE.into(), email.into(), keep.into()],
            )
            .map(drop)
    }
    fn update(&mut self, uid: Uid, generation: i64, keys_changed_at: Option<i64>) -> DbResult<()> {
        self.0
            .execute(
                "UPDATE users SET generation = ?, keys_changed_at = ? WHERE uid = ?",
                &[generation.into(), keys_changed_at.into(), uid.into()],
            )
            .map(drop)
    }
}

impl UsersDb for SqlDb {
    fn token_user(
        &mut self,
        email: &str,
        now_ms: i64,
        decide: &mut dyn FnMut(&UserState) -> UserPlan,
    ) -> DbResult<Option<UserRecord>> {
        // Most tokens go to returning users with nothing to change: one read.
        let unlocked = self.run(|s| Ok(without_writing(&rows(s.conn()?, email)?, decide)))?;
        if let Some(answer) = unlocked {
            return Ok(answer);
        }
        let begin = self.begin_locked(email_key(email));
        self.run(|s| {
            s.tx(&begin, |s| {
                let c = s.conn()?;
                let current = apply_plan(&mut Rows(c), email, now_ms, decide)?;
                match current {
                    Some(_) => c.commit()?,
                    None => c.rollback()?,
                }
                Ok(current)
            })
        })
    }

    fn uid_revoked(&mut self, uid: Uid) -> DbResult<bool> {
        self.run(|s| {
            Ok(s.conn()?
                .query_row(
                    "SELECT 1 FROM syncserver_fcgi_revoked_uids WHERE uid = ?",
                    &[uid.into()],
                )?
                .is_some())
        })
    }
}

impl MetaDb for SqlDb {
    fn meta_get(&mut self, name: &str) -> DbResult<Option<String>> {
        self.run(|s| {
            s.conn()?
                .query_row(
                    "SELECT value FROM syncserver_fcgi_meta WHERE name = ?",
                    &[name.into()],
                )?
                .map(|r| r.text(0))
                .transpose()
        })
    }
    fn meta_get_or_insert(&mut self, name: &str, value: &str) -> DbResult<String> {
        self.run(|s| {
            let c = s.conn()?;
            c.execute(
                "INSERT INTO syncserver_fcgi_meta (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                &[name.into(), Value::from(value)],
            )?;
            c.query_row(
                "SELECT value FROM syncserver_fcgi_meta WHERE name = ?",
                &[name.into()],
            )?
            .ok_or_else(|| DbError::Backend(format!("meta value {name} missing").into()))?
            .text(0)
        })
    }
}
