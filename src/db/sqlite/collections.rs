//! Collection names and their ids in the global `collections` table.
//!
//! Like the Python server, ids are allocated on first write in first-use order.
//! A database created with `standard_collections` (recognised by its `(99, '')`
//! row) keeps the fixed ids 1-13 for the standard names, which are not stored.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};

/// The fixed ids of standard-collections mode (shared with the server engines).
pub(crate) const STANDARD: &[(i64, &str)] = &[
    (1, "clients"),
    (2, "crypto"),
    (3, "forms"),
    (4, "history"),
    (5, "keys"),
    (6, "meta"),
    (7, "bookmarks"),
    (8, "prefs"),
    (9, "tabs"),
    (10, "passwords"),
    (11, "addons"),
    (12, "addresses"),
    (13, "creditcards"),
];

/// A per-connection cache of the name ↔ id map (rows are never deleted or
/// renumbered, so a cached entry never goes stale).
#[derive(Debug, Default)]
pub struct Collections {
    standard: bool,
    by_name: HashMap<String, i64>,
    by_id: HashMap<i64, String>,
}

impl Collections {
    /// Loads the map and detects standard-collections mode.
    pub fn load(conn: &Connection) -> rusqlite::Result<Collections> {
        let mut c = Collections::default();
        c.reload(conn)?;
        Ok(c)
    }

    fn reload(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached("SELECT collectionid, name FROM collections")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (id, name) = row?;
            if id == 99 && name.is_empty() {
                self.standard = true;
            } else {
                self.insert(id, name);
            }
        }
        if self.standard {
            for (id, name) in STANDARD {
                self.insert(*id, name.to_string());
            }
        }
        Ok(())
    }

    fn insert(&mut self, id: i64, name: String) {
        self.by_id.insert(id, name.clone());
        self.by_name.insert(name, id);
    }

    /// The id of an existing collection name, without creating it.
    pub fn id(&mut self, conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
        if let Some(id) = self.by_name.get(name) {
            return Ok(Some(*id));
        }
        let id: Option<i64> = conn
            .prepare_cached("SELECT collectionid FROM collections WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?;
        if let Some(id) = id {
            self.insert(id, name.to_string());
        }
        Ok(id)
    }

    /// The id of a collection name, allocating one if needed (inside the
    /// caller's write transaction).
    pub fn id_or_create(&mut self, conn: &Connection, name: &str) -> rusqlite::Result<i64> {
        if let Some(id) = self.id(conn, name)? {
            return Ok(id);
        }
        conn.prepare_cached("INSERT OR IGNORE INTO collections (name) VALUES (?1)")?
            .execute([name])?;
        // Read back by name: another process may have inserted it first.
        let id: i64 = conn
            .prepare_cached("SELECT collectionid FROM collections WHERE name = ?1")?
            .query_row([name], |r| r.get(0))?;
        // The id only becomes real if the transaction commits; caching it early is
        // harmless because a rolled-back id is simply allocated again later.
        Ok(id)
    }

    /// The name of a collection id, if known.
    pub fn name(&mut self, conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
        if !self.by_id.contains_key(&id) {
            self.reload(conn)?;
        }
        Ok(self.by_id.get(&id).cloned())
    }

    /// Forgets ids allocated in a transaction that did not commit.
    pub fn forget_uncommitted(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.by_name.clear();
        self.by_id.clear();
        self.reload(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::ensure(&mut conn).unwrap();
        conn
    }

    #[test]
    fn dynamic_ids_in_first_use_order() {
        let conn = db();
        let mut c = Collections::load(&conn).unwrap();
        assert_eq!(c.id(&conn, "meta").unwrap(), None);
        assert_eq!(c.id_or_create(&conn, "meta").unwrap(), 1);
        assert_eq!(c.id_or_create(&conn, "bookmarks").unwrap(), 2);
        assert_eq!(c.id_or_create(&conn, "meta").unwrap(), 1);
        assert_eq!(c.name(&conn, 2).unwrap().as_deref(), Some("bookmarks"));
        let mut fresh = Collections::load(&conn).unwrap();
        assert_eq!(fresh.id(&conn, "bookmarks").unwrap(), Some(2));
    }

    #[test]
    fn standard_mode_is_detected() {
        let conn = db();
        conn.execute("INSERT INTO collections VALUES (99, '')", [])
            .unwrap();
        let mut c = Collections::load(&conn).unwrap();
        assert_eq!(c.id(&conn, "bookmarks").unwrap(), Some(7));
        assert_eq!(c.id_or_create(&conn, "custom").unwrap(), 100);
        assert_eq!(c.name(&conn, 13).unwrap().as_deref(), Some("creditcards"));
    }
}
