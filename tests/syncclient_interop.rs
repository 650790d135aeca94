//! A real client we did not write: PyPI `syncclient` 0.8.0 with `requests-hawk`
//! gets a token from our tokenserver (OAuth bearer JWT + X-KeyID, a few lines of
//! glue in tests/python/syncclient_flow.py), then writes, reads and deletes
//! records through our storage API. syncclient speaks HTTP, so real nginx with
//! contrib/nginx/syncserver-fcgi.conf (tests/common/webservers.rs) sits in front
//! of the binary's FastCGI socket.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::fxa::{self, FakeFxa, TestKey};
use common::webservers::{flow, Front, Stack, StackSpec};

#[test]
fn syncclient_signs_in_and_syncs_through_nginx() {
    let Some(python) = common::venv_python(&["syncclient", "requests_hawk"]) else {
        return;
    };
    let key = TestKey::load("oauth-test-key.pk8", "key-1");
    let fxa = FakeFxa::start(&[&key]);
    if flow::skip(Front::Nginx) {
        return;
    }
    let stack = Stack::start(StackSpec {
        front: Front::Nginx,
        prefixed: false,
        public_url: None,
        extra_ini: format!("oauth_verifier = {}\n", fxa.url),
    });
    let public_url = stack.public_url.clone();

    let sub = fxa::fxa_uid();
    let bearer = key.token(&fxa::claims(&sub, 1_700_000_000_000));
    let kid = fxa::key_id(1_700_000_000_000, fxa::fingerprint(0x5c));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/syncclient_flow.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("SC_TOKEN_URL", format!("{public_url}/token"))
        .env("SC_BEARER", &bearer)
        .env("SC_KEYID", &kid)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let report = format!(
        "--- syncclient_flow.py stdout ---\n{}\n--- stderr ---\n{}\n--- nginx and server ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        stack.logs()
    );
    assert!(out.status.success(), "{report}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("syncclient flow: all good"),
        "{report}"
    );
}
