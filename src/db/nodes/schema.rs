//! The tokenserver tables of Python's `sqlnode` backend, which Mozilla's current
//! tokenserver still uses (spec `python-syncserver.md` §8.4): same names, columns
//! in the same order and the same indexes, so the tools of either can read a
//! database we made. Created when missing, seeded with the `sync-1.5` service.

use super::conn::{Kind, NodeConn};
use crate::db::sql::{dialect, Engine};
use crate::db::{DbError, DbResult};

/// The service every row of ours belongs to, and the endpoint pattern Mozilla
/// seeds for it (`{node}/1.5/{uid}`: the layout every node of ours serves too).
pub const SERVICE: &str = "sync-1.5";
pub const PATTERN: &str = "{node}/1.5/{uid}";

const SQLITE: &str = "
CREATE TABLE IF NOT EXISTS services (
    id INTEGER NOT NULL PRIMARY KEY,
    service VARCHAR(30) UNIQUE,
    pattern VARCHAR(128)
);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER NOT NULL PRIMARY KEY,
    service INTEGER NOT NULL,
    node VARCHAR(64) NOT NULL,
    available INTEGER NOT NULL,
    current_load INTEGER NOT NULL,
    capacity INTEGER NOT NULL,
    downed INTEGER NOT NULL,
    backoff INTEGER NOT NULL,
    UNIQUE (service, node)
);
CREATE TABLE IF NOT EXISTS users (
    uid INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    service INTEGER NOT NULL,
    email VARCHAR(255) NOT NULL,
    generation BIGINT NOT NULL,
    client_state VARCHAR(32) NOT NULL,
    created_at BIGINT NOT NULL,
    replaced_at BIGINT,
    nodeid BIGINT NOT NULL,
    keys_changed_at BIGINT
);
CREATE INDEX IF NOT EXISTS lookup_idx ON users (email, service, created_at);
CREATE INDEX IF NOT EXISTS replaced_at_idx ON users (service, replaced_at);
CREATE INDEX IF NOT EXISTS node_idx ON users (nodeid);
CREATE TABLE IF NOT EXISTS dynamic_settings (
    setting VARCHAR(100) NOT NULL PRIMARY KEY,
    value VARCHAR(255) NOT NULL,
    description VARCHAR(255)
);
";

