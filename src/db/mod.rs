//! The one interface the handlers use to reach stored data.
//!
//! Handlers never build SQL: they call the operations of [`StorageDb`], each of
//! which is one transaction (all there or not there after a crash). Only SQLite
//! is implemented (the private `sqlite` module); a MySQL or PostgreSQL backend
//! would implement the same traits and be chosen from the `sqluri` in [`open`]
//! (`db/open.rs`), the one place that names an engine. A [`Pool`] hands one
//! session to each request being handled, so the pool size is the number of
//! requests that run at once.

pub mod admin;
pub mod migrate;
pub mod nodes;
mod open;
pub mod pool;
pub mod sql;
mod sqlite;
pub mod users;

use crate::timestamp::Ms;
use crate::uid::Uid;

pub use migrate::MigrateError;
pub use open::{
    open, open_admin, open_nodes, open_server, open_server_admin, server_params, server_problems,
    side_files, AdminAccess, AdminOpenError, Opened, SharedReplayOpener,
};
pub use pool::{Opener, Pool, PooledDb};
pub use sql::{Engine, Host, ServerParams};
pub use users::{NewUser, UserPlan, UserRecord, UserState, UsersDb};

/// A database session: storage, user records and our own settings.
pub trait Database: StorageDb + UsersDb + MetaDb {}

impl<T: StorageDb + UsersDb + MetaDb> Database for T {}

/// Values the server keeps for itself in the database (generated secrets), shared
/// by every process and restart.
pub trait MetaDb {
    /// The value stored under `name`, if any.
    fn meta_get(&mut self, name: &str) -> DbResult<Option<String>>;
    /// Stores `value` under `name` unless a value is there already, and returns the
    /// stored one: every process ends up with the same value, whoever was first.
    fn meta_get_or_insert(&mut self, name: &str, value: &str) -> DbResult<String>;
}

/// "Never expires", as stored by the Python server.
pub const TTL_FOREVER: i64 = 2_100_000_000;

/// An engine's own error, kept whole (message and source chain) for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Errors of the storage layer; mapped to HTTP in `crate::app::errors` only.
#[derive(Debug)]
pub enum DbError {
    /// Another writer held the data longer than the lock timeout, or the engine
    /// broke a deadlock by aborting this transaction: retrying can succeed.
    Busy,
    /// The database cannot be written (read-only file or directory, disk full).
    Unwritable(Cause),
    /// The database server cannot be reached (down, restarting, refusing
    /// connections); the session reconnects on its next use.
    Unavailable(Cause),
    /// Any other database failure.
    Backend(Cause),
    /// Text the table cannot store (a latin1 MySQL table given characters outside
    /// latin1, PostgreSQL given NUL): the request is refused (400), nothing written.
    UnstorableText(String),
    /// Every session stayed busy for the pool's whole wait.
    NoSession {
        /// Sessions in the pool (`--workers`).
        sessions: usize,
        /// How long the request waited.
        waited: std::time::Duration,
    },
    /// No storage node takes new accounts (all full, downed, drained or backed
    /// off): a first sign-in, or a move off a drained node, must wait.
    NoNode,
    /// `X-If-Unmodified-Since` failed; carries the resource's timestamp.
    PreconditionFailed(Ms),
    /// `X-If-Modified-Since` matched; carries the resource's timestamp.
    NotModified(Ms),
    /// The item does not exist (or has expired).
    NotFound,
    /// Unknown, expired or foreign batch id.
    InvalidBatch,
    /// The write would exceed the user's quota.
    OverQuota,
    /// The batch would hold more than `max_total_records` or `max_total_bytes`.
    BatchTooLarge,
    /// The collection's timestamp is so close to (or past) the clock that a
    /// new one would run ahead of it; retrying after `wait_ms` can succeed.
    Conflict {
        /// How long until the clock catches up, in ms.
        wait_ms: i64,
    },
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Busy => write!(f, "database is locked by another writer"),
            DbError::Unwritable(e) => write!(f, "database cannot be written: {}", causes(e)),
            DbError::Unavailable(e) => write!(f, "database unavailable: {}", causes(e)),
            DbError::Backend(e) => write!(f, "database error: {}", causes(e)),
            DbError::UnstorableText(why) => write!(f, "text the database cannot store: {why}"),
            DbError::NoSession { sessions, waited } => write!(
                f,
                "all {sessions} database session(s) stayed busy for {}s",
                waited.as_secs()
            ),
            DbError::NoNode => write!(
                f,
                "no storage node takes new users (all full, downed, drained or backed off; see `nodes list`)"
            ),
            DbError::PreconditionFailed(_) => write!(f, "precondition failed"),
            DbError::NotModified(_) => write!(f, "not modified"),
            DbError::NotFound => write!(f, "not found"),
            DbError::InvalidBatch => write!(f, "invalid batch"),
            DbError::OverQuota => write!(f, "over quota"),
            DbError::BatchTooLarge => write!(f, "batch over max_total_records/max_total_bytes"),
            DbError::Conflict { wait_ms } => {
                write!(
                    f,
                    "collection timestamp ahead of the clock for {wait_ms} ms"
                )
            }
        }
    }
}

