//! Tokenserver failures; turned into HTTP in `crate::app::errors`.

use crate::db::DbError;

/// A tokenserver request's failure. Bodies are the cornice-style JSON both
/// references send: `{"status": S, "errors": [{"location", "name", "description"}]}`.
#[derive(Debug)]
pub enum TokenserverError {
    /// Unknown application (404).
    UnknownApplication,
    /// Unknown version (404, `name` is the version).
    UnknownVersion(String),
    /// Not GET/HEAD (405).
    MethodNotAllowed,
    /// Bad `X-Client-State` (400).
    InvalidClientStateHeader,
    /// A refusal (401) with its status string, location, name and description.
    Unauthorized {
        /// `status`, e.g. `invalid-credentials`.
        status: &'static str,
        location: &'static str,
        name: &'static str,
        description: &'static str,
        /// Why, for the log only.
        why: String,
    },
    /// An unsupported Authorization scheme (401 `Unsupported` + WWW-Authenticate).
    UnsupportedScheme,
    /// The account server could not be asked (503); the text is for the log.
    Unavailable(String),
    /// Too many token requests are waiting on the account server already
    /// (503, so they cannot hold every connection thread).
    VerifierBusy,
    Db(DbError),
}

impl TokenserverError {
    /// A plain 401 with `location: body`, `description: Unauthorized`.
    pub fn unauthorized(status: &'static str, why: impl Into<String>) -> TokenserverError {
        TokenserverError::Unauthorized {
            status,
            location: "body",
            name: "",
            description: "Unauthorized",
            why: why.into(),
        }
    }
}

impl std::fmt::Display for TokenserverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenserverError::UnknownApplication => f.write_str("unknown application"),
            TokenserverError::UnknownVersion(v) => write!(f, "unknown application version {v:?}"),
            TokenserverError::MethodNotAllowed => f.write_str("method not allowed (GET, HEAD)"),
            TokenserverError::InvalidClientStateHeader => f.write_str("invalid X-Client-State"),
            TokenserverError::Unauthorized { status, why, .. } => write!(f, "{status}: {why}"),
            TokenserverError::UnsupportedScheme => f.write_str("unsupported Authorization scheme"),
            TokenserverError::Unavailable(why) => write!(f, "account server unavailable: {why}"),
            TokenserverError::VerifierBusy => {
                f.write_str("too many token requests are waiting on the account server")
            }
            TokenserverError::Db(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TokenserverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TokenserverError::Db(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DbError> for TokenserverError {
    fn from(e: DbError) -> Self {
        TokenserverError::Db(e)
    }
}
