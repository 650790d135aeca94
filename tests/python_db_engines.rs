//! A MariaDB or PostgreSQL database as the Python server left it is served as the Python
//! server served it, through the real binary over FastCGI: its `syncserver.ini` keeps the
//! Python `sqluri` (`pymysql://…`, `postgresql://…`), the tables are the exact DDL SQLAlchemy
//! sent (tests/fixtures/python_mysql.sql, python_postgresql.sql), and the rows are in the Python
//! units (ms timestamps, absolute ttl seconds, `payload_size` in characters; uids and collection
//! ids taken from AUTO_INCREMENT / SERIAL). The SQLite equivalent is tests/python_db_compat.rs;
//! tests/db_engines.rs opens such databases through the library.
//!
//! What each engine adds: on MariaDB the storage tables are latin1, so text the Python server
//! stored there (`é`, `€` as cp1252 bytes) reads back intact and text they cannot hold is a 400
//! with nothing written; on PostgreSQL the Python server's first tokens said uid 0, so rows
//! under `userid 0` mix several accounts' data and must stay unreadable by anyone.
//!
//! Each test uses a fresh database on the servers scripts/engines started
//! (`SYNCSERVER_TEST_MYSQL` / `_POSTGRESQL`); without one it skips through `common::skip` (a
//! failure unless `SYNCSERVER_TEST_ALLOW_SKIP` allows it). Not in the engine matrix: it picks
//! its engine itself.

mod common;

use base64::Engine as _;
use common::engines::{script_statements, Engine, TestDatabase};
use common::fcgi_client::CgiResponse;
use common::fxa::{self, FakeFxa, TestKey};
use common::{json, now, raw_num, Server, ServerSpec, TempDir, User, JSON_CT, PUBLIC_URL};
use serde_json::{json as j, Value};

const PY_MYSQL: &str = include_str!("fixtures/python_mysql.sql");
const PY_POSTGRESQL: &str = include_str!("fixtures/python_postgresql.sql");

/// `bso.ttl` meaning "never expires".
const NEVER: i64 = 2_100_000_000;
/// The uids the Python server's AUTO_INCREMENT / SERIAL gave: alice, bob's row replaced by a
/// client-state change, and bob's current row (which that change left with `node` NULL).
const ALICE: u64 = 1;
const BOB_OLD: u64 = 2;
const BOB: u64 = 3;
/// What the next new account must get.
const NEXT_UID: u64 = 4;
/// The Python-made tables, which must come out of our start-up unchanged (a rollback to the
/// Python server keeps working).
const PYTHON_TABLES: &str =
    "'collections', 'user_collections', 'batch_uploads', 'bso', 'batch_upload_items', 'users'";

const T_META: i64 = 1_700_000_000_120;
const T_BOOKMARKS: i64 = 1_700_000_100_000;
const T_FOO: i64 = 1_700_000_200_350;
/// Later than all of alice's: rows under uid 0 that leaked into her view would show.
const T_UID0: i64 = 1_700_000_300_000;
const GENERATION: i64 = 1_600_000_000_000;
const META_PAYLOAD: &str = r#"{"syncID": "abcdefghijkl", "storageVersion": 5}"#;
const REC0_PAYLOAD: &str = r#"{"ciphertext": "plain ascii", "hmac": "0f"}"#;
const REC2_PAYLOAD: &str = r#"{"ciphertext": "sooner", "IV": "y"}"#;

/// An engine, the Python DDL for it and payloads its storage tables can hold.
struct Flavour {
    engine: Engine,
    ddl: &'static str,
    /// Non-ASCII text the Python server stored: only cp1252 on MariaDB's latin1 tables.
    rec1: &'static str,
    /// A payload a client PUTs.
    written: &'static str,
}

const MARIADB: Flavour = Flavour {
    engine: Engine::Mysql,
    ddl: PY_MYSQL,
    rec1: "{\"ciphertext\": \"h\u{e9}llo caf\u{e9} 5 \u{20ac} \u{fc}n\u{ef}c\u{f6}d\u{e9}\", \"IV\": \"x\"}",
    written: "\u{fc}n\u{ef} \u{20ac}",
};

const POSTGRESQL: Flavour = Flavour {
    engine: Engine::Postgresql,
    ddl: PY_POSTGRESQL,
    rec1: "{\"ciphertext\": \"h\u{e9}llo \u{2603} \u{1d11e} \u{fc}n\u{ef}c\u{f6}d\u{e9}\", \"IV\": \"x\"}",
    written: "\u{fc}n\u{ef} \u{2603}",
};

