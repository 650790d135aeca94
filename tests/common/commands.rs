//! Running the binary's operator commands (`users`, `purge`, `check-config`, `secret`, …) the
//! way an operator would, and reading what they printed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::BIN;

/// Runs the binary with `--config ini` and `args`, feeding `stdin` if given (else none).
pub fn run_with(ini: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(ini)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SYNCSERVER_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("run command");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        // The command may exit before reading (e.g. an unknown account).
        let _ = pipe.write_all(text.as_bytes());
    }
    child.wait_with_output().expect("wait for command")
}

/// Runs the binary with `--config ini` and `args`, stdin closed.
pub fn run(ini: &Path, args: &[&str]) -> Output {
    run_with(ini, args, None)
}

/// What the command printed on stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What the command printed on stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Asserts failure and returns stderr.
#[track_caller]
pub fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "unexpected success\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}
