//! End-to-end: info/* views, quota, configuration, service endpoints, CORS.

mod common;

use common::{assert_resp, hdr, json, ms, raw_num, Server, Session};
use serde_json::json;

#[test]
fn service_endpoints() {
    let server = Server::start("");
    let r = server.request("GET", "/", &[], b"");
    assert_resp(&r, 200, "it works!");
    assert_eq!(hdr(&r, "Content-Type"), "text/html; charset=UTF-8");
    assert!(r.header("X-Weave-Timestamp").is_some() && r.header("X-Timestamp").is_some());

    let r = server.request("GET", "/storage/", &[], b"");
    assert_resp(
        &r,
        200,
        "\"It Works!  SyncStorage is successfully running on this host.\"",
    );
    assert_eq!(hdr(&r, "Content-Type"), "application/json");

    let r = server.request("GET", "/storage/__heartbeat__", &[], b"");
    assert_resp(&r, 200, "OK");
    assert_eq!(hdr(&r, "Content-Type"), "text/plain; charset=UTF-8");

    let r = server.request("GET", "/__heartbeat__", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = json(&r);
    assert_eq!((&v["status"], &v["database"]), (&json!("Ok"), &json!("Ok")));

    // /storage/__lbheartbeat__ was a 404 in Python (a route-name clash, bug 15).
    for p in ["/__lbheartbeat__", "/storage/__lbheartbeat__"] {
        let r = server.request("GET", p, &[], b"");
        assert_resp(&r, 200, "{}");
        assert_eq!(hdr(&r, "Content-Type"), "application/json");
    }

    let r = server.request("HEAD", "/", &[], b"");
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(hdr(&r, "Content-Length"), "9");

    for p in ["/", "/storage/", "/__heartbeat__", "/__lbheartbeat__"] {
        let r = server.request("POST", p, &[], b"");
        assert_resp(&r, 405, "0");
        assert_eq!(hdr(&r, "Allow"), "GET, HEAD");
    }
}

#[test]
fn cors() {
    let server = Server::start("");
    let origin = ("Origin", "https://example.org");
    let r = server.request(
        "OPTIONS",
        "/storage/1.5/1/storage/bookmarks",
        &[
            origin,
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "x-if-unmodified-since"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        hdr(&r, "Access-Control-Allow-Origin"),
        "https://example.org"
    );
    let methods = hdr(&r, "Access-Control-Allow-Methods");
    for m in ["DELETE", "GET", "POST", "PUT"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = hdr(&r, "Access-Control-Allow-Headers").to_ascii_lowercase();
    for h in [
        "authorization",
        "content-type",
        "x-if-modified-since",
        "x-if-unmodified-since",
        "x-weave-records",
        "x-weave-bytes",
        "x-weave-total-records",
        "x-weave-total-bytes",
    ] {
        assert!(allowed.contains(h), "{allowed}");
    }
    let max_age: u64 = hdr(&r, "Access-Control-Max-Age").parse().unwrap();
    assert!(max_age > 0);

    // An actual cross-origin request gets the origin and the readable headers.
    let s = Session::new(&server, 1);
    let r = s.get_with("/info/collections", &[origin]);
    assert_eq!(r.status, 200);
    assert_eq!(
        hdr(&r, "Access-Control-Allow-Origin"),
        "https://example.org"
    );
    let exposed = hdr(&r, "Access-Control-Expose-Headers");
    for h in [
        "X-Last-Modified",
        "X-Weave-Timestamp",
        "X-Weave-Next-Offset",
    ] {
        assert!(exposed.contains(h), "{exposed}");
    }
    // Without an Origin there are no CORS headers.
    let r = s.get("/info/collections");
    assert!(r.header("Access-Control-Allow-Origin").is_none());
}

#[test]
fn info_views_of_a_new_user() {
    let server = Server::start("");
    let s = Session::new(&server, 5);
    for (view, body, records) in [
        ("collections", "{}", "0"),
        ("collection_counts", "{}", "0"),
        ("collection_usage", "{}", "0"),
        ("quota", "[0.0, null]", "2"),
    ] {
        let r = s.get(&format!("/info/{view}"));
        assert_resp(&r, 200, body);
        assert_eq!(hdr(&r, "Content-Type"), "application/json");
        assert_eq!(hdr(&r, "X-Weave-Records"), records, "{view}");
        // Storage-level views of a user without collections: `0.00` (spec §7.1).
        assert_eq!(hdr(&r, "X-Last-Modified"), "0.00", "{view}");
        // GET: X-Weave-Timestamp is "now" (never below the last modification).
        let weave = ms(hdr(&r, "X-Weave-Timestamp"));
        assert!((weave as f64 / 1000.0 - common::now()).abs() < 5.0);
    }
}

#[test]
fn info_views_with_data() {
    let server = Server::start("");
    let s = Session::new(&server, 6);
    let r = s.put("/storage/meta/global", r#"{"payload": "h\u00e9llo"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let t_meta = r.text();
    let r = s.post(
        "/storage/bookmarks",
        r#"[{"id": "a", "payload": "xy"}, {"id": "b", "payload": "abcd"}, {"id": "gone", "payload": "zzzzzzzz", "ttl": 0}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t_bm = raw_num(&r.text(), "modified");
    assert_eq!(hdr(&r, "X-Last-Modified"), t_bm);
    // A collection emptied by item deletes stays in info/collections only.
    assert_eq!(s.put("/storage/tabs/t", r#"{"payload": "t"}"#).status, 200);
    let r = s.delete("/storage/tabs/t");
    assert_eq!(r.status, 200);
    let t_tabs = raw_num(&r.text(), "modified");

    let r = s.get("/info/collections");
    assert_eq!(r.status, 200);
    assert_eq!(hdr(&r, "X-Weave-Records"), "3");
    assert_eq!(hdr(&r, "X-Last-Modified"), t_tabs);
    // Two decimals on the wire, in JSON numbers too.
    let text = r.text();
    assert_eq!(raw_num(&text, "meta"), t_meta);
    assert_eq!(raw_num(&text, "bookmarks"), t_bm);
    assert_eq!(raw_num(&text, "tabs"), t_tabs);
    assert_eq!(json(&r).as_object().unwrap().len(), 3);

    // Expired records are not counted: "gone" has ttl 0.
    let r = s.get("/info/collection_counts");
    assert_eq!(hdr(&r, "X-Weave-Records"), "2");
    assert_eq!(json(&r), json!({"meta": 1, "bookmarks": 2}));

    // Usage counts UTF-8 bytes (héllo = 6; the Python server counted 5
    // characters), in KB.
    let r = s.get("/info/collection_usage");
    assert_eq!(hdr(&r, "X-Weave-Records"), "2");
    assert_eq!(
        json(&r),
        json!({"meta": 6.0 / 1024.0, "bookmarks": 6.0 / 1024.0})
    );

    let r = s.get("/info/quota");
    assert_eq!(json(&r), json!([12.0 / 1024.0, null]));
    assert_eq!(hdr(&r, "X-Weave-Records"), "2");
    assert_eq!(hdr(&r, "X-Last-Modified"), t_tabs);

    // Another user sees none of it.
    let other = Session::new(&server, 7);
    assert_eq!(other.get("/info/collections").text(), "{}");

    // DELETE of all storage: `{}`, X-Last-Modified 0.00, everything gone.
    let r = s.delete("");
    assert_resp(&r, 200, "{}");
    assert_eq!(hdr(&r, "X-Last-Modified"), "0.00");
    assert_eq!(s.get("/info/collections").text(), "{}");
    assert_eq!(s.get("/info/quota").text(), "[0.0, null]");
    // The `/storage` spelling works the same.
    assert_eq!(s.put("/storage/meta/global", "{}").status, 200);
    assert_resp(&s.delete("/storage"), 200, "{}");
    assert_eq!(s.get("/info/collections").text(), "{}");
}

const CONFIG_BATCH: &str = r#"{"max_request_bytes": 2101248, "max_record_payload_bytes": 2097152, "max_post_records": 100, "max_post_bytes": 2097152, "max_total_records": 10000, "max_total_bytes": 209715200}"#;

#[test]
fn configuration_with_and_without_batches() {
    let server = Server::start("");
    // Public, as in Mozilla's server: clients read it before anything else.
    let r = server.request("GET", "/storage/1.5/1/info/configuration", &[], b"");
    assert_resp(&r, 200, CONFIG_BATCH);
    let s = Session::new(&server, 1);
    assert_resp(&s.get("/info/configuration"), 200, CONFIG_BATCH);
    assert_eq!(s.send("PUT", "/info/configuration", &[], b"").status, 405);

    let off = Server::start("[storage]\nbatch_upload_enabled = false\nmax_post_records = 7");
    let r = off.request("GET", "/storage/1.5/1/info/configuration", &[], b"");
    assert_resp(
        &r,
        200,
        r#"{"max_request_bytes": 2101248, "max_record_payload_bytes": 2097152}"#,
    );
    let on = Server::start("[storage]\nmax_post_records = 7\nmax_total_bytes = 300000000");
    let v = json(&on.request("GET", "/1.5/1/info/configuration", &[], b""));
    assert_eq!(v["max_post_records"], 7);
    assert_eq!(v["max_total_bytes"], 300000000);
}

#[test]
fn quota_enforced() {
    let server = Server::start("[storage]\nquota_size = 1000");
    let s = Session::new(&server, 8);
    assert_eq!(s.get("/info/quota").text(), "[0.0, 0.9765625]");

    let r = s.put(
        "/storage/c/a",
        &format!(r#"{{"payload": "{}"}}"#, "x".repeat(200)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // 800 bytes left: round(800 / 1024, 2) KB.
    assert_eq!(hdr(&r, "X-Weave-Quota-Remaining"), "0.78");
    let before = s.get("/info/collections").text();

    let big = format!(r#"{{"payload": "{}"}}"#, "y".repeat(800));
    let r = s.put("/storage/c/b", &big);
    assert_resp(&r, 403, r#"{"status": "quota-exceeded", "errors": []}"#);
    assert_eq!(hdr(&r, "Content-Type"), "application/json");
    let r = s.post(
        "/storage/c",
        &format!(r#"[{{"id": "b", "payload": "{}"}}]"#, "y".repeat(900)),
    );
    assert_eq!(r.status, 403);
    let r = s.post(
        "/storage/c?batch=true",
        &format!(r#"[{{"id": "b", "payload": "{}"}}]"#, "y".repeat(900)),
    );
    assert_eq!(r.status, 403);
    // Nothing was written.
    assert_eq!(s.get("/info/collections").text(), before);
    assert_eq!(s.get_json("/info/collection_counts"), json!({"c": 1}));

    // Under the quota: written, with the remaining KB.
    let r = s.post(
        "/storage/c",
        &format!(r#"[{{"id": "b", "payload": "{}"}}]"#, "y".repeat(700)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(hdr(&r, "X-Weave-Quota-Remaining"), "0.1");
    assert_eq!(s.get("/info/quota").text(), "[0.87890625, 0.9765625]");
    // Deleting frees space again.
    assert_eq!(s.delete("/storage/c/b").status, 200);
    let r = s.put("/storage/c/d", r#"{"payload": "z"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(hdr(&r, "X-Weave-Quota-Remaining"), "0.78");

    // Without a quota no header is sent.
    let free = Server::start("");
    let r = Session::new(&free, 1).put("/storage/c/a", r#"{"payload": "x"}"#);
    assert_eq!(r.status, 200);
    assert!(r.header("X-Weave-Quota-Remaining").is_none());
}
