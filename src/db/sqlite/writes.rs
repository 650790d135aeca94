//! Write transactions. Each takes the write lock first (`BEGIN IMMEDIATE`),
//! checks the precondition against what it then reads, writes, and commits.
//!
//! Timestamps: a write gets `max(now, collection's last_modified + 10 ms)`, so
//! timestamps are strictly increasing per collection even when two writes land
//! in the same 10 ms tick (the Python server answered 503 there instead). But
//! a timestamp never runs more than 10 ms ahead of the clock: a burst of
//! writes to one collection would otherwise push it ever further into the
//! future (593 writes/s for 15 s put it 74 s ahead). Such a write gives up the
//! lock, waits out the few ms ([`retry_when_ahead`]) and tries again; a
//! collection still (or far) ahead answers `DbError::Conflict` (503).
//!
//! Sizes are UTF-8 bytes. The quota counts the user's live records plus what
//! their open batches hold; a batch may hold at most `max_total_records` and
//! `max_total_bytes`, counted on its rows. A batch commit is applied inside
//! SQLite (one `INSERT … SELECT … ON CONFLICT DO UPDATE`), never read into
//! memory.

use crate::uid::Uid;
use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use super::reads::{collection_timestamp, live_bso, total_usage};
use super::{map_err, SqliteDb};
use crate::db::{BsoUpdate, DbError, DbResult, Precondition, WriteCtx, WriteOutcome};
use crate::timestamp::{ceil_tick, now_ms, Ms};
use std::time::Duration;

/// How long a batch may stay open, as in both reference servers.
pub const BATCH_LIFETIME_SECS: i64 = 7200;

/// Upsert with the Python semantics: only provided fields change, `modified`
/// moves only with a new payload (or always, for batch commits via ?10). An
/// expired row that was not purged yet counts as absent, so rewriting it
/// brings it back (the Python server left it invisible).
const UPSERT_BSO: &str = "
INSERT INTO bso (userid, collection, id, sortindex, modified, payload, payload_size, ttl)
VALUES (?1, ?2, ?3, ?4, ?8, COALESCE(?5, ''), COALESCE(?6, 0), COALESCE(?7, 2100000000))
ON CONFLICT (userid, collection, id) DO UPDATE SET
  sortindex = CASE WHEN ?4 IS NOT NULL THEN ?4 WHEN ttl <= ?9 THEN NULL ELSE sortindex END,
  payload = CASE WHEN ?5 IS NOT NULL THEN ?5 WHEN ttl <= ?9 THEN '' ELSE payload END,
  payload_size = CASE WHEN ?5 IS NOT NULL THEN ?6 WHEN ttl <= ?9 THEN 0 ELSE payload_size END,
  modified = CASE WHEN ?10 OR ?5 IS NOT NULL OR ttl <= ?9 THEN ?8 ELSE modified END,
  ttl = CASE WHEN ?7 IS NOT NULL THEN ?7 WHEN ttl <= ?9 THEN 2100000000 ELSE ttl END";

/// The common case of an upload: a live record rewritten without a new ttl.
/// Not naming `ttl` in the SET clause spares SQLite the `bso_ttl_idx` update
/// that the general upsert pays on every row.
const UPDATE_LIVE_BSO: &str = "
UPDATE bso SET
  sortindex = COALESCE(?4, sortindex),
  payload = COALESCE(?5, payload),
  payload_size = COALESCE(?6, payload_size),
  modified = CASE WHEN ?10 OR ?5 IS NOT NULL THEN ?8 ELSE modified END
WHERE userid = ?1 AND collection = ?2 AND id = ?3 AND ttl > ?9 AND ?7 IS NULL";

const TOUCH_COLLECTION: &str = "
INSERT INTO user_collections (userid, collection, last_modified) VALUES (?1, ?2, ?3)
ON CONFLICT (userid, collection) DO UPDATE SET last_modified = excluded.last_modified";

