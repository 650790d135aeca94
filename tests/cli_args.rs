//! The command line as the operating system gives it: arguments need not be UTF-8.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_syncserver-fcgi");

#[test]
fn a_non_utf8_config_path_is_a_clear_error_not_a_panic() {
    let dir = std::env::temp_dir().join(format!("sfcgi-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut path = dir.as_os_str().as_bytes().to_vec();
    path.extend_from_slice(b"/caf\xe9-missing.ini");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(OsStr::from_bytes(&path))
        .arg("check-config")
        .env_remove("SYNCSERVER_CONFIG")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("configuration error"), "{stderr}");
    assert!(
        stderr.contains("caf"),
        "the message names the file: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_non_utf8_text_value_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["serve", "--socket-group"])
        .arg(OsStr::from_bytes(b"www\xff"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--socket-group wants UTF-8 text"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
