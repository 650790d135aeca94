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

/// The row operations of [`UsersDb::token_user`], run by an engine inside its
/// write transaction (the account's lock held), so that every engine applies
/// the plans the same way ([`apply_plan`]).
pub(crate) trait UserRows {
    /// The account's rows, newest first (at most 20).
    fn rows(&mut self, email: &str) -> DbResult<Vec<UserRecord>>;
    /// Marks one row replaced at `at`.
    fn set_replaced(&mut self, uid: Uid, at: i64) -> DbResult<()>;
    /// Accounts with a current row.
    fn accounts(&mut self) -> DbResult<i64>;
    /// Inserts a row with a new uid (never one handed out before).
    fn insert(&mut self, email: &str, new: &NewUser, created_at: i64) -> DbResult<Uid>;
    /// Marks every other current row of the account replaced at `at`.
    fn replace_others(&mut self, email: &str, at: i64, keep: Uid) -> DbResult<()>;
    /// Raises generation and keys-changed-at of a row.
    fn update(&mut self, uid: Uid, generation: i64, keys_changed_at: Option<i64>) -> DbResult<()>;
}

/// Loads the account's rows, lets `decide` pick a plan and applies it; `None`
/// for `Reject` (the caller then rolls back instead of committing).
/// The answer for an account whose rows need no write (a returning user with
/// nothing to change, or a refusal), decided on rows read without the account's
/// lock: the same answer as if this request had come just before any change
/// running at the same time. `None`: a write is needed (a first sign-in, an
/// update, older rows to mark replaced), so the caller takes the locked path and
/// decides again there. Saves a database server two round trips per token.
pub(crate) fn without_writing(
    existing: &[UserRecord],
    decide: &mut dyn FnMut(&UserState) -> UserPlan,
) -> Option<Option<UserRecord>> {
    let current = existing.first()?;
    if existing.iter().skip(1).any(|r| r.replaced_at.is_none()) {
        return None;
    }
    match decide(&UserState {
        rows: existing,
        accounts: 0,
    }) {
        UserPlan::Keep => Some(Some(current.clone())),
        UserPlan::Reject => Some(None),
        UserPlan::Create(_) | UserPlan::Update { .. } | UserPlan::Replace(_) => None,
    }
}

pub(crate) fn apply_plan(
    tx: &mut dyn UserRows,
    email: &str,
    now_ms: i64,
    decide: &mut dyn FnMut(&UserState) -> UserPlan,
) -> DbResult<Option<UserRecord>> {
    let mut existing = tx.rows(email)?;
    // Older rows that were never marked replaced (as the Python server did on read).
    if let Some(current) = existing.first().cloned() {
        for old in existing
            .iter_mut()
            .skip(1)
            .filter(|r| r.replaced_at.is_none())
        {
            tx.set_replaced(old.uid, current.created_at)?;
            old.replaced_at = Some(current.created_at);
        }
    }
    let accounts = if existing.is_empty() {
        tx.accounts()?
    } else {
        0
    };
    let plan = decide(&UserState {
        rows: &existing,
        accounts,
    });
    let record = |uid: Uid, new: &NewUser, created_at: i64| UserRecord {
        uid,
        generation: new.generation,
        client_state: new.client_state.clone(),
        keys_changed_at: new.keys_changed_at,
        created_at,
        replaced_at: None,
    };
    Ok(match plan {
        UserPlan::Reject => None,
        UserPlan::Keep => existing.first().cloned(),
        UserPlan::Create(new) => {
            let uid = tx.insert(email, &new, now_ms)?;
            Some(record(uid, &new, now_ms))
        }
        UserPlan::Replace(new) => {
            // created_at must order after every other row of the account.
            let created = existing
                .first()
                .map(|r| r.created_at + 1)
                .unwrap_or(now_ms)
                .max(now_ms);
            let uid = tx.insert(email, &new, created)?;
            tx.replace_others(email, created, uid)?;
            Some(record(uid, &new, created))
        }
        UserPlan::Update {
            uid,
            generation,
            keys_changed_at,
        } => {
            tx.update(uid, generation, keys_changed_at)?;
            existing.first().cloned().map(|r| UserRecord {
                generation,
                keys_changed_at,
                ..r
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(uid: i64, replaced_at: Option<i64>) -> UserRecord {
        UserRecord {
            uid: Uid::new(uid).unwrap(),
            generation: 1,
            client_state: String::new(),
            keys_changed_at: None,
            created_at: uid,
            replaced_at,
        }
    }

    #[test]
    fn only_answers_that_need_no_write_skip_the_lock() {
        let keep = &mut |_: &UserState| UserPlan::Keep;
        let reject = &mut |_: &UserState| UserPlan::Reject;
        let update = &mut |s: &UserState| UserPlan::Update {
            uid: s.rows[0].uid,
            generation: 2,
            keys_changed_at: None,
        };
        let tidy = [row(2, None), row(1, Some(2))];
        assert_eq!(without_writing(&tidy, keep), Some(Some(tidy[0].clone())));
        assert_eq!(without_writing(&tidy, reject), Some(None));
        assert_eq!(without_writing(&tidy, update), None);
        // No rows: a first sign-in (or the user cap) is decided under the lock.
        assert_eq!(without_writing(&[], keep), None);
        // An older row not marked replaced is tidied under the lock.
        assert_eq!(without_writing(&[row(2, None), row(1, None)], keep), None);
    }
}
