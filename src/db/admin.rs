//! What the operator commands (`purge`, `users`, `stats`, `backup`) need.
//!
//! Deletions run in bounded chunks, each its own short transaction, so a
//! running server keeps answering while they work, and a run that is stopped
//! half-way leaves a consistent database that the next run finishes.

use std::path::Path;

use super::nodes::NodeUser;
use super::{DbResult, MetaDb};

/// One account row, for `users list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// The stored uid: operator commands show and purge rows as they are, including
    /// ones no token may name (uid 0, left by the Python server on PostgreSQL).
    pub uid: i64,
    /// Stored email (`<fxa uid>@<issuer>`).
    pub email: String,
    /// Creation time, ms.
    pub created_at: i64,
    /// Replacement time, ms (a key change gave the account a new uid).
    pub replaced_at: Option<i64>,
    /// Live records.
    pub records: i64,
    /// Live payload bytes.
    pub bytes: i64,
    /// Expired records not purged yet (still stored: `users delete` removes them too).
    pub expired_records: i64,
    /// Their payload bytes.
    pub expired_bytes: i64,
}

/// Database-wide figures, for `stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    /// Accounts with a current row.
    pub accounts: i64,
    /// Rows in `users` (current and replaced).
    pub user_rows: i64,
    /// Collections with data (user, collection pairs).
    pub collections: i64,
    /// Live records.
    pub records: i64,
    /// Expired records not purged yet.
    pub expired_records: i64,
    /// Live payload bytes.
    pub bytes: i64,
    /// Open batches.
    pub batches: i64,
    /// Database file plus WAL, bytes.
    pub database_bytes: i64,
    /// Expiry (epoch seconds) of the oldest expired record.
    pub oldest_expired: Option<i64>,
}

/// What a purge pass removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    /// Records removed.
    pub records: u64,
    /// Batch rows (batches and their items) removed.
    pub batch_rows: u64,
    /// Collection rows removed.
    pub collections: u64,
    /// uids whose data is now fully gone.
    pub uids: u64,
}

/// Operator access to the database.
pub trait AdminDb: MetaDb {
    /// Deletes up to `limit` records that expired before `before` (epoch s).
    fn purge_expired(&mut self, before: i64, limit: u64) -> DbResult<u64>;
    /// Deletes up to `limit` rows of batches created before `before_ms`.
    fn purge_batches(&mut self, before_ms: i64, limit: u64) -> DbResult<u64>;
    /// uids whose data should go: replaced before `replaced_before_ms` (when
    /// `replaced` is set) and accounts removed by an administrator (queued,
    /// or revoked and holding data again).
    fn dead_uids(&mut self, replaced: bool, replaced_before_ms: i64) -> DbResult<Vec<i64>>;
    /// Deletes up to `limit` rows of a dead uid's data; returns what went, and
    /// forgets the uid once nothing is left.
    fn purge_uid(&mut self, uid: i64, limit: u64) -> DbResult<Purged>;
    /// Between chunks of a purge, with no transaction open: lets the engine
    /// tidy up what the chunk wrote (SQLite checkpoints its WAL). Default: nothing.
    fn settle(&mut self) {}
    /// Every user row with its usage.
    fn list_users(&mut self) -> DbResult<Vec<UserSummary>>;
    /// Every user row as the tokenserver keeps it (for `migrate-to-nodes`).
    fn user_records(&mut self) -> DbResult<Vec<NodeUser>>;
    /// Removes an account's rows (by stored email) in one transaction and
    /// queues its uids for `purge_uid`; returns those uids.
    fn remove_account(&mut self, email: &str) -> DbResult<Vec<i64>>;
    /// Database-wide figures.
    fn stats(&mut self) -> DbResult<Stats>;
    /// A consistent copy of the live database at `target` (online backup).
    fn backup(&mut self, target: &Path) -> DbResult<()>;
    /// For a database server, which `backup` cannot copy: the engine's own dump command
    /// that writes `target` (never with the password in it). `None`: `backup` works.
    fn dump_command(&self, _target: &Path) -> Option<String> {
        None
    }
}
