//! The replay guard shared by every process on one database (mod_fcgid runs several): each
//! process keeps its own `auth::replay::ReplayGuard` (window, bounds, its accounts' counts),
//! and a small SQLite file beside the database makes two things common to all of them: a
//! token's clock offset (the first process to see the token decides it) and the set of
//! accepted nonces (a nonce accepted by one process is a replay for every other).
//!
//! A separate file, so that recording a nonce on every request never takes the main
//! database's write lock, which storage writes need. Per request it costs one single-row
//! insert (plus, once per token per process, one lookup), with small pages, and no durability:
//! `synchronous = OFF` loses at most the last moments of replay state in an operating-system
//! crash, after which the tokens concerned are minutes from leaving their window anyway.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::BUSY_TIMEOUT;
use crate::auth::replay::ReplayGuard;
use crate::auth::{ReplayError, ReplayLimits, ReplayRequest, ReplayStore};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    key BLOB PRIMARY KEY, clock_offset INTEGER NOT NULL, deadline INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nonces (key BLOB PRIMARY KEY, deadline INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS purged (id INTEGER PRIMARY KEY CHECK (id = 0), at INTEGER NOT NULL);
INSERT OR IGNORE INTO purged VALUES (0, 0);
";

/// The file that holds the shared replay state of the database at `db`.
pub fn replay_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-replay");
    PathBuf::from(name)
}

/// Replay state shared through a SQLite file.
pub struct SharedReplay {
    inner: Mutex<Inner>,
    /// The second this process last purged (or saw that another had): purging is then
    /// skipped without reading the file until the clock moves on.
    purged: AtomicI64,
}

struct Inner {
    conn: Connection,
    local: ReplayGuard,
}

impl std::fmt::Debug for SharedReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReplay").finish_non_exhaustive()
    }
}

impl SharedReplay {
    /// Opens (creating if needed) the replay file `path`; `limits` bound this process's guard.
    pub fn open(path: &Path, limits: ReplayLimits) -> rusqlite::Result<SharedReplay> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Each insert commits a changed page or two; small pages keep what is written per
        // request small (it only takes effect when the file is created).
        conn.pragma_update(None, "page_size", 1024)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        // Several processes may create the file at once: the schema is idempotent and runs in
        // one write transaction.
        let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        tx.commit()?;
        Ok(SharedReplay {
            inner: Mutex::new(Inner {
                conn,
                local: ReplayGuard::new(limits),
            }),
            purged: AtomicI64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic mid-statement leaves SQLite consistent (autocommit statements) and the
        // guard's maps valid (each update is one insert).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_locked(&self, inner: &mut Inner, req: &ReplayRequest<'_>, now: i64) -> Checked {
        if self.purged.load(Ordering::Relaxed) < now {
            purge(&inner.conn, now)?;
            self.purged.store(now, Ordering::Relaxed);
        }
        if inner.local.offset(req.token).is_none() && req.token_deadline > now {
            let offset = shared_offset(&inner.conn, req, now)?;
            if let Err(e) = inner.local.adopt(req, offset, now) {
                return Ok(Err(e));
            }
        }
        let accepted = match inner.local.check(req, now) {
            Ok(accepted) => accepted,
            Err(e) => return Ok(Err(e)),
        };
        // Accepted here; whether another process accepted it first is the file's to say.
        let inserted = inner
            .conn
            .prepare_cached("INSERT OR IGNORE INTO nonces (key, deadline) VALUES (?1, ?2)")?
            .execute(params![&accepted.key[..], accepted.deadline])?;
        Ok(if inserted == 1 {
            Ok(())
        } else {
            Err(ReplayError::Replayed)
        })
    }
}

type Checked = rusqlite::Result<Result<(), ReplayError>>;

/// The token's offset as the first process to see it decided (this one, if it is the first).
fn shared_offset(conn: &Connection, req: &ReplayRequest<'_>, now: i64) -> rusqlite::Result<i64> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    tx.prepare_cached(
        "INSERT OR IGNORE INTO tokens (key, clock_offset, deadline) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        &req.token[..],
        now.saturating_sub(req.ts),
        req.token_deadline
    ])?;
    let offset = tx
        .prepare_cached("SELECT clock_offset FROM tokens WHERE key = ?1")?
        .query_row([&req.token[..]], |r| r.get(0))?;
    tx.commit()?;
    Ok(offset)
}

