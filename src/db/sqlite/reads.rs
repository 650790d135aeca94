//! Read queries. Each runs in one deferred transaction, so it sees one
//! consistent snapshot even while other workers write (WAL).

use std::collections::HashMap;

use crate::uid::Uid;
use rusqlite::{
    params_from_iter, types::Value, Connection, OptionalExtension, Transaction, TransactionBehavior,
};

use super::{map_err, SqliteDb};
use crate::db::{
    Bso, BsoQuery, CollectionInfo, DbError, DbResult, Offset, PageEnd, Precondition, Sort,
};
use crate::timestamp::{now_secs, Ms};

/// Which per-collection figure to list.
pub enum PerCollection {
    /// `last_modified` of every user_collections row.
    Timestamps,
    /// Count of live records.
    Counts,
    /// Sum of live payload sizes.
    Usage,
}

fn now_s() -> i64 {
    now_secs() as i64
}

pub fn per_collection(
    s: &mut SqliteDb,
    uid: Uid,
    what: PerCollection,
) -> DbResult<Vec<CollectionInfo>> {
    let SqliteDb {
        conn, collections, ..
    } = s;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(map_err)?;
    let rows: Vec<(i64, i64)> = {
        let (sql, with_now) = match what {
            PerCollection::Timestamps => (
                "SELECT collection, last_modified FROM user_collections WHERE userid = ?1",
                false,
            ),
            PerCollection::Counts => (
                "SELECT collection, COUNT(*) FROM bso WHERE userid = ?1 AND ttl > ?2 GROUP BY collection",
                true,
            ),
            PerCollection::Usage => (
                "SELECT collection, SUM(payload_size) FROM bso WHERE userid = ?1 AND ttl > ?2 GROUP BY collection",
                true,
            ),
        };
        let mut stmt = tx.prepare_cached(sql).map_err(map_err)?;
        let map = |r: &rusqlite::Row| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?));
        let rows = if with_now {
            stmt.query_map(rusqlite::params![uid, now_s()], map)
        } else {
            stmt.query_map(rusqlite::params![uid], map)
        }
        .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)?
    };
    let mut out = Vec::with_capacity(rows.len());
    for (id, value) in rows {
        match collections.name(&tx, id).map_err(map_err)? {
            Some(name) => out.push(CollectionInfo { name, value }),
            None => log::warn!("user {uid} has data in unknown collection id {id}; skipped"),
        }
    }
    Ok(out)
}

pub fn total_usage(conn: &Connection, uid: Uid) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT COALESCE(SUM(payload_size), 0) FROM bso WHERE userid = ?1 AND ttl > ?2",
    )?
    .query_row(rusqlite::params![uid, now_s()], |r| r.get(0))
}

pub fn storage_timestamp(conn: &Connection, uid: Uid) -> rusqlite::Result<Ms> {
    conn.prepare_cached(
        "SELECT COALESCE(MAX(last_modified), 0) FROM user_collections WHERE userid = ?1",
    )?
    .query_row([uid], |r| r.get(0))
}

/// The collection's `last_modified`, if the user has that collection.
pub fn collection_timestamp(conn: &Connection, uid: Uid, cid: i64) -> rusqlite::Result<Option<Ms>> {
    conn.prepare_cached(
        "SELECT last_modified FROM user_collections WHERE userid = ?1 AND collection = ?2",
    )?
    .query_row(rusqlite::params![uid, cid], |r| r.get(0))
    .optional()
}

/// A read transaction and the collection's id (`None`: never written).
fn begin_read<'a>(
    s: &'a mut SqliteDb,
    collection: &str,
) -> DbResult<(Transaction<'a>, Option<i64>)> {
    let SqliteDb {
        conn, collections, ..
    } = s;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(map_err)?;
    let cid = collections.id(&tx, collection).map_err(map_err)?;
    Ok((tx, cid))
}

