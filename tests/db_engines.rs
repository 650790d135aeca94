//! One backend-neutral suite for every database engine: SQLite always (a temp
//! file), MySQL/MariaDB when `SYNCSERVER_TEST_MYSQL` names a server and PostgreSQL
//! when `SYNCSERVER_TEST_POSTGRESQL` does (`scripts/engines` starts both). Each
//! case gets a fresh database, dropped at the end; an engine without a server is
//! reported as skipped (a failure under CI unless skipping is allowed).

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use common::engines::{Engine, TestDatabase};
use syncserver_fcgi::config::DatabaseUri;
use syncserver_fcgi::db::admin::AdminDb;
use syncserver_fcgi::db::nodes::{Assigned, NodeChange, NodeStore, NodeUser, NodesDb};
use syncserver_fcgi::db::sql::{connect, Conn, Row};
use syncserver_fcgi::db::{
    open, open_admin, open_nodes, AdminAccess, BatchLimits, BsoQuery, BsoUpdate, Database, DbError,
    NewUser, Offset, Opened, PageBudget, Precondition, ServerParams, Sort, UserPlan, WriteCtx,
};
use syncserver_fcgi::timestamp::now_ms;
use syncserver_fcgi::uid::Uid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Mysql,
    Postgresql,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh database of one engine, removed on drop.
struct TestDb {
    kind: Kind,
    uri: DatabaseUri,
    /// SQLite: the file.
    file: Option<PathBuf>,
    /// Server engines: the database (dropped with us) and the driver's view of it.
    _server: Option<TestDatabase>,
    params: Option<ServerParams>,
}

/// Every engine available, each with a fresh database for `case`.
fn engines(case: &str) -> Vec<TestDb> {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("sfcgi_{}_{case}_{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("syncserver.db");
    let mut out = vec![TestDb {
        kind: Kind::Sqlite,
        uri: DatabaseUri::Sqlite(file.clone()),
        file: Some(file),
        _server: None,
        params: None,
    }];
    for (engine, kind) in [
        (Engine::Mysql, Kind::Mysql),
        (Engine::Postgresql, Kind::Postgresql),
    ] {
        let Some(db) = TestDatabase::create(engine, case) else {
            continue;
        };
        let uri = DatabaseUri::parse(&db.uri).expect("the test database's URI");
        let params = match &uri {
            DatabaseUri::Mysql(u) | DatabaseUri::Postgresql(u) => {
                ServerParams::from_uri(u).expect("a server URI")
            }
            other => panic!("not a server URI: {other}"),
        };
        out.push(TestDb {
            kind,
            uri,
            file: None,
            _server: Some(db),
            params: Some(params),
        });
    }
    out
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = std::fs::remove_dir_all(file.parent().unwrap());
        }
    }
}

impl TestDb {
    fn open(&self, workers: usize) -> Opened {
        self.try_open(workers).expect("open")
    }
    fn try_open(&self, workers: usize) -> Result<Opened, DbError> {
        open(&self.uri, workers)
    }
    /// A session (a new connection each time).
    fn session(&self) -> Box<dyn Database> {
        let opened = self.open(4);
        (opened.opener)().unwrap()
    }
    fn admin(&self) -> Box<dyn AdminDb> {
        open_admin(&self.uri, AdminAccess::Write).unwrap_or_else(|e| panic!("{e}"))
    }
    /// A raw connection (server engines).
    fn raw(&self) -> Box<dyn Conn> {
        connect(self.params.as_ref().expect("a server engine")).unwrap()
    }
    fn raw_rows(&self, sql: &str) -> Vec<Row> {
        self.raw().query(sql, &[]).unwrap()
    }
}

fn uid(n: i64) -> Uid {
    Uid::new(n).unwrap()
}

fn ctx(u: i64, collection: &str) -> WriteCtx<'_> {
    WriteCtx {
        uid: uid(u),
        collection,
        precondition: Precondition::None,
        quota: None,
        batch_limits: BatchLimits {
            records: 100,
            bytes: 1 << 20,
        },
    }
}

fn item(id: &str, payload: Option<&str>, sortindex: Option<i64>, ttl: Option<i64>) -> BsoUpdate {
    BsoUpdate {
        id: id.into(),
        sortindex,
        payload: payload.map(str::to_string),
        ttl,
    }
}

fn ids(db: &mut dyn Database, u: i64, collection: &str) -> Vec<String> {
    let mut got: Vec<String> = db
        .get_bsos(uid(u), collection, &BsoQuery::default(), Precondition::None)
        .unwrap()
        .items
        .into_iter()
        .map(|b| b.id)
        .collect();
    got.sort();
    got
}

#[test]
fn schema_created_reopened_and_raced() {
    for t in engines("schema") {
        // Several processes starting at once on an empty database all succeed.
        let barrier = Arc::new(Barrier::new(4));
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let b = Arc::clone(&barrier);
                    let t = &t;
                    s.spawn(move || {
                        b.wait();
                        t.try_open(2).map(|_| ())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{:?}: {e}", t.kind));
            }
        });
        let again = t.open(2);
        assert!(
            again.changes.is_empty(),
            "{:?}: {:?}",
            t.kind,
            again.changes
        );
        if t.kind == Kind::Mysql {
            let rows = t.raw_rows(
                "SELECT table_name, table_collation FROM information_schema.tables
                 WHERE table_schema = DATABASE() ORDER BY table_name",
            );
            for r in rows {
                let (name, coll) = (r.text(0).unwrap(), r.text(1).unwrap());
                if [
                    "bso",
                    "collections",
                    "user_collections",
                    "batch_uploads",
                    "batch_upload_items",
                ]
                .contains(&name.as_str())
                {
                    assert_eq!(coll, "latin1_swedish_ci", "{name}");
                }
            }
        }
    }
}

