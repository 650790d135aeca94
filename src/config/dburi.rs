//! `sqluri` for a database server (MySQL/MariaDB, PostgreSQL): the URI forms a Python
//! `syncserver.ini` may hold (SQLAlchemy 1.3 with pymysql-sa, mysqlclient or psycopg2),
//! parsed into typed values. Connecting is the engine's business; this module only reads.
//!
//! Rules (spec `python-sql.md` §4), where we follow SQLAlchemy's own parser:
//! - the user runs to the first `:` (after which the password runs to the last `@`), else
//!   the user info ends at the last `@` before the first `/` (see [`split_userinfo`]); user
//!   and password are percent-decoded, and may hold a raw `@`, `#` or `?` as in Python;
//! - query values are form-decoded (`+` is a space) and an option with an empty value is
//!   dropped, as `parse_qsl` dropped it;
//! - PostgreSQL query options `host`, `port`, `user`, `password` (and `dbname`) override the
//!   URI's parts, as SQLAlchemy passed the query to `psycopg2.connect()` after them.
//!
//! Where we differ: the database name is percent-decoded too (SQLAlchemy 1.3 did not; 1.4
//! does), the host may be percent-encoded (libpq style `%2Frun%2Fpostgresql`), and an option
//! given twice is refused (Python handed the driver a list, which it refused).

use std::fmt;
use std::path::PathBuf;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::NoteLevel;

/// The default MySQL/MariaDB port.
pub const MYSQL_DEFAULT_PORT: u16 = 3306;
/// The default PostgreSQL port.
pub const POSTGRES_DEFAULT_PORT: u16 = 5432;
/// libpq's socket directory when no host is given (Debian's and Ubuntu's build; upstream
/// builds use `/tmp`).
pub const POSTGRES_DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The `sqluri` schemes read as MySQL/MariaDB.
pub const MYSQL_SCHEMES: &[&str] = &[
    "pymysql",
    "mysql",
    "mysql+pymysql",
    "mysql+mysqldb",
    "mysql+mysqlconnector",
    "mariadb",
    "mariadb+pymysql",
];

/// The `sqluri` schemes read as PostgreSQL.
pub const POSTGRES_SCHEMES: &[&str] = &[
    "postgresql",
    "postgres",
    "postgresql+psycopg2",
    "postgresql+pg8000",
    "postgresql+psycopg",
];

/// A database password: never shown by `Debug` or `Display` (both print `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    /// The password itself, for the driver's connect call only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the database server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerHost {
    /// A host name or IP address (IPv6 without brackets), and the port if one was given.
    Tcp {
        /// As written (percent-decoded); never empty.
        host: String,
        /// None: the engine's default (3306, 5432).
        port: Option<u16>,
    },
    /// A Unix socket: MySQL's socket file (`?unix_socket=`), PostgreSQL's socket
    /// directory (a host beginning with `/`; the file in it is `.s.PGSQL.<port>`).
    Unix(PathBuf),
}

/// The character set of a MySQL connection (`?charset=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlCharset {
    /// `utf8` or `utf8mb3`: three-byte UTF-8.
    Utf8mb3,
    /// `utf8mb4`: full UTF-8 (what the Python server used without `?charset`).
    Utf8mb4,
    /// `latin1` (MySQL's cp1252).
    Latin1,
}

impl MysqlCharset {
    /// MySQL's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            MysqlCharset::Utf8mb3 => "utf8mb3",
            MysqlCharset::Utf8mb4 => "utf8mb4",
            MysqlCharset::Latin1 => "latin1",
        }
    }
}

/// MySQL/MariaDB query options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlOptions {
    /// `charset`; None: not given (the Python server then talked utf8mb4).
    pub charset: Option<MysqlCharset>,
    /// `connect_timeout` in seconds (at least 1).
    pub connect_timeout: Option<u64>,
    /// `ssl_*` and `sslmode` options as written, in order; the driver says which it supports.
    pub tls: Vec<(String, String)>,
    /// Options that meant something to the Python drivers only (`use_unicode`, `autocommit`,
    /// `client_flag`, `local_infile`, `compress`), as written: ignored, with a note.
    pub ignored: Vec<(String, String)>,
}

