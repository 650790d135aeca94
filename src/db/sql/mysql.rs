//! MySQL/MariaDB driver glue (the `mysql` crate, synchronous): connecting with our
//! session settings, value conversion, error kinds. The driver keeps prepared
//! statements per connection itself (`stmt_cache_size`).

use mysql::prelude::Queryable;
use mysql::{Conn as MysqlConn, OptsBuilder, Params};

use super::conn::{Conn, Engine, Host, Row, ServerParams, Value, CONNECT_TIMEOUT};
use super::dialect::translate;
use crate::config::MysqlCharset;
use crate::db::{DbError, DbResult};
use std::collections::HashMap;

/// One MySQL/MariaDB connection.
pub struct MyConn {
    conn: MysqlConn,
    /// Neutral SQL → MySQL's, translated once.
    texts: HashMap<String, String>,
    broken: bool,
}

impl MyConn {
    /// Connects and applies the session settings:
    /// - the connection character set (`utf8mb4` unless the URI says otherwise):
    ///   the storage tables the Python server made are latin1, and MySQL converts;
    /// - strict mode, so text a latin1 column cannot hold is an error (1366), never
    ///   silently replaced by `?`;
    /// - READ COMMITTED: a DELETE of one user's rows takes no gap locks next to
    ///   other users' rows (REPEATABLE READ's next-key locks made writers of
    ///   different users wait on each other); our writes are serialized per user by
    ///   their lock row, and each statement reads what is committed;
    /// - a lock wait of at most 5 s, then `Busy` (503);
    /// - at most 30 s per statement (MariaDB `max_statement_time`; MySQL's
    ///   `max_execution_time` only covers SELECT; ignored where neither exists).
    pub fn connect(p: &ServerParams) -> DbResult<MyConn> {
        let mut opts = OptsBuilder::new()
            .user(p.user.clone())
            .pass(p.password.clone())
            .db_name(Some(p.database.clone()).filter(|d| !d.is_empty()))
            .tcp_connect_timeout(Some(p.connect_timeout.unwrap_or(CONNECT_TIMEOUT)))
            .stmt_cache_size(128)
            .prefer_socket(false);
        match &p.host {
            Host::Tcp { host, port } => {
                opts = opts
                    .ip_or_hostname(Some(host.clone()))
                    .tcp_port(port.unwrap_or(3306));
            }
            Host::Unix { path, .. } => {
                opts = opts.socket(Some(path.to_string_lossy().into_owned()));
            }
        }
        let conn = MysqlConn::new(opts).map_err(classify)?;
        let charset = p.charset.unwrap_or(MysqlCharset::Utf8mb4).as_str();
        let mut my = MyConn {
            conn,
            texts: HashMap::new(),
            broken: false,
        };
        my.batch(&format!(
            "SET NAMES {charset}; \
             SET SESSION sql_mode = 'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'; \
             SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
             SET SESSION innodb_lock_wait_timeout = 5"
        ))?;
        if my.batch("SET SESSION max_statement_time = 30").is_err() {
            let _ = my.batch("SET SESSION max_execution_time = 30000");
        }
        Ok(my)
    }

    fn text(&mut self, sql: &str) -> String {
        if let Some(t) = self.texts.get(sql) {
            return t.clone();
        }
        let t = translate(Engine::Mysql, sql);
        if self.texts.len() >= 256 {
            self.texts.clear();
        }
        self.texts.insert(sql.to_string(), t.clone());
        t
    }

    fn fail(&mut self, e: mysql::Error) -> DbError {
        let e = classify(e);
        if matches!(e, DbError::Unavailable(_)) {
            self.broken = true;
        }
        e
    }
}

fn params(args: &[Value]) -> Params {
    if args.is_empty() {
        return Params::Empty;
    }
    Params::Positional(
        args.iter()
            .map(|a| match a {
                Value::Null => mysql::Value::NULL,
                Value::Int(v) => mysql::Value::Int(*v),
                Value::Text(s) => mysql::Value::Bytes(s.clone().into_bytes()),
            })
            .collect(),
    )
}

fn value(v: mysql::Value) -> DbResult<Value> {
    Ok(match v {
        mysql::Value::NULL => Value::Null,
        mysql::Value::Int(i) => Value::Int(i),
        mysql::Value::UInt(u) => Value::Int(
            i64::try_from(u).map_err(|_| DbError::Backend(format!("{u} out of range").into()))?,
        ),
        mysql::Value::Bytes(b) => Value::Text(
            String::from_utf8(b).map_err(|e| DbError::Backend(format!("not UTF-8: {e}").into()))?,
        ),
        other => Value::Text(other.as_sql(true)),
    })
}

