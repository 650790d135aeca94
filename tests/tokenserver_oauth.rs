//! The tokenserver's OAuth verifier end to end: JWKS fetch and rotation,
//! configured keys, `/v1/verify` for opaque tokens, `identity_provider`
//! discovery, an account server that is down, slow or broken, and tokens that
//! must never be accepted. The stand-in is tests/common/fxa.rs.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::engines::Engine;
use common::fcgi_client::CgiResponse;
use common::fxa::{self, bad, get_token, FakeFxa, Mode, TestKey};
use common::{json, Server, ServerSpec, TempDir, BIN};
use serde_json::json;

fn key1() -> TestKey {
    TestKey::load("oauth-test-key.pk8", "key-1")
}

fn key2() -> TestKey {
    TestKey::load("oauth-test-key2.pk8", "key-2")
}

fn start(verifier: &str, extra: &str) -> Server {
    Server::start_spec(ServerSpec {
        extra_ini: format!("oauth_verifier = {verifier}\n{extra}"),
        ..ServerSpec::default()
    })
}

fn emails(server: &Server) -> Vec<String> {
    if server.engine() != Engine::Sqlite {
        let out = server.sql("SELECT email FROM users ORDER BY uid");
        return out.lines().map(str::to_string).collect();
    }
    let db = rusqlite::Connection::open(server.db_path()).expect("open db");
    let mut st = db
        .prepare("SELECT email FROM users ORDER BY uid")
        .expect("prepare");
    let rows = st.query_map([], |r| r.get(0)).expect("query");
    rows.map(|r| r.expect("row")).collect()
}

#[track_caller]
fn assert_status(r: &CgiResponse, code: u16, status: &str, desc: &str) {
    assert_eq!(r.status, code, "{}", r.text());
    let expected = json!({"status": status, "errors": [{"location": "body", "name": "", "description": desc}]});
    assert_eq!(json(r), expected);
}

#[track_caller]
fn assert_unavailable(r: &CgiResponse) {
    assert_status(r, 503, "error", "Resource is not available");
}

#[test]
fn unreachable_verifier_is_503_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let server = start(&format!("http://127.0.0.1:{port}"), "");
    let key = key1();
    let t0 = Instant::now();
    assert_unavailable(&get_token(&server, &key.token(&fxa::claims("u1", 1))));
    let opaque = "0123456789abcdef".repeat(4);
    assert_unavailable(&get_token(&server, &opaque));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(emails(&server).is_empty());
}

#[test]
fn broken_or_slow_account_server_is_503() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    let server = start(&fxa.url, "[oauth]\ntimeout = 1\n");
    let jwt = key.token(&fxa::claims("u1", 1));
    // A failed opaque token is remembered for a few seconds (answered without
    // asking again): each case below uses a fresh one.
    let opaque = || fxa.opaque_token(fxa::verify_reply("u2", 1));
    for mode in [Mode::Error500, Mode::Garbage, Mode::Down] {
        fxa.set_mode(mode);
        assert_unavailable(&get_token(&server, &jwt));
        assert_unavailable(&get_token(&server, &opaque()));
    }
    // A JWKS that parses but holds no RSA key.
    fxa.set_mode(Mode::Normal);
    fxa.set_jwks(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "key-1"}]}));
    assert_unavailable(&get_token(&server, &jwt));
    fxa.set_jwks(json!({"not": "a jwks"}));
    assert_unavailable(&get_token(&server, &jwt));

    fxa.set_mode(Mode::Slow(Duration::from_secs(4)));
    fxa.publish(&[&key]);
    for token in [jwt.clone(), opaque()] {
        let t0 = Instant::now();
        assert_unavailable(&get_token(&server, &token));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(3000),
            "{took:?}"
        );
    }
    assert!(emails(&server).is_empty());

    // Recovery.
    fxa.set_mode(Mode::Normal);
    assert_eq!(get_token(&server, &jwt).status, 200);
    assert_eq!(get_token(&server, &opaque()).status, 200);
    assert_eq!(emails(&server).len(), 2);
}