#[test]
fn admin_open_needs_a_database_unless_creating() {
    for t in engines("adminopen") {
        let missing = open_admin(&t.uri, AdminAccess::Read);
        assert!(
            matches!(
                missing,
                Err(syncserver_fcgi::db::AdminOpenError::Missing(_))
            ),
            "{:?}",
            t.kind
        );
        let created = open_admin(&t.uri, AdminAccess::Create);
        let mut admin = created.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(admin.stats().unwrap().user_rows, 0);
    }
}

#[test]
fn put_get_list_paging_preconditions() {
    for t in engines("rw") {
        let mut db = t.session();
        let k = t.kind;
        // Three writes of ten records: runs of equal `modified`.
        let mut stamps = Vec::new();
        for w in 0..3 {
            let items: Vec<BsoUpdate> = (0..10)
                .map(|i| {
                    item(
                        &format!("r{w}{i}"),
                        Some(&"x".repeat(10 + i)),
                        Some(i as i64 % 4),
                        None,
                    )
                })
                .collect();
            stamps.push(db.post_bsos(ctx(1, "c"), &items).unwrap().modified);
        }
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{k:?} {stamps:?}");
        fn weigh(b: &syncserver_fcgi::db::Bso) -> u64 {
            b.payload.len() as u64
        }
        for sort in [Sort::Newest, Sort::Oldest, Sort::Index] {
            for (limit, budget) in [(None, Some(40)), (Some(7), None), (Some(4), Some(60))] {
                let mut q = BsoQuery {
                    sort,
                    limit,
                    full: true,
                    budget: budget.map(|max| PageBudget { max, weigh }),
                    ..BsoQuery::default()
                };
                let mut seen = Vec::new();
                for _ in 0..100 {
                    let page = db.get_bsos(uid(1), "c", &q, Precondition::None).unwrap();
                    assert!(!page.items.is_empty());
                    assert_eq!(page.last_modified, Some(stamps[2]));
                    seen.extend(
                        page.items
                            .into_iter()
                            .map(|b| (b.modified, b.sortindex, b.id)),
                    );
                    match page.next_offset {
                        Some(next) => q.offset = Some(next),
                        None => break,
                    }
                }
                let mut unique: Vec<_> = seen.iter().map(|s| s.2.clone()).collect();
                unique.sort();
                unique.dedup();
                assert_eq!(
                    (seen.len(), unique.len()),
                    (30, 30),
                    "{k:?} {sort:?} {limit:?}"
                );
                let ordered = seen.windows(2).all(|w| match sort {
                    Sort::Newest => w[0].0 >= w[1].0,
                    Sort::Oldest => w[0].0 <= w[1].0,
                    Sort::Index => w[0].1 >= w[1].1,
                });
                assert!(ordered, "{k:?} {sort:?}");
            }
        }
        // newer/older, ids, and a Rows offset.
        let q = BsoQuery {
            newer: Some(stamps[0]),
            older: Some(stamps[2]),
            ..BsoQuery::default()
        };
        assert_eq!(
            db.get_bsos(uid(1), "c", &q, Precondition::None)
                .unwrap()
                .items
                .len(),
            10
        );
        let q = BsoQuery {
            ids: Some(vec!["r00".into(), "r29".into(), "nope".into()]),
            ..BsoQuery::default()
        };
        assert_eq!(
            db.get_bsos(uid(1), "c", &q, Precondition::None)
                .unwrap()
                .items
                .len(),
            2
        );
        let q = BsoQuery {
            sort: Sort::Index,
            offset: Some(Offset::Rows(25)),
            ..BsoQuery::default()
        };
        assert_eq!(
            db.get_bsos(uid(1), "c", &q, Precondition::None)
                .unwrap()
                .items
                .len(),
            5
        );

        // PUT keeps fields not given; preconditions.
        let put = db
            .put_bso(ctx(1, "c"), &item("r00", None, Some(9), None))
            .unwrap();
        let b = db.get_bso(uid(1), "c", "r00", Precondition::None).unwrap();
        assert_eq!(
            (b.payload.as_str(), b.sortindex, b.modified),
            ("xxxxxxxxxx", Some(9), stamps[0]),
            "{k:?}"
        );
        assert!(put.modified > stamps[2]);
        let mut pre = ctx(1, "c");
        pre.precondition = Precondition::IfUnmodifiedSince(stamps[0] - 10);
        assert!(matches!(
            db.put_bso(pre, &item("r00", Some("new"), None, None)),
            Err(DbError::PreconditionFailed(ts)) if ts == stamps[0]
        ));
        assert!(matches!(
            db.post_bsos(pre, &[item("zz", Some("new"), None, None)]),
            Err(DbError::PreconditionFailed(_))
        ));
        assert!(matches!(
            db.get_bso(uid(1), "c", "r00", Precondition::IfModifiedSince(stamps[0])),
            Err(DbError::NotModified(_))
        ));
        assert!(matches!(
            db.get_bso(uid(1), "c", "none", Precondition::None),
            Err(DbError::NotFound)
        ));
        assert!(matches!(
            db.get_bso(uid(1), "nocoll", "none", Precondition::None),
            Err(DbError::NotFound)
        ));
        // Other users see nothing.
        assert!(ids(db.as_mut(), 2, "c").is_empty());
        // Duplicate ids in one POST merge.
        db.post_bsos(
            ctx(1, "d"),
            &[
                item("a", Some("1"), Some(1), None),
                item("a", None, Some(2), None),
            ],
        )
        .unwrap();
        let b = db.get_bso(uid(1), "d", "a", Precondition::None).unwrap();
        assert_eq!((b.payload.as_str(), b.sortindex), ("1", Some(2)), "{k:?}");
    }
}

