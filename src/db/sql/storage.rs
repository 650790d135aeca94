//! The storage requests on a server engine, with the SQLite engine's rules
//! (`db/sqlite/writes.rs`, `reads.rs`): the same timestamps (`next_timestamp`,
//! retried while ahead of the clock), quota (live records plus open batches, UTF-8
//! bytes), batch limits counted on what the batch holds, batch ids, TTLs and paging.
//!
//! Round trips (collection id cached, no quota, no precondition; counted in the
//! engines' statement logs): a one-statement read (an item, info/collections,
//! the revocation check every storage request makes) is one, no BEGIN; a
//! listing is two (timestamp, rows). A PUT or POST (up to 100 records) is four:
//! BEGIN + the user's lock, the collection timestamp, one `INSERT … SELECT … ON
//! CONFLICT` applying every record, and touching the collection + COMMIT. A
//! precondition on a PUT adds one, a quota one, a new collection two. Creating
//! or appending to a batch is six, committing one seven: the stored batch is
//! applied inside the database with one `INSERT … SELECT` from
//! `batch_upload_items`. (Each statement is prepared once per connection.)

use super::{dialect, inline, Collections, Conn, Engine, SqlDb, Value};
use crate::db::sqlite::reads::{next, offset_filter, Tail};
use crate::db::sqlite::writes::{
    bytes_of, next_timestamp, payload_size, retry_when_ahead, BATCH_LIFETIME_SECS,
};
use crate::db::{
    Bso, BsoQuery, BsoUpdate, CollectionInfo, DbError, DbResult, PageEnd, Precondition, Sort,
    StorageDb, WriteCtx, WriteOutcome,
};
use crate::timestamp::{ceil_tick, now_ms, now_secs, Ms};
use crate::uid::Uid;

/// Records per statement when writing many.
const CHUNK: usize = 100;

fn now_s() -> i64 {
    now_secs() as i64
}

/// Applies records to `bso`: only provided fields change, `modified` moves with
/// a new payload (always when `force`, for batch commits), an expired row counts
/// as absent, a ttl counts from the write. The source rows `b` come from
/// `{source}` (id, sortindex, payload, payload_size, ttl_offset).
/// Parameters: uid, cid, now_s, force (0/1), now_s, ts, now_s, now_s, now_s,
/// now_s, then the source's, then uid, cid.
fn apply_sql(source: &str) -> String {
    format!(
        "INSERT INTO bso (userid, collection, id, sortindex, modified, payload, payload_size, ttl)
SELECT ?i, ?i, b.id,
  CASE WHEN b.sortindex IS NOT NULL THEN b.sortindex
       WHEN cur.ttl > ?i THEN cur.sortindex ELSE NULL END,
  CASE WHEN ?i = 1 OR b.payload IS NOT NULL OR cur.ttl IS NULL OR cur.ttl <= ?i THEN ?i
       ELSE cur.modified END,
  CASE WHEN b.payload IS NOT NULL THEN b.payload
       WHEN cur.ttl > ?i THEN cur.payload ELSE '' END,
  CASE WHEN b.payload IS NOT NULL THEN COALESCE(b.payload_size, 0)
       WHEN cur.ttl > ?i THEN cur.payload_size ELSE 0 END,
  CASE WHEN b.ttl_offset IS NOT NULL THEN ?i + b.ttl_offset
       WHEN cur.ttl > ?i THEN cur.ttl ELSE 2100000000 END
FROM {source}
LEFT JOIN bso cur ON cur.userid = ?i AND cur.collection = ?i AND cur.id = b.id
ON CONFLICT (userid, collection, id) DO UPDATE SET
  sortindex = EXCLUDED.sortindex,
  modified = EXCLUDED.modified,
  payload = EXCLUDED.payload,
  payload_size = EXCLUDED.payload_size,
  ttl = EXCLUDED.ttl"
    )
}

