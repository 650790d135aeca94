//! A fixed set of database sessions, one per request being handled.
//!
//! The number of sessions is `--workers`: it bounds how many requests run at
//! once, while connection threads only wait on sockets.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::Database;

/// Sessions waiting to be used.
pub struct Pool {
    idle: Mutex<Vec<Box<dyn Database>>>,
    available: Condvar,
    size: usize,
}

impl Pool {
    /// A pool owning the given sessions.
    pub fn new(sessions: Vec<Box<dyn Database>>) -> Pool {
        let size = sessions.len();
        Pool {
            idle: Mutex::new(sessions),
            available: Condvar::new(),
            size,
        }
    }

    /// How many sessions the pool holds.
    pub fn size(&self) -> usize {
        self.size
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Box<dyn Database>>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a free session.
    pub fn get(&self) -> PooledDb<'_> {
        let mut idle = self.lock();
        loop {
            if let Some(db) = idle.pop() {
                return PooledDb {
                    pool: self,
                    db: Some(db),
                };
            }
            idle = self.available.wait(idle).unwrap_or_else(|e| e.into_inner());
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
            self.pool.lock().push(db);
            self.pool.available.notify_one();
        }
    }
}