/// sort=index lists by sortindex, NULLs last, ties in the engine's order
/// (rowid on SQLite, newest first; the id elsewhere), read through our
/// sortindex index; a page at any offset is that listing's slice.
#[test]
fn sort_index_ties_nulls_and_offsets() {
    for t in engines("sortindex") {
        let mut db = t.session();
        let k = t.kind;
        let sortindexes = [
            Some(1),
            None,
            Some(1),
            Some(3),
            None,
            Some(1),
            Some(-2),
            None,
        ];
        let mut written = Vec::new();
        for (i, s) in sortindexes.iter().enumerate() {
            // Ids out of step with the writes; ttls differing within a run.
            let id = format!("k{}", (i * 5) % 8);
            let ttl = (i % 3 == 0).then_some(1000 + i as i64);
            db.put_bso(ctx(1, "s"), &item(&id, Some("p"), *s, ttl))
                .unwrap();
            written.push((id, *s));
        }
        let mut expected = written.clone();
        expected.reverse(); // later writes first among ties on SQLite
        expected.sort_by(|a, b| match (a.1, b.1) {
            (Some(x), Some(y)) if x == y && k != Kind::Sqlite => b.0.cmp(&a.0),
            (Some(x), Some(y)) => y.cmp(&x),
            (None, None) if k != Kind::Sqlite => b.0.cmp(&a.0),
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
        });
        let expected: Vec<String> = expected.into_iter().map(|e| e.0).collect();
        let n = expected.len() as u64;
        for limit in [None, Some(1), Some(3)] {
            for skip in 0..=n {
                let q = BsoQuery {
                    sort: Sort::Index,
                    limit,
                    offset: (skip > 0).then_some(Offset::Rows(skip)),
                    full: true,
                    ..BsoQuery::default()
                };
                let page = db.get_bsos(uid(1), "s", &q, Precondition::None).unwrap();
                let got: Vec<String> = page.items.into_iter().map(|b| b.id).collect();
                let end = limit.map_or(n, |l| (skip + l).min(n));
                assert_eq!(
                    got,
                    expected[skip as usize..end as usize],
                    "{k:?} {limit:?} {skip}"
                );
                assert_eq!(
                    page.next_offset,
                    (end < n).then_some(Offset::Rows(end)),
                    "{k:?} {limit:?} {skip}"
                );
            }
        }
    }
}

#[test]
fn batches_quota_ttl_deletes_info() {
    for t in engines("batch") {
        let mut db = t.session();
        let k = t.kind;
        // A batch: create, append, commit: all at once.
        let (batch, _) = db
            .create_batch(ctx(3, "b"), &[item("a", Some("aa"), None, None)])
            .unwrap();
        assert_eq!(batch % 10, 3, "batch ids are ms + uid % 10");
        db.append_batch(
            ctx(3, "b"),
            batch,
            &[item("b", Some("bb"), Some(2), Some(100))],
        )
        .unwrap();
        assert!(
            ids(db.as_mut(), 3, "b").is_empty(),
            "{k:?}: nothing before commit"
        );
        let out = db
            .commit_batch(
                ctx(3, "b"),
                Some(batch),
                &[item("c", Some("cc"), None, None)],
            )
            .unwrap();
        assert_eq!(ids(db.as_mut(), 3, "b"), ["a", "b", "c"], "{k:?}");
        let page = db
            .get_bsos(
                uid(3),
                "b",
                &BsoQuery {
                    full: true,
                    ..Default::default()
                },
                Precondition::None,
            )
            .unwrap();
        assert!(page.items.iter().all(|b| b.modified == out.modified));
        assert!(matches!(
            db.append_batch(ctx(3, "b"), batch, &[item("d", Some("dd"), None, None)]),
            Err(DbError::InvalidBatch)
        ));
        // Limits counted on what the batch holds; a refused batch writes nothing.
        let mut small = ctx(3, "b2");
        small.batch_limits.records = 2;
        let (b2, _) = db
            .create_batch(small, &[item("a", Some("1"), None, None)])
            .unwrap();
        db.append_batch(small, b2, &[item("a", Some("2"), None, None)])
            .unwrap();
        assert!(matches!(
            db.commit_batch(
                small,
                Some(b2),
                &[
                    item("b", Some("1"), None, None),
                    item("c", Some("1"), None, None)
                ]
            ),
            Err(DbError::BatchTooLarge)
        ));
        assert!(ids(db.as_mut(), 3, "b2").is_empty());
        assert!(matches!(
            db.commit_batch(
                small,
                None,
                &[
                    item("x", None, None, None),
                    item("y", None, None, None),
                    item("z", None, None, None)
                ]
            ),
            Err(DbError::BatchTooLarge)
        ));
        // Quota: live records plus open batches, in UTF-8 bytes.
        let mut q = ctx(4, "q");
        q.quota = Some(10);
        let w = db
            .post_bsos(q, &[item("a", Some("é1234"), None, None)])
            .unwrap();
        assert_eq!(w.quota_left, Some(4), "{k:?}");
        assert!(matches!(
            db.create_batch(q, &[item("b", Some("12345"), None, None)]),
            Err(DbError::OverQuota)
        ));
        assert!(matches!(
            db.post_bsos(q, &[item("b", Some("1234"), None, None)]),
            Err(DbError::OverQuota)
        ));
        assert_eq!(db.total_usage(uid(4)).unwrap(), 6);
        // TTL: an expired record is gone from reads and counts.
        db.post_bsos(
            ctx(5, "t"),
            &[
                item("dead", Some("x"), None, Some(0)),
                item("live", Some("y"), None, Some(3600)),
            ],
        )
        .unwrap();
        // ttl 0 expires at the end of the write's second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(ids(db.as_mut(), 5, "t"), ["live"], "{k:?}");
        let counts = db.collection_counts(uid(5)).unwrap();
        assert_eq!((counts[0].name.as_str(), counts[0].value), ("t", 1));
        // Rewriting an expired record brings it back without its old payload.
        db.put_bso(ctx(5, "t"), &item("dead", None, Some(3), None))
            .unwrap();
        let b = db.get_bso(uid(5), "t", "dead", Precondition::None).unwrap();
        assert_eq!((b.payload.as_str(), b.sortindex), ("", Some(3)), "{k:?}");
        // Info views.
        db.post_bsos(ctx(5, "u"), &[item("a", Some("abc"), None, None)])
            .unwrap();
        let mut usage = db.collection_usage(uid(5)).unwrap();
        usage.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            usage
                .iter()
                .map(|c| (c.name.as_str(), c.value))
                .collect::<Vec<_>>(),
            [("t", 1), ("u", 3)]
        );
        let stamps = db.collection_timestamps(uid(5)).unwrap();
        assert_eq!(stamps.len(), 2);
        let top = db.storage_timestamp(uid(5)).unwrap();
        assert_eq!(top, stamps.iter().map(|c| c.value).max().unwrap());
        // Deletes.
        let before = db
            .delete_bsos(ctx(3, "b"), &["a".into(), "b".into()])
            .unwrap();
        assert_eq!(ids(db.as_mut(), 3, "b"), ["c"]);
        assert!(db.delete_bso(ctx(3, "b"), "c").unwrap() > before);
        assert!(matches!(
            db.delete_bso(ctx(3, "b"), "c"),
            Err(DbError::NotFound)
        ));
        db.delete_collection(ctx(5, "u")).unwrap();
        assert_eq!(db.collection_timestamps(uid(5)).unwrap().len(), 1);
        db.delete_storage(uid(5), Precondition::None).unwrap();
        assert!(db.collection_timestamps(uid(5)).unwrap().is_empty());
        assert_eq!(db.storage_timestamp(uid(5)).unwrap(), 0);
        db.ping().unwrap();
    }
}

