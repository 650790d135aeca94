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

/// A storage request's failure.
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
    /// The database said no.
    Db(DbError),
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
