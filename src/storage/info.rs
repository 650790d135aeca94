//! The `info/*` views and `DELETE` of all storage.

use super::json::{self, float};
use super::{require_json, Ctx, Info, StorageConfig, StorageError};
use crate::http::Response;
use crate::timestamp;

/// GET on one of the user's info views.
pub fn view(ctx: &Ctx, which: Info) -> Result<Response, StorageError> {
    require_json(ctx)?;
    let mut db = ctx.storage.pool().get()?;
    // info/collections, the request every sync starts with, reads its rows once: the
    // storage timestamp is the newest of them (on a database server, one round trip
    // fewer, and the header and body come from the same snapshot).
    let collections = match which {
        Info::Collections => Some(db.collection_timestamps(ctx.uid)?),
        _ => None,
    };
    let storage_ts = match &collections {
        Some(rows) => rows.iter().map(|r| r.value).max().unwrap_or(0),
        None => db.storage_timestamp(ctx.uid)?,
    };
    // Info views are storage-level resources: their timestamp is the storage one.
    ctx.pre.check(storage_ts)?;
    let (body, records) = match which {
        Info::Collections => {
            let rows = collections.unwrap_or_default();
            let n = rows.len();
            let body = json::object(
                rows.iter()
                    .map(|r| (r.name.as_str(), timestamp::format(r.value))),
            );
            (body, n)
        }
        Info::Counts => {
            let rows = db.collection_counts(ctx.uid)?;
            let n = rows.len();
            (
                json::object(rows.iter().map(|r| (r.name.as_str(), r.value.to_string()))),
                n,
            )
        }
        Info::Usage => {
            let rows = db.collection_usage(ctx.uid)?;
            let n = rows.len();
            let kb = |v: i64| float(v as f64 / 1024.0);
            (
                json::object(rows.iter().map(|r| (r.name.as_str(), kb(r.value)))),
                n,
            )
        }
        Info::Quota => {
            let used = db.total_usage(ctx.uid)?;
            let quota = ctx
                .config()
                .quota
                .map(|q| float(q as f64 / 1024.0))
                .unwrap_or_else(|| "null".to_string());
            (format!("[{}, {}]", float(used as f64 / 1024.0), quota), 2)
        }
        Info::Configuration => return configuration(ctx.config()),
    };
    Ok(Response::json(200, body)
        .with_header("X-Last-Modified", timestamp::format(storage_ts))
        .with_header("X-Weave-Records", records.to_string()))
}

/// `info/configuration`: the limits clients must respect.
pub fn configuration(config: &StorageConfig) -> Result<Response, StorageError> {
    let l = &config.limits;
    let mut pairs = vec![
        ("max_request_bytes", l.max_request_bytes.to_string()),
        (
            "max_record_payload_bytes",
            l.max_record_payload_bytes.to_string(),
        ),
    ];
    if config.batch_enabled {
        pairs.extend([
            ("max_post_records", l.max_post_records.to_string()),
            ("max_post_bytes", l.max_post_bytes.to_string()),
            ("max_total_records", l.max_total_records.to_string()),
            ("max_total_bytes", l.max_total_bytes.to_string()),
        ]);
    }
    Ok(Response::json(200, json::object(pairs)))
}

/// `DELETE /1.5/{uid}` and `/1.5/{uid}/storage`.
pub fn delete_storage(ctx: &Ctx) -> Result<Response, StorageError> {
    require_json(ctx)?;
    ctx.storage.pool().get()?.delete_storage(ctx.uid, ctx.pre)?;
    Ok(Response::json(200, "{}").with_header("X-Last-Modified", timestamp::format(0)))
}
