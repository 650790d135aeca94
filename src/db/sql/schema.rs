//! The Python server's tables on MySQL/MariaDB and PostgreSQL, created exactly as
//! its SQLAlchemy DDL did (`python-sql.md`): MySQL storage tables `ENGINE=InnoDB
//! CHARSET=latin1` with MEDIUMTEXT payloads and `users` without table options;
//! PostgreSQL `SERIAL` keys. Our own state is in `syncserver_fcgi_*` tables.
//!
//! An existing database (the Python server's) is opened in place: only missing
//! tables (and our one index) are created and the columns older layouts lack are
//! added, as on SQLite.
//! All of it runs under a session-level engine lock (`pg_advisory_lock`,
//! `GET_LOCK`), so several processes starting at once on an empty database take
//! turns and all succeed (the Python server's workers crashed there).

use super::conn::{Conn, Engine};
use super::dialect;
use super::users::{raise, HIGH_WATER};
use crate::db::{DbError, DbResult};

/// One Python table: its name and DDL statements (table, then indexes).
struct Table {
    name: &'static str,
    mysql: &'static [&'static str],
    postgresql: &'static [&'static str],
}

const BSO_INDEXES: [&str; 2] = [
    "CREATE INDEX bso_ttl_idx ON bso (ttl)",
    "CREATE INDEX bso_usr_col_mod_idx ON bso (userid, collection, modified)",
];
const USERS_INDEX: &str = "CREATE INDEX lookup_idx ON users (email, service, created_at)";

/// Our index for `sort=index` pages, which without it sort the whole
/// collection (decision 1 of the spec allows extra indexes of ours; the README
/// says how to drop it). It holds the rows in the order of the listing,
/// `sortindex DESC NULLS LAST, id DESC` (MySQL reads it backwards; NULL is its
/// smallest value), so a page is read with LIMIT. `ttl` comes after the unique
/// id, so it changes no order, and the filter on it is checked on the index.
/// On MySQL the key is 83 bytes with the Python server's latin1 `id` (275
/// were the table utf8mb4), well within InnoDB's limits (767 bytes a column
/// in the old row formats, 3072 a key).
const SORTINDEX_INDEX: &str = "syncserver_fcgi_bso_sortindex_idx";

fn sortindex_ddl(engine: Engine) -> &'static str {
    match engine {
        Engine::Mysql => {
            "CREATE INDEX syncserver_fcgi_bso_sortindex_idx
             ON bso (userid, collection, sortindex, id, ttl)"
        }
        Engine::Postgresql => {
            "CREATE INDEX syncserver_fcgi_bso_sortindex_idx
             ON bso (userid, collection, sortindex DESC NULLS LAST, id DESC, ttl)"
        }
    }
}

