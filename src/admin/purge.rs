//! `purge`: removes expired records, stale batches and, on request, the data
//! of replaced uids; always the data of accounts an administrator removed.
//!
//! Work goes in chunks, each its own short transaction with a pause after it,
//! so the server's writers are never held up for long. A chunk is at most
//! `chunk` rows and is sized to take about `chunk_time`: on a 1.5 GB database
//! 1,000 scattered rows took ~15–50 ms, and a server writer that met the lock
//! slept in SQLite's busy handler (1, 2, 5, 10, … 100 ms steps) straight through
//! the 10 ms pause, so purging 100,000 records held requests up for as much as
//! 0.4–0.85 s (BENCHMARKS.md, "Growth").
//! The pause is at least as long as the chunk took, so a waiting writer wakes
//! while the lock is free. Two purges at once are harmless: each chunk deletes
//! whatever is still there.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{open, table, AdminError};
use crate::config::Settings;
use crate::db::admin::{AdminDb, Purged};
use crate::db::DbError;
use crate::timestamp::now_secs;

/// How long a batch may stay open (both reference servers).
const BATCH_LIFETIME: i64 = 7200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeOptions {
    /// Seconds past expiry before a record is removed.
    pub grace_period: u64,
    /// Also remove the data of uids replaced by a key change.
    pub replaced: bool,
    /// Rows per transaction, at most.
    pub chunk: u64,
    /// Pause between chunks, at least (and at least as long as the chunk took).
    pub pause: Duration,
    /// How long one chunk should hold the write lock: fewer rows go in the
    /// next one when a chunk took longer, more (up to `chunk`) when it took
    /// under half of this.
    pub chunk_time: Duration,
}

impl Default for PurgeOptions {
    fn default() -> Self {
        PurgeOptions {
            grace_period: 86_400,
            replaced: false,
            chunk: 1000,
            pause: Duration::from_millis(10),
            chunk_time: Duration::from_millis(10),
        }
    }
}

/// Retries a chunk that met a busy database a few times before giving up.
fn chunk<T>(mut f: impl FnMut() -> Result<T, DbError>) -> Result<T, AdminError> {
    let mut tries = 0;
    loop {
        match f() {
            Err(DbError::Busy) if tries < 3 => tries += 1,
            other => return other.map_err(AdminError::from),
        }
    }
}

/// The first chunk's rows: small, since the database's speed is unknown yet.
const FIRST_CHUNK: u64 = 100;

/// Sizes chunks by how long the last one took and paces them.
#[derive(Debug, Clone)]
struct Pacer {
    rows: u64,
    max: u64,
    target: Duration,
    pause: Duration,
}

impl Pacer {
    fn new(opts: &PurgeOptions) -> Pacer {
        let max = opts.chunk.max(1);
        Pacer {
            rows: FIRST_CHUNK.min(max),
            max,
            target: opts.chunk_time,
            pause: opts.pause,
        }
    }

    /// Rows for the next chunk.
    fn rows(&self) -> u64 {
        self.rows
    }

    /// Learns from a chunk that took `took`; returns the pause before the next.
    fn took(&mut self, took: Duration) -> Duration {
        if took > self.target {
            self.rows = (self.rows / 2).max(1);
        } else if took < self.target / 2 {
            self.rows = self.rows.saturating_mul(2).min(self.max);
        }
        self.pause.max(took)
    }
}

/// Runs `step(rows)` until it removes fewer rows than asked for.
fn drain(
    opts: &PurgeOptions,
    mut step: impl FnMut(u64) -> Result<u64, DbError>,
    mut settle: impl FnMut(),
) -> Result<u64, AdminError> {
    let mut pacer = Pacer::new(opts);
    let (mut total, mut chunks, mut longest) = (0, 0u64, Duration::ZERO);
    loop {
        let rows = pacer.rows();
        let t0 = Instant::now();
        let n = chunk(|| step(rows))?;
        let took = t0.elapsed();
        let pause = pacer.took(took);
        total += n;
        chunks += 1;
        longest = longest.max(took);
        if n < rows {
            // The longest includes any wait for the lock: an upper bound of how long
            // a chunk held the server's writers up.
            log::info!(
                "removed {total} rows in {chunks} chunks, the longest {:.1} ms",
                longest.as_secs_f64() * 1000.0
            );
            return Ok(total);
        }
        // Checkpoint what this chunk wrote while the lock is free, so that the
        // server's next commit does not find a long WAL to copy back itself.
        let t1 = Instant::now();
        settle();
        std::thread::sleep(pause.saturating_sub(t1.elapsed()).max(opts.pause));
    }
}

