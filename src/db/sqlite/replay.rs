//! The replay guard shared by every process on one database (mod_fcgid runs several): the
//! same rules as `auth::replay::ReplayGuard`, kept in a small SQLite file beside the database.
//!
//! A separate file, so that recording a nonce on every request never takes the main
//! database's write lock, which storage writes need. Its transactions are short (a handful of
//! primary-key statements) and need no durability: `synchronous = OFF` loses at most the last
//! moments of replay state in an operating-system crash, after which the tokens concerned are
//! minutes from leaving their window anyway.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::BUSY_TIMEOUT;
use crate::auth::{nonce_key, ReplayError, ReplayLimits, ReplayStore, WINDOW_SECS};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    key BLOB PRIMARY KEY, uid INTEGER NOT NULL, clock_offset INTEGER NOT NULL,
    deadline INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_deadline ON tokens (deadline);
CREATE TABLE IF NOT EXISTS nonces (
    key BLOB PRIMARY KEY, uid INTEGER NOT NULL, deadline INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_deadline ON nonces (deadline, uid);
CREATE TABLE IF NOT EXISTS accounts (
    uid INTEGER PRIMARY KEY, nonces INTEGER NOT NULL DEFAULT 0, tokens INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 0), nonces INTEGER NOT NULL, tokens INTEGER NOT NULL,
    purged INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (0, 0, 0, 0);
";

/// The file that holds the shared replay state of the database at `db`.
pub fn replay_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-replay");
    PathBuf::from(name)
}

/// Replay state shared through a SQLite file.
pub struct SharedReplay {
    conn: Mutex<Connection>,
    limits: ReplayLimits,
}

impl std::fmt::Debug for SharedReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReplay")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What one check decided, before the transaction commits.
enum Decision {
    Accept,
    Refuse(ReplayError),
}

impl SharedReplay {
    /// Opens (creating if needed) the replay file `path`.
    pub fn open(path: &Path, limits: ReplayLimits) -> rusqlite::Result<SharedReplay> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        // Several processes may create the file at once: the schema is idempotent and runs in
        // one write transaction.
        let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        tx.commit()?;
        Ok(SharedReplay {
            conn: Mutex::new(conn),
            limits,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-transaction drops the transaction (rolled back): the connection is fine.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn decide(&self, conn: &Connection, req: &Request<'_>, now: i64) -> rusqlite::Result<Decision> {
        purge(conn, now)?;
        let known: Option<i64> = conn
            .prepare_cached("SELECT clock_offset FROM tokens WHERE key = ?1")?
            .query_row([&req.token[..]], |r| r.get(0))
            .optional()?;
        let offset = match known {
            Some(offset) => offset,
            None => {
                let offset = now.saturating_sub(req.ts);
                if req.token_deadline > now {
                    if let Some(refusal) = self.admit_token(conn, req, offset)? {
                        return Ok(Decision::Refuse(refusal));
                    }
                }
                offset
            }
        };
        let corrected = req.ts.saturating_add(offset);
        if corrected.abs_diff(now) > WINDOW_SECS as u64 {
            return Ok(Decision::Refuse(ReplayError::Stale));
        }
        let key = nonce_key(req.token, req.nonce);
        let seen: Option<i64> = conn
            .prepare_cached("SELECT 1 FROM nonces WHERE key = ?1")?
            .query_row([&key[..]], |r| r.get(0))
            .optional()?;
        if seen.is_some() {
            return Ok(Decision::Refuse(ReplayError::Replayed));
        }
        let (total, mine) = counts(conn, req.uid, "nonces")?;
        if total >= self.limits.max_nonces as i64 {
            return Ok(Decision::Refuse(ReplayError::Full(WINDOW_SECS as u64)));
        }
        if mine >= self.limits.max_nonces_per_uid as i64 {
            return Ok(Decision::Refuse(ReplayError::AccountBusy(
                WINDOW_SECS as u64,
            )));
        }
        conn.prepare_cached("INSERT INTO nonces (key, uid, deadline) VALUES (?1, ?2, ?3)")?
            .execute(params![
                &key[..],
                req.uid as i64,
                corrected + WINDOW_SECS + 1
            ])?;
        bump(conn, req.uid, "nonces")?;
        Ok(Decision::Accept)
    }

    /// Records a first-seen token's offset, unless the account or the file is full.
    fn admit_token(
        &self,
        conn: &Connection,
        req: &Request<'_>,
        offset: i64,
    ) -> rusqlite::Result<Option<ReplayError>> {
        let retry = 5 * WINDOW_SECS as u64;
        let (total, mine) = counts(conn, req.uid, "tokens")?;
        if total >= self.limits.max_tokens as i64 {
            return Ok(Some(ReplayError::Full(retry)));
        }
        if mine >= self.limits.max_tokens_per_uid as i64 {
            return Ok(Some(ReplayError::AccountBusy(retry)));
        }
        conn.prepare_cached(
            "INSERT INTO tokens (key, uid, clock_offset, deadline) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            &req.token[..],
            req.uid as i64,
            offset,
            req.token_deadline
        ])?;
        bump(conn, req.uid, "tokens")?;
        Ok(None)
    }
}

struct Request<'a> {
    token: &'a [u8; 16],
    uid: u64,
    ts: i64,
    nonce: &'a str,
    token_deadline: i64,
}

