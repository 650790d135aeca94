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
//! - [`front`]: CGI params to a plain [`http::Request`] and back;
//! - [`app`]: routing, the headers every response carries, errors to responses;
//! - [`tokenserver`]: the token endpoint (OAuth sign-in, user records);
//! - [`storage`]: the storage API handlers, authenticated with [`auth`];
//! - [`db`]: the storage interface and its SQLite implementation.
//!
//! [`config`] turns `syncserver.ini` into typed settings; [`start`] wires it all
//! together at start-up and [`serve`] runs the listener; [`cli`] parses the
//! command line into plain [`options`]; [`preflight`] (and `check-config`,
//! [`check`]) checks, before serving, that the database and the socket will be
//! reachable by the users that need them.

pub mod admin;
mod alloc;
pub mod app;
pub mod auth;
pub mod check;
pub mod cli;
pub mod config;
pub mod db;
pub mod devhttp;
pub use syncserver_fastcgi as fcgi;
pub mod front;
pub mod http;
pub mod logonce;
pub mod options;
pub mod preflight;
pub mod pyjson;
mod random;
pub mod serve;
pub mod start;
pub mod storage;
pub mod timestamp;
pub mod tokenserver;
pub mod uid;
