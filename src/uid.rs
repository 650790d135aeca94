//! The account id a token names and the storage tables key on.
//!
//! Tokens carry it as an unsigned JSON number and every engine stores it as a
//! signed integer (`INTEGER`/`int(11)`), so the one conversion happens here, where a
//! request's uid enters the server: a uid that no engine could store, or 0 (which
//! the Python server handed out by mistake on PostgreSQL, mixing accounts' data
//! under it), is not an account, and its tokens are refused.

use std::fmt;

/// A valid account uid: 1 ..= `i64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(i64);

impl Uid {
    /// The uid stored as `value`, if it can be an account's.
    pub const fn new(value: i64) -> Option<Uid> {
        if value > 0 {
            Some(Uid(value))
        } else {
            None
        }
    }

    /// The uid a token or URL carries, if it can be an account's.
    pub fn from_wire(value: u64) -> Option<Uid> {
        i64::try_from(value).ok().and_then(Uid::new)
    }

    /// The value as the database stores it.
    pub fn get(self) -> i64 {
        self.0
    }

    /// The value as tokens and URLs carry it.
    pub fn wire(self) -> u64 {
        self.0 as u64
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::Uid;

    #[test]
    fn zero_negative_and_unstorable_uids_are_not_accounts() {
        assert_eq!(Uid::new(0), None);
        assert_eq!(Uid::new(-3), None);
        assert_eq!(Uid::from_wire(0), None);
        assert_eq!(Uid::from_wire(u64::MAX), None);
        assert_eq!(
            Uid::from_wire(i64::MAX as u64).map(Uid::get),
            Some(i64::MAX)
        );
        let uid = Uid::new(42).unwrap();
        assert_eq!(
            (uid.get(), uid.wire(), uid.to_string()),
            (42, 42, "42".to_string())
        );
    }
}
