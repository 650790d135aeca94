//! The connection layer shared by the MySQL/MariaDB and PostgreSQL engines: what a
//! server is ([`ServerParams`]), the values that travel ([`Value`], [`Row`]), and the
//! small trait ([`Conn`]) that the storage logic in `sql/mod.rs` is written against.
//!
//! Statements are written once, in a neutral SQL (see [`super::dialect`]): the driver
//! glue translates and prepares each text once per connection and keeps it. Failures
//! are sorted into the storage error kinds here, in one place per driver:
//! lock waits, deadlocks, serialization failures and statement timeouts are
//! `DbError::Busy` (503, retry), a lost or refused connection is `DbError::Unavailable`
//! (503; the session drops the connection and reconnects on its next use), text the
//! table cannot hold is `DbError::UnstorableText` (400), the rest `DbError::Backend`
//! with the driver's error as its cause.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{EngineOptions, MysqlCharset, PgSslMode, ServerHost, ServerUri};

use crate::db::{DbError, DbResult};
use crate::uid::Uid;

/// Which server engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// MySQL or MariaDB.
    Mysql,
    /// PostgreSQL.
    Postgresql,
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// TCP; `None`: the engine's default port (3306, 5432).
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: Option<u16>,
    },
    /// A unix socket: the socket file (MySQL) or its directory (PostgreSQL, whose
    /// socket file is named for `port`).
    Unix {
        /// The socket file or directory.
        path: PathBuf,
        /// PostgreSQL: the port naming the socket file (`None`: 5432).
        port: Option<u16>,
    },
}

/// Everything needed to reach one database on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerParams {
    /// The engine.
    pub engine: Engine,
    /// Where the server is.
    pub host: Host,
    /// User name (`None`: the driver's default).
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Database (schema) name.
    pub database: String,
    /// MySQL connection character set (`?charset=`); `None`: utf8mb4. Ignored by
    /// PostgreSQL (always UTF8).
    pub charset: Option<MysqlCharset>,
    /// How long connecting may take (`None`: 10 s).
    pub connect_timeout: Option<Duration>,
    /// PostgreSQL `application_name` (`None`: syncserver-fcgi).
    pub application_name: Option<String>,
    /// PostgreSQL `options`, sent to the server at connect (e.g. `-c search_path=sync`).
    pub server_options: Option<String>,
}

/// The default connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl ServerParams {
    /// The driver's view of a `sqluri`. Refused: options that ask for TLS, which
    /// neither driver is built with here (connecting without it would quietly drop
    /// the protection the operator asked for).
    pub fn from_uri(uri: &ServerUri) -> Result<ServerParams, String> {
        let socket_port = uri.port();
        let host = match &uri.host {
            ServerHost::Tcp { host, port } => Host::Tcp {
                host: host.clone(),
                port: *port,
            },
            ServerHost::Unix(path) => Host::Unix {
                path: path.clone(),
                port: socket_port,
            },
        };
        let mut params = ServerParams {
            engine: Engine::Mysql,
            host,
            user: uri.user.clone(),
            password: uri.password.as_ref().map(|p| p.expose().to_string()),
            database: uri.database.clone(),
            charset: None,
            connect_timeout: None,
            application_name: None,
            server_options: None,
        };
        let no_tls = |given: &[(String, String)]| match given.first() {
            Some((key, _)) => Err(format!(
                "{key} asks for TLS to the database server, which this build cannot do: \
                 connect over a unix socket or a private network and drop the ssl options"
            )),
            None => Ok(()),
        };
        match &uri.options {
            EngineOptions::Mysql(o) => {
                no_tls(&o.tls)?;
                params.charset = o.charset;
                params.connect_timeout = o.connect_timeout.map(Duration::from_secs);
            }
            EngineOptions::Postgresql(o) => {
                no_tls(&o.tls)?;
                if let Some(
                    mode @ (PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull),
                ) = o.sslmode
                {
                    return Err(format!(
                        "sslmode={} asks for TLS to the database server, which this build \
                         cannot do: use sslmode=prefer or disable over a unix socket or a \
                         private network",
                        mode.as_str()
                    ));
                }
                params.engine = Engine::Postgresql;
                // libpq: 0 means wait forever; a worker must not.
                params.connect_timeout = o
                    .connect_timeout
                    .filter(|&t| t > 0)
                    .map(Duration::from_secs);
                params.application_name = o.application_name.clone();
                params.server_options = o.options.clone();
            }
        }
        Ok(params)
    }

    /// The database, for messages (never the password).
    pub fn place(&self) -> String {
        let scheme = match self.engine {
            Engine::Mysql => "mysql",
            Engine::Postgresql => "postgresql",
        };
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        match &self.host {
            Host::Tcp { host, port } => {
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                format!("{scheme}://{user}{host}{port}/{}", self.database)
            }
            Host::Unix { path, .. } => format!(
                "{scheme}://{user}localhost/{} (socket {})",
                self.database,
                path.display()
            ),
        }
    }
}

