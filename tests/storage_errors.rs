//! End-to-end: unknown paths and methods, malformed and hostile input. None
//! of it may change stored data or produce a 500, and the server keeps
//! answering afterwards.

mod common;

use common::fcgi_client::CgiResponse;
use common::{assert_resp, hdr, Server, Session, JSON_CT};

/// What a hostile request must not change: the user's data, as the server shows it.
fn snapshot(s: &Session) -> (String, String, String) {
    (
        s.get("/info/collections").text(),
        s.get("/storage/col?full=1&sort=oldest").text(),
        s.get("/info/collection_usage").text(),
    )
}

fn seed(s: &Session) -> (String, String, String) {
    let r = s.post(
        "/storage/col",
        r#"[{"id": "a", "payload": "pa", "sortindex": 1}, {"id": "b", "payload": "pb"}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    snapshot(s)
}

fn still_fine(s: &Session, before: &(String, String, String), what: &str, r: &CgiResponse) {
    assert_ne!(r.status, 500, "{what}: {}", r.text());
    assert!(r.header("X-Weave-Timestamp").is_some(), "{what}");
    assert_eq!(&snapshot(s), before, "{what} changed the data");
}

#[test]
fn unknown_paths_are_404() {
    let server = Server::start("");
    let s = Session::new(&server, 61);
    let before = seed(&s);
    let long_col = format!("/storage/1.5/61/storage/{}", "c".repeat(33));
    let long_uid = "/storage/1.5/12345678901/info/collections".to_string();
    for path in [
        "/nope",
        "/storage",
        "/token",
        "/storage/1.5",
        "/storage/1.5/",
        "/storage/1.6/61/info/collections",
        "/storage/1.5/abc/info/collections",
        "/storage/1.5/-1/info/collections",
        long_uid.as_str(),
        "/storage/1.5/61/info",
        "/storage/1.5/61/info/",
        "/storage/1.5/61/info/nope",
        "/storage/1.5/61/info/collections/x",
        "/storage/1.5/61/nope",
        "/storage/1.5/61/storage/",
        "/storage/1.5/61/storage/col/",
        "/storage/1.5/61/storage/bad!name",
        "/storage/1.5/61/storage/bad%2Fname",
        long_col.as_str(),
        "/storage/1.5/61/storage/col/%zz",
        "/storage/1.5/61/storage/col/%",
        "/storage/1.5/61/storage/col/%C3%A9",
        "/storage/1.5/61/storage/col/%FF",
        "/storage/1.5/61/storage/col/%00",
        "/1.5/61/nope",
        "/2.0/61/info/collections",
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            // Unauthenticated and authenticated alike.
            let r = server.request(method, path, &JSON_CT, b"{}");
            assert_resp(&r, 404, "0");
            assert_eq!(hdr(&r, "Content-Type"), "application/json");
            let r = server.signed(&s.user, method, path, &JSON_CT, b"{}");
            assert_resp(&r, 404, "0");
        }
    }
    assert_eq!(snapshot(&s), before);
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let server = Server::start("");
    let s = Session::new(&server, 62);
    let before = seed(&s);
    for (rest, methods, allow) in [
        ("", &["GET", "HEAD", "PUT", "POST", "PATCH"][..], "DELETE"),
        ("/storage", &["GET", "HEAD", "PUT", "POST"][..], "DELETE"),
        (
            "/storage/col",
            &["PUT", "PATCH", "BREW"][..],
            "GET, HEAD, POST, DELETE",
        ),
        (
            "/storage/col/a",
            &["POST", "PATCH"][..],
            "GET, HEAD, PUT, DELETE",
        ),
        (
            "/info/collections",
            &["PUT", "POST", "DELETE"][..],
            "GET, HEAD",
        ),
        ("/info/quota", &["DELETE"][..], "GET, HEAD"),
        ("/info/configuration", &["POST"][..], "GET, HEAD"),
    ] {
        for method in methods {
            let r = s.send(method, rest, &JSON_CT, b"[]");
            let body = if *method == "HEAD" { "" } else { "0" };
            assert_resp(&r, 405, body);
            assert_eq!(hdr(&r, "Allow"), allow, "{method} {rest}");
            assert_eq!(hdr(&r, "Content-Type"), "application/json");
            // Unauthenticated: the same answer.
            let r = server.request(method, &s.path(rest), &JSON_CT, b"[]");
            assert_eq!(
                (r.status, hdr(&r, "Allow")),
                (405, allow),
                "{method} {rest}"
            );
        }
    }
    assert_eq!(snapshot(&s), before);
}

