//! What the command line asks for, as plain values: `cli` fills them in, and the
//! commands (`serve`, the operator commands) take them without knowing about parsing.

use std::path::PathBuf;

use crate::admin::PurgeOptions;
use crate::fcgi::BindAddr;

/// Options of `serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// `--bind`.
    pub bind: Option<BindAddr>,
    /// `--socket-mode`.
    pub socket_mode: u32,
    /// `--socket-group`, as given (a name or gid, resolved at start-up).
    pub socket_group: Option<String>,
    /// `--workers`.
    pub workers: usize,
    /// `--max-connections`.
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

/// An operator command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// `purge`.
    Purge(PurgeOptions),
    /// `users list`.
    ListUsers,
    /// `users delete`.
    DeleteUser {
        /// ACCOUNT or UID.
        target: String,
        /// `--yes`.
        yes: bool,
    },
    /// `stats`.
    Stats,
    /// `backup FILE`.
    Backup(PathBuf),
    /// `secret`: print the secret in effect.
    Secret {
        /// `--metrics`: the metrics secret instead.
        metrics: bool,
    },
}
