//! The one place where a `sqluri` becomes an engine: start-up and the operator
//! commands open the database here and get back only engine-neutral handles.
//!
//! SQLite lives in `sqlite`, MySQL/MariaDB and PostgreSQL in `sql`; each `match`
//! below has one arm per engine and nothing outside `db` names an engine.

use std::path::{Path, PathBuf};

use super::admin::AdminDb;
use super::nodes::{NodeStore, NodesLocation};
use super::pool::{Guard, Opener};
use super::sql::{self, ServerParams, SqlDb};
use super::sqlite::replay::{replay_path, SharedReplay};
use super::sqlite::shm::ShmGuard;
use super::sqlite::{self, Location, SqliteDb};
use super::{Database, DbError, DbResult, Pool};
use crate::auth::{ReplayLimits, ReplayStore};
use crate::config::{DatabaseUri, ServerUri};
use std::sync::Arc;

/// Replay state every process on the same database can see (for a socket that
/// several processes share), for engines that can offer one.
pub trait SharedReplayOpener: Send {
    /// Where the state lives, for the log.
    fn place(&self) -> String;
    /// Opens the shared state; `limits` bound this process's own guard. The error is
    /// the engine's own message, for the log.
    fn open(&self, limits: ReplayLimits) -> Result<Box<dyn ReplayStore>, String>;
}

/// What start-up needs from any engine, the database prepared (created, its
/// schema up to date).
pub struct Opened {
    /// The start-up session: the pool's first one, also used for the stored secrets.
    pub first: Box<dyn Database>,
    /// Sessions the pool may hold: `workers`, or fewer when the engine cannot share
    /// the database between sessions (`:memory:`).
    pub sessions: usize,
    /// Opens each further session.
    pub opener: Opener,
    /// Asked before the pool touches the database, when the engine needs it.
    pub guard: Option<Guard>,
    /// What preparing the database changed, for the log.
    pub changes: Vec<String>,
    /// Shared replay state, when the engine can keep it.
    pub shared_replay: Option<Box<dyn SharedReplayOpener>>,
}

impl Opened {
    /// The session pool, from the first session on.
    pub fn into_pool(self) -> (Pool, Option<Box<dyn SharedReplayOpener>>) {
        let mut pool = Pool::new(self.first, self.sessions, self.opener);
        if let Some(guard) = self.guard {
            pool = pool.with_guard(guard);
        }
        (pool, self.shared_replay)
    }
}

/// Opens (creating the tables if needed) the tokenserver's node-assignment database.
pub fn open_nodes(uri: &DatabaseUri) -> DbResult<NodeStore> {
    let location = match uri {
        DatabaseUri::Sqlite(path) => NodesLocation::Sqlite(path.clone()),
        DatabaseUri::Mysql(server) | DatabaseUri::Postgresql(server) => {
            NodesLocation::Server(server_params(server)?)
        }
        DatabaseUri::Memory => {
            return Err(DbError::Backend(
                "node assignments cannot live in memory".into(),
            ))
        }
    };
    super::nodes::open_nodes(&location)
}

/// Opens (creating if needed) the database for serving with up to `workers` sessions.
pub fn open(uri: &DatabaseUri, workers: usize) -> DbResult<Opened> {
    let location = match uri {
        DatabaseUri::Sqlite(path) => Location::File(path.clone()),
        DatabaseUri::Memory => Location::Memory,
        DatabaseUri::Mysql(server) | DatabaseUri::Postgresql(server) => {
            return open_server(&server_params(server)?, workers)
        }
    };
    let (conn, migration) = sqlite::prepare(&location)?;
    let sessions = if location == Location::Memory && workers > 1 {
        log::warn!("sqluri is :memory:, which no two workers can share: using 1 worker");
        1
    } else {
        workers
    };
    let first: Box<dyn Database> =
        Box::new(SqliteDb::from_connection(conn)?.checkpoint_after_turns());
    let opener_location = location.clone();
    let opener: Opener = Box::new(move || {
        SqliteDb::open(&opener_location)
            .map(|db| Box::new(db.checkpoint_after_turns()) as Box<dyn Database>)
    });
    let (guard, shared_replay) = match &location {
        Location::File(path) => {
            // An immutable -shm would crash the process on SQLite's next access (SIGBUS).
            let shm = ShmGuard::for_database(path);
            shm.report_sigbus();
            let guard: Guard = Box::new(move || shm.check());
            let replay: Box<dyn SharedReplayOpener> = Box::new(SqliteReplay(replay_path(path)));
            (Some(guard), Some(replay))
        }
        Location::Memory => (None, None),
    };
    Ok(Opened {
        first,
        sessions,
        opener,
        guard,
        changes: migration.changes,
        shared_replay,
    })
}

