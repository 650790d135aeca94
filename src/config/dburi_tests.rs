use std::path::{Path, PathBuf};

use super::super::url::{parse_sqluri, ParsedSqlUri};
use super::super::{ConfigError, DatabaseUri, NoteLevel, Origin};
use super::*;

fn origin() -> Origin {
    Origin::Setting {
        section: "syncserver".into(),
        key: "sqluri".into(),
    }
}

fn parsed(uri: &str) -> ParsedSqlUri {
    parse_sqluri(uri, Path::new("/etc/sync"), &origin()).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

fn server(uri: &str) -> ServerUri {
    match parsed(uri).db {
        DatabaseUri::Mysql(u) | DatabaseUri::Postgresql(u) => u,
        other => panic!("{uri}: {other:?}"),
    }
}

fn refused(uri: &str) -> String {
    match parse_sqluri(uri, Path::new("/etc/sync"), &origin()) {
        Err(e @ ConfigError::Invalid { .. }) => e.to_string(),
        other => panic!("{uri}: expected Invalid, got {other:?}"),
    }
}

fn tcp(host: &str, port: Option<u16>) -> ServerHost {
    ServerHost::Tcp {
        host: host.to_string(),
        port,
    }
}

fn pw(u: &ServerUri) -> Option<&str> {
    u.password.as_ref().map(Password::expose)
}

fn mysql_opts(u: &ServerUri) -> &MysqlOptions {
    match &u.options {
        EngineOptions::Mysql(o) => o,
        other => panic!("{other:?}"),
    }
}

fn pg_opts(u: &ServerUri) -> &PostgresOptions {
    match &u.options {
        EngineOptions::Postgresql(o) => o,
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_scheme_maps_to_its_engine() {
    for scheme in MYSQL_SCHEMES {
        let uri = format!("{scheme}://sync:pw@db.example/syncdb");
        let p = parsed(&uri);
        assert!(p.notes.is_empty(), "{uri}: {:?}", p.notes);
        match p.db {
            DatabaseUri::Mysql(u) => {
                assert_eq!(u.scheme, *scheme);
                assert_eq!(u.database, "syncdb");
                assert_eq!(u.host, tcp("db.example", None));
            }
            other => panic!("{uri}: {other:?}"),
        }
    }
    for scheme in POSTGRES_SCHEMES {
        let uri = format!("{scheme}://sync:pw@db.example/syncdb");
        let p = parsed(&uri);
        // `postgres` is accepted silently: SQLAlchemy only warned.
        assert!(p.notes.is_empty(), "{uri}: {:?}", p.notes);
        match p.db {
            DatabaseUri::Postgresql(u) => {
                assert_eq!(u.scheme, *scheme);
                assert_eq!(u.database, "syncdb");
            }
            other => panic!("{uri}: {other:?}"),
        }
    }
    // The scheme is matched in any case and kept as written.
    assert_eq!(server("PyMySQL://h/d").scheme, "PyMySQL");
    assert!(matches!(
        parsed("MYSQL+PYMYSQL://h/d").db,
        DatabaseUri::Mysql(_)
    ));
    for uri in [
        "mysql+aiomysql://h/d",
        "mysql+cymysql://h/d",
        "postgresql+asyncpg://h/d",
        "mssql://h/d",
        "mariadb+mysqldb://h/d",
    ] {
        assert!(
            matches!(
                parse_sqluri(uri, Path::new("/"), &origin()),
                Err(ConfigError::UnsupportedDatabase { .. })
            ),
            "{uri}"
        );
    }
}

#[test]
fn user_and_password_are_percent_decoded() {
    let u = server("mysql://us%40er:p%40ss%2Fw%3Ard@h/db");
    assert_eq!(u.user.as_deref(), Some("us@er"));
    assert_eq!(pw(&u), Some("p@ss/w:rd"));
    // A raw `:` in the password; a raw `@` too (the user info runs to the last `@`).
    let u = server("pymysql://sync:a:b:c@h/db");
    assert_eq!((u.user.as_deref(), pw(&u)), (Some("sync"), Some("a:b:c")));
    let u = server("pymysql://sync:p@ss@h/db");
    assert_eq!((u.user.as_deref(), pw(&u)), (Some("sync"), Some("p@ss")));
    assert_eq!(u.host, tcp("h", None));
    // `#` and `?` in a password, `@` in a query without a password: as SQLAlchemy reads them.
    let u = server("pymysql://sync:a#b?c/d@h/db");
    assert_eq!((pw(&u), u.host.clone()), (Some("a#b?c/d"), tcp("h", None)));
    let u = server("postgresql://sync@h/db?application_name=me@home");
    assert_eq!(u.user.as_deref(), Some("sync"));
    assert_eq!(pg_opts(&u).application_name.as_deref(), Some("me@home"));
    // With a `:` before it, SQLAlchemy read `h` as the user and `5433/db?…=me` as the
    // password: no database, refused; `%40` works.
    refused("postgresql://h:5433/db?application_name=me@home");
    let u = server("postgresql://h:5433/db?application_name=me%40home");
    assert_eq!(
        (u.user.as_deref(), u.host.clone()),
        (None, tcp("h", Some(5433)))
    );
    // Non-ASCII, percent-encoded as UTF-8.
    let u = server("postgresql://J%C3%BCrgen:p%E2%82%AC%F0%9F%98%80@h/d%C3%A9");
    assert_eq!(u.user.as_deref(), Some("Jürgen"));
    assert_eq!(pw(&u), Some("p€😀"));
    assert_eq!(u.database, "dé");
    // `+` is not a space outside the query.
    assert_eq!(pw(&server("mysql://u:a+b@h/db")), Some("a+b"));
    // Not UTF-8 once decoded.
    let msg = refused("mysql://u:%FF@h/db");
    assert!(msg.contains("password"), "{msg}");
    refused("mysql://%FF:x@h/db");
}

#[test]
fn missing_user_or_password() {
    let u = server("mysql://sync@h/db");
    assert_eq!((u.user.as_deref(), pw(&u)), (Some("sync"), None));
    assert_eq!(u.to_string(), "mysql://sync@h/db");
    let u = server("mysql://h/db");
    assert_eq!((u.user.as_deref(), pw(&u)), (None, None));
    assert_eq!(u.to_string(), "mysql://h/db");
    let u = server("postgresql://:secret@h/db");
    assert_eq!((u.user.as_deref(), pw(&u)), (None, Some("secret")));
    assert_eq!(u.to_string(), "postgresql://:***@h/db");
    // An empty password is a password (the driver sends it).
    let u = server("mysql://sync:@h/db");
    assert_eq!(pw(&u), Some(""));
}

#[test]
fn hosts_and_ports() {
    let u = server("mysql://u:p@127.0.0.1:3307/db");
    assert_eq!(u.host, tcp("127.0.0.1", Some(3307)));
    assert_eq!(u.port(), Some(3307));
    let u = server("mysql://u:p@db.example/db");
    assert_eq!(u.host, tcp("db.example", None));
    assert_eq!(u.port(), Some(MYSQL_DEFAULT_PORT));
    let u = server("postgresql://u:p@db.example/db");
    assert_eq!(u.port(), Some(POSTGRES_DEFAULT_PORT));
    let u = server("mysql://u:p@[::1]:3306/db");
    assert_eq!(u.host, tcp("::1", Some(3306)));
    assert_eq!(u.to_string(), "mysql://u:***@[::1]:3306/db");
    let u = server("postgresql://u@[2001:db8::7]/db");
    assert_eq!(u.host, tcp("2001:db8::7", None));
    assert_eq!(u.to_string(), "postgresql://u@[2001:db8::7]/db");
    // MySQL without a host: localhost, as PyMySQL.
    let u = server("pymysql://u:p@/db");
    assert_eq!(u.host, tcp("localhost", None));
    for bad in [
        "mysql://u:p@h:0/db",
        "mysql://u:p@h:70000/db",
        "mysql://u:p@h:/db",
        "mysql://u:p@h:x/db",
        "mysql://u:p@[::1/db",
        "mysql://u:p@[zz]/db",
        "mysql://u:p@[::1]x/db",
        "mysql://u:p@h1,h2/db",
        "mysql://u:p@h%20x/db",
    ] {
        let msg = refused(bad);
        assert!(!msg.contains(":p@"), "{msg}");
    }
}

#[test]
fn unix_sockets() {
    // MySQL: ?unix_socket=, the host (if any) unused.
    let u = server("pymysql://sync:pw@localhost/syncdb?unix_socket=/run/mysqld/mysqld.sock");
    assert_eq!(u.host, ServerHost::Unix("/run/mysqld/mysqld.sock".into()));
    assert_eq!(u.port(), None);
    assert_eq!(
        u.to_string(),
        "pymysql://sync:***@localhost/syncdb?unix_socket=/run/mysqld/mysqld.sock"
    );
    let u = server("mysql://sync@/syncdb?unix_socket=%2Fvar%2Frun%2Fmysqld%2Fmysqld.sock");
    assert_eq!(
        u.host,
        ServerHost::Unix("/var/run/mysqld/mysqld.sock".into())
    );
    let p = parsed("mysql://sync@db.example:3306/syncdb?unix_socket=/tmp/m.sock");
    assert!(p.notes.iter().any(|(_, n)| n.contains("db.example")));
    refused("mysql://sync@localhost/syncdb?unix_socket=relative.sock");
    let msg = refused("mysql://sync@%2Frun%2Fmysqld.sock/syncdb");
    assert!(msg.contains("unix_socket="), "{msg}");

    // PostgreSQL: ?host=/dir, or the directory percent-encoded in the host part.
    let u = server("postgresql://sync:pw@/syncdb?host=/run/postgresql");
    assert_eq!(u.host, ServerHost::Unix("/run/postgresql".into()));
    assert_eq!(
        u.to_string(),
        "postgresql://sync:***@/syncdb?host=/run/postgresql"
    );
    let u = server("postgresql://%2Frun%2Fpostgresql/syncdb");
    assert_eq!(u.host, ServerHost::Unix("/run/postgresql".into()));
    assert_eq!(u.port(), Some(5432));
    let u = server("postgresql://sync@%2Frun%2Fpostgresql:5433/syncdb");
    assert_eq!(u.host, ServerHost::Unix("/run/postgresql".into()));
    assert_eq!(pg_opts(&u).socket_port, Some(5433));
    assert_eq!(u.port(), Some(5433));
    assert_eq!(
        u.to_string(),
        "postgresql://sync@/syncdb?host=/run/postgresql&port=5433"
    );
    // No host at all: libpq's default socket directory, with a note.
    let p = parsed("postgresql:///syncdb");
    match p.db {
        DatabaseUri::Postgresql(u) => {
            assert_eq!(u.host, ServerHost::Unix(POSTGRES_DEFAULT_SOCKET_DIR.into()))
        }
        other => panic!("{other:?}"),
    }
    assert!(p.notes.iter().any(|(_, n)| n.contains("no host")));
}

#[test]
fn postgres_query_overrides() {
    let u = server(
        "postgresql+psycopg2://a:b@h:1/db?host=other.example&port=6543&user=v&password=q%26r",
    );
    assert_eq!(u.host, tcp("other.example", Some(6543)));
    assert_eq!((u.user.as_deref(), pw(&u)), (Some("v"), Some("q&r")));
    assert!(!format!("{u} {u:?}").contains("q&r"));
    let u = server("postgresql://h/?dbname=syncdb");
    assert_eq!(u.database, "syncdb");
    refused("postgresql://h/db?dbname=other");
    let u = server(
        "postgresql://h/db?sslmode=verify-full&connect_timeout=10&application_name=sync+server&options=-c%20search_path%3Dsync&sslrootcert=/etc/ca.pem",
    );
    let o = pg_opts(&u);
    assert_eq!(o.sslmode, Some(PgSslMode::VerifyFull));
    assert_eq!(o.connect_timeout, Some(10));
    assert_eq!(o.application_name.as_deref(), Some("sync server"));
    assert_eq!(o.options.as_deref(), Some("-c search_path=sync"));
    assert_eq!(o.tls, vec![("sslrootcert".into(), "/etc/ca.pem".into())]);
    assert!(u.unknown.is_empty());
    let msg = refused("postgresql://h/db?sslmode=maybe");
    assert!(msg.contains("sslmode=maybe"), "{msg}");
    refused("postgresql://h/db?connect_timeout=-1");
    refused("postgresql://h/db?port=x");
}

#[test]
fn missing_database_is_an_error_naming_the_key() {
    for uri in [
        "mysql://sync:hunter2@h",
        "mysql://sync:hunter2@h/",
        "pymysql://sync:hunter2@h/?charset=utf8",
        "postgresql://sync:hunter2@h",
        "postgres://sync:hunter2@/?host=/run/postgresql",
    ] {
        let msg = refused(uri);
        assert!(msg.contains("sqluri"), "{msg}");
        assert!(msg.contains("no database"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}

#[test]
fn mysql_options() {
    let u = server("pymysql://u:p@h/db?charset=utf8");
    assert_eq!(mysql_opts(&u).charset, Some(MysqlCharset::Utf8mb3));
    assert_eq!(u.to_string(), "pymysql://u:***@h/db?charset=utf8mb3");
    let p = parsed("mysql+pymysql://u:p@h/db?charset=utf8mb4&use_unicode=0");
    let DatabaseUri::Mysql(u) = &p.db else {
        panic!("{:?}", p.db)
    };
    let o = mysql_opts(u);
    assert_eq!(o.charset, Some(MysqlCharset::Utf8mb4));
    assert_eq!(o.ignored, vec![("use_unicode".into(), "0".into())]);
    assert!(p
        .notes
        .iter()
        .any(|(l, n)| *l == NoteLevel::Info && n.contains("use_unicode=0")));
    let u = server("mysql://u:p@h/db?charset=LATIN1&connect_timeout=5&ssl_ca=/etc/ca.pem&sslmode=REQUIRED&autocommit=1&client_flag=2&local_infile=1&compress=1");
    let o = mysql_opts(&u);
    assert_eq!(o.charset, Some(MysqlCharset::Latin1));
    assert_eq!(o.connect_timeout, Some(5));
    assert_eq!(
        o.tls,
        vec![
            ("ssl_ca".into(), "/etc/ca.pem".into()),
            ("sslmode".into(), "REQUIRED".into())
        ]
    );
    assert_eq!(o.ignored.len(), 4);
    for bad in [
        "mysql://h/db?charset=koi8r",
        "mysql://h/db?connect_timeout=0",
        "mysql://h/db?connect_timeout=abc",
        "mysql://h/db?charset=utf8&charset=utf8mb4",
    ] {
        refused(bad);
    }
}

#[test]
fn unknown_and_empty_options_are_notes() {
    let p = parsed("mysql://u:p@h/db?frobnicate=1&passwd=hunter2&charset=");
    let DatabaseUri::Mysql(u) = &p.db else {
        panic!("{:?}", p.db)
    };
    assert_eq!(
        u.unknown,
        vec!["frobnicate".to_string(), "passwd".to_string()]
    );
    assert_eq!(mysql_opts(u).charset, None);
    assert!(p
        .notes
        .iter()
        .any(|(l, n)| *l == NoteLevel::Info && n.contains("`frobnicate`, `passwd`")));
    assert!(p
        .notes
        .iter()
        .any(|(_, n)| n.contains("`charset` has no value")));
    let text = format!("{:?} {} {:?}", p.db, p.db, p.notes);
    assert!(!text.contains("hunter2"), "{text}");
    let u = server("postgresql://h/db?target_session_attrs=any");
    assert_eq!(u.unknown, vec!["target_session_attrs".to_string()]);
}

#[test]
fn display_and_debug_never_show_the_password() {
    for uri in [
        "pymysql://sync:hunter2@127.0.0.1/syncstorage",
        "mysql://sync:hunter2@127.0.0.1:3306/syncdb?charset=utf8mb4",
        "mariadb://sync:hunter2@localhost/syncdb?unix_socket=/run/mysqld/mysqld.sock",
        "postgresql://sync:hunter2@[::1]:5432/syncdb?sslmode=require",
        "postgresql://sync@%2Frun%2Fpostgresql/syncdb?password=hunter2",
        "postgres://sync:hunt%65r2@db/syncdb",
    ] {
        let p = parsed(uri);
        for shown in [format!("{}", p.db), format!("{:?}", p.db)] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }
    assert_eq!(
        parsed("mysql://sync:hunter2@127.0.0.1:3306/syncdb")
            .db
            .to_string(),
        "mysql://sync:***@127.0.0.1:3306/syncdb"
    );
    let p = Password::new("hunter2");
    assert_eq!(
        (format!("{p}"), format!("{p:?}")),
        ("***".into(), "***".into())
    );
    assert_eq!(p.expose(), "hunter2");
}

#[test]
fn display_parses_back_to_the_same_uri() {
    for uri in [
        "mysql://us%40er:x@h:3307/d%2Fb?charset=utf8mb4&connect_timeout=3&ssl_ca=/a%26b.pem",
        "pymysql://u:x@localhost/db?unix_socket=/run/mysqld/mysqld.sock&use_unicode=0",
        "postgresql://u:x@[::1]/db?sslmode=require&application_name=a+b%2Bc&options=-c%20x%3D1",
        "postgresql://u:x@%2Frun%2Fpostgresql:5433/db",
    ] {
        let mut first = server(uri);
        first.password = Some(Password::new("***"));
        let again = server(&first.to_string());
        assert_eq!(again, first, "{uri} -> {first}");
    }
}

#[test]
fn same_database_ignores_options_and_passwords() {
    let a = parsed("pymysql://u:one@h/db").db;
    for same in [
        "mysql+pymysql://u:two@h:3306/db?charset=utf8",
        "mysql://other@H/db",
    ] {
        assert!(a.same_database(&parsed(same).db), "{same}");
    }
    for other in [
        "pymysql://u:one@h/db2",
        "pymysql://u:one@h2/db",
        "pymysql://u:one@h:3307/db",
        "postgresql://u:one@h/db",
    ] {
        assert!(!a.same_database(&parsed(other).db), "{other}");
    }
    let s = DatabaseUri::Sqlite(PathBuf::from("/a.db"));
    assert!(s.same_database(&DatabaseUri::Sqlite("/a.db".into())));
    assert!(!s.same_database(&a));
}