impl ServerParams {
    /// The engine's own dump command for this database, writing `target`, for the
    /// operator to run: every connection detail is in it except the password, which
    /// the tool asks for (mariadb-dump: `--password` without a value; pg_dump prompts
    /// by itself, or reads `~/.pgpass` / `PGPASSWORD`).
    pub fn dump_command(&self, target: &std::path::Path) -> String {
        let file = shell_quote(&target.to_string_lossy());
        let mut args: Vec<String> = Vec::new();
        let arg = |args: &mut Vec<String>, name: &str, value: &str| {
            args.push(format!("--{name}={}", shell_quote(value)));
        };
        match self.engine {
            Engine::Postgresql => {
                args.push("pg_dump --format=custom".into());
                match &self.host {
                    Host::Tcp { host, port } => {
                        arg(&mut args, "host", host);
                        arg(&mut args, "port", &port.unwrap_or(5432).to_string());
                    }
                    Host::Unix { path, port } => {
                        arg(&mut args, "host", &path.to_string_lossy());
                        arg(&mut args, "port", &port.unwrap_or(5432).to_string());
                    }
                }
                if let Some(user) = &self.user {
                    arg(&mut args, "username", user);
                }
                // pg_dump asks for a password when the server wants one (no
                // --password: that would prompt even with ~/.pgpass in place).
                args.push(format!("--file={file}"));
                args.push(shell_quote(&self.database));
            }
            Engine::Mysql => {
                // `mysqldump` on MySQL: the same options.
                args.push("mariadb-dump --single-transaction".into());
                match &self.host {
                    Host::Tcp { host, port } => {
                        arg(&mut args, "host", host);
                        arg(&mut args, "port", &port.unwrap_or(3306).to_string());
                    }
                    Host::Unix { path, .. } => arg(&mut args, "socket", &path.to_string_lossy()),
                }
                if let Some(user) = &self.user {
                    arg(&mut args, "user", user);
                }
                if self.password.is_some() {
                    args.push("--password".into());
                }
                args.push(format!("--result-file={file}"));
                args.push(shell_quote(&self.database));
            }
        }
        args.join(" ")
    }
}

/// `s` as one shell word: as it is when that is safe, else in single quotes.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Any integer (also booleans, as 0/1).
    Int(i64),
    /// Text.
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<Uid> for Value {
    fn from(v: Uid) -> Value {
        Value::Int(v.get())
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

fn bad_column(i: usize, want: &str, got: &Value) -> DbError {
    DbError::Backend(format!("column {i}: expected {want}, got {got:?}").into())
}

impl Row {
    fn at(&self, i: usize) -> DbResult<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| DbError::Backend(format!("no column {i} in the row").into()))
    }
    /// An integer column that may be NULL (text holding an integer, as MySQL
    /// returns DECIMAL sums, is read as one).
    pub fn opt_int(&self, i: usize) -> DbResult<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            v @ Value::Text(t) => {
                let t = t.strip_suffix(".0").unwrap_or(t);
                t.parse()
                    .map(Some)
                    .map_err(|_| bad_column(i, "an integer", v))
            }
        }
    }
    /// An integer column.
    pub fn int(&self, i: usize) -> DbResult<i64> {
        self.opt_int(i)?
            .ok_or_else(|| bad_column(i, "an integer", &Value::Null))
    }
    /// A text column that may be NULL.
    pub fn opt_text(&self, i: usize) -> DbResult<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(t) => Ok(Some(t.clone())),
            v => Err(bad_column(i, "text", v)),
        }
    }
    /// A text column.
    pub fn text(&self, i: usize) -> DbResult<String> {
        self.opt_text(i)?
            .ok_or_else(|| bad_column(i, "text", &Value::Null))
    }
    /// Takes a text column out of the row (no copy).
    pub fn take_text(&mut self, i: usize) -> DbResult<String> {
        match self.0.get_mut(i).map(|v| std::mem::replace(v, Value::Null)) {
            Some(Value::Text(t)) => Ok(t),
            Some(v) => Err(bad_column(i, "text", &v)),
            None => Err(DbError::Backend(format!("no column {i} in the row").into())),
        }
    }
}

