//! A database server that goes away and comes back: a private MariaDB and PostgreSQL, started
//! for this test alone (scripts/engines, in the test's temp dir), are stopped under a serving
//! server and started again on the same data and port (`scripts/engines halt|resume`). While
//! the database is down, storage and token requests answer 503 with Retry-After, never 500,
//! and the server keeps running; once it is back, the same requests succeed without a
//! restart of ours, and the data written before is all there.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::engines::{Engine, TestDatabase};
use common::fxa::{self, FakeFxa, TestKey};
use common::{assert_503, json, Server, ServerSpec, Session, TempDir, User};

/// The tests of this file take turns: two private engine pairs starting at once
/// interfere (scripts/engines start failed), and each test halts its own servers.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The private database servers of one test, stopped (and their directory removed) on drop.
struct PrivateEngines {
    dir: PathBuf,
    env: Vec<(String, String)>,
    _turn: std::sync::MutexGuard<'static, ()>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/engines")
}

impl PrivateEngines {
    /// Starts both servers in `dir/engines` (an engine not installed is left out of its env).
    fn start(dir: &TempDir) -> PrivateEngines {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let engines = dir.join("engines");
        let o = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&engines)
            .output()
            .expect("run scripts/engines");
        let mut me = PrivateEngines {
            dir: engines.clone(),
            env: Vec::new(),
            _turn: turn,
        };
        assert!(
            o.status.success(),
            "scripts/engines start: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // DIR/env is shell-quoted: let the shell read it.
        let o = Command::new("bash")
            .arg("-c")
            .arg("set -a; . \"$1\"; env | grep '^SYNCSERVER_TEST_'")
            .arg("bash")
            .arg(engines.join("env"))
            .output()
            .expect("read env");
        me.env = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        me
    }

