//! The tokenserver's node assignment (`[tokenserver] backend =
//! tokenserver.assignment.sqlnode.SQLNodeAssignment`): its own database with the
//! `services`, `nodes` and `users` tables of Python's `sqlnode` backend and
//! Mozilla's current tokenserver, on SQLite, MySQL/MariaDB or PostgreSQL.

mod conn;
mod schema;
mod store;

use std::sync::Arc;

use super::sql::{self, ServerParams};
use super::sqlite::{self, map_err, Location};
use super::{DbError, DbResult, UserPlan, UserRecord, UserState};
pub use conn::Kind;
use conn::{NodeConn, ServerConn, SqliteConn};
pub use schema::{PATTERN, SERVICE};
pub use store::NodeStore;

/// An account's current row and where its data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub record: UserRecord,
    /// The node's URL (tokens name it and are signed with its secret).
    pub node: String,
    /// `api_endpoint`, from the service's pattern.
    pub endpoint: String,
}

/// One row of `nodes`, with how many accounts it holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: i64,
    pub url: String,
    pub available: i64,
    pub current_load: i64,
    pub capacity: i64,
    pub downed: bool,
    pub backoff: bool,
    /// Accounts whose current row is on this node.
    pub users: i64,
}

/// What `nodes set` changes (`None`: left as is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeChange {
    pub capacity: Option<i64>,
    pub downed: Option<bool>,
    pub backoff: Option<bool>,
}

/// A single-box account row, for `migrate-to-nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUser {
    pub uid: i64,
    pub email: String,
    pub generation: i64,
    pub client_state: String,
    pub created_at: i64,
    pub replaced_at: Option<i64>,
    pub keys_changed_at: Option<i64>,
}

/// Why a node command did nothing.
#[derive(Debug)]
pub enum NodesError {
    /// No node has this URL.
    Unknown(String),
    /// A node with this URL exists already.
    Exists(String),
    Db(DbError),
}

impl From<DbError> for NodesError {
    fn from(e: DbError) -> Self {
        NodesError::Db(e)
    }
}

impl std::fmt::Display for NodesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodesError::Unknown(url) => write!(f, "no node {url} (see `nodes list`)"),
            NodesError::Exists(url) => write!(f, "node {url} exists already"),
            NodesError::Db(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for NodesError {}

/// A session on the tokenserver database.
pub trait NodesDb: Send {
    /// The single-box record rules (`decide`), then the account's node: its
    /// current one while that takes it, else a new row on the least loaded node.
    fn token_user(
        &mut self,
        email: &str,
        now_ms: i64,
        decide: &mut dyn FnMut(&UserState) -> UserPlan,
    ) -> DbResult<Option<Assigned>>;
    fn nodes(&mut self) -> DbResult<Vec<NodeInfo>>;
    /// A node taking up to `capacity` accounts, all available at once.
    fn add_node(&mut self, url: &str, capacity: i64) -> Result<(), NodesError>;
    fn set_node(&mut self, url: &str, change: &NodeChange) -> Result<(), NodesError>;
    /// No new accounts; the ones there move at their next token. Returns how many.
    fn drain_node(&mut self, url: &str, now_ms: i64) -> Result<u64, NodesError>;
    /// Drains the node and deletes its row. Returns how many accounts move.
    fn remove_node(&mut self, url: &str, now_ms: i64) -> Result<u64, NodesError>;
    /// Copies single-box rows onto `node` (existing uids skipped) and makes new
    /// uids start above `above` too. Returns how many were copied.
    fn import_users(&mut self, node: &str, users: &[NodeUser], above: i64) -> DbResult<u64>;
}

/// Where the tokenserver tables live.
#[derive(Clone)]
pub enum NodesLocation {
    Sqlite(std::path::PathBuf),
    Server(ServerParams),
}

/// Opens a session, creating the tables when missing.
pub fn open_nodes(location: &NodesLocation) -> DbResult<NodeStore> {
    let connect: store::Connect = match location.clone() {
        NodesLocation::Sqlite(path) => Arc::new(move || {
            let location = Location::File(path.clone());
            let conn = sqlite::retry_busy(|| sqlite::connect(&location)).map_err(map_err)?;
            Ok(Box::new(SqliteConn(conn)) as Box<dyn NodeConn>)
        }),
        NodesLocation::Server(params) => {
            Arc::new(move || Ok(Box::new(ServerConn(sql::connect(&params)?)) as Box<dyn NodeConn>))
        }
    };
    NodeStore::open(connect)
}