/// Opens (creating the tables if needed) a MySQL/MariaDB or PostgreSQL database
/// for serving with up to `workers` sessions, one connection each.
pub fn open_server(params: &ServerParams, workers: usize) -> DbResult<Opened> {
    let replay = RuntimeReplay(params.place());
    let params = Arc::new(params.clone());
    let (first, changes) = sql::prepare(Arc::clone(&params))?;
    let opener: Opener = Box::new(move || {
        SqlDb::open(Arc::clone(&params)).map(|db| Box::new(db) as Box<dyn Database>)
    });
    Ok(Opened {
        first: Box::new(first),
        sessions: workers,
        opener,
        guard: None,
        changes,
        shared_replay: Some(Box::new(replay)),
    })
}

/// Opens a MySQL/MariaDB or PostgreSQL database for an operator command.
pub fn open_server_admin(
    params: &ServerParams,
    access: AdminAccess,
) -> Result<Box<dyn AdminDb>, AdminOpenError> {
    let place = params.place();
    let open_err = |cause| AdminOpenError::Open {
        place: place.clone(),
        cause,
    };
    let mut conn = sql::connect(params).map_err(open_err)?;
    match access {
        AdminAccess::Read | AdminAccess::Write => {
            if !sql::schema::present(conn.as_mut()).map_err(open_err)? {
                return Err(AdminOpenError::Missing(place));
            }
        }
        AdminAccess::Create => {}
    }
    if access != AdminAccess::Read {
        sql::schema::ensure(conn.as_mut()).map_err(|cause| AdminOpenError::Prepare {
            place: place.clone(),
            cause,
        })?;
    }
    drop(conn);
    let db = SqlDb::open(Arc::new(params.clone())).map_err(open_err)?;
    Ok(Box::new(db))
}

/// How an operator command opens the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAccess {
    /// An existing database, as it is.
    Read,
    /// An existing database, its schema brought up to date first (as `serve` would).
    Write,
    /// Created if missing, its schema brought up to date (as `serve` would).
    Create,
}

/// Why an operator command could not open the database.
#[derive(Debug)]
pub enum AdminOpenError {
    /// The database lives in the server's memory: nothing to work on from outside.
    InMemory,
    /// There is no database at the configured place.
    Missing(String),
    /// Preparing the database (schema upgrade) failed.
    Prepare {
        /// The database, for the message.
        place: String,
        /// Why.
        cause: DbError,
    },
    /// Opening a session failed.
    Open {
        /// The database, for the message.
        place: String,
        /// Why.
        cause: DbError,
    },
}

impl std::fmt::Display for AdminOpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminOpenError::InMemory => {
                write!(
                    f,
                    "sqluri is :memory:: there is no database file to work on"
                )
            }
            AdminOpenError::Missing(place) => write!(
                f,
                "there is no database at {place} (check sqluri in the configuration)"
            ),
            AdminOpenError::Prepare { place, cause } => {
                write!(f, "cannot open {place} for writing: {cause}")
            }
            AdminOpenError::Open { place, cause } => write!(f, "cannot open {place}: {cause}"),
        }
    }
}

impl std::error::Error for AdminOpenError {}

/// Opens the server's database for an operator command.
pub fn open_admin(
    uri: &DatabaseUri,
    access: AdminAccess,
) -> Result<Box<dyn AdminDb>, AdminOpenError> {
    let path = match uri {
        DatabaseUri::Sqlite(p) => p.clone(),
        DatabaseUri::Memory => return Err(AdminOpenError::InMemory),
        DatabaseUri::Mysql(server) | DatabaseUri::Postgresql(server) => {
            let params = server_params(server).map_err(|cause| AdminOpenError::Open {
                place: server.to_string(),
                cause,
            })?;
            return open_server_admin(&params, access);
        }
    };
    let place = path.display().to_string();
    let location = Location::File(path.clone());
    match access {
        AdminAccess::Read | AdminAccess::Write if !path.is_file() => {
            return Err(AdminOpenError::Missing(place))
        }
        AdminAccess::Read => {}
        AdminAccess::Write | AdminAccess::Create => {
            let (conn, _) =
                sqlite::prepare(&location).map_err(|cause| AdminOpenError::Prepare {
                    place: place.clone(),
                    cause,
                })?;
            drop(conn);
        }
    }
    let db = SqliteDb::open(&location).map_err(|cause| AdminOpenError::Open { place, cause })?;
    Ok(Box::new(db))
}