/// PostgreSQL's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSslMode {
    /// `disable`
    Disable,
    /// `allow`
    Allow,
    /// `prefer` (libpq's default)
    Prefer,
    /// `require`
    Require,
    /// `verify-ca`
    VerifyCa,
    /// `verify-full`
    VerifyFull,
}

impl PgSslMode {
    /// libpq's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            PgSslMode::Disable => "disable",
            PgSslMode::Allow => "allow",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<PgSslMode> {
        Some(match s {
            "disable" => PgSslMode::Disable,
            "allow" => PgSslMode::Allow,
            "prefer" => PgSslMode::Prefer,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// PostgreSQL query options (libpq's names). `host`, `port`, `user`, `password` and `dbname`
/// are applied to the [`ServerUri`] itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostgresOptions {
    /// `sslmode`; None: libpq's default (`prefer`).
    pub sslmode: Option<PgSslMode>,
    /// `connect_timeout` in seconds; 0 means wait forever (libpq).
    pub connect_timeout: Option<u64>,
    /// `application_name`.
    pub application_name: Option<String>,
    /// `options` (command-line options sent to the server, e.g. `-c search_path=sync`).
    pub options: Option<String>,
    /// The other `ssl*` options (`sslrootcert`, `sslcert`, `sslkey`, …) as written.
    pub tls: Vec<(String, String)>,
    /// The port given with a Unix socket directory: it names the socket file
    /// (`.s.PGSQL.<port>`); None with a socket means 5432. Unused with TCP.
    pub socket_port: Option<u16>,
}

/// The engine-specific options of a [`ServerUri`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineOptions {
    /// MySQL/MariaDB.
    Mysql(MysqlOptions),
    /// PostgreSQL.
    Postgresql(PostgresOptions),
}

/// A database server's `sqluri`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUri {
    /// The scheme as written (e.g. `pymysql`), for messages.
    pub scheme: String,
    /// The user name; None: not given (an empty one counts as not given).
    pub user: Option<String>,
    /// The password, if given.
    pub password: Option<Password>,
    /// Where the server listens.
    pub host: ServerHost,
    /// The database name; never empty.
    pub database: String,
    /// Known query options.
    pub options: EngineOptions,
    /// Query options we do not know (names only): accepted, reported in a note, unused.
    pub unknown: Vec<String>,
}

impl ServerUri {
    /// The engine's port: the one given, else its default (None for a MySQL socket).
    pub fn port(&self) -> Option<u16> {
        match (&self.host, &self.options) {
            (ServerHost::Tcp { port: Some(p), .. }, _) => Some(*p),
            (ServerHost::Tcp { port: None, .. }, EngineOptions::Mysql(_)) => {
                Some(MYSQL_DEFAULT_PORT)
            }
            (ServerHost::Tcp { port: None, .. }, EngineOptions::Postgresql(_)) => {
                Some(POSTGRES_DEFAULT_PORT)
            }
            (ServerHost::Unix(_), EngineOptions::Postgresql(o)) => {
                Some(o.socket_port.unwrap_or(POSTGRES_DEFAULT_PORT))
            }
            (ServerHost::Unix(_), EngineOptions::Mysql(_)) => None,
        }
    }

    /// Whether `other` names the same database on the same server (options aside).
    pub fn same_database(&self, other: &ServerUri) -> bool {
        let engine = |u: &ServerUri| matches!(u.options, EngineOptions::Mysql(_));
        let place = |u: &ServerUri| match &u.host {
            ServerHost::Tcp { host, .. } => (Some(host.to_ascii_lowercase()), None),
            ServerHost::Unix(p) => (None, Some(p.clone())),
        };
        engine(self) == engine(other)
            && place(self) == place(other)
            && self.port() == other.port()
            && self.database == other.database
    }
}

/// `user` in a URI: `:`, `@`, `/` and the like percent-encoded.
const USERINFO: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b':')
    .add(b'@')
    .add(b'/')
    .add(b'?')
    .add(b'#')
    .add(b'%')
    .add(b'[')
    .add(b']');
