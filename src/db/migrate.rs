//! `migrate`: copies a live SQLite database into a MySQL/MariaDB or PostgreSQL one
//! with the Python server's tables, while the server keeps serving the SQLite file.
//!
//! The unit of work is a uid (its `users` row, `user_collections` and `bso` rows):
//! each is read from the source in one read transaction (WAL lets the server go on
//! writing) and written to the target in one transaction, read back there and
//! compared (row counts and a checksum over the ordered records) before that
//! transaction commits. The target records, per uid, a fingerprint of the source
//! state it copied (its `users` row, the count and newest timestamp of its
//! collections and records); a later run copies again only the uids whose
//! fingerprint changed and removes those the source no longer has. So a rerun
//! after no change copies nothing, an interrupted run resumes, and the
//! switch-over is "run while serving, stop the server, run again, switch".
//!
//! Shared rows (collection names, our meta values such as the generated secrets,
//! deleted and revoked uids) are small and brought in line on every run, after
//! the users, so every collection id a copied record uses is there. Pending batch
//! uploads are transient and not copied. Expired records not yet purged are
//! copied as they are (the source still holds them; `purge` removes them on
//! either side).
//!
//! The target side (its SQL) is `sql/migrate.rs`; this file reads the source.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ring::digest::{Context, SHA256};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};

use super::sql::migrate::{Claim, Target};
use super::sql::ServerParams;
use super::sqlite::{self, map_err, Location};
use super::DbError;
use crate::timestamp::now_ms;

/// One `users` row, every column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub uid: i64,
    pub service: String,
    pub email: String,
    pub generation: i64,
    pub client_state: String,
    pub created_at: i64,
    pub replaced_at: Option<i64>,
    pub keys_changed_at: Option<i64>,
    pub node: Option<String>,
}

/// One `bso` row without its userid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BsoRow {
    pub collection: i64,
    pub id: String,
    pub sortindex: Option<i64>,
    pub modified: i64,
    pub payload: String,
    pub payload_size: i64,
    pub ttl: i64,
}

/// What the target holds of one uid, read back.
#[derive(Debug)]
pub struct Held {
    /// Its `users` row.
    pub user: Option<UserRow>,
    /// Its `user_collections` rows, (collection, last_modified) by collection.
    pub collections: Vec<(i64, i64)>,
    /// Its records.
    pub records: Checksum,
}

/// The rows shared by all users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shared {
    /// `collections`: (id, name).
    pub collections: Vec<(i64, String)>,
    /// `syncserver_fcgi_meta`: (name, value).
    pub meta: Vec<(String, String)>,
    /// `syncserver_fcgi_deleted_uids`: (uid, deleted_at).
    pub deleted: Vec<(i64, i64)>,
    /// `syncserver_fcgi_revoked_uids`: (uid, revoked_at).
    pub revoked: Vec<(i64, i64)>,
}

/// A user's records, summed up whatever order they are read in: each row's
/// digest (collection, id, modified, sortindex, ttl, payload, payload_size) is
/// kept, and the rows are ordered by (collection, id bytes) in Rust before the
/// final digest, because the engines order text differently (MySQL's latin1
/// collation ignores case).
#[derive(Debug, Default)]
pub struct Checksum {
    rows: Vec<(i64, String, [u8; 16])>,
    bytes: i64,
}

/// What a [`Checksum`] comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records.
    pub records: i64,
    /// Their `payload_size` sum.
    pub bytes: i64,
    /// Hex digest over the ordered records.
    pub digest: String,
}

impl Checksum {
    /// Adds one record.
    pub fn add(&mut self, r: &BsoRow) {
        let mut ctx = Context::new(&SHA256);
        for n in [r.collection, r.modified, r.ttl, r.payload_size] {
            ctx.update(&n.to_be_bytes());
        }
        match r.sortindex {
            Some(s) => {
                ctx.update(&[1]);
                ctx.update(&s.to_be_bytes());
            }
            None => ctx.update(&[0]),
        }
        for text in [&r.id, &r.payload] {
            ctx.update(&(text.len() as u64).to_be_bytes());
            ctx.update(text.as_bytes());
        }
        let mut short = [0u8; 16];
        short.copy_from_slice(&ctx.finish().as_ref()[..16]);
        self.rows.push((r.collection, r.id.clone(), short));
        self.bytes += r.payload_size;
    }

