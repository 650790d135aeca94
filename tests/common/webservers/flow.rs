//! What a Firefox client does, sent through a real web server: get a token with an
//! OAuth bearer token, then Hawk-signed storage requests with the returned id and key.
//! Shared by tests/deploy_nginx.rs and tests/deploy_apache.rs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crate::common::client_auth;
use serde_json::{json, Value};

use super::{Front, HttpResponse, Stack, StackSpec};
use crate::common::fxa::{self, TestKey};
use crate::common::{self, now, Prereq};

/// The key id the fixture key signs under.
const KID: &str = "deploy-key";

/// The fixture signing key.
pub fn signing_key() -> TestKey {
    TestKey::load("oauth-test-key.pk8", KID)
}

/// Ini lines that make the server trust [`signing_key`] without any network.
pub fn oauth_ini() -> String {
    format!(
        "[oauth]\njwks = {}\n",
        json!({ "keys": [signing_key().jwk()] })
    )
}

/// A user's session through the web server.
pub struct Client<'a> {
    /// The stack the requests go through.
    pub stack: &'a Stack,
    /// Hawk id (the token).
    pub id: String,
    /// Hawk key.
    pub key: String,
    /// The uid the token server assigned.
    pub uid: u64,
    /// `/storage/1.5/{uid}` with the mount prefix, as the client requests it.
    pub base: String,
    /// Host and port the client signs (those of the URL it believes it talks to).
    pub sign_host: (String, u16),
    /// Headers sent with every request (e.g. X-Forwarded-Proto).
    pub extra: Vec<(String, String)>,
}

/// Requests a token through the web server.
pub fn token_request(stack: &Stack, extra: &[(String, String)], fxa_uid: &str) -> HttpResponse {
    let bearer = format!(
        "Bearer {}",
        signing_key().token(&fxa::claims(fxa_uid, 1000))
    );
    let key_id = fxa::key_id(1000, fxa::fingerprint(7));
    let mut headers: Vec<(&str, &str)> = vec![("Authorization", &bearer), ("X-KeyID", &key_id)];
    headers.extend(extra.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let target = format!("{}/token/1.0/sync/1.5", stack.prefix);
    stack.http("GET", target.as_bytes(), &headers, b"")
}

/// Gets a token and returns a signed-in client. `sign_host`: the host and port the client
/// believes it talks to (`None`: the loopback address and port it connects to).
pub fn login<'a>(
    stack: &'a Stack,
    sign_host: Option<(&str, u16)>,
    extra: &[(&str, &str)],
) -> Client<'a> {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let r = token_request(stack, &extra, &fxa::fxa_uid());
    assert_eq!(r.status, 200, "token: {}\n{}", r.text(), stack.logs());
    let t = r.json();
    let uid = t["uid"].as_u64().expect("uid");
    let endpoint = t["api_endpoint"].as_str().expect("api_endpoint");
    let public = stack.public_url.trim_end_matches('/');
    assert_eq!(endpoint, format!("{public}/storage/1.5/{uid}"));
    assert!(t["duration"].as_u64().is_some_and(|d| d > 0), "{t}");
    // The path part of the endpoint is what goes on the wire.
    let base = endpoint
        .split("://")
        .nth(1)
        .and_then(|rest| rest.find('/').map(|i| rest[i..].to_string()))
        .expect("endpoint path");
    let sign_host = sign_host.map_or(("127.0.0.1".to_string(), stack.port), |(h, p)| {
        (h.to_string(), p)
    });
    Client {
        stack,
        id: t["id"].as_str().expect("id").to_string(),
        key: t["key"].as_str().expect("key").to_string(),
        uid,
        base,
        sign_host,
        extra,
    }
}

