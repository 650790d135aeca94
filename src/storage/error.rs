//! What can go wrong in a storage request; turned into HTTP in `crate::app::errors`.

use crate::db::DbError;

/// Weave error codes sent as bare-integer bodies of 400 responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeaveCode {
    /// 1: illegal method/params/headers.
    Generic = 1,
    /// 6: JSON parse failure.
    InvalidJson = 6,
    /// 8: invalid record(s).
    InvalidBso = 8,
    /// 17: size limit exceeded.
    SizeLimit = 17,
}

#[derive(Debug)]
pub enum StorageError {
    /// Unknown path (404, body 0).
    NotFound,
    /// Known path, wrong method (405 with `Allow`).
    MethodNotAllowed(&'static str),
    /// Authentication failed (401); the text is for the log only.
    Unauthorized(String),
    /// Validation failed (400 with a Weave code); the text is for the log.
    BadRequest(WeaveCode, String),
    /// Unknown/expired batch, or commit without batch (400, body 0).
    InvalidBatch,
    /// No acceptable response format (406).
    NotAcceptable,
    /// Unsupported request Content-Type (415), with the type sent.
    UnsupportedMediaType(String),
    /// The body is over `max_request_bytes` (413).
    PayloadTooLarge,
    /// The account sent more signed requests than the replay guard may remember at once
    /// (503 with `Retry-After` in seconds).
    Throttled(u64),
    Db(DbError),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::NotFound => f.write_str("no such storage resource"),
            StorageError::MethodNotAllowed(allow) => {
                write!(f, "method not allowed here (allowed: {allow})")
            }
            StorageError::Unauthorized(why) => write!(f, "unauthorized: {why}"),
            StorageError::BadRequest(code, why) => {
                write!(f, "bad request (Weave code {}): {why}", *code as u8)
            }
            StorageError::InvalidBatch => f.write_str("invalid batch"),
            StorageError::NotAcceptable => f.write_str("no acceptable response format"),
            StorageError::UnsupportedMediaType(t) => write!(f, "unsupported Content-Type {t:?}"),
            StorageError::PayloadTooLarge => f.write_str("request body over max_request_bytes"),
            StorageError::Throttled(secs) => {
                write!(f, "too many signed requests at once; retry after {secs}s")
            }
            StorageError::Db(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Db(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DbError> for StorageError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::InvalidBatch => StorageError::InvalidBatch,
            other => StorageError::Db(other),
        }
    }
}

impl StorageError {
    /// A 400 with code 1.
    pub fn param(msg: impl Into<String>) -> StorageError {
        StorageError::BadRequest(WeaveCode::Generic, msg.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn display_and_source() {
        let e = StorageError::BadRequest(WeaveCode::InvalidJson, "not JSON".into());
        assert_eq!(e.to_string(), "bad request (Weave code 6): not JSON");
        assert!(e.source().is_none());
        let e = StorageError::from(DbError::Busy);
        assert_eq!(e.to_string(), DbError::Busy.to_string());
        assert!(e.source().is_some());
    }
}
