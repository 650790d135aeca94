//! MySQL/MariaDB and PostgreSQL, on exactly the tables the Python server made there.

pub mod conn;
pub mod dialect;
mod mysql;
mod postgres;

pub use conn::{connect, Conn, Engine, Host, Row, ServerParams, Value};