const MYSQL: &str = "
CREATE TABLE IF NOT EXISTS services (
    id INT NOT NULL AUTO_INCREMENT,
    service VARCHAR(30) DEFAULT NULL,
    pattern VARCHAR(128) DEFAULT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY service (service)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS nodes (
    id BIGINT NOT NULL AUTO_INCREMENT,
    service INT NOT NULL,
    node VARCHAR(64) NOT NULL,
    available INT NOT NULL,
    current_load INT NOT NULL,
    capacity INT NOT NULL,
    downed INT NOT NULL,
    backoff INT NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY unique_idx (service, node)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS users (
    uid BIGINT NOT NULL AUTO_INCREMENT,
    service INT NOT NULL,
    email VARCHAR(255) NOT NULL,
    generation BIGINT NOT NULL,
    client_state VARCHAR(32) NOT NULL,
    created_at BIGINT NOT NULL,
    replaced_at BIGINT DEFAULT NULL,
    nodeid BIGINT NOT NULL,
    keys_changed_at BIGINT DEFAULT NULL,
    PRIMARY KEY (uid),
    KEY lookup_idx (email, service, created_at),
    KEY replaced_at_idx (service, replaced_at),
    KEY node_idx (nodeid)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS dynamic_settings (
    setting VARCHAR(100) NOT NULL,
    value VARCHAR(255) NOT NULL,
    description VARCHAR(255) DEFAULT NULL,
    PRIMARY KEY (setting)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS syncserver_fcgi_locks (
    k BIGINT NOT NULL PRIMARY KEY
) ENGINE=InnoDB;
";

const POSTGRESQL: &str = "
CREATE TABLE IF NOT EXISTS services (
    id SERIAL PRIMARY KEY,
    service VARCHAR(30) UNIQUE,
    pattern VARCHAR(128)
);
CREATE TABLE IF NOT EXISTS nodes (
    id BIGSERIAL PRIMARY KEY,
    service INTEGER NOT NULL,
    node VARCHAR(64) NOT NULL,
    available INTEGER NOT NULL,
    current_load INTEGER NOT NULL,
    capacity INTEGER NOT NULL,
    downed INTEGER NOT NULL,
    backoff INTEGER NOT NULL,
    UNIQUE (service, node)
);
CREATE TABLE IF NOT EXISTS users (
    uid BIGSERIAL PRIMARY KEY,
    service INTEGER NOT NULL,
    email VARCHAR(255) NOT NULL,
    generation BIGINT NOT NULL,
    client_state VARCHAR(32) NOT NULL,
    created_at BIGINT NOT NULL,
    replaced_at BIGINT,
    nodeid BIGINT NOT NULL,
    keys_changed_at BIGINT
);
CREATE INDEX IF NOT EXISTS lookup_idx ON users (email, service, created_at);
CREATE INDEX IF NOT EXISTS replaced_at_idx ON users (service, replaced_at);
CREATE INDEX IF NOT EXISTS node_idx ON users (nodeid);
CREATE TABLE IF NOT EXISTS dynamic_settings (
    setting VARCHAR(100) PRIMARY KEY,
    value VARCHAR(255) NOT NULL,
    description VARCHAR(255)
);
";

/// Whether `table` has `column` (a `users` table of the single-box layout has
/// `node`, the tokenserver's has `nodeid`).
fn has_column(c: &mut dyn NodeConn, table: &str, column: &str) -> DbResult<bool> {
    match c.kind() {
        Kind::Sqlite => {
            let rows = c.query(&format!("PRAGMA table_info({table})"), &[])?;
            Ok(rows
                .iter()
                .any(|r| r.text(1).is_ok_and(|name| name == column)))
        }
        Kind::Server(engine) => Ok(!c
            .query(
                dialect::column_exists(engine),
                &[table.into(), column.into()],
            )?
            .is_empty()),
    }
}

/// Creates the tables when missing and returns the `sync-1.5` service's id and
/// endpoint pattern. Refuses a database holding the single-box `users` table:
/// the two layouts share the name, and mixing them would lose accounts.
pub(super) fn ensure(c: &mut dyn NodeConn) -> DbResult<(i64, String)> {
    if has_column(c, "users", "node")? && !has_column(c, "users", "nodeid")? {
        return Err(DbError::Backend(
            "this database holds the single-box `users` table (the storage database of an all-in-one server); give the tokenserver a database of its own: `syncserver-fcgi migrate-to-nodes --to URI` fills one"
                .into(),
        ));
    }
    match c.kind() {
        Kind::Sqlite => {
            c.begin_write()?;
            let made = c.batch(SQLITE).and_then(|_| seed(c));
            match made {
                Ok(()) => c.commit()?,
                Err(e) => {
                    let _ = c.rollback();
                    return Err(e);
                }
            }
        }
        Kind::Server(engine) => {
            // DDL is not transactional on MySQL: processes starting together take turns.
            let (lock, unlock) = dialect::schema_lock(engine);
            c.batch(lock)?;
            let ddl = if engine == Engine::Mysql {
                MYSQL
            } else {
                POSTGRESQL
            };
            let made = c.batch(ddl).and_then(|_| seed(c));
            let _ = c.batch(unlock);
            made?;
        }
    }
    let row = c
        .query(
            "SELECT id, pattern FROM services WHERE service = ?",
            &[SERVICE.into()],
        )?
        .into_iter()
        .next()
        .ok_or_else(|| DbError::Backend("the sync-1.5 service row is missing".into()))?;
    let pattern = row.opt_text(1)?.unwrap_or_else(|| PATTERN.to_string());
    Ok((row.int(0)?, pattern))
}

fn seed(c: &mut dyn NodeConn) -> DbResult<()> {
    let known = c.query(
        "SELECT id FROM services WHERE service = ?",
        &[SERVICE.into()],
    )?;
    if known.is_empty() {
        c.execute(
            "INSERT INTO services (service, pattern) VALUES (?, ?)",
            &[SERVICE.into(), PATTERN.into()],
        )?;
    }
    Ok(())
}