/// An FxA account with its `users` row(s) as the Python server left them.
struct Account {
    sub: String,
    generation: i64,
    keys_changed_at: i64,
    /// The fingerprint its `X-KeyID` sends (and its current row's client state).
    fingerprint: u8,
}

impl Account {
    fn new(generation: i64, fingerprint: u8) -> Account {
        Account {
            sub: fxa::fxa_uid(),
            generation,
            keys_changed_at: generation,
            fingerprint,
        }
    }

    fn email(&self) -> String {
        format!("{}@api.accounts.firefox.com", self.sub)
    }

    fn client_state(&self) -> String {
        fxa::client_state(fxa::fingerprint(self.fingerprint))
    }

    fn token_request(&self, server: &Server, key: &TestKey) -> CgiResponse {
        let bearer = format!(
            "Bearer {}",
            key.token(&fxa::claims(&self.sub, self.generation))
        );
        let kid = fxa::key_id(self.keys_changed_at, fxa::fingerprint(self.fingerprint));
        server.request(
            "GET",
            fxa::TOKEN_PATH,
            &[("Authorization", &bearer), ("X-KeyID", &kid)],
            b"",
        )
    }

    /// Signs in at the tokenserver: the uid it names, with the credentials it handed out.
    #[track_caller]
    fn sign_in(&self, server: &Server, key: &TestKey) -> User {
        let r = self.token_request(server, key);
        assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
        let v = json(&r);
        let uid = v["uid"].as_u64().expect("uid");
        assert_eq!(
            v["api_endpoint"],
            format!("{PUBLIC_URL}/storage/1.5/{uid}"),
            "{v}"
        );
        User {
            uid,
            token: v["id"].as_str().expect("id").to_string(),
            key: v["key"].as_str().expect("key").to_string(),
        }
    }
}

/// A SQL string literal (the tests' text has no backslashes, which MySQL would unescape).
fn q(s: &str) -> String {
    assert!(!s.contains('\\'), "{s}");
    format!("'{}'", s.replace('\'', "''"))
}

/// The rows of a query through the engine's command-line client, fields split.
fn rows(db: &TestDatabase, sql: &str) -> Vec<Vec<String>> {
    db.sql(sql)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[track_caller]
fn int(db: &TestDatabase, sql: &str) -> i64 {
    let out = db.sql(sql);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql}: not one integer: {out:?}"))
}

/// A batch id as the Python server sent it: base64 of the decimal.
fn wire_batch_id(batch: i64) -> String {
    base64::engine::general_purpose::STANDARD.encode(batch.to_string())
}

/// A `bso` row to insert: (userid, collection, id, sortindex, modified ms, payload, ttl).
type FixtureBso<'a> = (u64, i64, &'a str, Option<i64>, i64, &'a str, i64);

