//! Query strings and precondition headers: listing parameters, offsets, batch ids, timestamps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncserver_fcgi::http::{query_pairs, Request};
use syncserver_fcgi::storage::params::{
    batch_mode, format_batch_id, format_offset, ids, listing, parse_batch_id, parse_offset,
    precondition,
};
use syncserver_fcgi::timestamp;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let pairs = query_pairs(text);
    if let Ok(q) = listing(&pairs) {
        for (_, v) in &pairs {
            if let Ok(o) = parse_offset(v, &q) {
                let _ = format_offset(o);
            }
        }
    }
    let _ = batch_mode(&pairs, true);
    for (_, v) in &pairs {
        let _ = ids(v);
    }
    if let Some(id) = parse_batch_id(text) {
        assert_eq!(parse_batch_id(&format_batch_id(id)), Some(id));
    }
    if let Some(ms) = timestamp::parse(text) {
        let _ = timestamp::format(ms);
    }
    let req = Request {
        method: "GET".into(),
        headers: vec![("x-if-modified-since".into(), data.to_vec())],
        ..Request::default()
    };
    let _ = precondition(&req);
    let req = Request {
        method: "PUT".into(),
        headers: vec![("x-if-unmodified-since".into(), data.to_vec())],
        ..Request::default()
    };
    let _ = precondition(&req);
});
