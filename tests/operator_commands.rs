//! End-to-end tests of the operator commands that work the same on every engine (`purge`,
//! `users list|delete`, `stats`, `secret`): each runs as a real subprocess with the same
//! `--config` as a server that is serving the same database at the same time.
//!
//! This file is in scripts/test's engine matrix: every test runs on SQLite and again with
//! `SYNCSERVER_TEST_ENGINE=mysql` and `=postgresql`, on the database the server was given.
//! The tests reach that database only through the server, the commands and
//! [`Server::db_sql`] (SQL all three engines accept). What is about SQLite files (backup
//! files, a held write lock) is in tests/admin.rs; what only server engines have (dump
//! tools, rows under uid 0, check-config's connection and privilege checks) in
//! tests/operator_engines.rs.

mod common;

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::commands::{fails, ok, run, run_with, stderr};
use common::rows::{cid, count, insert_expiring, insert_user, now_s, table_counts};
use common::{json, Server, ServerSpec, Session, BIN};
use serde_json::Value;

const FXA: &str = "api.accounts.firefox.com";

fn ini(server: &Server) -> std::path::PathBuf {
    server.dir.join("syncserver.ini")
}

fn cli(server: &Server, args: &[&str]) -> Output {
    run(&ini(server), args)
}

#[track_caller]
fn ok_json(o: &Output) -> Value {
    let text = ok(o);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// (uid, id) of every record, sorted.
fn records(c: &Server) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = c
        .db_sql("SELECT userid, id FROM bso")
        .lines()
        .map(|l| {
            let (uid, id) = l.split_once('\t').expect("two columns");
            (uid.parse().expect("uid"), id.to_string())
        })
        .collect();
    // Sorted here: MySQL's latin1 tables collate without regard to case.
    out.sort();
    out
}

fn rec(uid: i64, id: &str) -> (i64, String) {
    (uid, id.to_string())
}

fn uc_count(c: &Server, uid: i64) -> i64 {
    count(
        c,
        &format!("SELECT COUNT(*) FROM user_collections WHERE userid = {uid}"),
    )
}

fn put(s: &Session, rest: &str, body: &str) {
    let r = s.put(rest, body);
    assert_eq!(r.status, 200, "PUT {rest}: {}", r.text());
}

fn purge_json(server: &Server, args: &[&str]) -> Value {
    let mut all = vec!["purge", "--json"];
    all.extend_from_slice(args);
    ok_json(&cli(server, &all))
}

#[track_caller]
fn assert_purged(v: &Value, expired: u64, stale: u64, uids: u64, uid_records: u64) {
    assert_eq!(v["expired_records"], expired, "{v}");
    assert_eq!(v["stale_batch_rows"], stale, "{v}");
    assert_eq!(v["removed_uids"], uids, "{v}");
    assert_eq!(v["removed_uid_records"], uid_records, "{v}");
}

