//! Command-line parsing and the dispatch of commands.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::fcgi::BindAddr;

/// The usage text shown by `--help` and on errors.
pub const USAGE: &str = "\
Usage: syncserver-fcgi [--config FILE] [COMMAND] [OPTIONS]

A Firefox Sync 1.5 server (tokenserver + storage) as a FastCGI responder.

Commands:
  serve          serve FastCGI requests (the default)
  check-config   print the effective settings (secrets masked) and any problems
  help           print this text
  version        print the version

Global options:
  --config FILE  the syncserver.ini to read (default: $SYNCSERVER_CONFIG, else
                 ./syncserver.ini if it exists, else SYNCSERVER_* variables only)

Options of serve:
  --bind ADDR         listen on unix:PATH or HOST:PORT. Without it the socket comes
                      from systemd (LISTEN_FDS) or from stdin (mod_fcgid, spawn-fcgi)
  --socket-mode MODE  permissions of a unix socket we create, octal (default 660)
  --workers N         requests handled at once, one database session each (default 4)
  --max-connections N web-server connections held open at once (default 64)
  --http HOST:PORT    serve plain HTTP instead of FastCGI, for trying the server out
                      locally (e.g. --http 127.0.0.1:5000); not for production

Environment: RUST_LOG overrides the log level ([syncserver] loglevel, default info).";

/// Options of `serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// `--bind`.
    pub bind: Option<BindAddr>,
    /// `--socket-mode`.
    pub socket_mode: u32,
    /// `--workers`.
    pub workers: usize,
    /// `--max-connections`.
    pub max_connections: usize,
    /// `--http HOST:PORT`: the local trial listener instead of FastCGI.
    pub http: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            bind: None,
            socket_mode: 0o660,
            workers: 4,
            max_connections: 64,
            http: None,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve FastCGI.
    Serve {
        /// `--config`.
        config: Option<PathBuf>,
        /// Options.
        options: ServeOptions,
    },
    /// Print the effective settings.
    CheckConfig {
        /// `--config`.
        config: Option<PathBuf>,
    },
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// A command-line mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn number(flag: &str, v: &str) -> Result<usize, CliError> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 && n <= 4096 => Ok(n),
        _ => Err(CliError(format!(
            "{flag} wants a number from 1 to 4096, not {v:?}"
        ))),
    }
}

/// Parses the arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command, CliError> {
    let mut config = None;
    let mut command: Option<String> = None;
    let mut options = ServeOptions::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, CliError> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| CliError(format!("{flag} needs a value")))
        };
        match flag {
            "--config" | "-c" => config = Some(PathBuf::from(value()?)),
            "--bind" => {
                let v = value()?;
                options.bind = Some(
                    v.parse()
                        .map_err(|e| CliError(format!("--bind {v}: {e}")))?,
                );
            }
            "--socket-mode" => {
                let v = value()?;
                options.socket_mode = u32::from_str_radix(v.trim_start_matches("0o"), 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| {
                        CliError(format!(
                            "--socket-mode wants an octal mode like 660, not {v:?}"
                        ))
                    })?;
            }
            "--workers" => options.workers = number(flag, &value()?)?,
            "--http" => options.http = Some(value()?),
            "--max-connections" => options.max_connections = number(flag, &value()?)?,
            "--help" | "-h" => return Ok(Command::Help),
            "--version" | "-V" => return Ok(Command::Version),
            f if f.starts_with('-') => return Err(CliError(format!("unknown option {f}"))),
            word if command.is_none() => command = Some(word.to_string()),
            word => return Err(CliError(format!("unexpected argument {word:?}"))),
        }
    }
    match command.as_deref().unwrap_or("serve") {
        "serve" => Ok(Command::Serve { config, options }),
        "check-config" => Ok(Command::CheckConfig { config }),
        "help" => Ok(Command::Help),
        "version" => Ok(Command::Version),
        other => Err(CliError(format!("unknown command {other:?}"))),
    }
}

/// Runs a command and returns the process exit code.
pub fn run(command: Command) -> ExitCode {
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("syncserver-fcgi {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => crate::serve::check_config(config.as_deref()),
        Command::Serve { config, options } => crate::serve::run(config.as_deref(), &options),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_to_serve() {
        assert_eq!(
            parse(&[]).unwrap(),
            Command::Serve {
                config: None,
                options: ServeOptions::default()
            }
        );
    }

    #[test]
    fn serve_options() {
        let c = parse(&args(
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
    fn mistakes() {
        assert!(parse(&args("--workers 0")).is_err());
        assert!(parse(&args("--workers")).is_err());
        assert!(parse(&args("--socket-mode 999")).is_err());
        assert!(parse(&args("frobnicate")).is_err());
        assert!(parse(&args("--nope")).is_err());
        assert_eq!(
            parse(&args("check-config -c a.ini")).unwrap(),
            Command::CheckConfig {
                config: Some("a.ini".into())
            }
        );
    }
}