/// The database name in a URI.
const PATH: &AsciiSet = &CONTROLS.add(b' ').add(b'/').add(b'?').add(b'#').add(b'%');
/// A query value: what `form_urlencoded` would misread.
const QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'&')
    .add(b'=')
    .add(b'#')
    .add(b'%')
    .add(b'+');

impl fmt::Display for ServerUri {
    /// `mysql://sync:***@127.0.0.1:3306/syncdb?charset=utf8mb4`: the password is never shown,
    /// unknown options are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if self.user.is_some() || self.password.is_some() {
            if let Some(u) = &self.user {
                write!(f, "{}", utf8_percent_encode(u, USERINFO))?;
            }
            if self.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        let mut query: Vec<(&str, String)> = Vec::new();
        match &self.host {
            ServerHost::Tcp { host, port } => {
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    write!(f, "{}", utf8_percent_encode(host, USERINFO))?;
                }
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
            }
            ServerHost::Unix(path) => match &self.options {
                EngineOptions::Mysql(_) => {
                    f.write_str("localhost")?;
                    query.push(("unix_socket", path.display().to_string()));
                }
                EngineOptions::Postgresql(o) => {
                    query.push(("host", path.display().to_string()));
                    if let Some(p) = o.socket_port {
                        query.push(("port", p.to_string()));
                    }
                }
            },
        }
        write!(f, "/{}", utf8_percent_encode(&self.database, PATH))?;
        match &self.options {
            EngineOptions::Mysql(o) => {
                if let Some(c) = o.charset {
                    query.push(("charset", c.as_str().to_string()));
                }
                if let Some(t) = o.connect_timeout {
                    query.push(("connect_timeout", t.to_string()));
                }
                for (k, v) in o.tls.iter().chain(&o.ignored) {
                    query.push((k, v.clone()));
                }
            }
            EngineOptions::Postgresql(o) => {
                if let Some(m) = o.sslmode {
                    query.push(("sslmode", m.as_str().to_string()));
                }
                if let Some(t) = o.connect_timeout {
                    query.push(("connect_timeout", t.to_string()));
                }
                if let Some(a) = &o.application_name {
                    query.push(("application_name", a.clone()));
                }
                if let Some(a) = &o.options {
                    query.push(("options", a.clone()));
                }
                for (k, v) in &o.tls {
                    query.push((k, v.clone()));
                }
            }
        }
        for (i, (k, v)) in query.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{k}={}", utf8_percent_encode(v, QUERY))?;
        }
        Ok(())
    }
}

/// Which engine a scheme names, if it is one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Engine {
    Mysql,
    Postgresql,
}

/// The engine of `scheme` (compared in lower case), or None when it is not a server scheme.
pub(super) fn engine_of(scheme: &str) -> Option<Engine> {
    let s = scheme.to_ascii_lowercase();
    if MYSQL_SCHEMES.contains(&s.as_str()) {
        Some(Engine::Mysql)
    } else if POSTGRES_SCHEMES.contains(&s.as_str()) {
        Some(Engine::Postgresql)
    } else {
        None
    }
}

/// A parsed server URI and what to tell the operator about it.
#[derive(Debug)]
pub(super) struct Parsed {
    pub(super) uri: ServerUri,
    /// Notes without their origin; the caller prefixes it.
    pub(super) notes: Vec<(NoteLevel, String)>,
}

