//! Checks that every statement the request paths run uses an index: cost must
//! grow with the page asked for, not with the table. The statements are not
//! listed by hand (they would drift): a workload runs through the real
//! `SqliteDb` with SQLite's trace hook on, and each distinct statement it
//! executed is then `EXPLAIN QUERY PLAN`ned.

use crate::uid::Uid;
use std::collections::BTreeSet;
use std::sync::Mutex;

use rusqlite::Connection;

use super::{prepare, Location, SqliteDb};
use crate::db::{
    BatchLimits, BsoQuery, BsoUpdate, NewUser, Offset, Precondition, Sort, StorageDb, UserPlan,
    UsersDb, WriteCtx,
};

static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn record(sql: &str) {
    let sql = sql.trim();
    let skip = [
        "BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "CREATE", "ALTER", "DROP", "--",
    ];
    if !skip.iter().any(|p| sql.to_ascii_uppercase().starts_with(p)) {
        SEEN.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sql.to_string());
    }
}

fn workload(db: &mut SqliteDb) {
    let uid = Uid::new(7).unwrap();
    let ctx = |collection| WriteCtx {
        uid,
        collection,
        precondition: Precondition::IfUnmodifiedSince(i64::MAX / 4),
        quota: Some(1 << 30),
        batch_limits: BatchLimits {
            records: 10_000,
            bytes: 1 << 30,
        },
    };
    let items: Vec<BsoUpdate> = (0..20)
        .map(|i| BsoUpdate {
            id: format!("r{i}"),
            sortindex: Some(i),
            payload: Some("x".repeat(50)),
            ttl: (i % 2 == 0).then_some(3600),
        })
        .collect();
    db.post_bsos(ctx("history"), &items).unwrap();
    db.post_bsos(ctx("history"), &items).unwrap();
    db.put_bso(ctx("history"), &items[0]).unwrap();
    let (batch, _) = db.create_batch(ctx("tabs"), &items).unwrap();
    db.append_batch(ctx("tabs"), batch, &items).unwrap();
    db.commit_batch(ctx("tabs"), Some(batch), &items).unwrap();
    db.commit_batch(ctx("tabs"), None, &items).unwrap();
    for sort in [Sort::Newest, Sort::Oldest, Sort::Index] {
        for offset in [
            None,
            Some(Offset::Rows(3)),
            Some(Offset::Bound {
                bound: i64::MAX / 4,
                skip: 1,
            }),
        ] {
            if sort == Sort::Index && matches!(offset, Some(Offset::Bound { .. })) {
                continue;
            }
            let q = BsoQuery {
                sort,
                offset,
                limit: Some(5),
                full: true,
                newer: Some(1),
                older: Some(i64::MAX / 4),
                ..BsoQuery::default()
            };
            db.get_bsos(uid, "history", &q, Precondition::None).unwrap();
        }
    }
    // sort=index over the whole collection walks our sortindex index: from
    // the start, and from offsets inside a run of sortindexes and of NULLs.
    let nulls: Vec<BsoUpdate> = (0..3)
        .map(|i| BsoUpdate {
            id: format!("n{i}"),
            sortindex: None,
            payload: Some("x".into()),
            ttl: None,
        })
        .collect();
    db.post_bsos(ctx("history"), &nulls).unwrap();
    for skip in [0, 3, 21] {
        let q = BsoQuery {
            sort: Sort::Index,
            offset: (skip > 0).then_some(Offset::Rows(skip)),
            limit: Some(5),
            full: true,
            ..BsoQuery::default()
        };
        db.get_bsos(uid, "history", &q, Precondition::None).unwrap();
    }
    for sort in [Sort::Newest, Sort::Index] {
        let ids = BsoQuery {
            ids: Some(vec!["r1".into(), "r2".into()]),
            sort,
            ..BsoQuery::default()
        };
        db.get_bsos(uid, "history", &ids, Precondition::None)
            .unwrap();
    }
    db.get_bso(uid, "history", "r1", Precondition::None)
        .unwrap();
    db.collection_timestamps(uid).unwrap();
    db.collection_counts(uid).unwrap();
    db.collection_usage(uid).unwrap();
    db.total_usage(uid).unwrap();
    db.storage_timestamp(uid).unwrap();
    db.delete_bsos(ctx("history"), &["r3".into(), "r4".into()])
        .unwrap();
    db.delete_bso(ctx("history"), "r5").unwrap();
    db.delete_collection(ctx("tabs")).unwrap();
    db.delete_storage(uid, Precondition::None).unwrap();
    let new = NewUser {
        generation: 1,
        client_state: "aa".into(),
        keys_changed_at: Some(1),
        node: "n".into(),
    };
    db.token_user("a@b", 1, &mut |_| UserPlan::Create(new.clone()))
        .unwrap();
    db.token_user("a@b", 2, &mut |_| UserPlan::Keep).unwrap();
    db.token_user("a@b", 3, &mut |_| {
        UserPlan::Replace(NewUser {
            client_state: "bb".into(),
            ..new.clone()
        })
    })
    .unwrap();
    db.uid_revoked(uid).unwrap();
    db.token_user("a@b", 4, &mut |s| UserPlan::Update {
        uid: s.rows[0].uid,
        generation: 9,
        keys_changed_at: Some(9),
    })
    .unwrap();
}

/// The plan lines of one statement.
fn plan(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
    let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn every_request_statement_uses_an_index() {
    let dir = std::env::temp_dir().join(format!("syncserver-fcgi-plans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let location = Location::File(dir.join("plans.db"));
    let (conn, _) = prepare(&location).unwrap();
    let mut db = SqliteDb::from_connection(conn).unwrap();
    db.connection().trace(Some(record));
    workload(&mut db);
    db.connection().trace(None);

    let seen = SEEN.lock().unwrap().clone();
    assert!(seen.len() > 25, "too few statements traced: {seen:#?}");
    let conn = db.connection();
    let mut bad = Vec::new();
    for sql in &seen {
        for line in plan(conn, sql) {
            // Loading the small collections map, and counting accounts when a
            // new one signs up, may read whole (small) tables.
            // Dropping a user's open batches (rare: DELETE of a collection or
            // of all storage) scans the batch tables, which only ever hold
            // batches younger than two hours plus the purge grace period; the
            // Python schema keys them by batch id first.
            let small = line.starts_with("SCAN collections")
                || (line.starts_with("SCAN users") && sql.contains("COUNT(DISTINCT email)"))
                || (line.starts_with("SCAN batch_upload") && sql.starts_with("DELETE"));
            // A SELECT of subqueries (the next uid) reads no table itself.
            let no_table = line == "SCAN CONSTANT ROW";
            let full_scan =
                line.starts_with("SCAN ") && !line.contains("USING") && !small && !no_table;
            // sort=index with a range of `modified` or a list of ids sorts the
            // (sortindex, rowid) pairs of those rows, then the page's records;
            // over the whole collection it walks our sortindex index.
            let filtered = ["modified >", "modified <", "id IN"]
                .iter()
                .any(|f| sql.contains(f));
            let sorts = line.contains("TEMP B-TREE")
                && !(filtered && sql.contains("sortindex DESC, rowid DESC"));
            if full_scan || sorts {
                bad.push(format!("{line}\n    in: {sql}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        bad.is_empty(),
        "statements without a usable index:\n{}",
        bad.join("\n")
    );
}