/// A driver's error with the causes it wraps: the PostgreSQL driver's own text is
/// often only "error connecting to server", the reason (connection refused, password
/// authentication failed) is its source.
fn causes(e: &Cause) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !more.is_empty() && !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Unwritable(e) | DbError::Unavailable(e) | DbError::Backend(e) => {
                Some(e.as_ref())
            }
            _ => None,
        }
    }
}

/// Result of storage operations.
pub type DbResult<T> = Result<T, DbError>;

/// The `X-If-*` header a request carried, checked inside the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precondition {
    /// No precondition.
    #[default]
    None,
    /// `X-If-Modified-Since`: 304 unless the resource is newer.
    IfModifiedSince(Ms),
    /// `X-If-Unmodified-Since`: 412 if the resource is newer.
    IfUnmodifiedSince(Ms),
}

impl Precondition {
    /// Checks a resource timestamp (0 when absent) against the precondition.
    pub fn check(self, resource: Ms) -> DbResult<()> {
        match self {
            Precondition::IfModifiedSince(v) if resource <= v => {
                Err(DbError::NotModified(resource))
            }
            Precondition::IfUnmodifiedSince(v) if resource > v => {
                Err(DbError::PreconditionFailed(resource))
            }
            _ => Ok(()),
        }
    }
}

/// One stored record as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Bso {
    /// Record id.
    pub id: String,
    /// Last modification, ms.
    pub modified: Ms,
    /// The (encrypted) payload.
    pub payload: String,
    /// Optional sort index.
    pub sortindex: Option<i64>,
}

/// One record to write; `None` fields are "not provided" (kept as stored).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BsoUpdate {
    /// Record id (validated).
    pub id: String,
    /// New sort index.
    pub sortindex: Option<i64>,
    /// New payload.
    pub payload: Option<String>,
    /// Time to live in seconds from the write.
    pub ttl: Option<i64>,
}

/// Order of a collection listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// `modified` descending (the default).
    #[default]
    Newest,
    /// `modified` ascending.
    Oldest,
    /// `sortindex` descending.
    Index,
}

/// Where a page starts, decoded from `X-Weave-Next-Offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// Skip this many rows (`sort=index`).
    Rows(u64),
    /// Items at or beyond `bound` ms (in sort direction), skipping `skip` at the bound.
    Bound {
        /// The modified time of the last item returned.
        bound: Ms,
        /// How many items with exactly `bound` were already returned.
        skip: u64,
    },
}

/// A collection listing query.
#[derive(Debug, Clone, Default)]
pub struct BsoQuery {
    /// Only these ids.
    pub ids: Option<Vec<String>>,
    /// `modified > newer`.
    pub newer: Option<Ms>,
    /// `modified < older`.
    pub older: Option<Ms>,
    /// Sort order.
    pub sort: Sort,
    /// At most this many items.
    pub limit: Option<u64>,
    /// Continue from a previous page.
    pub offset: Option<Offset>,
    /// Whole records (`full`) or only ids.
    pub full: bool,
    /// A cap on the page's size besides `limit`; `None`: only `limit` counts.
    pub budget: Option<PageBudget>,
}

/// A cap on one listing page, in whatever unit `weigh` counts (the storage
/// half counts bytes of response body). Rows are read one at a time and the
/// page ends before the row that would take it over `max`, so a listing
/// never holds more than about `max` in memory; a page always holds at least
/// one row, and `next_offset` then says where the rest starts.
#[derive(Debug, Clone, Copy)]
pub struct PageBudget {
    /// The most a page may weigh (unless its only row weighs more).
    pub max: u64,
    /// The weight of one row as read (`payload` empty unless `full`).
    pub weigh: fn(&Bso) -> u64,
}

/// A page of a collection listing.
#[derive(Debug, Clone, Default)]
pub struct BsoPage {
    /// The records (only `id` is meaningful unless the query was `full`).
    pub items: Vec<Bso>,
    /// Where the next page starts, when there are more items.
    pub next_offset: Option<Offset>,
    /// The collection's timestamp (None when the collection does not exist).
    pub last_modified: Option<Ms>,
}

/// What a streamed listing page was, once its records have been handed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageEnd {
    /// How many records the page held.
    pub count: u64,
    /// Where the next page starts, when there are more items.
    pub next_offset: Option<Offset>,
    /// The collection's timestamp (None when the collection does not exist).
    pub last_modified: Option<Ms>,
}

/// How a write went: the new timestamp and the quota left afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The timestamp given to the write (and the collection).
    pub modified: Ms,
    /// Bytes left under the quota, when a quota is configured.
    pub quota_left: Option<i64>,
}