/// Parses `rest` (everything after `scheme://`). The error is a reason for
/// `ConfigError::Invalid` and never holds the password.
pub(super) fn parse(scheme: &str, engine: Engine, rest: &str) -> Result<Parsed, String> {
    let mut notes = Vec::new();
    let (userinfo, hostpart) = split_userinfo(rest);
    let (mut user, mut password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            let user = decode(u).map_err(|_| "the user name is not UTF-8 once decoded")?;
            let password = match p {
                Some(p) => Some(Password(
                    decode(p).map_err(|_| "the password is not UTF-8 once decoded")?,
                )),
                None => None,
            };
            (Some(user).filter(|u| !u.is_empty()), password)
        }
    };
    let (hostpart, query) = match hostpart.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (hostpart, None),
    };
    let (authority, path) = match hostpart.split_once('/') {
        Some((a, p)) => (a, p),
        None => (hostpart, ""),
    };
    let (host, port) = split_host_port(authority)?;
    let mut database =
        decode(path).map_err(|_| "the database name is not UTF-8 once decoded".to_string())?;
    let mut host = host;
    let mut port = port;
    let mut unix: Option<PathBuf> = None;

    let pairs = query_pairs(query.unwrap_or(""), &mut notes)?;
    let mut unknown = Vec::new();
    let options = match engine {
        Engine::Mysql => {
            let mut o = MysqlOptions::default();
            let mut socket = None;
            for (k, v) in pairs {
                match k.as_str() {
                    "charset" => {
                        o.charset = Some(match v.to_ascii_lowercase().as_str() {
                            "utf8" | "utf8mb3" => MysqlCharset::Utf8mb3,
                            "utf8mb4" => MysqlCharset::Utf8mb4,
                            "latin1" => MysqlCharset::Latin1,
                            _ => {
                                return Err(format!(
                            "charset={v} is not supported: use utf8mb4 (or utf8, utf8mb3, latin1)"
                        ))
                            }
                        })
                    }
                    "connect_timeout" => o.connect_timeout = Some(seconds(&k, &v, 1)?),
                    "unix_socket" => socket = Some(v),
                    "use_unicode" | "autocommit" | "client_flag" | "local_infile" | "compress" => {
                        notes.push((
                            NoteLevel::Info,
                            format!("the option `{k}={v}` meant something to the Python MySQL drivers only and is ignored"),
                        ));
                        o.ignored.push((k, v));
                    }
                    _ if k.starts_with("ssl_") || k == "sslmode" => o.tls.push((k, v)),
                    _ => unknown.push(k),
                }
            }
            if let Some(s) = socket {
                if !s.starts_with('/') {
                    return Err(format!(
                        "unix_socket={s} must be an absolute path (e.g. /run/mysqld/mysqld.sock)"
                    ));
                }
                match &host {
                    Some(h) if h != "localhost" => notes.push((
                        NoteLevel::Info,
                        format!("the host {h} is not used: unix_socket wins, as with PyMySQL"),
                    )),
                    _ => {}
                }
                unix = Some(PathBuf::from(s));
            } else if let Some(h) = host.as_deref().filter(|h| h.starts_with('/')) {
                return Err(format!(
                    "the host {h} is a path: for a MySQL socket write {scheme}://user:password@localhost/database?unix_socket={h}"
                ));
            }
            EngineOptions::Mysql(o)
        }
        Engine::Postgresql => {
            let mut o = PostgresOptions::default();
            let mut dbname = None;
            for (k, v) in pairs {
                match k.as_str() {
                    "sslmode" => {
                        o.sslmode = Some(PgSslMode::parse(&v).ok_or_else(|| {
                            format!("sslmode={v} is not one of disable, allow, prefer, require, verify-ca, verify-full")
                        })?)
                    }
                    "connect_timeout" => o.connect_timeout = Some(seconds(&k, &v, 0)?),
                    "application_name" => o.application_name = Some(v),
                    "options" => o.options = Some(v),
                    "host" => host = Some(v),
                    "port" => port = Some(parse_port(&v)?),
                    "user" => user = Some(v).filter(|u| !u.is_empty()),
                    "password" => password = Some(Password(v)),
                    "dbname" => dbname = Some(v),
                    _ if k.starts_with("ssl") => o.tls.push((k, v)),
                    _ => unknown.push(k),
                }
            }
            if let Some(d) = dbname {
                if !database.is_empty() {
                    return Err(
                        "the database is named twice (in the path and as ?dbname=): keep one"
                            .to_string(),
                    );
                }
                database = d;
            }
            if host.is_none() {
                notes.push((
                    NoteLevel::Info,
                    format!("no host is given: the Unix socket in {POSTGRES_DEFAULT_SOCKET_DIR} is used (libpq's default on Debian and Ubuntu); add ?host=/path/to/socket/dir if yours is elsewhere"),
                ));
                host = Some(POSTGRES_DEFAULT_SOCKET_DIR.to_string());
            }
            if let Some(h) = host.as_deref().filter(|h| h.starts_with('/')) {
                unix = Some(PathBuf::from(h));
                o.socket_port = port.take();
            }
            EngineOptions::Postgresql(o)
        }
    };
    if !unknown.is_empty() {
        notes.push((
            NoteLevel::Info,
            format!(
                "the option(s) {} are unknown here and ignored",
                unknown
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let host = match (unix, host) {
        (Some(path), _) => ServerHost::Unix(path),
        (None, Some(h)) => ServerHost::Tcp { host: h, port },
        (None, None) => ServerHost::Tcp {
            host: "localhost".to_string(),
            port,
        },
    };
    if database.is_empty() {
        return Err(format!(
            "it names no database: write {scheme}://user:password@host/DATABASE"
        ));
    }
    Ok(Parsed {
        uri: ServerUri {
            scheme: scheme.to_string(),
            user,
            password,
            host,
            database,
            options,
            unknown,
        },
        notes,
    })
}

/// `(user[:password], rest)` as SQLAlchemy 1.3's URL pattern splits them: the user runs to
/// the first `:` or `/`; after a `:`, the password runs to the last `@`; without one, the
/// user info ends at the last `@` before the first `/`.
fn split_userinfo(rest: &str) -> (Option<&str>, &str) {
    let stop = rest.find([':', '/']).unwrap_or(rest.len());
    let (head, tail) = rest.split_at(stop);
    if tail.starts_with(':') {
        if let Some((ui, host)) = rest.rsplit_once('@').filter(|(ui, _)| ui.len() > stop) {
            return (Some(ui), host);
        }
    }
    match head.rsplit_once('@') {
        Some((user, host_head)) => {
            let host_len = host_head.len() + tail.len();
            (Some(user), rest.split_at(rest.len() - host_len).1)
        }
        None => (None, rest),
    }
}

fn decode(s: &str) -> Result<String, std::str::Utf8Error> {
    percent_decode_str(s).decode_utf8().map(|c| c.into_owned())
}

/// `host[:port]` or `[v6][:port]`, host percent-decoded; None when empty.
fn split_host_port(authority: &str) -> Result<(Option<String>, Option<u16>), String> {
    let bad_host = || format!("the host `{authority}` is not a valid host name or address");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, tail) = v6.split_once(']').ok_or_else(bad_host)?;
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(bad_host());
        }
        let port = match tail {
            "" => None,
            t => Some(t.strip_prefix(':').ok_or_else(bad_host)?),
        };
        return Ok((Some(addr.to_string()), port.map(parse_port).transpose()?));
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = port.map(parse_port).transpose()?;
    if host.is_empty() {
        return Ok((None, port));
    }
    let host = decode(host).map_err(|_| bad_host())?;
    let valid = |c: char| c.is_alphanumeric() || matches!(c, '-' | '.' | '_');
    if !host.starts_with('/') && !host.chars().all(valid) {
        return Err(bad_host());
    }
    Ok((Some(host), port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("the port `{p}` must be a number from 1 to 65535")),
    }
}

fn seconds(key: &str, v: &str, min: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if n >= min && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!(
            "{key}={v} must be a whole number of seconds, at least {min}"
        )),
    }
}

/// The query's options, decoded; empty values dropped with a note (as `parse_qsl` did),
/// a name given twice refused.
fn query_pairs(
    query: &str,
    notes: &mut Vec<(NoteLevel, String)>,
) -> Result<Vec<(String, String)>, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k.is_empty() {
            continue;
        }
        if v.is_empty() {
            notes.push((
                NoteLevel::Info,
                format!("the option `{k}` has no value and is ignored, as SQLAlchemy ignored it"),
            ));
            continue;
        }
        if pairs.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("the option `{k}` is given twice: keep one"));
        }
        pairs.push((k.into_owned(), v.into_owned()));
    }
    Ok(pairs)
}

#[cfg(test)]
#[path = "dburi_tests.rs"]
mod tests;
