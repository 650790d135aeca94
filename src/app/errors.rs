//! The one place where failures become HTTP responses (status, body, headers).
//!
//! Storage errors use the Weave conventions (bare-integer JSON bodies); the
//! configuration error keeps the Python server's JSON message.

use crate::db::DbError;
use crate::http::Response;
use crate::logonce::RateLimit;
use crate::storage::{StorageError, WeaveCode};
use crate::timestamp;
use crate::tokenserver::TokenserverError;

/// Retry-After for a write lock held too long by another worker.
pub const RETRY_AFTER_BUSY: u32 = 10;
/// Retry-After when the database cannot be written or fails otherwise.
pub const RETRY_AFTER_FAULT: u32 = 60;
/// Retry-After when enough token requests wait on the account server already.
pub const RETRY_AFTER_VERIFIER_BUSY: u32 = 10;

/// Every failure the application can answer with.
#[derive(Debug)]
pub enum AppError {
    /// No such route (404, body 0).
    NotFound,
    /// Route exists, method does not (405).
    MethodNotAllowed(&'static str),
    /// The web server sent no usable request (400).
    BadGateway(&'static str),
    /// The request's host or port does not match `public_url` (421, JSON):
    /// it reached a server that is not configured for the authority it names
    /// (e.g. `127.0.0.1` when public_url says `localhost`). Tokens and Hawk
    /// signatures name public_url, so nothing could work; the fix is in the
    /// configuration or the client's URL, not a server fault (the Python
    /// server answered 500).
    PublicUrlMismatch {
        expected: String,
        /// What the request looked like.
        actual: String,
    },
    /// As `PublicUrlMismatch`, but only the scheme differs (421, same JSON):
    /// what a client gets for plain http to an https server, or when a proxy's
    /// `X-Forwarded-Proto` is not trusted. That much is in a client's hands, so
    /// it must not read as a server fault (500).
    SchemeMismatch {
        expected: String,
        /// What the request looked like.
        actual: String,
    },
    Storage(StorageError),
    Tokenserver(TokenserverError),
}

impl From<TokenserverError> for AppError {
    fn from(e: TokenserverError) -> Self {
        AppError::Tokenserver(e)
    }
}

impl From<StorageError> for AppError {
    fn from(e: StorageError) -> Self {
        AppError::Storage(e)
    }
}

fn zero(status: u16) -> Response {
    Response::json(status, "0")
}

fn cornice(status: u16, location: &str, name: &str, description: &str) -> Response {
    let body = serde_json::json!({
        "status": "error",
        "errors": [{"location": location, "name": name, "description": description}],
    });
    Response::json(status, body.to_string())
}

/// The Python server's public_url mismatch message.
fn mismatch(expected: &str, actual: &str) -> String {
    format!(
        "The public_url setting doesn't match the application url.\n\
         This will almost certainly cause authentication failures!\n    \
         public_url setting is: {expected}\n    application url is:    {actual}\n\
         You can disable this check by setting the force_wsgi_environ\n\
         option in your config file, but do so at your own risk."
    )
}

/// Turns an error into its response, logging it at a useful level.
pub fn to_response(err: AppError) -> Response {
    match err {
        AppError::NotFound => zero(404),
        AppError::MethodNotAllowed(allow) => zero(405).with_header("Allow", allow),
        AppError::BadGateway(why) => {
            log::warn!("the web server sent an unusable FastCGI request: {why}");
            zero(400)
        }
        AppError::PublicUrlMismatch { expected, actual } => {
            let msg = format!(
                "{}\nThis request was addressed to {actual}, but this server is configured for\n\
                 {expected}: use that address (the one in public_url), or set public_url to\n\
                 the URL Firefox uses; behind a proxy that rewrites Host, set\n\
                 force_wsgi_environ = true.",
                mismatch(&expected, &actual)
            );
            let body = serde_json::json!({"status": "error", "errors": [msg]});
            Response::json(421, body.to_string())
        }
        AppError::SchemeMismatch { expected, actual } => {
            let msg = format!(
                "{}\nBehind a TLS proxy, list its address in trusted_proxies so that its\n\
                 X-Forwarded-Proto header counts.",
                mismatch(&expected, &actual)
            );
            let body = serde_json::json!({"status": "error", "errors": [msg]});
            Response::json(421, body.to_string())
        }
        AppError::Storage(e) => storage(e),
        AppError::Tokenserver(e) => tokenserver(e),
    }
}

fn tokenserver(err: TokenserverError) -> Response {
    match err {
        TokenserverError::UnknownApplication => {
            cornice(404, "url", "application", "Unsupported application")
        }
        TokenserverError::UnknownVersion(v) => {
            cornice(404, "url", &v, "Unsupported application version")
        }
        TokenserverError::MethodNotAllowed => zero(405).with_header("Allow", "GET, HEAD"),
        TokenserverError::InvalidClientStateHeader => cornice(
            400,
            "header",
            "X-Client-State",
            "Invalid client state value",
        ),
        TokenserverError::Unauthorized {
            status,
            location,
            name,
            description,
            why,
        } => {
            log::info!("token request refused (401 {status}): {why}");
            let body = serde_json::json!({
                "status": status,
                "errors": [{"location": location, "name": name, "description": description}],
            });
            Response::json(401, body.to_string())
        }
        TokenserverError::UnsupportedScheme => {
            cornice(401, "body", "", "Unsupported").with_header("WWW-Authenticate", "BrowserID")
        }
        TokenserverError::Unavailable(why) => {
            log::warn!("token request answered 503: {why}");
            cornice(503, "body", "", "Resource is not available")
                .with_header("Retry-After", RETRY_AFTER_FAULT.to_string())
        }
        TokenserverError::VerifierBusy => {
            if VERIFIER_BUSY_LOG.due() {
                log::warn!("token requests answered 503: as many as allowed are waiting on the account server already (is it slow?); logged at most once a minute");
            }
            cornice(503, "body", "", "Resource is not available")
                .with_header("Retry-After", RETRY_AFTER_VERIFIER_BUSY.to_string())
        }
        TokenserverError::Db(e) => {
            match e {
                DbError::Busy | DbError::NoSession { .. } => log::warn!("token request: {e}"),
                _ => log::error!("token request: {e}"),
            }
            let body = serde_json::json!({
                "status": "internal-error",
                "errors": [{"location": "body", "name": "", "description": "Database unavailable"}],
            });
            Response::json(503, body.to_string())
                .with_header("Retry-After", RETRY_AFTER_BUSY.to_string())
        }
    }
}

fn storage(err: StorageError) -> Response {
    match err {
        StorageError::NotFound => zero(404),
        StorageError::MethodNotAllowed(allow) => zero(405).with_header("Allow", allow),
        StorageError::Unauthorized(why) => {
            log::info!("storage request refused (401): {why}");
            zero(401).with_header("WWW-Authenticate", "Hawk")
        }
        StorageError::BadRequest(code, why) => {
            log::info!("storage request refused (400, code {}): {why}", code as u8);
            Response::json(400, (code as u8).to_string())
        }
        StorageError::InvalidBatch => zero(400),
        StorageError::NotAcceptable => cornice(
            406,
            "header",
            "Accept",
            "Accept header should be one of ['application/json', 'application/newlines']",
        ),
        StorageError::UnsupportedMediaType(ct) => cornice(
            415,
            "header",
            "Content-Type",
            &format!("Unsupported Media Type: {ct}"),
        ),
        StorageError::PayloadTooLarge => {
            log::info!("request body over max_request_bytes refused (413)");
            Response::json(413, (WeaveCode::SizeLimit as u8).to_string())
        }
        StorageError::Throttled(secs) => {
            if THROTTLE_LOG.due() {
                log::warn!("signed requests answered 503 (Retry-After {secs} s): an account, or all together, sent more than the replay guard remembers at once (logged at most once a minute)");
            }
            zero(503).with_header("Retry-After", secs.to_string())
        }
        StorageError::Db(e) => db(e),
    }
}

static BUSY_LOG: RateLimit = RateLimit::new();
static FAULT_LOG: RateLimit = RateLimit::new();
static THROTTLE_LOG: RateLimit = RateLimit::new();
static NO_SESSION_LOG: RateLimit = RateLimit::new();
static VERIFIER_BUSY_LOG: RateLimit = RateLimit::new();

fn db(err: DbError) -> Response {
    match err {
        DbError::PreconditionFailed(ts) => {
            zero(412).with_header("X-Last-Modified", timestamp::format_or_zero(Some(ts)))
        }
        DbError::NotModified(ts) => {
            Response::empty(304).with_header("X-Last-Modified", timestamp::format_or_zero(Some(ts)))
        }
        DbError::NotFound => zero(404),
        DbError::InvalidBatch => zero(400),
        DbError::UnstorableText(_) => {
            // A MySQL table of the Python server is latin1; PostgreSQL text holds no
            // NUL. The record is invalid for this database: 400, nothing written.
            log::info!("storage request refused (400, code 8): {err}");
            Response::json(400, (WeaveCode::InvalidBso as u8).to_string())
        }
        DbError::OverQuota => Response::json(403, r#"{"status": "quota-exceeded", "errors": []}"#),
        DbError::BatchTooLarge => {
            log::info!("storage request refused (400, code 17): {err}");
            Response::json(400, (WeaveCode::SizeLimit as u8).to_string())
        }
        DbError::Conflict { wait_ms } => {
            log::info!("write refused (503): {err}");
            // Usually a few ms (a burst of writes to one collection); longer
            // only if the clock was set back, and then the client should
            // wait that long.
            let secs = (wait_ms.max(0) as u64).div_ceil(1000);
            zero(503).with_header(
                "Retry-After",
                secs.max(u64::from(RETRY_AFTER_BUSY)).to_string(),
            )
        }
        DbError::Busy => {
            if BUSY_LOG.due() {
                log::warn!("database busy: another writer held the lock over 5 s; answering 503 (logged at most once a minute)");
            }
            zero(503).with_header("Retry-After", RETRY_AFTER_BUSY.to_string())
        }
        DbError::NoSession { .. } => {
            if NO_SESSION_LOG.due() {
                log::warn!("{err}: answering 503 (overloaded, or requests stuck on the database; raise --workers?); logged at most once a minute");
            }
            zero(503).with_header("Retry-After", RETRY_AFTER_BUSY.to_string())
        }
        DbError::Unwritable(why) => {
            if FAULT_LOG.due() {
                log::error!("database cannot be written ({why}): writes are answered 503 until this is fixed (disk full? read-only file or directory?); logged at most once a minute");
            }
            zero(503).with_header("Retry-After", RETRY_AFTER_FAULT.to_string())
        }
        DbError::Unavailable(why) => {
            if FAULT_LOG.due() {
                log::error!("database server unreachable ({why}): answering 503 until it is back; sessions reconnect by themselves (logged at most once a minute)");
            }
            zero(503).with_header("Retry-After", RETRY_AFTER_FAULT.to_string())
        }
        DbError::NoNode => {
            if FAULT_LOG.due() {
                log::error!("{err}: answering 503 (logged at most once a minute)");
            }
            zero(503).with_header("Retry-After", RETRY_AFTER_FAULT.to_string())
        }
        DbError::Backend(why) => {
            if FAULT_LOG.due() {
                log::error!("database error: {why}; answered 503 (logged at most once a minute)");
            }
            zero(503).with_header("Retry-After", RETRY_AFTER_FAULT.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weave_bodies() {
        let r = to_response(StorageError::BadRequest(WeaveCode::InvalidJson, "x".into()).into());
        assert_eq!((r.status, r.body.as_slice()), (400, b"6".as_slice()));
        let r = to_response(StorageError::Unauthorized("x".into()).into());
        assert_eq!(r.status, 401);
        assert_eq!(r.header("WWW-Authenticate"), Some("Hawk"));
        let r = to_response(StorageError::Db(DbError::Busy).into());
        assert_eq!((r.status, r.header("Retry-After")), (503, Some("10")));
        let r = to_response(StorageError::Db(DbError::PreconditionFailed(1500)).into());
        assert_eq!((r.status, r.header("X-Last-Modified")), (412, Some("1.50")));
        let r = to_response(StorageError::Db(DbError::NotModified(1500)).into());
        assert_eq!(
            (r.status, r.body.len(), r.header("Content-Type")),
            (304, 0, None)
        );
        let r = to_response(StorageError::Db(DbError::UnstorableText("x".into())).into());
        assert_eq!((r.status, r.body.as_slice()), (400, b"8".as_slice()));
        let r = to_response(StorageError::Db(DbError::BatchTooLarge).into());
        assert_eq!((r.status, r.body.as_slice()), (400, b"17".as_slice()));
        let r = to_response(StorageError::Db(DbError::Conflict { wait_ms: 5 }).into());
        assert_eq!((r.status, r.header("Retry-After")), (503, Some("10")));
        let r = to_response(StorageError::Db(DbError::Conflict { wait_ms: 60_001 }).into());
        assert_eq!(r.header("Retry-After"), Some("61"));
        let r = to_response(AppError::MethodNotAllowed("DELETE"));
        assert_eq!((r.status, r.header("Allow")), (405, Some("DELETE")));
    }

    #[test]
    fn overload_is_503_with_retry_after() {
        let no_session = || DbError::NoSession {
            sessions: 4,
            waited: std::time::Duration::from_secs(10),
        };
        let r = to_response(StorageError::Db(no_session()).into());
        assert_eq!((r.status, r.header("Retry-After")), (503, Some("10")));
        let r = to_response(TokenserverError::Db(no_session()).into());
        assert_eq!(r.status, 503);
        assert!(r.header("Retry-After").is_some());
        let r = to_response(TokenserverError::VerifierBusy.into());
        assert_eq!((r.status, r.header("Retry-After")), (503, Some("10")));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["status"], "error");
        assert_eq!(v["errors"][0]["description"], "Resource is not available");
    }

    #[test]
    fn json_errors() {
        let r = to_response(StorageError::UnsupportedMediaType("text/html".into()).into());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v["errors"][0]["description"],
            "Unsupported Media Type: text/html"
        );
        let r = to_response(AppError::PublicUrlMismatch {
            expected: "http://localhost:5000".into(),
            actual: "http://127.0.0.1:5000".into(),
        });
        assert_eq!(r.status, 421);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let msg = v["errors"][0].as_str().unwrap();
        for part in [
            "The public_url setting doesn't match the application url.",
            "public_url setting is: http://localhost:5000",
            "application url is:    http://127.0.0.1:5000",
            "addressed to http://127.0.0.1:5000",
            "set public_url to\nthe URL Firefox uses",
            "force_wsgi_environ = true",
        ] {
            assert!(msg.contains(part), "{part}: {msg}");
        }
    }

    #[test]
    fn scheme_mismatch_is_not_a_server_error() {
        let r = to_response(AppError::SchemeMismatch {
            expected: "https://a".into(),
            actual: "http://a".into(),
        });
        assert_eq!(r.status, 421);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let msg = v["errors"][0].as_str().unwrap();
        assert!(msg.contains("public_url setting is: https://a"), "{msg}");
        assert!(msg.contains("trusted_proxies"), "{msg}");
    }
}
