//! The `syncserver-fcgi` binary: parse the command line and run the command.

use std::process::ExitCode;

use syncserver_fcgi::{parse_command_line, run_admin, run_check_config, run_serve, Command, USAGE};

fn main() -> ExitCode {
    match parse_command_line(std::env::args_os().skip(1)) {
        Ok(command) => run(command),
        Err(e) => {
            eprintln!("syncserver-fcgi: {e}\n\n{}", USAGE);
            ExitCode::from(2)
        }
    }
}

/// Runs a command and returns the process exit code.
fn run(command: Command) -> ExitCode {
    match command {
        Command::Help(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("syncserver-fcgi {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config, as_user } => {
            run_check_config(config.as_deref(), as_user.as_deref())
        }
        Command::Serve { config, options } => run_serve(config.as_deref(), &options),
        Command::Admin {
            config,
            command,
            json,
        } => run_admin(config.as_deref(), &command, json),
    }
}
