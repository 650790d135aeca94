//! Trust in the accounts server, end to end (issue 10, items 7, 9 and 11):
//! a slow accounts server must not stall other users' storage requests (the
//! tokenserver bounds its concurrent verifications and remembers failures
//! briefly), endpoint discovery is single-flight, and JWT time and issuer
//! claims are checked. The stand-in accounts server is tests/common/fxa.rs.

mod common;

use std::time::{Duration, Instant};

use common::fcgi_client::CgiResponse;
use common::fxa::{self, get_token, FakeFxa, Mode, TestKey};
use common::{json, Server, ServerSpec, Session};
use serde_json::{json, Value};

fn key1() -> TestKey {
    TestKey::load("oauth-test-key.pk8", "key-1")
}

/// A tokenserver 503: its JSON error body and a Retry-After.
#[track_caller]
fn assert_token_503(r: &CgiResponse) {
    assert_eq!(r.status, 503, "{}", r.text());
    let v = json(r);
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(
        v["errors"][0]["description"], "Resource is not available",
        "{v}"
    );
    let after: u32 = r
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {:?}", r.headers));
    assert!(after > 0);
}

#[track_caller]
fn assert_invalid_credentials(r: &CgiResponse, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    assert_eq!(json(r)["status"], "invalid-credentials", "{what}");
}

