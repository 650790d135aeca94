//! `/storage/{collection}`: listing, uploads (plain and batched), deletes.

use std::collections::HashSet;

use serde_json::Value;

use super::accept::{negotiate, Format};
use super::bso::{is_known_bad_crypto, parse_bso};
use super::item::body_error;
use super::params::{self, BatchMode, BatchParamError, DeclaredSizeError};
use super::{content_type, json, last_modified, require_json, Ctx, StorageError, WeaveCode};
use crate::db::{Bso, BsoUpdate, PageBudget};
use crate::http::{query_pairs, Response};
use crate::timestamp;

/// The most records one listing page holds, as in Mozilla's server (whose
/// default `limit` is its `max_total_records`, 10,000).
pub const PAGE_RECORDS: u64 = 10_000;

/// The most response-body bytes one listing page holds (a single record
/// bigger than this still gets a page of its own). Without it, `full=1` on a
/// 300 MB collection built a 300 MB body and took ~900 MB to do it. Firefox
/// desktop pages with `limit` and follows `X-Weave-Next-Offset`; the
/// Android/iOS client (application-services' `sync15`) does not follow the
/// offset, so this is also the most it downloads of a collection in one sync:
/// 8 MiB is ~10,000 typical encrypted records (~800 bytes each), so phones get
/// as much as Mozilla's record cap gives them. The body is the only copy of the
/// page (the FastCGI records are framed inside it); two such listings at once
/// peaked at 43 MB of RSS.
pub const PAGE_BYTES: u64 = 8 * 1024 * 1024;

/// GET/HEAD: ids or whole records, as JSON or newline-separated JSON, a page
/// at a time (`X-Weave-Next-Offset` says where the next page starts).
pub fn get(ctx: &Ctx, collection: &str) -> Result<Response, StorageError> {
    let format = negotiate(ctx.req.header("accept"), &[Format::Json, Format::Newlines])
        .ok_or(StorageError::NotAcceptable)?;
    let pairs = query_pairs(&ctx.req.query);
    let mut query = params::listing(&pairs).map_err(|e| StorageError::param(e.0))?;
    query.limit = Some(query.limit.map_or(PAGE_RECORDS, |l| l.min(PAGE_RECORDS)));
    query.budget = Some(PageBudget {
        max: PAGE_BYTES,
        weigh: if query.full {
            json::bso_len
        } else {
            json::id_len
        },
    });
    let (open, separator, close, mime) = match format {
        Format::Json => ("[", ", ", "]", "application/json"),
        Format::Newlines => ("", "\n", "\n", "application/newlines"),
    };
    // Each record goes into the body as it is read: the body is the only copy
    // of the page.
    let mut body = String::from(open);
    let mut first = true;
    let page = ctx.storage.pool().get()?.list_bsos(
        ctx.uid,
        collection,
        &query,
        ctx.pre,
        &mut |b: Bso| {
            if !first {
                body.push_str(separator);
            }
            first = false;
            if query.full {
                json::push_bso(&mut body, &b);
            } else {
                json::push_str(&mut body, &b.id);
            }
        },
    )?;
    if format == Format::Json || page.count > 0 {
        body.push_str(close);
    }
    let mut resp = Response::new(200, mime, body);
    resp = last_modified(resp, page.last_modified);
    resp.set_header("X-Weave-Records", page.count.to_string());
    if let Some(next) = page.next_offset {
        resp.set_header("X-Weave-Next-Offset", params::format_offset(next));
    }
    Ok(resp)
}

/// The records of a POST body, sorted into valid updates and failures.
struct Upload {
    valid: Vec<BsoUpdate>,
    success: Vec<String>,
    failed: Vec<(String, String)>,
}

fn parse_body(ctx: &Ctx, collection: &str) -> Result<Upload, StorageError> {
    let media = content_type(
        ctx.req,
        &["application/json", "text/plain", "application/newlines"],
    )?;
    let elements: Vec<Value> = if media == "application/newlines" {
        let text = std::str::from_utf8(&ctx.req.body)
            .map_err(|_| body_error(super::bso::BodyError::InvalidJson))?;
        if text.is_empty() {
            Vec::new()
        } else {
            text.split('\n')
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .map_err(|_| body_error(super::bso::BodyError::InvalidJson))?
        }
    } else {
        match serde_json::from_slice(&ctx.req.body) {
            Ok(Value::Array(items)) => items,
            Ok(_) => return Err(body_error(super::bso::BodyError::InvalidBsos)),
            Err(_) => return Err(body_error(super::bso::BodyError::InvalidJson)),
        }
    };
    let limits = &ctx.config().limits;
    let mut upload = Upload {
        valid: Vec::new(),
        success: Vec::new(),
        failed: Vec::new(),
    };
    let mut seen = HashSet::new();
    let mut bytes = 0u64;
    for element in elements {
        let Value::Object(obj) = element else {
            return Err(body_error(super::bso::BodyError::InvalidBsos));
        };
        let id = match obj.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => {
                return Err(StorageError::BadRequest(
                    WeaveCode::InvalidBso,
                    "record without id".into(),
                ))
            }
            Some(other) => other.to_string(),
        };
        if !seen.insert(id.clone()) {
            return Err(StorageError::BadRequest(
                WeaveCode::InvalidBso,
                format!("duplicate id {id:?}"),
            ));
        }
        let update = match parse_bso(&obj, limits.max_record_payload_bytes).map_err(body_error)? {
            Ok((_, update)) => update,
            Err(reason) => {
                upload.failed.push((id, reason));
                continue;
            }
        };
        if is_known_bad_crypto(collection, update.payload.as_deref()) {
            return Err(StorageError::BadRequest(
                WeaveCode::InvalidBso,
                "known-bad crypto/keys".into(),
            ));
        }
        // UTF-8 bytes, as every size limit counts (and as the body is sized).
        let size = update.payload.as_deref().map(str::len).unwrap_or(0) as u64;
        if upload.valid.len() as u64 >= limits.max_post_records {
            upload.failed.push((id, "retry bso".into()));
            continue;
        }
        if bytes + size > limits.max_post_bytes {
            upload.failed.push((id, "retry bytes".into()));
            continue;
        }
        bytes += size;
        upload.success.push(id.clone());
        upload.valid.push(BsoUpdate { id, ..update });
    }
    Ok(upload)
}

