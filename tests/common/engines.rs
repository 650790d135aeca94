//! The database engines the end-to-end tests can run on: SQLite (a file in the test's temp
//! dir, the default) and the MySQL/MariaDB and PostgreSQL servers `scripts/engines` starts
//! (private instances on loopback, announced by `SYNCSERVER_TEST_MYSQL` and
//! `SYNCSERVER_TEST_POSTGRESQL`: server URIs without a database name).
//!
//! A [`TestDatabase`] is a fresh, uniquely named database on one of those servers, dropped
//! when it goes out of scope. It is made and inspected with the servers' own command-line
//! clients (`mariadb`/`mysql`, `psql`), so the tests need no database driver of their own.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{announce, skip, Prereq};

/// A database engine the server can store its data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A SQLite file (the default).
    Sqlite,
    /// MySQL or MariaDB.
    Mysql,
    /// PostgreSQL.
    Postgresql,
}

impl Engine {
    /// Its name in `SYNCSERVER_TEST_ENGINE`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Mysql => "mysql",
            Engine::Postgresql => "postgresql",
        }
    }

    /// The environment variable holding its server URI (none for SQLite).
    pub fn env_var(self) -> Option<&'static str> {
        match self {
            Engine::Sqlite => None,
            Engine::Mysql => Some("SYNCSERVER_TEST_MYSQL"),
            Engine::Postgresql => Some("SYNCSERVER_TEST_POSTGRESQL"),
        }
    }

    /// What is missing when its server is not there.
    pub fn prereq(self) -> Option<Prereq> {
        match self {
            Engine::Sqlite => None,
            Engine::Mysql => Some(Prereq::Mysql),
            Engine::Postgresql => Some(Prereq::Postgresql),
        }
    }

    /// The engine a `sqluri` names, by its scheme (`sqlite:`, `mysql:`, `pymysql:`,
    /// `mysql+pymysql:`, `postgresql:`, `postgres:`, ...).
    pub fn of_uri(uri: &str) -> Option<Engine> {
        let scheme = uri.split_once(':')?.0.to_ascii_lowercase();
        let base = scheme.split('+').next().unwrap_or("");
        match base {
            "sqlite" => Some(Engine::Sqlite),
            "mysql" | "pymysql" | "mariadb" => Some(Engine::Mysql),
            "postgresql" | "postgres" => Some(Engine::Postgresql),
            _ => None,
        }
    }

    /// Every engine with a server of its own.
    pub const SERVERS: [Engine; 2] = [Engine::Mysql, Engine::Postgresql];
}

/// The engine the end-to-end tests' servers use: `SYNCSERVER_TEST_ENGINE` (`sqlite`, the
/// default, `mysql` or `postgresql`). Panics on any other value.
pub fn test_engine() -> Engine {
    let value = std::env::var("SYNCSERVER_TEST_ENGINE").unwrap_or_default();
    match value.trim() {
        "" | "sqlite" => Engine::Sqlite,
        "mysql" => Engine::Mysql,
        "postgresql" => Engine::Postgresql,
        other => panic!("SYNCSERVER_TEST_ENGINE={other:?}: expected sqlite, mysql or postgresql"),
    }
}

/// The server URI (ending in `/`, no database name) `scripts/engines` announced for
/// `engine`, if any. Always `None` for SQLite.
pub fn server_uri(engine: Engine) -> Option<String> {
    let value = std::env::var(engine.env_var()?).ok()?;
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some(if value.ends_with('/') {
        value.to_string()
    } else {
        format!("{value}/")
    })
}

/// The parts of a server URI the command-line clients take separately, percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// The engine its scheme names.
    pub engine: Engine,
    /// The user name.
    pub user: String,
    /// The password (empty if none).
    pub password: String,
    /// The host (`127.0.0.1`).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The database name after the host, if any.
    pub database: Option<String>,
}

impl ServerAddr {
    /// Parses `scheme://user:password@host:port/[database]`; panics on anything else.
    pub fn parse(uri: &str) -> ServerAddr {
        let bad = |why: &str| -> ! { panic!("bad server URI {:?}: {why}", mask(uri)) };
        let engine = Engine::of_uri(uri).unwrap_or_else(|| bad("unknown scheme"));
        let rest = uri
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or_else(|| bad("no //"));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or_else(|| bad("no user"));
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let (host, port) = hostport.rsplit_once(':').unwrap_or_else(|| bad("no port"));
        let port = port.parse().unwrap_or_else(|_| bad("bad port"));
        let database = path.split('?').next().unwrap_or("");
        ServerAddr {
            engine,
            user: pct_decode(user),
            password: pct_decode(password),
            host: host.to_string(),
            port,
            database: (!database.is_empty()).then(|| pct_decode(database)),
        }
    }

