//! Checks, before serving, that what `serve` will need is really there: the
//! database directory and files as SQLite will open them (`check-config`), and
//! a unix socket the web server's user can connect to (a warning at start-up).
//!
//! Both exist because the failure otherwise shows up far from its cause: a
//! database the serving user cannot write is a 500 "End of script output
//! before headers" at the first request, and a socket nginx cannot open is a
//! 502 that only nginx's error log explains.

mod database;
mod socket;
mod users;

pub use database::{database_problems, unreadable_files};
pub use socket::socket_warning;
pub use users::{current_user, lookup_group, lookup_user, run_as};
