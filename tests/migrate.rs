//! `migrate --to URI` end to end: a SQLite database written through the real server
//! (tokenserver sign-ins, records, a pending batch, a generated secret) is copied
//! into a fresh MySQL/MariaDB and a fresh PostgreSQL database while the server
//! keeps serving; a server started on the copy then serves the same data to the
//! same tokens. Reruns copy only what changed; foreign targets are refused.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use common::commands::{fails, ok, run};
use common::engines::{Engine, TestDatabase};
use common::fxa::{self, FakeFxa, TestKey};
use common::{json, Server, ServerSpec, Session, TempDir, User};
use serde_json::Value;

/// A server on a SQLite file whatever `SYNCSERVER_TEST_ENGINE` says, with a
/// generated (stored) secret and the stand-in accounts server.
fn sqlite_server(fxa: &FakeFxa) -> Server {
    let dir = TempDir::new();
    let file = dir.join("syncserver.db");
    Server::start_in(
        dir,
        ServerSpec {
            with_secret: false,
            extra_ini: format!(
                "sqluri = sqlite:///{}\noauth_verifier = {}\n",
                file.display(),
                fxa.url
            ),
            ..ServerSpec::default()
        },
    )
}

/// A server on the database `uri`, with a generated (stored) secret.
fn server_on(uri: &str, fxa: &FakeFxa) -> Server {
    Server::start_spec(ServerSpec {
        with_secret: false,
        extra_ini: format!("sqluri = {uri}\noauth_verifier = {}\n", fxa.url),
        ..ServerSpec::default()
    })
}

fn ini(server: &Server) -> PathBuf {
    server.dir.join("syncserver.ini")
}

/// Signs `sub` in through the tokenserver: the credentials it hands out.
fn sign_in(server: &Server, key: &TestKey, sub: &str) -> User {
    let r = fxa::get_token(server, &key.token(&fxa::claims(sub, 1000)));
    assert_eq!(r.status, 200, "token: {}", r.text());
    let d = json(&r);
    User {
        uid: d["uid"].as_u64().expect("uid"),
        token: d["id"].as_str().expect("id").into(),
        key: d["key"].as_str().expect("key").into(),
    }
}

fn session<'a>(server: &'a Server, user: &User) -> Session<'a> {
    Session {
        server,
        user: User {
            uid: user.uid,
            token: user.token.clone(),
            key: user.key.clone(),
        },
    }
}

#[track_caller]
fn put(s: &Session, rest: &str, body: &str) {
    let r = s.put(rest, body);
    assert_eq!(r.status, 200, "PUT {rest}: {}", r.text());
}

/// Everything a client can read of its data: info/collections, counts, usage,
/// and every record of every collection (by id).
fn view(s: &Session) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let info = s.get_json("/info/collections");
    for name in info.as_object().expect("object").keys() {
        let mut records = s.get_json(&format!("/storage/{name}?full=1"));
        let list = records.as_array_mut().expect("array");
        list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        out.insert(format!("records {name}"), records);
    }
    out.insert("info/collections".into(), info);
    for what in ["collection_counts", "collection_usage"] {
        out.insert(what.into(), s.get_json(&format!("/info/{what}")));
    }
    out
}

/// Runs `migrate --to uri` with `server`'s ini: stdout, checked to succeed, and
/// how long it took.
fn migrate(server: &Server, uri: &str) -> (String, f64) {
    let t0 = Instant::now();
    let out = ok(&run(&ini(server), &["migrate", "--to", uri]));
    (out, t0.elapsed().as_secs_f64())
}

fn count(db: &TestDatabase, sql: &str) -> i64 {
    db.sql(sql).trim().parse().expect(sql)
}

fn sqlite_count(server: &Server, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(server.dir.join("syncserver.db")).expect("open");
    c.query_row(sql, [], |r| r.get(0)).expect(sql)
}