/// The files the server may keep beside the database file `database` and must be
/// able to read and write (the engine's journals, the shared replay state), for
/// the start-up checks.
pub fn side_files(database: &Path) -> Vec<PathBuf> {
    let beside = |suffix: &str| {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    vec![
        beside("-wal"),
        beside("-shm"),
        beside("-journal"),
        replay_path(database),
    ]
}

/// The driver's parameters for a server `sqluri`; what it cannot honour (TLS) is
/// refused here, before any connection.
pub fn server_params(uri: &ServerUri) -> DbResult<ServerParams> {
    ServerParams::from_uri(uri).map_err(|why| DbError::Backend(why.into()))
}

/// Every problem `serve` would have with a server `sqluri` (options it cannot
/// honour, the connection, privileges on the tables), found without changing
/// anything; empty when there is none.
pub fn server_problems(uri: &ServerUri) -> Vec<String> {
    let params = match ServerParams::from_uri(uri) {
        Ok(p) => p,
        Err(why) => return vec![why],
    };
    let mut conn = match sql::connect(&params) {
        Ok(c) => c,
        Err(e) => return vec![format!("cannot connect to {}: {e}", params.place())],
    };
    sql::schema::privilege_problems(conn.as_mut()).unwrap_or_else(|e| {
        vec![format!(
            "cannot check the privileges on {}: {e}",
            params.place()
        )]
    })
}

/// Replay state for a server engine: there is no database file to keep it beside, so
/// it lives in a SQLite file on this machine, named for the database, in a directory
/// of the serving user's own (tmpfs where there is one: nonces live two minutes).
/// Every process of that user on this machine shares it, which is what mod_fcgid
/// and socket activation need; other machines serving the same database keep their
/// own (see the README's Database engines).
struct RuntimeReplay(String);

impl RuntimeReplay {
    /// The directory and the file in it.
    fn place_parts(&self) -> (PathBuf, PathBuf) {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        let dir = base.join(format!("syncserver-fcgi-{euid}"));
        let digest = ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes());
        let name: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let file = dir.join(format!("{name}-replay"));
        (dir, file)
    }
}

/// Creates `dir` (mode 0700), or accepts it only if it is a real directory of `euid`'s
/// that nobody else can write: another local user must not be able to plant a file
/// (or a link) where our nonces go.
fn private_dir(dir: &Path, euid: u32) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is not a directory of uid {euid}'s that only it can write",
            dir.display()
        ));
    }
    Ok(())
}

impl SharedReplayOpener for RuntimeReplay {
    fn place(&self) -> String {
        self.place_parts().1.display().to_string()
    }
    fn open(&self, limits: ReplayLimits) -> Result<Box<dyn ReplayStore>, String> {
        let (dir, file) = self.place_parts();
        // SAFETY: geteuid cannot fail.
        private_dir(&dir, unsafe { libc::geteuid() })?;
        SharedReplay::open(&file, limits)
            .map(|s| Box::new(s) as Box<dyn ReplayStore>)
            .map_err(|e| e.to_string())
    }
}

struct SqliteReplay(PathBuf);

impl SharedReplayOpener for SqliteReplay {
    fn place(&self) -> String {
        self.0.display().to_string()
    }
    fn open(&self, limits: ReplayLimits) -> Result<Box<dyn ReplayStore>, String> {
        SharedReplay::open(&self.0, limits)
            .map(|s| Box::new(s) as Box<dyn ReplayStore>)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replay_dir_must_be_private() {
        let base = std::env::temp_dir().join(format!("sfcgi-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        let dir = base.join("mine");
        private_dir(&dir, me).unwrap();
        private_dir(&dir, me).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(private_dir(&dir, me + 1).is_err(), "someone else's");
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(private_dir(&open, me).is_err(), "writable by others");
        let link = base.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(private_dir(&link, me).is_err(), "a link");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