fn declared_sizes(ctx: &Ctx) -> Result<(), StorageError> {
    let l = &ctx.config().limits;
    let limits = [
        ("x-weave-records", l.max_post_records),
        ("x-weave-bytes", l.max_post_bytes),
        ("x-weave-total-records", l.max_total_records),
        ("x-weave-total-bytes", l.max_total_bytes),
    ];
    params::declared_sizes(ctx.req, &limits).map_err(|e| match e {
        DeclaredSizeError::TooLarge(h) => {
            StorageError::BadRequest(WeaveCode::SizeLimit, format!("{h} over the limit"))
        }
        DeclaredSizeError::Invalid(h) => StorageError::param(format!("invalid {h}")),
    })
}

fn results_json(upload: &Upload, extra: (&str, String)) -> String {
    let success: Vec<String> = upload.success.iter().map(|s| json::string(s)).collect();
    let failed = json::object(
        upload
            .failed
            .iter()
            .map(|(id, why)| (id.as_str(), json::string(why))),
    );
    json::object([
        ("success", format!("[{}]", success.join(", "))),
        ("failed", failed),
        extra,
    ])
}

/// POST: a plain upload, or one step of a batch upload.
pub fn post(ctx: &Ctx, collection: &str) -> Result<Response, StorageError> {
    require_json(ctx)?;
    let pairs = query_pairs(&ctx.req.query);
    let mode = params::batch_mode(&pairs, ctx.config().batch_enabled).map_err(|e| match e {
        BatchParamError::Param(p) => StorageError::param(p.0),
        BatchParamError::CommitWithoutBatch => StorageError::InvalidBatch,
    })?;
    declared_sizes(ctx)?;
    let upload = parse_body(ctx, collection)?;
    let mut db = ctx.storage.pool().get()?;
    let wctx = ctx.write(collection);
    let (status, extra, ts, quota_left) = match mode {
        BatchMode::None => {
            let out = db.post_bsos(wctx, &upload.valid)?;
            (
                200,
                ("modified", timestamp::format(out.modified)),
                Some(out.modified),
                out.quota_left,
            )
        }
        BatchMode::Start { commit: true } => {
            let out = db.commit_batch(wctx, None, &upload.valid)?;
            (
                200,
                ("modified", timestamp::format(out.modified)),
                Some(out.modified),
                out.quota_left,
            )
        }
        BatchMode::Continue { id, commit: true } => {
            let out = db.commit_batch(wctx, Some(id), &upload.valid)?;
            (
                200,
                ("modified", timestamp::format(out.modified)),
                Some(out.modified),
                out.quota_left,
            )
        }
        BatchMode::Start { commit: false } => {
            let (id, last) = db.create_batch(wctx, &upload.valid)?;
            (
                202,
                ("batch", json::string(&params::format_batch_id(id))),
                last,
                None,
            )
        }
        BatchMode::Continue { id, commit: false } => {
            let last = db.append_batch(wctx, id, &upload.valid)?;
            (
                202,
                ("batch", json::string(&params::format_batch_id(id))),
                last,
                None,
            )
        }
    };
    let resp = Response::json(status, results_json(&upload, extra));
    Ok(with_quota(last_modified(resp, ts), quota_left))
}

/// Adds `X-Weave-Quota-Remaining` (KB) when less than 1 MiB is left.
pub(crate) fn with_quota(resp: Response, left: Option<i64>) -> Response {
    match left {
        Some(left) if left < 1024 * 1024 => {
            let kb = (left as f64 / 1024.0 * 100.0).round() / 100.0;
            resp.with_header("X-Weave-Quota-Remaining", json::float(kb))
        }
        _ => resp,
    }
}

/// DELETE: the whole collection, or only `?ids=`.
pub fn delete(ctx: &Ctx, collection: &str) -> Result<Response, StorageError> {
    require_json(ctx)?;
    let pairs = query_pairs(&ctx.req.query);
    let mut db = ctx.storage.pool().get()?;
    let ts = match params::last(&pairs, "ids") {
        Some(ids) => {
            let ids = params::ids(ids).map_err(|e| StorageError::param(e.0))?;
            db.delete_bsos(ctx.write(collection), &ids)?
        }
        None => db.delete_collection(ctx.write(collection))?,
    };
    let body = format!("{{\"modified\": {}}}", timestamp::format(ts));
    Ok(last_modified(Response::json(200, body), Some(ts)))
}