fn apply_head(uid: Uid, cid: i64, ts: Ms, force: bool) -> Vec<Value> {
    let now = ts / 1000;
    vec![
        uid.into(),
        cid.into(),
        now.into(),
        i64::from(force).into(),
        now.into(),
        ts.into(),
        now.into(),
        now.into(),
        now.into(),
        now.into(),
    ]
}

/// Items that name one id several times merged into one (later fields win), as
/// writing them one after the other would leave the row; in first-seen order.
fn merged(items: &[BsoUpdate]) -> Vec<BsoUpdate> {
    let mut out: Vec<BsoUpdate> = Vec::with_capacity(items.len());
    let mut at = std::collections::HashMap::new();
    for item in items {
        match at.get(&item.id) {
            Some(&i) => {
                let m: &mut BsoUpdate = &mut out[i];
                if item.sortindex.is_some() {
                    m.sortindex = item.sortindex;
                }
                if item.payload.is_some() {
                    m.payload = item.payload.clone();
                }
                if item.ttl.is_some() {
                    m.ttl = item.ttl;
                }
            }
            None => {
                at.insert(item.id.clone(), out.len());
                out.push(item.clone());
            }
        }
    }
    out
}

fn item_values(item: &BsoUpdate) -> [Value; 5] {
    [
        item.id.as_str().into(),
        item.sortindex.into(),
        item.payload.clone().into(),
        item.payload.as_deref().map(payload_size).into(),
        item.ttl.into(),
    ]
}

/// Writes `items` (already merged) straight into `bso` with timestamp `ts`.
fn apply_items(
    c: &mut dyn Conn,
    uid: Uid,
    cid: i64,
    ts: Ms,
    force: bool,
    items: &[BsoUpdate],
) -> DbResult<()> {
    for chunk in items.chunks(CHUNK) {
        let source = match c.engine() {
            // A VALUES list: PostgreSQL plans 100 rows of it in microseconds, where a
            // UNION ALL of 100 SELECTs took milliseconds per statement.
            Engine::Postgresql => {
                let rows = vec!["(?k, ?i, ?t, ?i, ?i)"; chunk.len()].join(", ");
                format!("(VALUES {rows}) AS b (id, sortindex, payload, payload_size, ttl_offset)")
            }
            // MariaDB cannot name a VALUES list's columns.
            Engine::Mysql => {
                let row = "SELECT ?k AS id, ?i AS sortindex, ?t AS payload, \
                           ?i AS payload_size, ?i AS ttl_offset";
                format!("({}) AS b", vec![row; chunk.len()].join(" UNION ALL "))
            }
        };
        let sql = apply_sql(&source);
        let mut args = apply_head(uid, cid, ts, force);
        for item in chunk {
            args.extend(item_values(item));
        }
        args.extend([uid.into(), cid.into()]);
        c.execute(&sql, &args)?;
    }
    Ok(())
}

/// Applies the stored batch `batch` to `bso` with timestamp `ts`.
fn apply_batch(c: &mut dyn Conn, uid: Uid, cid: i64, ts: Ms, batch: i64) -> DbResult<()> {
    let sql = apply_sql(
        "(SELECT id, sortindex, payload, payload_size, ttl_offset FROM batch_upload_items
          WHERE batch = ?i AND userid = ?i) AS b",
    );
    let mut args = apply_head(uid, cid, ts, true);
    args.extend([batch.into(), uid.into(), uid.into(), cid.into()]);
    c.execute(&sql, &args)?;
    Ok(())
}

/// Stores items into a batch (an id sent again merges into its earlier version).
fn store_batch_items(c: &mut dyn Conn, uid: Uid, batch: i64, items: &[BsoUpdate]) -> DbResult<()> {
    for chunk in merged(items).chunks(CHUNK) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO batch_upload_items
               (batch, userid, id, sortindex, payload, payload_size, ttl_offset)
             VALUES {values}
             ON CONFLICT (batch, userid, id) DO UPDATE SET
               sortindex = COALESCE(EXCLUDED.sortindex, batch_upload_items.sortindex),
               payload = COALESCE(EXCLUDED.payload, batch_upload_items.payload),
               payload_size = COALESCE(EXCLUDED.payload_size, batch_upload_items.payload_size),
               ttl_offset = COALESCE(EXCLUDED.ttl_offset, batch_upload_items.ttl_offset)"
        );
        let mut args = Vec::with_capacity(chunk.len() * 7);
        for item in chunk {
            args.extend([batch.into(), uid.into()]);
            args.extend(item_values(item));
        }
        c.execute(&sql, &args)?;
    }
    Ok(())
}

