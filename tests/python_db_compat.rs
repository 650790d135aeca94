//! A `syncserver.db` written by the Python server opens and keeps working: the exact DDL of spec
//! §8.1 (tests/fixtures/python_schema.sql), the pre-2020/pre-2017 variant of §8.5
//! (python_schema_old.sql), and a standard-collections database, filled with rows in the Python
//! units (ms timestamps, absolute ttl seconds; `payload_size` in characters as the Python server
//! wrote it, while our own writes store UTF-8 bytes).

mod common;

use common::{json, now, Server, ServerSpec, TempDir};
use rusqlite::{params, Connection};
use serde_json::Value;

const SCHEMA: &str = include_str!("fixtures/python_schema.sql");
const SCHEMA_OLD: &str = include_str!("fixtures/python_schema_old.sql");

/// `bso.ttl` meaning "never expires".
const NEVER: i64 = 2_100_000_000;
const UID: u64 = 1;
/// A second user whose rows must stay invisible to `UID`.
const OTHER_UID: u64 = 2;
const T_META: i64 = 1_700_000_000_120;
const T_BOOKMARKS: i64 = 1_700_000_100_000;
const T_FOO: i64 = 1_700_000_200_350;
const META_PAYLOAD: &str = r#"{"syncID": "abcdefghijkl", "storageVersion": 5}"#;
const REC1_PAYLOAD: &str = "{\"ciphertext\": \"h\u{e9}llo \u{2603} \u{1d11e} \u{fc}n\u{ef}c\u{f6}d\u{e9}\", \"IV\": \"x\"}";
const REC2_PAYLOAD: &str = r#"{"ciphertext": "plain ascii", "hmac": "0f"}"#;

/// How a fixture database names its collections.
struct Ids {
    meta: i64,
    bookmarks: i64,
    foo: i64,
    /// Rows of the `collections` table.
    rows: &'static [(i64, &'static str)],
}

const DYNAMIC: Ids = Ids {
    meta: 1,
    bookmarks: 2,
    foo: 3,
    rows: &[(1, "meta"), (2, "bookmarks"), (3, "foo")],
};

const STANDARD: Ids = Ids {
    meta: 6,
    bookmarks: 7,
    foo: 100,
    rows: &[(99, ""), (100, "foo")],
};

fn email(uid: u64) -> String {
    format!("{uid:032x}@api.accounts.firefox.com")
}

/// A `bso` row to insert: (userid, collection, id, sortindex, modified ms, payload, ttl).
type FixtureBso = (u64, i64, &'static str, Option<i64>, i64, &'static str, i64);

/// Creates `syncserver.db` in `dir` with `schema` and the Python-written rows.
fn build_db(dir: &TempDir, schema: &str, ids: &Ids, old_users: bool) {
    let conn = Connection::open(dir.join("syncserver.db")).expect("create db");
    conn.execute_batch(schema).expect("python DDL");
    for (id, name) in ids.rows {
        conn.execute("INSERT INTO collections VALUES (?1, ?2)", params![id, name])
            .expect("collection row");
    }
    for (uid, replaced) in [(UID, None), (OTHER_UID, Some(1_600_000_000_000i64))] {
        let common = params![
            uid,
            email(uid),
            1_600_000_000_000i64,
            "aabbccdd",
            1_500_000_000_000i64,
            replaced
        ];
        if old_users {
            conn.execute(
                "INSERT INTO users (uid, service, email, generation, client_state, created_at, replaced_at)
                 VALUES (?1, 'sync-1.5', ?2, ?3, ?4, ?5, ?6)",
                common,
            )
        } else {
            conn.execute(
                "INSERT INTO users VALUES (?1, 'sync-1.5', ?2, ?3, ?4, ?5, ?6, 1600000000000, 'http://localhost:5000')",
                common,
            )
        }
        .expect("users row");
    }
    let soon = now() as i64 + 3600;
    let past = now() as i64 - 100;
    let bsos: [FixtureBso; 6] = [
        (UID, ids.meta, "global", None, T_META, META_PAYLOAD, NEVER),
        (
            UID,
            ids.bookmarks,
            "rec1",
            Some(100),
            T_BOOKMARKS - 1000,
            REC1_PAYLOAD,
            NEVER,
        ),
        (
            UID,
            ids.bookmarks,
            "rec2",
            Some(-5),
            T_BOOKMARKS,
            REC2_PAYLOAD,
            soon,
        ),
        (
            UID,
            ids.bookmarks,
            "gone",
            Some(1000),
            T_BOOKMARKS - 500,
            "expired",
            past,
        ),
        (UID, ids.foo, "x", None, T_FOO, "foo-payload", NEVER),
        (
            OTHER_UID,
            ids.bookmarks,
            "theirs",
            None,
            T_BOOKMARKS,
            "not yours",
            NEVER,
        ),
    ];
    for (uid, coll, id, sortindex, modified, payload, ttl) in bsos {
        conn.execute(
            "INSERT INTO bso VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                uid,
                coll,
                id,
                sortindex,
                modified,
                payload,
                payload.chars().count() as i64,
                ttl
            ],
        )
        .expect("bso row");
    }
    for (uid, coll, ts) in [
        (UID, ids.meta, T_META),
        (UID, ids.bookmarks, T_BOOKMARKS),
        (UID, ids.foo, T_FOO),
        (OTHER_UID, ids.bookmarks, T_BOOKMARKS),
    ] {
        conn.execute(
            "INSERT INTO user_collections VALUES (?1, ?2, ?3)",
            params![uid, coll, ts],
        )
        .expect("user_collections row");
    }
}