fn moves_up(engine: Engine) {
    let Some(target) = TestDatabase::create(engine, "migrate") else {
        return;
    };
    let key = TestKey::load("oauth-test-key.pk8", "key-1");
    let accounts = FakeFxa::start(&[&key]);
    let mut source = sqlite_server(&accounts);
    let secret = ok(&run(&ini(&source), &["secret"])).trim().to_string();
    source.secret = secret.clone();

    // Two accounts through the tokenserver, and a uid whose token was minted
    // elsewhere (data without a users row).
    let (alice_sub, bob_sub) = (fxa::fxa_uid(), fxa::fxa_uid());
    let alice = sign_in(&source, &key, &alice_sub);
    let bob = sign_in(&source, &key, &bob_sub);
    let a = session(&source, &alice);
    let b = session(&source, &bob);
    let minted = Session::new(&source, 90_000);
    put(
        &a,
        "/storage/meta/global",
        r#"{"payload":"{\"syncID\":\"m\"}"}"#,
    );
    put(
        &a,
        "/storage/bookmarks/b1",
        r#"{"payload":"first é €","sortindex":5}"#,
    );
    put(&a, "/storage/tabs/t1", r#"{"payload":"tab","ttl":3600}"#);
    // More records than one multi-row INSERT takes.
    let items: Vec<String> = (0..250)
        .map(|i| {
            format!(
                r#"{{"id":"h{i:03}","payload":"visit {i}","sortindex":{}}}"#,
                i % 7
            )
        })
        .collect();
    for chunk in items.chunks(100) {
        let r = a.post("/storage/history", &format!("[{}]", chunk.join(",")));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A pending batch: transient, not copied.
    let r = a.post(
        "/storage/history?batch=true",
        r#"[{"id":"pending","payload":"p"}]"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    put(&b, "/storage/forms/f1", r#"{"payload":"form"}"#);
    put(&minted, "/storage/prefs/p1", r#"{"payload":"prefs"}"#);
    assert!(alice.uid != bob.uid && alice.uid != 90_000);

    // First run, while the server serves.
    let (out, first_secs) = migrate(&source, &target.uri);
    eprintln!(
        "first migrate into {} took {first_secs:.2} s:\n{out}",
        engine.name()
    );
    assert!(out.contains("3 uid(s) copied (255 records"), "{out}");
    assert!(out.contains("1 pending batch upload(s)"), "{out}");
    let password = target.addr().password.clone();
    assert!(!password.is_empty() && !out.contains(&password), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("sqluri = "))
        .unwrap_or_else(|| panic!("no sqluri line: {out}"));
    assert!(
        line.contains(":***@") && line.ends_with(&target.name),
        "{line}"
    );
    assert!(out.contains("in place of ***"), "{out}");
    for table in ["bso", "user_collections", "users", "collections"] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        assert_eq!(count(&target, &sql), sqlite_count(&source, &sql), "{table}");
    }
    assert_eq!(count(&target, "SELECT COUNT(*) FROM batch_uploads"), 0);

    // Nothing changed: nothing copied.
    let (out, _) = migrate(&source, &target.uri);
    assert!(
        out.contains("0 uid(s) copied") && out.contains("3 unchanged"),
        "{out}"
    );

    // A change after the first run is copied by the next, and only that user.
    put(&b, "/storage/forms/f2", r#"{"payload":"later"}"#);
    let r = a.delete("/storage/tabs");
    assert_eq!(r.status, 200, "{}", r.text());
    let (out, _) = migrate(&source, &target.uri);
    assert!(
        out.contains("2 uid(s) copied") && out.contains("1 unchanged"),
        "{out}"
    );

    let before: Vec<_> = [&a, &b, &minted].iter().map(|s| view(s)).collect();
    let source_dir = source.stop();

    // The copy serves the same data to the same tokens (the secret moved too).
    let mut served = server_on(&target.uri, &accounts);
    let printed = ok(&run(&ini(&served), &["secret"]));
    assert_eq!(printed.trim(), secret);
    served.secret = secret.clone();
    let (a2, b2) = (session(&served, &alice), session(&served, &bob));
    let minted2 = Session::new(&served, 90_000);
    let after: Vec<_> = [&a2, &b2, &minted2].iter().map(|s| view(s)).collect();
    assert_eq!(before, after);
    assert_eq!(sign_in(&served, &key, &alice_sub).uid, alice.uid);
    assert_eq!(sign_in(&served, &key, &bob_sub).uid, bob.uid);
    // New accounts get uids above every copied one.
    let carol = sign_in(&served, &key, &fxa::fxa_uid());
    assert!(carol.uid > 90_000, "new uid {}", carol.uid);
    put(
        &a2,
        "/storage/bookmarks/b2",
        r#"{"payload":"on the new engine"}"#,
    );
    drop(served);

    // An account deleted and purged on the source since is removed from the target.
    let source_ini = source_dir.join("syncserver.ini");
    let bob_uid = bob.uid.to_string();
    ok(&run(&source_ini, &["users", "delete", &bob_uid, "--yes"]));
    ok(&run(&source_ini, &["purge"]));
    let gone = |table: &str, column: &str| {
        count(
            &target,
            &format!("SELECT COUNT(*) FROM {table} WHERE {column} = {bob_uid}"),
        )
    };
    assert_eq!(gone("bso", "userid"), 2);
    let out = ok(&run(&source_ini, &["migrate", "--to", &target.uri]));
    assert!(out.contains("1 removed"), "{out}");
    assert_eq!(gone("bso", "userid") + gone("users", "uid"), 0);
    assert_eq!(gone("syncserver_fcgi_revoked_uids", "uid"), 1);
    drop(source_dir);

    // Another SQLite database is refused: the target holds this one's migration.
    let other = sqlite_server(&accounts);
    let err = fails(&run(&ini(&other), &["migrate", "--to", &target.uri]));
    assert!(
        err.contains("refusing") && err.contains("a migration from another database"),
        "{err}"
    );
    assert!(!err.contains(&password), "{err}");

    // So is a database some server wrote.
    let foreign = TestDatabase::create(engine, "foreign").expect("server is there");
    let writer = Server::start_spec(ServerSpec {
        extra_ini: format!("sqluri = {}\n", foreign.uri),
        ..ServerSpec::default()
    });
    put(
        &Session::new(&writer, 7),
        "/storage/forms/x",
        r#"{"payload":"x"}"#,
    );
    drop(writer);
    let err = fails(&run(&ini(&other), &["migrate", "--to", &foreign.uri]));
    assert!(
        err.contains("refusing") && err.contains("1 record(s) in bso"),
        "{err}"
    );
    assert_eq!(count(&foreign, "SELECT COUNT(*) FROM bso"), 1);
    // Refused before anything was written there.
    assert!(foreign
        .try_sql("SELECT COUNT(*) FROM syncserver_fcgi_migration")
        .is_err());
}

#[test]
fn moves_up_to_mysql() {
    moves_up(Engine::Mysql);
}

#[test]
fn moves_up_to_postgresql() {
    moves_up(Engine::Postgresql);
}

#[test]
fn refuses_what_it_cannot_do() {
    let dir = TempDir::new();
    let ini = dir.join("syncserver.ini");
    std::fs::write(
        &ini,
        format!(
            "[syncserver]\npublic_url = http://localhost:5000\nsecret = s3cret-0123456789\n\
             sqluri = sqlite:///{}\n",
            dir.join("none.db").display()
        ),
    )
    .unwrap();
    let err = fails(&run(
        &ini,
        &["migrate", "--to", "postgresql://u:pw@127.0.0.1:1/x"],
    ));
    assert!(err.contains("there is no database at"), "{err}");
    let err = fails(&run(&ini, &["migrate", "--to", "sqlite:////tmp/x.db"]));
    assert!(err.contains("use `backup`"), "{err}");
    let err = fails(&run(&ini, &["migrate"]));
    assert!(err.contains("migrate needs --to"), "{err}");
    let help = ok(&run(&ini, &["migrate", "--help"]));
    for word in ["--to URI", "pymysql://", "run it again", "never printed"] {
        assert!(help.contains(word), "{word}: {help}");
    }
    assert!(ok(&run(&ini, &["help"])).contains("migrate --to URI"));
    // A database that cannot be reached: a clear error, the password never shown.
    rusqlite::Connection::open(dir.join("none.db"))
        .and_then(|c| c.execute_batch("CREATE TABLE t (x INTEGER)"))
        .expect("an SQLite file");
    let err = fails(&run(
        &ini,
        &["migrate", "--to", "pymysql://u:topsecretpw@127.0.0.1:1/x"],
    ));
    assert!(err.contains("cannot write the target"), "{err}");
    assert!(
        !err.contains("topsecretpw") && !err.contains("panicked"),
        "{err}"
    );
}

/// MySQL's latin1 tables cannot hold every character SQLite stored: the run stops
/// naming the uid, with the users before it copied, and no panic.
#[test]
fn mysql_names_the_uid_it_cannot_store() {
    let Some(target) = TestDatabase::create(Engine::Mysql, "latin1") else {
        return;
    };
    let dir = TempDir::new();
    let file = dir.join("syncserver.db");
    let source = Server::start_in(
        dir,
        ServerSpec {
            extra_ini: format!("sqluri = sqlite:///{}\n", file.display()),
            ..ServerSpec::default()
        },
    );
    put(
        &Session::new(&source, 1),
        "/storage/forms/a",
        r#"{"payload":"café €"}"#,
    );
    put(
        &Session::new(&source, 2),
        "/storage/forms/b",
        r#"{"payload":"中文"}"#,
    );
    let err = fails(&run(&ini(&source), &["migrate", "--to", &target.uri]));
    assert!(
        err.contains("copying uid 2") && err.contains("outside latin1"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        count(&target, "SELECT COUNT(*) FROM bso WHERE userid = 1"),
        1
    );
    assert_eq!(
        count(&target, "SELECT COUNT(*) FROM bso WHERE userid = 2"),
        0
    );
}
