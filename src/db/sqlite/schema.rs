//! The Python server's schema, created or brought up to date at start-up.
//!
//! Tables and columns are exactly those of the Python `syncserver` (SQLAlchemy's
//! DDL), so a database can move between the two servers. Our own state lives in
//! tables of our own (`syncserver_fcgi_*`).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// DDL as the Python server creates it (spec section 8.1), in its order.
const TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS collections (
        collectionid INTEGER NOT NULL,
        name VARCHAR(32) NOT NULL,
        PRIMARY KEY (collectionid),
        UNIQUE (name)
    )",
    "CREATE TABLE IF NOT EXISTS user_collections (
        userid INTEGER NOT NULL,
        collection INTEGER NOT NULL,
        last_modified BIGINT NOT NULL,
        PRIMARY KEY (userid, collection)
    )",
    "CREATE TABLE IF NOT EXISTS batch_uploads (
        batch BIGINT NOT NULL,
        userid INTEGER NOT NULL,
        collection INTEGER NOT NULL,
        PRIMARY KEY (batch, userid)
    )",
    "CREATE TABLE IF NOT EXISTS bso (
        userid INTEGER NOT NULL,
        collection INTEGER NOT NULL,
        id VARCHAR(64) NOT NULL,
        sortindex INTEGER,
        modified BIGINT NOT NULL,
        payload TEXT NOT NULL,
        payload_size INTEGER DEFAULT 0 NOT NULL,
        ttl INTEGER DEFAULT 2100000000 NOT NULL,
        PRIMARY KEY (userid, collection, id)
    )",
    "CREATE INDEX IF NOT EXISTS bso_ttl_idx ON bso (ttl)",
    "CREATE INDEX IF NOT EXISTS bso_usr_col_mod_idx ON bso (userid, collection, modified)",
    BATCH_ITEMS,
    "CREATE TABLE IF NOT EXISTS users (
        uid INTEGER NOT NULL,
        service VARCHAR(32) NOT NULL,
        email VARCHAR(255) NOT NULL,
        generation BIGINT NOT NULL,
        client_state VARCHAR(32) NOT NULL,
        created_at BIGINT NOT NULL,
        replaced_at BIGINT,
        keys_changed_at BIGINT,
        node VARCHAR(255),
        PRIMARY KEY (uid)
    )",
    "CREATE INDEX IF NOT EXISTS lookup_idx ON users (email, service, created_at)",
    "CREATE TABLE IF NOT EXISTS syncserver_fcgi_meta (
        name TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    )",
    // uids whose account an administrator removed; `purge` deletes their data.
    "CREATE TABLE IF NOT EXISTS syncserver_fcgi_deleted_uids (
        uid INTEGER NOT NULL PRIMARY KEY,
        deleted_at BIGINT NOT NULL
    )",
    // The same uids for good: their tokens are refused (see `uids`). Unlike the
    // purge queue above, rows stay after the data is gone.
    "CREATE TABLE IF NOT EXISTS syncserver_fcgi_revoked_uids (
        uid INTEGER NOT NULL PRIMARY KEY,
        revoked_at BIGINT NOT NULL
    )",
];

const BATCH_ITEMS: &str = "CREATE TABLE IF NOT EXISTS batch_upload_items (
        batch BIGINT NOT NULL,
        userid INTEGER NOT NULL,
        id VARCHAR(64) NOT NULL,
        sortindex INTEGER,
        payload TEXT,
        payload_size INTEGER,
        ttl_offset INTEGER,
        PRIMARY KEY (batch, userid, id)
    )";

/// Our index for `sort=index` pages, which without it sort the whole
/// collection (decision 1 of the spec allows extra indexes of ours; the README
/// says how to drop it). Read backwards it holds the page order by sortindex
/// (NULLs last), equal sortindexes by ttl and then by rowid, the listing's
/// tie-break (reads.rs puts such runs in rowid order). With `ttl` in it, the
/// rows an offset skips are passed over without reading the records. The
/// Python server ignores it; SQLite keeps it up to date under either server.
const SORTINDEX_INDEX: &str = "syncserver_fcgi_bso_sortindex_idx";
const SORTINDEX_DDL: &str = "CREATE INDEX IF NOT EXISTS syncserver_fcgi_bso_sortindex_idx
    ON bso (userid, collection, sortindex, ttl)";

/// What start-up changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migration {
    /// Human-readable descriptions of each change.
    pub changes: Vec<String>,
}