    fn uri(&self, engine: Engine) -> Option<String> {
        let var = engine.env_var()?;
        self.env
            .iter()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.clone())
    }

    fn run(&self, verb: &str, engine: Engine) {
        let o = Command::new("bash")
            .arg(script())
            .arg(verb)
            .arg(&self.dir)
            .arg(engine.name())
            .output()
            .expect("run scripts/engines");
        assert!(
            o.status.success(),
            "scripts/engines {verb} {}: {}",
            engine.name(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for PrivateEngines {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

/// A token for `sub` from the server's token endpoint, as Firefox gets one.
fn sign_in(server: &Server, key: &TestKey, sub: &str) -> common::fcgi_client::CgiResponse {
    fxa::get_token(server, &key.token(&fxa::claims(sub, 1)))
}

fn user_of(token: &common::fcgi_client::CgiResponse) -> User {
    let v = json(token);
    User {
        uid: v["uid"].as_u64().expect("uid"),
        token: v["id"].as_str().expect("id").to_string(),
        key: v["key"].as_str().expect("key").to_string(),
    }
}

/// Retries `f` until it answers 200 (the first request after the database returns may
/// still meet the old, dead connection), for at most 20 s; every other answer must be a
/// 503 with Retry-After.
#[track_caller]
fn until_ok(
    what: &str,
    mut f: impl FnMut() -> common::fcgi_client::CgiResponse,
) -> common::fcgi_client::CgiResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = f();
        if r.status == 200 {
            return r;
        }
        assert_503(&r, what);
        assert!(Instant::now() < deadline, "{what}: still 503 after 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn database_outage_is_503_then_recovers_without_a_restart() {
    let dir = TempDir::new();
    let engines = PrivateEngines::start(&dir);
    let key = TestKey::load("oauth-test-key.pk8", "key-1");
    let fxa = FakeFxa::start(&[&key]);
    for engine in Engine::SERVERS {
        let Some(server_uri) = engines.uri(engine) else {
            common::skip(
                engine.prereq().expect("a server engine"),
                &format!("scripts/engines started no {} server", engine.name()),
            );
            continue;
        };
        let db = TestDatabase::create_on(&server_uri, "outage");
        let server = Server::start_spec(ServerSpec {
            extra_ini: format!("sqluri = {}\noauth_verifier = {}\n", db.uri, fxa.url),
            workers: 2,
            ..ServerSpec::default()
        });
        let pid = server.pid().expect("running");
        let alice = fxa::fxa_uid();
        let token = sign_in(&server, &key, &alice);
        assert_eq!(token.status, 200, "{}", token.text());
        let s = Session {
            server: &server,
            user: user_of(&token),
        };
        let r = s.put(
            "/storage/bookmarks/before",
            r#"{"payload": "written before"}"#,
        );
        assert_eq!(r.status, 200, "{}", r.text());

        engines.run("halt", engine);
        // Every session's connection is dead now, and no new one can be made: each
        // request (several, so both workers' sessions meet it) is a 503 with Retry-After.
        for i in 0..4 {
            let what = format!("{engine:?} down, round {i}");
            assert_503(&s.get("/storage/bookmarks/before"), &format!("{what}: GET"));
            assert_503(
                &s.put("/storage/bookmarks/during", r#"{"payload": "x"}"#),
                &format!("{what}: PUT"),
            );
            assert_503(&s.get("/info/collections"), &format!("{what}: info"));
            assert_503(&sign_in(&server, &key, &alice), &format!("{what}: token"));
            assert_503(
                &sign_in(&server, &key, &fxa::fxa_uid()),
                &format!("{what}: new account's token"),
            );
        }
        let log = server.log();
        assert!(
            !log.contains("internal error"),
            "{engine:?}: a panic:\n{log}"
        );

        engines.run("resume", engine);
        // Same server process, same requests: they succeed again, the data is all there.
        let r = until_ok("GET after resume", || s.get("/storage/bookmarks/before"));
        assert_eq!(json(&r)["payload"], "written before");
        until_ok("token after resume", || sign_in(&server, &key, &alice));
        until_ok("new account after resume", || {
            sign_in(&server, &key, &fxa::fxa_uid())
        });
        for i in 0..4 {
            let r = s.put(
                &format!("/storage/bookmarks/after{i}"),
                r#"{"payload": "written after"}"#,
            );
            assert_eq!(r.status, 200, "{engine:?} PUT {i}: {}", r.text());
            let r = s.get("/storage/bookmarks");
            assert_eq!(r.status, 200, "{engine:?}: {}", r.text());
        }
        assert_eq!(
            s.get("/storage/bookmarks/during").status,
            404,
            "{engine:?}: a write refused with 503 left nothing"
        );
        assert_eq!(server.pid(), Some(pid), "the same server process");
        let log = server.log();
        assert!(
            !log.contains("internal error"),
            "{engine:?}: a panic:\n{log}"
        );
        drop(server);
        drop(db);
    }
}

#[test]
fn database_unreachable_at_start_is_503_until_it_answers() {
    let dir = TempDir::new();
    let engines = PrivateEngines::start(&dir);
    let key = TestKey::load("oauth-test-key.pk8", "key-1");
    let fxa = FakeFxa::start(&[&key]);
    for engine in Engine::SERVERS {
        let Some(server_uri) = engines.uri(engine) else {
            common::skip(
                engine.prereq().expect("a server engine"),
                &format!("scripts/engines started no {} server", engine.name()),
            );
            continue;
        };
        let db = TestDatabase::create_on(&server_uri, "boot");
        // The machine booted us before the database: we start anyway and say 503.
        engines.run("halt", engine);
        let server = Server::start_spec(ServerSpec {
            extra_ini: format!("sqluri = {}\noauth_verifier = {}\n", db.uri, fxa.url),
            workers: 2,
            wait_ready: false,
            ..ServerSpec::default()
        });
        let pid = server.pid().expect("running");
        let alice = fxa::fxa_uid();
        let s = Session {
            server: &server,
            user: server.user(1),
        };
        for i in 0..3 {
            let what = format!("{engine:?} not up yet, round {i}");
            assert_503(&s.get("/info/collections"), &format!("{what}: info"));
            assert_503(&sign_in(&server, &key, &alice), &format!("{what}: token"));
            std::thread::sleep(Duration::from_millis(300));
        }
        engines.run("resume", engine);
        let token = until_ok("token once the database answers", || {
            sign_in(&server, &key, &alice)
        });
        let s = Session {
            server: &server,
            user: user_of(&token),
        };
        let r = s.put("/storage/bookmarks/b", r#"{"payload": "after boot"}"#);
        assert_eq!(r.status, 200, "{engine:?}: {}", r.text());
        assert_eq!(
            json(&s.get("/storage/bookmarks/b"))["payload"],
            "after boot"
        );
        assert_eq!(server.pid(), Some(pid), "the same server process");
        let log = server.log();
        assert!(log.contains("retrying in the background"), "{log}");
        assert!(
            !log.contains("internal error"),
            "{engine:?}: a panic:\n{log}"
        );
        drop(server);
        drop(db);
    }
}
