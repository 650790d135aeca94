//! # syncserver-fcgi
//!
//! A self-hosted Firefox Sync 1.5 server (tokenserver and storage API) that runs
//! as a synchronous FastCGI responder behind Apache or nginx, and is a drop-in
//! replacement for Mozilla's Python `syncserver`: same `syncserver.ini`, same
//! SQLite database, same URLs.
//!
//! The data path reads top to bottom:
//!
//! - [`fcgi`]: the FastCGI protocol (records, params as bytes, connections, listeners);
//! - `front`: CGI params to a plain [`http::Request`] and back;
//! - `app`: routing, the headers every response carries, errors to responses;
//! - `tokenserver`: the token endpoint (OAuth sign-in, user records);
//! - [`storage`]: the storage API handlers, authenticated with [`auth`];
//! - [`db`]: the storage interface and its SQLite implementation.
//!
//! [`config`] turns `syncserver.ini` into typed settings; `start` wires it all
//! together at start-up and `serve` runs the listener; `cli` parses the
//! command line into plain `options`; `preflight` (and `check-config`,
//! `check`) checks, before serving, that the database and the socket will be
//! reachable by the users that need them.
//!
//! Only what the binaries, the integration tests and the fuzz targets use is
//! public; everything else is private to the crate, so the compiler can tell
//! when it is no longer used.

mod admin;
mod alloc;
mod app;
pub mod auth;
mod check;
mod cli;
pub mod config;
pub mod db;
mod devhttp;
pub use syncserver_fastcgi as fcgi;
mod front;
pub mod http;
mod logonce;
mod options;
mod preflight;
mod pyjson;
mod random;
mod serve;
mod start;
pub mod storage;
pub mod timestamp;
mod tokenserver;
pub mod uid;

// The commands of the `syncserver-fcgi` binary.
pub use admin::run as run_admin;
pub use check::check_config as run_check_config;
pub use cli::{parse as parse_command_line, Command, USAGE};
pub use serve::run as run_serve;
