//! A first end-to-end pass: the real binary over FastCGI, one full sync flow.

mod common;

use common::{json, Server};

#[test]
fn put_get_post_delete_flow() {
    let server = Server::start("");
    let user = server.user(42);
    let p = |rest: &str| Server::storage_path(42, rest);

    let r = server.signed(&user, "GET", &p("/info/collections"), &[], b"");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    assert_eq!(r.text(), "{}");
    assert!(r.header("X-Weave-Timestamp").is_some());

    let ct = [("Content-Type", "application/json")];
    let r = server.signed(
        &user,
        "PUT",
        &p("/storage/meta/global"),
        &ct,
        br#"{"payload": "hello", "sortindex": 5}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ts = r.text();
    assert_eq!(r.header("X-Last-Modified"), Some(ts.as_str()));

    let r = server.signed(&user, "GET", &p("/storage/meta/global"), &[], b"");
    assert_eq!(r.status, 200);
    let v = json(&r);
    assert_eq!(v["payload"], "hello");
    assert_eq!(v["sortindex"], 5);

    let body = br#"[{"id": "a", "payload": "x"}, {"id": "b", "payload": "y"}, {"id": "bad id\u0001", "payload": "z"}]"#;
    let r = server.signed(
        &user,
        "POST",
        &p("/storage/bookmarks?batch=true&commit=true"),
        &ct,
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = json(&r);
    assert_eq!(v["success"], serde_json::json!(["a", "b"]));
    assert_eq!(v["failed"]["bad id\u{1}"], "invalid id");

    let r = server.signed(
        &user,
        "GET",
        &p("/storage/bookmarks?full=1&limit=1"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Weave-Records"), Some("1"));
    let next = r
        .header("X-Weave-Next-Offset")
        .expect("next offset")
        .to_string();
    let r = server.signed(
        &user,
        "GET",
        &p(&format!("/storage/bookmarks?limit=1&offset={next}")),
        &[],
        b"",
    );
    assert_eq!(json(&r).as_array().unwrap().len(), 1);
    assert!(r.header("X-Weave-Next-Offset").is_none());

    let r = server.signed(&user, "GET", &p("/info/collections"), &[], b"");
    let v = json(&r);
    assert!(v["bookmarks"].is_number() && v["meta"].is_number(), "{v}");

    let r = server.signed(&user, "DELETE", &p(""), &[], b"");
    assert_eq!(r.status, 200);
    let r = server.signed(&user, "GET", &p("/info/collections"), &[], b"");
    assert_eq!(r.text(), "{}");

    let other = server.user(43);
    let r = server.signed(&other, "GET", &p("/info/collections"), &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), "0");
}