const UPSERT_BATCH_ITEM: &str = "
INSERT INTO batch_upload_items (batch, userid, id, sortindex, payload, payload_size, ttl_offset)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (batch, userid, id) DO UPDATE SET
  sortindex = COALESCE(excluded.sortindex, sortindex),
  payload = COALESCE(excluded.payload, payload),
  payload_size = COALESCE(excluded.payload_size, payload_size),
  ttl_offset = COALESCE(excluded.ttl_offset, ttl_offset)";

/// The most a write's timestamp may be ahead of the clock, in ms.
pub const MAX_AHEAD_MS: Ms = 10;
/// How many times a write that would run ahead waits and tries again.
const AHEAD_ATTEMPTS: u32 = 5;
/// The longest wait worth taking inside a request; a collection further ahead
/// (the clock was set back) answers 503 at once.
const AHEAD_MAX_WAIT_MS: i64 = 100;

/// Applies a batch to `bso` inside SQLite, a row at a time, with the
/// semantics of [`UPSERT_BSO`] for a batch commit: only provided fields
/// change, `modified` always moves, an expired row counts as absent, a ttl
/// counts from the commit. The SELECT merges each batch item with the current
/// row (the LEFT JOIN also makes the batch the outer loop, so the cost follows
/// the batch, not the collection) and the upsert writes the merged row; its
/// WHERE clause keeps SQLite from reading `ON CONFLICT` as a join constraint.
/// `?1` batch, `?2` user, `?3` collection, `?4` the commit's timestamp, `?5`
/// the same in seconds.
const APPLY_BATCH: &str = "
INSERT INTO bso (userid, collection, id, sortindex, modified, payload, payload_size, ttl)
SELECT ?2, ?3, b.id,
  CASE WHEN b.sortindex IS NOT NULL THEN b.sortindex
       WHEN cur.ttl > ?5 THEN cur.sortindex ELSE NULL END,
  ?4,
  CASE WHEN b.payload IS NOT NULL THEN b.payload
       WHEN cur.ttl > ?5 THEN cur.payload ELSE '' END,
  CASE WHEN b.payload IS NOT NULL THEN COALESCE(b.payload_size, 0)
       WHEN cur.ttl > ?5 THEN cur.payload_size ELSE 0 END,
  CASE WHEN b.ttl_offset IS NOT NULL THEN ?5 + b.ttl_offset
       WHEN cur.ttl > ?5 THEN cur.ttl ELSE 2100000000 END
FROM batch_upload_items AS b
LEFT JOIN bso AS cur ON cur.userid = ?2 AND cur.collection = ?3 AND cur.id = b.id
WHERE b.batch = ?1 AND b.userid = ?2
ON CONFLICT (userid, collection, id) DO UPDATE SET
  sortindex = excluded.sortindex,
  modified = excluded.modified,
  payload = excluded.payload,
  payload_size = excluded.payload_size,
  ttl = excluded.ttl";

/// Payload sizes are UTF-8 bytes, what limits and quota are about (the
/// Python server stored characters: the same for the ASCII that clients'
/// encrypted payloads are, but 20 records of 500k emoji counted 9.8 MB and
/// answered 120 MB).
pub fn payload_size(payload: &str) -> i64 {
    payload.len() as i64
}

/// Runs a write transaction again when its timestamp would have run ahead of
/// the clock, after waiting (outside any lock) for the clock to catch up.
/// (A conflicting attempt allocated no collection id: the collection had a
/// timestamp, so it existed.)
pub fn retry_when_ahead<S, T>(
    s: &mut S,
    mut write: impl FnMut(&mut S) -> DbResult<T>,
) -> DbResult<T> {
    let mut attempt = 1;
    loop {
        match write(s) {
            Err(DbError::Conflict { wait_ms })
                if attempt < AHEAD_ATTEMPTS && wait_ms <= AHEAD_MAX_WAIT_MS =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(wait_ms.max(1) as u64));
            }
            other => return other,
        }
    }
}

/// A started write: the lock is held, the collection id is known.
struct Write<'a> {
    tx: Transaction<'a>,
    cid: Option<i64>,
    last: Option<Ms>,
}

impl Write<'_> {
    /// The timestamp for this write: above the collection's, and at most
    /// [`MAX_AHEAD_MS`] ahead of the clock; `Conflict` (rolling back, which
    /// frees the lock) when it would be further ahead.
    fn timestamp(&self) -> DbResult<Ms> {
        next_timestamp(self.last)
    }
}