/// In the Python server's order.
const PYTHON_TABLES: &[Table] = &[
    Table {
        name: "collections",
        mysql: &["CREATE TABLE collections (
	collectionid INTEGER NOT NULL AUTO_INCREMENT, 
	name VARCHAR(32) NOT NULL, 
	PRIMARY KEY (collectionid), 
	UNIQUE (name)
)ENGINE=InnoDB CHARSET=latin1"],
        postgresql: &["CREATE TABLE collections (
	collectionid SERIAL NOT NULL, 
	name VARCHAR(32) NOT NULL, 
	PRIMARY KEY (collectionid), 
	UNIQUE (name)
)"],
    },
    Table {
        name: "user_collections",
        mysql: &["CREATE TABLE user_collections (
	userid INTEGER NOT NULL, 
	collection INTEGER NOT NULL, 
	last_modified BIGINT NOT NULL, 
	PRIMARY KEY (userid, collection)
)ENGINE=InnoDB CHARSET=latin1"],
        postgresql: &["CREATE TABLE user_collections (
	userid INTEGER NOT NULL, 
	collection INTEGER NOT NULL, 
	last_modified BIGINT NOT NULL, 
	PRIMARY KEY (userid, collection)
)"],
    },
    Table {
        name: "batch_uploads",
        mysql: &["CREATE TABLE batch_uploads (
	batch BIGINT NOT NULL, 
	userid INTEGER NOT NULL, 
	collection INTEGER NOT NULL, 
	PRIMARY KEY (batch, userid)
)ENGINE=InnoDB CHARSET=latin1"],
        postgresql: &["CREATE TABLE batch_uploads (
	batch BIGINT NOT NULL, 
	userid INTEGER NOT NULL, 
	collection INTEGER NOT NULL, 
	PRIMARY KEY (batch, userid)
)"],
    },
    Table {
        name: "bso",
        mysql: &[
            "CREATE TABLE bso (
	userid INTEGER NOT NULL, 
	collection INTEGER NOT NULL, 
	id VARCHAR(64) NOT NULL, 
	sortindex INTEGER, 
	modified BIGINT NOT NULL, 
	payload MEDIUMTEXT NOT NULL, 
	payload_size INTEGER NOT NULL DEFAULT 0, 
	ttl INTEGER NOT NULL DEFAULT 2100000000, 
	PRIMARY KEY (userid, collection, id)
)ENGINE=InnoDB CHARSET=latin1",
            BSO_INDEXES[0],
            BSO_INDEXES[1],
        ],
        postgresql: &[
            "CREATE TABLE bso (
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
            BSO_INDEXES[0],
            BSO_INDEXES[1],
        ],
    },
    Table {
        name: "batch_upload_items",
        mysql: &["CREATE TABLE batch_upload_items (
	batch BIGINT NOT NULL, 
	userid INTEGER NOT NULL, 
	id VARCHAR(64) NOT NULL, 
	sortindex INTEGER, 
	payload MEDIUMTEXT, 
	payload_size INTEGER, 
	ttl_offset INTEGER, 
	PRIMARY KEY (batch, userid, id)
)ENGINE=InnoDB CHARSET=latin1"],
        postgresql: &["CREATE TABLE batch_upload_items (
	batch BIGINT NOT NULL, 
	userid INTEGER NOT NULL, 
	id VARCHAR(64) NOT NULL, 
	sortindex INTEGER, 
	payload TEXT, 
	payload_size INTEGER, 
	ttl_offset INTEGER, 
	PRIMARY KEY (batch, userid, id)
)"],
    },
    Table {
        name: "users",
        mysql: &[
            "CREATE TABLE users (
	uid INTEGER NOT NULL AUTO_INCREMENT, 
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
            USERS_INDEX,
        ],
        postgresql: &[
            "CREATE TABLE users (
	uid SERIAL NOT NULL, 
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
            USERS_INDEX,
        ],
    },
];

/// Our own tables (never the Python server's); `{opts}` is the MySQL table
/// options, empty on PostgreSQL.
const OUR_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS syncserver_fcgi_meta (
        name VARCHAR(255) NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    ){opts}",
    // uids whose account an administrator removed; `purge` deletes their data.
    "CREATE TABLE IF NOT EXISTS syncserver_fcgi_deleted_uids (
        uid BIGINT NOT NULL PRIMARY KEY,
        deleted_at BIGINT NOT NULL
    ){opts}",
    // The same uids for good: their tokens are refused.
    "CREATE TABLE IF NOT EXISTS syncserver_fcgi_revoked_uids (
        uid BIGINT NOT NULL PRIMARY KEY,
        revoked_at BIGINT NOT NULL
    ){opts}",
];

/// MySQL only: one row per lock key (uids, and hashes of emails), locked by the
/// write transactions of that user (PostgreSQL uses advisory locks instead).
const MYSQL_LOCKS: &str = "CREATE TABLE IF NOT EXISTS syncserver_fcgi_locks (
        k BIGINT NOT NULL PRIMARY KEY
    ) ENGINE=InnoDB";

fn exists(c: &mut dyn Conn, table: &str) -> DbResult<bool> {
    Ok(
        c.query_row(dialect::table_exists(c.engine()), &[table.into()])?
            .is_some(),
    )
}

fn has_column(c: &mut dyn Conn, table: &str, column: &str) -> DbResult<bool> {
    Ok(c.query_row(
        dialect::column_exists(c.engine()),
        &[table.into(), column.into()],
    )?
    .is_some())
}

