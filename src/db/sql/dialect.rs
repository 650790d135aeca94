//! The SQL that differs between MySQL/MariaDB and PostgreSQL.
//!
//! The storage logic writes each statement once, in a neutral form that is
//! PostgreSQL's with three additions; [`translate`] turns it into either engine's:
//!
//! - `?` is a parameter (`$n` on PostgreSQL); `?i` and `?t` are parameters whose
//!   type the statement alone does not fix (a select list, `? IS NULL`), cast to a
//!   64-bit integer or to text (`$n::BIGINT`, `CAST(? AS SIGNED)`, …); `?k` is a
//!   record id or other key text (ASCII), cast on MySQL to the latin1 of the
//!   Python server's tables so that comparing it with a key column keeps the index.
//! - `ON CONFLICT (k) DO UPDATE SET c = EXCLUDED.c` is MySQL's
//!   `ON DUPLICATE KEY UPDATE c = VALUES(c)`; `ON CONFLICT DO NOTHING` is
//!   `INSERT IGNORE`. (MySQL evaluates the assignments left to right with the
//!   values already assigned, so statements only assign from `EXCLUDED` or from
//!   the column itself.)
//! - `NULLS LAST` is dropped on MySQL, where NULL already sorts last in DESC order.
//!
//! Statements that cannot share a text (locks, DDL, sizes, chunked deletes) are
//! functions of [`Engine`] here.

use super::conn::Engine;

/// The engine's SQL for a neutral statement.
pub fn translate(engine: Engine, sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut n = 0;
    let mut chars = sql.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '?' {
            out.push(c);
            continue;
        }
        n += 1;
        let rest = &sql[at + 1..];
        let kind = match rest.as_bytes() {
            [k @ (b'i' | b't' | b'k'), next, ..] if !next.is_ascii_alphanumeric() => Some(*k),
            [k @ (b'i' | b't' | b'k')] => Some(*k),
            _ => None,
        };
        if kind.is_some() {
            chars.next();
        }
        match (engine, kind) {
            (Engine::Postgresql, None) => out.push_str(&format!("${n}")),
            (Engine::Postgresql, Some(b'i')) => out.push_str(&format!("${n}::BIGINT")),
            (Engine::Postgresql, Some(_)) => out.push_str(&format!("${n}::TEXT")),
            (Engine::Mysql, None) => out.push('?'),
            (Engine::Mysql, Some(b'i')) => out.push_str("CAST(? AS SIGNED)"),
            (Engine::Mysql, Some(b'k')) => out.push_str("CAST(? AS CHAR CHARACTER SET latin1)"),
            (Engine::Mysql, Some(_)) => out.push_str("CAST(? AS CHAR)"),
        }
    }
    if engine == Engine::Postgresql {
        return out;
    }
    let mut out = out.replace(" NULLS LAST", "");
    if let Some(at) = out.find("ON CONFLICT DO NOTHING") {
        out.replace_range(at..at + "ON CONFLICT DO NOTHING".len(), "");
        out = out.replacen("INSERT INTO", "INSERT IGNORE INTO", 1);
    }
    if let Some(at) = out.find("ON CONFLICT (") {
        let set = "DO UPDATE SET";
        if let Some(end) = out[at..].find(set) {
            out.replace_range(at..at + end + set.len(), "ON DUPLICATE KEY UPDATE");
        }
    }
    while let Some(at) = out.find("EXCLUDED.") {
        let name_start = at + "EXCLUDED.".len();
        let len = out[name_start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(out.len() - name_start);
        let name = out[name_start..name_start + len].to_string();
        out.replace_range(at..name_start + len, &format!("VALUES({name})"));
    }
    out
}

/// Takes the per-user (or per-email) write lock until the transaction ends:
/// PostgreSQL's transaction-scoped advisory lock; on MySQL the row of the key in
/// `syncserver_fcgi_locks`, locked by an upsert (created on first use). One
/// parameter: the key.
pub fn lock_key(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgresql => "SELECT pg_advisory_xact_lock(?)",
        Engine::Mysql => {
            "INSERT INTO syncserver_fcgi_locks (k) VALUES (?) ON DUPLICATE KEY UPDATE k = k"
        }
    }
}

/// A session-level lock around schema work, so that processes starting at once on
/// an empty database take turns (DDL is not transactional on MySQL).
pub fn schema_lock(engine: Engine) -> (&'static str, &'static str) {
    match engine {
        Engine::Postgresql => (
            "SELECT pg_advisory_lock(7306587263948211)",
            "SELECT pg_advisory_unlock(7306587263948211)",
        ),
        Engine::Mysql => (
            "SELECT GET_LOCK('syncserver_fcgi_schema', 120)",
            "SELECT RELEASE_LOCK('syncserver_fcgi_schema')",
        ),
    }
}

/// Deletes at most `?` (the last parameter) rows of `table` matching `cond`.
pub fn delete_limited(engine: Engine, table: &str, cond: &str) -> String {
    match engine {
        // PostgreSQL's DELETE has no LIMIT: pick the physical rows first.
        Engine::Postgresql => format!(
            "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE {cond} LIMIT ?)"
        ),
        Engine::Mysql => format!("DELETE FROM {table} WHERE {cond} LIMIT ?"),
    }
}

