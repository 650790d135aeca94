//! End-to-end: the storage half against hostile clients (issue 10, "Trust").
//! One request's memory stays bounded however big the collection or batch is;
//! batch totals and the quota count what is really stored or pending; sizes are
//! UTF-8 bytes, not characters; collection timestamps never run ahead of the
//! clock.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{assert_resp, hdr, json, ms, Server, ServerSpec, Session};
use serde_json::json;

/// Peak RSS the server process may reach in the memory tests.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// One record's payload in the memory tests: 1 MB.
const RECORD: usize = 1_000_000;

/// ASCII payload of `n` bytes that differs per record.
fn payload(n: usize, seed: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..n)
        .map(|i| alphabet[(i * 7 + seed * 13) % alphabet.len()] as char)
        .collect()
}

/// A POST body of records `first..first + n`, each `size` bytes.
fn records(first: usize, n: usize, size: usize) -> String {
    let items: Vec<_> = (first..first + n)
        .map(|i| json!({"id": format!("r{i:04}"), "payload": payload(size, i)}))
        .collect();
    serde_json::Value::Array(items).to_string()
}

/// GETs `path` and every page after it (following X-Weave-Next-Offset);
/// returns (id, payload length) of each record in order, and the page count.
fn fetch_all(s: &Session, path: &str, accept: &str) -> (Vec<(String, usize)>, usize) {
    let mut out = Vec::new();
    let mut offset: Option<String> = None;
    for page in 1..=10_000 {
        let url = match &offset {
            Some(o) => format!("{path}&offset={o}"),
            None => path.to_string(),
        };
        let r = s.get_with(&url, &[("Accept", accept)]);
        assert_eq!(r.status, 200, "GET {url}: {}", r.text());
        let items: Vec<serde_json::Value> = if accept == "application/newlines" {
            r.text()
                .lines()
                .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
                .collect()
        } else {
            json(&r).as_array().expect("a JSON list").clone()
        };
        assert_eq!(hdr(&r, "X-Weave-Records"), items.len().to_string());
        assert!(!items.is_empty(), "an empty page that promises more");
        for v in items {
            let id = v["id"].as_str().expect("id").to_string();
            out.push((id, v["payload"].as_str().expect("payload").len()));
        }
        match r.header("X-Weave-Next-Offset") {
            Some(next) => offset = Some(next.to_string()),
            None => return (out, page),
        }
    }
    panic!("{path}: more than 10,000 pages");
}

#[test]
fn listing_a_big_collection_without_limit_keeps_memory_bounded() {
    // 48 records of 1 MB: 48 MB of payloads, in 2 MB POSTs.
    let server = Server::start("");
    let s = Session::new(&server, 41);
    for i in (0..48).step_by(2) {
        let r = s.post("/storage/big", &records(i, 2, RECORD));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(json(&r)["failed"], json!({}));
    }
    // A fresh process, so its peak RSS is what the listings cost.
    let dir = server.stop();
    let server = Server::start_in(dir, ServerSpec::default());
    let s = Session::new(&server, 41);
    let baseline = server.peak_rss_kib();

    // Two clients at once ask for everything, without `limit`: each gets
    // pages, and following X-Weave-Next-Offset gets every record once.
    let (a, b) = std::thread::scope(|scope| {
        let json_client =
            scope.spawn(|| fetch_all(&s, "/storage/big?full=1&sort=oldest", "application/json"));
        let newlines_client =
            scope.spawn(|| fetch_all(&s, "/storage/big?full=1", "application/newlines"));
        (
            json_client.join().expect("json client"),
            newlines_client.join().expect("newlines client"),
        )
    });
    let peak = server.peak_rss_kib();
    eprintln!("two listings of 48 MB: peak RSS {peak} KiB (from {baseline} KiB)");
    assert!(
        peak < RSS_LIMIT_KIB,
        "two unbounded listings of a 48 MB collection peaked at {peak} KiB (started at {baseline} KiB)"
    );
    for (name, (got, pages)) in [("oldest/json", a), ("newest/newlines", b)] {
        assert!(pages > 1, "{name}: one page of 48 MB");
        let ids: BTreeMap<String, usize> = got.iter().cloned().collect();
        assert_eq!(got.len(), 48, "{name}: a record came twice or never");
        assert_eq!(ids.len(), 48, "{name}: duplicates");
        assert!(ids.values().all(|len| *len == RECORD), "{name}: payloads");
    }
}

