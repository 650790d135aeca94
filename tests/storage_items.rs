//! End-to-end: `/storage/{collection}/{id}`: PUT, GET, DELETE, ids, validation.

mod common;

use common::{assert_resp, hdr, json, ms, raw_num, Server, Session};
use serde_json::json;

#[test]
fn put_get_delete() {
    let server = Server::start("");
    let s = Session::new(&server, 21);
    assert_resp(&s.get("/storage/col/a"), 404, "0");

    let r = s.put("/storage/col/a", r#"{"payload": "one", "sortindex": 5}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let t1 = r.text();
    ms(&t1); // a bare two-decimal number
    assert_eq!(hdr(&r, "Content-Type"), "application/json");
    assert_eq!(hdr(&r, "X-Last-Modified"), t1);
    // Writes: X-Weave-Timestamp is the write's timestamp.
    assert_eq!(hdr(&r, "X-Weave-Timestamp"), t1);

    let r = s.get("/storage/col/a");
    assert_eq!(r.status, 200);
    assert_eq!(hdr(&r, "X-Last-Modified"), t1);
    assert_eq!(
        r.text(),
        format!(r#"{{"id": "a", "modified": {t1}, "payload": "one", "sortindex": 5}}"#)
    );

    // A second PUT replaces the given fields only.
    let r = s.put("/storage/col/a", r#"{"payload": "two"}"#);
    let t2 = r.text();
    assert!(ms(&t2) > ms(&t1));
    let v = s.get_json("/storage/col/a");
    assert_eq!((&v["payload"], &v["sortindex"]), (&json!("two"), &json!(5)));
    // A sortindex-only PUT keeps payload and modified.
    let t3 = s.put("/storage/col/a", r#"{"sortindex": 1}"#).text();
    assert!(ms(&t3) > ms(&t2));
    let r = s.get("/storage/col/a");
    assert_eq!(raw_num(&r.text(), "modified"), t2);
    assert_eq!(json(&r)["sortindex"], 1);
    // `null` means "not given".
    s.put("/storage/col/a", r#"{"sortindex": null, "ttl": null}"#);
    assert_eq!(s.get_json("/storage/col/a")["sortindex"], 1);

    // The URL id wins over a (valid) body id; the collection is created on demand.
    let r = s.put(
        "/storage/other/x",
        r#"{"id": "y", "payload": "p", "modified": 1, "collection": "z", "payload_size": 77}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get_json("/storage/other"), json!(["x"]));
    assert_eq!(
        s.get_json("/info/collection_usage"),
        json!({"col": 3.0 / 1024.0, "other": 1.0 / 1024.0})
    );
    // A new record without payload stores "", and text/plain is accepted.
    let r = s.send(
        "PUT",
        "/storage/other/np",
        &[("Content-Type", "text/plain")],
        br#"{"sortindex": 3}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(s.get_json("/storage/other/np")["payload"], "");
    // A ttl beyond a year is ignored (the record never expires).
    assert_eq!(
        s.put(
            "/storage/other/long",
            r#"{"payload": "x", "ttl": 31536001}"#
        )
        .status,
        200
    );
    assert_eq!(s.get("/storage/other/long").status, 200);

    // DELETE: the new collection timestamp, in the body and in X-Last-Modified
    // (our decision: Python sent X-Last-Modified 0 here).
    let r = s.delete("/storage/col/a");
    assert_eq!(r.status, 200, "{}", r.text());
    let t4 = raw_num(&r.text(), "modified");
    assert_eq!(r.text(), format!("{{\"modified\": {t4}}}"));
    assert!(ms(&t4) > ms(&t3));
    assert_eq!(hdr(&r, "X-Last-Modified"), t4);
    assert_eq!(hdr(&r, "X-Weave-Timestamp"), t4);
    assert_resp(&s.get("/storage/col/a"), 404, "0");
    assert_resp(&s.delete("/storage/col/a"), 404, "0");
    assert_resp(&s.delete("/storage/nocol/a"), 404, "0");
    assert_resp(&s.get("/storage/nocol/a"), 404, "0");
    // The emptied collection keeps its (new) timestamp.
    assert_eq!(raw_num(&s.get("/info/collections").text(), "col"), t4);
}

#[test]
fn ids_in_urls() {
    let server = Server::start("");
    let s = Session::new(&server, 22);
    let id64 = "i".repeat(64);
    for (path, id) in [
        ("a/b", "a/b"),
        ("a%2Fc", "a/c"),
        ("a%2fd//e", "a/d//e"),
        ("with%20space", "with space"),
        ("x~!$&'()*+,;=:@", "x~!$&'()*+,;=:@"),
        ("%7Bbraces%7D", "{braces}"),
        (id64.as_str(), id64.as_str()),
    ] {
        let r = s.put(
            &format!("/storage/ids/{path}"),
            &format!(r#"{{"payload": "{path}"}}"#),
        );
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let v = s.get_json(&format!("/storage/ids/{path}"));
        assert_eq!(v["id"], id, "{path}");
        assert_eq!(v["payload"], path);
        // The same record through the listing.
        let encoded: String = id
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let list = s.get_json(&format!("/storage/ids?ids={encoded}"));
        // ids= splits on commas after decoding, so such an id cannot be listed by id.
        if !id.contains(',') {
            assert_eq!(list, json!([id]), "{path}");
        }
    }
    assert_eq!(s.get_json("/info/collection_counts"), json!({"ids": 7}));
    for bad in [
        "i".repeat(65),
        "%zz".into(),
        "%C3%A9".into(),
        "tab%09".into(),
        "nl%0A".into(),
        "nul%00".into(),
        "".into(),
    ] {
        let r = s.put(&format!("/storage/ids/{bad}"), r#"{"payload": "x"}"#);
        assert_resp(&r, 404, "0");
        assert_eq!(s.get(&format!("/storage/ids/{bad}")).status, 404, "{bad}");
    }
    // Collection names: [a-zA-Z0-9._-]{1,32}.
    assert_eq!(
        s.put(&format!("/storage/{}/a", "c".repeat(32)), "{}")
            .status,
        200
    );
    assert_resp(
        &s.put(&format!("/storage/{}/a", "c".repeat(33)), "{}"),
        404,
        "0",
    );
    assert_resp(&s.put("/storage/bad!name/a", "{}"), 404, "0");
    assert_eq!(s.put("/storage/Ok.name_-1/a", "{}").status, 200);
    assert_eq!(
        s.get_json("/info/collection_counts")
            .as_object()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn put_validation() {
    let server = Server::start("");
    let s = Session::new(&server, 23);
    assert_eq!(
        s.put("/storage/col/a", r#"{"payload": "keep"}"#).status,
        200
    );
    let before = s.get("/info/collections").text();
    for (body, code) in [
        ("", "6"),
        ("{", "6"),
        ("{\"payload\": \"x\"} {}", "6"),
        ("[]", "8"),
        ("\"x\"", "8"),
        ("null", "8"),
        (r#"{"payload": 5}"#, "8"),
        (r#"{"payload": ["x"]}"#, "8"),
        (r#"{"payload": {"a": 1}}"#, "8"),
        (r#"{"sortindex": "2.6"}"#, "8"),
        (r#"{"sortindex": 1000000000}"#, "8"),
        (r#"{"sortindex": -1000000000}"#, "8"),
        (r#"{"ttl": -1}"#, "8"),
        (r#"{"ttl": "x"}"#, "8"),
        (r#"{"foo": "bar"}"#, "8"),
        (r#"{"id": 5}"#, "8"),
        (r#"{"id": ""}"#, "8"),
        (r#"{"id": "a\n"}"#, "8"),
    ] {
        for rest in ["/storage/col/a", "/storage/col/new"] {
            let r = s.put(rest, body);
            assert_resp(&r, 400, code);
        }
    }
    for (ct, shown) in [
        (Some("application/newlines"), "application/newlines"),
        (Some("text/html; charset=utf-8"), "text/html; charset=utf-8"),
        (None, ""),
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("Content-Type", c)).into_iter().collect();
        let r = s.send("PUT", "/storage/col/a", &headers, br#"{"payload": "x"}"#);
        assert_eq!(r.status, 415, "{ct:?}");
        assert_eq!(
            json(&r)["errors"][0]["description"],
            format!("Unsupported Media Type: {shown}")
        );
    }
    // Nothing changed.
    assert_eq!(s.get("/info/collections").text(), before);
    assert_eq!(s.get_json("/storage/col/a")["payload"], "keep");
    assert_resp(&s.get("/storage/col/new"), 404, "0");
    // Edge values that are valid.
    for body in [
        r#"{"sortindex": 999999999}"#,
        r#"{"sortindex": -999999999}"#,
        r#"{"sortindex": "12"}"#,
        r#"{"ttl": 0}"#,
        r#"{"payload": ""}"#,
    ] {
        assert_eq!(s.put("/storage/col/edge", body).status, 200, "{body}");
    }
}

#[test]
fn known_bad_crypto_iv() {
    let server = Server::start("");
    let s = Session::new(&server, 24);
    let bad = json!({"payload": "{\"ciphertext\": \"x\", \"IV\":  \"AAAAAAAAAAAAAAAAAAAAAA==\", \"hmac\": \"y\"}"});
    assert_resp(&s.put("/storage/crypto/keys", &bad.to_string()), 400, "8");
    let mut item = bad.clone();
    item["id"] = json!("keys");
    assert_resp(
        &s.post("/storage/crypto", &json!([item]).to_string()),
        400,
        "8",
    );
    assert_resp(
        &s.post(
            "/storage/crypto?batch=true&commit=true",
            &json!([item]).to_string(),
        ),
        400,
        "8",
    );
    assert_eq!(s.get("/info/collections").text(), "{}");
    // Only in crypto, and only that IV.
    assert_eq!(s.put("/storage/meta/keys", &bad.to_string()).status, 200);
    let good = json!({"payload": "{\"IV\": \"AAAAAAAAAAAAAAAAAAAAAB==\"}"});
    assert_eq!(s.put("/storage/crypto/keys", &good.to_string()).status, 200);
}

#[test]
fn rewriting_an_expired_record_revives_it() {
    let server = Server::start("");
    let s = Session::new(&server, 25);
    // ttl 0: expired at once, but the row stays until purged.
    assert_eq!(
        s.put(
            "/storage/col/a",
            r#"{"payload": "old", "sortindex": 4, "ttl": 0}"#
        )
        .status,
        200
    );
    assert_resp(&s.get("/storage/col/a"), 404, "0");
    // Python kept the old, expired ttl and the record stayed invisible after
    // a "successful" PUT (bug 12); here the rewrite is a new record.
    let r = s.put("/storage/col/a", r#"{"payload": "new"}"#);
    assert_eq!(r.status, 200);
    let t = r.text();
    let r = s.get("/storage/col/a");
    assert_eq!(r.status, 200, "{}", r.text());
    // Nothing of the expired row leaks into the new one.
    assert_eq!(
        r.text(),
        format!(r#"{{"id": "a", "modified": {t}, "payload": "new"}}"#)
    );

    // The same through POST, and with only a sortindex.
    s.post(
        "/storage/col",
        r#"[{"id": "b", "payload": "old", "ttl": 0}, {"id": "c", "payload": "old", "ttl": 0}]"#,
    );
    assert_eq!(s.get_json("/storage/col"), json!(["a"]));
    let r = s.post(
        "/storage/col",
        r#"[{"id": "b", "payload": "new"}, {"id": "c", "sortindex": 2}]"#,
    );
    assert_eq!(json(&r)["success"], json!(["b", "c"]));
    assert_eq!(
        s.get_json("/storage/col?sort=oldest"),
        json!(["a", "b", "c"])
    );
    assert_eq!(s.get_json("/storage/col/c")["payload"], "");
    assert_eq!(
        s.get_json("/info/collection_usage"),
        json!({"col": 6.0 / 1024.0})
    );
}