    /// The command-line client logged in to `database` (the server alone if `None`) with
    /// the decoded credentials, printing tab-separated rows without headers. The password
    /// goes through the environment, not the command line.
    pub fn client(&self, database: Option<&str>) -> Command {
        match self.engine {
            Engine::Mysql => {
                let mut cmd = Command::new(mysql_client());
                cmd.args([
                    "--no-defaults",
                    "--protocol=tcp",
                    "--batch",
                    "--skip-column-names",
                ])
                .arg("--default-character-set=utf8mb4")
                .arg(format!("--host={}", self.host))
                .arg(format!("--port={}", self.port))
                .arg(format!("--user={}", self.user))
                .env("MYSQL_PWD", &self.password);
                if let Some(db) = database {
                    cmd.arg(format!("--database={db}"));
                }
                cmd
            }
            Engine::Postgresql => {
                let mut cmd = Command::new(psql_client());
                cmd.args(["--no-psqlrc", "--quiet", "--no-align", "--tuples-only"])
                    .args(["--field-separator=\t", "--pset=null=NULL"])
                    .args(["--set=ON_ERROR_STOP=1"])
                    .arg(format!("--host={}", self.host))
                    .arg(format!("--port={}", self.port))
                    .arg(format!("--username={}", self.user))
                    .arg(format!("--dbname={}", database.unwrap_or("postgres")))
                    .env("PGPASSWORD", &self.password)
                    .env("PGCONNECT_TIMEOUT", "10")
                    .env_remove("PGSERVICE")
                    .env_remove("PGOPTIONS");
                cmd
            }
            Engine::Sqlite => panic!("SQLite has no server to connect to"),
        }
    }

