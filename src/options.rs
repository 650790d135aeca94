//! What the command line asks for, as plain values: `cli` fills them in, and the
//! commands (`serve`, the operator commands) take them without knowing about parsing.

use std::path::PathBuf;

use crate::admin::PurgeOptions;
use crate::db::nodes::NodeChange;
use crate::fcgi::BindAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    pub bind: Option<BindAddr>,
    pub socket_mode: u32,
    /// `--socket-group`, as given (a name or gid, resolved at start-up).
    pub socket_group: Option<String>,
    pub workers: usize,
    pub max_connections: usize,
    /// `--http HOST:PORT`: the local trial listener instead of FastCGI.
    pub http: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            bind: None,
            socket_mode: 0o660,
            socket_group: None,
            workers: 4,
            max_connections: 768,
            http: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    Purge(PurgeOptions),
    ListUsers,
    DeleteUser {
        /// ACCOUNT or UID.
        target: String,
        yes: bool,
    },
    Stats,
    Backup(PathBuf),
    /// `migrate --to URI`: copy the SQLite database into a server database.
    Migrate {
        /// The target `sqluri`, as given (parsed by the command).
        to: String,
    },
    /// `nodes ...`: the storage nodes of a tokenserver with node assignment.
    Nodes(NodesCommand),
    /// `migrate-to-nodes --to URI`: this box's accounts into tokenserver tables.
    MigrateToNodes {
        to: String,
        /// `--capacity N` of this box as a node.
        capacity: Option<i64>,
    },
    /// `secret`: print the secret in effect.
    Secret {
        /// `--metrics`: the metrics secret instead.
        metrics: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodesCommand {
    List,
    Add {
        url: String,
        capacity: i64,
    },
    Set {
        url: String,
        change: NodeChange,
    },
    Drain {
        url: String,
    },
    Remove {
        url: String,
    },
    /// The node's own secret, derived from the master secret.
    Secret {
        url: String,
    },
}
