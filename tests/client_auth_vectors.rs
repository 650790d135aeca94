//! The tests' own token minting and Hawk signing (`tests/common/client_auth.rs`) reproduce the
//! published test vectors (`python-syncserver.md` §5), so the end-to-end tests check the
//! server against an implementation that shares none of its code.

mod common;

use common::client_auth::{hawk_header, mint_payload, signing_key, Signed};

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const PAYLOAD: &str = r#"{"node": "http://localhost:5000", "uid": 1, "fxa_kid": "0000000000900-qqo", "expires": 1700000300, "fxa_uid": "user1", "hashed_device_id": "fde2c0b664592c6d894df60d9e68691c", "hashed_fxa_uid": "87dbc9a2388d0f1dd7b21ce37fabd77d", "salt": "0aebfa"}"#;
const TOKEN: &str = "eyJub2RlIjogImh0dHA6Ly9sb2NhbGhvc3Q6NTAwMCIsICJ1aWQiOiAxLCAiZnhhX2tpZCI6ICIwMDAwMDAwMDAwOTAwLXFxbyIsICJleHBpcmVzIjogMTcwMDAwMDMwMCwgImZ4YV91aWQiOiAidXNlcjEiLCAiaGFzaGVkX2RldmljZV9pZCI6ICJmZGUyYzBiNjY0NTkyYzZkODk0ZGY2MGQ5ZTY4NjkxYyIsICJoYXNoZWRfZnhhX3VpZCI6ICI4N2RiYzlhMjM4OGQwZjFkZDdiMjFjZTM3ZmFiZDc3ZCIsICJzYWx0IjogIjBhZWJmYSJ9v-1qEBdJHREE0BW89ty2kA7egf8EDUowiH-puMbDwnw=";
const KEY: &str = "QqYf8YMxrySlxDBOCGMFmpzGEn2RR5vjEj4YxwP21Dk=";

#[test]
fn tokenlib_vector() {
    let hex: String = signing_key(SECRET)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "808ca5c7e5a926ee25bb701543bb0069cdf76479e3c3b30c44fb2e60786fbee7"
    );
    assert_eq!(
        mint_payload(SECRET, PAYLOAD, "0aebfa"),
        (TOKEN.into(), KEY.into())
    );
}

#[test]
fn hawk_vector() {
    let header = hawk_header(&Signed {
        id: TOKEN,
        key: KEY,
        ts: 1_700_000_000,
        nonce: "abcdef",
        method: "GET",
        path: "/storage/1.5/1/info/collections?x=1",
        host: "localhost",
        port: 5000,
        payload: None,
    });
    assert!(header.starts_with("Hawk "), "{header}");
    assert!(
        header.contains(r#"mac="laisfElADDItnDISekjtkEb/QbIQgWYQDtuHpbMsw8g=""#),
        "{header}"
    );
    assert!(header.contains(r#"ts="1700000000""#) && header.contains(r#"nonce="abcdef""#));
}
