//! The Sync 1.5 storage API: `/storage/1.5/{uid}/...` (and Mozilla's `/1.5/{uid}/...`).
//!
//! A request arrives here already routed (`Target`); this module authenticates
//! it, validates its parameters and body, calls the database and shapes the
//! success response. Failures are [`StorageError`]s, mapped to HTTP elsewhere.

mod accept;
pub mod bso;
mod collection;
mod error;
mod info;
mod item;
mod json;
pub mod params;

use crate::auth::{Authenticator, HawkError, HawkRequest, VerifiedToken};
use crate::uid::Uid;
use std::sync::Arc;

use crate::db::{BatchLimits, Pool, Precondition, WriteCtx};
use crate::http::{Request, Response};
use crate::timestamp::{self, now_secs, Ms};

pub use error::{StorageError, WeaveCode};

/// The storage limits advertised by `info/configuration` and enforced here
/// (`[storage]` in syncserver.ini).
pub use crate::config::StorageLimits as Limits;

/// Settings the storage half needs.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub limits: Limits,
    /// `quota_size` in bytes.
    pub quota: Option<i64>,
    pub batch_enabled: bool,
    /// This server's node URL (`public_url`); tokens must name it.
    pub node: String,
}

/// What a storage URL names, below `/1.5/{uid}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/1.5/{uid}` or `/1.5/{uid}/storage`.
    Root,
    /// `/1.5/{uid}/info/...`.
    Info(Info),
    /// `/1.5/{uid}/storage/{collection}`.
    Collection(String),
    /// `/1.5/{uid}/storage/{collection}/{id}`.
    Item(String, String),
}

/// The info views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Info {
    Collections,
    Counts,
    Usage,
    Quota,
    Configuration,
}

/// Where the client sent the request, as Hawk needs it.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Lower-case host, without port.
    pub host: String,
    /// Port (explicit, or the scheme's default).
    pub port: u16,
    /// Raw path and query as signed by the client.
    pub path_and_query: String,
}

/// The storage service: shared by all workers.
pub struct Storage {
    config: StorageConfig,
    auth: Authenticator,
    pool: Arc<Pool>,
}

/// One authenticated request's context, handed to the endpoint modules.
pub(crate) struct Ctx<'a> {
    pub req: &'a Request,
    pub uid: Uid,
    pub pre: Precondition,
    pub storage: &'a Storage,
}

impl Ctx<'_> {
    pub(crate) fn write<'c>(&self, collection: &'c str) -> WriteCtx<'c> {
        WriteCtx {
            uid: self.uid,
            collection,
            precondition: self.pre,
            quota: self.storage.config.quota,
            batch_limits: BatchLimits {
                records: self.storage.config.limits.max_total_records,
                bytes: self.storage.config.limits.max_total_bytes,
            },
        }
    }

    pub(crate) fn config(&self) -> &StorageConfig {
        &self.storage.config
    }
}

impl Storage {
    pub fn new(config: StorageConfig, auth: Authenticator, pool: Arc<Pool>) -> Storage {
        Storage { config, auth, pool }
    }