pub fn list_bsos(
    s: &mut SqliteDb,
    uid: Uid,
    collection: &str,
    q: &BsoQuery,
    pre: Precondition,
    each: &mut dyn FnMut(Bso),
) -> DbResult<PageEnd> {
    let (tx, cid) = begin_read(s, collection)?;
    let Some(cid) = cid else {
        pre.check(0)?;
        return Ok(PageEnd::default());
    };
    let last_modified = collection_timestamp(&tx, uid, cid).map_err(map_err)?;
    pre.check(last_modified.unwrap_or(0))?;
    if q.limit == Some(0) {
        return Ok(PageEnd {
            last_modified,
            ..PageEnd::default()
        });
    }

    let columns = if q.full {
        "id, modified, payload, sortindex"
    } else {
        "id, modified"
    };
    let mut filter = String::from(" WHERE userid = ? AND collection = ? AND ttl > ?");
    let mut args: Vec<Value> = vec![uid.get().into(), cid.into(), now_s().into()];
    if let Some(newer) = q.newer {
        filter.push_str(" AND modified > ?");
        args.push(newer.into());
    }
    if let Some(older) = q.older {
        filter.push_str(" AND modified < ?");
        args.push(older.into());
    }
    if let Some(ids) = &q.ids {
        filter.push_str(" AND id IN (");
        for (i, id) in ids.iter().enumerate() {
            filter.push_str(if i == 0 { "?" } else { ", ?" });
            args.push(id.clone().into());
        }
        filter.push(')');
    }
    let (bound, skip) = offset_filter(q);
    if let Some((clause, bound)) = bound {
        filter.push_str(clause);
        args.push(bound.into());
    }
    let mut page = Page {
        q,
        each,
        tail: Tail::default(),
        weight: 0,
        more: false,
    };
    if q.sort == Sort::Index && q.newer.is_none() && q.older.is_none() && q.ids.is_none() {
        index_page(&tx, &filter, args, columns, skip, &mut page)?;
    } else {
        // rowid makes ties come back in the same order on every page; the
        // (userid, collection, modified) index already holds it, so no sort
        // step. sort=index with a range of `modified` or a list of ids: those
        // (usually few) rows are found by the modified index or the primary
        // key rather than by walking the collection in order, and only their
        // (sortindex, rowid) pairs are sorted, the page's records fetched
        // after (`+` keeps the planner from choosing the walk for ids).
        let order = match q.sort {
            Sort::Oldest => "ORDER BY modified ASC, rowid ASC",
            Sort::Newest => "ORDER BY modified DESC, rowid DESC",
            Sort::Index if q.ids.is_some() => "ORDER BY +sortindex DESC, rowid DESC",
            Sort::Index => "ORDER BY sortindex DESC, rowid DESC",
        };
        let fetch = q
            .limit
            .map(|l| l.saturating_add(1))
            .unwrap_or(u64::MAX >> 1);
        args.push((fetch.min(i64::MAX as u64) as i64).into());
        args.push((skip.min(i64::MAX as u64) as i64).into());
        // Rows are read one at a time and handed on, and the page ends at
        // `limit` or at the budget, whichever comes first: memory does not grow
        // with the collection.
        let mut sql = format!("SELECT {columns} FROM bso{filter} {order} LIMIT ? OFFSET ?");
        if q.sort == Sort::Index {
            sql = format!(
                "SELECT {columns} FROM bso WHERE rowid IN (SELECT rowid FROM bso{filter} {order} \
                 LIMIT ? OFFSET ?) ORDER BY sortindex DESC, rowid DESC"
            );
        }
        let mut stmt = tx.prepare_cached(&sql).map_err(map_err)?;
        let mut rows = stmt.query(params_from_iter(args)).map_err(map_err)?;
        while let Some(r) = rows.next().map_err(map_err)? {
            if page.full() || !page.add(read_bso(r, 0, q.full).map_err(map_err)?) {
                break;
            }
        }
    }
    let Page { tail, more, .. } = page;
    Ok(PageEnd {
        count: tail.returned,
        next_offset: more.then(|| next(q, &tail, skip)),
        last_modified,
    })
}

/// A page being filled: rows go to `each` until `limit` or the budget is reached.
struct Page<'a> {
    q: &'a BsoQuery,
    each: &'a mut dyn FnMut(Bso),
    tail: Tail,
    weight: u64,
    /// Rows are left after the page.
    more: bool,
}

impl Page<'_> {
    /// Whether `limit` rows are in, asked when there is another row: then
    /// there are more.
    fn full(&mut self) -> bool {
        let full = self.q.limit.is_some_and(|l| self.tail.returned >= l);
        self.more |= full;
        full
    }

    /// Hands `bso` on, unless it would take the page over its budget (then
    /// false: the page is complete).
    fn add(&mut self, bso: Bso) -> bool {
        if let Some(budget) = self.q.budget {
            let w = (budget.weigh)(&bso);
            if self.tail.returned > 0 && self.weight.saturating_add(w) > budget.max {
                self.more = true;
                return false;
            }
            self.weight = self.weight.saturating_add(w);
        }
        self.tail.push(bso.modified);
        (self.each)(bso);
        true
    }
}