/// The process-wide and the account's count of `what` ("nonces" or "tokens").
fn counts(conn: &Connection, uid: u64, what: &str) -> rusqlite::Result<(i64, i64)> {
    let total: i64 = conn
        .prepare_cached(&format!("SELECT {what} FROM totals WHERE id = 0"))?
        .query_row([], |r| r.get(0))?;
    let mine: Option<i64> = conn
        .prepare_cached(&format!("SELECT {what} FROM accounts WHERE uid = ?1"))?
        .query_row([uid as i64], |r| r.get(0))
        .optional()?;
    Ok((total, mine.unwrap_or(0)))
}

fn bump(conn: &Connection, uid: u64, what: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO accounts (uid, {what}) VALUES (?1, 1)
         ON CONFLICT (uid) DO UPDATE SET {what} = {what} + 1"
    ))?
    .execute([uid as i64])?;
    conn.prepare_cached(&format!(
        "UPDATE totals SET {what} = {what} + 1 WHERE id = 0"
    ))?
    .execute([])?;
    Ok(())
}

/// Drops what has expired, at most once a second whatever the number of processes.
fn purge(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    let purged: i64 = conn
        .prepare_cached("SELECT purged FROM totals WHERE id = 0")?
        .query_row([], |r| r.get(0))?;
    if purged >= now {
        return Ok(());
    }
    for what in ["nonces", "tokens"] {
        conn.prepare_cached(&format!(
            "UPDATE accounts SET {what} = {what} - (
                 SELECT COUNT(*) FROM {what} x WHERE x.uid = accounts.uid AND x.deadline <= ?1)
             WHERE uid IN (SELECT uid FROM {what} WHERE deadline <= ?1)"
        ))?
        .execute([now])?;
        let gone = conn
            .prepare_cached(&format!("DELETE FROM {what} WHERE deadline <= ?1"))?
            .execute([now])?;
        conn.prepare_cached(&format!(
            "UPDATE totals SET {what} = MAX(0, {what} - ?1) WHERE id = 0"
        ))?
        .execute([gone as i64])?;
    }
    conn.prepare_cached("DELETE FROM accounts WHERE nonces <= 0 AND tokens <= 0")?
        .execute([])?;
    conn.prepare_cached("UPDATE totals SET purged = ?1 WHERE id = 0")?
        .execute([now])?;
    Ok(())
}

