//! `public_url` and `sqluri`: parsing, normalisation, and path resolution.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::dburi::{self, Engine, ServerUri};
use super::error::{ConfigError, Origin};
use super::NoteLevel;

/// The server's public URL, as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// Normalised: lower-case scheme and host, no default port, no trailing `/`.
    pub url: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Lower-case host; an IPv6 address keeps its brackets (`[::1]`).
    pub host: String,
    /// The explicit port, or 80/443 from the scheme.
    pub port: u16,
    /// True when the URL names a port other than the scheme's default.
    pub explicit_port: bool,
    /// `""` or a prefix such as `/sync`, never ending in `/`.
    pub path: String,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum UrlProblem {
    Empty,
    Scheme,
    UserInfo,
    QueryOrFragment,
    Host,
    Port,
    Whitespace,
}

impl fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlProblem::Empty => "it is empty",
            UrlProblem::Scheme => "it must start with http:// or https://",
            UrlProblem::UserInfo => "it must not contain a user name or password",
            UrlProblem::QueryOrFragment => "it must not contain `?` or `#`",
            UrlProblem::Host => "it needs a valid host name after the `//`",
            UrlProblem::Port => "the port must be a number from 1 to 65535",
            UrlProblem::Whitespace => "it must not contain spaces",
        })
    }
}

impl PublicUrl {
    /// Parses and normalises an http(s) URL such as `https://sync.example.com:8443/sync/`.
    pub fn parse(s: &str) -> Result<PublicUrl, ConfigError> {
        PublicUrl::parse_detailed(s)
            .map(|(u, _)| u)
            .map_err(|p| ConfigError::Invalid {
                origin: Box::new(Origin::Setting {
                    section: "syncserver".into(),
                    key: "public_url".into(),
                }),
                value: s.to_string(),
                reason: p.to_string(),
            })
    }

    /// Like `parse`, also telling whether a default port (`:443` on https) was dropped.
    pub(super) fn parse_detailed(s: &str) -> Result<(PublicUrl, bool), UrlProblem> {
        let s = s.trim();
        if s.is_empty() {
            return Err(UrlProblem::Empty);
        }
        if s.chars().any(char::is_whitespace) {
            return Err(UrlProblem::Whitespace);
        }
        let (scheme, rest) = s.split_once("://").ok_or(UrlProblem::Scheme)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(UrlProblem::Scheme),
        };
        if rest.contains(['?', '#']) {
            return Err(UrlProblem::QueryOrFragment);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(UrlProblem::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        let port_num = match port {
            Some(p) => parse_port(p)?,
            None => default_port,
        };
        let explicit_port = port.is_some() && port_num != default_port;
        let dropped_default = port.is_some() && !explicit_port;
        let host = host.to_ascii_lowercase();
        let path = path.trim_end_matches('/').to_string();
        let mut url = PublicUrl {
            url: String::new(),
            scheme,
            host,
            port: port_num,
            explicit_port,
            path,
        };
        url.url = format!("{}{}", url.origin(), url.path);
        Ok((url, dropped_default))
    }

    /// `scheme://host[:port]`, the port only when it is not the scheme's default.
    pub fn origin(&self) -> String {
        if self.explicit_port {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        } else {
            format!("{}://{}", self.scheme, self.host)
        }
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), UrlProblem> {
    if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or(UrlProblem::Host)?;
        let addr = v6.get(..end).unwrap_or("");
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(UrlProblem::Host);
        }
        let host = authority.get(..end + 2).ok_or(UrlProblem::Host)?;
        return match v6.get(end + 1..).unwrap_or("") {
            "" => Ok((host, None)),
            tail => tail
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or(UrlProblem::Host),
        };
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if host.is_empty() || !host.chars().all(valid) {
        return Err(UrlProblem::Host);
    }
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, UrlProblem> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlProblem::Port);
    }
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(UrlProblem::Port),
    }
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUri {
    /// An SQLite file (absolute path).
    Sqlite(PathBuf),
    /// `sqlite:///:memory:`: gone on restart, usable with a single worker only.
    Memory,
    /// A MySQL or MariaDB server (`pymysql://`, `mysql://`, `mysql+pymysql://`, …).
    Mysql(ServerUri),
    /// A PostgreSQL server (`postgresql://`, `postgres://`, `postgresql+psycopg2://`, …).
    Postgresql(ServerUri),
}

impl DatabaseUri {
    /// Parses a `sqluri` given on its own (a command's argument, a test's URI), by the
    /// same rules as the ini's; a relative SQLite path is taken from the working
    /// directory.
    pub fn parse(uri: &str) -> Result<DatabaseUri, ConfigError> {
        let base = std::env::current_dir().unwrap_or_default();
        let origin = Origin::Setting {
            section: "syncserver".into(),
            key: "sqluri".into(),
        };
        parse_sqluri(uri, &base, &origin).map(|p| p.db)
    }