/// Item 7: seventy-odd opaque tokens waiting on a slow `/v1/verify` used to
/// occupy every FastCGI connection thread, so another user's storage GET
/// waited seconds for one. Now only a few verifications run at once, the rest
/// are answered 503 + Retry-After at once, and storage answers promptly.
#[test]
fn slow_accounts_server_does_not_stall_storage() {
    const FLOOD: usize = 80;
    const SLOW: Duration = Duration::from_secs(3);
    let fxa = FakeFxa::start(&[]);
    let server = Server::start_spec(ServerSpec {
        workers: 4,
        extra_ini: format!("oauth_verifier = {}\n[oauth]\ntimeout = 10\n", fxa.url),
        ..ServerSpec::default()
    });
    let reader = Session::new(&server, 4242);
    assert_eq!(
        reader.put("/storage/col/a", r#"{"payload": "x"}"#).status,
        200
    );
    let tokens: Vec<String> = (0..FLOOD)
        .map(|_| fxa.opaque_token(fxa::verify_reply(&fxa::fxa_uid(), 1)))
        .collect();
    fxa.set_mode(Mode::Slow(SLOW));

    let (storage_took, answers) = std::thread::scope(|s| {
        let flood: Vec<_> = tokens
            .iter()
            .map(|t| s.spawn(|| get_token(&server, t)))
            .collect();
        // The flood has reached the server and filled the verification slots: a refused
        // request comes back at once, an admitted one only after SLOW.
        common::wait_until("a refused token request", Duration::from_secs(10), || {
            flood.iter().any(|h| h.is_finished())
        });
        let t0 = Instant::now();
        let r = reader.get("/info/collections");
        let took = t0.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        let answers: Vec<CgiResponse> = flood
            .into_iter()
            .map(|h| h.join().expect("token thread"))
            .collect();
        (took, answers)
    });
    assert!(
        storage_took < Duration::from_secs(1),
        "a storage GET waited {storage_took:?} behind token verifications"
    );
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let refused: Vec<&CgiResponse> = answers.iter().filter(|r| r.status != 200).collect();
    for r in &refused {
        assert_token_503(r);
    }
    assert!(ok >= 1, "no verification was let through");
    assert!(!refused.is_empty(), "the bound was never hit");
    // Every refused request was refused without asking the accounts server.
    assert_eq!(fxa.count("/v1/verify") as usize, ok);
    assert!(ok <= 4, "{ok} verifications ran at once");
}

/// Item 7: a token the accounts server refused (or could not verify) is
/// answered from memory for a few seconds, so a client retrying in a loop
/// does not take a verification slot each time; then it is asked again.
#[test]
fn failed_verifications_are_remembered_briefly() {
    let fxa = FakeFxa::start(&[]);
    let server = Server::start_spec(ServerSpec {
        extra_ini: format!("oauth_verifier = {}\n[oauth]\ntimeout = 2\n", fxa.url),
        ..ServerSpec::default()
    });
    let unknown = "f".repeat(64);
    for _ in 0..5 {
        assert_invalid_credentials(&get_token(&server, &unknown), "unknown opaque token");
    }
    assert_eq!(fxa.count("/v1/verify"), 1, "refusal not remembered");

    fxa.set_mode(Mode::Error500);
    let token = fxa.opaque_token(fxa::verify_reply(&fxa::fxa_uid(), 1));
    for _ in 0..3 {
        assert_token_503(&get_token(&server, &token));
    }
    assert_eq!(fxa.count("/v1/verify"), 2, "failure not remembered");

    // Briefly: after a few seconds the accounts server is asked again.
    fxa.set_mode(Mode::Normal);
    // A real-clock wait, kept: the server remembers failures for FAILURE_TTL (5 s,
    // src/tokenserver/outbound.rs) by its own clock, which tests cannot advance.
    std::thread::sleep(Duration::from_millis(5500));
    assert_eq!(get_token(&server, &token).status, 200);
    assert_invalid_credentials(&get_token(&server, &unknown), "unknown opaque token");
    assert_eq!(fxa.count("/v1/verify"), 4);
    let log = server.log();
    assert!(!log.contains(&unknown) && !log.contains(&token), "{log}");
}

/// Item 9: discovering the OAuth server (`identity_provider`) from a slow
/// accounts server used to hold a lock across the fetch, and each waiting
/// request then fetched again in turn (a timeout each). Now one fetch runs and
/// the requests waiting for it share its outcome.
#[test]
fn endpoint_discovery_is_single_flight() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    fxa.set_mode(Mode::Slow(Duration::from_secs(4)));
    let server = Server::start_spec(ServerSpec {
        workers: 8,
        extra_ini: format!("identity_provider = {}\n[oauth]\ntimeout = 1\n", fxa.url),
        ..ServerSpec::default()
    });
    let jwt = key.token(&fxa.claims(&fxa::fxa_uid(), 1));
    let (answers, took) = fxa::token_requests_at_once(&server, &jwt, 4);
    answers.iter().for_each(assert_token_503);
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert_eq!(fxa.count("/.well-known/fxa-client-configuration"), 1);

    fxa.set_mode(Mode::Normal);
    let r = get_token(&server, &jwt);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

/// Item 11: `nbf` and `iat` are checked (with a minute's leeway for clocks).
#[test]
fn jwt_time_claims_are_checked() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    let server = Server::start_spec(ServerSpec {
        extra_ini: format!("oauth_verifier = {}\n", fxa.url),
        ..ServerSpec::default()
    });
    let sub = fxa::fxa_uid();
    let now = fxa::epoch();
    let c = fxa::claims(&sub, 1);
    for (what, claims) in [
        ("nbf in an hour", with(c.clone(), "nbf", json!(now + 3600))),
        ("iat in an hour", with(c.clone(), "iat", json!(now + 3600))),
        ("nbf not a number", with(c.clone(), "nbf", json!("soon"))),
        ("iat not a number", with(c.clone(), "iat", json!(null))),
        (
            "iat after exp",
            with(
                with(c.clone(), "iat", json!(now + 50)),
                "exp",
                json!(now + 40),
            ),
        ),
    ] {
        assert_invalid_credentials(&get_token(&server, &key.token(&claims)), what);
    }
    let rows: i64 = rusqlite::Connection::open(server.db_path())
        .expect("db")
        .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 0);
    // Clocks a little apart: a token from a server 30 s ahead still works.
    for (what, claims) in [
        ("nbf now", with(c.clone(), "nbf", json!(now))),
        ("nbf 30 s ahead", with(c.clone(), "nbf", json!(now + 30))),
        ("iat 30 s ahead", with(c.clone(), "iat", json!(now + 30))),
        ("iat a day ago", with(c.clone(), "iat", json!(now - 86400))),
    ] {
        let r = get_token(&server, &key.token(&claims));
        assert_eq!(r.status, 200, "{what}: {}", r.text());
    }
}