#[test]
fn hostile_queries_and_bodies() {
    let server = Server::start("");
    let s = Session::new(&server, 63);
    let before = seed(&s);

    // Malformed query values: 400 code 1 (or a harmless answer), never 500.
    let long_ids = vec!["x"; 5000].join(",");
    for (q, status) in [
        // Bytes that are not UTF-8 decode to U+FFFD, which no id accepts.
        ("ids=%FF", 400),
        ("ids=%C3%A9", 400),
        ("ids=a%00", 400),
        ("newer=%FF", 400),
        ("sort=%FF%FE", 400),
        ("limit=99999999999999999999", 400),
        ("limit=18446744073709551615", 200),
        ("limit=%2B5", 200),  // Python int() accepts "+5" too
        ("newer=1e308", 400), // beyond any representable timestamp
        ("newer=1e999", 400),
        ("older=0x10", 400),
        ("sort=index&offset=9223372036854775807", 200),
        ("offset=99999999999999999:99999999999999999", 200),
        ("offset=99999999999999999999:1", 400),
        ("offset=9999999999999:9999999999999", 200),
        ("full=%ZZ", 200),
        ("%ZZ=1", 200),
        ("&&&=&=", 200),
    ] {
        let r = s.get(&format!("/storage/col?{q}"));
        assert_eq!(r.status, status, "{q}: {}", r.text());
        if status == 400 {
            assert_eq!(r.text(), "1", "{q}");
        }
        still_fine(&s, &before, q, &r);
    }
    let r = s.get(&format!("/storage/col?ids={long_ids}"));
    assert_resp(&r, 400, "1");
    let r = s.delete(&format!("/storage/col?ids={long_ids}"));
    assert_resp(&r, 400, "1");
    still_fine(&s, &before, "long ids", &r);

    // Raw non-UTF-8 bytes in the query or path (no client can sign these).
    for uri in [
        &b"/storage/1.5/63/storage/col?ids=\xff\xfe"[..],
        b"/storage/1.5/63/storage/col?\xff=\xff",
        b"/storage/1.5/63/info/collections?\xc3",
    ] {
        let r = server.request_raw_uri("GET", uri, &[], b"");
        assert_resp(&r, 401, "0");
        still_fine(&s, &before, "raw query", &r);
    }
    let r = server.request_raw_uri("GET", b"/storage/1.5/63/storage/col/\xff", &[], b"");
    assert_resp(&r, 404, "0");

    // Hostile bodies.
    let deep_list = "[".repeat(100_000);
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let deep_in_bso = format!(
        "[{{\"id\": \"a\", \"payload\": {}}}]",
        "[".repeat(10_000) + &"]".repeat(10_000)
    );
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("deep list", deep_list.clone().into_bytes()),
        ("deep object", deep_obj.clone().into_bytes()),
        ("deep in record", deep_in_bso.into_bytes()),
        (
            "invalid utf-8",
            b"[{\"id\": \"a\", \"payload\": \"\xff\xfe\"}]".to_vec(),
        ),
        ("nul", b"[{\"id\": \"a\"}]\0".to_vec()),
        (
            "huge number",
            b"[{\"id\": \"a\", \"sortindex\": 1e999}]".to_vec(),
        ),
        ("bom", b"\xef\xbb\xbf[]".to_vec()),
        (
            "lone surrogate",
            br#"[{"id": "a", "payload": "\ud800"}]"#.to_vec(),
        ),
    ];
    for (what, body) in &bodies {
        for (method, rest) in [
            ("POST", "/storage/col"),
            ("POST", "/storage/col?batch=true"),
            ("PUT", "/storage/col/a"),
        ] {
            let r = s.send(method, rest, &JSON_CT, body);
            assert_eq!(r.status, 400, "{what} {method} {rest}: {}", r.text());
            assert!(
                matches!(r.text().as_str(), "6" | "8"),
                "{what}: {}",
                r.text()
            );
            still_fine(&s, &before, what, &r);
        }
        let r = s.send(
            "POST",
            "/storage/col",
            &[("Content-Type", "application/newlines")],
            body,
        );
        assert_eq!(r.status, 400, "{what} newlines: {}", r.text());
        still_fine(&s, &before, what, &r);
    }
    // Big but valid numbers are just invalid fields.
    let r = s.post(
        "/storage/col",
        r#"[{"id": "n", "sortindex": 1e300, "ttl": 99999999999999999999999}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        common::json(&r)["failed"],
        serde_json::json!({"n": "invalid sortindex"})
    );
    still_fine(&s, &before, "big numbers", &r);
    // Header values that are not numbers.
    for (h, v) in [
        ("X-If-Modified-Since", "1e999"),
        ("X-If-Unmodified-Since", "\u{1}"),
        ("X-Weave-Records", "99999999999999999999999"),
    ] {
        let r = s.send("POST", "/storage/col", &[JSON_CT[0], (h, v)], b"[]");
        assert_eq!(r.status, 400, "{h}: {v:?} {}", r.text());
        still_fine(&s, &before, h, &r);
    }
}

#[test]
fn oversized_bodies_are_413() {
    let server = Server::start(
        "[storage]\nmax_request_bytes = 1000\nmax_post_bytes = 900\nmax_record_payload_bytes = 900",
    );
    let s = Session::new(&server, 64);
    let before = seed(&s);
    let big = format!(r#"[{{"id": "big", "payload": "{}"}}]"#, "x".repeat(2000));
    for (method, rest) in [
        ("POST", "/storage/col"),
        ("POST", "/storage/col?batch=true&commit=true"),
        ("PUT", "/storage/col/big"),
    ] {
        let r = s.send(method, rest, &JSON_CT, big.as_bytes());
        assert_eq!(r.status, 413, "{method} {rest}: {}", r.text());
        assert_eq!(hdr(&r, "Content-Type"), "application/json");
        still_fine(&s, &before, rest, &r);
        // Also without credentials: refused before anything is read.
        let r = server.request(method, &s.path(rest), &JSON_CT, big.as_bytes());
        assert_eq!(r.status, 413);
    }
    // A body of exactly max_request_bytes is fine.
    let fill = 1000 - r#"[{"id": "c", "payload": ""}]"#.len();
    let exact = format!(r#"[{{"id": "c", "payload": "{}"}}]"#, "y".repeat(fill));
    assert_eq!(exact.len(), 1000);
    let r = s.post("/storage/col", &exact);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        common::json(&r)["failed"],
        serde_json::json!({"c": "payload too large"})
    );
    let r = s.post("/storage/col", r#"[{"id": "c", "payload": "ok"}]"#);
    assert_eq!(r.status, 200);
    assert_eq!(common::json(&r)["success"], serde_json::json!(["c"]));
    // The connection-level limit did not hurt later requests.
    assert_eq!(s.get("/info/collections").status, 200);
}