    /// Runs `statement` (one or more SQL statements) in `database` (the server alone if
    /// `None`): its output, or the client's error message.
    pub fn try_sql(&self, database: Option<&str>, statement: &str) -> Result<String, String> {
        let mut cmd = self.client(database);
        match self.engine {
            Engine::Mysql => cmd.arg("--execute").arg(statement),
            _ => cmd.arg("--command").arg(statement),
        };
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{} ({}): {}",
                self.engine.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// A fresh database on a MySQL or PostgreSQL server, dropped (with everything in it) on drop.
pub struct TestDatabase {
    /// Its URI, for `sqluri`: the server URI plus the database name.
    pub uri: String,
    /// The engine.
    pub engine: Engine,
    /// The database name.
    pub name: String,
    addr: ServerAddr,
}

impl TestDatabase {
    /// Creates `sync_test_<label>_<pid>_<n>_<nanos>` on `engine`'s server. When the server is
    /// not configured (no `SYNCSERVER_TEST_MYSQL` / `SYNCSERVER_TEST_POSTGRESQL`), this calls
    /// [`skip`] (a failure unless skipping is allowed) and returns `None`: the caller returns.
    pub fn create(engine: Engine, label: &str) -> Option<TestDatabase> {
        let prereq = engine
            .prereq()
            .unwrap_or_else(|| panic!("TestDatabase is for server engines, not {engine:?}"));
        let Some(server) = server_uri(engine) else {
            skip(
                prereq,
                &format!(
                    "no {} server: {} is not set",
                    engine.name(),
                    engine.env_var().unwrap_or_default()
                ),
            );
            return None;
        };
        Some(TestDatabase::create_on(&server, label))
    }

    /// Creates a database on the server `server` names (see [`TestDatabase::create`]).
    pub fn create_on(server: &str, label: &str) -> TestDatabase {
        let addr = ServerAddr::parse(server);
        let name = unique_name(label);
        let create = match addr.engine {
            Engine::Mysql => format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
            _ => format!("CREATE DATABASE \"{name}\" ENCODING 'UTF8'"),
        };
        if let Err(e) = addr.try_sql(None, &create) {
            panic!("cannot create database {name} on {}: {e}", mask(server));
        }
        let base = server.split('?').next().unwrap_or(server);
        let sep = if base.ends_with('/') { "" } else { "/" };
        TestDatabase {
            uri: format!("{base}{sep}{name}"),
            engine: addr.engine,
            name,
            addr,
        }
    }

    /// Runs `statement` (one or more SQL statements) in this database with the command-line
    /// client and returns what it printed: one line per row, fields tab-separated, no header,
    /// NULL as `NULL` (the MySQL client escapes tabs, newlines and backslashes in values).
    /// Panics with the client's message on an error.
    #[track_caller]
    pub fn sql(&self, statement: &str) -> String {
        self.try_sql(statement)
            .unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    /// [`TestDatabase::sql`], returning the client's error message instead of panicking.
    pub fn try_sql(&self, statement: &str) -> Result<String, String> {
        self.addr.try_sql(Some(&self.name), statement)
    }

    /// The server's address and decoded credentials.
    pub fn addr(&self) -> &ServerAddr {
        &self.addr
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let drop = match self.engine {
            // A connection a killed server left behind may still hold a metadata lock for a
            // moment: wait for it, but not the default year.
            Engine::Mysql => format!(
                "SET SESSION lock_wait_timeout = 30; DROP DATABASE IF EXISTS `{}`",
                self.name
            ),
            // FORCE: ends the connections still open on it (PostgreSQL 13+).
            _ => format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        };
        if let Err(e) = self.addr.try_sql(None, &drop) {
            // No panic in drop (it may run while unwinding): say so past libtest's capture.
            announce(&format!(
                "WARNING: cannot drop test database {}: {e}\n",
                self.name
            ));
        }
    }
}

/// Whether a database called `name` exists on `engine`'s server (which must be configured).
pub fn database_exists(engine: Engine, name: &str) -> bool {
    let server = server_uri(engine).unwrap_or_else(|| panic!("no {} server", engine.name()));
    let addr = ServerAddr::parse(&server);
    let query = match engine {
        Engine::Mysql => {
            format!("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{name}'")
        }
        _ => format!("SELECT COUNT(*) FROM pg_database WHERE datname = '{name}'"),
    };
    let out = addr
        .try_sql(None, &query)
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    out.trim() != "0"
}

/// `sync_test_<label>_<pid>_<n>_<nanos>`: lower-case letters, digits and `_`, at most 63
/// bytes (PostgreSQL's limit; MySQL's is 64).
fn unique_name(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(20)
        .collect();
    let name = format!(
        "sync_test_{label}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    assert!(name.len() <= 63, "{name}");
    name
}

/// Decodes `%XX` escapes (as UTF-8); panics on a malformed escape or invalid UTF-8.
pub fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| panic!("bad percent escape in {s:?}"));
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| panic!("{s:?} does not decode to UTF-8"))
}

/// A URI with its password replaced by `****`, for messages.
fn mask(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &uri[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &uri[..s + 3], &uri[at..]),
                None => uri.to_string(),
            }
        }
        _ => uri.to_string(),
    }
}

/// The MySQL command-line client: `mariadb`, else `mysql`.
fn mysql_client() -> PathBuf {
    find_on_path(&["mariadb", "mysql"]).unwrap_or_else(|| PathBuf::from("mysql"))
}

/// `psql`: on PATH, else the newest `/usr/lib/postgresql/*/bin/psql`.
fn psql_client() -> PathBuf {
    if let Some(p) = find_on_path(&["psql"]) {
        return p;
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let psql = e.path().join("bin/psql");
            psql.exists().then_some((version, psql))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .unwrap_or_else(|| PathBuf::from("psql"))
}

fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The statements of a SQL fixture (tests/fixtures/python_mysql.sql, ...): each ends with `;` at
/// the end of a line, and the `--` comment lines and blank lines before it are dropped. The text
/// of a statement is kept byte for byte, since the fixtures reproduce what SQLAlchemy sent (its
/// trailing spaces included).
pub fn script_statements(script: &str) -> Vec<&str> {
    script
        .split(";\n")
        .map(|chunk| {
            let mut rest = chunk;
            loop {
                rest = rest.trim_start_matches('\n');
                match rest.strip_prefix("--") {
                    Some(comment) => rest = comment.split_once('\n').map_or("", |(_, r)| r),
                    None => return rest,
                }
            }
        })
        .filter(|s| !s.trim().is_empty())
        .collect()
}