    /// The engine's name, for messages: `SQLite`, `MySQL/MariaDB` or `PostgreSQL`.
    pub fn engine_name(&self) -> &'static str {
        match self {
            DatabaseUri::Sqlite(_) | DatabaseUri::Memory => "SQLite",
            DatabaseUri::Mysql(_) => "MySQL/MariaDB",
            DatabaseUri::Postgresql(_) => "PostgreSQL",
        }
    }

    /// Whether `other` names the same database (a server URI's options and password aside).
    pub fn same_database(&self, other: &DatabaseUri) -> bool {
        match (self, other) {
            (DatabaseUri::Mysql(a), DatabaseUri::Mysql(b))
            | (DatabaseUri::Postgresql(a), DatabaseUri::Postgresql(b)) => a.same_database(b),
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for DatabaseUri {
    /// As a URI; a password shows as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUri::Sqlite(p) => write!(f, "sqlite:///{}", p.display()),
            DatabaseUri::Memory => f.write_str("sqlite:///:memory:"),
            DatabaseUri::Mysql(u) | DatabaseUri::Postgresql(u) => u.fmt(f),
        }
    }
}

/// A parsed `sqluri` before any note is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParsedSqlUri {
    pub(super) db: DatabaseUri,
    /// The path as written, when it was relative.
    pub(super) relative: Option<PathBuf>,
    /// A `?query` that SQLAlchemy would have used and we ignore.
    pub(super) ignored_query: Option<String>,
    /// What to tell the operator about a server URI, without the origin.
    pub(super) notes: Vec<(NoteLevel, String)>,
}

/// Parses an SQLAlchemy URI; relative SQLite paths are resolved against `base`.
pub(super) fn parse_sqluri(
    uri: &str,
    base: &Path,
    origin: &Origin,
) -> Result<ParsedSqlUri, ConfigError> {
    let uri = uri.trim();
    let invalid = |reason: &str| ConfigError::Invalid {
        origin: Box::new(origin.clone()),
        value: mask_uri_password(uri),
        reason: reason.to_string(),
    };
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(invalid(
            "it must look like sqlite:////absolute/path/syncserver.db",
        ));
    };
    if let Some(engine) = dburi::engine_of(scheme) {
        let parsed = dburi::parse(scheme, engine, rest).map_err(|why| invalid(&why))?;
        let db = match engine {
            Engine::Mysql => DatabaseUri::Mysql(parsed.uri),
            Engine::Postgresql => DatabaseUri::Postgresql(parsed.uri),
        };
        return Ok(ParsedSqlUri {
            db,
            relative: None,
            ignored_query: None,
            notes: parsed.notes,
        });
    }
    let dialect = scheme.split('+').next().unwrap_or("").to_ascii_lowercase();
    if dialect != "sqlite" {
        return Err(ConfigError::UnsupportedDatabase {
            origin: Box::new(origin.clone()),
            uri: mask_uri_password(uri),
        });
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q.to_string())),
        None => (rest, None),
    };
    let memory = |ignored_query| ParsedSqlUri {
        db: DatabaseUri::Memory,
        relative: None,
        ignored_query,
        notes: Vec::new(),
    };
    if rest.is_empty() {
        return Ok(memory(query));
    }
    let Some(path) = rest.strip_prefix('/') else {
        return Err(invalid(
            "an sqlite URI has no host: write sqlite:////absolute/path.db (four slashes) or sqlite:///relative/path.db",
        ));
    };
    if path.is_empty() || path == ":memory:" {
        return Ok(memory(query));
    }
    let written = PathBuf::from(path);
    let (db_path, relative) = if written.is_absolute() {
        (normalize(&written), None)
    } else {
        (normalize(&base.join(&written)), Some(written))
    };
    Ok(ParsedSqlUri {
        db: DatabaseUri::Sqlite(db_path),
        relative,
        ignored_query: query,
        notes: Vec::new(),
    })
}

/// `scheme://user:****@host/db`: a URI safe to print.
pub(super) fn mask_uri_password(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = rest.get(..authority_end).unwrap_or("");
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = authority.get(..at).unwrap_or("");
            let user = userinfo.split(':').next().unwrap_or("");
            let shown_user = if userinfo.contains(':') {
                format!("{user}:****")
            } else {
                user.to_string()
            };
            let tail = rest.get(at..).unwrap_or("");
            format!("{scheme}://{shown_user}{tail}")
        }
        None => uri.to_string(),
    }
}