    /// The count, bytes and digest.
    pub fn finish(mut self) -> Summary {
        self.rows
            .sort_unstable_by(|a, b| (a.0, a.1.as_bytes()).cmp(&(b.0, b.1.as_bytes())));
        let mut ctx = Context::new(&SHA256);
        for (_, _, row) in &self.rows {
            ctx.update(row);
        }
        Summary {
            records: self.rows.len() as i64,
            bytes: self.bytes,
            digest: hex(&ctx.finish().as_ref()[..16]),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a uid's source state is, in short: a change to its `users` row, its
/// collections or its records changes it (every write moves a collection's
/// timestamp or the record count).
fn fingerprint(
    user: Option<&UserRow>,
    collections: (i64, Option<i64>),
    records: (i64, Option<i64>),
) -> String {
    let text = format!("{user:?}|{collections:?}|{records:?}");
    hex(&ring::digest::digest(&SHA256, text.as_bytes()).as_ref()[..16])
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// An earlier run from this source had written the target.
    pub resumed: bool,
    /// uids copied (again) by this run, and their records and bytes.
    pub users_copied: usize,
    pub records_copied: i64,
    pub bytes_copied: i64,
    /// uids whose source state is what an earlier run copied.
    pub users_unchanged: usize,
    /// uids removed from the target because the source no longer has them.
    pub users_removed: usize,
    /// Shared rows (collection names, meta values, deleted/revoked uids) changed.
    pub shared_changes: usize,
    /// The target's totals after the run: uids, user collections, records, bytes.
    pub users: i64,
    pub collections: i64,
    pub records: i64,
    pub bytes: i64,
    /// Not copied: pending batch uploads and their items.
    pub pending_batches: i64,
    pub pending_batch_items: i64,
    /// Copied although expired (not purged yet).
    pub expired_records: i64,
    /// How long the run took.
    pub elapsed: Duration,
}

/// Why a migration stopped. Users copied before the failure stay copied: a
/// rerun resumes.
#[derive(Debug)]
pub enum MigrateError {
    /// There is no database file at the source path.
    SourceMissing(PathBuf),
    /// The source could not be opened or read.
    Source { path: PathBuf, cause: DbError },
    /// The target could not be reached, prepared or written.
    Target { place: String, cause: DbError },
    /// Copying one uid failed (its target rows are as before).
    User {
        uid: i64,
        place: String,
        cause: DbError,
    },
    /// What the target holds of a uid after copying differs from the source.
    Mismatch { uid: i64, what: String },
    /// The target holds data not written by a migration from this source.
    Foreign { place: String, found: String },
    /// Another `migrate` is working on the target.
    Busy { place: String },
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrateError::SourceMissing(p) => write!(
                f,
                "there is no database at {} (check sqluri in the configuration)",
                p.display()
            ),
            MigrateError::Source { path, cause } => {
                write!(f, "cannot read the source {}: {cause}", path.display())
            }
            MigrateError::Target { place, cause } => {
                write!(f, "cannot write the target {place}: {cause}")
            }
            MigrateError::User { uid, place, cause } => write!(
                f,
                "copying uid {uid} into {place} failed: {cause} (nothing of uid {uid} was \
                 written; users copied before stay copied, a rerun resumes)"
            ),
            MigrateError::Mismatch { uid, what } => write!(
                f,
                "verification failed for uid {uid}: {what} (its copy was rolled back)"
            ),
            MigrateError::Foreign { place, found } => write!(
                f,
                "refusing to write {place}: {found}, not written by a migration from this \
                 database; migrate only into an empty database"
            ),
            MigrateError::Busy { place } => {
                write!(
                    f,
                    "another migrate is running on {place}; wait for it to finish"
                )
            }
        }
    }
}

impl std::error::Error for MigrateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MigrateError::Source { cause, .. }
            | MigrateError::Target { cause, .. }
            | MigrateError::User { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

/// Copies the SQLite database at `source` into `target` (see the module
/// documentation); `progress` hears a line now and then on a long run.
pub fn migrate(
    source: &Path,
    target: &ServerParams,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, MigrateError> {
    let started = Instant::now();
    if !source.is_file() {
        return Err(MigrateError::SourceMissing(source.to_path_buf()));
    }
    let src_err = |cause| MigrateError::Source {
        path: source.to_path_buf(),
        cause,
    };
    let place = target.place();
    let dst_err = |cause| MigrateError::Target {
        place: place.clone(),
        cause,
    };
    // As `serve` would: a Python-made file gets our tables and its newer columns.
    let (mut src, _) = sqlite::prepare(&Location::File(source.to_path_buf())).map_err(src_err)?;
    let identity = std::fs::canonicalize(source)
        .unwrap_or_else(|_| source.to_path_buf())
        .display()
        .to_string();

    let mut dst = Target::connect(target).map_err(dst_err)?;
    let resumed = match dst.claim(&identity).map_err(dst_err)? {
        Claim::Fresh => false,
        Claim::Resumed => true,
        Claim::Foreign(found) => return Err(MigrateError::Foreign { place, found }),
        Claim::Busy => return Err(MigrateError::Busy { place }),
    };
    let done = dst.progress().map_err(dst_err)?;
    let (states, facts) = scan(&mut src).map_err(|e| src_err(map_err(e)))?;

    let mut report = Report {
        resumed,
        users_copied: 0,
        records_copied: 0,
        bytes_copied: 0,
        users_unchanged: 0,
        users_removed: 0,
        shared_changes: 0,
        users: 0,
        collections: 0,
        records: 0,
        bytes: 0,
        pending_batches: facts.batches,
        pending_batch_items: facts.batch_items,
        expired_records: facts.expired,
        elapsed: Duration::ZERO,
    };
    let mut last_note = Instant::now();
    let total = states.len();
    for (n, (uid, state)) in states.iter().enumerate() {
        if done.get(uid) == Some(state) {
            report.users_unchanged += 1;
            continue;
        }
        let copied = copy_user(&mut src, &mut dst, *uid, &place)?;
        report.users_copied += 1;
        report.records_copied += copied.records;
        report.bytes_copied += copied.bytes;
        if last_note.elapsed() > Duration::from_secs(5) {
            progress(&format!("{} of {total} uids looked at", n + 1));
            last_note = Instant::now();
        }
    }
    let mut gone: Vec<i64> = done
        .keys()
        .filter(|uid| !states.contains_key(uid))
        .copied()
        .collect();
    gone.sort_unstable();
    for uid in gone {
        dst.remove_user(uid).map_err(|cause| MigrateError::User {
            uid,
            place: place.clone(),
            cause,
        })?;
        report.users_removed += 1;
    }
    let shared = read_shared(&mut src).map_err(|e| src_err(map_err(e)))?;
    report.shared_changes = dst.sync_shared(&shared).map_err(dst_err)?;
    dst.finish().map_err(dst_err)?;
    (
        report.users,
        report.collections,
        report.records,
        report.bytes,
    ) = dst.totals().map_err(dst_err)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Facts about the source that the report mentions.
struct Facts {
    batches: i64,
    batch_items: i64,
    expired: i64,
}

/// Every uid of the source (with a `users` row, collections or records) and its
/// fingerprint, in one read transaction.
fn scan(conn: &mut Connection) -> rusqlite::Result<(BTreeMap<i64, String>, Facts)> {
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

const USER_SELECT: &str = "SELECT uid, service, email, generation, client_state, created_at,
                                  replaced_at, keys_changed_at, node";

fn user_row(r: &rusqlite::Row) -> rusqlite::Result<UserRow> {
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
fn text(r: &rusqlite::Row, i: usize) -> rusqlite::Result<String> {
    match r.get_ref(i)? {
        ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8(b.to_vec()).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
        }),
        _ => r.get(i),
    }
}

/// What one uid's copy came to.
struct Copied {
    records: i64,
    bytes: i64,
}

/// Copies one uid: read in one source read transaction, written, read back and
/// compared in one target transaction.
fn copy_user(
    src: &mut Connection,
    dst: &mut Target,
    uid: i64,
    place: &str,
) -> Result<Copied, MigrateError> {
    let path = src.path().map(PathBuf::from).unwrap_or_default();
    let src_err = |e: rusqlite::Error| MigrateError::Source {
        path: path.clone(),
        cause: map_err(e),
    };
    let tx = src.transaction().map_err(src_err)?;
    let user = tx
        .query_row(
            &format!("{USER_SELECT} FROM users WHERE uid = ?1"),
            [uid],
            user_row,
        )
        .optional()
        .map_err(src_err)?;
    let collections: Vec<(i64, i64)> = {
        let mut st = tx
            .prepare(
                "SELECT collection, last_modified FROM user_collections
                 WHERE userid = ?1 ORDER BY collection",
            )
            .map_err(src_err)?;
        let rows = st
            .query_map([uid], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(src_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(src_err)?
    };
    let records: (i64, Option<i64>) = tx
        .query_row(
            "SELECT COUNT(*), MAX(modified) FROM bso WHERE userid = ?1",
            [uid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(src_err)?;
    let state = fingerprint(
        user.as_ref(),
        (
            collections.len() as i64,
            collections.iter().map(|c| c.1).max(),
        ),
        records,
    );

    let user_err = |cause| MigrateError::User {
        uid,
        place: place.to_string(),
        cause,
    };
    dst.begin_user(uid).map_err(user_err)?;
    let mut sum = Checksum::default();
    let written = (|| {
        if let Some(u) = &user {
            dst.insert_user(u).map_err(user_err)?;
        }
        dst.insert_collections(uid, &collections)
            .map_err(user_err)?;
        let mut st = tx
            .prepare(
                "SELECT collection, id, sortindex, modified, payload, payload_size, ttl
                 FROM bso WHERE userid = ?1",
            )
            .map_err(src_err)?;
        let mut rows = st.query(params![uid]).map_err(src_err)?;
        while let Some(r) = rows.next().map_err(src_err)? {
            let row = (|| {
                Ok(BsoRow {
                    collection: r.get(0)?,
                    id: text(r, 1)?,
                    sortindex: r.get(2)?,
                    modified: r.get(3)?,
                    payload: text(r, 4)?,
                    payload_size: r.get(5)?,
                    ttl: r.get(6)?,
                })
            })()
            .map_err(src_err)?;
            sum.add(&row);
            dst.push_bso(uid, row).map_err(user_err)?;
        }
        let Held {
            user: user_back,
            collections: collections_back,
            records: sum_back,
        } = dst.read_back(uid).map_err(user_err)?;
        let (want, got) = (std::mem::take(&mut sum).finish(), sum_back.finish());
        let mismatch = if user_back != user {
            Some(format!("users row {user_back:?} instead of {user:?}"))
        } else if collections_back != collections {
            Some(format!(
                "{} user collection row(s) in the target, {} in the source",
                collections_back.len(),
                collections.len()
            ))
        } else if got.records != want.records {
            Some(format!(
                "{} record(s) in the target, {} in the source",
                got.records, want.records
            ))
        } else if got != want {
            Some("the records' checksums differ".to_string())
        } else {
            None
        };
        if let Some(what) = mismatch {
            return Err(MigrateError::Mismatch { uid, what });
        }
        dst.commit_user(
            uid,
            &state,
            want.records,
            want.bytes,
            &want.digest,
            now_ms(),
        )
        .map_err(user_err)?;
        Ok(Copied {
            records: want.records,
            bytes: want.bytes,
        })
    })();
    if written.is_err() {
        dst.rollback();
    }
    written
}

/// The shared rows, in one read transaction.
fn read_shared(conn: &mut Connection) -> rusqlite::Result<Shared> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(collection: i64, id: &str, payload: &str) -> BsoRow {
        BsoRow {
            collection,
            id: id.into(),
            sortindex: None,
            modified: 1000,
            payload: payload.into(),
            payload_size: payload.len() as i64,
            ttl: 2_100_000_000,
        }
    }

    #[test]
    fn checksum_ignores_read_order_not_content() {
        let rows = [row(1, "b", "x"), row(1, "a", "y"), row(2, "a", "zz")];
        let mut one = Checksum::default();
        let mut two = Checksum::default();
        for r in &rows {
            one.add(r);
        }
        for r in rows.iter().rev() {
            two.add(r);
        }
        let (one, two) = (one.finish(), two.finish());
        assert_eq!(one, two);
        assert_eq!((one.records, one.bytes), (3, 4));
        for changed in [
            BsoRow {
                sortindex: Some(0),
                ..row(1, "a", "y")
            },
            BsoRow {
                ttl: 5,
                ..row(1, "a", "y")
            },
            BsoRow {
                modified: 1010,
                ..row(1, "a", "y")
            },
            row(1, "a", "Y"),
            row(3, "a", "y"),
        ] {
            let mut c = Checksum::default();
            for r in [&rows[0], &changed, &rows[2]] {
                c.add(r);
            }
            assert_ne!(c.finish().digest, one.digest, "{changed:?}");
        }
    }

    #[test]
    fn fingerprint_sees_every_kind_of_change() {
        let user = UserRow {
            uid: 1,
            service: "sync-1.5".into(),
            email: "a@b".into(),
            generation: 1,
            client_state: "".into(),
            created_at: 5,
            replaced_at: None,
            keys_changed_at: None,
            node: None,
        };
        let base = fingerprint(Some(&user), (2, Some(10)), (5, Some(10)));
        assert_eq!(base, fingerprint(Some(&user), (2, Some(10)), (5, Some(10))));
        let replaced = UserRow {
            replaced_at: Some(7),
            ..user.clone()
        };
        for other in [
            fingerprint(None, (2, Some(10)), (5, Some(10))),
            fingerprint(Some(&replaced), (2, Some(10)), (5, Some(10))),
            fingerprint(Some(&user), (1, Some(10)), (5, Some(10))),
            fingerprint(Some(&user), (2, Some(20)), (5, Some(10))),
            fingerprint(Some(&user), (2, Some(10)), (4, Some(10))),
        ] {
            assert_ne!(other, base);
        }
    }
}