#[test]
fn concurrent_writers_and_sign_ins() {
    for t in engines("conc") {
        let k = t.kind;
        let opened = t.open(8);
        let opener = Arc::new(opened.opener);
        // One user, four sessions writing at once: distinct, increasing
        // timestamps and every record there.
        let stamps: Vec<Vec<i64>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|w| {
                    let opener = Arc::clone(&opener);
                    s.spawn(move || {
                        let mut db = opener().unwrap();
                        (0..8)
                            .map(|i| loop {
                                match db.post_bsos(
                                    ctx(7, "c"),
                                    &[item(&format!("w{w}i{i}"), Some("p"), None, None)],
                                ) {
                                    Ok(o) => break o.modified,
                                    Err(DbError::Busy | DbError::Conflict { .. }) => continue,
                                    Err(e) => panic!("{k:?}: {e}"),
                                }
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<i64> = stamps.iter().flatten().copied().collect();
        for s in &stamps {
            assert!(s.windows(2).all(|w| w[0] < w[1]), "{k:?}");
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 32, "{k:?}: every write its own timestamp");
        let mut db = opener().unwrap();
        assert_eq!(ids(db.as_mut(), 7, "c").len(), 32);
        // Concurrent first sign-in of one email: one users row.
        let uids = sign_in_at_once(&opener, k, &["same@x"; 6]);
        assert!(uids.iter().all(|u| *u == uids[0]), "{k:?} {uids:?}");
        let users = t.admin().list_users().unwrap();
        assert_eq!(users.len(), 1, "{k:?}");
        // Concurrent first sign-ins of different emails: each its own new uid (the uid
        // is chosen under a lock of its own: the per-email locks do not order them).
        let emails: Vec<String> = (0..6).map(|i| format!("u{i}@x")).collect();
        let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
        let mut uids = sign_in_at_once(&opener, k, &emails);
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), 6, "{k:?}: {uids:?}");
    }
}

/// Signs `emails` in for the first time, each from its own session, all at once;
/// their uids in order.
fn sign_in_at_once(
    opener: &Arc<syncserver_fcgi::db::Opener>,
    k: Kind,
    emails: &[&str],
) -> Vec<i64> {
    std::thread::scope(|s| {
        let barrier = Arc::new(Barrier::new(emails.len()));
        let handles: Vec<_> = emails
            .iter()
            .map(|email| {
                let opener = Arc::clone(opener);
                let barrier = Arc::clone(&barrier);
                s.spawn(move || {
                    let mut db = opener().unwrap();
                    barrier.wait();
                    let rec = db
                        .token_user(email, 1000, &mut |st| {
                            if st.rows.is_empty() {
                                UserPlan::Create(NewUser {
                                    generation: 1,
                                    client_state: "aa".into(),
                                    keys_changed_at: Some(1),
                                    node: "http://n".into(),
                                })
                            } else {
                                UserPlan::Keep
                            }
                        })
                        .unwrap_or_else(|e| panic!("{k:?} {email}: {e}"))
                        .unwrap();
                    rec.uid.get()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn new_user(db: &mut dyn Database, email: &str) -> i64 {
    db.token_user(email, 1000, &mut |st| {
        if st.rows.is_empty() {
            UserPlan::Create(NewUser {
                generation: 1,
                client_state: "".into(),
                keys_changed_at: None,
                node: "http://n".into(),
            })
        } else {
            UserPlan::Keep
        }
    })
    .unwrap()
    .unwrap()
    .uid
    .get()
}

#[test]
fn uids_and_admin() {
    for t in engines("admin") {
        let k = t.kind;
        let mut db = t.session();
        let a = new_user(db.as_mut(), "a@x");
        let b = new_user(db.as_mut(), "b@x");
        assert_eq!((a, b), (1, 2), "{k:?}");
        db.post_bsos(
            ctx(b, "c"),
            &[
                item("1", Some("12"), None, None),
                item("2", Some("x"), None, Some(0)),
            ],
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        db.meta_get_or_insert("secret", "one").unwrap();
        assert_eq!(db.meta_get_or_insert("secret", "two").unwrap(), "one");
        assert_eq!(db.meta_get("secret").unwrap().as_deref(), Some("one"));
        let mut admin = t.admin();
        let stats = admin.stats().unwrap();
        assert_eq!(
            (
                stats.accounts,
                stats.user_rows,
                stats.records,
                stats.expired_records,
                stats.bytes
            ),
            (2, 2, 1, 1, 2),
            "{k:?}"
        );
        assert!(stats.database_bytes > 0);
        let users = admin.list_users().unwrap();
        assert_eq!(users[1].records, 1);
        assert_eq!(users[1].expired_records, 1);
        let now = syncserver_fcgi::timestamp::now_secs() as i64;
        assert_eq!(admin.purge_expired(now + 1, 10).unwrap(), 1, "{k:?}");
        // Removing an account: tombstone, queued purge, uid never reused.
        assert_eq!(admin.remove_account("b@x").unwrap(), [b]);
        assert!(db.uid_revoked(uid(b)).unwrap());
        assert!(!db.uid_revoked(uid(a)).unwrap());
        assert_eq!(admin.dead_uids(false, 0).unwrap(), [b], "{k:?}");
        let purged = admin.purge_uid(b, 100).unwrap();
        assert_eq!((purged.records, purged.uids), (1, 1));
        assert!(admin.dead_uids(false, 0).unwrap().is_empty());
        assert_eq!(
            new_user(db.as_mut(), "c@x"),
            3,
            "{k:?}: a deleted account's uid is never reused"
        );
        assert!(
            admin
                .backup(&std::env::temp_dir().join("sfcgi-no-backup"))
                .is_err()
                || k == Kind::Sqlite
        );
        let _ = std::fs::remove_file(std::env::temp_dir().join("sfcgi-no-backup"));
        assert_eq!(admin.purge_batches(i64::MAX / 4, 10).unwrap(), 0);
    }
}

/// The DDL of python-sql.md, exactly as SQLAlchemy sent it (shared with
/// tests/python_db_engines.rs, which serves such a database through the binary).
const PY_MYSQL: &str = include_str!("fixtures/python_mysql.sql");
const PY_POSTGRESQL: &str = include_str!("fixtures/python_postgresql.sql");

#[test]
fn python_made_database() {
    for t in engines("python") {
        let k = t.kind;
        if k == Kind::Sqlite {
            // tests/python_db_compat.rs opens databases the real Python server wrote.
            continue;
        }
        let mut raw = t.raw();
        let script = if k == Kind::Mysql {
            PY_MYSQL
        } else {
            PY_POSTGRESQL
        };
        for ddl in common::engines::script_statements(script) {
            raw.batch(ddl).unwrap();
        }
        // As the Python server wrote them: a user through the serial/auto
        // increment, dynamic collections 1-2, records (é stored as latin1 on MySQL),
        // an open batch; on PostgreSQL also data under userid 0.
        raw.batch(
            "INSERT INTO users (service, email, generation, client_state, created_at, node)
             VALUES ('sync-1.5', 'fxa1@api.accounts.firefox.com', 5, 'aabb', 1600000000000, 'http://n')",
        )
        .unwrap();
        raw.batch("INSERT INTO collections (name) VALUES ('meta')")
            .unwrap();
        raw.batch("INSERT INTO collections (name) VALUES ('bookmarks')")
            .unwrap();
        raw.batch(
            "INSERT INTO bso (userid, collection, id, sortindex, modified, payload, payload_size, ttl)
             VALUES (1, 1, 'global', NULL, 1600000000120, '{\"x\":\"caf\u{e9}\"}', 11, 2100000000),
                    (1, 2, 'b1', 5, 1600000000130, 'p1', 2, 2100000000),
                    (1, 2, 'b2', 3, 1600000000130, 'p2', 2, 2100000000)",
        )
        .unwrap();
        raw.batch(
            "INSERT INTO user_collections VALUES (1, 1, 1600000000120), (1, 2, 1600000000130)",
        )
        .unwrap();
        if k == Kind::Postgresql {
            raw.batch(
                "INSERT INTO bso (userid, collection, id, modified, payload, payload_size)
                 VALUES (0, 1, 'global', 1600000000100, 'mixed', 5);
                 INSERT INTO user_collections VALUES (0, 1, 1600000000100)",
            )
            .unwrap();
        }
        let opened = t.open(2);
        assert!(!opened.changes.is_empty(), "{k:?}: our tables were added");
        assert!(
            opened
                .changes
                .iter()
                .any(|c| c.contains("syncserver_fcgi_bso_sortindex_idx")),
            "{k:?}: our index was added to the existing table: {:?}",
            opened.changes
        );
        let mut db = opened.first;
        let b = db
            .get_bso(uid(1), "meta", "global", Precondition::None)
            .unwrap();
        assert_eq!(b.payload, "{\"x\":\"caf\u{e9}\"}", "{k:?}");
        assert_eq!(b.modified, 1600000000120);
        let q = BsoQuery {
            sort: Sort::Index,
            full: true,
            ..Default::default()
        };
        let page = db
            .get_bsos(uid(1), "bookmarks", &q, Precondition::None)
            .unwrap();
        assert_eq!(
            page.items.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
            ["b1", "b2"]
        );
        let u = db
            .token_user("fxa1@api.accounts.firefox.com", 1700000000000, &mut |st| {
                assert_eq!(st.rows.len(), 1);
                UserPlan::Keep
            })
            .unwrap()
            .unwrap();
        assert_eq!(u.uid.get(), 1);
        // A new collection gets the next id, a new account the next uid.
        db.put_bso(ctx(1, "history"), &item("h", Some("x"), None, None))
            .unwrap();
        assert_eq!(new_user(db.as_mut(), "fxa2@x"), 2, "{k:?}");
        if k == Kind::Postgresql {
            // The serial sequence moved past our explicit uid.
            let next = t.raw_rows("SELECT nextval('users_uid_seq')")[0]
                .int(0)
                .unwrap();
            assert!(next > 2, "{next}");
            let mut admin = t.admin();
            assert!(admin.dead_uids(false, 0).unwrap().contains(&0));
            let stats = admin.stats().unwrap();
            assert_eq!(stats.records, 5);
            admin.purge_uid(0, 100).unwrap();
            assert!(!admin.dead_uids(false, 0).unwrap().contains(&0));
        }
        if k == Kind::Mysql {
            // Kept as the Python server's latin1_swedish_ci tables have it: ids
            // differing only in case are one record (its first spelling stays).
            db.put_bso(ctx(1, "case"), &item("AbC", Some("1"), None, None))
                .unwrap();
            db.put_bso(ctx(1, "case"), &item("abc", Some("2"), None, None))
                .unwrap();
            assert_eq!(ids(db.as_mut(), 1, "case"), ["AbC"]);
        }
        // The Python tables are unchanged: no columns added.
        let cols = t.raw_rows(
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'bso'
             AND table_schema = (SELECT table_schema FROM information_schema.tables WHERE table_name = 'bso' LIMIT 1)",
        );
        assert_eq!(cols[0].int(0).unwrap(), 8);
    }
}

#[test]
fn unstorable_text_is_refused_whole() {
    for t in engines("text") {
        let k = t.kind;
        let mut db = t.session();
        db.post_bsos(
            ctx(1, "c"),
            &[item("ok", Some("caf\u{e9} \u{20ac}"), None, None)],
        )
        .unwrap();
        assert_eq!(
            db.get_bso(uid(1), "c", "ok", Precondition::None)
                .unwrap()
                .payload,
            "caf\u{e9} \u{20ac}"
        );
        let bad = match k {
            Kind::Mysql => "\u{4e2d}",
            Kind::Postgresql => "a\u{0}b",
            Kind::Sqlite => "\u{4e2d}\u{0}",
        };
        let items = [
            item("good", Some("fine"), None, None),
            item("bad", Some(bad), None, None),
        ];
        let put = db.put_bso(ctx(1, "c"), &items[1]);
        let post = db.post_bsos(ctx(1, "c"), &items);
        let batch = db.create_batch(ctx(1, "c"), &items);
        if k == Kind::Sqlite {
            put.unwrap();
            post.unwrap();
            batch.unwrap();
            continue;
        }
        for r in [put.map(|_| ()), post.map(|_| ()), batch.map(|_| ())] {
            assert!(matches!(r, Err(DbError::UnstorableText(_))), "{k:?}: {r:?}");
        }
        assert_eq!(ids(db.as_mut(), 1, "c"), ["ok"], "{k:?}: nothing partial");
    }
}

#[test]
fn lost_connection_is_unavailable_once() {
    for t in engines("lost") {
        let k = t.kind;
        if k == Kind::Sqlite {
            continue;
        }
        let mut db = t.session();
        db.post_bsos(ctx(1, "c"), &[item("a", Some("x"), None, None)])
            .unwrap();
        let mut killer = t.raw();
        let kill = match k {
            Kind::Postgresql => "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()"
                .to_string(),
            _ => {
                let ids = killer
                    .query(
                        "SELECT id FROM information_schema.processlist
                         WHERE db = DATABASE() AND id <> CONNECTION_ID()",
                        &[],
                    )
                    .unwrap();
                ids.iter()
                    .map(|r| format!("KILL CONNECTION {}", r.int(0).unwrap()))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        };
        killer.batch(&kill).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let first = db.get_bsos(uid(1), "c", &BsoQuery::default(), Precondition::None);
        assert!(
            matches!(first, Err(DbError::Unavailable(_))),
            "{k:?}: {first:?}"
        );
        assert_eq!(
            ids(db.as_mut(), 1, "c"),
            ["a"],
            "{k:?}: the next call reconnects"
        );
        // Writes after a reconnect work too.
        db.post_bsos(ctx(1, "c"), &[item("b", Some("x"), None, None)])
            .unwrap();
    }
}

#[test]
fn a_held_user_lock_is_busy_not_an_error() {
    for t in engines("busy") {
        let k = t.kind;
        if k == Kind::Sqlite {
            continue;
        }
        let mut db = t.session();
        db.post_bsos(ctx(9, "c"), &[item("a", Some("x"), None, None)])
            .unwrap();
        let mut holder = t.raw();
        match k {
            Kind::Postgresql => holder.batch("BEGIN; SELECT pg_advisory_xact_lock(9)").unwrap(),
            _ => holder
                .batch("BEGIN; INSERT INTO syncserver_fcgi_locks (k) VALUES (9) ON DUPLICATE KEY UPDATE k = k")
                .unwrap(),
        }
        let t0 = std::time::Instant::now();
        let r = db.post_bsos(ctx(9, "c"), &[item("b", Some("x"), None, None)]);
        assert!(matches!(r, Err(DbError::Busy)), "{k:?}: {r:?}");
        assert!(t0.elapsed() >= std::time::Duration::from_secs(4));
        // Another user is not held up meanwhile.
        db.post_bsos(ctx(10, "c"), &[item("b", Some("x"), None, None)])
            .unwrap();
        holder.rollback().unwrap();
        db.post_bsos(ctx(9, "c"), &[item("b", Some("x"), None, None)])
            .unwrap();
    }
}

/// `?unix_socket=` (MySQL) and `?host=/dir` (PostgreSQL) reach the same database as TCP:
/// tables made over the socket are found over TCP. MariaDB's socket account is the private
/// instance's administrator (the OS user, by unix_socket authentication); PostgreSQL's is
/// `sync` (with its password, which the socket does not ask for).
#[test]
fn unix_sockets() {
    for t in engines("socket") {
        let (var, uri) = match t.kind {
            Kind::Sqlite => continue,
            Kind::Mysql => ("SYNCSERVER_TEST_MYSQL_SOCKET", "mysql"),
            Kind::Postgresql => ("SYNCSERVER_TEST_POSTGRESQL_SOCKET", "postgresql"),
        };
        let socket = std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"));
        let params = t.params.as_ref().unwrap();
        let uri = match t.kind {
            Kind::Mysql => {
                let me = std::process::Command::new("id")
                    .arg("-un")
                    .output()
                    .unwrap();
                let me = String::from_utf8(me.stdout).unwrap();
                format!(
                    "{uri}://{}@localhost/{}?unix_socket={socket}",
                    me.trim(),
                    params.database
                )
            }
            _ => {
                let syncserver_fcgi::db::Host::Tcp { port, .. } = &params.host else {
                    panic!("the test server is reached over TCP");
                };
                format!(
                    "{uri}://sync@/{}?host={socket}&port={}",
                    params.database,
                    port.unwrap()
                )
            }
        };
        let over_socket = DatabaseUri::parse(&uri).unwrap();
        let created = open(&over_socket, 1).unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert!(!created.changes.is_empty(), "{:?}", t.kind);
        drop(created);
        assert!(t.open(1).changes.is_empty(), "{:?}", t.kind);
    }
}

/// The tokenserver tables of node assignment, on the case's database.
fn node_store(t: &TestDb) -> NodeStore {
    open_nodes(&t.uri).unwrap_or_else(|e| panic!("{:?}: {e}", t.kind))
}

/// A first sign-in creates a row (plain values); a returning account keeps its own,
/// or, with `new_state`, replaces it (a key change).
fn sign_in(db: &mut NodeStore, email: &str, new_state: Option<&str>) -> Result<Assigned, DbError> {
    db.token_user(
        email,
        now_ms(),
        &mut |st| match (st.rows.first(), new_state) {
            (None, _) => UserPlan::Create(NewUser {
                generation: 1,
                client_state: "aa".into(),
                keys_changed_at: Some(1),
                node: String::new(),
            }),
            (Some(r), Some(cs)) if r.client_state != cs => UserPlan::Replace(NewUser {
                generation: 2,
                client_state: cs.into(),
                keys_changed_at: Some(2),
                node: String::new(),
            }),
            _ => UserPlan::Keep,
        },
    )
    .map(|a| a.expect("no plan here rejects"))
}

fn node_of(db: &mut NodeStore, email: &str) -> String {
    sign_in(db, email, None).unwrap().node
}

fn users_on(db: &mut NodeStore, url: &str) -> i64 {
    db.nodes()
        .unwrap()
        .into_iter()
        .find(|n| n.url == url)
        .map_or(-1, |n| n.users)
}

#[test]
fn node_assignment_spreads_keeps_and_moves() {
    const A: &str = "http://node-a.test";
    const B: &str = "http://node-b.test";
    const C: &str = "http://node-c.test";
    for t in engines("nodes") {
        let k = t.kind;
        let mut db = node_store(&t);
        // No node yet: nobody can be placed.
        assert!(
            matches!(sign_in(&mut db, "u1@x", None), Err(DbError::NoNode)),
            "{k:?}"
        );
        db.add_node(A, 3).unwrap();
        db.add_node(B, 1).unwrap();
        assert!(db.add_node(A, 5).is_err(), "{k:?}: a node is added once");
        // Empty nodes first (older first on a tie), then log(load)/log(capacity);
        // a full node takes nobody.
        let placed: Vec<String> = (1..=4)
            .map(|i| node_of(&mut db, &format!("u{i}@x")))
            .collect();
        assert_eq!(placed, [A, B, A, A], "{k:?}");
        assert!(
            matches!(sign_in(&mut db, "u5@x", None), Err(DbError::NoNode)),
            "{k:?}"
        );
        // A returning account keeps its uid and node; the endpoint follows the pattern.
        let first = sign_in(&mut db, "u1@x", None).unwrap();
        assert_eq!(first.node, A);
        assert_eq!(first.endpoint, format!("{A}/1.5/{}", first.record.uid));
        assert_eq!(sign_in(&mut db, "u1@x", None).unwrap(), first, "{k:?}");
        // A key change: a new uid, same node.
        let changed = sign_in(&mut db, "u1@x", Some("bb")).unwrap();
        assert_ne!(changed.record.uid, first.record.uid);
        assert_eq!(changed.node, A, "{k:?}");
        assert_eq!(users_on(&mut db, A), 3);

        // Draining A: no one new there, and its accounts move at their next token,
        // under a new uid, their record values kept.
        assert_eq!(db.drain_node(A, now_ms()).unwrap(), 3, "{k:?}");
        assert_eq!(users_on(&mut db, A), 0);
        // B is full: the move waits for room.
        assert!(
            matches!(sign_in(&mut db, "u1@x", None), Err(DbError::NoNode)),
            "{k:?}"
        );
        db.add_node(C, 10).unwrap();
        let moved = sign_in(&mut db, "u1@x", None).unwrap();
        assert_eq!(moved.node, C, "{k:?}");
        assert_ne!(moved.record.uid, changed.record.uid);
        assert_eq!(
            (
                moved.record.generation,
                moved.record.client_state.as_str(),
                moved.record.keys_changed_at
            ),
            (2, "bb", Some(2)),
            "{k:?}"
        );
        assert_eq!(
            sign_in(&mut db, "u1@x", None).unwrap(),
            moved,
            "{k:?}: stays put now"
        );
        assert_eq!(
            node_of(&mut db, "u6@x"),
            C,
            "{k:?}: new accounts avoid the drained node"
        );

        // A downed node's accounts move too; a backed-off node takes no new ones.
        let change = |downed, backoff, capacity| NodeChange {
            capacity,
            downed,
            backoff,
        };
        db.set_node(B, &change(None, None, Some(5))).unwrap();
        db.set_node(C, &change(Some(true), None, None)).unwrap();
        assert_eq!(node_of(&mut db, "u1@x"), B, "{k:?}");
        db.set_node(C, &change(Some(false), Some(true), None))
            .unwrap();
        assert_eq!(node_of(&mut db, "u7@x"), B, "{k:?}");
        // Removing a node moves its accounts and forgets it.
        let on_b = users_on(&mut db, B);
        assert_eq!(db.remove_node(B, now_ms()).unwrap() as i64, on_b, "{k:?}");
        assert!(db.nodes().unwrap().iter().all(|n| n.url != B));
        assert!(db.drain_node(B, now_ms()).is_err(), "{k:?}: unknown node");
        db.set_node(C, &change(None, Some(false), None)).unwrap();
        assert_eq!(node_of(&mut db, "u1@x"), C, "{k:?}");
    }
}

#[test]
fn node_assignment_concurrency_and_import() {
    for t in engines("nodes_conc") {
        let k = t.kind;
        let mut first = node_store(&t);
        first.add_node("http://n1.test", 1000).unwrap();
        // Rows from a single box, uids kept; new uids start above the old box's mark.
        let old = |uid: i64, email: &str, replaced_at| NodeUser {
            uid,
            email: email.into(),
            generation: 3,
            client_state: "cc".into(),
            created_at: 1_600_000_000_000 + uid,
            replaced_at,
            keys_changed_at: Some(3),
        };
        let rows = [
            old(5, "old@x", Some(1_600_000_000_010)),
            old(7, "old@x", None),
            old(9, "other@x", None),
        ];
        assert_eq!(
            first.import_users("http://n1.test", &rows, 40).unwrap(),
            3,
            "{k:?}"
        );
        assert_eq!(
            first.import_users("http://n1.test", &rows, 40).unwrap(),
            0,
            "{k:?}: idempotent"
        );
        let back = sign_in(&mut first, "old@x", None).unwrap();
        assert_eq!(
            (back.record.uid.get(), back.node.as_str()),
            (7, "http://n1.test"),
            "{k:?}"
        );
        assert_eq!(users_on(&mut first, "http://n1.test"), 2);
        let opener = Arc::new(first.opener());
        // Six sessions signing in one new account at once: one row; six new accounts
        // at once: six uids, all above every uid the old box handed out.
        let at_once = |emails: Vec<String>| -> Vec<i64> {
            std::thread::scope(|s| {
                let barrier = Arc::new(Barrier::new(emails.len()));
                let handles: Vec<_> = emails
                    .into_iter()
                    .map(|email| {
                        let (opener, barrier) = (Arc::clone(&opener), Arc::clone(&barrier));
                        s.spawn(move || {
                            let mut db = opener().unwrap();
                            barrier.wait();
                            loop {
                                match sign_in(&mut db, &email, None) {
                                    Ok(a) => break a.record.uid.get(),
                                    Err(DbError::Busy) => continue,
                                    Err(e) => panic!("{k:?} {email}: {e}"),
                                }
                            }
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            })
        };
        let same = at_once(vec!["same@x".to_string(); 6]);
        assert!(same.iter().all(|u| *u == same[0]), "{k:?} {same:?}");
        let mut distinct = at_once((0..6).map(|i| format!("n{i}@x")).collect());
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 6, "{k:?}");
        assert!(
            same[0] > 40 && distinct[0] > 40,
            "{k:?} {same:?} {distinct:?}"
        );
        assert_eq!(users_on(&mut first, "http://n1.test"), 9, "{k:?}");
    }
}

#[test]
fn node_tables_refuse_the_single_box_database() {
    for t in engines("nodes_mixed") {
        drop(t.open(1));
        let err = open_nodes(&t.uri)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("migrate-to-nodes"), "{:?}: {err}", t.kind);
    }
}