fn open(server: &Server) -> Connection {
    Connection::open(server.db_path()).expect("open db")
}

/// Waits until the server answers a request. The socket accepts connections before start-up
/// has finished preparing the database, so inspecting the file any earlier races the migration.
fn answered(server: Server) -> Server {
    let r = server.request("GET", "/", &[], b"");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    server
}

fn p(rest: &str) -> String {
    Server::storage_path(UID, rest)
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn assert_ts(v: &Value, ms: i64, what: &str) {
    let got = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {v}"));
    assert!(
        (got - secs(ms)).abs() < 0.001,
        "{what}: {got} != {}",
        secs(ms)
    );
}

/// The Python-written rows are served unchanged.
fn check_served(server: &Server) {
    let user = server.user(UID);

    let r = server.signed(&user, "GET", &p("/info/collections"), &[], b"");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    let v = json(&r);
    let names: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(names.len(), 3, "{v}");
    assert_ts(&v["meta"], T_META, "info/collections meta");
    assert_ts(&v["bookmarks"], T_BOOKMARKS, "info/collections bookmarks");
    assert_ts(&v["foo"], T_FOO, "info/collections foo");
    assert_eq!(r.header("X-Last-Modified"), Some("1700000200.35"));

    let r = server.signed(&user, "GET", &p("/info/collection_counts"), &[], b"");
    assert_eq!(
        json(&r),
        serde_json::json!({"meta": 1, "bookmarks": 2, "foo": 1}),
        "expired rows must not count"
    );

    let r = server.signed(&user, "GET", &p("/storage/meta/global"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-Last-Modified"), Some("1700000000.12"));
    let v = json(&r);
    assert_eq!(v["id"], "global");
    assert_eq!(v["payload"], META_PAYLOAD);
    assert_ts(&v["modified"], T_META, "meta/global modified");
    assert!(v.get("sortindex").is_none_or(Value::is_null), "{v}");

    let r = server.signed(
        &user,
        "GET",
        &p("/storage/bookmarks?full=1&sort=index"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-Last-Modified"), Some("1700000100.00"));
    let v = json(&r);
    let recs = v.as_array().expect("array");
    assert_eq!(
        recs.len(),
        2,
        "expired and other users' rows are invisible: {v}"
    );
    assert_eq!(recs[0]["id"], "rec1");
    assert_eq!(recs[0]["payload"], REC1_PAYLOAD);
    assert_eq!(recs[0]["sortindex"], 100);
    assert_ts(&recs[0]["modified"], T_BOOKMARKS - 1000, "rec1 modified");
    assert_eq!(recs[1]["id"], "rec2");
    assert_eq!(recs[1]["payload"], REC2_PAYLOAD);
    assert_eq!(recs[1]["sortindex"], -5);
    assert_ts(&recs[1]["modified"], T_BOOKMARKS, "rec2 modified");

    let r = server.signed(&user, "GET", &p("/storage/bookmarks/rec1"), &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Last-Modified"), Some("1700000099.00"));
    assert_eq!(json(&r)["payload"].as_str(), Some(REC1_PAYLOAD));

    let r = server.signed(&user, "GET", &p("/storage/bookmarks/gone"), &[], b"");
    assert_eq!(r.status, 404, "an expired record is gone: {}", r.text());
    let r = server.signed(&user, "GET", &p("/storage/bookmarks/theirs"), &[], b"");
    assert_eq!(r.status, 404);

    let r = server.signed(
        &user,
        "GET",
        &p("/storage/foo?newer=1700000200.34"),
        &[],
        b"",
    );
    assert_eq!(json(&r), serde_json::json!(["x"]));
    let r = server.signed(
        &user,
        "GET",
        &p("/storage/foo?newer=1700000200.35"),
        &[],
        b"",
    );
    assert_eq!(json(&r), serde_json::json!([]));

    // Preconditions compare against the stored ms value exactly.
    let r = server.signed(
        &user,
        "GET",
        &p("/storage/foo"),
        &[("X-If-Modified-Since", "1700000200.35")],
        b"",
    );
    assert_eq!(r.status, 304, "{}", r.text());
    let r = server.signed(
        &user,
        "GET",
        &p("/storage/foo"),
        &[("X-If-Modified-Since", "1700000200.34")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A row of `bso`: (collection, modified, payload, payload_size, ttl, sortindex).
type BsoRow = (i64, i64, String, i64, i64, Option<i64>);

fn bso_row(server: &Server, id: &str) -> BsoRow {
    open(server)
        .query_row(
            "SELECT collection, modified, payload, payload_size, ttl, sortindex FROM bso
             WHERE userid = ?1 AND id = ?2",
            params![UID, id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .unwrap_or_else(|e| panic!("bso row {id}: {e}"))
}

fn collection_id(server: &Server, name: &str) -> Option<i64> {
    open(server)
        .query_row(
            "SELECT collectionid FROM collections WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .ok()
}

/// Writes land in the Python units and extend `collections` with max+1 ids.
fn check_writes(server: &Server, ids: &Ids, next_id: i64) {
    let user = server.user(UID);
    let ct = [("Content-Type", "application/json")];
    let before = now();

    let body = "{\"payload\": \"\u{fc}n\u{ef} \u{2603}\", \"ttl\": 60, \"sortindex\": 3}";
    let r = server.signed(
        &user,
        "PUT",
        &p("/storage/bookmarks/rec3"),
        &ct,
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    let (coll, modified, payload, size, ttl, sortindex) = bso_row(server, "rec3");
    assert_eq!(coll, ids.bookmarks);
    assert_eq!(modified % 10, 0, "ms timestamps are multiples of 10");
    assert!(
        (secs(modified) - before).abs() < 30.0,
        "modified {modified} is in ms"
    );
    assert_eq!(payload, "\u{fc}n\u{ef} \u{2603}");
    // The Python server stored 5 (characters); sizes are UTF-8 bytes here,
    // so that limits and quota bound what is stored and sent (issue 10).
    assert_eq!(size, 9, "payload_size counts UTF-8 bytes");
    assert!(
        (ttl as f64 - (before + 60.0)).abs() < 30.0,
        "ttl {ttl} is absolute seconds"
    );
    assert_eq!(sortindex, Some(3));
    assert_eq!(r.text(), common_ts(modified));

    assert_eq!(collection_id(server, "newcoll"), None);
    let r = server.signed(
        &user,
        "PUT",
        &p("/storage/newcoll/n1"),
        &ct,
        br#"{"payload": "n"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        collection_id(server, "newcoll"),
        Some(next_id),
        "new ids are max+1"
    );
    let (coll, _, _, _, ttl, _) = bso_row(server, "n1");
    assert_eq!(coll, next_id);
    assert_eq!(ttl, NEVER);

    // A batch upload into an existing collection goes through batch_upload_items.
    let r = server.signed(
        &user,
        "POST",
        &p("/storage/foo?batch=true"),
        &ct,
        br#"[{"id": "b1", "payload": "one"}]"#,
    );
    assert_eq!(r.status, 202, "{}\n{}", r.text(), server.log());
    let batch = json(&r)["batch"].as_str().expect("batch id").to_string();
    let r = server.signed(
        &user,
        "POST",
        &p(&format!("/storage/foo?batch={batch}&commit=true")),
        &ct,
        br#"[{"id": "b2", "payload": "two", "sortindex": 9}]"#,
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    assert_eq!(bso_row(server, "b1").0, ids.foo);
    assert_eq!(bso_row(server, "b2").5, Some(9));

    let r = server.signed(&user, "GET", &p("/info/collections"), &[], b"");
    let v = json(&r);
    for name in ["meta", "bookmarks", "foo", "newcoll"] {
        assert!(v[name].is_number(), "{name} missing from {v}");
    }
    let r = server.signed(&user, "GET", &p("/storage/bookmarks/rec1"), &[], b"");
    assert_eq!(
        json(&r)["payload"].as_str(),
        Some(REC1_PAYLOAD),
        "old rows untouched"
    );
}

/// The two-decimal seconds form of a ms timestamp.
fn common_ts(ms: i64) -> String {
    format!("{}.{:02}", ms / 1000, (ms % 1000) / 10)
}

/// `CREATE` statements of the Python tables and indexes, by name.
fn python_schema_sql(conn: &Connection) -> Vec<(String, String)> {
    let mut stmt = conn
        .prepare(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name IN
             ('collections', 'user_collections', 'batch_uploads', 'bso', 'batch_upload_items',
              'users', 'bso_ttl_idx', 'bso_usr_col_mod_idx', 'lookup_idx', 'clientstate_idx')
             ORDER BY name",
        )
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

fn columns(conn: &Connection, table: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({table})"))
        .expect("pragma");
    let rows = stmt.query_map([], |r| r.get(1)).expect("query");
    rows.map(|r| r.expect("row")).collect()
}

fn users(conn: &Connection) -> Vec<(u64, String, String, i64, Option<i64>)> {
    let mut stmt = conn
        .prepare("SELECT uid, service, email, generation, replaced_at FROM users ORDER BY uid")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

#[test]
fn python_database_is_served_and_extended() {
    let dir = TempDir::new();
    build_db(&dir, SCHEMA, &DYNAMIC, false);
    let schema_before =
        python_schema_sql(&Connection::open(dir.join("syncserver.db")).expect("db"));

    let server = answered(Server::start_in(dir, ServerSpec::default()));
    assert_eq!(
        python_schema_sql(&open(&server)),
        schema_before,
        "a current Python schema is used as is"
    );
    check_served(&server);
    check_writes(&server, &DYNAMIC, 4);

    // Restarting on the same file keeps everything.
    let dir = server.stop();
    let server = answered(Server::start_in(dir, ServerSpec::default()));
    let user = server.user(UID);
    let r = server.signed(&user, "GET", &p("/storage/newcoll/n1"), &[], b"");
    assert_eq!(json(&r)["payload"], "n");
    assert_eq!(collection_id(&server, "newcoll"), Some(4));
    assert_eq!(users(&open(&server)).len(), 2);
}

#[test]
fn old_python_database_gets_missing_columns() {
    let dir = TempDir::new();
    build_db(&dir, SCHEMA_OLD, &DYNAMIC, true);
    let users_before = users(&Connection::open(dir.join("syncserver.db")).expect("db"));
    assert_eq!(users_before.len(), 2);

    let server = answered(Server::start_in(dir, ServerSpec::default()));
    let conn = open(&server);
    let user_cols = columns(&conn, "users");
    assert!(
        user_cols.iter().any(|c| c == "keys_changed_at") && user_cols.iter().any(|c| c == "node"),
        "users columns after start-up: {user_cols:?}\n{}",
        server.log()
    );
    assert!(
        columns(&conn, "batch_upload_items")
            .iter()
            .any(|c| c == "userid"),
        "batch_upload_items got userid"
    );
    assert_eq!(
        users(&conn),
        users_before,
        "users rows survive the migration"
    );
    let (kca, node): (Option<i64>, Option<String>) = conn
        .query_row(
            "SELECT keys_changed_at, node FROM users WHERE uid = ?1",
            [UID],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("migrated user row");
    assert_eq!((kca, node), (None, None), "added columns start out NULL");
    drop(conn);

    check_served(&server);
    check_writes(&server, &DYNAMIC, 4);
}

#[test]
fn standard_collections_database() {
    let dir = TempDir::new();
    build_db(&dir, SCHEMA, &STANDARD, false);
    let server = answered(Server::start_in(dir, ServerSpec::default()));
    check_served(&server);
    check_writes(&server, &STANDARD, 101);

    // A standard name keeps its fixed id and is not stored in the table.
    let user = server.user(UID);
    let r = server.signed(
        &user,
        "PUT",
        &p("/storage/history/h1"),
        &[("Content-Type", "application/json")],
        br#"{"payload": "h"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(bso_row(&server, "h1").0, 4);
    assert_eq!(collection_id(&server, "history"), None);
    assert_eq!(collection_id(&server, ""), Some(99));
}