/// Whether the Python server's storage tables are there (for operator commands
/// that must not create a database).
pub fn present(c: &mut dyn Conn) -> DbResult<bool> {
    Ok(exists(c, "bso")? && exists(c, "users")?)
}

/// The tables serving writes, each with a column to name in an UPDATE.
const WRITTEN: &[(&str, &str)] = &[
    ("collections", "name"),
    ("user_collections", "userid"),
    ("batch_uploads", "userid"),
    ("bso", "userid"),
    ("batch_upload_items", "userid"),
    ("users", "uid"),
    ("syncserver_fcgi_meta", "name"),
    ("syncserver_fcgi_deleted_uids", "uid"),
    ("syncserver_fcgi_revoked_uids", "uid"),
    ("syncserver_fcgi_locks", "k"),
];

/// What serving would be refused on this database, found without changing a row:
/// each table there is read, inserted into, updated and deleted from by statements
/// that match nothing; tables still to be created need the right to create one,
/// tried with a probe table that is dropped at once. Empty when all is well.
pub fn privilege_problems(c: &mut dyn Conn) -> DbResult<Vec<String>> {
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    for (table, column) in WRITTEN {
        if *table == "syncserver_fcgi_locks" && c.engine() != Engine::Mysql {
            continue;
        }
        if !exists(c, table)? {
            missing.push(*table);
            continue;
        }
        for (verb, sql) in [
            ("SELECT", format!("SELECT * FROM {table} WHERE 1 = 0")),
            (
                "INSERT",
                format!("INSERT INTO {table} SELECT * FROM {table} WHERE 1 = 0"),
            ),
            (
                "UPDATE",
                format!("UPDATE {table} SET {column} = {column} WHERE 1 = 0"),
            ),
            ("DELETE", format!("DELETE FROM {table} WHERE 1 = 0")),
        ] {
            if let Err(e) = c.batch(&sql) {
                problems.push(format!("{verb} on {table} is refused: {e}"));
            }
        }
    }
    if !missing.is_empty() {
        let probe = "syncserver_fcgi_probe";
        let created = c.batch(&format!("CREATE TABLE {probe} (x INTEGER)"));
        match created {
            Ok(()) => c.batch(&format!("DROP TABLE {probe}"))?,
            Err(e) => problems.push(format!(
                "the tables {} are missing and cannot be created here: {e}",
                missing.join(", ")
            )),
        }
    }
    Ok(problems)
}

/// Creates what is missing and upgrades old layouts, under the engine's schema
/// lock; returns what changed, for the log.
pub fn ensure(c: &mut dyn Conn) -> DbResult<Vec<String>> {
    let (lock, unlock) = dialect::schema_lock(c.engine());
    let got = c.query_row(lock, &[])?;
    let granted = match got {
        Some(r) => r.opt_int(0)? == Some(1),
        None => false,
    };
    if c.engine() == Engine::Mysql && !granted {
        return Err(DbError::Busy);
    }
    let out = ensure_locked(c);
    let released = c.query_row(unlock, &[]);
    let changes = out?;
    released?;
    Ok(changes)
}

