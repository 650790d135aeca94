//! Request bodies: JSON (bounded depth) to BSO validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use syncserver_fcgi::storage::bso::{parse_bso, valid_collection, valid_id};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = valid_id(s);
        let _ = valid_collection(s);
    }
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(obj)) => {
            let _ = parse_bso(&obj, 256 * 1024);
        }
        Ok(Value::Array(items)) => {
            for item in items {
                if let Value::Object(obj) = item {
                    let _ = parse_bso(&obj, 100);
                }
            }
        }
        _ => {}
    }
});