/// One connection to a database server, as the storage logic sees it. SQL is the
/// neutral form of [`super::dialect`]; `?` placeholders take `args` in order.
pub trait Conn: Send {
    /// The engine (for the dialect's few engine-specific statements).
    fn engine(&self) -> Engine;
    /// Runs a statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, args: &[Value]) -> DbResult<u64>;
    /// Runs a query, handing each row to `each` as it arrives; `each` returns
    /// false to stop reading.
    fn query_each(
        &mut self,
        sql: &str,
        args: &[Value],
        each: &mut dyn FnMut(Row) -> DbResult<bool>,
    ) -> DbResult<()>;
    /// Runs statements without parameters or results (BEGIN, COMMIT, SET, DDL),
    /// as the engine's SQL, untranslated.
    fn batch(&mut self, sql: &str) -> DbResult<()>;
    /// Whether the connection is known to be unusable (lost): the session then
    /// opens a new one.
    fn broken(&self) -> bool;
}

impl dyn Conn + '_ {
    /// All rows of a query.
    pub fn query(&mut self, sql: &str, args: &[Value]) -> DbResult<Vec<Row>> {
        let mut rows = Vec::new();
        self.query_each(sql, args, &mut |r| {
            rows.push(r);
            Ok(true)
        })?;
        Ok(rows)
    }
    /// The first row of a query, if any.
    pub fn query_row(&mut self, sql: &str, args: &[Value]) -> DbResult<Option<Row>> {
        let mut first = None;
        self.query_each(sql, args, &mut |r| {
            first = Some(r);
            Ok(false)
        })?;
        Ok(first)
    }
    /// Starts a transaction.
    pub fn begin(&mut self) -> DbResult<()> {
        self.batch("BEGIN")
    }
    /// Commits the transaction.
    pub fn commit(&mut self) -> DbResult<()> {
        self.batch("COMMIT")
    }
    /// Rolls the transaction back.
    pub fn rollback(&mut self) -> DbResult<()> {
        self.batch("ROLLBACK")
    }
}

