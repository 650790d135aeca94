//! The tokenserver's user records (the Python server's `users` table).
//!
//! The rules that decide what happens to a record live in `crate::tokenserver`;
//! the database runs them inside one write transaction, so concurrent first
//! requests for one account from several workers create exactly one row.

use super::DbResult;
use crate::uid::Uid;

/// One row of `users` for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The uid (the storage namespace).
    pub uid: Uid,
    /// Highest FxA generation seen.
    pub generation: i64,
    /// Hex client state (`""` when none).
    pub client_state: String,
    /// Highest keys-changed-at seen; `None` on rows written before the column existed.
    pub keys_changed_at: Option<i64>,
    /// Creation time, ms.
    pub created_at: i64,
    /// When a newer row replaced this one, ms.
    pub replaced_at: Option<i64>,
}

/// Values for a row to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Generation.
    pub generation: i64,
    /// Client state.
    pub client_state: String,
    /// Keys-changed-at.
    pub keys_changed_at: Option<i64>,
    /// The node URL at allocation time.
    pub node: String,
}

/// What to do with an account's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserPlan {
    /// Refuse: change nothing.
    Reject,
    /// Use the current row as it is.
    Keep,
    /// First sign-in: insert the first row.
    Create(NewUser),
    /// Raise generation and/or keys-changed-at of the current row.
    Update {
        /// The current row's uid.
        uid: Uid,
        /// New generation.
        generation: i64,
        /// New keys-changed-at.
        keys_changed_at: Option<i64>,
    },
    /// New client state: insert a new row (new uid) and mark older rows replaced.
    Replace(NewUser),
}

/// What the rules see when deciding.
#[derive(Debug, Clone)]
pub struct UserState<'a> {
    /// The account's rows, newest first (at most 20, like the Python server).
    pub rows: &'a [UserRecord],
    /// Accounts with a current row; only counted when `rows` is empty.
    pub accounts: i64,
}

/// Access to user records.
pub trait UsersDb {
    /// Loads the rows of `email`, lets `decide` pick a plan, applies it and
    /// returns the resulting current row, all in one write transaction.
    /// Returns `None` when the plan was `Reject`.
    fn token_user(
        &mut self,
        email: &str,
        now_ms: i64,
        decide: &mut dyn FnMut(&UserState) -> UserPlan,
    ) -> DbResult<Option<UserRecord>>;

    /// Whether `uid` belonged to an account an administrator deleted: its
    /// tokens must be refused, even though they are validly signed.
    fn uid_revoked(&mut self, uid: Uid) -> DbResult<bool>;
}
