//! End-to-end: batch uploads (`?batch=`, `?commit=`), enabled and disabled.

mod common;

use base64::Engine as _;
use common::{assert_resp, hdr, json, ms, raw_num, Server, Session};
use serde_json::json;

fn start(s: &Session, col: &str, body: &str) -> String {
    let r = s.post(&format!("/storage/{col}?batch=true"), body);
    assert_eq!(r.status, 202, "{}", r.text());
    let v = json(&r);
    assert!(v.get("modified").is_none(), "{v}");
    v["batch"].as_str().expect("batch id").to_string()
}

#[test]
fn create_append_commit() {
    let server = Server::start("");
    let s = Session::new(&server, 31);
    let r = s.post(
        "/storage/col?batch=true",
        r#"[{"id": "a", "payload": "pa", "sortindex": 1}, {"id": "bad", "ttl": -1}]"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let v = json(&r);
    let batch = v["batch"].as_str().unwrap().to_string();
    assert_eq!(
        v,
        json!({"success": ["a"], "failed": {"bad": "invalid ttl"}, "batch": batch})
    );
    // The id is base64 of a decimal number: request ms + uid % 10.
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&batch)
        .unwrap();
    let id: i64 = String::from_utf8(decoded).unwrap().parse().unwrap();
    assert_eq!(id % 10, 1);
    assert!(((id / 1000) as f64 - common::now()).abs() < 10.0);
    // Nothing is visible yet; the collection does not exist yet.
    assert_eq!(hdr(&r, "X-Last-Modified"), "0");
    assert_eq!(s.get_json("/storage/col"), json!([]));
    assert_eq!(s.get("/info/collections").text(), "{}");

    // Append (the raw decimal id works too).
    let r = s.post(
        &format!("/storage/col?batch={batch}"),
        r#"[{"id": "b", "payload": "pb"}, {"id": "a", "sortindex": 2}]"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        json(&r),
        json!({"success": ["b", "a"], "failed": {}, "batch": batch})
    );
    let r = s.post(
        &format!("/storage/col?batch={id}"),
        r#"[{"id": "c", "payload": "pc", "ttl": 100}]"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(json(&r)["batch"], batch);
    assert_eq!(s.get_json("/storage/col"), json!([]));

    // Commit with more items: success lists this request's ids only.
    let r = s.post(
        &format!("/storage/col?batch={batch}&commit=true"),
        r#"[{"id": "d", "payload": "pd"}, {"id": "e", "payload": 5}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t = raw_num(&r.text(), "modified");
    assert_eq!(hdr(&r, "X-Last-Modified"), t);
    assert_eq!(hdr(&r, "X-Weave-Timestamp"), t);
    let v = json(&r);
    assert_eq!(
        v,
        json!({"success": ["d"], "failed": {"e": "payload not a string"}, "modified": v["modified"]})
    );
    // All committed records share one modified; a later append of an id
    // overwrote only the fields it gave.
    let m = v["modified"].as_f64().unwrap();
    let mut all = s
        .get_json("/storage/col?full=1")
        .as_array()
        .unwrap()
        .clone();
    all.sort_by_key(|v| v["id"].as_str().unwrap().to_string());
    assert_eq!(
        json!(all),
        json!([
            {"id": "a", "modified": m, "payload": "pa", "sortindex": 2},
            {"id": "b", "modified": m, "payload": "pb"},
            {"id": "c", "modified": m, "payload": "pc"},
            {"id": "d", "modified": m, "payload": "pd"},
        ])
    );
    assert_eq!(raw_num(&s.get("/info/collections").text(), "col"), t);

    // The batch is gone: committing or appending again is an invalid batch.
    for q in [
        format!("batch={batch}&commit=true"),
        format!("batch={batch}"),
    ] {
        let r = s.post(&format!("/storage/col?{q}"), "[]");
        assert_resp(&r, 400, "0");
        assert_eq!(hdr(&r, "Content-Type"), "application/json");
    }

    // Commit into an existing collection coalesces with stored rows: fields
    // not in the batch keep their values, every record gets the commit time.
    let batch = start(&s, "col", r#"[{"id": "a", "sortindex": 7}, {"id": "new"}]"#);
    let r = s.post(&format!("/storage/col?batch={batch}"), "[]");
    // An uncommitted step reports the collection's current timestamp.
    assert_eq!((r.status, hdr(&r, "X-Last-Modified")), (202, t.as_str()));
    let r = s.post(&format!("/storage/col?batch={batch}&commit=true"), "");
    assert_eq!(r.status, 400, "an empty body is not JSON: {}", r.text());
    let r = s.send(
        "POST",
        &format!("/storage/col?batch={batch}&commit=true"),
        &[("Content-Type", "application/newlines")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t2 = raw_num(&r.text(), "modified");
    assert!(ms(&t2) > ms(&t));
    let a = s.get_json("/storage/col/a");
    assert_eq!((&a["payload"], &a["sortindex"]), (&json!("pa"), &json!(7)));
    assert_eq!(raw_num(&s.get("/storage/col/a").text(), "modified"), t2);
    assert_eq!(s.get_json("/storage/col/new")["payload"], "");
    assert_eq!(raw_num(&s.get("/storage/col/b").text(), "modified"), t);
}

#[test]
fn create_and_commit_at_once() {
    let server = Server::start("");
    let s = Session::new(&server, 32);
    let r = s.post(
        "/storage/tabs?batch=true&commit=true",
        r#"[{"id": "t1", "payload": "x"}, {"id": "t2", "payload": "y"}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t = raw_num(&r.text(), "modified");
    let v = json(&r);
    assert!(v.get("batch").is_none());
    assert_eq!(v["success"], json!(["t1", "t2"]));
    assert_eq!(hdr(&r, "X-Last-Modified"), t);
    let m = v["modified"].as_f64().unwrap();
    assert_eq!(
        s.get_json("/storage/tabs?full=1&sort=oldest"),
        json!([{"id": "t1", "modified": m, "payload": "x"}, {"id": "t2", "modified": m, "payload": "y"}])
    );
    // A batch commit moves `modified` even without a payload.
    let r = s.post(
        "/storage/tabs?batch=true&commit=true",
        r#"[{"id": "t1", "sortindex": 3}]"#,
    );
    let t2 = raw_num(&r.text(), "modified");
    assert_eq!(raw_num(&s.get("/storage/tabs/t1").text(), "modified"), t2);
    assert_eq!(s.get_json("/storage/tabs/t1")["payload"], "x");

    // An empty list: 200, not the Python 500 (bug 7).
    for q in ["batch=true&commit=true", "batch=TRUE&commit=True"] {
        let r = s.post(&format!("/storage/tabs?{q}"), "[]");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(json(&r)["success"], json!([]));
        assert_eq!(json(&r)["failed"], json!({}));
        assert!(json(&r)["modified"].is_number());
        // Even in a new collection.
        let r = s.post(&format!("/storage/empty{}?{q}", q.len()), "[]");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(s.get_json("/storage/tabs").as_array().unwrap().len(), 2);
}

#[test]
fn invalid_batches() {
    let server = Server::start("");
    let s = Session::new(&server, 33);
    let other = Session::new(&server, 34);
    assert_eq!(s.put("/storage/col/x", r#"{"payload": "x"}"#).status, 200);
    let batch = start(&s, "col", r#"[{"id": "a", "payload": "a"}]"#);
    let foreign = start(&other, "col", r#"[{"id": "f", "payload": "f"}]"#);
    let elsewhere = start(&s, "other", r#"[{"id": "o", "payload": "o"}]"#);
    let before = s.get("/info/collections").text();

    // Unknown, foreign and other-collection batches: 400 with body 0.
    let unknown = base64::engine::general_purpose::STANDARD.encode("1234567890123");
    for b in [
        unknown.as_str(),
        "1234567890123",
        "MTIz",
        foreign.as_str(),
        elsewhere.as_str(),
    ] {
        for commit in ["", "&commit=true"] {
            let r = s.post(
                &format!("/storage/col?batch={b}{commit}"),
                r#"[{"id": "z"}]"#,
            );
            assert_resp(&r, 400, "0");
        }
    }
    // commit without batch: 400 body 0.
    assert_resp(&s.post("/storage/col?commit=true", "[]"), 400, "0");
    // Malformed values: 400 code 1. Empty `batch` was a Python 500 (bug 6).
    for q in [
        "batch=",
        "batch",
        "batch=!!",
        "batch=abcd",
        "batch=true&commit=yes",
        "batch=true&commit=",
        "batch=-5",
    ] {
        assert_resp(&s.post(&format!("/storage/col?{q}"), "[]"), 400, "1");
    }
    assert_eq!(s.get("/info/collections").text(), before);
    // The real batches still work afterwards.
    let r = s.post(&format!("/storage/col?batch={batch}&commit=true"), "[]");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get_json("/storage/col?sort=oldest"), json!(["x", "a"]));
    assert_eq!(
        other
            .post(&format!("/storage/col?batch={foreign}&commit=true"), "[]")
            .status,
        200
    );
    assert_eq!(other.get_json("/storage/col"), json!(["f"]));

    // Preconditions apply to every step.
    let ts = hdr(&s.get("/storage/other"), "X-Last-Modified").to_string();
    assert_eq!(ts, "0");
    let col_ts = hdr(&s.get("/storage/col"), "X-Last-Modified").to_string();
    let old = format!("{:.2}", (ms(&col_ts) - 10) as f64 / 1000.0);
    for q in [
        "batch=true".to_string(),
        "batch=true&commit=true".to_string(),
    ] {
        let r = s.send(
            "POST",
            &format!("/storage/col?{q}"),
            &[
                ("Content-Type", "application/json"),
                ("X-If-Unmodified-Since", &old),
            ],
            b"[]",
        );
        assert_resp(&r, 412, "0");
        assert_eq!(hdr(&r, "X-Last-Modified"), col_ts);
    }
    // Deleting the collection drops its open batches (they would resurrect data).
    let open = start(&s, "col", r#"[{"id": "ghost", "payload": "g"}]"#);
    assert_eq!(s.delete("/storage/col").status, 200);
    assert_resp(
        &s.post(&format!("/storage/col?batch={open}&commit=true"), "[]"),
        400,
        "0",
    );
    assert_eq!(s.get_json("/storage/col"), json!([]));
    // As does deleting all storage.
    assert_eq!(s.delete("/storage").status, 200);
    assert_resp(
        &s.post(
            &format!("/storage/other?batch={elsewhere}&commit=true"),
            "[]",
        ),
        400,
        "0",
    );
}

#[test]
fn batches_disabled() {
    let server = Server::start("[storage]\nbatch_upload_enabled = false");
    let s = Session::new(&server, 35);
    // batch=true is ignored: a plain POST (commit ignored too).
    for q in ["?batch=true", "?batch=true&commit=true", "?commit=true", ""] {
        let r = s.post(
            &format!("/storage/col{q}"),
            &format!(r#"[{{"id": "{}"}}]"#, q.len()),
        );
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let v = json(&r);
        assert!(v.get("batch").is_none());
        assert!(v["modified"].is_number());
    }
    assert_eq!(s.get_json("/storage/col").as_array().unwrap().len(), 4);
    // A batch id cannot be used: 400 code 1.
    let id = base64::engine::general_purpose::STANDARD.encode("1234567890123");
    assert_resp(&s.post(&format!("/storage/col?batch={id}"), "[]"), 400, "1");
    assert_resp(
        &s.post(&format!("/storage/col?batch={id}&commit=true"), "[]"),
        400,
        "1",
    );
}