#[test]
fn committing_a_big_batch_keeps_memory_bounded() {
    // 64 records of 1 MB in one batch (the limit raised to allow it).
    let spec = || ServerSpec {
        extra_ini: "[storage]\nmax_total_bytes = 100000000\n".into(),
        ..ServerSpec::default()
    };
    let server = Server::start_spec(spec());
    let s = Session::new(&server, 42);
    let r = s.post("/storage/big?batch=true", &records(0, 2, RECORD));
    assert_eq!(r.status, 202, "{}", r.text());
    let batch = json(&r)["batch"].as_str().expect("batch").to_string();
    for i in (2..64).step_by(2) {
        let r = s.post(
            &format!("/storage/big?batch={batch}"),
            &records(i, 2, RECORD),
        );
        assert_eq!(r.status, 202, "{}", r.text());
    }
    // A fresh process, so its peak RSS is what the commit costs.
    let dir = server.stop();
    let server = Server::start_in(dir, spec());
    let s = Session::new(&server, 42);
    let started = Instant::now();
    let r = s.post(&format!("/storage/big?batch={batch}&commit=true"), "[]");
    assert_eq!(r.status, 200, "{}", r.text());
    let peak = server.peak_rss_kib();
    let took = started.elapsed();
    let modified = ms(hdr(&r, "X-Last-Modified"));
    eprintln!("commit of a 64 MB batch: peak RSS {peak} KiB, {took:?}");

    assert_eq!(s.get_json("/info/collection_counts"), json!({"big": 64}));
    let one = s.get_json("/storage/big/r0063");
    assert_eq!(one["payload"], payload(RECORD, 63));
    assert_eq!(
        ms(&format!("{:.2}", one["modified"].as_f64().unwrap())),
        modified
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "committing a 64 MB batch peaked at {peak} KiB (took {took:?})"
    );
}

#[test]
fn batch_totals_are_enforced_on_what_the_batch_holds() {
    let server = Server::start(
        "[storage]\nmax_post_records = 10\nmax_total_records = 25\nmax_total_bytes = 5000\n",
    );
    let s = Session::new(&server, 43);

    // Records: no X-Weave-Total-* headers, 10 records per step.
    let r = s.post("/storage/c?batch=true", &records(0, 10, 10));
    assert_eq!(r.status, 202, "{}", r.text());
    let batch = json(&r)["batch"].as_str().unwrap().to_string();
    let append = format!("/storage/c?batch={batch}");
    assert_eq!(s.post(&append, &records(10, 10, 10)).status, 202);
    // 30 > 25: refused, and the batch keeps its 20 records.
    assert_resp(&s.post(&append, &records(20, 10, 10)), 400, "17");
    // Re-sending ids already in the batch does not grow it.
    assert_eq!(s.post(&append, &records(15, 5, 10)).status, 202);
    // Committing with items that push it over is refused too...
    let commit = format!("/storage/c?batch={batch}&commit=true");
    assert_resp(&s.post(&commit, &records(20, 6, 10)), 400, "17");
    // ...and a commit within the limit then applies exactly what was accepted.
    let r = s.post(&commit, &records(20, 5, 10));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get_json("/info/collection_counts"), json!({"c": 25}));

    // Bytes: 2 x 1000 bytes per step, 5000 at most.
    let r = s.post("/storage/d?batch=true", &records(0, 2, 1000));
    let batch = json(&r)["batch"].as_str().unwrap().to_string();
    let append = format!("/storage/d?batch={batch}");
    assert_eq!(s.post(&append, &records(2, 2, 1000)).status, 202);
    assert_resp(&s.post(&append, &records(4, 2, 1000)), 400, "17");
    assert_eq!(s.post(&append, &records(4, 1, 1000)).status, 202);
    let r = s.post(&format!("/storage/d?batch={batch}&commit=true"), "[]");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get_json("/info/collection_counts")["d"], json!(5));
}

