//! A bounded set of database sessions, one per request being handled.
//!
//! The number of sessions is `--workers`: it bounds how many requests run at
//! once, while connection threads only wait on sockets. Sessions are opened on
//! first need, so a process that mod_fcgid starts for one request opens one.
//! A request waits at most [`DEFAULT_WAIT`] for a session, then is answered
//! 503 + Retry-After (`DbError::NoSession`): waiting forever let every
//! connection thread pile up behind a few stuck sessions.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Database, DbError, DbResult};

/// How long a request waits for a free session. A session is held for one
/// request, which may sit out SQLite's busy timeout (5 s) once; twice that
/// covers it with room to spare. No session free for longer means the server
/// is overloaded or stuck, and refusing (clients retry after Retry-After)
/// beats piling up connection threads.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// Opens one more session.
pub type Opener<T = dyn Database> = Box<dyn Fn() -> DbResult<Box<T>> + Send + Sync>;

/// Says whether the database may be touched at all right now (the SQLite engine's `-shm` check); asked
/// before every loan and every new session, and before closing sessions.
pub type Guard = Box<dyn Fn() -> DbResult<()> + Send + Sync>;

struct State<T: ?Sized> {
    idle: Vec<Box<T>>,
    /// Sessions that exist (idle or on loan).
    open: usize,
}

/// Sessions waiting to be used: the storage database's, or (with node
/// assignment) the tokenserver database's.
pub struct Pool<T: ?Sized + Send = dyn Database> {
    state: Mutex<State<T>>,
    available: Condvar,
    size: usize,
    wait: Duration,
    opener: Opener<T>,
    guard: Option<Guard>,
}

impl<T: ?Sized + Send> Pool<T> {
    /// A pool of at most `size` sessions, starting with `first` and opening
    /// more with `opener` when all are busy.
    pub fn new(first: Box<T>, size: usize, opener: Opener<T>) -> Pool<T> {
        Pool {
            state: Mutex::new(State {
                idle: vec![first],
                open: 1,
            }),
            available: Condvar::new(),
            size: size.max(1),
            wait: DEFAULT_WAIT,
            opener,
            guard: None,
        }
    }

    /// The same pool, waiting at most `wait` for a free session.
    pub fn with_wait(mut self, wait: Duration) -> Pool<T> {
        self.wait = wait;
        self
    }

    /// Adds a check that runs before any session is lent or opened: while it fails, `get`
    /// fails with its error and no session is touched.
    pub fn with_guard(mut self, guard: Guard) -> Pool<T> {
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

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free session: an idle one, a new one while under `size`, or the next
    /// one to come back within the pool's wait (else `DbError::NoSession`).
    pub fn get(&self) -> DbResult<PooledDb<'_, T>> {
        self.check()?;
        let deadline = Instant::now() + self.wait;
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
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DbError::NoSession {
                    sessions: self.size,
                    waited: self.wait,
                });
            }
            state = match self.available.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn loan(&self, db: Box<T>) -> PooledDb<'_, T> {
        PooledDb {
            pool: self,
            db: Some(db),
        }
    }
}

/// A session on loan; it goes back to the pool when dropped.
pub struct PooledDb<'a, T: ?Sized + Send = dyn Database> {
    pool: &'a Pool<T>,
    db: Option<Box<T>>,
}

impl<T: ?Sized + Send> Deref for PooledDb<'_, T> {
    type Target = T;
    fn deref(&self) -> &Self::Target {
        // Invariant: `db` is Some until drop.
        self.db
            .as_deref()
            .expect("pooled session present until drop")
    }
}

impl<T: ?Sized + Send> DerefMut for PooledDb<'_, T> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.db
            .as_deref_mut()
            .expect("pooled session present until drop")
    }
}

impl<T: ?Sized + Send> Drop for PooledDb<'_, T> {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            self.pool.lock().idle.push(db);
            self.pool.available.notify_one();
        }
    }
}

impl<T: ?Sized + Send> Drop for Pool<T> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseUri;
    use std::sync::{mpsc, Arc};

    fn memory() -> DbResult<Box<dyn Database>> {
        Ok(crate::db::open(&DatabaseUri::Memory, 1)?.first)
    }

    #[test]
    fn waits_for_a_session_then_gives_up() {
        let pool = Arc::new(
            Pool::new(memory().unwrap(), 1, Box::new(memory)).with_wait(Duration::from_millis(300)),
        );
        let held = pool.get().unwrap();
        // The waiting get() runs on a detached thread, so a pool that waits
        // forever fails this test instead of hanging it.
        let (tx, rx) = mpsc::channel();
        let waiter = Arc::clone(&pool);
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let result = waiter.get().map(|_| ());
            let _ = tx.send((result, t0.elapsed()));
        });
        let (result, took) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("Pool::get waited with no bound");
        assert!(
            matches!(result, Err(DbError::NoSession { sessions: 1, .. })),
            "{result:?}"
        );
        assert!(took >= Duration::from_millis(300), "{took:?}");
        // A session given back in time is handed on.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| pool.get().map(|_| ()));
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
            assert!(waiter.join().unwrap().is_ok());
        });
        assert!(pool.get().is_ok());
    }
}