/// A write request's context: the user, the precondition and the quota.
#[derive(Debug, Clone, Copy)]
pub struct WriteCtx<'a> {
    /// The user id (tokenserver `uid`).
    pub uid: Uid,
    /// The collection name.
    pub collection: &'a str,
    /// The `X-If-*` precondition.
    pub precondition: Precondition,
    /// `quota_size` in bytes, when configured.
    pub quota: Option<i64>,
    /// What one batch may hold.
    pub batch_limits: BatchLimits,
}

/// What one batch may hold, counted on what it really holds (not only on the
/// `X-Weave-Total-*` headers a client may leave out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// `max_total_records`.
    pub records: u64,
    /// `max_total_bytes` (UTF-8 bytes of payloads).
    pub bytes: u64,
}

/// Per-collection figures for the info views.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionInfo {
    /// Collection name.
    pub name: String,
    /// Timestamp, count of live records or bytes of live payloads.
    pub value: i64,
}

/// What the storage handlers need from a database. Every method is one
/// transaction; write methods check the precondition inside the write lock.
pub trait StorageDb: Send {
    /// `user_collections` timestamps (info/collections) and the storage timestamp.
    fn collection_timestamps(&mut self, uid: Uid) -> DbResult<Vec<CollectionInfo>>;
    /// Live record counts per collection.
    fn collection_counts(&mut self, uid: Uid) -> DbResult<Vec<CollectionInfo>>;
    /// Live payload bytes per collection (`payload_size`: UTF-8 bytes for
    /// rows we write; the Python server stored characters, the same number
    /// for the ASCII payloads clients send).
    fn collection_usage(&mut self, uid: Uid) -> DbResult<Vec<CollectionInfo>>;
    /// Total live payload bytes (not counting open batches).
    fn total_usage(&mut self, uid: Uid) -> DbResult<i64>;
    /// The storage timestamp (max over collections), 0 when none.
    fn storage_timestamp(&mut self, uid: Uid) -> DbResult<Ms>;
    /// A collection listing, each record handed to `each` as it is read (so
    /// that only the caller's output holds the page); the precondition is
    /// checked against the collection timestamp before any record.
    fn list_bsos(
        &mut self,
        uid: Uid,
        collection: &str,
        query: &BsoQuery,
        pre: Precondition,
        each: &mut dyn FnMut(Bso),
    ) -> DbResult<PageEnd>;
    /// [`list_bsos`](Self::list_bsos) collected into a page.
    fn get_bsos(
        &mut self,
        uid: Uid,
        collection: &str,
        query: &BsoQuery,
        pre: Precondition,
    ) -> DbResult<BsoPage> {
        let mut items = Vec::new();
        let end = self.list_bsos(uid, collection, query, pre, &mut |b| items.push(b))?;
        Ok(BsoPage {
            items,
            next_offset: end.next_offset,
            last_modified: end.last_modified,
        })
    }
    /// One record; the precondition is checked against its timestamp.
    fn get_bso(&mut self, uid: Uid, collection: &str, id: &str, pre: Precondition)
        -> DbResult<Bso>;
    /// Writes one record (PUT); precondition against the item.
    fn put_bso(&mut self, ctx: WriteCtx, item: &BsoUpdate) -> DbResult<WriteOutcome>;
    /// Writes records (POST); precondition against the collection.
    fn post_bsos(&mut self, ctx: WriteCtx, items: &[BsoUpdate]) -> DbResult<WriteOutcome>;
    /// Deletes a whole collection; returns the deletion's timestamp.
    fn delete_collection(&mut self, ctx: WriteCtx) -> DbResult<Ms>;
    /// Deletes some records of a collection; returns the new collection timestamp.
    fn delete_bsos(&mut self, ctx: WriteCtx, ids: &[String]) -> DbResult<Ms>;
    /// Deletes one record; `NotFound` when absent; returns the new collection timestamp.
    fn delete_bso(&mut self, ctx: WriteCtx, id: &str) -> DbResult<Ms>;
    /// Deletes everything the user stored (records, collections, batches).
    fn delete_storage(&mut self, uid: Uid, pre: Precondition) -> DbResult<()>;
    /// Starts a batch holding `items`; returns the batch id and the collection timestamp.
    fn create_batch(&mut self, ctx: WriteCtx, items: &[BsoUpdate]) -> DbResult<(i64, Option<Ms>)>;
    /// Adds items to a batch; returns the collection timestamp.
    fn append_batch(
        &mut self,
        ctx: WriteCtx,
        batch: i64,
        items: &[BsoUpdate],
    ) -> DbResult<Option<Ms>>;
    /// Adds items and applies the whole batch with one new timestamp.
    fn commit_batch(
        &mut self,
        ctx: WriteCtx,
        batch: Option<i64>,
        items: &[BsoUpdate],
    ) -> DbResult<WriteOutcome>;
    /// Cheap liveness check for `__heartbeat__`.
    fn ping(&mut self) -> DbResult<()>;
}