/// Creates missing tables and adds the columns older databases lack, in one
/// write transaction, so that several processes starting on a brand-new file
/// do not race (the Python server crashed there).
pub fn ensure(conn: &mut Connection) -> rusqlite::Result<Migration> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut migration = Migration::default();
    let had_batch_items = table_exists(&tx, "batch_upload_items")?;
    let had_bso = table_exists(&tx, "bso")?;
    if had_batch_items && !column_exists(&tx, "batch_upload_items", "userid")? {
        // Pre-2017 layout; its rows are transient upload state, safe to drop.
        tx.execute_batch("DROP TABLE batch_upload_items")?;
        migration
            .changes
            .push("recreated batch_upload_items with its userid column".into());
    }
    for ddl in TABLES {
        tx.execute_batch(ddl)?;
    }
    for column in ["keys_changed_at BIGINT", "node VARCHAR(255)"] {
        let name = column.split(' ').next().unwrap_or(column);
        if !column_exists(&tx, "users", name)? {
            tx.execute_batch(&format!("ALTER TABLE users ADD COLUMN {column}"))?;
            migration.changes.push(format!(
                "added column users.{name} (older syncserver database)"
            ));
        }
    }
    if had_bso && !index_exists(&tx, SORTINDEX_INDEX)? {
        migration.changes.push(format!(
            "created index {SORTINDEX_INDEX} on the existing records (pages of sort=index)"
        ));
    }
    tx.execute_batch(SORTINDEX_DDL)?;
    migration.changes.extend(super::uids::migrate(&tx)?);
    tx.commit()?;
    Ok(migration)
}

fn table_exists(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
}

fn index_exists(conn: &Connection, index: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1",
        [index],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
}

fn column_exists(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let name: String = row.get(1)?;
        if name == column {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads a value of our own meta table.
pub fn meta_get(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT value FROM syncserver_fcgi_meta WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .optional()
}

/// Stores `value` under `name` unless a value is there already, and returns the
/// stored one: every process ends up with the same value, whoever was first.
pub fn meta_get_or_insert(conn: &Connection, name: &str, value: &str) -> rusqlite::Result<String> {
    conn.execute(
        "INSERT OR IGNORE INTO syncserver_fcgi_meta (name, value) VALUES (?1, ?2)",
        [name, value],
    )?;
    conn.query_row(
        "SELECT value FROM syncserver_fcgi_meta WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(ensure(&mut conn).unwrap().changes.is_empty());
        assert!(ensure(&mut conn).unwrap().changes.is_empty());
        assert!(column_exists(&conn, "users", "keys_changed_at").unwrap());
    }

    #[test]
    fn upgrades_old_layouts() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE users (uid INTEGER NOT NULL, service VARCHAR(32) NOT NULL,
               email VARCHAR(255) NOT NULL, generation BIGINT NOT NULL,
               client_state VARCHAR(32) NOT NULL, created_at BIGINT NOT NULL,
               replaced_at BIGINT, PRIMARY KEY (uid));
             INSERT INTO users VALUES (1, 'sync-1.5', 'a@b', 5, '', 100, NULL);
             CREATE TABLE batch_upload_items (batch BIGINT NOT NULL, id VARCHAR(64) NOT NULL,
               sortindex INTEGER, payload TEXT, payload_size INTEGER, ttl_offset INTEGER,
               PRIMARY KEY (batch, id));",
        )
        .unwrap();
        let m = ensure(&mut conn).unwrap();
        // Two columns, the batch table, and the uid high-water mark.
        assert_eq!(m.changes.len(), 4, "{m:?}");
        assert!(column_exists(&conn, "users", "node").unwrap());
        assert!(column_exists(&conn, "batch_upload_items", "userid").unwrap());
        let email: String = conn
            .query_row("SELECT email FROM users WHERE uid = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(email, "a@b");
    }

    #[test]
    fn adds_our_index_to_an_existing_bso_table() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(TABLES[3]).unwrap();
        let m = ensure(&mut conn).unwrap();
        assert!(
            m.changes.iter().any(|c| c.contains(SORTINDEX_INDEX)),
            "{m:?}"
        );
        assert!(index_exists(&conn, SORTINDEX_INDEX).unwrap());
        assert!(ensure(&mut conn).unwrap().changes.is_empty());
    }

    #[test]
    fn meta_first_writer_wins() {
        let mut conn = Connection::open_in_memory().unwrap();
        ensure(&mut conn).unwrap();
        assert_eq!(meta_get(&conn, "secret").unwrap(), None);
        assert_eq!(meta_get_or_insert(&conn, "secret", "one").unwrap(), "one");
        assert_eq!(meta_get_or_insert(&conn, "secret", "two").unwrap(), "one");
    }
}