/// Empties one dead uid, chunk by chunk.
pub(super) fn empty_uid(
    db: &mut dyn AdminDb,
    uid: i64,
    opts: &PurgeOptions,
) -> Result<Purged, AdminError> {
    let mut total = Purged::default();
    let mut pacer = Pacer::new(opts);
    loop {
        let rows = pacer.rows();
        let t0 = Instant::now();
        let p = chunk(|| db.purge_uid(uid, rows))?;
        let pause = pacer.took(t0.elapsed());
        total.records += p.records;
        total.batch_rows += p.batch_rows;
        total.collections += p.collections;
        total.uids += p.uids;
        if p.uids > 0 {
            return Ok(total);
        }
        db.settle();
        std::thread::sleep(pause);
    }
}

/// Runs a purge and describes what it removed.
pub fn purge(
    settings: &Settings,
    opts: &PurgeOptions,
    as_json: bool,
) -> Result<String, AdminError> {
    let mut db = open(settings, true)?;
    let now = now_secs() as i64;
    let grace = opts.grace_period.min(i64::MAX as u64 / 2000) as i64;
    let expired = {
        let db = std::cell::RefCell::new(&mut db);
        drain(
            opts,
            |rows| db.borrow_mut().purge_expired(now - grace, rows),
            || db.borrow_mut().settle(),
        )?
    };
    let batch_before = (now - BATCH_LIFETIME - grace) * 1000;
    let batches = {
        let db = std::cell::RefCell::new(&mut db);
        drain(
            opts,
            |rows| db.borrow_mut().purge_batches(batch_before, rows),
            || db.borrow_mut().settle(),
        )?
    };
    let mut dead = Purged::default();
    for uid in db.dead_uids(opts.replaced, (now - grace) * 1000)? {
        let p = empty_uid(&mut *db, uid, opts)?;
        dead.records += p.records;
        dead.batch_rows += p.batch_rows;
        dead.collections += p.collections;
        dead.uids += p.uids;
    }
    if as_json {
        return Ok(json!({
            "expired_records": expired,
            "stale_batch_rows": batches,
            "removed_uids": dead.uids,
            "removed_uid_records": dead.records,
            "removed_uid_collections": dead.collections,
            "removed_uid_batch_rows": dead.batch_rows,
        })
        .to_string());
    }
    let rows = vec![
        vec!["expired records".into(), expired.to_string()],
        vec!["stale batch rows".into(), batches.to_string()],
        vec![
            "uids emptied (replaced or removed accounts)".into(),
            dead.uids.to_string(),
        ],
        vec!["  their records".into(), dead.records.to_string()],
        vec!["  their collections".into(), dead.collections.to_string()],
        vec!["  their batch rows".into(), dead.batch_rows.to_string()],
    ];
    Ok(table::render(&["removed", "count"], &rows, &[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(chunk: u64) -> PurgeOptions {
        PurgeOptions {
            chunk,
            ..PurgeOptions::default()
        }
    }

    #[test]
    fn chunks_shrink_when_slow_and_grow_when_fast() {
        let ms = Duration::from_millis;
        let mut p = Pacer::new(&opts(1000));
        assert_eq!(p.rows(), 100);
        // A slow chunk: half the rows, and a pause as long as it held the lock.
        assert_eq!(p.took(ms(40)), ms(40));
        assert_eq!(p.rows(), 50);
        // On target: unchanged, the minimum pause.
        assert_eq!(p.took(ms(8)), ms(10));
        assert_eq!(p.rows(), 50);
        // Fast: doubles, up to --chunk.
        for _ in 0..10 {
            p.took(ms(1));
        }
        assert_eq!(p.rows(), 1000);
        for _ in 0..20 {
            p.took(ms(500));
        }
        assert_eq!(p.rows(), 1);
        assert_eq!(Pacer::new(&opts(30)).rows(), 30);
        assert_eq!(Pacer::new(&opts(0)).rows(), 1);
    }

    #[test]
    fn drain_stops_at_a_short_chunk_and_counts_every_row() {
        let mut left = 1234u64;
        let mut asked = Vec::new();
        let mut settled = 0;
        let o = PurgeOptions {
            pause: Duration::ZERO,
            ..opts(1000)
        };
        let total = drain(
            &o,
            |rows| {
                asked.push(rows);
                let n = rows.min(left);
                left -= n;
                Ok(n)
            },
            || settled += 1,
        )
        .unwrap();
        assert_eq!(total, 1234);
        assert_eq!(left, 0);
        assert_eq!(asked[0], 100);
        assert!(asked.iter().all(|&r| r <= 1000));
        assert_eq!(settled, asked.len() - 1);
    }

    #[test]
    fn a_busy_chunk_is_retried() {
        let mut calls = 0;
        let o = PurgeOptions {
            pause: Duration::ZERO,
            ..opts(10)
        };
        let total = drain(
            &o,
            |_| {
                calls += 1;
                if calls == 1 {
                    Err(DbError::Busy)
                } else {
                    Ok(3)
                }
            },
            || {},
        )
        .unwrap();
        assert_eq!((total, calls), (3, 2));
    }
}