impl Client<'_> {
    /// The Authorization header for a request whose target is `target` (as the server
    /// will read it: invalid UTF-8 reads as U+FFFD there).
    pub fn hawk(&self, method: &str, target: &[u8], ct: Option<&str>, body: &[u8]) -> String {
        static NONCE: AtomicU32 = AtomicU32::new(0);
        let target = String::from_utf8_lossy(target);
        let nonce = format!(
            "d{}-{}",
            std::process::id(),
            NONCE.fetch_add(1, Ordering::SeqCst)
        );
        client_auth::hawk_header(&client_auth::Signed {
            id: &self.id,
            key: &self.key,
            ts: now() as i64,
            nonce: &nonce,
            method,
            path: &target,
            host: &self.sign_host.0,
            port: self.sign_host.1,
            payload: ct.map(|ct| (ct.as_bytes(), body)),
        })
    }

    /// A signed request to `rest` below the storage base (raw bytes allowed).
    pub fn send_raw(
        &self,
        method: &str,
        rest: &[u8],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let mut target = self.base.as_bytes().to_vec();
        target.extend_from_slice(rest);
        let ct =
            (!body.is_empty() || method == "POST" || method == "PUT").then_some("application/json");
        let auth = self.hawk(method, &target, ct, body);
        let mut all: Vec<(&str, &str)> = vec![("Authorization", &auth)];
        if let Some(ct) = ct {
            all.push(("Content-Type", ct));
        }
        all.extend(self.extra.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        all.extend_from_slice(headers);
        self.stack.http(method, &target, &all, body)
    }

    /// A signed request to `rest`.
    pub fn send(
        &self,
        method: &str,
        rest: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        self.send_raw(method, rest.as_bytes(), headers, body.as_bytes())
    }

    /// A GET that must answer 200, as JSON.
    #[track_caller]
    pub fn get_json(&self, rest: &str) -> Value {
        let r = self.send("GET", rest, &[], "");
        assert_eq!(
            r.status,
            200,
            "GET {rest}: {}\n{}",
            r.text(),
            self.stack.logs()
        );
        r.json()
    }

    /// A request that must answer `status`.
    #[track_caller]
    pub fn expect(
        &self,
        status: u16,
        method: &str,
        rest: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        let r = self.send(method, rest, headers, body);
        assert_eq!(
            r.status,
            status,
            "{method} {rest}: {}\n{}",
            r.text(),
            self.stack.logs()
        );
        r
    }
}