/// Makes `p` absolute against `cwd` and removes `.` and `..` lexically, like Python's
/// `os.path.abspath` (symlinks are not resolved).
pub(super) fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    if p.is_absolute() {
        normalize(p)
    } else {
        normalize(&cwd.join(p))
    }
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let at_root = out.parent().is_none() && out.has_root();
                let ends_in_parent =
                    matches!(out.components().next_back(), Some(Component::ParentDir));
                if out.as_os_str().is_empty() || ends_in_parent {
                    out.push("..");
                } else if !at_root {
                    out.pop();
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> PublicUrl {
        match PublicUrl::parse_detailed(s) {
            Ok((u, _)) => u,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn public_url_normalisation() {
        let u = url("HTTP://LocalHost:5000/");
        assert_eq!(u.url, "http://localhost:5000");
        assert_eq!((u.port, u.explicit_port, u.path.as_str()), (5000, true, ""));
        let u = url("https://sync.example.com/sync//");
        assert_eq!(u.url, "https://sync.example.com/sync");
        assert_eq!((u.port, u.explicit_port), (443, false));
        assert_eq!(u.origin(), "https://sync.example.com");
        assert_eq!(u.path, "/sync");
        let u = url("http://[::1]:8080/x");
        assert_eq!((u.host.as_str(), u.port), ("[::1]", 8080));
        assert_eq!(u.origin(), "http://[::1]:8080");
    }

    #[test]
    fn explicit_default_port_is_dropped_and_reported() {
        let (u, dropped) = PublicUrl::parse_detailed("https://h.example:443/sync/")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(dropped);
        assert_eq!(u.url, "https://h.example/sync");
        assert!(!u.explicit_port);
        let (u, dropped) =
            PublicUrl::parse_detailed("http://h:443").unwrap_or_else(|e| panic!("{e}"));
        assert!(!dropped);
        assert_eq!(u.url, "http://h:443");
    }

    #[test]
    fn public_url_rejects() {
        for (s, p) in [
            ("", UrlProblem::Empty),
            ("localhost:5000", UrlProblem::Scheme),
            ("ftp://h/", UrlProblem::Scheme),
            ("http://", UrlProblem::Host),
            ("http:///x", UrlProblem::Host),
            ("http://u:p@h/", UrlProblem::UserInfo),
            ("http://h/?a=1", UrlProblem::QueryOrFragment),
            ("http://h:0/", UrlProblem::Port),
            ("http://h:99999/", UrlProblem::Port),
            ("http://h:/", UrlProblem::Port),
            ("http://h x/", UrlProblem::Whitespace),
            ("http://[zz]/", UrlProblem::Host),
            ("http://[::1/", UrlProblem::Host),
        ] {
            assert_eq!(PublicUrl::parse_detailed(s).err(), Some(p), "{s}");
        }
        assert!(PublicUrl::parse("nope").is_err());
    }

    fn origin() -> Origin {
        Origin::Env {
            var: "SYNCSERVER_SQLURI".into(),
        }
    }

    fn db(uri: &str) -> Result<ParsedSqlUri, ConfigError> {
        parse_sqluri(uri, Path::new("/etc/sync"), &origin())
    }

    #[test]
    fn sqluri_forms() {
        let p = db("sqlite:////var/lib/sync/s.db").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.db, DatabaseUri::Sqlite("/var/lib/sync/s.db".into()));
        assert_eq!(p.relative, None);
        let p = db("sqlite:///data/../s.db").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.db, DatabaseUri::Sqlite("/etc/sync/s.db".into()));
        assert_eq!(p.relative, Some(PathBuf::from("data/../s.db")));
        for m in [
            "sqlite://",
            "sqlite:///",
            "sqlite:///:memory:",
            "SQLITE+pysqlite:///:memory:",
        ] {
            assert_eq!(db(m).map(|p| p.db).ok(), Some(DatabaseUri::Memory), "{m}");
        }
        let p = db("sqlite:////x.db?timeout=5").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.ignored_query.as_deref(), Some("timeout=5"));
        assert!(matches!(
            db("sqlite://host/x.db"),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(db("/var/x.db"), Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn unsupported_databases_hide_passwords() {
        for uri in [
            "mssql+pyodbc://sync:hunter2@127.0.0.1/syncstorage",
            "oracle://sync:hunter2@db/s",
            "mysql+aiomysql://sync:hunter2@db/s",
            "postgresql+asyncpg://db/s",
            "cockroachdb://u:hunter2@h/d",
        ] {
            match db(uri) {
                Err(e @ ConfigError::UnsupportedDatabase { .. }) => {
                    let msg = e.to_string();
                    assert!(!msg.contains("hunter2"), "{msg}");
                    assert!(msg.contains("SQLite"), "{msg}");
                    assert!(msg.contains("MySQL"), "{msg}");
                    assert!(msg.contains("PostgreSQL"), "{msg}");
                    assert!(msg.contains("mysql+pymysql://"), "{msg}");
                }
                other => panic!("{uri}: {other:?}"),
            }
        }
        assert_eq!(
            mask_uri_password("pymysql://u:p@h/d"),
            "pymysql://u:****@h/d"
        );
        assert_eq!(mask_uri_password("pymysql://u@h/d"), "pymysql://u@h/d");
    }

    #[test]
    fn absolute_paths_are_normalised() {
        let cwd = Path::new("/srv/app");
        assert_eq!(
            absolute(Path::new("conf/../s.ini"), cwd),
            PathBuf::from("/srv/app/s.ini")
        );
        assert_eq!(absolute(Path::new("/../a"), cwd), PathBuf::from("/a"));
        assert_eq!(
            absolute(Path::new("./a/./b"), cwd),
            PathBuf::from("/srv/app/a/b")
        );
    }
}
