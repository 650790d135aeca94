//! `migrate --to URI`: moves the server's SQLite database up to MySQL/MariaDB or
//! PostgreSQL (`db::migrate` does the copying), and tells the operator the
//! `sqluri` line to switch to.

use super::AdminError;
use crate::config::{DatabaseUri, Settings};
use crate::db::{self, MigrateError};

/// Copies the configured SQLite database into the empty (or earlier migrated)
/// database `to`; the report, ending with the `sqluri` line.
pub fn migrate(settings: &Settings, to: &str) -> Result<String, AdminError> {
    let source = match &settings.database {
        DatabaseUri::Sqlite(path) => path.clone(),
        DatabaseUri::Memory => {
            return Err(AdminError::Refused(
                "sqluri is :memory:: there is no database file to migrate".into(),
            ))
        }
        other => {
            return Err(AdminError::Refused(format!(
                "sqluri is already {} ({}); migrate copies a SQLite database",
                other,
                other.engine_name()
            )))
        }
    };
    let target = DatabaseUri::parse(to).map_err(|e| AdminError::Refused(format!("--to: {e}")))?;
    let server = match &target {
        DatabaseUri::Mysql(s) | DatabaseUri::Postgresql(s) => s,
        _ => {
            return Err(AdminError::Refused(format!(
                "--to {target} is SQLite; migrate copies into MySQL/MariaDB or PostgreSQL \
                 (for a copy of the SQLite file, use `backup`)"
            )))
        }
    };
    let params = db::server_params(server).map_err(|cause| {
        AdminError::Migrate(MigrateError::Target {
            place: target.to_string(),
            cause,
        })
    })?;
    let report = db::migrate::migrate(&source, &params, &mut |line| {
        eprintln!("syncserver-fcgi: migrate: {line}")
    })
    .map_err(AdminError::Migrate)?;

    let mut out = String::new();
    let run = if report.resumed {
        "caught up with an earlier run"
    } else {
        "first run"
    };
    out.push_str(&format!(
        "Copied {} into {} ({run}).\n",
        source.display(),
        params.place()
    ));
    out.push_str(&format!(
        "  this run: {} uid(s) copied ({} records, {} bytes), {} unchanged since the last run, \
         {} removed (gone from the source), {} shared row(s) updated\n",
        report.users_copied,
        report.records_copied,
        report.bytes_copied,
        report.users_unchanged,
        report.users_removed,
        report.shared_changes
    ));
    out.push_str(&format!(
        "  the target holds: {} uid(s), {} collection(s), {} record(s), {} bytes\n",
        report.users, report.collections, report.records, report.bytes
    ));
    out.push_str(if report.users_copied > 0 {
        "  verified: every uid copied matches the source (users row, collections, record \
         count and checksum)\n"
    } else {
        "  verified: every uid's source state is the one an earlier run copied and checked\n"
    });
    out.push_str(&format!(
        "  not copied: {} pending batch upload(s) ({} item(s)): transient, clients upload \
         them again\n",
        report.pending_batches, report.pending_batch_items
    ));
    if report.expired_records > 0 {
        out.push_str(&format!(
            "  copied as they are: {} expired record(s) not purged yet (`purge` removes them)\n",
            report.expired_records
        ));
    }
    out.push_str(&format!(
        "  time: {:.2} s\n\n",
        report.elapsed.as_secs_f64()
    ));
    out.push_str(
        "To switch: stop the server (or the web server), run this command again (it copies \
         only what changed), then put this line in the [syncserver] section of the ini and \
         start the server:\n",
    );
    out.push_str(&format!("sqluri = {target}\n"));
    if server.password.is_some() {
        out.push_str("Put the database password in place of *** (it is never printed).\n");
    }
    Ok(out)
}
