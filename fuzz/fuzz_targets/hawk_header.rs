//! The Hawk `Authorization` header parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncserver_fcgi::auth::parse_authorization;

fuzz_target!(|data: &[u8]| {
    let _ = parse_authorization(data);
});
