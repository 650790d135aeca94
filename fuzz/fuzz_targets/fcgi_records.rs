//! FastCGI record headers, BEGIN_REQUEST bodies and name-value pair streams from raw bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncserver_fcgi::fcgi::record::{decode_pairs, encode_pair, BeginRequest, Header};

fuzz_target!(|data: &[u8]| {
    // Walk the input as a record stream, as the connection loop does.
    let mut rest = data;
    while let Ok(h) = Header::decode(rest) {
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        let body_end = 8 + usize::from(h.content_length);
        let Some(content) = rest.get(8..body_end) else {
            break;
        };
        let _ = BeginRequest::decode(content);
        let _ = decode_pairs(content);
        rest = rest
            .get(body_end + usize::from(h.padding_length)..)
            .unwrap_or_default();
    }
    // Pairs that decode re-encode to the same bytes when lengths used the short form.
    if let Ok(pairs) = decode_pairs(data) {
        let mut again = Vec::new();
        for (n, v) in &pairs {
            encode_pair(n, v, &mut again);
        }
        assert_eq!(decode_pairs(&again).ok(), Some(pairs));
    }
});