/// The timestamp for a write to a collection last written at `last` (shared
/// with the server engines): above it, and at most [`MAX_AHEAD_MS`] ahead of
/// the clock; `Conflict` when it would be further ahead.
pub(crate) fn next_timestamp(last: Option<Ms>) -> DbResult<Ms> {
    let now = now_ms();
    let ts = ceil_tick(now).max(last.unwrap_or(0) + 10);
    let ahead = ts - now;
    if ahead > MAX_AHEAD_MS {
        return Err(DbError::Conflict {
            wait_ms: ahead - MAX_AHEAD_MS,
        });
    }
    Ok(ts)
}

fn begin<'a>(s: &'a mut SqliteDb, ctx: &WriteCtx, create: bool) -> DbResult<Write<'a>> {
    let SqliteDb {
        conn, collections, ..
    } = s;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    let cid = if create {
        Some(
            collections
                .id_or_create(&tx, ctx.collection)
                .map_err(map_err)?,
        )
    } else {
        collections.id(&tx, ctx.collection).map_err(map_err)?
    };
    let last = match cid {
        Some(cid) => collection_timestamp(&tx, ctx.uid, cid).map_err(map_err)?,
        None => None,
    };
    Ok(Write { tx, cid, last })
}

fn now_s(ts: Ms) -> i64 {
    ts / 1000
}

/// Quota left after writing `incoming` more bytes: the user's live records
/// and everything their open batches hold count; `OverQuota` when nothing
/// would be left.
fn check_quota(conn: &Connection, ctx: &WriteCtx, incoming: i64) -> DbResult<Option<i64>> {
    let Some(quota) = ctx.quota else {
        return Ok(None);
    };
    let stored = total_usage(conn, ctx.uid).map_err(map_err)?;
    let pending = pending_bytes(conn, ctx.uid).map_err(map_err)?;
    let left = quota - stored - pending - incoming;
    if left <= 0 {
        return Err(DbError::OverQuota);
    }
    Ok(Some(left))
}

/// The payload bytes of `items`.
pub(crate) fn bytes_of(items: &[BsoUpdate]) -> i64 {
    items
        .iter()
        .filter_map(|i| i.payload.as_deref())
        .map(payload_size)
        .sum()
}

/// Payload bytes held in the user's batches that can still be committed.
/// Read through `batch_uploads` (one small row per batch; CROSS JOIN keeps it
/// the outer loop) so that only this user's batch items are summed.
fn pending_bytes(conn: &Connection, uid: Uid) -> rusqlite::Result<i64> {
    let oldest_open = (now_ms() / 1000 - BATCH_LIFETIME_SECS) * 1000;
    conn.prepare_cached(
        "SELECT COALESCE(SUM(i.payload_size), 0)
         FROM batch_uploads AS u
         CROSS JOIN batch_upload_items AS i ON i.batch = u.batch AND i.userid = u.userid
         WHERE u.userid = ?1 AND u.batch >= ?2",
    )?
    .query_row(params![uid, oldest_open], |r| r.get(0))
}