const TOUCH: &str =
    "INSERT INTO user_collections (userid, collection, last_modified) VALUES (?, ?, ?)
ON CONFLICT (userid, collection) DO UPDATE SET last_modified = EXCLUDED.last_modified";

fn collection_timestamp(c: &mut dyn Conn, uid: Uid, cid: i64) -> DbResult<Option<Ms>> {
    c.query_row(
        "SELECT last_modified FROM user_collections WHERE userid = ? AND collection = ?",
        &[uid.into(), cid.into()],
    )?
    .map(|r| r.int(0))
    .transpose()
}

fn live_bso(c: &mut dyn Conn, uid: Uid, cid: i64, id: &str) -> DbResult<Option<Bso>> {
    let row = c.query_row(
        "SELECT id, modified, payload, sortindex FROM bso
         WHERE userid = ? AND collection = ? AND id = ?k AND ttl > ?",
        &[uid.into(), cid.into(), id.into(), now_s().into()],
    )?;
    row.map(|mut r| {
        Ok(Bso {
            id: r.take_text(0)?,
            modified: r.int(1)?,
            payload: r.take_text(2)?,
            sortindex: r.opt_int(3)?,
        })
    })
    .transpose()
}

fn total_usage(c: &mut dyn Conn, uid: Uid) -> DbResult<i64> {
    c.query_row(
        "SELECT COALESCE(SUM(payload_size), 0) FROM bso WHERE userid = ? AND ttl > ?",
        &[uid.into(), now_s().into()],
    )?
    .map_or(Ok(0), |r| r.int(0))
}

/// Quota left after writing `incoming` more bytes (live records and open
/// batches count); `OverQuota` when nothing would be left. One statement.
fn check_quota(c: &mut dyn Conn, ctx: &WriteCtx, incoming: i64) -> DbResult<Option<i64>> {
    let Some(quota) = ctx.quota else {
        return Ok(None);
    };
    let oldest_open = (now_ms() / 1000 - BATCH_LIFETIME_SECS) * 1000;
    let row = c.query_row(
        "SELECT
           (SELECT COALESCE(SUM(payload_size), 0) FROM bso WHERE userid = ? AND ttl > ?),
           (SELECT COALESCE(SUM(i.payload_size), 0)
            FROM batch_uploads u
            JOIN batch_upload_items i ON i.batch = u.batch AND i.userid = u.userid
            WHERE u.userid = ? AND u.batch >= ?)",
        &[
            ctx.uid.into(),
            now_s().into(),
            ctx.uid.into(),
            oldest_open.into(),
        ],
    )?;
    let (stored, pending) = match row {
        Some(r) => (r.int(0)?, r.int(1)?),
        None => (0, 0),
    };
    let left = quota - stored - pending - incoming;
    if left <= 0 {
        return Err(DbError::OverQuota);
    }
    Ok(Some(left))
}

fn check_batch_totals(c: &mut dyn Conn, ctx: &WriteCtx, batch: i64) -> DbResult<()> {
    let row = c.query_row(
        "SELECT COUNT(*), COALESCE(SUM(payload_size), 0) FROM batch_upload_items
         WHERE batch = ? AND userid = ?",
        &[batch.into(), ctx.uid.into()],
    )?;
    let (records, bytes) = match row {
        Some(r) => (r.int(0)?, r.int(1)?),
        None => (0, 0),
    };
    let limits = ctx.batch_limits;
    if records as u64 > limits.records || bytes as u64 > limits.bytes {
        return Err(DbError::BatchTooLarge);
    }
    Ok(())
}