impl ReplayStore for SharedReplay {
    fn check(
        &self,
        token: &[u8; 16],
        uid: u64,
        ts: i64,
        nonce: &str,
        token_deadline: i64,
        now: i64,
    ) -> Result<(), ReplayError> {
        let req = Request {
            token,
            uid,
            ts,
            nonce,
            token_deadline,
        };
        let conn = self.lock();
        let run = || -> rusqlite::Result<Decision> {
            let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
            let decision = self.decide(&tx, &req, now)?;
            // Commit refusals too: a token learned or state purged stays done.
            tx.commit()?;
            Ok(decision)
        };
        match run() {
            Ok(Decision::Accept) => Ok(()),
            Ok(Decision::Refuse(e)) => Err(e),
            Err(e) => {
                if FAULT_LOG.due() {
                    log::error!("the shared replay file cannot be used ({e}): signed requests are answered 503 until it can (logged at most once a minute)");
                }
                Err(ReplayError::Unavailable)
            }
        }
    }

    fn nonces(&self) -> usize {
        self.lock()
            .query_row("SELECT nonces FROM totals WHERE id = 0", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as usize)
            .unwrap_or(0)
    }
}

static FAULT_LOG: crate::logonce::RateLimit = crate::logonce::RateLimit::new();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::replay::token_key;

    const NOW: i64 = 1_700_000_000;
    const LATER: i64 = NOW + 7200;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "syncserver-fcgi-replay-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("db-replay")
    }

    #[test]
    fn two_handles_on_one_file_share_nonces_and_clocks() {
        let path = temp("share");
        let a = SharedReplay::open(&path, ReplayLimits::default()).unwrap();
        let b = SharedReplay::open(&path, ReplayLimits::default()).unwrap();
        let t = token_key("t");
        let behind = NOW - 86_400;
        assert_eq!(a.check(&t, 1, behind, "n1", LATER, NOW), Ok(()));
        assert_eq!(
            b.check(&t, 1, behind, "n1", LATER, NOW + 1),
            Err(ReplayError::Replayed)
        );
        // b uses the offset a learned: a day behind is fine, two minutes before that is not.
        assert_eq!(b.check(&t, 1, behind + 2, "n2", LATER, NOW + 2), Ok(()));
        assert_eq!(
            b.check(&t, 1, behind - 120, "n3", LATER, NOW + 2),
            Err(ReplayError::Stale)
        );
        assert_eq!(a.nonces(), 2);
        // Expired state is purged and the counters follow.
        assert_eq!(
            a.check(&t, 1, behind, "n1", LATER, NOW + WINDOW_SECS + 10),
            Err(ReplayError::Stale)
        );
        assert_eq!(b.nonces(), 0);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn bounds_refuse_and_never_forget() {
        let path = temp("bounds");
        let s = SharedReplay::open(
            &path,
            ReplayLimits {
                max_nonces: 6,
                max_nonces_per_uid: 3,
                max_tokens: 10,
                max_tokens_per_uid: 2,
            },
        )
        .unwrap();
        let victim = token_key("victim");
        assert_eq!(s.check(&victim, 1, NOW, "v", LATER, NOW), Ok(()));
        let flood = token_key("flood");
        let results: Vec<_> = (0..5)
            .map(|i| s.check(&flood, 2, NOW, &i.to_string(), LATER, NOW))
            .collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
        assert!(results[3..]
            .iter()
            .all(|r| matches!(r, Err(ReplayError::AccountBusy(_)))));
        assert_eq!(
            s.check(&victim, 1, NOW, "v", LATER, NOW),
            Err(ReplayError::Replayed)
        );
        assert_eq!(s.check(&token_key("x"), 5, NOW, "a", LATER, NOW), Ok(()));
        assert_eq!(s.check(&token_key("y"), 5, NOW, "a", LATER, NOW), Ok(()));
        assert!(matches!(
            s.check(&token_key("z"), 5, NOW, "a", LATER, NOW),
            Err(ReplayError::AccountBusy(_))
        ));
        assert!(matches!(
            s.check(&token_key("w"), 4, NOW, "a", LATER, NOW),
            Err(ReplayError::Full(_))
        ));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
