//! Command-line parsing: the arguments become a [`Command`] of plain options
//! (`crate::options`); `main` runs it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::admin::{node_flag, PurgeOptions};
use crate::db::nodes::NodeChange;
use crate::options::{AdminCommand, NodesCommand, ServeOptions};

/// The usage text shown by `--help` and on errors.
pub const USAGE: &str = "\
Usage: syncserver-fcgi [--config FILE] [COMMAND] [OPTIONS]

A Firefox Sync 1.5 server (tokenserver + storage) as a FastCGI responder.

Commands:
  serve          serve FastCGI requests (the default)
  check-config   print the effective settings (secrets masked), check the database
                 the way `serve` will open it, and report every problem
  purge          remove expired records, stale batches and data of removed accounts
  users list     list accounts with their usage
  users delete ACCOUNT|UID   delete an account and all its data
  stats          figures about the database
  backup FILE    write a consistent copy of the live database to FILE
  migrate --to URI  copy the SQLite database into MySQL/MariaDB or PostgreSQL
  secret         print the secret in effect (for an external storage node or a load test)
  nodes list|add|set|drain|remove|secret   the storage nodes of a tokenserver with
                 node assignment (`nodes --help`)
  migrate-to-nodes --to URI   make this box node 1 of a tokenserver database
  help           print this text (`COMMAND --help` for one command)
  version        print the version

Global options:
  --config FILE  the syncserver.ini to read (default: $SYNCSERVER_CONFIG, else
                 ./syncserver.ini if it exists, else SYNCSERVER_* variables only)

Environment: RUST_LOG overrides the log level ([syncserver] loglevel, default info).";

const SERVE_HELP: &str = "\
Usage: syncserver-fcgi [--config FILE] serve [OPTIONS]

Serves FastCGI until SIGTERM or SIGINT (in-flight requests finish first).

Options:
  --bind ADDR         listen on unix:PATH or HOST:PORT. Without it the socket comes
                      from systemd (LISTEN_FDS) or from stdin (mod_fcgid, spawn-fcgi)
  --socket-mode MODE  permissions of a unix socket we create, octal (default 660)
  --socket-group GROUP  group (name or gid) of a unix socket we create, e.g. www-data,
                      so the web server can connect with mode 660
  --workers N         requests handled at once, one database session each (default 4)
  --max-connections N web-server connections held open at once (default 768); when
                      full, the one idle longest is closed to make room
  --http HOST:PORT    serve plain HTTP instead of FastCGI, for trying the server out
                      locally (e.g. --http 127.0.0.1:5000); not for production";

const CHECK_HELP: &str = "\
Usage: syncserver-fcgi [--config FILE] check-config [--as-user USER]

Prints the effective settings (secrets masked) and every note about the
configuration, then checks what `serve` will read and open: the ini (and a JWKs
file) are readable, the database directory exists and is writable, and the
database and its -wal, -shm and -replay files, where present, are readable and
writable. Reports every
problem found; exits non-zero when the configuration has errors or a problem
was found. Creates nothing.

Options:
  --as-user USER  run the database checks as USER (its uid and groups), e.g. the
                  web server's www-data under mod_fcgid; needs root";

const SECRET_HELP: &str = "\
Usage: syncserver-fcgi [--config FILE] secret [--metrics]

Prints the secret in effect: `secret` from the configuration (the last one, which
signs new tokens, when several are given), else the one the server generated
and stored in the database, generating and storing it now if the server never
ran (as `serve` would). Needed by an external storage node that must share it,
and by a load test (`syncload --secret`). Never logged.

Options:
  --metrics  print the metrics secret (for hashed_fxa_uid) instead";

const PURGE_HELP: &str = "\
Usage: syncserver-fcgi [--config FILE] purge [OPTIONS]

Removes records expired longer than the grace period, batches older than their
two-hour lifetime plus the grace period, and the data of accounts removed with
`users delete`. Works in small chunks so the running server keeps answering;
safe to run from cron or a timer at any time, also twice at once.

Options:
  --grace-period SECS  keep expired data this long (default 86400)
  --replaced           also remove the data of uids replaced by a key change
                       (their records can never be read again)
  --chunk N            at most N rows per transaction (default 1000; fewer
                       when a transaction takes over 10 ms, and the pause
                       after it is at least as long as it took)
  --json               print the result as JSON";