fn check_batch(c: &mut dyn Conn, ctx: &WriteCtx, cid: Option<i64>, batch: i64) -> DbResult<()> {
    let Some(cid) = cid else {
        return Err(DbError::InvalidBatch);
    };
    let found = c
        .query_row(
            "SELECT collection FROM batch_uploads WHERE batch = ? AND userid = ?",
            &[batch.into(), ctx.uid.into()],
        )?
        .map(|r| r.int(0))
        .transpose()?;
    let open = batch / 1000 + BATCH_LIFETIME_SECS >= now_ms() / 1000;
    if found != Some(cid) || !open {
        return Err(DbError::InvalidBatch);
    }
    Ok(())
}

/// A started write: the user's lock is held, the collection id is known.
struct Write {
    cid: Option<i64>,
    last: Option<Ms>,
}

impl SqlDb {
    /// BEGIN, the user's lock, the collection id (created when `create`) and its
    /// timestamp.
    fn begin_write(&mut self, ctx: &WriteCtx, create: bool) -> DbResult<Write> {
        let begin = self.begin_locked(ctx.uid.get());
        let (c, cols) = self.parts()?;
        c.batch(&begin)?;
        let cid = if create {
            Some(cols.id_or_create(c, ctx.collection)?)
        } else {
            cols.id(c, ctx.collection)?
        };
        let last = match cid {
            Some(cid) => collection_timestamp(c, ctx.uid, cid)?,
            None => None,
        };
        Ok(Write { cid, last })
    }

    /// Runs `sql` (integers inlined), then COMMIT, in one round trip.
    fn finish(&mut self, statements: &[(&str, &[i64])]) -> DbResult<()> {
        let engine = self.engine();
        let mut text = String::new();
        for (sql, ints) in statements {
            text.push_str(&dialect::translate(engine, &inline(sql, ints)));
            text.push_str("; ");
        }
        text.push_str("COMMIT");
        self.conn()?.batch(&text)
    }

    /// A write transaction, run again while its timestamp would run ahead of
    /// the clock.
    fn write<T>(&mut self, mut f: impl FnMut(&mut Self) -> DbResult<T>) -> DbResult<T> {
        self.run(|s| retry_when_ahead(s, |s| s.tx("", |s| f(s))))
    }

    fn check_items(&self, items: &[BsoUpdate]) -> DbResult<()> {
        for item in items {
            if let Some(p) = &item.payload {
                self.check_text(p)?;
            }
            self.check_text(&item.id)?;
        }
        Ok(())
    }

    fn apply_direct(
        &mut self,
        ctx: WriteCtx,
        items: &[BsoUpdate],
        force: bool,
        item_pre: bool,
    ) -> DbResult<WriteOutcome> {
        self.check_items(items)?;
        let w = self.begin_write(&ctx, true)?;
        let cid = w
            .cid
            .ok_or_else(|| DbError::Backend("no collection id".into()))?;
        // A write that would run ahead of the clock gives the lock up at once.
        let ts = match items.is_empty() {
            true => None,
            false => Some(next_timestamp(w.last)?),
        };
        let (c, _) = self.parts()?;
        if item_pre {
            // PUT: the precondition is about the item.
            if matches!(ctx.precondition, Precondition::None) {
                // Nothing to compare: skip the read.
            } else {
                let current = live_bso(c, ctx.uid, cid, &items[0].id)?;
                ctx.precondition
                    .check(current.map(|b| b.modified).unwrap_or(0))?;
            }
        } else {
            ctx.precondition.check(w.last.unwrap_or(0))?;
        }
        let incoming = bytes_of(items);
        if force
            && (items.len() as u64 > ctx.batch_limits.records
                || incoming as u64 > ctx.batch_limits.bytes)
        {
            return Err(DbError::BatchTooLarge);
        }
        let quota_left = check_quota(c, &ctx, incoming)?;
        let Some(ts) = ts else {
            // Nothing to write: no new timestamp, nothing bumped.
            c.rollback()?;
            return Ok(WriteOutcome {
                modified: w.last.unwrap_or(0),
                quota_left,
            });
        };
        apply_items(c, ctx.uid, cid, ts, force, &merged(items))?;
        self.finish(&[(TOUCH, &[ctx.uid.get(), cid, ts])])?;
        Ok(WriteOutcome {
            modified: ts,
            quota_left,
        })
    }
}