/// The tables and rows of a database the Python server used: alice's records (one expired,
/// one about to expire), bob's record, an open batch of alice's; on PostgreSQL also the first
/// syncs of several accounts mixed under uid 0. Returns alice's open batch id.
fn python_left(db: &TestDatabase, f: &Flavour, alice: &Account, bob: &Account) -> i64 {
    for ddl in script_statements(f.ddl) {
        db.sql(ddl);
    }
    // AUTO_INCREMENT / SERIAL numbered them, as the Python server's INSERTs did.
    let node = q(PUBLIC_URL);
    db.sql(&format!(
        "INSERT INTO users (service, email, generation, client_state, created_at, replaced_at,
                            keys_changed_at, node)
         VALUES ('sync-1.5', {a}, {ag}, {acs}, 1500000000000, NULL, {ag}, {node});
         INSERT INTO users (service, email, generation, client_state, created_at, replaced_at,
                            keys_changed_at, node)
         VALUES ('sync-1.5', {b}, {og}, {ocs}, 1500000000000, {bg}, {og}, {node});
         INSERT INTO users (service, email, generation, client_state, created_at, replaced_at,
                            keys_changed_at, node)
         VALUES ('sync-1.5', {b}, {bg}, {bcs}, {bg}, NULL, {bg}, NULL)",
        a = q(&alice.email()),
        ag = alice.generation,
        acs = q(&alice.client_state()),
        b = q(&bob.email()),
        og = bob.generation - 1000,
        ocs = q(&fxa::client_state(fxa::fingerprint(bob.fingerprint - 1))),
        bg = bob.generation,
        bcs = q(&bob.client_state()),
    ));
    assert_eq!(
        rows(db, "SELECT uid FROM users ORDER BY uid"),
        [[ALICE], [BOB_OLD], [BOB]].map(|r| r.map(|u| u.to_string()).to_vec()),
        "the Python server's uids"
    );
    for name in ["meta", "bookmarks", "foo"] {
        db.sql(&format!(
            "INSERT INTO collections (name) VALUES ({})",
            q(name)
        ));
    }
    let (meta, bookmarks, foo_id) = (1, 2, 3);
    let soon = now() as i64 + 3600;
    let past = now() as i64 - 100;
    let bsos: [FixtureBso; 7] = [
        (ALICE, meta, "global", None, T_META, META_PAYLOAD, NEVER),
        (
            ALICE,
            bookmarks,
            "rec0",
            Some(200),
            T_BOOKMARKS - 500,
            REC0_PAYLOAD,
            NEVER,
        ),
        (
            ALICE,
            bookmarks,
            "rec1",
            Some(100),
            T_BOOKMARKS - 1000,
            f.rec1,
            NEVER,
        ),
        (
            ALICE,
            bookmarks,
            "rec2",
            Some(-5),
            T_BOOKMARKS,
            REC2_PAYLOAD,
            soon,
        ),
        (
            ALICE,
            bookmarks,
            "gone",
            Some(1000),
            T_BOOKMARKS - 700,
            "expired",
            past,
        ),
        (ALICE, foo_id, "x", None, T_FOO, "foo-payload", NEVER),
        (
            BOB,
            bookmarks,
            "theirs",
            None,
            T_BOOKMARKS,
            "not yours",
            NEVER,
        ),
    ];
    let values: Vec<String> = bsos
        .iter()
        .map(|(uid, coll, id, sortindex, modified, payload, ttl)| {
            format!(
                "({uid}, {coll}, {}, {}, {modified}, {}, {}, {ttl})",
                q(id),
                sortindex.map_or("NULL".into(), |s| s.to_string()),
                q(payload),
                payload.chars().count()
            )
        })
        .collect();
    db.sql(&format!(
        "INSERT INTO bso (userid, collection, id, sortindex, modified, payload, payload_size, ttl)
         VALUES {}",
        values.join(", ")
    ));
    db.sql(&format!(
        "INSERT INTO user_collections (userid, collection, last_modified) VALUES
         ({ALICE}, {meta}, {T_META}), ({ALICE}, {bookmarks}, {T_BOOKMARKS}),
         ({ALICE}, {foo_id}, {T_FOO}), ({BOB}, {bookmarks}, {T_BOOKMARKS})"
    ));
    // A batch alice opened a minute ago and had not committed: its id is the ms of its
    // creation plus uid % 10; ttl_offset is relative seconds, NULL fields are "not given".
    let batch = (now() as i64 - 60) * 1000 + ALICE as i64 % 10;
    db.sql(&format!(
        "INSERT INTO batch_uploads (batch, userid, collection) VALUES ({batch}, {ALICE}, {foo_id});
         INSERT INTO batch_upload_items (batch, userid, id, sortindex, payload, payload_size,
                                         ttl_offset)
         VALUES ({batch}, {ALICE}, 'pb1', NULL, 'from python', 11, 3600),
                ({batch}, {ALICE}, 'pb2', 7, 'two', 3, NULL)"
    ));
    if f.engine == Engine::Postgresql {
        db.sql(&format!(
            "INSERT INTO bso (userid, collection, id, sortindex, modified, payload, payload_size, ttl)
             VALUES (0, {meta}, 'global', NULL, {T_UID0}, 'mixed', 5, {NEVER}),
                    (0, {bookmarks}, 'mixed1', 1, {T_UID0}, 'mixed', 5, {NEVER}),
                    (0, {foo_id}, 'x', NULL, {T_UID0}, 'mixed', 5, {NEVER});
             INSERT INTO user_collections (userid, collection, last_modified)
             VALUES (0, {meta}, {T_UID0}), (0, {bookmarks}, {T_UID0}), (0, {foo_id}, {T_UID0});
             INSERT INTO batch_uploads (batch, userid, collection) VALUES ({}, 0, {foo_id});
             INSERT INTO batch_upload_items (batch, userid, id, payload, payload_size)
             VALUES ({}, 0, 'pb1', 'mixed', 5)",
            batch - 1,
            batch - 1,
        ));
    }
    batch
}

