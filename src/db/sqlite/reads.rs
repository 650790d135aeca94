//! Read queries. Each runs in one deferred transaction, so it sees one
//! consistent snapshot even while other workers write (WAL).

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
    let SqliteDb { conn, collections } = s;
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
    let SqliteDb { conn, collections } = s;
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
        "SELECT id, modified, payload, sortindex FROM bso"
    } else {
        "SELECT id, modified FROM bso"
    };
    // No index orders by sortindex (the Python schema has none, and we add no
    // indexes to its tables): sort only (sortindex, rowid) pairs, then fetch
    // the page's records, so the sort never copies payloads.
    let mut sql = String::from(match q.sort {
        Sort::Index => "SELECT rowid FROM bso",
        _ => columns,
    });
    sql.push_str(" WHERE userid = ? AND collection = ? AND ttl > ?");
    let mut args: Vec<Value> = vec![uid.get().into(), cid.into(), now_s().into()];
    if let Some(newer) = q.newer {
        sql.push_str(" AND modified > ?");
        args.push(newer.into());
    }
    if let Some(older) = q.older {
        sql.push_str(" AND modified < ?");
        args.push(older.into());
    }
    if let Some(ids) = &q.ids {
        sql.push_str(" AND id IN (");
        for (i, id) in ids.iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
            args.push(id.clone().into());
        }
        sql.push(')');
    }
    let (bound, skip) = offset_filter(q);
    if let Some((clause, bound)) = bound {
        sql.push_str(clause);
        args.push(bound.into());
    }
    // rowid makes ties come back in the same order on every page; the
    // (userid, collection, modified) index already holds it, so no sort step.
    sql.push_str(match q.sort {
        Sort::Newest => " ORDER BY modified DESC, rowid DESC",
        Sort::Oldest => " ORDER BY modified ASC, rowid ASC",
        Sort::Index => " ORDER BY sortindex DESC, rowid DESC",
    });
    sql.push_str(" LIMIT ? OFFSET ?");
    if q.sort == Sort::Index {
        sql = format!("{columns} WHERE rowid IN ({sql}) ORDER BY sortindex DESC, rowid DESC");
    }
    let fetch = q
        .limit
        .map(|l| l.saturating_add(1))
        .unwrap_or(u64::MAX >> 1);
    args.push((fetch.min(i64::MAX as u64) as i64).into());
    args.push((skip.min(i64::MAX as u64) as i64).into());

    // Rows are read one at a time and handed on, and the page ends at
    // `limit` or at the budget, whichever comes first: memory does not grow
    // with the collection.
    let mut stmt = tx.prepare_cached(&sql).map_err(map_err)?;
    let mut rows = stmt.query(params_from_iter(args)).map_err(map_err)?;
    let mut tail = Tail::default();
    let mut weight = 0u64;
    let mut more = false;
    while let Some(r) = rows.next().map_err(map_err)? {
        if q.limit.is_some_and(|limit| tail.returned >= limit) {
            more = true;
            break;
        }
        let bso = Bso {
            id: r.get(0).map_err(map_err)?,
            modified: r.get(1).map_err(map_err)?,
            payload: if q.full {
                r.get(2).map_err(map_err)?
            } else {
                String::new()
            },
            sortindex: if q.full {
                r.get(3).map_err(map_err)?
            } else {
                None
            },
        };
        if let Some(budget) = q.budget {
            let w = (budget.weigh)(&bso);
            if tail.returned > 0 && weight.saturating_add(w) > budget.max {
                more = true;
                break;
            }
            weight = weight.saturating_add(w);
        }
        tail.push(bso.modified);
        each(bso);
    }
    Ok(PageEnd {
        count: tail.returned,
        next_offset: more.then(|| next(q, &tail, skip)),
        last_modified,
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
}
