//! tokenlib token parsing and signature check with a fixed secret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncserver_fcgi::auth::{mint_raw, parse};

fuzz_target!(|data: &[u8]| {
    let secrets = vec!["fuzz-secret".to_string()];
    if let Ok(text) = std::str::from_utf8(data) {
        // As sent by a client: must never be accepted unless properly signed.
        let _ = parse(&secrets, text, 1_700_000_000.0);
        // Properly signed junk payloads: parsed without panicking.
        let (token, _) = mint_raw("fuzz-secret", text);
        let _ = parse(&secrets, &token, 1_700_000_000.0);
    }
});
