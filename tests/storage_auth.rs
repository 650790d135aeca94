//! End-to-end: Hawk authentication of storage requests, tokens, public_url.

mod common;

use common::{assert_resp, hdr, json, Server, ServerSpec, Session, User, JSON_CT};

fn assert_401(r: &common::fcgi_client::CgiResponse, what: &str) {
    assert_eq!((r.status, r.text().as_str()), (401, "0"), "{what}");
    assert_eq!(hdr(r, "WWW-Authenticate"), "Hawk", "{what}");
    assert_eq!(hdr(r, "Content-Type"), "application/json", "{what}");
    assert!(r.header("X-Weave-Timestamp").is_some() && r.header("X-Timestamp").is_some());
}

#[test]
fn bad_authorization_headers() {
    let server = Server::start("");
    let user = server.user(51);
    let path = Server::storage_path(51, "/info/collections");
    let good = server.hawk(&user, "GET", &path, &[], b"", false);
    let tamper_mac = {
        let at = good.find("mac=\"").unwrap() + 5;
        let mut b = good.clone().into_bytes();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("garbage", Some("garbage".into())),
        ("hawk garbage", Some("Hawk garbage".into())),
        ("basic", Some("Basic dXNlcjpwYXNz".into())),
        ("bearer", Some(format!("Bearer {}", user.token))),
        ("lowercase scheme", Some(good.replacen("Hawk ", "hawk ", 1))),
        ("tampered mac", Some(tamper_mac)),
        (
            "no mac",
            Some(good.split(", mac=").next().unwrap().to_string()),
        ),
        ("unterminated", Some(format!("Hawk id=\"{}", user.token))),
        ("bad ts", Some(good.replacen("ts=\"", "ts=\"x", 1))),
        ("bad id", Some(good.replacen("id=\"", "id=\"x", 1))),
    ];
    for (what, auth) in cases {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let r = server.request("GET", &path, &headers, b"");
        assert_401(&r, what);
    }
    // The untouched header works (once).
    let r = server.request("GET", &path, &[("Authorization", &good)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // Replayed nonce.
    let r = server.request("GET", &path, &[("Authorization", &good)], b"");
    assert_401(&r, "replay");

    // A key that does not belong to the token.
    let wrong_key = User {
        uid: 51,
        token: user.token.clone(),
        key: "d2hhdGV2ZXI=".into(),
    };
    assert_401(
        &server.signed(&wrong_key, "GET", &path, &[], b""),
        "wrong key",
    );
    // A token signed with another secret.
    let forged = server.user_for_node(51, common::PUBLIC_URL, "another-secret");
    assert_401(
        &server.signed(&forged, "GET", &path, &[], b""),
        "other secret",
    );
    // The token is for uid 51: other uids are refused.
    let other_path = Server::storage_path(52, "/info/collections");
    assert_401(
        &server.signed(&user, "GET", &other_path, &[], b""),
        "uid mismatch",
    );
    // A token for another node.
    let elsewhere = server.user_for_node(51, "http://otherhost:5000", common::SECRET);
    assert_401(
        &server.signed(&elsewhere, "GET", &path, &[], b""),
        "other node",
    );
    // Signed for another method or path.
    let auth = server.hawk(&user, "GET", &path, &[], b"", false);
    let r = server.request(
        "DELETE",
        &Server::storage_path(51, ""),
        &[("Authorization", &auth)],
        b"",
    );
    assert_401(&r, "other request");
    // Nothing above wrote anything, and every write needs auth too.
    for (method, rest) in [
        ("PUT", "/storage/col/a"),
        ("POST", "/storage/col"),
        ("DELETE", "/storage/col"),
        ("DELETE", "/storage/col/a"),
        ("DELETE", ""),
        ("GET", "/storage/col"),
        ("GET", "/info/quota"),
    ] {
        let r = server.request(method, &Server::storage_path(51, rest), &JSON_CT, b"[]");
        assert_401(&r, &format!("{method} {rest}"));
    }
    assert_eq!(
        Session::new(&server, 51).get("/info/collections").text(),
        "{}"
    );
}

#[test]
fn expired_tokens() {
    let server = Server::start("");
    let s = Session::new(&server, 53);
    assert_eq!(s.put("/storage/col/a", r#"{"payload": "x"}"#).status, 200);
    let expired = server.user_expiring(53, common::now() - 100.0);
    let p = |rest: &str| Server::storage_path(53, rest);
    // Only GET info/collections accepts a recently expired token (both references do).
    let r = server.signed(&expired, "GET", &p("/info/collections"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(json(&r).get("col").is_some());
    for (method, rest) in [
        ("GET", "/info/collection_counts"),
        ("GET", "/storage/col"),
        ("GET", "/storage/col/a"),
        ("PUT", "/storage/col/a"),
        ("DELETE", "/storage/col"),
    ] {
        let r = server.signed(&expired, method, &p(rest), &JSON_CT, br#"{"payload": "y"}"#);
        assert_401(&r, rest);
    }
    // Beyond expired_token_timeout (default 7200 s) it is refused too.
    let ancient = server.user_expiring(53, common::now() - 7300.0);
    assert_401(
        &server.signed(&ancient, "GET", &p("/info/collections"), &[], b""),
        "ancient",
    );
    let strict = Server::start("[hawkauth]\nexpired_token_timeout = 10");
    let expired = strict.user_expiring(53, common::now() - 100.0);
    assert_401(
        &strict.signed(&expired, "GET", &p("/info/collections"), &[], b""),
        "short timeout",
    );
    let fresh = strict.user_expiring(53, common::now() - 5.0);
    assert_eq!(
        strict
            .signed(&fresh, "GET", &p("/info/collections"), &[], b"")
            .status,
        200
    );
}

#[test]
fn payload_hash_is_checked_when_sent() {
    let server = Server::start("");
    let user = server.user(54);
    let path = Server::storage_path(54, "/storage/col/a");
    let body = br#"{"payload": "signed"}"#;
    let auth = server.hawk(&user, "PUT", &path, &JSON_CT, body, true);
    assert!(auth.contains("hash=\""), "{auth}");
    let mut headers = JSON_CT.to_vec();
    headers.push(("Authorization", &auth));
    let r = server.request("PUT", &path, &headers, br#"{"payload": "evil!!"}"#);
    assert_401(&r, "tampered body");
    // A different Content-Type is part of the hash too.
    let auth = server.hawk(&user, "PUT", &path, &JSON_CT, body, true);
    let r = server.request(
        "PUT",
        &path,
        &[("Content-Type", "text/plain"), ("Authorization", &auth)],
        body,
    );
    assert_401(&r, "other content type");
    let auth = server.hawk(&user, "PUT", &path, &JSON_CT, body, true);
    let mut headers = JSON_CT.to_vec();
    headers.push(("Authorization", &auth));
    let r = server.request("PUT", &path, &headers, body);
    assert_eq!(r.status, 200, "{}", r.text());
    // Without a hash (what Firefox sends) the body is not covered.
    let r = server.signed(&user, "PUT", &path, &JSON_CT, br#"{"payload": "unsigned"}"#);
    assert_eq!(r.status, 200);
}

#[test]
fn public_url_checks() {
    let server = Server::start("");
    let s = Session::new(&server, 55);
    let path = s.path("/info/collections");
    // Wrong Host or port: 421 (Misdirected Request, not a server fault) with the
    // Python server's JSON message, both addresses and the fix, for every route
    // that needs the address (storage and token), signed or not.
    for host in ["evil.example:5000", "localhost:5001", "localhost"] {
        let auth = server.hawk(&s.user, "GET", &path, &[], b"", false);
        let r = server.request(
            "GET",
            &path,
            &[("Host", host), ("Authorization", &auth)],
            b"",
        );
        assert_eq!(r.status, 421, "{host}");
        assert_eq!(hdr(&r, "Content-Type"), "application/json");
        let v = json(&r);
        assert_eq!(v["status"], "error");
        let msg = v["errors"][0].as_str().unwrap();
        assert!(
            msg.starts_with("The public_url setting doesn't match the application url."),
            "{msg}"
        );
        assert!(
            msg.contains("public_url setting is: http://localhost:5000"),
            "{msg}"
        );
        assert!(msg.contains("force_wsgi_environ"), "{msg}");
        assert!(
            msg.contains(&format!("application url is:    http://{host}")),
            "{msg}"
        );
        assert!(msg.contains("set public_url to"), "{msg}");
    }
    for path in ["/token/1.0/sync/1.5", "/1.0/sync/1.5"] {
        let r = server.request("GET", path, &[("Host", "127.0.0.1:5000")], b"");
        assert_eq!(r.status, 421, "{path}: {}", r.text());
        assert!(r.text().contains("http://127.0.0.1:5000"), "{}", r.text());
    }
    assert!(
        server.log().contains("requests arrive for"),
        "{}",
        server.log()
    );
    // A client's own X-Forwarded-Proto is ignored (no trusted_proxies): the request
    // stays the plain http one it is, and unsigned it gets the usual 401.
    let r = server.request("GET", &path, &[("X-Forwarded-Proto", "https")], b"");
    assert_eq!(r.status, 401, "{}", r.text());
    // Routes that do not depend on the address still answer.
    assert_eq!(
        server.request("GET", "/", &[("Host", "evil")], b"").status,
        200
    );

    // force_wsgi_environ: the address is taken from public_url, and clients
    // sign with public_url's host and port.
    let forced = Server::start("force_wsgi_environ = true");
    let user = forced.user(55);
    let auth = forced.hawk(&user, "GET", &path, &[], b"", false);
    let r = forced.request(
        "GET",
        &path,
        &[("Host", "127.0.0.1:8080"), ("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn prefixed_public_url_and_both_layouts() {
    let server = Server::start_spec(ServerSpec {
        public_url: "http://localhost:5000/sync".into(),
        ..ServerSpec::default()
    });
    let user = server.user(56);
    assert_eq!(user.uid, 56);
    // Python layout under the prefix.
    let r = server.signed(
        &user,
        "PUT",
        "/storage/1.5/56/storage/col/a",
        &JSON_CT,
        br#"{"payload": "p"}"#,
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    // Mozilla's layout, same data.
    let r = server.signed(&user, "GET", "/1.5/56/storage/col/a", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r)["payload"], "p");
    let r = server.signed(&user, "GET", "/1.5/56/info/collections", &[], b"");
    assert!(json(&r).get("col").is_some());
    let r = server.signed(&user, "DELETE", "/1.5/56", &[], b"");
    assert_resp(&r, 200, "{}");
    assert_eq!(
        server
            .signed(&user, "GET", "/storage/1.5/56/info/collections", &[], b"")
            .text(),
        "{}"
    );
    // A token naming the unprefixed URL is for another node.
    let other = server.user_for_node(56, "http://localhost:5000", common::SECRET);
    let r = server.signed(&other, "GET", "/1.5/56/info/collections", &[], b"");
    assert_401(&r, "unprefixed node");
    assert_eq!(server.request("GET", "/", &[], b"").text(), "it works!");

    // Mozilla's layout on an unprefixed server.
    let plain = Server::start("");
    let s = Session::new(&plain, 57);
    let r = plain.signed(&s.user, "PUT", "/1.5/57/storage/col/b", &JSON_CT, b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get_json("/storage/col"), serde_json::json!(["b"]));
}

/// The local trial as the README runs it: the shipped `syncserver.ini` with
/// `serve --http 127.0.0.1:5000` (on a free port here). The banner names the URL
/// to open, a token request on it reaches the tokenserver (401 without
/// credentials, not a public_url error), and a request naming another host gets
/// 421 with both addresses.
#[test]
fn local_trial_with_the_shipped_ini() {
    use common::webservers::{free_port, http_exchange};
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/syncserver.ini");
    let text = std::fs::read_to_string(shipped).unwrap();
    assert!(text.contains("\npublic_url = http://127.0.0.1:5000/\n"));
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains("-- --config syncserver.ini serve --http 127.0.0.1:5000\n"),
        "README's run command"
    );
    let dir = common::TempDir::new();
    let port = free_port();
    let ini = dir.join("syncserver.ini");
    std::fs::write(&ini, text.replace(":5000/", &format!(":{port}/"))).unwrap();
    let mut child = Command::new(common::BIN)
        .arg("--config")
        .arg(&ini)
        .args(["serve", "--http", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..3 {
        out.read_line(&mut banner).unwrap();
    }
    let url = format!("http://127.0.0.1:{port}");
    let get = |host: &str, path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        http_exchange(port, req.as_bytes()).unwrap()
    };
    let token = get(&format!("127.0.0.1:{port}"), "/token/1.0/sync/1.5");
    let other = get(&format!("localhost:{port}"), "/token/1.0/sync/1.5");
    let _ = child.kill();
    let _ = child.wait();
    assert!(banner.contains(&format!("Open {url}/ ")), "{banner}");
    assert!(
        banner.contains(&format!("{url}/token/1.0/sync/1.5")),
        "{banner}"
    );
    assert!(!banner.contains("Note:"), "{banner}");
    assert_eq!(token.status, 401, "{}", token.text());
    assert_eq!(other.status, 421, "{}", other.text());
    let msg = other.text();
    assert!(
        msg.contains(&format!("public_url setting is: {url}"))
            && msg.contains(&format!("application url is:    http://localhost:{port}")),
        "{msg}"
    );
}

/// The Python server on PostgreSQL gave every new account a first token for uid 0, and
/// those clients wrote into one shared `userid 0`. Such a token must never reach any data:
/// it gets 401, so the client asks for a new token and learns its real uid.
#[test]
fn uid_zero_tokens_are_refused() {
    let server = Server::start("");
    let user = server.user(0);
    let path = Server::storage_path(0, "/info/collections");
    let auth = server.hawk(&user, "GET", &path, &[], b"", false);
    let r = server.request("GET", &path, &[("Authorization", &auth)], b"");
    assert_401(&r, "uid 0 token");
    let path = Server::storage_path(0, "/storage/bookmarks/x");
    let body = br#"{"payload":"p"}"#;
    let auth = server.hawk(&user, "PUT", &path, &JSON_CT, body, true);
    let r = server.request("PUT", &path, &[("Authorization", &auth), JSON_CT[0]], body);
    assert_401(&r, "uid 0 write");
}
