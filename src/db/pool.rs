//! A bounded set of database sessions, one per request being handled.
//!
//! The number of sessions is `--workers`: it bounds how many requests run at
//! once, while connection threads only wait on sockets. Sessions are opened on
//! first need, so a process that mod_fcgid starts for one request opens one.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::{Database, DbResult};

/// Opens one more session.
pub type Opener = Box<dyn Fn() -> DbResult<Box<dyn Database>> + Send + Sync>;

/// Says whether the database may be touched at all right now (see `sqlite::shm`); asked
/// before every loan and every new session, and before closing sessions.
pub type Guard = Box<dyn Fn() -> DbResult<()> + Send + Sync>;

struct State {
    idle: Vec<Box<dyn Database>>,
    /// Sessions that exist (idle or on loan).
    open: usize,
}

/// Sessions waiting to be used.
pub struct Pool {
    state: Mutex<State>,
    available: Condvar,
    size: usize,
    opener: Opener,
    guard: Option<Guard>,
}

impl Pool {
    /// A pool of at most `size` sessions, starting with `first` and opening
    /// more with `opener` when all are busy.
    pub fn new(first: Box<dyn Database>, size: usize, opener: Opener) -> Pool {
        Pool {
            state: Mutex::new(State {
                idle: vec![first],
                open: 1,
            }),
            available: Condvar::new(),
            size: size.max(1),
            opener,
            guard: None,
        }
    }

    /// Adds a check that runs before any session is lent or opened: while it fails, `get`
    /// fails with its error and no session is touched.
    pub fn with_guard(mut self, guard: Guard) -> Pool {
        self.guard = Some(guard);
        self
    }

    fn check(&self) -> DbResult<()> {
        self.guard.as_ref().map_or(Ok(()), |g| g())
    }

    /// How many sessions the pool may hold.
    pub fn size(&self) -> usize {
        self.size
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free session: an idle one, a new one while under `size`, or the next
    /// one to come back.
    pub fn get(&self) -> DbResult<PooledDb<'_>> {
        self.check()?;
        let mut state = self.lock();
        loop {
            if let Some(db) = state.idle.pop() {
                return Ok(self.loan(db));
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match (self.opener)() {
                    Ok(db) => Ok(self.loan(db)),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.available.notify_one();
                        Err(e)
                    }
                };
            }
            state = self
                .available
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn loan(&self, db: Box<dyn Database>) -> PooledDb<'_> {
        PooledDb {
            pool: self,
            db: Some(db),
        }
    }
}

/// A session on loan; it goes back to the pool when dropped.
pub struct PooledDb<'a> {
    pool: &'a Pool,
    db: Option<Box<dyn Database>>,
}

impl Deref for PooledDb<'_> {
    type Target = dyn Database;
    fn deref(&self) -> &Self::Target {
        // Invariant: `db` is Some until drop.
        self.db
            .as_deref()
            .expect("pooled session present until drop")
    }
}

impl DerefMut for PooledDb<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.db
            .as_deref_mut()
            .expect("pooled session present until drop")
    }
}

impl Drop for PooledDb<'_> {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            self.pool.lock().idle.push(db);
            self.pool.available.notify_one();
        }
    }
}

impl Drop for Pool {
    /// Closing a session may write to the database (SQLite checkpoints on close); while the
    /// guard says the database must not be touched, leave the sessions to the OS instead,
    /// which loses nothing: committed transactions are in the WAL.
    fn drop(&mut self) {
        if let Err(e) = self.check() {
            log::warn!("leaving the database sessions open at exit: {e}");
            let idle = std::mem::take(&mut self.lock().idle);
            std::mem::forget(idle);
        }
    }
}
