//! One connection to the tokenserver's database, whatever the engine: the node
//! store is written once against this, in neutral SQL with `?` placeholders
//! (which SQLite reads as they are and the server engines translate).

use rusqlite::types::ValueRef;

use crate::db::sql::{dialect, Conn, Engine, Row, Value};
use crate::db::sqlite::map_err;
use crate::db::{DbError, DbResult};

/// Which engine holds the tables (their DDL and id generation differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Server(Engine),
}

pub(super) trait NodeConn: Send {
    fn kind(&self) -> Kind;
    fn execute(&mut self, sql: &str, args: &[Value]) -> DbResult<u64>;
    fn query(&mut self, sql: &str, args: &[Value]) -> DbResult<Vec<Row>>;
    /// Statements without parameters, in the engine's own SQL (DDL).
    fn batch(&mut self, sql: &str) -> DbResult<()>;
    /// Starts a transaction that will write; on SQLite it takes the database's
    /// write lock at once, which also orders every account's first sign-in.
    fn begin_write(&mut self) -> DbResult<()>;
    /// Holds `key`'s lock until the transaction ends (the server engines'
    /// per-account lock; SQLite's write lock already covers it).
    fn lock(&mut self, key: i64) -> DbResult<()>;
    fn commit(&mut self) -> DbResult<()>;
    fn rollback(&mut self) -> DbResult<()>;
    /// Runs an INSERT into a table whose `id_column` the engine numbers, and
    /// returns the number it gave.
    fn insert_returning(&mut self, sql: &str, args: &[Value], id_column: &str) -> DbResult<i64>;
    /// Whether the connection is lost (the session then reconnects).
    fn broken(&self) -> bool;
}

pub(super) struct SqliteConn(pub rusqlite::Connection);

fn to_sqlite(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
    }
}

fn from_sqlite(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        // The node tables hold no REAL columns; a float someone wrote by hand is
        // read as the integer it rounds to.
        ValueRef::Real(f) => Value::Int(f.round() as i64),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into()),
    }
}

impl NodeConn for SqliteConn {
    fn kind(&self) -> Kind {
        Kind::Sqlite
    }
    fn execute(&mut self, sql: &str, args: &[Value]) -> DbResult<u64> {
        let args: Vec<_> = args.iter().map(to_sqlite).collect();
        let mut stmt = self.0.prepare_cached(sql).map_err(map_err)?;
        let n = stmt
            .execute(rusqlite::params_from_iter(args))
            .map_err(map_err)?;
        Ok(n as u64)
    }
    fn query(&mut self, sql: &str, args: &[Value]) -> DbResult<Vec<Row>> {
        let args: Vec<_> = args.iter().map(to_sqlite).collect();
        let mut stmt = self.0.prepare_cached(sql).map_err(map_err)?;
        let width = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(map_err)? {
            let mut row = Vec::with_capacity(width);
            for i in 0..width {
                row.push(from_sqlite(r.get_ref(i).map_err(map_err)?));
            }
            out.push(Row(row));
        }
        Ok(out)
    }
    fn batch(&mut self, sql: &str) -> DbResult<()> {
        self.0.execute_batch(sql).map_err(map_err)
    }
    fn begin_write(&mut self) -> DbResult<()> {
        self.batch("BEGIN IMMEDIATE")
    }
    fn lock(&mut self, _key: i64) -> DbResult<()> {
        Ok(())
    }
    fn commit(&mut self) -> DbResult<()> {
        self.batch("COMMIT")
    }
    fn rollback(&mut self) -> DbResult<()> {
        if self.0.is_autocommit() {
            return Ok(());
        }
        self.batch("ROLLBACK")
    }
    fn insert_returning(&mut self, sql: &str, args: &[Value], _id: &str) -> DbResult<i64> {
        self.execute(sql, args)?;
        Ok(self.0.last_insert_rowid())
    }
    fn broken(&self) -> bool {
        false
    }
}

pub(super) struct ServerConn(pub Box<dyn Conn>);

impl NodeConn for ServerConn {
    fn kind(&self) -> Kind {
        Kind::Server(self.0.engine())
    }
    fn execute(&mut self, sql: &str, args: &[Value]) -> DbResult<u64> {
        self.0.execute(sql, args)
    }
    fn query(&mut self, sql: &str, args: &[Value]) -> DbResult<Vec<Row>> {
        self.0.as_mut().query(sql, args)
    }
    fn batch(&mut self, sql: &str) -> DbResult<()> {
        self.0.batch(sql)
    }
    fn begin_write(&mut self) -> DbResult<()> {
        self.0.batch("BEGIN")
    }
    fn lock(&mut self, key: i64) -> DbResult<()> {
        self.0
            .execute(dialect::lock_key(self.0.engine()), &[Value::Int(key)])
            .map(|_| ())
    }
    fn commit(&mut self) -> DbResult<()> {
        self.0.batch("COMMIT")
    }
    fn rollback(&mut self) -> DbResult<()> {
        if self.0.broken() {
            return Ok(());
        }
        self.0.batch("ROLLBACK")
    }
    fn insert_returning(&mut self, sql: &str, args: &[Value], id: &str) -> DbResult<i64> {
        match self.0.engine() {
            Engine::Postgresql => {
                let row = self
                    .0
                    .as_mut()
                    .query_row(&format!("{sql} RETURNING {id}"), args)?;
                row.ok_or_else(|| DbError::Backend("INSERT … RETURNING gave no row".into()))?
                    .int(0)
            }
            Engine::Mysql => {
                self.0.execute(sql, args)?;
                self.0
                    .as_mut()
                    .query_row("SELECT LAST_INSERT_ID()", &[])?
                    .ok_or_else(|| DbError::Backend("LAST_INSERT_ID() gave no row".into()))?
                    .int(0)
            }
        }
    }
    fn broken(&self) -> bool {
        self.0.broken()
    }
}