const USERS_HELP: &str = "\
Usage: syncserver-fcgi [--config FILE] users list [--json]
       syncserver-fcgi [--config FILE] users delete ACCOUNT|UID [--yes]

list:   every account row: uid, account, created, replaced, records, bytes.
delete: removes an account (all its uids) and its data. ACCOUNT is the stored
        account (<fxa uid>@<issuer>) or just the FxA uid; UID is a numeric uid.
        Asks for confirmation unless --yes.";

const STATS_HELP: &str = "\
Usage: syncserver-fcgi [--config FILE] stats [--json]

Accounts, collections, records, bytes, database size and the oldest expired
record.";

const BACKUP_HELP: &str = "\
Usage: syncserver-fcgi [--config FILE] backup FILE

Writes a consistent copy of the live database to FILE (which must not exist)
with SQLite's online backup, while the server keeps serving. The copy is
integrity-checked and self-contained. To restore: stop the server, replace the
database file with the copy, delete any syncserver.db-wal and -shm files beside
it, start the server.

On MySQL/MariaDB or PostgreSQL (sqluri = pymysql://..., postgresql://...), backup
copies nothing: it prints the exact mariadb-dump or pg_dump command that writes
FILE (the tool asks for the password), and exits with status 1.";

const MIGRATE_HELP: &str = "\
Usage: syncserver-fcgi [--config FILE] migrate --to URI

Copies the server's SQLite database (sqluri in the configuration) into the
MySQL/MariaDB or PostgreSQL database URI names (any sqluri form, e.g.
pymysql://USER:PASSWORD@HOST/DB or postgresql://USER:PASSWORD@HOST/DB), which
must be empty or hold an earlier migration from the same file. Safe while the
server serves the SQLite file. Copies accounts (same uids), collections and
records (timestamps, sortindex, ttl and payloads exactly; expired records not
purged yet too) and the server's stored state (generated secrets, deleted
accounts); not pending batch uploads, which clients send again. Each account is
read back and checked against the source. A second run copies only the
accounts that changed since the first, so the switch is: run it while
serving, stop the server (or the web server), run it again, set the printed
sqluri line in the ini, start the server. The password is never printed.";

const NODES_HELP: &str = "\
Usage: syncserver-fcgi [--config FILE] nodes SUBCOMMAND [--json]

The storage nodes a tokenserver with node assignment spreads accounts over
([tokenserver] backend = tokenserver.assignment.sqlnode.SQLNodeAssignment, the
nodes kept in [tokenserver] sqluri). A node's URL is its public_url exactly.

  nodes list                      load, capacity and accounts of every node
  nodes add URL --capacity N      a node taking up to N accounts
  nodes set URL [--capacity N] [--downed 1|0] [--backoff 1|0]
                                  a downed node's accounts move at their next
                                  token; a backed-off node takes no new ones
  nodes drain URL                 no new accounts, and its accounts move to other
                                  nodes at their next token (their data is then
                                  uploaded again by the clients); prints how many
  nodes remove URL                drain, then forget the node
  nodes secret URL                the node's own secret ([storage] node_secret),
                                  derived from [syncserver] secret";

const MIGRATE_TO_NODES_HELP: &str = "\
Usage: syncserver-fcgi [--config FILE] migrate-to-nodes --to URI [--capacity N] [--json]

Writes the tokenserver tables of node assignment into the database URI (SQLite,
MySQL/MariaDB or PostgreSQL; not this box's own database), with this box
(public_url) as node 1 holding every account under its current uid, so that a
second node can be added later without anyone syncing again. Run it again to
copy accounts that signed up meanwhile. Prints the [tokenserver] lines to put in
the ini; restart the server after adding them.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve {
        config: Option<PathBuf>,
        options: ServeOptions,
    },
    /// Print the effective settings.
    CheckConfig {
        config: Option<PathBuf>,
        /// `--as-user`: the user to check the database as.
        as_user: Option<String>,
    },
    Admin {
        config: Option<PathBuf>,
        command: AdminCommand,
        json: bool,
    },
    Help(&'static str),
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn number(flag: &str, v: &str, max: u64) -> Result<u64, CliError> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 && n <= max => Ok(n),
        _ => Err(CliError(format!(
            "{flag} wants a number from 1 to {max}, not {v:?}"
        ))),
    }
}

/// The arguments split into flags (with their values) and words, as the
/// operating system gave them: a path need not be UTF-8.
struct Args {
    flags: Vec<(String, Option<OsString>)>,
    words: Vec<OsString>,
}

/// Flags that take a value.
const VALUED: &[&str] = &[
    "--config",
    "-c",
    "--bind",
    "--socket-mode",
    "--socket-group",
    "--as-user",
    "--workers",
    "--max-connections",
    "--http",
    "--grace-period",
    "--chunk",
    "--to",
    "--capacity",
    "--downed",
    "--backoff",
];

fn split(args: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Args, CliError> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut out = Args {
        flags: Vec::new(),
        words: Vec::new(),
    };
    while let Some(arg) = parser.next().map_err(|e| CliError(e.to_string()))? {
        let flag = match arg {
            lexopt::Arg::Value(word) => {
                out.words.push(word);
                continue;
            }
            lexopt::Arg::Long(name) => format!("--{name}"),
            lexopt::Arg::Short(c) => format!("-{c}"),
        };
        let value = if VALUED.contains(&flag.as_str()) {
            Some(
                parser
                    .value()
                    .map_err(|_| CliError(format!("{flag} needs a value")))?,
            )
        } else if parser.optional_value().is_some() {
            return Err(CliError(format!("{flag} takes no value")));
        } else {
            None
        };
        out.flags.push((flag, value));
    }
    Ok(out)
}

/// `value` as text, for the flags whose values are not paths.
fn text<'a>(flag: &str, value: Option<&'a OsString>) -> Result<&'a str, CliError> {
    match value {
        None => Ok(""),
        Some(v) => v
            .to_str()
            .ok_or_else(|| CliError(format!("{flag} wants UTF-8 text, not {v:?}"))),
    }
}