impl Conn for MyConn {
    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    fn execute(&mut self, sql: &str, args: &[Value]) -> DbResult<u64> {
        let text = self.text(sql);
        match self.conn.exec_drop(text, params(args)) {
            Ok(()) => Ok(self.conn.affected_rows()),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn query_each(
        &mut self,
        sql: &str,
        args: &[Value],
        each: &mut dyn FnMut(Row) -> DbResult<bool>,
    ) -> DbResult<()> {
        let text = self.text(sql);
        let mut failed = None;
        let result = self.conn.exec_iter(text, params(args));
        let mut result = match result {
            Ok(r) => r,
            Err(e) => {
                let e = classify(e);
                if matches!(e, DbError::Unavailable(_)) {
                    self.broken = true;
                }
                return Err(e);
            }
        };
        let mut stopped = false;
        for row in result.by_ref() {
            match row {
                Ok(row) if !stopped => {
                    let values = row.unwrap().into_iter().map(value).collect::<DbResult<_>>();
                    match values.and_then(|v| each(Row(v))) {
                        Ok(true) => {}
                        Ok(false) => stopped = true,
                        Err(e) => {
                            failed = Some(e);
                            stopped = true;
                        }
                    }
                }
                // The rest of the result is read and dropped: the protocol
                // needs it off the wire before the next statement.
                Ok(_) => {}
                Err(e) => {
                    failed = Some(classify(e));
                    break;
                }
            }
        }
        drop(result);
        match failed {
            Some(e) => {
                if matches!(e, DbError::Unavailable(_)) {
                    self.broken = true;
                }
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Every statement's result is read and checked: the driver's `query_drop`
    /// reports only the first statement's error, and would let a failed lock or
    /// COMMIT later in the text pass as success.
    fn batch(&mut self, sql: &str) -> DbResult<()> {
        let mut failed = None;
        match self.conn.query_iter(sql) {
            Ok(mut result) => {
                while let Some(set) = result.iter() {
                    for row in set {
                        if let Err(e) = row {
                            failed.get_or_insert(e);
                        }
                    }
                }
            }
            Err(e) => failed = Some(e),
        }
        match failed {
            Some(e) => Err(self.fail(e)),
            None => Ok(()),
        }
    }

    fn broken(&self) -> bool {
        self.broken
    }
}

/// Server error codes.
mod code {
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const DEADLOCK: u16 = 1213;
    pub const MYSQL_EXECUTION_TIME: u16 = 3024;
    pub const MARIADB_STATEMENT_TIME: u16 = 1969;
    pub const INCORRECT_STRING: u16 = 1366;
    pub const CANNOT_CONVERT: u16 = 3988;
    pub const SERVER_SHUTDOWN: u16 = 1053;
    pub const CONNECTION_KILLED: u16 = 1927;
    pub const TOO_MANY_CONNECTIONS: u16 = 1040;
    pub const SERVER_GONE: u16 = 2006;
    pub const SERVER_LOST: u16 = 2013;
}

/// Sorts a driver error into the storage error kinds.
pub fn classify(e: mysql::Error) -> DbError {
    use mysql::{DriverError as D, Error as E};
    match &e {
        E::MySqlError(m) => match m.code {
            code::LOCK_WAIT_TIMEOUT
            | code::DEADLOCK
            | code::MYSQL_EXECUTION_TIME
            | code::MARIADB_STATEMENT_TIME => DbError::Busy,
            code::INCORRECT_STRING | code::CANNOT_CONVERT => DbError::UnstorableText(format!(
                "the table's character set cannot hold this text ({})",
                m.message
            )),
            code::SERVER_SHUTDOWN
            | code::CONNECTION_KILLED
            | code::TOO_MANY_CONNECTIONS
            | code::SERVER_GONE
            | code::SERVER_LOST => DbError::Unavailable(e.into()),
            _ => DbError::Backend(e.into()),
        },
        E::IoError(_) | E::CodecError(_) => DbError::Unavailable(e.into()),
        E::DriverError(
            D::ConnectTimeout
            | D::CouldNotConnect(_)
            | D::PacketOutOfSync
            | D::UnexpectedPacket
            | D::Timeout
            | D::SetupError,
        ) => DbError::Unavailable(e.into()),
        _ => DbError::Backend(e.into()),
    }
}
