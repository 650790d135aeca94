//! The `syncserver-fcgi` binary: parse the command line and run the command.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match syncserver_fcgi::cli::parse(&args) {
        Ok(command) => syncserver_fcgi::cli::run(command),
        Err(e) => {
            eprintln!("syncserver-fcgi: {e}\n\n{}", syncserver_fcgi::cli::USAGE);
            ExitCode::from(2)
        }
    }
}