    /// The database pool (for health checks).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Handles one routed storage request.
    pub fn handle(
        &self,
        req: &Request,
        origin: &Origin,
        uid: u64,
        target: &Target,
    ) -> Result<Response, StorageError> {
        let method = if req.method == "HEAD" {
            "GET"
        } else {
            req.method.as_str()
        };
        check_method(target, method)?;
        if req.body_too_large {
            return Err(StorageError::PayloadTooLarge);
        }
        // info/configuration is public, as in Mozilla's server: clients read it first.
        if *target == Target::Info(Info::Configuration) {
            return info::configuration(&self.config);
        }
        // Only info/collections accepts a recently expired token (both references).
        let allow_expired = *target == Target::Info(Info::Collections);
        let token = self.authenticate(req, origin, uid, allow_expired)?;
        // Checked on every request, in the database every process shares, so a
        // deleted account's token stops working everywhere as soon as
        // `users delete` commits (its uid is never handed out again).
        if self.pool.get()?.uid_revoked(token.payload.uid)? {
            return Err(StorageError::Unauthorized(format!(
                "token is for uid {}, whose account was deleted",
                token.payload.uid
            )));
        }
        let pre = params::precondition(req).map_err(|e| StorageError::param(e.0))?;
        // X-If-Modified-Since only makes sense for reads; on writes the Python
        // server answered 304 without writing, which loses data silently.
        let pre = match (method, pre) {
            ("GET", p) => p,
            (_, Precondition::IfModifiedSince(_)) => Precondition::None,
            (_, p) => p,
        };
        let ctx = Ctx {
            req,
            uid: token.payload.uid,
            pre,
            storage: self,
        };
        match (target, method) {
            (Target::Root, _) => info::delete_storage(&ctx),
            (Target::Info(which), _) => info::view(&ctx, *which),
            (Target::Collection(c), "GET") => collection::get(&ctx, c),
            (Target::Collection(c), "POST") => collection::post(&ctx, c),
            (Target::Collection(c), _) => collection::delete(&ctx, c),
            (Target::Item(c, id), "GET") => item::get(&ctx, c, id),
            (Target::Item(c, id), "PUT") => item::put(&ctx, c, id),
            (Target::Item(c, id), _) => item::delete(&ctx, c, id),
        }
    }

    fn authenticate(
        &self,
        req: &Request,
        origin: &Origin,
        uid: u64,
        allow_expired: bool,
    ) -> Result<VerifiedToken, StorageError> {
        let hawk = HawkRequest {
            method: &req.method,
            path_and_query: &origin.path_and_query,
            host: &origin.host,
            port: origin.port,
            content_type: req.header("content-type"),
            body: &req.body,
        };
        let token = self
            .auth
            .authenticate(
                req.header("authorization"),
                &hawk,
                now_secs(),
                allow_expired,
            )
            .map_err(|e| match e {
                HawkError::Throttled(secs) => StorageError::Throttled(secs),
                e => StorageError::Unauthorized(format!("{e:?}")),
            })?;
        if token.payload.uid.wire() != uid {
            return Err(StorageError::Unauthorized(format!(
                "token is for uid {}, URL names {uid}",
                token.payload.uid
            )));
        }
        if token.payload.node != self.config.node {
            return Err(StorageError::Unauthorized(format!(
                "token names node {:?}, this server is {:?}",
                token.payload.node, self.config.node
            )));
        }
        Ok(token)
    }
}

fn check_method(target: &Target, method: &str) -> Result<(), StorageError> {
    let allow = match target {
        Target::Root => "DELETE",
        Target::Info(_) => "GET, HEAD",
        Target::Collection(_) => "GET, HEAD, POST, DELETE",
        Target::Item(..) => "GET, HEAD, PUT, DELETE",
    };
    let ok = match target {
        Target::Root => method == "DELETE",
        Target::Info(_) => method == "GET",
        Target::Collection(_) => matches!(method, "GET" | "POST" | "DELETE"),
        Target::Item(..) => matches!(method, "GET" | "PUT" | "DELETE"),
    };
    if ok {
        Ok(())
    } else {
        Err(StorageError::MethodNotAllowed(allow))
    }
}

/// 406 unless the client accepts JSON (every view but collection listings).
pub(crate) fn require_json(ctx: &Ctx) -> Result<(), StorageError> {
    accept::negotiate(ctx.req.header("accept"), &[accept::Format::Json])
        .map(|_| ())
        .ok_or(StorageError::NotAcceptable)
}

/// Sets `X-Last-Modified` to a resource timestamp (`0` when absent).
pub(crate) fn last_modified(resp: Response, ts: Option<Ms>) -> Response {
    resp.with_header("X-Last-Modified", timestamp::format_or_zero(ts))
}

/// Checks the request's `Content-Type` against what a write accepts.
pub(crate) fn content_type(req: &Request, allowed: &[&str]) -> Result<String, StorageError> {
    let raw = req.header_str("content-type").unwrap_or("");
    let media = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if allowed.contains(&media.as_str()) {
        Ok(media)
    } else {
        Err(StorageError::UnsupportedMediaType(raw.to_string()))
    }
}