/// The size of the current database in bytes (one row, one column).
pub fn database_size(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgresql => "SELECT pg_database_size(current_database())",
        Engine::Mysql => {
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables
             WHERE table_schema = DATABASE()"
        }
    }
}

/// Whether a table exists in the current database/schema (one parameter: its name).
pub fn table_exists(engine: Engine) -> &'static str {
    match engine {
        // The catalog, not information_schema, which hides tables this user holds no
        // privilege on (then we would try to create them and fail on "already exists").
        Engine::Postgresql => {
            "SELECT 1 FROM pg_catalog.pg_tables
             WHERE schemaname = current_schema() AND tablename = ?t"
        }
        Engine::Mysql => {
            "SELECT 1 FROM information_schema.tables
             WHERE table_schema = DATABASE() AND table_name = ?"
        }
    }
}

/// Whether an index of `bso` exists (one parameter: its name).
pub fn bso_index_exists(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgresql => {
            "SELECT 1 FROM pg_catalog.pg_indexes
             WHERE schemaname = current_schema() AND tablename = 'bso' AND indexname = ?t"
        }
        Engine::Mysql => {
            "SELECT 1 FROM information_schema.statistics
             WHERE table_schema = DATABASE() AND table_name = 'bso' AND index_name = ?"
        }
    }
}

/// Whether a column exists (parameters: table, column).
pub fn column_exists(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgresql => {
            "SELECT 1 FROM pg_catalog.pg_attribute a
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
             WHERE c.relnamespace = current_schema()::regnamespace
               AND c.relname = ?t AND a.attname = ?t AND NOT a.attisdropped"
        }
        Engine::Mysql => {
            "SELECT 1 FROM information_schema.columns
             WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?"
        }
    }
}

/// What to run after inserting a `users` row with an explicit uid (parameter: the
/// uid), so that the Python server, after a rollback, does not hand it out again:
/// PostgreSQL's serial sequence does not follow explicit values (MySQL's
/// AUTO_INCREMENT does).
pub fn after_explicit_uid(engine: Engine) -> Option<&'static str> {
    match engine {
        Engine::Postgresql => Some(
            "SELECT setval('users_uid_seq', GREATEST(?i, (SELECT last_value FROM users_uid_seq)))",
        ),
        Engine::Mysql => None,
    }
}

/// Lifts the per-statement time limit of our sessions, for `migrate` (one of them
/// fails: MariaDB knows only the first, MySQL only the second).
pub fn unlimited_statements(engine: Engine) -> &'static [&'static str] {
    match engine {
        Engine::Postgresql => &["SET statement_timeout = 0"],
        Engine::Mysql => &[
            "SET SESSION max_statement_time = 0",
            "SET SESSION max_execution_time = 0",
        ],
    }
}

/// Takes, without waiting, the session lock one `migrate` holds on its target
/// (one row, one column: 1 when taken); released when the connection closes.
pub fn migrate_lock(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgresql => "SELECT CAST(pg_try_advisory_lock(7306587263948212) AS INTEGER)",
        // MySQL's lock names are server-wide (and at most 64 characters).
        Engine::Mysql => "SELECT GET_LOCK(CONCAT('syncserver_fcgi_migrate_', MD5(DATABASE())), 0)",
    }
}

/// Moves the sequence of `table.column` (the Python server's `SERIAL` /
/// `AUTO_INCREMENT` key) so that the next id it hands out is above `top`, never
/// lowering it. Integers only, so the values are written into the text.
pub fn sequence_above(engine: Engine, table: &str, column: &str, top: i64) -> String {
    match engine {
        Engine::Postgresql => format!(
            "SELECT setval('{table}_{column}_seq', \
             GREATEST({top}, (SELECT last_value FROM {table}_{column}_seq)))"
        ),
        // InnoDB keeps the counter above the largest key by itself, and raises a
        // value below it to just above it.
        Engine::Mysql => format!("ALTER TABLE {table} AUTO_INCREMENT = {}", top + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates() {
        let sql = "INSERT INTO t (a, b) SELECT ?i, ?t WHERE x = ? AND y IN (?, ?) \
                   ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b, c = COALESCE(EXCLUDED.c, t.c) \
                   ORDER BY s DESC NULLS LAST";
        assert_eq!(
            translate(Engine::Postgresql, sql),
            "INSERT INTO t (a, b) SELECT $1::BIGINT, $2::TEXT WHERE x = $3 AND y IN ($4, $5) \
             ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b, c = COALESCE(EXCLUDED.c, t.c) \
             ORDER BY s DESC NULLS LAST"
        );
        assert_eq!(
            translate(Engine::Mysql, sql),
            "INSERT INTO t (a, b) SELECT CAST(? AS SIGNED), CAST(? AS CHAR) WHERE x = ? AND y IN (?, ?) \
             ON DUPLICATE KEY UPDATE b = VALUES(b), c = COALESCE(VALUES(c), t.c) \
             ORDER BY s DESC"
        );
        assert_eq!(
            translate(
                Engine::Mysql,
                "INSERT INTO m (k) VALUES (?) ON CONFLICT DO NOTHING"
            ),
            "INSERT IGNORE INTO m (k) VALUES (?) "
        );
        assert_eq!(translate(Engine::Postgresql, "a = ?i"), "a = $1::BIGINT");
    }
}