/// The Python tables' columns and indexes (and on MariaDB their collations).
/// The Python tables as the engine describes them: columns, keys and indexes, leaving
/// out only our own extra indexes (`syncserver_fcgi_*`, which decision 1 allows and the
/// Python server ignores).
fn python_schema(db: &TestDatabase) -> String {
    let queries = match db.engine {
        Engine::Mysql => [
            "SELECT table_name, column_name, column_type, column_default, is_nullable,
                    collation_name, extra
             FROM information_schema.columns
             WHERE table_schema = DATABASE() AND table_name IN (TABLES)
             ORDER BY table_name, ordinal_position",
            "SELECT table_name, index_name, seq_in_index, column_name, non_unique
             FROM information_schema.statistics
             WHERE table_schema = DATABASE() AND table_name IN (TABLES)
               AND index_name NOT LIKE 'syncserver\\_fcgi\\_%'
             ORDER BY table_name, index_name, seq_in_index",
            "SELECT table_name, engine, table_collation FROM information_schema.tables
             WHERE table_schema = DATABASE() AND table_name IN (TABLES)
             ORDER BY table_name",
        ],
        _ => [
            "SELECT table_name, column_name, data_type, character_maximum_length,
                    column_default, is_nullable
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name IN (TABLES)
             ORDER BY table_name, ordinal_position",
            "SELECT tablename, indexname, indexdef FROM pg_indexes
             WHERE schemaname = current_schema() AND tablename IN (TABLES)
               AND indexname NOT LIKE 'syncserver\\_fcgi\\_%'
             ORDER BY tablename, indexname",
            "SELECT conrelid::regclass, conname, pg_get_constraintdef(oid) FROM pg_constraint
             WHERE connamespace = current_schema()::regnamespace
               AND conrelid::regclass::text IN (TABLES)
             ORDER BY conrelid::regclass::text, conname",
        ],
    };
    // One query at a time: psql shows only the last result of several.
    let out: Vec<String> = queries
        .iter()
        .map(|sql| db.sql(&sql.replace("TABLES", PYTHON_TABLES)))
        .collect();
    out.join("--\n")
}

/// The server on `db` with the Python `sqluri` form, its tokens verified by `fxa` and its
/// users' emails in FxA's production domain, as the Python server stored them.
fn start(db: &TestDatabase, fxa: &FakeFxa, dir: TempDir) -> Server {
    let sqluri = match db.engine {
        Engine::Mysql => db.uri.replacen("mysql://", "pymysql://", 1),
        _ => db.uri.clone(),
    };
    assert!(
        sqluri.starts_with("pymysql://") || sqluri.starts_with("postgresql://"),
        "{sqluri}"
    );
    let server = Server::start_in(
        dir,
        ServerSpec {
            extra_ini: format!(
                "sqluri = {sqluri}\noauth_verifier = {}\n\
                 [oauth]\ndefault_issuer = api.accounts.firefox.com\n",
                fxa.url
            ),
            ..ServerSpec::default()
        },
    );
    // Start-up has finished with the database once a request is answered.
    let r = server.request("GET", "/", &[], b"");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    server
}

fn p(uid: u64, rest: &str) -> String {
    Server::storage_path(uid, rest)
}

/// The two-decimal seconds form of a ms timestamp, as the Python server sent it.
fn wire(ms: i64) -> String {
    format!("{}.{:02}", ms / 1000, (ms % 1000) / 10)
}

#[track_caller]
fn assert_ts(v: &Value, ms: i64, what: &str) {
    let got = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {v}"));
    assert!(
        (got - ms as f64 / 1000.0).abs() < 0.001,
        "{what}: {got} is not {}",
        wire(ms)
    );
}

#[track_caller]
fn get(server: &Server, user: &User, path: &str) -> CgiResponse {
    let r = server.signed(user, "GET", path, &[], b"");
    assert!(
        matches!(r.status, 200 | 304 | 404),
        "GET {path}: {} {}\n{}",
        r.status,
        r.text(),
        server.log()
    );
    r
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_else(|| r.as_str().expect("id")))
        .collect()
}