/// Opens a connection to `params`, with the session settings of its engine.
pub fn connect(params: &ServerParams) -> DbResult<Box<dyn Conn>> {
    match params.engine {
        Engine::Postgresql => super::postgres::PgConn::connect(params).map(|c| Box::new(c) as _),
        Engine::Mysql => super::mysql::MyConn::connect(params).map(|c| Box::new(c) as _),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(uri: &str) -> ServerParams {
        match crate::config::DatabaseUri::parse(uri).unwrap() {
            crate::config::DatabaseUri::Mysql(u) | crate::config::DatabaseUri::Postgresql(u) => {
                ServerParams::from_uri(&u).unwrap()
            }
            other => panic!("not a server: {other}"),
        }
    }

    #[test]
    fn from_sqluri() {
        let p = params("postgresql://sync:p%40w@127.0.0.1:5433/db%2Dx?application_name=a");
        assert_eq!(p.engine, Engine::Postgresql);
        assert_eq!(
            p.host,
            Host::Tcp {
                host: "127.0.0.1".into(),
                port: Some(5433)
            }
        );
        assert_eq!(
            (p.user.as_deref(), p.password.as_deref()),
            (Some("sync"), Some("p@w"))
        );
        assert_eq!(p.database, "db-x");
        assert_eq!(p.application_name.as_deref(), Some("a"));
        assert_eq!(p.place(), "postgresql://sync@127.0.0.1:5433/db-x");
        let m = params("pymysql://u@localhost/sync?charset=utf8&unix_socket=/run/my.sock");
        assert_eq!(m.engine, Engine::Mysql);
        assert_eq!(
            m.host,
            Host::Unix {
                path: "/run/my.sock".into(),
                port: None
            }
        );
        assert_eq!(m.charset, Some(MysqlCharset::Utf8mb3));
        let s = params("postgresql:///sync?host=/run/pg&port=5433");
        assert_eq!(
            s.host,
            Host::Unix {
                path: "/run/pg".into(),
                port: Some(5433)
            }
        );
    }

    #[test]
    fn dump_commands_name_everything_but_the_password() {
        let p = params("postgresql://sync:s3cr%3Bt@db.example:5433/sync%20db");
        assert_eq!(
            p.dump_command(std::path::Path::new("/backups/sync.dump")),
            "pg_dump --format=custom --host=db.example --port=5433 --username=sync \
             --file=/backups/sync.dump 'sync db'"
        );
        let m = params("pymysql://o'neil:s3cr%3Bt@localhost/sync?unix_socket=/run/my.sock");
        assert_eq!(
            m.dump_command(std::path::Path::new("it's.sql")),
            "mariadb-dump --single-transaction --socket=/run/my.sock --user='o'\\''neil' \
             --password --result-file='it'\\''s.sql' sync"
        );
        let n = params("mysql://root@127.0.0.1/sync");
        assert_eq!(
            n.dump_command(std::path::Path::new("a.sql")),
            "mariadb-dump --single-transaction --host=127.0.0.1 --port=3306 --user=root \
             --result-file=a.sql sync"
        );
    }

    #[test]
    fn tls_is_refused_not_dropped() {
        for uri in [
            "postgresql://u@h/db?sslmode=require",
            "postgresql://u@h/db?sslrootcert=/ca.pem",
            "mysql://u@h/db?ssl_ca=/ca.pem",
        ] {
            let (crate::config::DatabaseUri::Mysql(u) | crate::config::DatabaseUri::Postgresql(u)) =
                crate::config::DatabaseUri::parse(uri).unwrap()
            else {
                panic!("{uri}")
            };
            let err = ServerParams::from_uri(&u).unwrap_err();
            assert!(err.contains("TLS"), "{uri}: {err}");
        }
        params("postgresql://u@h/db?sslmode=prefer");
    }

    /// The servers named by `SYNCSERVER_TEST_MYSQL` / `SYNCSERVER_TEST_POSTGRESQL`
    /// (URIs without a database), each on its maintenance database. A server not
    /// named fails the test, as the integration tests' prerequisites do, unless
    /// `SYNCSERVER_TEST_ALLOW_SKIP` names the engine (or `all`); then it is reported
    /// as skipped (stderr, and the file `SYNCSERVER_TEST_SKIP_REPORT` names).
    pub(crate) fn servers() -> Vec<ServerParams> {
        let allowed = std::env::var("SYNCSERVER_TEST_ALLOW_SKIP").unwrap_or_default();
        [
            ("SYNCSERVER_TEST_MYSQL", "mysql", "mysql"),
            ("SYNCSERVER_TEST_POSTGRESQL", "postgres", "postgresql"),
        ]
        .iter()
        .filter_map(|(var, maintenance, key)| match std::env::var(var) {
            Ok(url) => {
                let base = url.split('?').next().unwrap_or(&url).trim_end_matches('/');
                Some(params(&format!("{base}/{maintenance}")))
            }
            Err(_) => {
                let line = format!("SKIP db::sql::conn live tests on {key}: {var} is not set");
                assert!(
                    allowed
                        .split(',')
                        .any(|k| k.trim() == *key || k.trim() == "all"),
                    "{var} is not set: scripts/test starts the engines (scripts/engines); \
                     to skip instead, set SYNCSERVER_TEST_ALLOW_SKIP={key}"
                );
                eprintln!("{line}");
                if let Ok(report) = std::env::var("SYNCSERVER_TEST_SKIP_REPORT") {
                    use std::io::Write as _;
                    if let Ok(mut f) = std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(report)
                    {
                        let _ = writeln!(f, "{line}");
                    }
                }
                None
            }
        })
        .collect()
    }

    /// Values travel both ways, and a connection killed under us is `Unavailable`
    /// and known broken.
    #[test]
    fn live_round_trip_and_lost_connection() {
        for server in servers() {
            let mut a = connect(&server).unwrap();
            let mut b = connect(&server).unwrap();
            let row = a
                .query_row(
                    "SELECT ?i + 1, ?t, ?t",
                    &[41.into(), "é€中".into(), Value::Null],
                )
                .unwrap()
                .unwrap();
            assert_eq!(row.int(0).unwrap(), 42);
            assert_eq!(row.text(1).unwrap(), "é€中");
            assert_eq!(row.opt_text(2).unwrap(), None);
            let (id_sql, kill) = match server.engine {
                Engine::Postgresql => ("SELECT pg_backend_pid()", "SELECT pg_terminate_backend("),
                Engine::Mysql => ("SELECT CONNECTION_ID()", "KILL CONNECTION ("),
            };
            let id = a.query_row(id_sql, &[]).unwrap().unwrap().int(0).unwrap();
            b.batch(&format!("{kill}{id})")).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let err = a.query_row("SELECT 1", &[]).unwrap_err();
            assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
            assert!(a.broken());
            assert!(!b.broken());
        }
    }

    #[test]
    fn rows() {
        let mut r = Row(vec![
            Value::Int(3),
            Value::Text("42".into()),
            Value::Null,
            Value::Text("x".into()),
        ]);
        assert_eq!(r.int(0).unwrap(), 3);
        assert_eq!(r.int(1).unwrap(), 42);
        assert_eq!(r.opt_int(2).unwrap(), None);
        assert!(r.int(2).is_err());
        assert_eq!(r.take_text(3).unwrap(), "x");
    }
}