impl StorageDb for SqlDb {
    fn collection_timestamps(&mut self, uid: Uid) -> DbResult<Vec<CollectionInfo>> {
        self.run(|s| {
            per_collection(
                s,
                "SELECT collection, last_modified FROM user_collections WHERE userid = ?",
                &[uid.into()],
                uid,
            )
        })
    }
    fn collection_counts(&mut self, uid: Uid) -> DbResult<Vec<CollectionInfo>> {
        self.run(|s| {
            per_collection(
                s,
                "SELECT collection, COUNT(*) FROM bso WHERE userid = ? AND ttl > ? GROUP BY collection",
                &[uid.into(), now_s().into()],
                uid,
            )
        })
    }
    fn collection_usage(&mut self, uid: Uid) -> DbResult<Vec<CollectionInfo>> {
        self.run(|s| {
            per_collection(
                s,
                "SELECT collection, COALESCE(SUM(payload_size), 0) FROM bso
                 WHERE userid = ? AND ttl > ? GROUP BY collection",
                &[uid.into(), now_s().into()],
                uid,
            )
        })
    }
    fn total_usage(&mut self, uid: Uid) -> DbResult<i64> {
        self.run(|s| total_usage(s.conn()?, uid))
    }
    fn storage_timestamp(&mut self, uid: Uid) -> DbResult<Ms> {
        self.run(|s| {
            s.conn()?
                .query_row(
                    "SELECT COALESCE(MAX(last_modified), 0) FROM user_collections WHERE userid = ?",
                    &[uid.into()],
                )?
                .map_or(Ok(0), |r| r.int(0))
        })
    }
    fn list_bsos(
        &mut self,
        uid: Uid,
        collection: &str,
        query: &BsoQuery,
        pre: Precondition,
        each: &mut dyn FnMut(Bso),
    ) -> DbResult<PageEnd> {
        self.run(|s| {
            let (c, cols) = s.parts()?;
            list_bsos(c, cols, uid, collection, query, pre, each)
        })
    }
    fn get_bso(
        &mut self,
        uid: Uid,
        collection: &str,
        id: &str,
        pre: Precondition,
    ) -> DbResult<Bso> {
        self.run(|s| {
            let (c, cols) = s.parts()?;
            let Some(cid) = cols.id(c, collection)? else {
                pre.check(0)?;
                return Err(DbError::NotFound);
            };
            let bso = live_bso(c, uid, cid, id)?;
            pre.check(bso.as_ref().map(|b| b.modified).unwrap_or(0))?;
            bso.ok_or(DbError::NotFound)
        })
    }
    fn put_bso(&mut self, ctx: WriteCtx, item: &BsoUpdate) -> DbResult<WriteOutcome> {
        self.write(|s| s.apply_direct(ctx, std::slice::from_ref(item), false, true))
    }
    fn post_bsos(&mut self, ctx: WriteCtx, items: &[BsoUpdate]) -> DbResult<WriteOutcome> {
        self.write(|s| s.apply_direct(ctx, items, false, false))
    }
    fn delete_collection(&mut self, ctx: WriteCtx) -> DbResult<Ms> {
        self.write(|s| {
            let w = s.begin_write(&ctx, false)?;
            ctx.precondition.check(w.last.unwrap_or(0))?;
            let ts = next_timestamp(w.last)?;
            match w.cid {
                Some(cid) => {
                    let (u, k) = (ctx.uid.get(), cid);
                    s.finish(&[
                        ("DELETE FROM bso WHERE userid = ? AND collection = ?", &[u, k]),
                        (
                            "DELETE FROM user_collections WHERE userid = ? AND collection = ?",
                            &[u, k],
                        ),
                        // Open batches for the collection would resurrect data on commit.
                        (
                            "DELETE FROM batch_upload_items WHERE userid = ? AND batch IN
                               (SELECT batch FROM batch_uploads WHERE userid = ? AND collection = ?)",
                            &[u, u, k],
                        ),
                        (
                            "DELETE FROM batch_uploads WHERE userid = ? AND collection = ?",
                            &[u, k],
                        ),
                    ])?;
                }
                None => s.conn()?.rollback()?,
            }
            Ok(ts)
        })
    }
    fn delete_bsos(&mut self, ctx: WriteCtx, ids: &[String]) -> DbResult<Ms> {
        self.write(|s| {
            let w = s.begin_write(&ctx, false)?;
            ctx.precondition.check(w.last.unwrap_or(0))?;
            let ts = next_timestamp(w.last)?;
            // A collection the user never had stays absent.
            let (Some(cid), Some(_)) = (w.cid, w.last) else {
                s.conn()?.rollback()?;
                return Ok(ts);
            };
            let c = s.conn()?;
            for chunk in ids.chunks(CHUNK) {
                let marks = vec!["?k"; chunk.len()].join(", ");
                let mut args: Vec<Value> = vec![ctx.uid.into(), cid.into()];
                args.extend(chunk.iter().map(|id| Value::from(id.as_str())));
                c.execute(
                    &format!(
                        "DELETE FROM bso WHERE userid = ? AND collection = ? AND id IN ({marks})"
                    ),
                    &args,
                )?;
            }
            s.finish(&[(TOUCH, &[ctx.uid.get(), cid, ts])])?;
            Ok(ts)
        })
    }
    fn delete_bso(&mut self, ctx: WriteCtx, id: &str) -> DbResult<Ms> {
        self.write(|s| {
            let w = s.begin_write(&ctx, false)?;
            let c = s.conn()?;
            let Some(cid) = w.cid else {
                ctx.precondition.check(0)?;
                return Err(DbError::NotFound);
            };
            let current = live_bso(c, ctx.uid, cid, id)?;
            ctx.precondition
                .check(current.as_ref().map(|b| b.modified).unwrap_or(0))?;
            if current.is_none() {
                return Err(DbError::NotFound);
            }
            let ts = next_timestamp(w.last)?;
            c.execute(
                "DELETE FROM bso WHERE userid = ? AND collection = ? AND id = ?k",
                &[ctx.uid.into(), cid.into(), id.into()],
            )?;
            s.finish(&[(TOUCH, &[ctx.uid.get(), cid, ts])])?;
            Ok(ts)
        })
    }
    fn delete_storage(&mut self, uid: Uid, pre: Precondition) -> DbResult<()> {
        self.run(|s| {
            let begin = s.begin_locked(uid.get());
            s.tx(&begin, |s| {
                let current = s
                    .conn()?
                    .query_row(
                        "SELECT COALESCE(MAX(last_modified), 0) FROM user_collections WHERE userid = ?",
                        &[uid.into()],
                    )?
                    .map_or(Ok(0), |r| r.int(0))?;
                pre.check(current)?;
                let u = uid.get();
                s.finish(&[
                    ("DELETE FROM bso WHERE userid = ?", &[u]),
                    ("DELETE FROM user_collections WHERE userid = ?", &[u]),
                    ("DELETE FROM batch_upload_items WHERE userid = ?", &[u]),
                    ("DELETE FROM batch_uploads WHERE userid = ?", &[u]),
                ])
            })
        })
    }
    fn create_batch(&mut self, ctx: WriteCtx, items: &[BsoUpdate]) -> DbResult<(i64, Option<Ms>)> {
        self.run(|s| {
            s.check_items(items)?;
            s.tx("", |s| {
                let w = s.begin_write(&ctx, true)?;
                let cid = w
                    .cid
                    .ok_or_else(|| DbError::Backend("no collection id".into()))?;
                ctx.precondition.check(w.last.unwrap_or(0))?;
                let c = s.conn()?;
                // The request's 10 ms tick plus uid % 10; on a clash the next tick.
                let mut batch = ceil_tick(now_ms()) + ctx.uid.get() % 10;
                while c.execute(
                    "INSERT INTO batch_uploads (batch, userid, collection) VALUES (?, ?, ?)
                     ON CONFLICT DO NOTHING",
                    &[batch.into(), ctx.uid.into(), cid.into()],
                )? != 1
                {
                    batch += 10;
                }
                store_batch_items(c, ctx.uid, batch, items)?;
                check_batch_totals(c, &ctx, batch)?;
                check_quota(c, &ctx, 0)?;
                c.commit()?;
                Ok((batch, w.last))
            })
        })
    }
    fn append_batch(
        &mut self,
        ctx: WriteCtx,
        batch: i64,
        items: &[BsoUpdate],
    ) -> DbResult<Option<Ms>> {
        self.run(|s| {
            s.check_items(items)?;
            s.tx("", |s| {
                let w = s.begin_write(&ctx, false)?;
                ctx.precondition.check(w.last.unwrap_or(0))?;
                let c = s.conn()?;
                check_batch(c, &ctx, w.cid, batch)?;
                store_batch_items(c, ctx.uid, batch, items)?;
                check_batch_totals(c, &ctx, batch)?;
                check_quota(c, &ctx, 0)?;
                c.commit()?;
                Ok(w.last)
            })
        })
    }
    fn commit_batch(
        &mut self,
        ctx: WriteCtx,
        batch: Option<i64>,
        items: &[BsoUpdate],
    ) -> DbResult<WriteOutcome> {
        let Some(batch) = batch else {
            return self.write(|s| s.apply_direct(ctx, items, true, false));
        };
        self.check_items(items)?;
        self.write(|s| {
            let w = s.begin_write(&ctx, false)?;
            ctx.precondition.check(w.last.unwrap_or(0))?;
            let ts = next_timestamp(w.last)?;
            let c = s.conn()?;
            check_batch(c, &ctx, w.cid, batch)?;
            let cid = w.cid.ok_or(DbError::InvalidBatch)?;
            store_batch_items(c, ctx.uid, batch, items)?;
            check_batch_totals(c, &ctx, batch)?;
            let quota_left = check_quota(c, &ctx, 0)?;
            apply_batch(c, ctx.uid, cid, ts, batch)?;
            let u = ctx.uid.get();
            s.finish(&[
                (TOUCH, &[u, cid, ts]),
                (
                    "DELETE FROM batch_upload_items WHERE batch = ? AND userid = ?",
                    &[batch, u],
                ),
                (
                    "DELETE FROM batch_uploads WHERE batch = ? AND userid = ?",
                    &[batch, u],
                ),
            ])?;
            Ok(WriteOutcome {
                modified: ts,
                quota_left,
            })
        })
    }
    fn ping(&mut self) -> DbResult<()> {
        self.run(|s| s.conn()?.query_row("SELECT 1", &[]).map(|_| ()))
    }
}

