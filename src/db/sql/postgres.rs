//! PostgreSQL driver glue (the `postgres` crate, synchronous): connecting with our
//! session settings, statement cache, value conversion, error kinds.

use std::collections::HashMap;
use std::error::Error as StdError;

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{FromSql, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::conn::{Conn, Engine, Host, Row, ServerParams, Value, CONNECT_TIMEOUT};
use super::dialect::translate;
use crate::db::{DbError, DbResult};

/// Prepared statements kept per connection; past this the cache starts over.
const STATEMENT_CACHE: usize = 256;

/// One PostgreSQL connection.
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// Session settings: no statement runs for more than 30 s, no lock is waited
/// for more than 5 s (then `Busy`: 503 and the client retries), text is UTF-8.
const SESSION: &str = "SET statement_timeout = '30s'; SET lock_timeout = '5s'; \
                       SET client_encoding = 'UTF8'";

impl PgConn {
    /// Connects and applies the session settings.
    pub fn connect(p: &ServerParams) -> DbResult<PgConn> {
        let mut config = postgres::Config::new();
        match &p.host {
            Host::Tcp { host, port } => {
                config.host(host).port(port.unwrap_or(5432));
            }
            Host::Unix { path, port } => {
                config.host_path(path).port(port.unwrap_or(5432));
            }
        }
        if let Some(user) = &p.user {
            config.user(user);
        }
        if let Some(password) = &p.password {
            config.password(password);
        }
        // No database named: the server's maintenance database (for creating one).
        let database = if p.database.is_empty() {
            "postgres"
        } else {
            &p.database
        };
        config
            .dbname(database)
            .application_name(p.application_name.as_deref().unwrap_or("syncserver-fcgi"))
            .connect_timeout(p.connect_timeout.unwrap_or(CONNECT_TIMEOUT));
        if let Some(options) = &p.server_options {
            config.options(options);
        }
        let mut client = config.connect(NoTls).map_err(classify)?;
        client.batch_execute(SESSION).map_err(classify)?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
        })
    }

    fn prepare(&mut self, sql: &str) -> DbResult<Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self
            .client
            .prepare(&translate(Engine::Postgresql, sql))
            .map_err(classify)?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

fn refs(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

impl Conn for PgConn {
    fn engine(&self) -> Engine {
        Engine::Postgresql
    }

    fn execute(&mut self, sql: &str, args: &[Value]) -> DbResult<u64> {
        let st = self.prepare(sql)?;
        self.client.execute(&st, &refs(args)).map_err(classify)
    }

    fn query_each(
        &mut self,
        sql: &str,
        args: &[Value],
        each: &mut dyn FnMut(Row) -> DbResult<bool>,
    ) -> DbResult<()> {
        let st = self.prepare(sql)?;
        let mut rows = self.client.query_raw(&st, args.iter()).map_err(classify)?;
        while let Some(row) = rows.next().map_err(classify)? {
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                values.push(row.try_get::<_, Value>(i).map_err(classify)?);
            }
            if !each(Row(values))? {
                break;
            }
        }
        Ok(())
    }

    fn batch(&mut self, sql: &str) -> DbResult<()> {
        self.client.batch_execute(sql).map_err(classify)
    }

    fn broken(&self) -> bool {
        self.client.is_closed()
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT8 => v.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => Err(format!("cannot send an integer as {ty}").into()),
            },
            Value::Text(s) => match *ty {
                Type::INT2 | Type::INT4 | Type::INT8 => Value::Int(s.parse()?).to_sql(ty, out),
                _ => s.as_str().to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Value, Box<dyn StdError + Sync + Send>> {
        Ok(match *ty {
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::OID => Value::Int(u32::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::VOID => Value::Null,
            _ => Value::Text(<&str>::from_sql(ty, raw)?.to_string()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Value, Box<dyn StdError + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        *ty != Type::NUMERIC
            && *ty != Type::FLOAT8
            && *ty != Type::FLOAT4
            && (<&str as FromSql>::accepts(ty)
                || matches!(
                    *ty,
                    Type::INT2 | Type::INT4 | Type::INT8 | Type::OID | Type::BOOL | Type::VOID
                ))
    }
}

/// Sorts a driver error into the storage error kinds.
pub fn classify(e: postgres::Error) -> DbError {
    if let Some(code) = e.code() {
        let class = &code.code()[..2];
        if *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::QUERY_CANCELED
        {
            return DbError::Busy;
        }
        if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
            || *code == SqlState::UNTRANSLATABLE_CHARACTER
        {
            let what = e.as_db_error().map(|d| d.message().to_string());
            return DbError::UnstorableText(what.unwrap_or_default());
        }
        if class == "08"
            || class == "57" // operator intervention: shutdown, terminated, cannot connect now
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            return DbError::Unavailable(e.into());
        }
        return DbError::Backend(e.into());
    }
    let io = StdError::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io || e.to_string().contains("connection") {
        return DbError::Unavailable(e.into());
    }
    DbError::Backend(e.into())
}