/// A sort=index page of the whole collection: `sortindex DESC, rowid DESC`,
/// NULLs last.
///
/// Our (userid, collection, sortindex, ttl) index (schema.rs), read
/// backwards, holds that order, except that it keeps equal sortindexes by ttl
/// before rowid. So the page's rowids are worked out on the index alone first
/// ([`page_rowids`]), each run of equal sortindex put in rowid order, and only
/// then are the page's records read.
fn index_page(
    tx: &Transaction,
    filter: &str,
    args: Vec<Value>,
    columns: &str,
    skip: u64,
    page: &mut Page,
) -> DbResult<()> {
    let q = page.q;
    // The page's rows and the one after it, which says whether more follow.
    let want = q.limit.map_or(u64::MAX, |l| l.saturating_add(1));
    let (mut rowids, first_run) = page_rowids(tx, filter, &args, skip, want)?;
    let more = rowids.len() as u64 == want;
    if more {
        rowids.pop();
    }
    if rowids.is_empty() {
        return Ok(());
    }
    // The records come from one more walk over the same stretch of the index
    // (a statement per record cost twice as much as a step of a walk), from
    // the start of the page's first run on. Within a run the walk meets them
    // by ttl: those met before their turn wait for it, so no more than the
    // page ever waits.
    let nulls = (" AND sortindex IS NULL", args.clone());
    let parts = match first_run {
        // `sortindex <= ?` leaves out the NULLs, which come last.
        Some(Some(sortindex)) if skip > 0 => {
            let mut from = args;
            from.push(sortindex.into());
            vec![(" AND sortindex <= ?", from), nulls]
        }
        Some(None) if skip > 0 => vec![nulls],
        _ => vec![("", args)],
    };
    let at: HashMap<i64, usize> = rowids.iter().enumerate().map(|(i, r)| (*r, i)).collect();
    let mut waiting: HashMap<usize, Bso> = HashMap::new();
    let mut next = 0;
    for (part, args) in parts {
        let sql = format!("SELECT rowid, {columns} FROM bso{filter}{part} {INDEX_ORDER}");
        let mut stmt = tx.prepare_cached(&sql).map_err(map_err)?;
        let mut rows = stmt.query(params_from_iter(args)).map_err(map_err)?;
        while let Some(r) = rows.next().map_err(map_err)? {
            let Some(&i) = at.get(&r.get(0).map_err(map_err)?) else {
                continue;
            };
            let bso = read_bso(r, 1, q.full).map_err(map_err)?;
            if i != next {
                waiting.insert(i, bso);
                continue;
            }
            let mut bso = Some(bso);
            while let Some(b) = bso.take().or_else(|| waiting.remove(&next)) {
                if !page.add(b) {
                    return Ok(());
                }
                next += 1;
            }
            if next == rowids.len() {
                page.more |= more;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The order of our sortindex index, read backwards.
const INDEX_ORDER: &str = "ORDER BY sortindex DESC, ttl DESC, rowid DESC";

/// Up to `want` rowids of a sort=index page `skip` rows in, in page order, and
/// the sortindex of the run the page starts in (`None`: no rows there).
///
/// SQLite passes over the rows the offset skips on the index alone. Only the
/// run of equal sortindex the page starts in is read whole: the part of it
/// the offset skipped by index order may come after the rest by rowid.
fn page_rowids(
    tx: &Transaction,
    filter: &str,
    args: &[Value],
    skip: u64,
    want: u64,
) -> DbResult<(Vec<i64>, Option<Option<i64>>)> {
    let mut ties = Ties {
        skip: 0,
        rowids: Vec::new(),
        page: Vec::new(),
        want,
    };
    let mut first_run = None;
    let mut pair_args = args.to_vec();
    pair_args.push((skip.min(i64::MAX as u64) as i64).into());
    let sql = format!("SELECT rowid, sortindex FROM bso{filter} {INDEX_ORDER} LIMIT -1 OFFSET ?");
    let mut stmt = tx.prepare_cached(&sql).map_err(map_err)?;
    let mut rows = stmt.query(params_from_iter(pair_args)).map_err(map_err)?;
    let mut key = None;
    loop {
        let row: Option<(i64, Option<i64>)> = match rows.next().map_err(map_err)? {
            Some(r) => Some((r.get(0).map_err(map_err)?, r.get(1).map_err(map_err)?)),
            None => None,
        };
        if row.map(|(_, k)| k) != key {
            if let (None, Some(k)) = (first_run, key) {
                first_run = Some(k);
                if skip > 0 {
                    let seen = ties.rowids.len() as u64;
                    ties.rowids = run_rowids(tx, filter, args, k)?;
                    ties.skip = (ties.rowids.len() as u64).saturating_sub(seen);
                }
            }
            if !ties.end_run() {
                break;
            }
        }
        let Some((rowid, k)) = row else {
            break;
        };
        key = Some(k);
        ties.rowids.push(rowid);
    }
    Ok((ties.page, first_run))
}

/// The rowids of the rows with this sortindex.
fn run_rowids(
    tx: &Transaction,
    filter: &str,
    args: &[Value],
    sortindex: Option<i64>,
) -> DbResult<Vec<i64>> {
    let mut args = args.to_vec();
    let run = match sortindex {
        Some(s) => {
            args.push(s.into());
            " AND sortindex = ?"
        }
        None => " AND sortindex IS NULL",
    };
    let sql = format!("SELECT rowid FROM bso{filter}{run}");
    let mut stmt = tx.prepare_cached(&sql).map_err(map_err)?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| r.get(0))
        .map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}

/// The rowids of a sort=index page, gathered a run of equal sortindex at a
/// time.
struct Ties {
    /// Rows still to skip.
    skip: u64,
    /// The current run, in index order.
    rowids: Vec<i64>,
    /// The page's rowids, in page order.
    page: Vec<i64>,
    /// How many the page needs.
    want: u64,
}

impl Ties {
    /// Adds the run that just ended to the page, past the rows still to skip,
    /// in rowid order; false: the page has all it needs.
    fn end_run(&mut self) -> bool {
        let n = self.rowids.len() as u64;
        if self.skip >= n {
            self.skip -= n;
        } else {
            self.rowids.sort_unstable_by(|a, b| b.cmp(a));
            let room = self.want - self.page.len() as u64;
            let take = (n - self.skip).min(room) as usize;
            let from = self.skip as usize;
            self.page.extend_from_slice(&self.rowids[from..from + take]);
            self.skip = 0;
        }
        self.rowids.clear();
        (self.page.len() as u64) < self.want
    }
}

/// A record from the columns of a listing (`id, modified[, payload,
/// sortindex]`), which start at column `first`.
fn read_bso(r: &rusqlite::Row, first: usize, full: bool) -> rusqlite::Result<Bso> {
    Ok(Bso {
        id: r.get(first)?,
        modified: r.get(first + 1)?,
        payload: if full {
            r.get(first + 2)?
        } else {
            String::new()
        },
        sortindex: if full { r.get(first + 3)? } else { None },
    })
}

/// Where a page starts, from its offset: the `modified` bound to add to the WHERE
/// clause (`>=` going oldest first, `<=` otherwise) and how many rows to skip
/// from there. Every engine pages the same way, so the offsets they hand out mean
/// the same thing.
pub(crate) fn offset_filter(q: &BsoQuery) -> (Option<(&'static str, Ms)>, u64) {
    match q.offset {
        Some(Offset::Rows(n)) => (None, n),
        Some(Offset::Bound { bound, skip }) => {
            let clause = match q.sort {
                Sort::Oldest => " AND modified >= ?",
                _ => " AND modified <= ?",
            };
            (Some((clause, bound)), skip)
        }
        None => (None, 0),
    }
}

/// What the offset of the next page needs to know about the rows returned.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// How many rows were returned.
    pub(crate) returned: u64,
    /// The `modified` of the last one.
    last: Option<Ms>,
    /// How many rows at the end share that `modified`.
    at_last: u64,
}

impl Tail {
    pub(crate) fn push(&mut self, modified: Ms) {
        self.returned += 1;
        if self.last == Some(modified) {
            self.at_last += 1;
        } else {
            self.last = Some(modified);
            self.at_last = 1;
        }
    }
}

/// The offset that continues after `items` (a non-empty page cut short by
/// `limit` or by the budget: either way a prefix of the sorted rows).
pub(crate) fn next(q: &BsoQuery, tail: &Tail, skip: u64) -> Offset {
    let returned = tail.returned;
    let last = match (q.sort, q.offset, tail.last) {
        (Sort::Index, _, _) | (_, Some(Offset::Rows(_)), _) | (_, _, None) => {
            return Offset::Rows(skip + returned)
        }
        (_, _, Some(last)) => last,
    };
    let at_bound = tail.at_last;
    if let Some(Offset::Bound { bound, skip }) = q.offset {
        // The whole page sat at the old bound: the rows skipped before still count.
        if at_bound == returned && bound == last {
            return Offset::Bound {
                bound,
                skip: skip + returned,
            };
        }
    }
    Offset::Bound {
        bound: last,
        skip: at_bound,
    }
}

pub fn get_bso(
    s: &mut SqliteDb,
    uid: Uid,
    collection: &str,
    id: &str,
    pre: Precondition,
) -> DbResult<Bso> {
    let (tx, cid) = begin_read(s, collection)?;
    let Some(cid) = cid else {
        pre.check(0)?;
        return Err(DbError::NotFound);
    };
    let bso = live_bso(&tx, uid, cid, id).map_err(map_err)?;
    pre.check(bso.as_ref().map(|b| b.modified).unwrap_or(0))?;
    bso.ok_or(DbError::NotFound)
}

/// A record that has not expired.
pub fn live_bso(conn: &Connection, uid: Uid, cid: i64, id: &str) -> rusqlite::Result<Option<Bso>> {
    conn.prepare_cached(
        "SELECT id, modified, payload, sortindex FROM bso
         WHERE userid = ?1 AND collection = ?2 AND id = ?3 AND ttl > ?4",
    )?
    .query_row(rusqlite::params![uid, cid, id, now_s()], |r| {
        Ok(Bso {
            id: r.get(0)?,
            modified: r.get(1)?,
            payload: r.get(2)?,
            sortindex: r.get(3)?,
        })
    })
    .optional()
}

#[cfg(test)]
mod tests {
    use super::super::{prepare, Location, SqliteDb};
    use crate::db::{
        BatchLimits, BsoQuery, BsoUpdate, PageBudget, Precondition, Sort, StorageDb, WriteCtx,
    };

    fn weigh(b: &crate::db::Bso) -> u64 {
        b.payload.len() as u64
    }

    /// Pages cut by the budget (not by `limit`) still continue exactly where
    /// they stopped, in every sort order, also among equal timestamps.
    #[test]
    fn pages_cut_by_the_budget_cover_everything_once() {
        let (conn, _) = prepare(&Location::Memory).unwrap();
        let mut db = SqliteDb::from_connection(conn).unwrap();
        let ctx = WriteCtx {
            uid: crate::uid::Uid::new(1).unwrap(),
            collection: "c",
            precondition: Precondition::None,
            quota: None,
            batch_limits: BatchLimits {
                records: 100,
                bytes: 1 << 20,
            },
        };
        // Three writes of ten records: runs of equal `modified`.
        for w in 0..3 {
            let items: Vec<BsoUpdate> = (0..10)
                .map(|i| BsoUpdate {
                    id: format!("r{w}{i}"),
                    sortindex: Some(i % 4),
                    payload: Some("x".repeat(10 + i as usize)),
                    ttl: None,
                })
                .collect();
            db.post_bsos(ctx, &items).unwrap();
        }
        for sort in [Sort::Newest, Sort::Oldest, Sort::Index] {
            for limit in [None, Some(7)] {
                let mut q = BsoQuery {
                    sort,
                    limit,
                    full: true,
                    budget: Some(PageBudget { max: 40, weigh }),
                    ..BsoQuery::default()
                };
                let mut seen = Vec::new();
                for _ in 0..100 {
                    let page = db
                        .get_bsos(
                            crate::uid::Uid::new(1).unwrap(),
                            "c",
                            &q,
                            Precondition::None,
                        )
                        .unwrap();
                    assert!(!page.items.is_empty());
                    let weight: u64 = page.items.iter().map(weigh).sum();
                    assert!(page.items.len() == 1 || weight <= 40);
                    seen.extend(page.items.into_iter().map(|b| b.id));
                    match page.next_offset {
                        Some(next) => q.offset = Some(next),
                        None => break,
                    }
                }
                let mut unique = seen.clone();
                unique.sort();
                unique.dedup();
                assert_eq!((seen.len(), unique.len()), (30, 30), "{sort:?} {limit:?}");
            }
        }
    }

    /// sort=index pages, reached by paging or by jumping to any offset, are
    /// exactly slices of `ORDER BY sortindex DESC, rowid DESC` over the live
    /// records: with runs of equal sortindex whose ttls disagree with their
    /// rowids, NULLs, and expired records in between.
    #[test]
    fn index_pages_are_slices_of_the_sorted_collection() {
        let (conn, _) = prepare(&Location::Memory).unwrap();
        let mut db = SqliteDb::from_connection(conn).unwrap();
        let uid = crate::uid::Uid::new(1).unwrap();
        let ctx = WriteCtx {
            uid,
            collection: "c",
            precondition: Precondition::None,
            quota: None,
            batch_limits: BatchLimits {
                records: 100,
                bytes: 1 << 20,
            },
        };
        let seed = BsoUpdate {
            id: "seed".into(),
            sortindex: Some(2),
            payload: Some("s".into()),
            ttl: None,
        };
        db.post_bsos(ctx, &[seed]).unwrap();
        let now = super::now_s();
        let conn = db.connection();
        let cid: i64 = conn
            .query_row("SELECT collection FROM bso WHERE id = 'seed'", [], |r| {
                r.get(0)
            })
            .unwrap();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for i in 0..80i64 {
            let sortindex = [None, Some(0), Some(1), Some(2), Some(-3), Some(7)][rand(6) as usize];
            let ttl = match rand(5) {
                0 => now - 10,
                1 | 2 => now + 1000 + rand(50) as i64,
                _ => 2_100_000_000,
            };
            conn.execute(
                "INSERT INTO bso (rowid, userid, collection, id, sortindex, modified,
                   payload, payload_size, ttl) VALUES (?1, 1, ?2, ?3, ?4, 1000, 'p', 1, ?5)",
                rusqlite::params![
                    1000 + rand(1_000_000) as i64 * 100 + i,
                    cid,
                    format!("r{i}"),
                    sortindex,
                    ttl
                ],
            )
            .unwrap();
        }
        let expected: Vec<String> = conn
            .prepare(
                "SELECT id FROM bso WHERE userid = 1 AND collection = ?1 AND ttl > ?2
                 ORDER BY sortindex DESC, rowid DESC",
            )
            .unwrap()
            .query_map(rusqlite::params![cid, now], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(expected.len() > 40, "{}", expected.len());
        let n = expected.len() as u64;
        let page = |db: &mut SqliteDb, q: &BsoQuery| {
            let p = db.get_bsos(uid, "c", q, Precondition::None).unwrap();
            let ids: Vec<String> = p.items.into_iter().map(|b| b.id).collect();
            (ids, p.next_offset)
        };
        // Every offset, with a few limits, and with a range of `modified` (the
        // sorting path) as well as without (the index walk).
        for newer in [None, Some(1)] {
            for limit in [None, Some(1), Some(3), Some(10)] {
                for skip in 0..=n + 1 {
                    let q = BsoQuery {
                        sort: Sort::Index,
                        limit,
                        newer,
                        offset: (skip > 0).then_some(crate::db::Offset::Rows(skip)),
                        full: true,
                        ..BsoQuery::default()
                    };
                    let (ids, next) = page(&mut db, &q);
                    let from = skip.min(n) as usize;
                    let to = limit.map_or(n, |l| (skip + l).min(n)) as usize;
                    assert_eq!(ids, expected[from..to], "{newer:?} {limit:?} {skip}");
                    let rest = (to as u64) < n;
                    assert_eq!(
                        next,
                        rest.then_some(crate::db::Offset::Rows(to as u64)),
                        "{newer:?} {limit:?} {skip}"
                    );
                }
            }
        }
        // Pages cut by the budget, followed to the end.
        let mut q = BsoQuery {
            sort: Sort::Index,
            limit: Some(7),
            full: true,
            budget: Some(PageBudget { max: 3, weigh }),
            ..BsoQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let (ids, next) = page(&mut db, &q);
            seen.extend(ids);
            match next {
                Some(o) => q.offset = Some(o),
                None => break,
            }
        }
        assert_eq!(seen, expected);
    }
}
