//! The test harness for the MySQL and PostgreSQL engines (tests/common/engines.rs) against the
//! private servers scripts/engines starts: a test database is made, usable through `sql()`,
//! and gone after drop; the URI's percent-encoded password is the one the server accepts.
//! Without the servers' environment (`SYNCSERVER_TEST_MYSQL`, `SYNCSERVER_TEST_POSTGRESQL`)
//! each test skips (see `common::skip`).

mod common;

use common::engines::{database_exists, server_uri, Engine, ServerAddr, TestDatabase};

/// The password scripts/engines gives the `sync` role: it needs percent-encoding in a URI.
const PASSWORD: &str = "sync pass/é";

fn database_lifecycle(engine: Engine) {
    let Some(db) = TestDatabase::create(engine, "harness lifecycle") else {
        return;
    };
    assert_eq!(db.engine, engine);
    assert!(
        db.uri.ends_with(&format!("/{}", db.name)),
        "{} does not end in the database name",
        db.uri
    );
    assert_eq!(
        ServerAddr::parse(&db.uri).database.as_deref(),
        Some(db.name.as_str())
    );
    assert!(database_exists(engine, &db.name));

    db.sql("CREATE TABLE t(x int, s varchar(20))");
    db.sql("INSERT INTO t VALUES (1, 'one'), (2, 'zwei é'), (3, NULL)");
    assert_eq!(
        db.sql("SELECT x, s FROM t ORDER BY x"),
        "1\tone\n2\tzwei é\n3\tNULL\n"
    );
    assert_eq!(db.sql("SELECT COUNT(*) FROM t").trim(), "3");
    // An error is the client's message, not a panic, through try_sql.
    let err = db.try_sql("SELECT * FROM no_such_table").unwrap_err();
    assert!(err.contains("no_such_table"), "{err}");

    // Two test databases on one server are distinct.
    let other = TestDatabase::create(engine, "harness lifecycle").expect("server is there");
    assert_ne!(other.name, db.name);
    assert!(other.try_sql("SELECT x FROM t").is_err());
    drop(other);

    let name = db.name.clone();
    drop(db);
    assert!(
        !database_exists(engine, &name),
        "{name} still exists after drop"
    );
}

fn password_decodes_to_what_the_server_accepts(engine: Engine) {
    let Some(uri) = server_uri(engine) else {
        common::skip(
            engine.prereq().expect("a server engine"),
            &format!(
                "no {} server: {} is not set",
                engine.name(),
                engine.env_var().unwrap()
            ),
        );
        return;
    };
    let addr = ServerAddr::parse(&uri);
    assert_eq!(addr.engine, engine);
    assert_eq!(addr.host, "127.0.0.1");
    assert_eq!(addr.user, "sync");
    assert_eq!(addr.password, PASSWORD, "the URI's password, decoded");
    assert!(
        uri.contains("sync%20pass%2F%C3%A9@"),
        "the password is percent-encoded in {uri}"
    );
    assert_eq!(addr.database, None, "a server URI names no database: {uri}");

    // The decoded password logs in (over TCP, as the server will)...
    assert_eq!(
        addr.try_sql(None, "SELECT 1").map(|s| s.trim().to_string()),
        Ok("1".to_string())
    );
    // ... and the undecoded text does not: the encoding is not a no-op.
    let raw = ServerAddr {
        password: uri
            .split_once("sync:")
            .and_then(|(_, r)| r.split_once('@'))
            .map(|(p, _)| p.to_string())
            .expect("password in URI"),
        ..addr.clone()
    };
    let refused = raw.try_sql(None, "SELECT 1").unwrap_err();
    assert!(
        refused.contains("denied") || refused.contains("authentication failed"),
        "{refused}"
    );

    // The role may create databases (TestDatabase relies on it; so will the server's own
    // tests of database creation).
    let Some(db) = TestDatabase::create(engine, "harness pw") else {
        return;
    };
    let who = match engine {
        Engine::Mysql => db.sql("SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)"),
        _ => db.sql("SELECT current_user"),
    };
    assert_eq!(who.trim(), "sync");
}

/// The server's settings the engine code may rely on (scripts/engines sets them).
fn server_settings(engine: Engine) {
    let Some(db) = TestDatabase::create(engine, "harness settings") else {
        return;
    };
    match engine {
        Engine::Mysql => {
            let out = db.sql(
                "SELECT @@character_set_server, @@character_set_database, \
                 @@default_storage_engine, @@innodb_lock_wait_timeout",
            );
            assert_eq!(out, "utf8mb4\tutf8mb4\tInnoDB\t5\n");
        }
        _ => {
            let out = db.sql(
                "SELECT pg_encoding_to_char(encoding), datcollate FROM pg_database \
                 WHERE datname = current_database()",
            );
            assert_eq!(out, "UTF8\tC.UTF-8\n");
        }
    }
}

#[test]
fn mysql_database_lifecycle() {
    database_lifecycle(Engine::Mysql);
}

#[test]
fn postgresql_database_lifecycle() {
    database_lifecycle(Engine::Postgresql);
}

#[test]
fn mysql_password_decodes_to_what_the_server_accepts() {
    password_decodes_to_what_the_server_accepts(Engine::Mysql);
}

#[test]
fn postgresql_password_decodes_to_what_the_server_accepts() {
    password_decodes_to_what_the_server_accepts(Engine::Postgresql);
}

#[test]
fn mysql_server_settings() {
    server_settings(Engine::Mysql);
}

#[test]
fn postgresql_server_settings() {
    server_settings(Engine::Postgresql);
}

#[test]
fn server_uris_parse() {
    let a = ServerAddr::parse("mysql://sync:sync%20pass%2F%C3%A9@127.0.0.1:3306/");
    assert_eq!(
        (a.engine, a.user.as_str(), a.password.as_str(), a.port),
        (Engine::Mysql, "sync", PASSWORD, 3306)
    );
    let b = ServerAddr::parse("postgresql://u:p%40ss@h:5432/db_1");
    assert_eq!(
        (b.engine, b.password.as_str(), b.database.as_deref()),
        (Engine::Postgresql, "p@ss", Some("db_1"))
    );
    assert_eq!(Engine::of_uri("pymysql://u@h/d"), Some(Engine::Mysql));
    assert_eq!(Engine::of_uri("sqlite:////x.db"), Some(Engine::Sqlite));
    assert_eq!(Engine::of_uri("postgres://h/d"), Some(Engine::Postgresql));
}