/// Alice's records as the Python server served them.
fn check_served(server: &Server, f: &Flavour, alice: &User) {
    let r = get(server, alice, &p(ALICE, "/info/collections"));
    let v = json(&r);
    assert_eq!(v.as_object().map(|o| o.len()), Some(3), "{v}");
    assert_ts(&v["meta"], T_META, "meta");
    assert_ts(&v["bookmarks"], T_BOOKMARKS, "bookmarks");
    assert_ts(&v["foo"], T_FOO, "foo");
    assert_eq!(r.header("X-Last-Modified"), Some(wire(T_FOO).as_str()));
    for (name, ms) in [("meta", T_META), ("bookmarks", T_BOOKMARKS), ("foo", T_FOO)] {
        assert_eq!(raw_num(&r.text(), name), wire(ms), "{}", r.text());
    }

    let r = get(server, alice, &p(ALICE, "/info/collection_counts"));
    assert_eq!(
        json(&r),
        j!({"meta": 1, "bookmarks": 3, "foo": 1}),
        "expired and other accounts' rows do not count"
    );

    let r = get(server, alice, &p(ALICE, "/storage/meta/global"));
    assert_eq!(r.header("X-Last-Modified"), Some(wire(T_META).as_str()));
    let v = json(&r);
    assert_eq!(
        (&v["id"], &v["payload"]),
        (&j!("global"), &j!(META_PAYLOAD))
    );
    assert_eq!(raw_num(&r.text(), "modified"), wire(T_META));
    assert!(v.get("sortindex").is_none_or(Value::is_null), "{v}");

    // Every record byte for byte, with its sortindex and ms timestamp.
    let r = get(
        server,
        alice,
        &p(ALICE, "/storage/bookmarks?full=1&sort=index"),
    );
    assert_eq!(
        r.header("X-Last-Modified"),
        Some(wire(T_BOOKMARKS).as_str())
    );
    assert_eq!(r.header("X-Weave-Records"), Some("3"));
    let v = json(&r);
    assert_eq!(ids(&v), ["rec0", "rec1", "rec2"], "{v}");
    let want = [
        (REC0_PAYLOAD, 200, T_BOOKMARKS - 500),
        (f.rec1, 100, T_BOOKMARKS - 1000),
        (REC2_PAYLOAD, -5, T_BOOKMARKS),
    ];
    for (rec, (payload, sortindex, modified)) in v.as_array().unwrap().iter().zip(want) {
        assert_eq!(rec["payload"], payload, "{rec}");
        assert_eq!(rec["sortindex"], sortindex, "{rec}");
        assert_ts(&rec["modified"], modified, "bookmarks modified");
    }
    let r = get(server, alice, &p(ALICE, "/storage/bookmarks/rec1"));
    assert_eq!(json(&r)["payload"], f.rec1);
    assert_eq!(raw_num(&r.text(), "modified"), wire(T_BOOKMARKS - 1000));
    assert_eq!(
        r.header("X-Last-Modified"),
        Some(wire(T_BOOKMARKS - 1000).as_str())
    );

    // The orders the stored ms timestamps and sortindexes give.
    for (sort, order) in [
        ("newest", ["rec2", "rec0", "rec1"]),
        ("oldest", ["rec1", "rec0", "rec2"]),
        ("index", ["rec0", "rec1", "rec2"]),
    ] {
        let r = get(
            server,
            alice,
            &p(ALICE, &format!("/storage/bookmarks?sort={sort}")),
        );
        assert_eq!(ids(&json(&r)), order, "sort={sort}");
    }
    let r = get(
        server,
        alice,
        &p(ALICE, "/storage/bookmarks?sort=oldest&limit=2"),
    );
    assert_eq!(ids(&json(&r)), ["rec1", "rec0"]);
    let offset = r.header("X-Weave-Next-Offset").expect("next offset");
    let r = get(
        server,
        alice,
        &p(
            ALICE,
            &format!("/storage/bookmarks?sort=oldest&limit=2&offset={offset}"),
        ),
    );
    assert_eq!(ids(&json(&r)), ["rec2"]);

    // ttl is absolute seconds: one in the past is gone, one an hour ahead is there.
    let r = get(server, alice, &p(ALICE, "/storage/bookmarks/gone"));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = get(server, alice, &p(ALICE, "/storage/bookmarks/rec2"));
    assert_eq!(r.status, 200, "{}", r.text());
    // Another account's record is not hers.
    let r = get(server, alice, &p(ALICE, "/storage/bookmarks/theirs"));
    assert_eq!(r.status, 404, "{}", r.text());

    // newer/older and preconditions compare against the stored ms exactly.
    let r = get(server, alice, &p(ALICE, "/storage/foo?newer=1700000200.34"));
    assert_eq!(json(&r), j!(["x"]));
    let r = get(server, alice, &p(ALICE, "/storage/foo?newer=1700000200.35"));
    assert_eq!(json(&r), j!([]));
    let r = get(
        server,
        alice,
        &p(ALICE, "/storage/bookmarks?older=1700000100.00&sort=newest"),
    );
    assert_eq!(ids(&json(&r)), ["rec0", "rec1"]);
    let path = p(ALICE, "/storage/foo");
    let r = server.signed(
        alice,
        "GET",
        &path,
        &[("X-If-Modified-Since", "1700000200.35")],
        b"",
    );
    assert_eq!(r.status, 304, "{}", r.text());
    let r = server.signed(
        alice,
        "GET",
        &path,
        &[("X-If-Modified-Since", "1700000200.34")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// One `bso` row: (collection, modified, payload, payload_size, ttl, sortindex).
#[track_caller]
fn bso_row(db: &TestDatabase, uid: u64, id: &str) -> (i64, i64, String, i64, i64, String) {
    let rows = rows(
        db,
        &format!(
            "SELECT collection, modified, payload, payload_size, ttl, sortindex FROM bso
             WHERE userid = {uid} AND id = {}",
            q(id)
        ),
    );
    let [r] = rows.as_slice() else {
        panic!("bso row {uid}/{id}: {rows:?}");
    };
    let n = |i: usize| -> i64 { r[i].parse().unwrap_or_else(|_| panic!("{r:?}")) };
    (n(0), n(1), r[2].clone(), n(3), n(4), r[5].clone())
}

#[track_caller]
fn collection_id(db: &TestDatabase, name: &str) -> i64 {
    int(
        db,
        &format!(
            "SELECT collectionid FROM collections WHERE name = {}",
            q(name)
        ),
    )
}

/// Writes land in the Python units, in the Python tables: new collections get the next id,
/// the open batch the Python server left commits.
fn check_writes(server: &Server, db: &TestDatabase, f: &Flavour, alice: &User, batch: i64) {
    let before = now();
    let body = j!({"payload": f.written, "ttl": 60, "sortindex": 3}).to_string();
    let r = server.signed(
        alice,
        "PUT",
        &p(ALICE, "/storage/bookmarks/rec3"),
        &JSON_CT,
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    let (coll, modified, payload, size, ttl, sortindex) = bso_row(db, ALICE, "rec3");
    assert_eq!(coll, collection_id(db, "bookmarks"));
    assert_eq!(r.text(), wire(modified), "the answer is the stored ms");
    assert_eq!(modified % 10, 0);
    assert!(
        (modified as f64 / 1000.0 - before).abs() < 30.0,
        "modified {modified} is in ms"
    );
    assert_eq!(payload, f.written);
    assert_eq!(size, f.written.len() as i64, "payload_size in UTF-8 bytes");
    assert!(
        (ttl as f64 - (before + 60.0)).abs() < 30.0,
        "ttl {ttl} is absolute seconds"
    );
    assert_eq!(sortindex, "3");
    assert_eq!(
        int(
            db,
            &format!(
                "SELECT last_modified FROM user_collections
                 WHERE userid = {ALICE} AND collection = {coll}"
            )
        ),
        modified
    );
    if f.engine == Engine::Mysql {
        // In the cp1252 bytes the Python server would have written (and reads back).
        assert_eq!(
            db.sql("SELECT HEX(payload) FROM bso WHERE id = 'rec3'")
                .trim(),
            "FC6EEF2080"
        );
    }

    assert_eq!(
        db.sql("SELECT COUNT(*) FROM collections WHERE name = 'newcoll'")
            .trim(),
        "0"
    );
    let r = server.signed(
        alice,
        "PUT",
        &p(ALICE, "/storage/newcoll/n1"),
        &JSON_CT,
        br#"{"payload": "n"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(collection_id(db, "newcoll"), 4, "the next collection id");
    let (coll, _, _, _, ttl, sortindex) = bso_row(db, ALICE, "n1");
    assert_eq!((coll, ttl, sortindex.as_str()), (4, NEVER, "NULL"));

    // The batch the Python server left open commits: its items with their relative
    // ttl_offset and "not given" fields.
    let r = server.signed(
        alice,
        "POST",
        &p(
            ALICE,
            &format!("/storage/foo?batch={}&commit=true", wire_batch_id(batch)),
        ),
        &JSON_CT,
        b"[]",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    let committed = common::ms(&raw_num(&r.text(), "modified"));
    let foo_id = collection_id(db, "foo");
    let (coll, modified, payload, _, ttl, sortindex) = bso_row(db, ALICE, "pb1");
    assert_eq!(
        (coll, modified, payload.as_str(), sortindex.as_str()),
        (foo_id, committed, "from python", "NULL")
    );
    assert_eq!(
        ttl,
        committed / 1000 + 3600,
        "ttl_offset is relative seconds"
    );
    let (_, _, payload, _, ttl, sortindex) = bso_row(db, ALICE, "pb2");
    assert_eq!(
        (payload.as_str(), ttl, sortindex.as_str()),
        ("two", NEVER, "7")
    );
    assert_eq!(
        int(
            db,
            &format!("SELECT COUNT(*) FROM batch_upload_items WHERE userid = {ALICE}")
        ),
        0,
        "a committed batch leaves no rows"
    );

    // A batch of our own, through batch_upload_items.
    let r = server.signed(
        alice,
        "POST",
        &p(ALICE, "/storage/foo?batch=true"),
        &JSON_CT,
        br#"[{"id": "b1", "payload": "one"}]"#,
    );
    assert_eq!(r.status, 202, "{}\n{}", r.text(), server.log());
    let ours = json(&r)["batch"].as_str().expect("batch id").to_string();
    let r = server.signed(
        alice,
        "POST",
        &p(ALICE, &format!("/storage/foo?batch={ours}&commit=true")),
        &JSON_CT,
        br#"[{"id": "b2", "payload": "two", "sortindex": 9}]"#,
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    assert_eq!(bso_row(db, ALICE, "b1").0, foo_id);
    assert_eq!(bso_row(db, ALICE, "b2").5, "9");

    let r = get(server, alice, &p(ALICE, "/info/collection_counts"));
    assert_eq!(
        json(&r),
        j!({"meta": 1, "bookmarks": 4, "foo": 5, "newcoll": 1})
    );
    let r = get(server, alice, &p(ALICE, "/storage/bookmarks/rec1"));
    assert_eq!(json(&r)["payload"], f.rec1, "old rows untouched");
}

/// MariaDB: the storage tables are latin1. What the Python server stored there reads back
/// intact; text they cannot hold is refused whole (the Python server answered an HTML 500).
fn check_latin1(server: &Server, db: &TestDatabase, alice: &User) {
    let hex = db.sql("SELECT HEX(payload) FROM bso WHERE id = 'rec1'");
    assert!(
        hex.contains("E9") && hex.contains("80") && !hex.contains("C3A9"),
        "é and € as the Python server stored them, one cp1252 byte each: {hex}"
    );
    let counts = j!({"meta": 1, "bookmarks": 3, "foo": 1});
    let stamps = json(&get(server, alice, &p(ALICE, "/info/collections")));
    for (path, method, body) in [
        ("/storage/bookmarks/snow", "PUT", r#"{"payload": "snow ☃"}"#),
        (
            "/storage/bookmarks/rec1",
            "PUT",
            r#"{"payload": "emoji 😀"}"#,
        ),
        ("/storage/newcoll2/x", "PUT", r#"{"payload": "中"}"#),
        (
            "/storage/bookmarks",
            "POST",
            r#"[{"id": "good", "payload": "fine"}, {"id": "bad", "payload": "☃"}]"#,
        ),
        (
            "/storage/bookmarks?batch=true",
            "POST",
            r#"[{"id": "good", "payload": "fine"}, {"id": "bad", "payload": "😀"}]"#,
        ),
    ] {
        let r = server.signed(alice, method, &p(ALICE, path), &JSON_CT, body.as_bytes());
        assert_eq!(
            (r.status, r.text().as_str()),
            (400, "8"),
            "{method} {path}\n{}",
            server.log()
        );
    }
    let r = get(server, alice, &p(ALICE, "/storage/bookmarks/rec1"));
    assert_eq!(
        raw_num(&r.text(), "modified"),
        wire(T_BOOKMARKS - 1000),
        "rec1 unchanged"
    );
    assert_eq!(json(&r)["payload"], MARIADB.rec1);
    for id in ["snow", "good", "bad"] {
        let r = get(
            server,
            alice,
            &p(ALICE, &format!("/storage/bookmarks/{id}")),
        );
        assert_eq!(r.status, 404, "{id}: {}", r.text());
    }
    assert_eq!(
        json(&get(server, alice, &p(ALICE, "/info/collection_counts"))),
        counts
    );
    assert_eq!(
        json(&get(server, alice, &p(ALICE, "/info/collections"))),
        stamps,
        "no timestamp moved"
    );
    assert_eq!(
        int(
            db,
            &format!("SELECT COUNT(*) FROM batch_uploads WHERE userid = {ALICE}")
        ),
        1,
        "only the Python server's open batch"
    );
    assert_eq!(
        int(
            db,
            "SELECT COUNT(*) FROM collections WHERE name = 'newcoll2'"
        ),
        0,
        "not even a collection name"
    );
}

/// PostgreSQL: the rows the Python server's uid-0 tokens wrote stay where they are, and
/// nobody reads them: no token names uid 0, and a Python-issued one is refused.
fn check_uid0(server: &Server, db: &TestDatabase) {
    let zero = server.user(0);
    for path in ["/info/collections", "/storage/meta/global"] {
        let r = server.signed(&zero, "GET", &p(0, path), &[], b"");
        assert_eq!(r.status, 401, "{path}: {}", r.text());
    }
    let r = server.signed(
        &zero,
        "PUT",
        &p(0, "/storage/meta/global"),
        &JSON_CT,
        br#"{"payload": "overwritten"}"#,
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        rows(
            db,
            "SELECT id, payload FROM bso WHERE userid = 0 ORDER BY id"
        ),
        [["global", "mixed"], ["mixed1", "mixed"], ["x", "mixed"]]
            .map(|r| r.map(str::to_string).to_vec()),
        "left for the operator's purge"
    );
}

fn python_database_is_served(f: &Flavour, label: &str) {
    let Some(db) = TestDatabase::create(f.engine, label) else {
        return;
    };
    let alice = Account::new(GENERATION, 1);
    let bob = Account::new(GENERATION + 5000, 3);
    let batch = python_left(&db, f, &alice, &bob);
    let schema = python_schema(&db);

    let key = TestKey::load("oauth-test-key.pk8", "key-1");
    let fxa = FakeFxa::start(&[&key]);
    let server = start(&db, &fxa, TempDir::new());
    assert_eq!(
        python_schema(&db),
        schema,
        "the Python tables are used as they are"
    );

    // Existing accounts get their existing uids: alice's, and bob's current row (whose
    // NULL node the Python server's client-state change left).
    let a = alice.sign_in(&server, &key);
    assert_eq!(a.uid, ALICE);
    let b = bob.sign_in(&server, &key);
    assert_eq!(b.uid, BOB);
    assert_eq!(int(&db, "SELECT COUNT(*) FROM users"), 3, "no new rows");

    check_served(&server, f, &a);
    let r = get(&server, &b, &p(BOB, "/info/collections"));
    assert_eq!(
        json(&r).as_object().map(|o| o.keys().collect::<Vec<_>>()),
        Some(vec![&"bookmarks".to_string()])
    );
    let r = get(&server, &b, &p(BOB, "/storage/bookmarks?full=1"));
    assert_eq!(ids(&json(&r)), ["theirs"]);
    // A token is for its own uid's storage only.
    let r = server.signed(&b, "GET", &p(ALICE, "/info/collections"), &[], b"");
    assert_eq!(r.status, 401, "{}", r.text());

    match f.engine {
        Engine::Mysql => check_latin1(&server, &db, &a),
        _ => {
            check_uid0(&server, &db);
            // PostgreSQL text holds no NUL (the Python server answered an HTML 500).
            let r = server.signed(
                &a,
                "PUT",
                &p(ALICE, "/storage/bookmarks/rec1"),
                &JSON_CT,
                br#"{"payload": "a\u0000b"}"#,
            );
            assert_eq!((r.status, r.text().as_str()), (400, "8"));
        }
    }
    check_writes(&server, &db, f, &a, batch);

    // A new account gets the next uid (on PostgreSQL the Python server's first token said 0).
    let carol = Account::new(GENERATION, 7);
    let c = carol.sign_in(&server, &key);
    assert_eq!(c.uid, NEXT_UID);
    assert_eq!(
        rows(
            &db,
            &format!(
                "SELECT uid, generation, client_state, keys_changed_at, node FROM users
                 WHERE email = {}",
                q(&carol.email())
            )
        ),
        [[
            NEXT_UID.to_string(),
            GENERATION.to_string(),
            carol.client_state(),
            GENERATION.to_string(),
            PUBLIC_URL.to_string()
        ]]
    );
    let r = get(&server, &c, &p(NEXT_UID, "/info/collections"));
    assert_eq!(json(&r), j!({}), "a new account starts empty");
    let r = server.signed(
        &c,
        "PUT",
        &p(NEXT_UID, "/storage/meta/global"),
        &JSON_CT,
        br#"{"payload": "carol's"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        json(&get(&server, &c, &p(NEXT_UID, "/storage/meta/global")))["payload"],
        "carol's"
    );
    assert_eq!(
        json(&get(&server, &a, &p(ALICE, "/storage/meta/global")))["payload"],
        META_PAYLOAD
    );

    // A restart on the same database (our tables now there too) keeps all of it.
    let dir = server.stop();
    let server = start(&db, &fxa, dir);
    let a = alice.sign_in(&server, &key);
    assert_eq!(a.uid, ALICE);
    let r = get(&server, &a, &p(ALICE, "/storage/newcoll/n1"));
    assert_eq!(json(&r)["payload"], "n");
    assert_eq!(
        json(&get(&server, &a, &p(ALICE, "/storage/bookmarks/rec3")))["payload"],
        f.written
    );
    assert_eq!(carol.sign_in(&server, &key).uid, NEXT_UID);
    assert_eq!(int(&db, "SELECT COUNT(*) FROM users"), 4);
    if f.engine == Engine::Postgresql {
        check_uid0(&server, &db);
    }
    assert_eq!(
        python_schema(&db),
        schema,
        "the Python tables are unchanged"
    );
}

#[test]
fn mariadb_database_left_by_python() {
    python_database_is_served(&MARIADB, "pyeng_mysql");
}

#[test]
fn postgresql_database_left_by_python() {
    python_database_is_served(&POSTGRESQL, "pyeng_pg");
}