#[test]
fn hostile_tokens_are_refused_without_a_user_row() {
    let (key, other) = (key1(), key2());
    let fxa = FakeFxa::start(&[&key]);
    let server = start(&fxa.url, "");
    let sub = fxa::fxa_uid();
    let c = fxa::claims(&sub, 1);
    let mut no_typ_kid_swap = fxa::claims(&sub, 1);
    no_typ_kid_swap["sub"] = json!("someone-else");
    // key2's signature presented under key1's kid, and under a kid nobody published.
    let wrong_key = other.sign(
        &json!({"alg": "RS256", "typ": "at+jwt", "kid": "key-1"}),
        &c,
    );
    let unknown_kid = other.sign(
        &json!({"alg": "RS256", "typ": "at+jwt", "kid": "key-9"}),
        &c,
    );
    let mut no_scope = c.clone();
    no_scope.as_object_mut().map(|o| o.remove("scope"));
    let mut cases = vec![
        ("alg none", bad::alg_none(&c, &key.kid)),
        (
            "HS256 with the public key",
            bad::hs256_with_public_key(&key, &c),
        ),
        ("typ JWT", bad::wrong_typ(&key, &c)),
        ("expired", bad::expired(&key, &sub)),
        ("wrong scope", bad::wrong_scope(&key, &sub)),
        ("no scope", key.token(&no_scope)),
        ("tampered", bad::tampered(&key, &sub, "someone-else")),
        ("signed by another key", wrong_key),
        ("unknown kid", unknown_kid),
        ("opaque, unknown to the server", "f".repeat(64)),
    ];
    cases.extend(bad::garbage().into_iter().map(|g| ("garbage", g)));
    for (what, token) in &cases {
        let r = get_token(&server, token);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_status(&r, 401, "invalid-credentials", "Unauthorized");
    }
    let mut string_gen = c.clone();
    string_gen["fxa-generation"] = json!("1");
    assert_status(
        &get_token(&server, &key.token(&string_gen)),
        401,
        "invalid-generation",
        "Unauthorized",
    );
    assert!(emails(&server).is_empty(), "{:?}", emails(&server));
    // The real token still works afterwards.
    assert_eq!(get_token(&server, &key.token(&c)).status, 200);
}

#[test]
fn key_rotation_refetches_once() {
    let (k1, k2) = (key1(), key2());
    let fxa = FakeFxa::start(&[&k1]);
    let server = start(&fxa.url, "");
    let sub = fxa::fxa_uid();
    assert_eq!(
        get_token(&server, &k1.token(&fxa::claims(&sub, 1))).status,
        200
    );
    assert_eq!(fxa.count("/v1/jwks"), 1);
    for _ in 0..20 {
        let r = get_token(&server, &k1.token(&fxa::claims(&sub, 1)));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(fxa.count("/v1/jwks"), 1, "known kid: no refetch");
    fxa.publish(&[&k1, &k2]);
    let r = get_token(&server, &k2.token(&fxa::claims(&sub, 2)));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    assert_eq!(fxa.count("/v1/jwks"), 2);
    // Both keys are known now; junk kids right after a refetch are throttled.
    assert_eq!(
        get_token(&server, &k1.token(&fxa::claims(&sub, 2))).status,
        200
    );
    let junk = k2.sign(
        &json!({"alg": "RS256", "typ": "at+jwt", "kid": "junk"}),
        &fxa::claims(&sub, 2),
    );
    for _ in 0..3 {
        assert_eq!(get_token(&server, &junk).status, 401);
    }
    assert_eq!(
        fxa.count("/v1/jwks"),
        2,
        "one refetch per interval for unknown kids"
    );
    assert_eq!(fxa.count("/v1/verify"), 0);
}

#[test]
fn configured_jwks_need_no_network() {
    let key = key1();
    let fxa = FakeFxa::start(&[]);
    fxa.set_mode(Mode::Down);
    let inline = json!({"keys": [key.jwk()]}).to_string();
    let server = start(&fxa.url, &format!("[oauth]\njwks = {inline}\n"));
    let sub = fxa::fxa_uid();
    let r = get_token(&server, &key.token(&fxa::claims(&sub, 1)));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    assert_eq!(fxa.total(), 0);
    assert_eq!(
        emails(&server),
        vec![format!("{sub}@127.0.0.1:{}", fxa.port)]
    );
}

/// Runs `serve` with this ini body and returns (exit code, stderr) once it exits.
fn run_to_exit(ini_body: &str) -> (Option<i32>, String) {
    let dir = TempDir::new();
    let ini = dir.join("syncserver.ini");
    let text = format!(
        "[syncserver]\npublic_url = http://localhost:5000\nsecret = {}\n{ini_body}\n",
        common::SECRET
    );
    std::fs::write(&ini, text).expect("write ini");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&ini)
        .arg("serve")
        .arg("--bind")
        .arg(format!("unix:{}", dir.join("sync.sock").display()))
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started with {ini_body}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (status.code(), err)
}

