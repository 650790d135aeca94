//! Interop with code we did not write: PyPI `tokenlib`, `hawkauthlib` and `mohawk` talk to the
//! real binary (tests/python/interop.py brings its own FastCGI client), and a token minted here
//! must parse in `tokenlib` with the same derived key.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{now, Server};
use syncserver_fcgi::auth::{mint, TokenPayload};

#[test]
fn python_libraries_interoperate() {
    let Some(python) = common::venv_python(&["tokenlib", "hawkauthlib", "mohawk"]) else {
        return;
    };
    let server = Server::start("");
    let uid = 11;
    let payload = TokenPayload {
        uid: syncserver_fcgi::uid::Uid::new(uid).unwrap(),
        node: server.public_url.clone(),
        expires: (now() + 300.0).floor(),
        salt: String::new(),
        fxa_uid: Some("0123456789abcdef0123456789abcdef".into()),
        fxa_kid: Some("0000000001234-qqo".into()),
        hashed_fxa_uid: Some("87dbc9a2388d0f1dd7b21ce37fabd77d".into()),
        hashed_device_id: Some("fde2c0b664592c6d894df60d9e68691c".into()),
    };
    let (token, key) = mint(&server.secret, &payload);
    println!("Rust-minted token for uid {uid}: {token}");

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/interop.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("INTEROP_SOCKET", &server.socket)
        .env("INTEROP_PUBLIC_URL", &server.public_url)
        .env("INTEROP_SECRET", &server.secret)
        .env("INTEROP_RUST_TOKEN", &token)
        .env("INTEROP_RUST_KEY", &key)
        .env("INTEROP_RUST_UID", uid.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let report = format!(
        "--- interop.py stdout ---\n{}\n--- interop.py stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(
        out.status.success(),
        "interop.py failed ({}):\n{report}\n--- server log ---\n{}",
        out.status,
        server.log()
    );
}