/// Item 11: `iss` must name the accounts server when we know which one it is
/// (`identity_provider`, or Mozilla's); `aud` is not checked (FxA makes it
/// Mozilla's tokenserver URL, which is never ours).
#[test]
fn jwt_issuer_is_checked_when_known() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    let server = Server::start_spec(ServerSpec {
        extra_ini: format!("identity_provider = {}\n", fxa.url),
        ..ServerSpec::default()
    });
    let sub = fxa::fxa_uid();
    let c = fxa.claims(&sub, 1);
    let mut no_iss = c.clone();
    no_iss.as_object_mut().map(|o| o.remove("iss"));
    for (what, claims) in [
        (
            "another issuer",
            with(c.clone(), "iss", json!("https://evil.example")),
        ),
        (
            "Mozilla's issuer",
            with(c.clone(), "iss", json!(fxa::PRODUCTION_ISSUER)),
        ),
        ("issuer not a string", with(c.clone(), "iss", json!(7))),
        ("no issuer", no_iss),
    ] {
        assert_invalid_credentials(&get_token(&server, &key.token(&claims)), what);
    }
    let slash = format!("{}/", fxa.url);
    for (what, claims) in [
        ("its own issuer", c.clone()),
        (
            "with a trailing slash",
            with(c.clone(), "iss", json!(slash)),
        ),
        (
            "any audience",
            with(c.clone(), "aud", json!("https://elsewhere")),
        ),
    ] {
        let r = get_token(&server, &key.token(&claims));
        assert_eq!(r.status, 200, "{what}: {}\n{}", r.text(), server.log());
    }
    assert!(
        server.log().contains("https://evil.example"),
        "the refused issuer is not in the log"
    );

    // Only an `oauth_verifier` URL: the issuer is unknown, so not checked.
    let server = Server::start_spec(ServerSpec {
        extra_ini: format!("oauth_verifier = {}\n", fxa.url),
        ..ServerSpec::default()
    });
    let other = with(c, "iss", json!("https://accounts.example.org"));
    assert_eq!(get_token(&server, &key.token(&other)).status, 200);
}

/// Item 9: a request used to wait forever for a database session. With one
/// worker and a writer lock held outside the server, each PUT holds the only
/// session for SQLite's 5 s busy timeout, so the sixth used to be answered
/// after 30 s; now a request waits at most 10 s for a session, then is
/// answered 503 + Retry-After. (At 10 s, one waiter may still catch the
/// session as the second PUT gives it back, and sit out the busy timeout:
/// hence 15 s and a margin, not 10.)
#[test]
fn database_session_wait_is_bounded() {
    let server = Server::start_spec(ServerSpec {
        workers: 1,
        ..ServerSpec::default()
    });
    let sessions: Vec<Session> = (0..6).map(|i| Session::new(&server, 600 + i)).collect();
    assert_eq!(
        sessions[0]
            .put("/storage/col/a", r#"{"payload": "x"}"#)
            .status,
        200
    );
    let lock = rusqlite::Connection::open(server.db_path()).expect("open");
    lock.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let t0 = Instant::now();
    let answers: Vec<(CgiResponse, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .iter()
            .map(|session| {
                s.spawn(move || {
                    let r = session.put("/storage/col/b", r#"{"payload": "y"}"#);
                    (r, t0.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    lock.execute_batch("COMMIT").expect("unlock");
    for (r, took) in &answers {
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.header("Retry-After").is_some(), "{:?}", r.headers);
        assert!(
            *took < Duration::from_millis(16_500),
            "answered after {took:?}"
        );
    }
    assert!(
        server.log().contains("database session(s) stayed busy"),
        "{}",
        server.log()
    );
    // And the server is fine afterwards.
    let r = sessions[5].put("/storage/col/b", r#"{"payload": "y"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
}