fn per_collection(
    s: &mut SqlDb,
    sql: &str,
    args: &[Value],
    uid: Uid,
) -> DbResult<Vec<CollectionInfo>> {
    let (c, cols) = s.parts()?;
    let rows = c.query(sql, args)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (id, value) = (row.int(0)?, row.int(1)?);
        match cols.name(c, id)? {
            Some(name) => out.push(CollectionInfo { name, value }),
            None => log::warn!("user {uid} has data in unknown collection id {id}; skipped"),
        }
    }
    Ok(out)
}

fn list_bsos(
    c: &mut dyn Conn,
    cols: &mut Collections,
    uid: Uid,
    collection: &str,
    q: &BsoQuery,
    pre: Precondition,
    each: &mut dyn FnMut(Bso),
) -> DbResult<PageEnd> {
    let Some(cid) = cols.id(c, collection)? else {
        pre.check(0)?;
        return Ok(PageEnd::default());
    };
    // The timestamp first, then the rows: a write in between can only make the
    // rows newer than the timestamp the client keeps, never older.
    let last_modified = collection_timestamp(c, uid, cid)?;
    pre.check(last_modified.unwrap_or(0))?;
    if q.limit == Some(0) {
        return Ok(PageEnd {
            last_modified,
            ..PageEnd::default()
        });
    }
    let mut sql = String::from(if q.full {
        "SELECT id, modified, payload, sortindex FROM bso"
    } else {
        "SELECT id, modified FROM bso"
    });
    sql.push_str(" WHERE userid = ? AND collection = ? AND ttl > ?");
    let mut args: Vec<Value> = vec![uid.into(), cid.into(), now_s().into()];
    if let Some(newer) = q.newer {
        sql.push_str(" AND modified > ?");
        args.push(newer.into());
    }
    if let Some(older) = q.older {
        sql.push_str(" AND modified < ?");
        args.push(older.into());
    }
    if let Some(ids) = &q.ids {
        if ids.is_empty() {
            sql.push_str(" AND 1 = 0");
        } else {
            sql.push_str(" AND id IN (");
            sql.push_str(&vec!["?k"; ids.len()].join(", "));
            sql.push(')');
            args.extend(ids.iter().map(|id| Value::from(id.as_str())));
        }
    }
    let (bound, skip) = offset_filter(q);
    if let Some((clause, bound)) = bound {
        sql.push_str(clause);
        args.push(bound.into());
    }
    // The id tie-break makes records of equal `modified` (a batch) come back in
    // the same order on every page (the Python server's paging lost and
    // repeated records on PostgreSQL without it). sort=index reads our
    // sortindex index (schema.rs) in order; with a range of `modified` or a
    // list of ids, whose rows are usually few (`newer` of an incremental
    // sync), the modified index or the primary key finds them and they are
    // sorted instead: `+ 0` keeps a prepared statement's generic plan from
    // walking the whole collection in sortindex order for them.
    let filtered = q.newer.is_some() || q.older.is_some() || q.ids.is_some();
    sql.push_str(match q.sort {
        Sort::Newest => " ORDER BY modified DESC, id DESC",
        Sort::Oldest => " ORDER BY modified ASC, id ASC",
        Sort::Index if filtered => " ORDER BY sortindex + 0 DESC NULLS LAST, id DESC",
        Sort::Index => " ORDER BY sortindex DESC NULLS LAST, id DESC",
    });
    sql.push_str(" LIMIT ? OFFSET ?");
    let fetch = q
        .limit
        .map(|l| l.saturating_add(1))
        .unwrap_or(i64::MAX as u64 >> 1);
    args.push((fetch.min(i64::MAX as u64) as i64).into());
    args.push((skip.min(i64::MAX as u64) as i64).into());

    let mut tail = Tail::default();
    let mut weight = 0u64;
    let mut more = false;
    c.query_each(&sql, &args, &mut |mut r| {
        if q.limit.is_some_and(|limit| tail.returned >= limit) {
            more = true;
            return Ok(false);
        }
        let bso = Bso {
            id: r.take_text(0)?,
            modified: r.int(1)?,
            payload: if q.full {
                r.take_text(2)?
            } else {
                String::new()
            },
            sortindex: if q.full { r.opt_int(3)? } else { None },
        };
        if let Some(budget) = q.budget {
            let w = (budget.weigh)(&bso);
            if tail.returned > 0 && weight.saturating_add(w) > budget.max {
                more = true;
                return Ok(false);
            }
            weight = weight.saturating_add(w);
        }
        tail.push(bso.modified);
        each(bso);
        Ok(true)
    })?;
    Ok(PageEnd {
        count: tail.returned,
        next_offset: more.then(|| next(q, &tail, skip)),
        last_modified,
    })
}
