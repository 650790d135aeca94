//! End-to-end: X-If-Modified-Since, X-If-Unmodified-Since, X-Weave-Timestamp.

mod common;

use common::{assert_resp, hdr, json, ms, raw_num, Server, Session};
use serde_json::json;

/// `t` seconds minus 10 ms, as a wire timestamp.
fn before(t: &str) -> String {
    let m = ms(t) - 10;
    format!("{}.{:02}", m / 1000, (m % 1000) / 10)
}

#[test]
fn if_modified_since_on_reads() {
    let server = Server::start("");
    let s = Session::new(&server, 41);
    let t = s.put("/storage/col/a", r#"{"payload": "x"}"#).text();
    let t_other = s.put("/storage/other/b", r#"{"payload": "y"}"#).text();
    let storage_ts = std::cmp::max_by_key(t.clone(), t_other.clone(), |v| ms(v));

    for (rest, ts) in [
        ("/storage/col", t.as_str()),
        ("/storage/col?full=1", t.as_str()),
        ("/storage/col/a", t.as_str()),
        ("/info/collections", storage_ts.as_str()),
        ("/info/collection_counts", storage_ts.as_str()),
        ("/info/quota", storage_ts.as_str()),
    ] {
        // Not newer than the header: 304, no body, no Content-Type.
        for value in [
            ts.to_string(),
            format!("{:.3}", (ms(ts) - 5) as f64 / 1000.0),
            "99999999999".into(),
        ] {
            let r = s.get_with(rest, &[("X-If-Modified-Since", &value)]);
            assert_eq!(r.status, 304, "{rest} {value}: {}", r.text());
            assert!(r.body.is_empty());
            assert!(r.header("Content-Type").is_none(), "{:?}", r.headers);
            assert_eq!(hdr(&r, "X-Last-Modified"), ts, "{rest}");
            // GET: X-Weave-Timestamp is at least the request time.
            assert!(ms(hdr(&r, "X-Weave-Timestamp")) >= ms(ts));
        }
        // Newer: the normal answer.
        let r = s.get_with(rest, &[("X-If-Modified-Since", &before(ts))]);
        assert_eq!(r.status, 200, "{rest}");
        assert_eq!(hdr(&r, "X-Last-Modified"), ts, "{rest}");
    }
    // A missing item or collection has timestamp 0.
    let r = s.get_with("/storage/col/nope", &[("X-If-Modified-Since", "0")]);
    assert_eq!((r.status, hdr(&r, "X-Last-Modified")), (304, "0"));
    let r = s.get_with("/storage/nocol", &[("X-If-Modified-Since", "0")]);
    assert_eq!((r.status, hdr(&r, "X-Last-Modified")), (304, "0"));
}

#[test]
fn if_unmodified_since_everywhere() {
    let server = Server::start("");
    let s = Session::new(&server, 42);
    let t_a = s.put("/storage/col/a", r#"{"payload": "x"}"#).text();
    let t = s.put("/storage/col/b", r#"{"payload": "y"}"#).text();
    assert!(ms(&t) > ms(&t_a));
    let snapshot = || {
        (
            s.get("/info/collections").text(),
            s.get("/storage/col?full=1").text(),
        )
    };
    let unchanged = snapshot();

    let ct = ("Content-Type", "application/json");
    let old_col = before(&t);
    let old_a = before(&t_a);
    // (method, path, body, the resource timestamp the server compares)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("GET", "/storage/col".into(), "", &t),
        ("GET", "/storage/col/a".into(), "", &t_a),
        ("GET", "/info/collections".into(), "", &t),
        (
            "PUT",
            "/storage/col/a".into(),
            r#"{"payload": "new"}"#,
            &t_a,
        ),
        // POST compares the collection: an unrelated record's change counts.
        (
            "POST",
            "/storage/col".into(),
            r#"[{"id": "a", "payload": "new"}]"#,
            &t,
        ),
        (
            "POST",
            "/storage/col?batch=true".into(),
            r#"[{"id": "a"}]"#,
            &t,
        ),
        ("DELETE", "/storage/col".into(), "", &t),
        ("DELETE", "/storage/col?ids=a".into(), "", &t),
        ("DELETE", "/storage/col/a".into(), "", &t_a),
        ("DELETE", "".into(), "", &t),
        ("DELETE", "/storage".into(), "", &t),
    ];
    for (method, rest, body, ts) in &cases {
        let value = if *ts == t { &old_col } else { &old_a };
        let mut headers = vec![("X-If-Unmodified-Since", value.as_str())];
        if !body.is_empty() {
            headers.push(ct);
        }
        let r = s.send(method, rest, &headers, body.as_bytes());
        assert_resp(&r, 412, "0");
        assert_eq!(hdr(&r, "Content-Type"), "application/json");
        assert_eq!(hdr(&r, "X-Last-Modified"), *ts, "{method} {rest}");
        if *method != "GET" {
            // Writes: X-Weave-Timestamp follows X-Last-Modified, even on 412.
            assert_eq!(hdr(&r, "X-Weave-Timestamp"), *ts, "{method} {rest}");
        }
    }
    assert_eq!(snapshot(), unchanged);

    // Equal (or later) timestamps pass.
    let r = s.get_with("/storage/col", &[("X-If-Unmodified-Since", &t)]);
    assert_eq!(r.status, 200);
    let r = s.send(
        "PUT",
        "/storage/col/a",
        &[ct, ("X-If-Unmodified-Since", &t_a)],
        br#"{"payload": "v2"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t2 = r.text();
    let r = s.send(
        "POST",
        "/storage/col",
        &[ct, ("X-If-Unmodified-Since", &t2)],
        br#"[{"id": "c"}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t3 = raw_num(&r.text(), "modified");
    let r = s.send(
        "DELETE",
        "/storage/col/c",
        &[("X-If-Unmodified-Since", &t3)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Firefox's first upload: X-If-Unmodified-Since: 0 on a new collection.
    let r = s.send(
        "PUT",
        "/storage/meta/global",
        &[ct, ("X-If-Unmodified-Since", "0")],
        br#"{"payload": "m"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.send(
        "POST",
        "/storage/tabs?batch=true&commit=true",
        &[ct, ("X-If-Unmodified-Since", "0")],
        br#"[{"id": "t"}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // ...and a second time it fails.
    let r = s.send(
        "PUT",
        "/storage/meta/global",
        &[ct, ("X-If-Unmodified-Since", "0")],
        br#"{"payload": "m2"}"#,
    );
    assert_eq!(r.status, 412);
    assert_eq!(s.get_json("/storage/meta/global")["payload"], "m");
}

#[test]
fn bad_precondition_headers() {
    let server = Server::start("");
    let s = Session::new(&server, 43);
    let t = s.put("/storage/col/a", r#"{"payload": "x"}"#).text();
    let unchanged = s.get("/storage/col?full=1").text();
    let ct = ("Content-Type", "application/json");
    for headers in [
        vec![("X-If-Modified-Since", "1"), ("X-If-Unmodified-Since", "1")],
        vec![("X-If-Modified-Since", "abc")],
        vec![("X-If-Modified-Since", "-1")],
        vec![("X-If-Unmodified-Since", "")],
        vec![("X-If-Unmodified-Since", "nan")],
        vec![("X-If-Unmodified-Since", "1,5")],
        vec![("X-If-Unmodified-Since", "-0.5")],
    ] {
        for (method, rest, body) in [
            ("GET", "/storage/col", ""),
            ("GET", "/storage/col/a", ""),
            ("GET", "/info/collections", ""),
            ("PUT", "/storage/col/a", r#"{"payload": "y"}"#),
            ("POST", "/storage/col", r#"[{"id": "a", "payload": "y"}]"#),
            ("DELETE", "/storage/col/a", ""),
            ("DELETE", "/storage/col", ""),
        ] {
            let mut h = headers.clone();
            h.push(ct);
            let r = s.send(method, rest, &h, body.as_bytes());
            assert_resp(&r, 400, "1");
        }
    }
    assert_eq!(s.get("/storage/col?full=1").text(), unchanged);
    // Exponent forms are accepted.
    let r = s.get_with("/storage/col", &[("X-If-Modified-Since", "1e3")]);
    assert_eq!(r.status, 200);
    assert_eq!(hdr(&r, "X-Last-Modified"), t);
}

#[test]
fn if_modified_since_is_ignored_on_writes() {
    // Python answered 304 and silently dropped the write (bug 9); a
    // precondition that only makes sense for reads does not block writes here.
    let server = Server::start("");
    let s = Session::new(&server, 44);
    let future = [
        ("X-If-Modified-Since", "99999999999"),
        ("Content-Type", "application/json"),
    ];
    let r = s.send("PUT", "/storage/col/a", &future, br#"{"payload": "x"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.send(
        "POST",
        "/storage/col",
        &future,
        br#"[{"id": "b", "payload": "y"}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.send(
        "POST",
        "/storage/col?batch=true&commit=true",
        &future,
        br#"[{"id": "c"}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        s.get_json("/storage/col?sort=oldest"),
        json!(["a", "b", "c"])
    );
    let r = s.send("DELETE", "/storage/col/a", &future, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.send("DELETE", "/storage/col?ids=b", &future, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get_json("/storage/col"), json!(["c"]));
    let r = s.send("DELETE", "/storage/col", &future, b"");
    assert_eq!(r.status, 200);
    let r = s.send("DELETE", "/storage", &future, b"");
    assert_eq!(r.status, 200);
}

#[test]
fn weave_timestamp_rules() {
    let server = Server::start("");
    let s = Session::new(&server, 45);
    let started = common::now();
    // Always two decimals, on every response, errors included.
    for r in [
        s.get("/info/collections"),
        s.get("/storage/col/none"),
        server.request("GET", "/nope", &[], b""),
        server.request("GET", "/storage/1.5/45/info/collections", &[], b""),
    ] {
        let w = ms(hdr(&r, "X-Weave-Timestamp")) as f64 / 1000.0;
        assert!(w >= started - 0.01 && w < common::now() + 0.02, "{w}");
        let x: i64 = hdr(&r, "X-Timestamp").parse().unwrap();
        assert!((x as f64 - common::now()).abs() < 5.0);
    }
    // PUT/POST/DELETE: exactly X-Last-Modified.
    let r = s.put("/storage/col/a", "{}");
    assert_eq!(hdr(&r, "X-Weave-Timestamp"), hdr(&r, "X-Last-Modified"));
    let r = s.post("/storage/col", r#"[{"id": "b"}]"#);
    assert_eq!(hdr(&r, "X-Weave-Timestamp"), hdr(&r, "X-Last-Modified"));
    let last = raw_num(&r.text(), "modified");
    // An uncommitted batch reports the collection's (older) timestamp.
    common::wait_past(ms(&last) as f64 / 1000.0);
    let r = s.post("/storage/col?batch=true", r#"[{"id": "c"}]"#);
    assert_eq!(r.status, 202);
    assert_eq!(hdr(&r, "X-Last-Modified"), last);
    assert_eq!(hdr(&r, "X-Weave-Timestamp"), last);
    // GET: max(request time, X-Last-Modified).
    let r = s.get("/storage/col");
    assert!(ms(hdr(&r, "X-Weave-Timestamp")) > ms(&last));
    // A write with nothing to report (X-Last-Modified 0 would be "absent")
    // uses the time the response leaves.
    let r = s.delete("/storage");
    assert_eq!(hdr(&r, "X-Last-Modified"), "0.00");
    assert!(ms(hdr(&r, "X-Weave-Timestamp")) > ms(&last));
    assert_eq!(json(&r), json!({}));
}