#[test]
fn purge_removes_exactly_what_it_should() {
    let server = Server::start("");
    let s1 = Session::new(&server, 1);
    let s2 = Session::new(&server, 2);
    let s3 = Session::new(&server, 3);
    let s4 = Session::new(&server, 4);
    let s5 = Session::new(&server, 5);
    put(&s1, "/storage/bookmarks/a", r#"{"payload": "live-a"}"#);
    put(&s1, "/storage/bookmarks/b", r#"{"payload": "live-b"}"#);
    put(
        &s1,
        "/storage/history/h1",
        r#"{"payload": "soon", "ttl": 1}"#,
    );
    let r = s1.post(
        "/storage/forms?batch=true",
        r#"[{"id": "f1", "payload": "x"}]"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let open_batch = json(&r)["batch"].as_str().expect("batch id").to_string();
    put(&s2, "/storage/bookmarks/old", r#"{"payload": "old key"}"#);
    put(&s3, "/storage/bookmarks/new", r#"{"payload": "new key"}"#);
    put(&s4, "/storage/tabs/t4", r#"{"payload": "removed"}"#);
    put(&s5, "/storage/tabs/t5", r#"{"payload": "half removed"}"#);

    let now = now_s();
    let c = &server;
    let day_ms = 86_400_000;
    insert_user(c, 1, &format!("aaa@{FXA}"), now * 1000 - 30 * day_ms, None);
    insert_user(
        c,
        2,
        &format!("bbb@{FXA}"),
        now * 1000 - 30 * day_ms,
        Some(now * 1000 - 10 * day_ms),
    );
    insert_user(c, 3, &format!("bbb@{FXA}"), now * 1000 - 10 * day_ms, None);
    insert_user(c, 4, &format!("ccc@{FXA}"), now * 1000 - 5 * day_ms, None);
    // uid 5: an account whose `users delete` was interrupted after its rows went.
    c.db_sql(&format!(
        "INSERT INTO syncserver_fcgi_deleted_uids (uid, deleted_at) VALUES (5, {})",
        now * 1000
    ));
    let history = cid(c, "history");
    let forms = cid(c, "forms");
    insert_expiring(c, 1, history, "old", 2, now - 3 * 86_400);
    insert_expiring(c, 1, history, "recent", 1, now - 60);
    let stale = (now - 3 * 3600) * 1000;
    c.db_sql(&format!(
        "INSERT INTO batch_uploads (batch, userid, collection) VALUES ({stale}, 1, {forms})"
    ));
    for id in ["s1", "s2"] {
        c.db_sql(&format!(
            "INSERT INTO batch_upload_items (batch, userid, id, payload, payload_size)
             VALUES ({stale}, 1, '{id}', 'p', 1)"
        ));
    }

    let out = ok(&cli(&server, &["users", "delete", "4", "--yes"]));
    assert!(
        out.contains(&format!("ccc@{FXA}")) && out.contains("1 record removed"),
        "{out}"
    );
    // The deleted account's token is refused from now on (tests/trust_accounts.rs).
    assert_eq!(s4.get("/info/collections").status, 401);

    // Let the ttl=1 record written through the API expire. A real-clock wait, kept: purge
    // compares whole seconds of the server's clock (a GET's 404 comes up to a second
    // earlier, so polling the API is not enough), and tests cannot advance that clock.
    std::thread::sleep(Duration::from_millis(2100));
    let uc1 = uc_count(c, 1);
    assert!(uc1 >= 2, "uid 1 has bookmarks and history");

    // Default grace period: only what expired days ago, plus the removed account.
    let v = purge_json(&server, &[]);
    assert_purged(&v, 2, 0, 1, 1);
    assert_eq!(v["removed_uid_collections"], 1, "{v}");
    assert_eq!(v["removed_uid_batch_rows"], 0, "{v}");
    assert_eq!(
        records(c),
        vec![
            rec(1, "a"),
            rec(1, "b"),
            rec(1, "h1"),
            rec(1, "recent0"),
            rec(2, "old"),
            rec(3, "new")
        ]
    );

    // No grace: the rest of the expired records and the stale batch.
    let v = purge_json(&server, &["--grace-period", "0"]);
    assert_purged(&v, 2, 3, 0, 0);
    assert_eq!(
        records(c),
        vec![rec(1, "a"), rec(1, "b"), rec(2, "old"), rec(3, "new")]
    );
    assert_eq!(count(c, "SELECT COUNT(*) FROM batch_uploads"), 1);
    assert_eq!(
        count(c, "SELECT COUNT(*) FROM batch_upload_items WHERE id = 'f1'"),
        1
    );
    assert_eq!(count(c, "SELECT COUNT(*) FROM batch_upload_items"), 1);
    assert_eq!(uc_count(c, 2), 1, "replaced uid kept without --replaced");

    // --replaced: the old uid's data goes, its row stays.
    let v = purge_json(&server, &["--grace-period", "0", "--replaced"]);
    assert_purged(&v, 0, 0, 1, 1);
    assert_eq!(v["removed_uid_collections"], 1, "{v}");
    assert_eq!(records(c), vec![rec(1, "a"), rec(1, "b"), rec(3, "new")]);
    assert_eq!(
        table_counts(c),
        vec![
            ("bso", 3),
            ("user_collections", uc1 + 1),
            ("batch_uploads", 1),
            ("batch_upload_items", 1),
            ("users", 3),
            ("syncserver_fcgi_deleted_uids", 0),
        ]
    );
    let replaced = c.db_sql("SELECT replaced_at FROM users WHERE uid = 2");
    assert!(replaced.trim().parse::<i64>().is_ok(), "{replaced:?}");
    for uid in [2, 4, 5] {
        assert_eq!(uc_count(c, uid), 0, "uid {uid}");
    }

    // Nothing left to do: a second run removes nothing.
    let v = purge_json(&server, &["--grace-period", "0", "--replaced"]);
    assert_purged(&v, 0, 0, 0, 0);
    let table = ok(&cli(&server, &["purge", "--grace-period", "0"]));
    assert!(
        table.contains("expired records") && table.contains("stale batch rows"),
        "{table}"
    );

    // The live data is still served, and the open batch still commits.
    let ids = s1.get_json("/storage/bookmarks?sort=index");
    let mut ids: Vec<&str> = ids
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(s1.get("/storage/history/h1").status, 404);
    let r = s1.post(
        &format!("/storage/forms?batch={open_batch}&commit=true"),
        "[]",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s1.get_json("/storage/forms/f1")["payload"], "x");
    assert_eq!(s3.get_json("/storage/bookmarks/new")["payload"], "new key");
    // A replaced uid's token still works (same person), on an empty namespace.
    // Deleted accounts' tokens are refused, uid 5's too: start-up (here the
    // `users delete` command's) gives queued deletions their tombstones.
    assert_eq!(s2.get("/info/collections").text(), "{}");
    for s in [&s4, &s5] {
        assert_eq!(s.get("/info/collections").status, 401, "uid {}", s.user.uid);
    }
}

#[test]
fn purge_in_small_chunks() {
    let server = Server::start("");
    let s = Session::new(&server, 1);
    put(&s, "/storage/history/live", r#"{"payload": "stays"}"#);
    let c = &server;
    let history = cid(c, "history");
    insert_expiring(c, 1, history, "e", 5000, now_s() - 10);
    let v = purge_json(&server, &["--grace-period", "0", "--chunk", "250"]);
    assert_purged(&v, 5000, 0, 0, 0);
    assert_eq!(records(c), vec![rec(1, "live")]);
}

#[test]
fn purge_while_serving_and_twice_at_once() {
    let server = Arc::new(Server::start_spec(ServerSpec {
        workers: 2,
        ..ServerSpec::default()
    }));
    let c = &server;
    let s = Session::new(&server, 9);
    put(&s, "/storage/history/seed", r#"{"payload": "x"}"#);
    let history = cid(c, "history");
    insert_expiring(c, 10, history, "e", 6000, now_s() - 10);

    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
        std::thread::spawn(move || {
            let s = Session::new(&server, 1);
            let mut seen = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) || i < 10 {
                let r = s.put(
                    &format!("/storage/bookmarks/r{}", i % 50),
                    &format!(r#"{{"payload": "v{i}"}}"#),
                );
                seen.push((format!("PUT {i}"), r.status, r.text()));
                let r = s.get(&format!("/storage/bookmarks/r{}", i % 50));
                seen.push((format!("GET {i}"), r.status, r.text()));
                i += 1;
            }
            seen
        })
    };
    let ini = ini(&server);
    let args = [
        "--config",
        ini.to_str().unwrap(),
        "purge",
        "--json",
        "--grace-period",
        "0",
        "--chunk",
        "100",
    ];
    let spawn = || {
        Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("purge")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    stop.store(true, Ordering::SeqCst);
    let seen = client.join().expect("client thread");
    let (va, vb) = (ok_json(&a), ok_json(&b));
    let total = va["expired_records"].as_u64().unwrap() + vb["expired_records"].as_u64().unwrap();
    assert_eq!(total, 6000, "{va} {vb}");
    for (what, status, body) in &seen {
        assert_eq!(*status, 200, "{what}: {body}\n{}", server.log());
    }
    assert!(seen.len() >= 20, "{} requests", seen.len());
    assert_eq!(
        count(c, "SELECT COUNT(*) FROM bso WHERE userid = 10"),
        0,
        "all expired rows gone"
    );
    assert_eq!(count(c, "SELECT COUNT(*) FROM bso WHERE userid = 9"), 1);
    let live = count(c, "SELECT COUNT(*) FROM bso WHERE userid = 1");
    assert_eq!(live, (seen.len() as i64 / 2).min(50));
}

fn list_json(server: &Server) -> Vec<Value> {
    match ok_json(&cli(server, &["users", "list", "--json"])) {
        Value::Array(a) => a,
        other => panic!("not a list: {other}"),
    }
}

#[test]
fn users_list_shows_rows_and_usage() {
    let server = Server::start("");
    let c = &server;
    insert_user(c, 1, "aaa@x", 1_700_000_000_000, None);
    insert_user(c, 2, "bbb@x", 1_600_000_000_000, Some(1_700_000_000_000));
    insert_user(c, 3, "bbb@x", 1_700_000_000_000, None);
    let s1 = Session::new(&server, 1);
    put(&s1, "/storage/bookmarks/a", r#"{"payload": "hello"}"#);
    put(&s1, "/storage/history/b", r#"{"payload": "wörld"}"#);
    let history = cid(c, "history");
    insert_expiring(c, 1, history, "x", 3, now_s() - 10);
    put(
        &Session::new(&server, 3),
        "/storage/tabs/t",
        r#"{"payload": "abc"}"#,
    );

    let list = list_json(&server);
    // Usage is UTF-8 bytes: "hello" 5 + "wörld" 6.
    let expect = serde_json::json!([
        {"uid": 1, "account": "aaa@x", "created_at": 1_700_000_000_000i64,
         "replaced_at": null, "records": 2, "bytes": 11},
        {"uid": 2, "account": "bbb@x", "created_at": 1_600_000_000_000i64,
         "replaced_at": 1_700_000_000_000i64, "records": 0, "bytes": 0},
        {"uid": 3, "account": "bbb@x", "created_at": 1_700_000_000_000i64,
         "replaced_at": null, "records": 1, "bytes": 3},
    ]);
    assert_eq!(Value::Array(list), expect);

    let table = ok(&cli(&server, &["users", "list"]));
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 4, "{table}");
    for word in ["uid", "account", "created", "replaced", "records", "bytes"] {
        assert!(lines[0].contains(&word), "{table}");
    }
    assert_eq!(
        lines[1],
        ["1", "aaa@x", "2023-11-14", "22:13:20", "-", "2", "11"],
        "{table}"
    );
    assert_eq!(
        lines[2],
        [
            "2",
            "bbb@x",
            "2020-09-13",
            "12:26:40",
            "2023-11-14",
            "22:13:20",
            "0",
            "0"
        ],
        "{table}"
    );
    assert_eq!(
        lines[3],
        ["3", "bbb@x", "2023-11-14", "22:13:20", "-", "1", "3"],
        "{table}"
    );
}

#[test]
fn users_delete_by_uid_account_and_email() {
    let server = Server::start("");
    let c = &server;
    let created = now_s() * 1000 - 1000;
    insert_user(c, 1, &format!("acct1@{FXA}"), created, None);
    insert_user(c, 2, &format!("acct2@{FXA}"), created, None);
    insert_user(c, 3, &format!("acct3@{FXA}"), created - 10, Some(created));
    insert_user(c, 4, &format!("acct3@{FXA}"), created, None);
    insert_user(c, 5, &format!("acct5@{FXA}"), created, None);
    insert_user(c, 6, &format!("acct6@{FXA}"), created, None);
    let sessions: Vec<Session> = (1..=6).map(|uid| Session::new(&server, uid)).collect();
    for s in &sessions {
        put(s, "/storage/bookmarks/x", r#"{"payload": "data"}"#);
        put(s, "/storage/tabs/y", r#"{"payload": "more"}"#);
    }
    let ini = ini(&server);
    let users_of = |uid: i64| {
        c.db_int(&format!(
            "SELECT (SELECT COUNT(*) FROM users WHERE uid = {uid})
                  + (SELECT COUNT(*) FROM bso WHERE userid = {uid})
                  + (SELECT COUNT(*) FROM user_collections WHERE userid = {uid})"
        ))
    };
    let before = table_counts(c);

    // Refused at the prompt, or no answer at all: nothing happens.
    for answer in ["n\n", "", "whatever\n"] {
        let o = run_with(&ini, &["users", "delete", "1"], Some(answer));
        let err = fails(&o);
        assert!(err.contains("[y/N]"), "{err}");
        assert!(err.contains(&format!("acct1@{FXA}")), "{err}");
        assert!(err.contains("not deleted"), "{err}");
        assert_eq!(table_counts(c), before);
    }
    // Unknown accounts: a clear message, nothing changed.
    for target in ["nobody", "999", "acct1@elsewhere"] {
        let err = fails(&cli(&server, &["users", "delete", target, "--yes"]));
        assert!(err.contains("no account matches"), "{target}: {err}");
        assert_eq!(table_counts(c), before);
    }

    // "y" on stdin, by uid.
    let o = run_with(&ini, &["users", "delete", "1"], Some("y\n"));
    let out = ok(&o);
    assert!(out.contains("2 records removed"), "{out}");
    assert_eq!(users_of(1), 0);
    // By account uid, by full account (all its uids, replaced too), by uid.
    ok(&cli(&server, &["users", "delete", "acct2", "--yes"]));
    assert_eq!(users_of(2), 0);
    let out = ok(&cli(
        &server,
        &["users", "delete", &format!("acct3@{FXA}"), "--yes"],
    ));
    assert!(out.contains("4 records removed"), "{out}");
    assert_eq!(users_of(3) + users_of(4), 0);
    ok(&cli(&server, &["users", "delete", "5", "-y"]));
    assert_eq!(users_of(5), 0);

    // Only uid 6 is left, untouched.
    assert_eq!(
        table_counts(c),
        vec![
            ("bso", 2),
            ("user_collections", 2),
            ("batch_uploads", 0),
            ("batch_upload_items", 0),
            ("users", 1),
            ("syncserver_fcgi_deleted_uids", 0),
        ]
    );
    // The deleted accounts' tokens are refused; their data is gone (counts above).
    for s in &sessions[..5] {
        assert_eq!(s.get("/info/collections").status, 401, "uid {}", s.user.uid);
    }
    assert_eq!(
        sessions[5].get_json("/storage/bookmarks/x")["payload"],
        "data"
    );
    let list = list_json(&server);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["uid"], 6);
}

/// The prompt and the result count the same records: live ones and expired
/// ones not purged yet (both go), and say so; "1 record", not "1 records".
#[test]
fn users_delete_counts_what_it_removes() {
    let server = Server::start("");
    let c = &server;
    let created = now_s() * 1000 - 1000;
    insert_user(c, 1, &format!("acct1@{FXA}"), created, None);
    insert_user(c, 2, &format!("acct2@{FXA}"), created, None);
    let s = Session::new(&server, 1);
    for id in ["a", "b", "c", "d", "e"] {
        put(
            &s,
            &format!("/storage/bookmarks/{id}"),
            r#"{"payload": "data"}"#,
        );
    }
    put(
        &Session::new(&server, 2),
        "/storage/tabs/t",
        r#"{"payload": "tab"}"#,
    );
    let bookmarks = cid(c, "bookmarks");
    insert_expiring(c, 1, bookmarks, "old", 1, now_s() - 10);
    let ini = ini(&server);
    let err = fails(&run_with(&ini, &["users", "delete", "1"], Some("n\n")));
    assert!(
        err.contains("(uid 1; 6 records, of which 1 expired, 24 bytes)?"),
        "{err}"
    );
    let o = run_with(&ini, &["users", "delete", "1"], Some("y\n"));
    assert!(
        stderr(&o).contains("6 records, of which 1 expired"),
        "{}",
        stderr(&o)
    );
    let out = ok(&o);
    assert!(
        out.contains("6 records removed (expired ones included)"),
        "{out}"
    );
    let err = fails(&run_with(&ini, &["users", "delete", "2"], Some("no\n")));
    assert!(
        err.contains("(uid 2; 1 record, none expired, 3 bytes)?"),
        "{err}"
    );
    let out = ok(&cli(&server, &["users", "delete", "2", "--yes"]));
    assert!(out.contains(": 1 record removed"), "{out}");
}

#[test]
fn stats_figures() {
    let server = Server::start("");
    let c = &server;
    insert_user(c, 1, "aaa@x", 1_600_000_000_000, None);
    insert_user(c, 2, "bbb@x", 1_600_000_000_000, Some(1_650_000_000_000));
    insert_user(c, 3, "bbb@x", 1_650_000_000_000, None);
    let s1 = Session::new(&server, 1);
    put(&s1, "/storage/bookmarks/a", r#"{"payload": "12345"}"#);
    put(&s1, "/storage/bookmarks/b", r#"{"payload": "123"}"#);
    put(&s1, "/storage/history/h", r#"{"payload": "1"}"#);
    put(
        &Session::new(&server, 3),
        "/storage/bookmarks/c",
        r#"{"payload": "12"}"#,
    );
    let r = s1.post("/storage/bookmarks?batch=true", r#"[{"id": "z"}]"#);
    assert_eq!(r.status, 202, "{}", r.text());
    let history = cid(c, "history");
    insert_expiring(c, 1, history, "old", 1, 1_600_000_000);
    insert_expiring(c, 1, history, "older", 1, 1_650_000_000);

    let v = ok_json(&cli(&server, &["stats", "--json"]));
    let expect = [
        ("accounts", 2),
        ("user_rows", 3),
        ("collections", 3),
        ("records", 4),
        ("expired_records", 2),
        ("bytes", 11),
        ("open_batches", 1),
        ("oldest_expired", 1_600_000_000),
    ];
    for (key, value) in expect {
        assert_eq!(v[key], value, "{key} in {v}");
    }
    let size = v["database_bytes"].as_i64().expect("database_bytes");
    assert!(size > 4096, "{v}");

    let table = ok(&cli(&server, &["stats"]));
    for (label, value) in [
        ("accounts", "2"),
        ("records", "4"),
        ("open batches", "1"),
        ("oldest expired record", "2020-09-13 12:26:40"),
    ] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(label) && l.trim_end().ends_with(value)),
            "{label} {value} in\n{table}"
        );
    }
}

/// `secret` prints the secret the server generated and stored in its database at its first
/// start (none configured), on every engine: tokens signed with it are accepted.
#[test]
fn secret_prints_the_stored_one() {
    let mut server = Server::start_spec(ServerSpec {
        with_secret: false,
        ..ServerSpec::default()
    });
    let secret = ok(&cli(&server, &["secret"])).trim().to_string();
    assert_eq!(secret.len(), 64, "{secret}");
    assert_eq!(ok(&cli(&server, &["secret"])).trim(), secret);
    let metrics = ok(&cli(&server, &["secret", "--metrics"]))
        .trim()
        .to_string();
    assert_eq!(metrics.len(), 64);
    assert_ne!(metrics, secret);
    server.secret = secret.clone();
    let r = Session::new(&server, 7).get("/info/collections");
    assert_eq!(
        r.status,
        200,
        "signed with the printed secret: {}",
        r.text()
    );
    put(
        &Session::new(&server, 7),
        "/storage/tabs/t",
        r#"{"payload": "payload-never-logged"}"#,
    );
    // The server logs at debug here: neither the secret it read from the database nor a
    // payload may show (the PostgreSQL driver logs statement parameters at debug).
    let log = server.log();
    assert!(!log.contains(&secret), "the secret was logged");
    assert!(
        !log.contains("payload-never-logged"),
        "a payload was logged"
    );
}
