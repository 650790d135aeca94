//! `stats`: what the database holds.

use serde_json::json;

use super::{format_secs, open, table, AdminError};
use crate::config::Settings;

/// Prints the database-wide figures, as a table or JSON.
pub fn stats(settings: &Settings, as_json: bool) -> Result<String, AdminError> {
    let s = open(settings, false)?.stats()?;
    if as_json {
        return Ok(json!({
            "accounts": s.accounts,
            "user_rows": s.user_rows,
            "collections": s.collections,
            "records": s.records,
            "expired_records": s.expired_records,
            "bytes": s.bytes,
            "open_batches": s.batches,
            "database_bytes": s.database_bytes,
            "oldest_expired": s.oldest_expired,
        })
        .to_string());
    }
    let rows = vec![
        vec!["accounts".into(), s.accounts.to_string()],
        vec!["user rows (incl. replaced)".into(), s.user_rows.to_string()],
        vec!["collections".into(), s.collections.to_string()],
        vec!["records".into(), s.records.to_string()],
        vec![
            "expired records (purge removes them)".into(),
            s.expired_records.to_string(),
        ],
        vec!["payload bytes".into(), s.bytes.to_string()],
        vec!["open batches".into(), s.batches.to_string()],
        vec!["database size (bytes)".into(), s.database_bytes.to_string()],
        vec![
            "oldest expired record".into(),
            s.oldest_expired
                .map(format_secs)
                .unwrap_or_else(|| "-".into()),
        ],
    ];
    Ok(table::render(&["figure", "value"], &rows, &[1]))
}