/// The X-Last-Modified (or X-Weave-Timestamp) header of a response.
#[track_caller]
pub fn last_modified(r: &HttpResponse) -> String {
    r.header("X-Last-Modified")
        .or_else(|| r.header("X-Weave-Timestamp"))
        .unwrap_or_else(|| panic!("no timestamp header in {:?}", r.headers))
        .to_string()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .map_or_else(|| x["id"].as_str().expect("id").to_string(), String::from)
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn record(id: &str, sortindex: i64) -> Value {
    json!({"id": id, "sortindex": sortindex, "payload": format!("payload of {id}")})
}

/// Waits until the two-decimal server clock has moved on (distinct modified times): every
/// timestamp the server returned so far is at most `now()`.
fn tick() {
    common::wait_past(now());
}

/// The whole client flow: batch upload (batch=true, append, commit), reads with every
/// query form, conditional requests, deletes. Returns how long it took.
pub fn full_flow(c: &Client) -> std::time::Duration {
    let t0 = Instant::now();
    assert_eq!(c.get_json("/info/collections"), json!({}));

    // A batch: open with two records, append one, commit with the last.
    let body = |recs: &[Value]| Value::Array(recs.to_vec()).to_string();
    let r = c.expect(
        202,
        "POST",
        "/storage/bookmarks?batch=true",
        &[],
        &body(&[record("a", 4), record("b", 3)]),
    );
    let batch = r.json()["batch"].as_str().expect("batch id").to_string();
    assert_eq!(sorted(ids(&r.json()["success"])), ["a", "b"]);
    let r = c.expect(
        202,
        "POST",
        &format!("/storage/bookmarks?batch={batch}"),
        &[],
        &body(&[record("c", 2)]),
    );
    assert_eq!(r.json()["success"], json!(["c"]));
    // Nothing is visible before the commit.
    assert_eq!(c.get_json("/info/collections"), json!({}));
    let r = c.expect(
        200,
        "POST",
        &format!("/storage/bookmarks?batch={batch}&commit=true"),
        &[],
        &body(&[record("d", 1)]),
    );
    let committed = last_modified(&r);
    assert_eq!(r.json()["modified"].as_f64(), committed.parse::<f64>().ok());
    tick();
    let r = c.expect(
        200,
        "PUT",
        "/storage/bookmarks/e",
        &[],
        &record("e", 0).to_string(),
    );
    let later = last_modified(&r);

    // Reads with every query form.
    assert_eq!(
        sorted(ids(&c.get_json("/storage/bookmarks"))),
        ["a", "b", "c", "d", "e"]
    );
    let full = c.get_json("/storage/bookmarks?full=1&ids=a,c");
    assert_eq!(sorted(ids(&full)), ["a", "c"]);
    for obj in full.as_array().expect("list") {
        let id = obj["id"].as_str().expect("id");
        assert_eq!(obj["payload"], json!(format!("payload of {id}")));
        assert!(obj["modified"].is_number(), "{obj}");
    }
    assert_eq!(
        c.get_json(&format!("/storage/bookmarks?newer={committed}")),
        json!(["e"])
    );
    assert_eq!(
        sorted(ids(
            &c.get_json(&format!("/storage/bookmarks?older={later}"))
        )),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        c.get_json("/storage/bookmarks?sort=index"),
        json!(["a", "b", "c", "d", "e"])
    );
    assert_eq!(c.get_json("/storage/bookmarks?sort=newest")[0], json!("e"));
    assert_eq!(c.get_json("/storage/bookmarks?sort=oldest")[4], json!("e"));
    // Paging: limit + offset until no X-Weave-Next-Offset.
    let mut seen = Vec::new();
    let mut query = "/storage/bookmarks?sort=index&limit=2".to_string();
    loop {
        let r = c.expect(200, "GET", &query, &[], "");
        seen.extend(ids(&r.json()));
        match r.header("X-Weave-Next-Offset") {
            Some(next) => query = format!("/storage/bookmarks?sort=index&limit=2&offset={next}"),
            None => break,
        }
        assert!(seen.len() <= 5, "paging does not end: {seen:?}");
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let item = c.get_json("/storage/bookmarks/d");
    assert_eq!(
        (item["id"].clone(), item["sortindex"].clone()),
        (json!("d"), json!(1))
    );
    let counts = c.get_json("/info/collection_counts");
    assert_eq!(counts, json!({"bookmarks": 5}));

    // Conditional requests.
    let r = c.send(
        "GET",
        "/storage/bookmarks",
        &[("X-If-Modified-Since", &later)],
        "",
    );
    assert_eq!(r.status, 304, "{}", r.text());
    assert!(r.body.is_empty());
    let r = c.send(
        "GET",
        "/storage/bookmarks",
        &[("X-If-Modified-Since", &committed)],
        "",
    );
    assert_eq!(r.status, 200);
    c.expect(
        412,
        "PUT",
        "/storage/bookmarks/e",
        &[("X-If-Unmodified-Since", &committed)],
        &record("e", 9).to_string(),
    );
    c.expect(
        412,
        "POST",
        "/storage/bookmarks",
        &[("X-If-Unmodified-Since", &committed)],
        &body(&[record("f", 0)]),
    );
    c.expect(
        200,
        "GET",
        "/storage/bookmarks",
        &[("X-If-Unmodified-Since", &later)],
        "",
    );

    // Deletes.
    c.expect(200, "DELETE", "/storage/bookmarks/e", &[], "");
    c.expect(404, "GET", "/storage/bookmarks/e", &[], "");
    c.expect(200, "DELETE", "/storage/bookmarks?ids=a,b", &[], "");
    assert_eq!(sorted(ids(&c.get_json("/storage/bookmarks"))), ["c", "d"]);
    c.expect(200, "DELETE", "/storage/bookmarks", &[], "");
    assert_eq!(c.get_json("/info/collections").get("bookmarks"), None);
    c.expect(
        200,
        "PUT",
        "/storage/tabs/t",
        &[],
        &record("t", 0).to_string(),
    );
    c.expect(200, "DELETE", "/storage", &[], "");
    assert_eq!(c.get_json("/info/collections"), json!({}));
    t0.elapsed()
}

/// A ~2 MiB record (exactly max_record_payload_bytes of payload, body within
/// max_request_bytes) is stored whole; a body over max_request_bytes gets the server's
/// own 413 (JSON, not an HTML error page from the web server).
pub fn big_bodies(c: &Client) {
    let payload = "x".repeat(2 * 1024 * 1024);
    let body = json!([{"id": "big", "payload": payload}]).to_string();
    assert!(body.len() <= 2_101_248, "{}", body.len());
    let r = c.expect(200, "POST", "/storage/tabs", &[], &body);
    assert_eq!(r.json()["success"], json!(["big"]), "{}", r.text());
    let got = c.get_json("/storage/tabs/big");
    assert_eq!(got["payload"].as_str().map(str::len), Some(payload.len()));

    let over = json!([{"id": "huge", "payload": "y".repeat(2_200_000)}]).to_string();
    let r = c.send("POST", "/storage/tabs", &[], &over);
    assert_eq!(r.status, 413, "{}\n{}", r.text(), c.stack.logs());
    assert!(
        r.header("Content-Type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    c.expect(404, "GET", "/storage/tabs/huge", &[], "");
}

/// Raw non-ASCII bytes in the query (and a percent-encoded one): the server still
/// answers, with the parameters after them (and the Authorization header) intact.
pub fn non_ascii_query(c: &Client) {
    c.expect(
        200,
        "PUT",
        "/storage/forms/q1",
        &[],
        &record("q1", 0).to_string(),
    );
    c.expect(
        200,
        "PUT",
        "/storage/forms/q2",
        &[],
        &record("q2", 0).to_string(),
    );
    for rest in [
        &b"/storage/forms?x=caf\xe9&full=1&ids=q2"[..],
        b"/storage/forms?x=caf%E9&full=1&ids=q2",
        b"/storage/forms?x=\xc3\xa9\xff&full=1&ids=q2",
    ] {
        let r = c.send_raw("GET", rest, &[], b"");
        assert_eq!(
            r.status,
            200,
            "{}: {}\n{}",
            String::from_utf8_lossy(rest),
            r.text(),
            c.stack.logs()
        );
        let v = r.json();
        assert_eq!(ids(&v), ["q2"], "{v}");
        assert_eq!(v[0]["payload"], json!("payload of q2"));
    }
}

/// A wrong signature is a 401 (the server saw the header and judged it), not a 500.
pub fn bad_signature_is_401(c: &Client) {
    let target = format!("{}/info/collections", c.base);
    let auth = c
        .hawk("GET", target.as_bytes(), None, b"")
        .replace("mac=\"", "mac=\"AAAA");
    let mut headers: Vec<(&str, &str)> = vec![("Authorization", &auth)];
    headers.extend(c.extra.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let r = c.stack.http("GET", target.as_bytes(), &headers, b"");
    assert_eq!(r.status, 401, "{}", r.text());
}

/// Whether the web server (or its Apache module) is missing: then [`common::skip`] has
/// failed the test, or reported it skipped when `SYNCSERVER_TEST_ALLOW_SKIP` allows it.
pub fn skip(front: Front) -> bool {
    let Some(why) = front.missing() else {
        return false;
    };
    let prereq = match front {
        Front::Nginx => Prereq::Nginx,
        Front::ApacheFcgid | Front::ApacheProxyFcgi => Prereq::Apache,
    };
    common::skip(prereq, &why);
    true
}

fn start(front: Front, prefixed: bool, public_url: Option<String>, ini: &str) -> Stack {
    let stack = Stack::start(StackSpec {
        front,
        prefixed,
        public_url,
        extra_ini: format!("{ini}{}", oauth_ini()),
    });
    eprintln!(
        "{front:?} prefixed={prefixed}: stack up in {:?}",
        stack.startup
    );
    stack
}

/// Plain http at the root or under /sync/: the full flow, big bodies, non-ASCII query
/// bytes, a bad signature.
pub fn plain(front: Front, prefixed: bool) {
    if skip(front) {
        return;
    }
    let t0 = Instant::now();
    let stack = start(front, prefixed, None, "");
    let c = login(&stack, None, &[]);
    let flow = full_flow(&c);
    big_bodies(&c);
    non_ascii_query(&c);
    bad_signature_is_401(&c);
    eprintln!(
        "{front:?} prefixed={prefixed}: flow {flow:?}, all {:?}",
        t0.elapsed()
    );
}

/// public_url https://sync.example.org[/sync] with force_wsgi_environ: the client signs
/// for the public host and port 443 while the web server sees plain http on loopback.
pub fn https_forced(front: Front, prefixed: bool) {
    if skip(front) {
        return;
    }
    let prefix = if prefixed { "/sync" } else { "" };
    let public = format!("https://sync.example.org{prefix}");
    let stack = start(front, prefixed, Some(public), "force_wsgi_environ = true\n");
    let c = login(&stack, Some(("sync.example.org", 443)), &[]);
    assert_eq!(c.base, format!("{prefix}/storage/1.5/{}", c.uid));
    full_flow(&c);
}

/// public_url https://sync.example.org[/sync] behind a TLS proxy (the test client,
/// listed in trusted_proxies) that keeps the Host header (no port) and says
/// `X-Forwarded-Proto: https`: the request then matches public_url, and the server
/// takes port 443 for Hawk, as the client signed.
pub fn https_forwarded(front: Front, prefixed: bool) {
    if skip(front) {
        return;
    }
    let prefix = if prefixed { "/sync" } else { "" };
    let public = format!("https://sync.example.org{prefix}");
    let proxies = "trusted_proxies = 127.0.0.1, ::1\n";
    let stack = start(front, prefixed, Some(public), proxies);
    let host = ("Host", "sync.example.org");
    let mut c = login(
        &stack,
        Some(("sync.example.org", 443)),
        &[host, ("X-Forwarded-Proto", "https")],
    );
    full_flow(&c);
    // Without the header the request looks like plain http: the public_url check refuses
    // it (421: only the scheme differs) rather than letting every signature fail.
    c.extra = vec![(host.0.to_string(), host.1.to_string())];
    let r = c.send("GET", "/info/collections", &[], "");
    assert_eq!(r.status, 421, "without X-Forwarded-Proto: {}", r.text());
    assert!(r.text().contains("public_url"), "{}", r.text());
}
