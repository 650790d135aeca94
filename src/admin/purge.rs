//! `purge`: removes expired records, stale batches and, on request, the data
//! of replaced uids; always the data of accounts an administrator removed.
//!
//! Work goes in chunks of `chunk` rows, each its own short transaction with a
//! pause after it, so the server's writers are never held up for long. Two
//! purges at once are harmless: each chunk deletes whatever is still there.

use std::time::Duration;

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
    /// Rows per transaction.
    pub chunk: u64,
    /// Pause between chunks.
    pub pause: Duration,
}

impl Default for PurgeOptions {
    fn default() -> Self {
        PurgeOptions {
            grace_period: 86_400,
            replaced: false,
            chunk: 1000,
            pause: Duration::from_millis(10),
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

fn drain(
    opts: &PurgeOptions,
    mut step: impl FnMut() -> Result<u64, DbError>,
) -> Result<u64, AdminError> {
    let mut total = 0;
    loop {
        let n = chunk(&mut step)?;
        total += n;
        if n < opts.chunk {
            return Ok(total);
        }
        std::thread::sleep(opts.pause);
    }
}

/// Empties one dead uid, chunk by chunk.
pub(super) fn empty_uid(
    db: &mut dyn AdminDb,
    uid: i64,
    opts: &PurgeOptions,
) -> Result<Purged, AdminError> {
    let mut total = Purged::default();
    loop {
        let p = chunk(|| db.purge_uid(uid, opts.chunk))?;
        total.records += p.records;
        total.batch_rows += p.batch_rows;
        total.collections += p.collections;
        total.uids += p.uids;
        if p.uids > 0 {
            return Ok(total);
        }
        std::thread::sleep(opts.pause);
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
    let expired = drain(opts, || db.purge_expired(now - grace, opts.chunk))?;
    let batch_before = (now - BATCH_LIFETIME - grace) * 1000;
    let batches = drain(opts, || db.purge_batches(batch_before, opts.chunk))?;
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
