//! `/storage/{collection}/{id}`: GET, PUT, DELETE of one record.

use serde_json::Value;

use super::bso::{is_known_bad_crypto, parse_bso, BodyError};
use super::{content_type, json, last_modified, require_json, Ctx, StorageError, WeaveCode};
use crate::db::BsoUpdate;
use crate::http::Response;
use crate::timestamp;

pub fn get(ctx: &Ctx, collection: &str, id: &str) -> Result<Response, StorageError> {
    require_json(ctx)?;
    let bso = ctx
        .storage
        .pool()
        .get()?
        .get_bso(ctx.uid, collection, id, ctx.pre)?;
    let mut body = String::with_capacity(bso.payload.len() + 96);
    json::push_bso(&mut body, &bso);
    Ok(last_modified(Response::json(200, body), Some(bso.modified)))
}

/// PUT one record: body is a JSON object; the URL's id wins over the body's.
pub fn put(ctx: &Ctx, collection: &str, id: &str) -> Result<Response, StorageError> {
    content_type(ctx.req, &["application/json", "text/plain"])?;
    require_json(ctx)?;
    let value: Value = serde_json::from_slice(&ctx.req.body).map_err(|e| {
        StorageError::BadRequest(WeaveCode::InvalidJson, format!("invalid json: {e}"))
    })?;
    let Value::Object(obj) = value else {
        return Err(StorageError::BadRequest(
            WeaveCode::InvalidBso,
            "body is not an object".into(),
        ));
    };
    let limit = ctx.config().limits.max_record_payload_bytes;
    let (_, update) = parse_bso(&obj, limit)
        .map_err(body_error)?
        .map_err(|reason| StorageError::BadRequest(WeaveCode::InvalidBso, reason))?;
    if is_known_bad_crypto(collection, update.payload.as_deref()) {
        return Err(StorageError::BadRequest(
            WeaveCode::InvalidBso,
            "known-bad crypto/keys".into(),
        ));
    }
    let item = BsoUpdate {
        id: id.to_string(),
        ..update
    };
    let outcome = ctx
        .storage
        .pool()
        .get()?
        .put_bso(ctx.write(collection), &item)?;
    let resp = Response::json(200, timestamp::format(outcome.modified));
    Ok(super::collection::with_quota(
        last_modified(resp, Some(outcome.modified)),
        outcome.quota_left,
    ))
}

pub fn delete(ctx: &Ctx, collection: &str, id: &str) -> Result<Response, StorageError> {
    require_json(ctx)?;
    let ts = ctx
        .storage
        .pool()
        .get()?
        .delete_bso(ctx.write(collection), id)?;
    let body = format!("{{\"modified\": {}}}", timestamp::format(ts));
    Ok(last_modified(Response::json(200, body), Some(ts)))
}

/// A body that is not a valid record list or object.
pub(crate) fn body_error(e: BodyError) -> StorageError {
    match e {
        BodyError::InvalidJson => {
            StorageError::BadRequest(WeaveCode::InvalidJson, "invalid json".into())
        }
        BodyError::InvalidBsos => {
            StorageError::BadRequest(WeaveCode::InvalidBso, "invalid records".into())
        }
    }
}