/// Drops what has expired, at most once a second whatever the number of processes.
fn purge(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let at: Option<i64> = tx
        .prepare_cached("SELECT at FROM purged WHERE id = 0")?
        .query_row([], |r| r.get(0))
        .optional()?;
    if at.unwrap_or(0) < now {
        // A scan, once a second: the tables hold about a minute of traffic.
        tx.prepare_cached("DELETE FROM nonces WHERE deadline <= ?1")?
            .execute([now])?;
        tx.prepare_cached("DELETE FROM tokens WHERE deadline <= ?1")?
            .execute([now])?;
        tx.prepare_cached("UPDATE purged SET at = ?1 WHERE id = 0")?
            .execute([now])?;
    }
    tx.commit()
}

impl ReplayStore for SharedReplay {
    fn check(&self, req: &ReplayRequest<'_>, now: i64) -> Result<(), ReplayError> {
        let mut inner = self.lock();
        match self.check_locked(&mut inner, req, now) {
            Ok(verdict) => verdict,
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
            .conn
            .query_row("SELECT COUNT(*) FROM nonces", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as usize)
            .unwrap_or(0)
    }
}

static FAULT_LOG: crate::logonce::RateLimit = crate::logonce::RateLimit::new();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::replay::token_key;
    use crate::auth::WINDOW_SECS;

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
        assert_eq!(
            a.check(&ReplayRequest::new(&t, 1, behind, "n1", LATER), NOW),
            Ok(())
        );
        assert_eq!(
            b.check(&ReplayRequest::new(&t, 1, behind, "n1", LATER), NOW + 1),
            Err(ReplayError::Replayed)
        );
        // b uses the offset a learned: a day behind is fine, two minutes before that is not.
        assert_eq!(
            b.check(&ReplayRequest::new(&t, 1, behind + 2, "n2", LATER), NOW + 2),
            Ok(())
        );
        assert_eq!(
            b.check(
                &ReplayRequest::new(&t, 1, behind - 120, "n3", LATER),
                NOW + 2
            ),
            Err(ReplayError::Stale)
        );
        assert_eq!(a.nonces(), 2);
        // Expired state is purged and the counters follow.
        assert_eq!(
            a.check(
                &ReplayRequest::new(&t, 1, behind, "n1", LATER),
                NOW + WINDOW_SECS + 10
            ),
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
        assert_eq!(
            s.check(&ReplayRequest::new(&victim, 1, NOW, "v", LATER), NOW),
            Ok(())
        );
        let flood = token_key("flood");
        let results: Vec<_> = (0..5)
            .map(|i| {
                s.check(
                    &ReplayRequest::new(&flood, 2, NOW, &i.to_string(), LATER),
                    NOW,
                )
            })
            .collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
        assert!(results[3..]
            .iter()
            .all(|r| matches!(r, Err(ReplayError::AccountBusy(_)))));
        assert_eq!(
            s.check(&ReplayRequest::new(&victim, 1, NOW, "v", LATER), NOW),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            s.check(
                &ReplayRequest::new(&token_key("x"), 5, NOW, "a", LATER),
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            s.check(
                &ReplayRequest::new(&token_key("y"), 5, NOW, "a", LATER),
                NOW
            ),
            Ok(())
        );
        assert!(matches!(
            s.check(
                &ReplayRequest::new(&token_key("z"), 5, NOW, "a", LATER),
                NOW
            ),
            Err(ReplayError::AccountBusy(_))
        ));
        assert!(matches!(
            s.check(
                &ReplayRequest::new(&token_key("w"), 4, NOW, "a", LATER),
                NOW
            ),
            Err(ReplayError::Full(_))
        ));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