/// Refuses a batch that holds more than the limits allow (checked after its
/// items are stored, before the transaction commits).
fn check_batch_totals(conn: &Connection, ctx: &WriteCtx, batch: i64) -> DbResult<()> {
    let (records, bytes): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(payload_size), 0) FROM batch_upload_items
             WHERE batch = ?1 AND userid = ?2",
        )
        .and_then(|mut st| st.query_row(params![batch, ctx.uid], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(map_err)?;
    let limits = ctx.batch_limits;
    if records as u64 > limits.records || bytes as u64 > limits.bytes {
        return Err(DbError::BatchTooLarge);
    }
    Ok(())
}

fn upsert(
    conn: &Connection,
    uid: Uid,
    cid: i64,
    item: &BsoUpdate,
    ts: Ms,
    force_modified: bool,
) -> rusqlite::Result<()> {
    let now = now_s(ts);
    let ttl = item.ttl.map(|t| now + t);
    let args = params![
        uid,
        cid,
        item.id,
        item.sortindex,
        item.payload,
        item.payload.as_deref().map(payload_size),
        ttl,
        ts,
        now,
        force_modified,
    ];
    if ttl.is_none() && conn.prepare_cached(UPDATE_LIVE_BSO)?.execute(args)? == 1 {
        return Ok(());
    }
    conn.prepare_cached(UPSERT_BSO)?.execute(args)?;
    Ok(())
}

fn touch(conn: &Connection, uid: Uid, cid: i64, ts: Ms) -> rusqlite::Result<()> {
    conn.prepare_cached(TOUCH_COLLECTION)?
        .execute(params![uid, cid, ts])?;
    Ok(())
}

fn require_cid(w: &Write) -> DbResult<i64> {
    w.cid
        .ok_or_else(|| DbError::Backend("collection id missing in a creating write".into()))
}

pub fn put_bso(s: &mut SqliteDb, ctx: WriteCtx, item: &BsoUpdate) -> DbResult<WriteOutcome> {
    let w = begin(s, &ctx, true)?;
    let cid = require_cid(&w)?;
    let current = live_bso(&w.tx, ctx.uid, cid, &item.id).map_err(map_err)?;
    ctx.precondition
        .check(current.map(|b| b.modified).unwrap_or(0))?;
    let quota_left = check_quota(&w.tx, &ctx, bytes_of(std::slice::from_ref(item)))?;
    let ts = w.timestamp()?;
    upsert(&w.tx, ctx.uid, cid, item, ts, false).map_err(map_err)?;
    touch(&w.tx, ctx.uid, cid, ts).map_err(map_err)?;
    w.tx.commit().map_err(map_err)?;
    Ok(WriteOutcome {
        modified: ts,
        quota_left,
    })
}

pub fn post_bsos(s: &mut SqliteDb, ctx: WriteCtx, items: &[BsoUpdate]) -> DbResult<WriteOutcome> {
    apply_direct(s, ctx, items, false)
}

/// Writes `items` straight into `bso` with one timestamp.
fn apply_direct(
    s: &mut SqliteDb,
    ctx: WriteCtx,
    items: &[BsoUpdate],
    force_modified: bool,
) -> DbResult<WriteOutcome> {
    let w = begin(s, &ctx, true)?;
    let cid = require_cid(&w)?;
    ctx.precondition.check(w.last.unwrap_or(0))?;
    let incoming = bytes_of(items);
    if force_modified
        && (items.len() as u64 > ctx.batch_limits.records
            || incoming as u64 > ctx.batch_limits.bytes)
    {
        // A batch created and committed by one request is still a batch.
        return Err(DbError::BatchTooLarge);
    }
    let quota_left = check_quota(&w.tx, &ctx, incoming)?;
    if items.is_empty() {
        // Nothing to write: no new timestamp, nothing bumped.
        return Ok(WriteOutcome {
            modified: w.last.unwrap_or(0),
            quota_left,
        });
    }
    let ts = w.timestamp()?;
    for item in items {
        upsert(&w.tx, ctx.uid, cid, item, ts, force_modified).map_err(map_err)?;
    }
    touch(&w.tx, ctx.uid, cid, ts).map_err(map_err)?;
    w.tx.commit().map_err(map_err)?;
    Ok(WriteOutcome {
        modified: ts,
        quota_left,
    })
}

pub fn delete_collection(s: &mut SqliteDb, ctx: WriteCtx) -> DbResult<Ms> {
    let w = begin(s, &ctx, false)?;
    ctx.precondition.check(w.last.unwrap_or(0))?;
    let ts = w.timestamp()?;
    if let Some(cid) = w.cid {
        let uid = ctx.uid;
        w.tx.prepare_cached("DELETE FROM bso WHERE userid = ?1 AND collection = ?2")
            .and_then(|mut st| st.execute(params![uid, cid]))
            .map_err(map_err)?;
        w.tx.prepare_cached("DELETE FROM user_collections WHERE userid = ?1 AND collection = ?2")
            .and_then(|mut st| st.execute(params![uid, cid]))
            .map_err(map_err)?;
        // Open batches for the collection would resurrect data on commit.
        w.tx.prepare_cached(
            "DELETE FROM batch_upload_items WHERE userid = ?1 AND batch IN
               (SELECT batch FROM batch_uploads WHERE userid = ?1 AND collection = ?2)",
        )
        .and_then(|mut st| st.execute(params![uid, cid]))
        .map_err(map_err)?;
        w.tx.prepare_cached("DELETE FROM batch_uploads WHERE userid = ?1 AND collection = ?2")
            .and_then(|mut st| st.execute(params![uid, cid]))
            .map_err(map_err)?;
        w.tx.commit().map_err(map_err)?;
    }
    Ok(ts)
}

pub fn delete_bsos(s: &mut SqliteDb, ctx: WriteCtx, ids: &[String]) -> DbResult<Ms> {
    let w = begin(s, &ctx, false)?;
    ctx.precondition.check(w.last.unwrap_or(0))?;
    let ts = w.timestamp()?;
    // A collection the user never had stays absent (the Python server created it).
    if let (Some(cid), Some(_)) = (w.cid, w.last) {
        {
            let mut stmt = w
                .tx
                .prepare_cached("DELETE FROM bso WHERE userid = ?1 AND collection = ?2 AND id = ?3")
                .map_err(map_err)?;
            for id in ids {
                stmt.execute(params![ctx.uid, cid, id]).map_err(map_err)?;
            }
        }
        touch(&w.tx, ctx.uid, cid, ts).map_err(map_err)?;
        w.tx.commit().map_err(map_err)?;
    }
    Ok(ts)
}

pub fn delete_bso(s: &mut SqliteDb, ctx: WriteCtx, id: &str) -> DbResult<Ms> {
    let w = begin(s, &ctx, false)?;
    let Some(cid) = w.cid else {
        ctx.precondition.check(0)?;
        return Err(DbError::NotFound);
    };
    let current = live_bso(&w.tx, ctx.uid, cid, id).map_err(map_err)?;
    ctx.precondition
        .check(current.as_ref().map(|b| b.modified).unwrap_or(0))?;
    if current.is_none() {
        return Err(DbError::NotFound);
    }
    let ts = w.timestamp()?;
    w.tx.prepare_cached("DELETE FROM bso WHERE userid = ?1 AND collection = ?2 AND id = ?3")
        .and_then(|mut st| st.execute(params![ctx.uid, cid, id]))
        .map_err(map_err)?;
    touch(&w.tx, ctx.uid, cid, ts).map_err(map_err)?;
    w.tx.commit().map_err(map_err)?;
    Ok(ts)
}

pub fn delete_storage(s: &mut SqliteDb, uid: Uid, pre: Precondition) -> DbResult<()> {
    let tx = s
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    let current = super::reads::storage_timestamp(&tx, uid).map_err(map_err)?;
    pre.check(current)?;
    for sql in [
        "DELETE FROM bso WHERE userid = ?1",
        "DELETE FROM user_collections WHERE userid = ?1",
        "DELETE FROM batch_upload_items WHERE userid = ?1",
        "DELETE FROM batch_uploads WHERE userid = ?1",
    ] {
        tx.prepare_cached(sql)
            .and_then(|mut st| st.execute([uid]))
            .map_err(map_err)?;
    }
    tx.commit().map_err(map_err)
}

fn store_batch_items(conn: &Connection, uid: Uid, batch: i64, items: &[BsoUpdate]) -> DbResult<()> {
    let mut stmt = conn.prepare_cached(UPSERT_BATCH_ITEM).map_err(map_err)?;
    for item in items {
        stmt.execute(params![
            batch,
            uid,
            item.id,
            item.sortindex,
            item.payload,
            item.payload.as_deref().map(payload_size),
            item.ttl,
        ])
        .map_err(map_err)?;
    }
    Ok(())
}

pub fn create_batch(
    s: &mut SqliteDb,
    ctx: WriteCtx,
    items: &[BsoUpdate],
) -> DbResult<(i64, Option<Ms>)> {
    let w = begin(s, &ctx, true)?;
    let cid = require_cid(&w)?;
    ctx.precondition.check(w.last.unwrap_or(0))?;
    // As in Python: the request's 10 ms tick plus uid % 10; on a clash (two
    // batches in one tick) take the next tick instead of failing.
    let mut batch = ceil_tick(now_ms()) + ctx.uid.get() % 10;
    loop {
        let inserted = w
            .tx
            .prepare_cached(
                "INSERT OR IGNORE INTO batch_uploads (batch, userid, collection) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut st| st.execute(params![batch, ctx.uid, cid]))
            .map_err(map_err)?;
        if inserted == 1 {
            break;
        }
        batch += 10;
    }
    store_batch_items(&w.tx, ctx.uid, batch, items)?;
    check_batch_totals(&w.tx, &ctx, batch)?;
    check_quota(&w.tx, &ctx, 0)?;
    w.tx.commit().map_err(map_err)?;
    Ok((batch, w.last))
}

/// Checks that `batch` is this user's, for this collection, and still open.
fn check_batch(conn: &Connection, ctx: &WriteCtx, cid: Option<i64>, batch: i64) -> DbResult<()> {
    let Some(cid) = cid else {
        return Err(DbError::InvalidBatch);
    };
    let found: Option<i64> = conn
        .prepare_cached("SELECT collection FROM batch_uploads WHERE batch = ?1 AND userid = ?2")
        .and_then(|mut st| {
            rusqlite::OptionalExtension::optional(
                st.query_row(params![batch, ctx.uid], |r| r.get(0)),
            )
        })
        .map_err(map_err)?;
    let open = batch / 1000 + BATCH_LIFETIME_SECS >= now_ms() / 1000;
    if found != Some(cid) || !open {
        return Err(DbError::InvalidBatch);
    }
    Ok(())
}

pub fn append_batch(
    s: &mut SqliteDb,
    ctx: WriteCtx,
    batch: i64,
    items: &[BsoUpdate],
) -> DbResult<Option<Ms>> {
    let w = begin(s, &ctx, false)?;
    ctx.precondition.check(w.last.unwrap_or(0))?;
    check_batch(&w.tx, &ctx, w.cid, batch)?;
    // Stored first, then counted: an id sent again replaces its earlier
    // version instead of counting twice.
    store_batch_items(&w.tx, ctx.uid, batch, items)?;
    check_batch_totals(&w.tx, &ctx, batch)?;
    check_quota(&w.tx, &ctx, 0)?;
    w.tx.commit().map_err(map_err)?;
    Ok(w.last)
}

pub fn commit_batch(
    s: &mut SqliteDb,
    ctx: WriteCtx,
    batch: Option<i64>,
    items: &[BsoUpdate],
) -> DbResult<WriteOutcome> {
    let Some(batch) = batch else {
        // batch=true&commit=true: one request holds the whole batch.
        return apply_direct(s, ctx, items, true);
    };
    let w = begin(s, &ctx, false)?;
    ctx.precondition.check(w.last.unwrap_or(0))?;
    check_batch(&w.tx, &ctx, w.cid, batch)?;
    let cid = require_cid(&w)?;
    store_batch_items(&w.tx, ctx.uid, batch, items)?;
    check_batch_totals(&w.tx, &ctx, batch)?;
    // The batch's own items are pending until this commits: counted once.
    let quota_left = check_quota(&w.tx, &ctx, 0)?;
    let ts = w.timestamp()?;
    let args = params![batch, ctx.uid, cid, ts, now_s(ts)];
    w.tx.prepare_cached(APPLY_BATCH)
        .and_then(|mut st| st.execute(args))
        .map_err(map_err)?;
    touch(&w.tx, ctx.uid, cid, ts).map_err(map_err)?;
    for sql in [
        "DELETE FROM batch_upload_items WHERE batch = ?1 AND userid = ?2",
        "DELETE FROM batch_uploads WHERE batch = ?1 AND userid = ?2",
    ] {
        w.tx.prepare_cached(sql)
            .and_then(|mut st| st.execute(params![batch, ctx.uid]))
            .map_err(map_err)?;
    }
    w.tx.commit().map_err(map_err)?;
    Ok(WriteOutcome {
        modified: ts,
        quota_left,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{prepare, Location};
    use super::*;
    use crate::db::{BatchLimits, StorageDb, TTL_FOREVER};

    const CTX: WriteCtx<'static> = WriteCtx {
        uid: crate::uid::Uid::new(3).unwrap(),
        collection: "c",
        precondition: Precondition::None,
        quota: None,
        batch_limits: BatchLimits {
            records: 100,
            bytes: 1 << 20,
        },
    };

    fn db() -> SqliteDb {
        let (conn, _) = prepare(&Location::Memory).unwrap();
        SqliteDb::from_connection(conn).unwrap()
    }

    fn item(
        id: &str,
        sortindex: Option<i64>,
        payload: Option<&str>,
        ttl: Option<i64>,
    ) -> BsoUpdate {
        BsoUpdate {
            id: id.into(),
            sortindex,
            payload: payload.map(str::to_string),
            ttl,
        }
    }

    /// (id, sortindex, payload, payload_size, ttl: None = forever, else
    /// seconds after `modified`) of every row, expired ones included.
    type Row = (String, Option<i64>, String, i64, Option<i64>);

    fn rows(s: &mut SqliteDb, modified: Ms) -> Vec<Row> {
        let mut st = s
            .conn
            .prepare(
                "SELECT id, sortindex, payload, payload_size, ttl, modified FROM bso ORDER BY id",
            )
            .unwrap();
        let out = st
            .query_map([], |r| {
                let ttl: i64 = r.get(4)?;
                assert_eq!(
                    r.get::<_, i64>(5)?,
                    modified,
                    "every row gets the commit's time"
                );
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    (ttl != TTL_FOREVER).then(|| ttl - modified / 1000),
                ))
            })
            .unwrap()
            .collect::<Result<Vec<Row>, _>>()
            .unwrap();
        out
    }

    /// The commit done inside SQLite gives the rows the per-record upsert
    /// gives (the path `batch=true&commit=true` still takes): only provided
    /// fields change, an expired row counts as absent, ttl is from the commit.
    #[test]
    fn batch_commit_in_sql_matches_the_per_record_upsert() {
        let seed = [
            item("a", Some(5), Some("old-a"), Some(1000)),
            item("b", None, Some("old-b"), None),
            item("e", Some(7), Some("old-e"), Some(0)),
        ];
        let batch = [
            item("a", None, None, None),
            item("b", None, Some("new-b"), Some(50)),
            item("e", Some(2), None, None),
            item("m", Some(1), Some("\u{e9}"), Some(10)),
            item("n", None, None, None),
        ];
        let mut in_sql = db();
        in_sql.post_bsos(CTX, &seed).unwrap();
        let (id, _) = in_sql.create_batch(CTX, &batch[..2]).unwrap();
        in_sql.append_batch(CTX, id, &batch[2..4]).unwrap();
        let a = in_sql.commit_batch(CTX, Some(id), &batch[4..]).unwrap();

        let mut per_record = db();
        per_record.post_bsos(CTX, &seed).unwrap();
        let b = per_record.commit_batch(CTX, None, &batch).unwrap();

        let (got, want) = (
            rows(&mut in_sql, a.modified),
            rows(&mut per_record, b.modified),
        );
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((&g.0, g.1, &g.2, g.3), (&w.0, w.1, &w.2, w.3));
            // The seeded ttl of "a" is relative to the seeding second.
            let close = match (g.4, w.4) {
                (Some(x), Some(y)) => (x - y).abs() <= 1,
                (x, y) => x == y,
            };
            assert!(close, "ttl of {}: {:?} vs {:?}", g.0, g.4, w.4);
        }
        assert_eq!(got[4], ("n".into(), None, String::new(), 0, None));
        assert_eq!(got[3].3, 2, "payload_size is UTF-8 bytes");
        assert_eq!(
            got[2].2, "",
            "the expired row came back without its payload"
        );
        // The batch is gone.
        let left: i64 = in_sql
            .conn
            .query_row("SELECT COUNT(*) FROM batch_upload_items", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }
}
