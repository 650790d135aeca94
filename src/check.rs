//! `check-config`: the effective settings, and whether `serve` could open what it needs.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, DatabaseUri};
use crate::preflight;
use crate::start::load_settings;

/// `check-config`: print the effective settings, then check the database as
/// `serve` will open it (as `as_user` when given) and report every problem.
pub fn check_config(path: Option<&Path>, as_user: Option<&str>) -> ExitCode {
    let settings = match load_settings(path) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let user = match as_user.map(preflight::lookup_user).transpose() {
        Ok(user) => user.unwrap_or_else(preflight::current_user),
        Err(e) => {
            eprintln!("syncserver-fcgi: --as-user: {e}");
            return ExitCode::from(2);
        }
    };
    println!("{}", config::report(&settings));
    let files: Vec<&Path> = [&settings.config_path, &settings.oauth_jwks_file]
        .into_iter()
        .filter_map(|f| f.as_deref())
        .collect();
    let checks = || {
        let mut p = preflight::unreadable_files(&files);
        let nodes = settings
            .nodes_database
            .as_ref()
            .filter(|_| settings.role.serves_tokens());
        // A tokenserver with node assignment never opens the storage database.
        if settings.role.serves_storage() || nodes.is_none() {
            p.extend(preflight::database_problems(&settings.database));
        }
        match nodes {
            Some(DatabaseUri::Sqlite(path)) => p.extend(
                preflight::database_problems(&DatabaseUri::Sqlite(path.clone()))
                    .into_iter()
                    .map(|problem| format!("tokenserver database: {problem}")),
            ),
            Some(uri) => {
                if let Err(e) = crate::db::open_nodes(uri) {
                    p.push(format!("tokenserver database {uri}: {e}"));
                }
            }
            None => {}
        }
        p
    };
    let problems = match preflight::run_as(&user, checks) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("syncserver-fcgi: {e}");
            return ExitCode::from(2);
        }
    };
    println!("Files and database, checked as {user}:");
    if problems.is_empty() {
        println!("  OK: serve can read its files and open the database.");
    }
    for p in &problems {
        println!("  [problem] {p}");
    }
    if user.uid == 0 {
        println!(
            "  (root may write anywhere: use --as-user USER to check as the user that serves)"
        );
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