/// Parses the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Command, CliError> {
    let Args {
        flags,
        words: raw_words,
    } = split(args)?;
    // Commands and their words are ASCII; only a path (`backup FILE`) is kept as given.
    let words: Vec<String> = raw_words
        .iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    let command = words.first().map(String::as_str).unwrap_or("serve");
    let has = |f: &str| flags.iter().any(|(n, _)| n == f);
    if has("--version") || has("-V") || command == "version" {
        return Ok(Command::Version);
    }
    let help = match words.first().map(String::as_str) {
        Some("serve") => SERVE_HELP,
        Some("check-config") => CHECK_HELP,
        Some("purge") => PURGE_HELP,
        Some("users") => USERS_HELP,
        Some("stats") => STATS_HELP,
        Some("backup") => BACKUP_HELP,
        Some("secret") => SECRET_HELP,
        Some("migrate") => MIGRATE_HELP,
        Some("nodes") => NODES_HELP,
        Some("migrate-to-nodes") => MIGRATE_TO_NODES_HELP,
        _ => USAGE,
    };
    if has("--help") || has("-h") || command == "help" {
        return Ok(Command::Help(help));
    }
    let mut config = None;
    let mut serve = ServeOptions::default();
    let mut purge = PurgeOptions::default();
    let (mut json, mut yes, mut metrics) = (false, false, false);
    let mut as_user = None;
    let mut to = None;
    let mut change = NodeChange::default();
    for (flag, value) in &flags {
        if matches!(flag.as_str(), "--config" | "-c") {
            config = value.as_ref().map(PathBuf::from);
            continue;
        }
        let v = text(flag, value.as_ref())?;
        let allowed = match flag.as_str() {
            "--bind" => {
                serve.bind = Some(
                    v.parse()
                        .map_err(|e| CliError(format!("--bind {v}: {e}")))?,
                );
                command == "serve"
            }
            "--socket-mode" => {
                serve.socket_mode = u32::from_str_radix(v.trim_start_matches("0o"), 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| {
                        CliError(format!(
                            "--socket-mode wants an octal mode like 660, not {v:?}"
                        ))
                    })?;
                command == "serve"
            }
            "--socket-group" => {
                serve.socket_group = Some(v.to_string());
                command == "serve"
            }
            "--as-user" => {
                as_user = Some(v.to_string());
                command == "check-config"
            }
            "--metrics" => {
                metrics = true;
                command == "secret"
            }
            "--workers" => {
                serve.workers = number(flag, v, 4096)? as usize;
                command == "serve"
            }
            "--max-connections" => {
                serve.max_connections = number(flag, v, 4096)? as usize;
                command == "serve"
            }
            "--http" => {
                serve.http = Some(v.to_string());
                command == "serve"
            }
            "--grace-period" => {
                purge.grace_period = v
                    .parse()
                    .map_err(|_| CliError(format!("--grace-period wants seconds, not {v:?}")))?;
                command == "purge"
            }
            "--chunk" => {
                purge.chunk = number(flag, v, 1_000_000)?;
                command == "purge"
            }
            "--to" => {
                to = Some(v.to_string());
                matches!(command, "migrate" | "migrate-to-nodes")
            }
            "--capacity" => {
                change.capacity = Some(number(flag, v, i32::MAX as u64)? as i64);
                matches!(command, "nodes" | "migrate-to-nodes")
            }
            "--downed" => {
                change.downed = Some(node_flag(flag, v).map_err(CliError)?);
                command == "nodes"
            }
            "--backoff" => {
                change.backoff = Some(node_flag(flag, v).map_err(CliError)?);
                command == "nodes"
            }
            "--replaced" => {
                purge.replaced = true;
                command == "purge"
            }
            "--json" => {
                json = true;
                matches!(
                    command,
                    "purge" | "users" | "stats" | "nodes" | "migrate-to-nodes"
                )
            }
            "--yes" | "-y" => {
                yes = true;
                command == "users"
            }
            _ => false,
        };
        if !allowed {
            return Err(CliError(format!("unknown option {flag} for {command}")));
        }
    }
    purge.pause = Duration::from_millis(10);
    let admin = |command| {
        Ok(Command::Admin {
            config: config.clone(),
            command,
            json,
        })
    };
    match (command, &words[words.len().min(1)..]) {
        ("serve", []) => Ok(Command::Serve {
            config,
            options: serve,
        }),
        ("check-config", []) => Ok(Command::CheckConfig { config, as_user }),
        ("secret", []) => admin(AdminCommand::Secret { metrics }),
        ("purge", []) => admin(AdminCommand::Purge(purge)),
        ("stats", []) => admin(AdminCommand::Stats),
        ("users", [sub]) if sub == "list" => admin(AdminCommand::ListUsers),
        ("users", [sub, _]) if sub == "delete" => admin(AdminCommand::DeleteUser {
            target: text("users delete", raw_words.get(2))?.to_string(),
            yes,
        }),
        ("backup", [_]) => admin(AdminCommand::Backup(PathBuf::from(&raw_words[1]))),
        ("migrate", []) => match to {
            Some(to) => admin(AdminCommand::Migrate { to }),
            None => Err(CliError(format!(
                "migrate needs --to URI\n\n{MIGRATE_HELP}"
            ))),
        },
        ("migrate-to-nodes", []) => match to {
            Some(to) => admin(AdminCommand::MigrateToNodes {
                to,
                capacity: change.capacity,
            }),
            None => Err(CliError(format!(
                "migrate-to-nodes needs --to URI\n\n{MIGRATE_TO_NODES_HELP}"
            ))),
        },
        ("nodes", [sub, rest @ ..]) => {
            let url = || match rest {
                [url] => Ok(url.clone()),
                _ => Err(CliError(format!(
                    "nodes {sub} needs one URL\n\n{NODES_HELP}"
                ))),
            };
            let only_capacity = change.downed.is_none() && change.backoff.is_none();
            let nodes = match sub.as_str() {
                "list" if rest.is_empty() && change == NodeChange::default() => NodesCommand::List,
                "add" if only_capacity => NodesCommand::Add {
                    url: url()?,
                    capacity: change.capacity.ok_or_else(|| {
                        CliError(format!("nodes add needs --capacity N\n\n{NODES_HELP}"))
                    })?,
                },
                "set" if change != NodeChange::default() => NodesCommand::Set {
                    url: url()?,
                    change: change.clone(),
                },
                "drain" if change == NodeChange::default() => NodesCommand::Drain { url: url()? },
                "remove" if change == NodeChange::default() => NodesCommand::Remove { url: url()? },
                "secret" if change == NodeChange::default() => NodesCommand::Secret { url: url()? },
                _ => {
                    return Err(CliError(format!(
                        "wrong arguments for nodes {sub}\n\n{NODES_HELP}"
                    )))
                }
            };
            admin(AdminCommand::Nodes(nodes))
        }
        (
            "serve" | "check-config" | "purge" | "stats" | "users" | "backup" | "secret"
            | "migrate" | "nodes" | "migrate-to-nodes",
            _,
        ) => Err(CliError(format!("wrong arguments for {command}\n\n{help}"))),
        (other, _) => Err(CliError(format!("unknown command {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcgi::BindAddr;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_to_serve() {
        assert_eq!(
            parse(Vec::<String>::new()).unwrap(),
            Command::Serve {
                config: None,
                options: ServeOptions::default()
            }
        );
    }

    #[test]
    fn serve_options() {
        let c = parse(args(
            "--config /x.ini serve --bind unix:/tmp/s.sock --socket-mode 666 --workers=8",
        ))
        .unwrap();
        let Command::Serve { config, options } = c else {
            panic!()
        };
        assert_eq!(config, Some(PathBuf::from("/x.ini")));
        assert_eq!(options.bind, Some(BindAddr::Unix("/tmp/s.sock".into())));
        assert_eq!(options.socket_mode, 0o666);
        assert_eq!(options.workers, 8);
    }

    #[test]
    fn admin_commands() {
        let Command::Admin {
            command: AdminCommand::Purge(p),
            json,
            ..
        } = parse(args("purge --grace-period 0 --replaced --json")).unwrap()
        else {
            panic!()
        };
        assert_eq!((p.grace_period, p.replaced, json), (0, true, true));
        assert_eq!(
            parse(args("-c a.ini users delete abc --yes")).unwrap(),
            Command::Admin {
                config: Some("a.ini".into()),
                command: AdminCommand::DeleteUser {
                    target: "abc".into(),
                    yes: true
                },
                json: false
            }
        );
        assert!(matches!(
            parse(args("backup /tmp/x.db")).unwrap(),
            Command::Admin {
                command: AdminCommand::Backup(_),
                ..
            }
        ));
        assert_eq!(
            parse(args("purge --help")).unwrap(),
            Command::Help(PURGE_HELP)
        );
    }

    #[test]
    fn mistakes() {
        assert!(parse(args("--workers 0")).is_err());
        assert!(parse(args("--workers")).is_err());
        assert!(parse(args("--socket-mode 999")).is_err());
        assert!(parse(args("frobnicate")).is_err());
        assert!(parse(args("--nope")).is_err());
        assert!(parse(args("stats --bind unix:/x")).is_err());
        assert!(parse(args("users delete")).is_err());
        assert!(parse(args("backup")).is_err());
        assert!(parse(args("migrate")).is_err());
        assert!(parse(args("migrate x --to mysql://h/db")).is_err());
        assert!(parse(args("stats --to mysql://h/db")).is_err());
        assert_eq!(
            parse(args("-c a.ini migrate --to postgresql://u:p@h/db")).unwrap(),
            Command::Admin {
                config: Some("a.ini".into()),
                command: AdminCommand::Migrate {
                    to: "postgresql://u:p@h/db".into()
                },
                json: false
            }
        );
        assert_eq!(
            parse(args("migrate --help")).unwrap(),
            Command::Help(MIGRATE_HELP)
        );
        assert_eq!(
            parse(args("check-config -c a.ini")).unwrap(),
            Command::CheckConfig {
                config: Some("a.ini".into()),
                as_user: None
            }
        );
        assert!(parse(args("serve --as-user www-data")).is_err());
        assert!(parse(args("stats --metrics")).is_err());
        assert_eq!(
            parse(args("check-config --as-user www-data")).unwrap(),
            Command::CheckConfig {
                config: None,
                as_user: Some("www-data".into())
            }
        );
        assert!(matches!(
            parse(args("secret --metrics")).unwrap(),
            Command::Admin {
                command: AdminCommand::Secret { metrics: true },
                ..
            }
        ));
    }

    #[test]
    fn paths_need_not_be_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let bad = std::ffi::OsStr::from_bytes(b"/tmp/caf\xe9.ini");
        let parsed = parse([OsString::from("--config"), bad.to_owned(), "stats".into()]).unwrap();
        let Command::Admin { config, .. } = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(config.as_deref(), Some(std::path::Path::new(bad)));
        let parsed = parse([OsString::from("backup"), bad.to_owned()]).unwrap();
        assert!(matches!(
            parsed,
            Command::Admin { command: AdminCommand::Backup(ref p), .. } if p.as_os_str() == bad
        ));
        // Values that are text say so instead of panicking.
        let e = parse([OsString::from("--socket-group"), bad.to_owned()]).unwrap_err();
        assert!(
            e.to_string().contains("--socket-group wants UTF-8 text"),
            "{e}"
        );
        assert!(parse(args("stats --json=yes")).is_err());
        assert!(parse(args("--workers")).is_err());
    }
}