#[test]
fn quota_counts_pending_batch_items() {
    let server = Server::start("[storage]\nquota_size = 1048576\n");
    let s = Session::new(&server, 44);
    let half_mb = 500_000;
    let r = s.post("/storage/c?batch=true", &records(0, 1, half_mb));
    assert_eq!(r.status, 202, "{}", r.text());
    let batch = json(&r)["batch"].as_str().unwrap().to_string();
    let append = format!("/storage/c?batch={batch}");
    assert_eq!(s.post(&append, &records(1, 1, half_mb)).status, 202);
    // 1 MB pending: neither another batch step nor a direct write fits.
    let over = r#"{"status": "quota-exceeded", "errors": []}"#;
    for i in 2..8 {
        assert_resp(&s.post(&append, &records(i, 1, half_mb)), 403, over);
    }
    let put = json!({"payload": payload(half_mb, 9)}).to_string();
    assert_resp(&s.put("/storage/other/x", &put), 403, over);
    let r = s.post(&format!("/storage/c?batch={batch}&commit=true"), "[]");
    assert_eq!(r.status, 200, "{}", r.text());
    // What was stored fits the quota: 1,000,000 bytes of 1,048,576.
    assert_eq!(s.get("/info/quota").text(), "[976.5625, 1024.0]");
}

#[test]
fn sizes_are_utf8_bytes_not_characters() {
    let server = Server::start("[storage]\nquota_size = 100000\nmax_post_bytes = 1000\n");
    let s = Session::new(&server, 45);
    // "é" is two bytes: 400 of them are 800 bytes, so the second record
    // would pass a limit of 1000 counted in characters, not in bytes.
    let e400 = "é".repeat(400);
    let body = json!([{"id": "a", "payload": e400}, {"id": "b", "payload": e400}]).to_string();
    let r = s.post("/storage/col", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        json(&r)["failed"],
        json!({"b": "retry bytes"}),
        "{}",
        r.text()
    );
    // Usage is bytes: 800 / 1024 KB.
    assert_eq!(
        s.get_json("/info/collection_usage"),
        json!({"col": 800.0 / 1024.0})
    );
    // 60,000 "é" are 120,000 bytes: over a quota of 100,000 bytes (and storable in the
    // latin1 tables of MySQL, where an emoji is refused with 400 before any quota).
    let big = json!({"payload": "é".repeat(60_000)}).to_string();
    assert_resp(
        &s.put("/storage/col/big", &big),
        403,
        r#"{"status": "quota-exceeded", "errors": []}"#,
    );
}

#[test]
fn collection_timestamps_never_run_ahead_of_the_clock() {
    const THREADS: usize = 4;
    const RUN_FOR: Duration = Duration::from_secs(3);
    // How far ahead of our clock a timestamp may be: the server's 10 ms, plus
    // rounding to the 10 ms tick we compare at.
    const SLACK_MS: i64 = 10 + 5;
    let server = Server::start_spec(ServerSpec {
        workers: THREADS,
        ..ServerSpec::default()
    });
    let now_ms = || (common::now() * 1000.0) as i64;
    let deadline = Instant::now() + RUN_FOR;
    let results: Vec<(u32, u32, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let server = &server;
                scope.spawn(move || {
                    let s = Session::new(server, 46);
                    let (mut ok, mut busy, mut problems) = (0u32, 0u32, Vec::new());
                    let mut n = 0;
                    while Instant::now() < deadline {
                        n += 1;
                        let r = s.put(&format!("/storage/hot/t{t}-{n}"), r#"{"payload": "x"}"#);
                        let now = now_ms();
                        match r.status {
                            200 => {
                                ok += 1;
                                for h in ["X-Last-Modified", "X-Weave-Timestamp"] {
                                    let ahead = ms(hdr(&r, h)) - now;
                                    if ahead > SLACK_MS {
                                        problems.push(format!("{h} {ahead} ms ahead"));
                                    }
                                }
                            }
                            503 if r.header("Retry-After").is_some() => busy += 1,
                            other => problems.push(format!("status {other}: {}", r.text())),
                        }
                    }
                    (ok, busy, problems)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: u32 = results.iter().map(|r| r.0).sum();
    let busy: u32 = results.iter().map(|r| r.1).sum();
    let problems: Vec<&String> = results.iter().flat_map(|r| &r.2).collect();
    assert!(
        problems.is_empty(),
        "{} of {ok} writes ({busy} x 503): first {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    eprintln!("{ok} writes to one collection in {RUN_FOR:?}, {busy} answered 503");
    assert!(
        ok > 50,
        "too few writes to show anything: {ok} ok, {busy} x 503"
    );
    let s = Session::new(&server, 46);
    let r = s.get("/info/collections");
    let hot = ms(&common::raw_num(&r.text(), "hot"));
    assert!(hot - now_ms() <= SLACK_MS, "info/collections runs ahead");
}
