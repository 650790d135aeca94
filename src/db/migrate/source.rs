//! The source side of `migrate`: the SQLite file, read in read transactions (WAL
//! lets the server go on writing).

use std::collections::{BTreeMap, HashMap};

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use super::checksum::fingerprint;
use super::{Shared, UserRow};
use crate::timestamp::now_ms;

/// Facts about the source that the report mentions.
pub(super) struct Facts {
    pub batches: i64,
    pub batch_items: i64,
    pub expired: i64,
}

/// Every uid of the source (with a `users` row, collections or records) and its
/// fingerprint, in one read transaction.
pub(super) fn scan(conn: &mut Connection) -> rusqlite::Result<(BTreeMap<i64, String>, Facts)> {
    let tx = conn.transaction()?;
    let mut users: HashMap<i64, UserRow> = HashMap::new();
    {
        let mut st = tx.prepare(&format!("{USER_SELECT} FROM users"))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let u = user_row(r)?;
            users.insert(u.uid, u);
        }
    }
    let grouped = |sql: &str| -> rusqlite::Result<HashMap<i64, (i64, Option<i64>)>> {
        let mut st = tx.prepare(sql)?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
        rows.collect()
    };
    let collections = grouped(
        "SELECT userid, COUNT(*), MAX(last_modified) FROM user_collections GROUP BY userid",
    )?;
    let records = grouped("SELECT userid, COUNT(*), MAX(modified) FROM bso GROUP BY userid")?;
    let mut uids: Vec<i64> = users.keys().copied().collect();
    uids.extend(collections.keys());
    uids.extend(records.keys());
    let states = uids
        .into_iter()
        .map(|uid| {
            let state = fingerprint(
                users.get(&uid),
                collections.get(&uid).copied().unwrap_or((0, None)),
                records.get(&uid).copied().unwrap_or((0, None)),
            );
            (uid, state)
        })
        .collect();
    let count = |sql: &str| tx.query_row(sql, [], |r| r.get::<_, i64>(0));
    let facts = Facts {
        batches: count("SELECT COUNT(*) FROM batch_uploads")?,
        batch_items: count("SELECT COUNT(*) FROM batch_upload_items")?,
        expired: tx.query_row(
            "SELECT COUNT(*) FROM bso WHERE ttl <= ?1",
            [now_ms() / 1000],
            |r| r.get(0),
        )?,
    };
    Ok((states, facts))
}

pub(super) const USER_SELECT: &str =
    "SELECT uid, service, email, generation, client_state, created_at,
                                  replaced_at, keys_changed_at, node";

pub(super) fn user_row(r: &rusqlite::Row) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        uid: r.get(0)?,
        service: text(r, 1)?,
        email: text(r, 2)?,
        generation: r.get(3)?,
        client_state: text(r, 4)?,
        created_at: r.get(5)?,
        replaced_at: r.get(6)?,
        keys_changed_at: r.get(7)?,
        node: match r.get_ref(8)? {
            ValueRef::Null => None,
            _ => Some(text(r, 8)?),
        },
    })
}

/// A text column, also when SQLite holds it as a blob (Python 2 could store
/// bytes), as long as it is UTF-8.
pub(super) fn text(r: &rusqlite::Row, i: usize) -> rusqlite::Result<String> {
    match r.get_ref(i)? {
        ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8(b.to_vec()).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
        }),
        _ => r.get(i),
    }
}

/// The shared rows, in one read transaction.
pub(super) fn read_shared(conn: &mut Connection) -> rusqlite::Result<Shared> {
    let tx = conn.transaction()?;
    let pairs = |sql: &str| -> rusqlite::Result<Vec<(i64, i64)>> {
        let mut st = tx.prepare(sql)?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    };
    let deleted = pairs("SELECT uid, deleted_at FROM syncserver_fcgi_deleted_uids")?;
    let revoked = pairs("SELECT uid, revoked_at FROM syncserver_fcgi_revoked_uids")?;
    let mut collections = Vec::new();
    {
        let mut st =
            tx.prepare("SELECT collectionid, name FROM collections ORDER BY collectionid")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            collections.push((r.get(0)?, text(r, 1)?));
        }
    }
    let mut meta = Vec::new();
    {
        let mut st = tx.prepare("SELECT name, value FROM syncserver_fcgi_meta ORDER BY name")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            meta.push((text(r, 0)?, text(r, 1)?));
        }
    }
    Ok(Shared {
        collections,
        meta,
        deleted,
        revoked,
    })
}