#[test]
fn non_rsa_configured_keys_stop_the_start() {
    let rsa = key1().jwk();
    let ec = json!({"kty": "EC", "crv": "P-256", "kid": "ec",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
    let oct = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
    for bad_key in [ec, oct] {
        let doc = json!({"keys": [rsa.clone(), bad_key]}).to_string();
        let (code, err) = run_to_exit(&format!("[oauth]\njwks = {doc}\n"));
        assert!(code.is_some_and(|c| c != 0), "{code:?} {err}");
        assert!(
            err.contains("[oauth] jwks") && err.contains("not an RSA public key"),
            "{err}"
        );
    }
}

#[test]
fn opaque_tokens_go_to_v1_verify() {
    let fxa = FakeFxa::start(&[]);
    let server = start(&fxa.url, "");
    let sub = fxa::fxa_uid();
    let token = fxa.opaque_token(fxa::verify_reply(&sub, 5));
    let r = get_token(&server, &token);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    assert_eq!(fxa.count("/v1/verify"), 1);
    assert_eq!(fxa.count("/v1/jwks"), 0);
    assert_eq!(
        emails(&server),
        vec![format!("{sub}@127.0.0.1:{}", fxa.port)]
    );
    let mut s = fxa::verify_reply(&sub, 6);
    s["scope"] = json!(["profile"]);
    let r = get_token(&server, &fxa.opaque_token(s));
    assert_status(&r, 401, "invalid-credentials", "Unauthorized");
    let mut g = fxa::verify_reply(&sub, 6);
    g["generation"] = json!("6");
    let r = get_token(&server, &fxa.opaque_token(g));
    assert_status(&r, 401, "invalid-generation", "Unauthorized");
}

#[test]
fn identity_provider_discovery() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    let server = Server::start_spec(ServerSpec {
        extra_ini: format!("identity_provider = {}\n", fxa.url),
        ..ServerSpec::default()
    });
    assert_eq!(fxa.total(), 0, "nothing is fetched at start-up");
    let sub = fxa::fxa_uid();
    for generation in [1, 2] {
        let r = get_token(&server, &key.token(&fxa.claims(&sub, generation)));
        assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    }
    assert_eq!(fxa.count("/.well-known/fxa-client-configuration"), 1);
    assert_eq!(fxa.count("/v1/jwks"), 1);
    assert_eq!(
        emails(&server),
        vec![format!("{sub}@127.0.0.1:{}", fxa.port)]
    );
}

#[test]
fn requests_queued_behind_a_slow_key_fetch_do_not_each_wait() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    fxa.set_mode(Mode::Slow(Duration::from_secs(4)));
    let server = Server::start_spec(ServerSpec {
        workers: 4,
        extra_ini: format!("oauth_verifier = {}\n[oauth]\ntimeout = 1\n", fxa.url),
        ..ServerSpec::default()
    });
    let jwt = key.token(&fxa::claims("u1", 1));
    let (answers, took) = fxa::token_requests_at_once(&server, &jwt, 4);
    answers.iter().for_each(assert_unavailable);
    // One fetch times out (~1 s); the others share its failure instead of
    // queueing for a timeout each (which would take ~4 s).
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert!(fxa.count("/v1/jwks") <= 2, "{}", fxa.count("/v1/jwks"));
}