fn ensure_locked(c: &mut dyn Conn) -> DbResult<Vec<String>> {
    let engine = c.engine();
    let mut changes = Vec::new();
    if exists(c, "batch_upload_items")? && !has_column(c, "batch_upload_items", "userid")? {
        // Pre-2017 layout; its rows are transient upload state, safe to drop.
        c.batch("DROP TABLE batch_upload_items")?;
        changes.push("recreated batch_upload_items with its userid column".into());
    }
    let mut created = Vec::new();
    for table in PYTHON_TABLES {
        if exists(c, table.name)? {
            continue;
        }
        let ddl = match engine {
            Engine::Mysql => table.mysql,
            Engine::Postgresql => table.postgresql,
        };
        for statement in ddl {
            c.batch(statement)?;
        }
        created.push(table.name);
    }
    if !created.is_empty() {
        changes.push(format!("created the tables {}", created.join(", ")));
    }
    let index_there = c
        .query_row(dialect::bso_index_exists(engine), &[SORTINDEX_INDEX.into()])?
        .is_some();
    if !index_there {
        // Only a speed-up: a database whose tables another role owns (PostgreSQL
        // lets only the owner add an index) is served without it.
        match c.batch(sortindex_ddl(engine)) {
            Ok(()) if !created.contains(&"bso") => changes.push(format!(
                "created index {SORTINDEX_INDEX} on the existing records (pages of sort=index)"
            )),
            Ok(()) => {}
            Err(e) => log::warn!(
                "could not create index {SORTINDEX_INDEX}, so pages of sort=index sort the \
                 whole collection: {e}"
            ),
        }
    }
    for column in ["keys_changed_at BIGINT", "node VARCHAR(255)"] {
        let name = column.split(' ').next().unwrap_or(column);
        if !has_column(c, "users", name)? {
            c.batch(&format!("ALTER TABLE users ADD COLUMN {column}"))?;
            changes.push(format!(
                "added column users.{name} (older syncserver database)"
            ));
        }
    }
    let opts = match engine {
        Engine::Mysql => " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        Engine::Postgresql => "",
    };
    for ddl in OUR_TABLES {
        c.batch(&ddl.replace("{opts}", opts))?;
    }
    if engine == Engine::Mysql {
        c.batch(MYSQL_LOCKS)?;
    }
    c.begin()?;
    match migrate_uids(c) {
        Ok(more) => {
            c.commit()?;
            changes.extend(more);
        }
        Err(e) => {
            let _ = c.rollback();
            return Err(e);
        }
    }
    Ok(changes)
}

/// The uid high-water mark and tombstones, as `db/sqlite/uids.rs::migrate`
/// (which explains the why): seeded above every uid in use or queued; earlier
/// deletions get tombstones; a tombstoned uid given to a new account by another
/// server is served again.
fn migrate_uids(c: &mut dyn Conn) -> DbResult<Vec<String>> {
    let mut changes = Vec::new();
    let row = c.query_row(
        "SELECT (SELECT COALESCE(MAX(uid), 0) FROM users),
                (SELECT COALESCE(MAX(uid), 0) FROM syncserver_fcgi_deleted_uids),
                (SELECT COALESCE(MAX(uid), 0) FROM syncserver_fcgi_revoked_uids),
                (SELECT COUNT(*) FROM syncserver_fcgi_meta WHERE name = ?)",
        &[HIGH_WATER.into()],
    )?;
    let row = row.ok_or_else(|| DbError::Backend("no row".into()))?;
    let seed = row.int(0)?.max(row.int(1)?).max(row.int(2)?);
    let had_mark = row.int(3)? > 0;
    raise(c, seed)?;
    if !had_mark && seed > 0 {
        changes.push(format!(
            "new uids start above {seed} and are never handed out twice"
        ));
    }
    let queued = c.execute(
        "INSERT INTO syncserver_fcgi_revoked_uids (uid, revoked_at)
         SELECT d.uid, d.deleted_at FROM syncserver_fcgi_deleted_uids d
         WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.uid = d.uid)
           AND NOT EXISTS (SELECT 1 FROM syncserver_fcgi_revoked_uids r WHERE r.uid = d.uid)",
        &[],
    )?;
    if queued > 0 {
        changes.push(format!(
            "{queued} uid(s) of accounts deleted earlier are now refused"
        ));
    }
    let reused: Vec<i64> = c
        .query(
            "SELECT uid FROM syncserver_fcgi_revoked_uids
             WHERE uid IN (SELECT uid FROM users) ORDER BY uid",
            &[],
        )?
        .iter()
        .map(|r| r.int(0))
        .collect::<DbResult<_>>()?;
    if !reused.is_empty() {
        c.execute(
            "DELETE FROM syncserver_fcgi_revoked_uids WHERE uid IN (SELECT uid FROM users)",
            &[],
        )?;
        changes.push(format!(
            "uid(s) {reused:?} of deleted accounts were given to new accounts by another server; \
             those accounts are served again"
        ));
    }
    Ok(changes)
}
