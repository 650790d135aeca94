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
//! The target side (its SQL) is `sql/migrate.rs`; `source.rs` reads the SQLite file,
//! `checksum.rs` sums up what each side holds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use super::sql::migrate::{Claim, Target};
use super::sql::ServerParams;
use super::sqlite::{self, map_err, Location};
use super::DbError;
use crate::timestamp::now_ms;

mod checksum;
mod source;

use checksum::fingerprint;
pub use checksum::{Checksum, Summary};
use source::{read_shared, scan, text, user_row, USER_SELECT};

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
